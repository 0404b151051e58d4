//! Steady-state CPU and resident memory of a standalone registry whose nodes all
//! heartbeat every 30 seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::events::Fleet;
use crate::process::{StandaloneRegistry, sample};
use crate::stack::{Stack, wait_for};

/// Heartbeat period of every node, in seconds.
pub const HEARTBEAT_PERIOD_SECONDS: f64 = 30.0;

/// Interval of the load generator's ticks; each tick sends the heartbeats that are due.
const TICK: Duration = Duration::from_millis(20);

/// How long to wait for Consul and to measure, and how often.
pub struct Schedule {
    /// Maximum wait, once every node is in PostgreSQL, for every node to be in Consul.
    /// The warm-up starts after it even when Consul is still behind.
    pub consul_wait: Duration,
    pub warm_up: Duration,
    pub window: Duration,
    pub windows: usize,
}

/// One measurement window.
pub struct Window {
    /// CPU seconds of the registry process per wall second.
    pub cpu_cores: f64,
    /// Largest `VmRSS` sampled once a second during the window.
    pub rss_bytes: u64,
}

/// Everything measured for one fleet size.
pub struct SteadyRun {
    pub nodes: usize,
    pub heartbeats_per_second: f64,
    /// Seconds from producing the introspections until every node was in PostgreSQL.
    pub registration_postgres_seconds: f64,
    /// Seconds until every node was in Consul as well; `None` when Consul was still
    /// behind after [`Schedule::consul_wait`].
    pub registration_seconds: Option<f64>,
    /// Services of the fleet in Consul when the warm-up started and after the last window.
    pub consul_services_at_start: usize,
    pub consul_services_at_end: usize,
    pub windows: Vec<Window>,
    /// `VmHWM` at the end: the largest resident set since start, registration included.
    pub peak_rss_bytes: u64,
    /// Heartbeats the load generator could not deliver to Kafka.
    pub failed_heartbeats: u64,
    /// Heartbeat messages not yet committed by the registry after the last window.
    pub lag_at_end: i64,
    /// Nodes whose row shows a heartbeat sent after the load started.
    pub heartbeats_recorded: i64,
}

