//! End-to-end ingest rate of the registry: introspections in Kafka to registrations in
//! both backends.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::events::Fleet;
use crate::process::StandaloneRegistry;
use crate::stack::Stack;

/// Interval between two PostgreSQL counts.
const POSTGRES_POLL: Duration = Duration::from_millis(50);

/// Shortest interval between two Consul counts. Each count lists the node's services,
/// so the interval grows to four times the duration of the last count, and Consul spends
/// at most a fifth of the time responding to counts.
const CONSUL_POLL: Duration = Duration::from_millis(100);

/// Result of one ingest run.
pub struct IngestRun {
    pub events_per_second: f64,
    /// Time to produce the events, included in the rate.
    pub produce_seconds: f64,
    /// Events per second until the registry had committed the offsets of every event,
    /// which it does once both backends acknowledged them as durable.
    pub committed_per_second: f64,
    /// Duration of the last Consul count, which lists every service of the node: the
    /// resolution of the Consul completion time.
    pub consul_poll_seconds: f64,
}

/// Starts a registry without self-registration, waits until it is consuming, then
/// produces `count` introspections of distinct nodes and measures until all are
/// registered in both backends, and until the registry has committed their offsets.
pub async fn ingest_rate(stack: &Stack, count: usize) -> anyhow::Result<IngestRun> {
    let registry = StandaloneRegistry::start(stack, &["--no-self-registration"])?;
    let fleet = Fleet::new();
    let topic = registry.topics().introspection;
    let node = registry.synthetic_node();
    let producer = stack.producer()?;

    registry.wait_until_consuming(stack).await?;
    let offsets = stack.offset_reader(&registry.consumer_group())?;
    let (_, high_before) = offsets.committed_and_high(&topic)?;

    let messages = (0..count)
        .map(|index| fleet.introspection_message(index))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let timeout = Duration::from_secs(120).max(Duration::from_millis(count as u64 * 20));

    let started = Instant::now();
    stack.produce(&producer, &topic, &messages).await?;
    let produce_seconds = started.elapsed().as_secs_f64();

    let mut postgres_done = None;
    let mut consul_done = None;
    let mut committed_done = None;
    let mut next_consul_poll = Instant::now();
    let mut consul_poll = Duration::ZERO;
    while postgres_done.is_none() || consul_done.is_none() || committed_done.is_none() {
        if started.elapsed() > timeout {
            bail!(
                "registry {} did not register {count} nodes in both backends and commit their \
                 offsets within {timeout:?}; log: {}",
                registry.registry_id,
                registry.process.log_path.display()
            );
        }
        registry.process.check_running()?;
        if postgres_done.is_none()
            && stack.count_rows(&registry.schema, &fleet.prefix).await == Some(count as i64)
        {
            postgres_done = Some(started.elapsed());
        }
        if committed_done.is_none()
            && offsets.committed_and_high(&topic)?.0 >= high_before + count as i64
        {
            committed_done = Some(started.elapsed());
        }
        if consul_done.is_none() && Instant::now() >= next_consul_poll {
            let poll_started = Instant::now();
            let services = stack.count_consul_services(&node, &fleet.prefix).await?;
            if services == count {
                consul_done = Some(started.elapsed());
            }
            consul_poll = poll_started.elapsed();
            next_consul_poll = Instant::now() + CONSUL_POLL.max(consul_poll * 4);
        }
        tokio::time::sleep(POSTGRES_POLL).await;
    }
    // The registry commits offsets only after both backends acknowledged every write of
    // them, so the commit proves presence in both as much as the two counts do. The
    // earlier proof is taken, because the Consul count is coarse: each count reads all
    // 256 synthetic nodes and is repeated at most every four count durations.
    let counted = postgres_done.max(consul_done).unwrap_or_default();
    let elapsed = counted.min(committed_done.unwrap_or(counted));

    registry.process.terminate(Duration::from_secs(30))?;
    Ok(IngestRun {
        events_per_second: count as f64 / elapsed.as_secs_f64(),
        committed_per_second: count as f64 / committed_done.unwrap_or_default().as_secs_f64(),
        produce_seconds,
        consul_poll_seconds: consul_poll.as_secs_f64(),
    })
}