/// Sends heartbeats of nodes `0..nodes` in turn at `nodes / 30` per second, evenly
/// spread, until `cancel` fires or `max_duration` has passed. Returns the number of
/// heartbeats Kafka did not accept.
async fn generate_heartbeats(
    producer: FutureProducer,
    topic: String,
    fleet: Arc<Fleet>,
    nodes: usize,
    max_duration: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<u64> {
    let rate = nodes as f64 / HEARTBEAT_PERIOD_SECONDS;
    let failed = Arc::new(AtomicU64::new(0));
    let mut deliveries = JoinSet::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut sent: u64 = 0;

    while !cancel.is_cancelled() && started.elapsed() < max_duration {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        let mut futures = Vec::new();
        while sent < due {
            let index = (sent % nodes as u64) as usize;
            let uptime = started.elapsed().as_secs() + 600;
            let message = fleet.heartbeat_message(index, uptime)?;
            let record = FutureRecord::to(&topic)
                .key(message.key.as_str())
                .payload(message.value.as_slice());
            match producer.send_result(record) {
                Ok(delivery) => futures.push(delivery),
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            sent += 1;
        }
        let failed = failed.clone();
        deliveries.spawn(async move {
            for delivery in futures {
                if !matches!(delivery.await, Ok(Ok(_))) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Reap finished tasks so the set stays small.
        while deliveries.try_join_next().is_some() {}
    }
    while deliveries.join_next().await.is_some() {}
    Ok(failed.load(Ordering::Relaxed))
}

/// Waits until every node of `fleet` is in Consul or `deadline` has passed, and
/// returns the services counted last and whether that was all of them. Each count
/// lists every service of the node, so counts are at least three count durations
/// apart.
async fn wait_for_consul(
    stack: &Stack,
    registry: &StandaloneRegistry,
    fleet: &Fleet,
    nodes: usize,
    deadline: Instant,
) -> anyhow::Result<(usize, bool)> {
    let node = registry.synthetic_node();
    loop {
        registry.process.check_running()?;
        let count_started = Instant::now();
        let services = stack.count_consul_services(&node, &fleet.prefix).await?;
        if services >= nodes {
            return Ok((services, true));
        }
        let pause = Duration::from_secs(2).max(count_started.elapsed() * 3);
        if Instant::now() + pause >= deadline {
            return Ok((services, false));
        }
        tokio::time::sleep(pause).await;
    }
}

/// Registers `nodes` nodes with a fresh standalone registry and measures its steady state.
///
/// Heartbeats start as soon as every node is in PostgreSQL, so that no node turns
/// critical while Consul catches up. After waiting for Consul up to
/// [`Schedule::consul_wait`] and the warm-up, it samples the registry's CPU time and
/// memory over every window.
pub async fn steady_state(
    stack: &Stack,
    nodes: usize,
    schedule: &Schedule,
) -> anyhow::Result<SteadyRun> {
    let registry = StandaloneRegistry::start(stack, &[])?;
    let pid = registry.process.pid();
    let fleet = Arc::new(Fleet::new());
    let topics = registry.topics();
    let producer = stack.producer()?;
    registry.wait_until_consuming(stack).await?;

    let registration_started = Instant::now();
    for start in (0..nodes).step_by(10_000) {
        let messages = (start..nodes.min(start + 10_000))
            .map(|index| fleet.introspection_message(index))
            .collect::<anyhow::Result<Vec<_>>>()?;
        stack
            .produce(&producer, &topics.introspection, &messages)
            .await?;
    }
    wait_for(
        "every node in PostgreSQL",
        Duration::from_secs(120).max(Duration::from_millis(nodes as u64 * 10)),
        Duration::from_millis(250),
        || async {
            registry.process.check_running()?;
            let rows = stack.count_rows(&registry.schema, &fleet.prefix).await;
            Ok((rows == Some(nodes as i64)).then_some(()))
        },
    )
    .await?;
    let registration_postgres_seconds = registration_started.elapsed().as_secs_f64();

    let load_started_at = chrono::Utc::now();
    let cancel = CancellationToken::new();
    let measuring = schedule.warm_up + schedule.window * schedule.windows as u32;
    let generator = tokio::spawn(generate_heartbeats(
        producer,
        topics.heartbeat.clone(),
        fleet.clone(),
        nodes,
        schedule.consul_wait + measuring + Duration::from_secs(60),
        cancel.clone(),
    ));
    let _stop_generator = cancel.clone().drop_guard();

    let consul_deadline = Instant::now() + schedule.consul_wait;
    let (consul_services_at_start, complete) =
        wait_for_consul(stack, &registry, &fleet, nodes, consul_deadline).await?;
    let registration_seconds = complete.then(|| registration_started.elapsed().as_secs_f64());
    tokio::time::sleep(schedule.warm_up).await;

    let mut windows = Vec::with_capacity(schedule.windows);
    for _ in 0..schedule.windows {
        registry.process.check_running()?;
        let window_started = Instant::now();
        let first = sample(pid)?;
        let mut rss_bytes = first.rss_bytes;
        while window_started.elapsed() < schedule.window {
            let remaining = schedule.window.saturating_sub(window_started.elapsed());
            tokio::time::sleep(remaining.min(Duration::from_secs(1))).await;
            rss_bytes = rss_bytes.max(sample(pid)?.rss_bytes);
        }
        let last = sample(pid)?;
        windows.push(Window {
            cpu_cores: (last.cpu_seconds - first.cpu_seconds)
                / window_started.elapsed().as_secs_f64(),
            rss_bytes,
        });
    }
    if windows.is_empty() {
        bail!("no measurement window ran");
    }
    let peak_rss_bytes = sample(pid)?.peak_rss_bytes;
    let lag_at_end = stack
        .offset_reader(&registry.consumer_group())?
        .lag(&topics.heartbeat)?;
    cancel.cancel();
    let failed_heartbeats = generator.await??;

    let consul_services_at_end = if complete {
        consul_services_at_start
    } else {
        stack
            .count_consul_services(&registry.synthetic_node(), &fleet.prefix)
            .await?
    };
    let statement = format!(
        "SELECT count(*) FROM \"{}\".node_registrations \
         WHERE node_id LIKE $1 AND last_heartbeat >= $2",
        registry.schema
    );
    let heartbeats_recorded: i64 = sqlx::query_scalar(&statement)
        .bind(format!("{}%", fleet.prefix))
        .bind(load_started_at)
        .fetch_one(&stack.postgres)
        .await?;

    registry.process.terminate(Duration::from_secs(30))?;
    Ok(SteadyRun {
        nodes,
        heartbeats_per_second: nodes as f64 / HEARTBEAT_PERIOD_SECONDS,
        registration_postgres_seconds,
        registration_seconds,
        consul_services_at_start,
        consul_services_at_end,
        windows,
        peak_rss_bytes,
        failed_heartbeats,
        lag_at_end,
        heartbeats_recorded,
    })
}
