//! Raw capacity of each backend on this machine, driven the way the registry drives it
//! but without the registry in between.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use registry_operator::consul::{ConsulClient, ConsulSink, ServiceContext};
use registry_operator::crd::RegistrationMode;
use registry_operator::kafka::{client_config, ensure_topics};
use registry_operator::postgres::PostgresSink;
use registry_operator::wire::Topics;

use crate::events::Fleet;
use crate::stack::{Stack, unique_name};

/// Concurrent Consul requests, as the registry's Consul worker sends them.
pub const CONSUL_CONCURRENCY: usize = 16;

/// Reads `count` pre-produced introspections from a fresh introspection topic with a
/// consumer configured like the registry's, and returns messages per second from the
/// first message to the last. The consumer is assigned the partition directly and the
/// clock starts at the first message, so connecting and joining a group are excluded.
pub async fn kafka_consume_rate(stack: &Stack, count: usize) -> anyhow::Result<f64> {
    let environment = unique_name("benchkafka");
    let topic = Topics::for_environment(&environment).introspection;
    stack.created_topics(vec![topic.clone()]);
    ensure_topics(
        &stack.kafka_brokers,
        &BTreeMap::new(),
        std::slice::from_ref(&topic),
        &[],
    )
    .await
    .context("creating the Kafka topic failed")?;

    let fleet = Fleet::new();
    let messages = (0..count)
        .map(|index| fleet.introspection_message(index))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let producer = stack.producer()?;
    stack.produce(&producer, &topic, &messages).await?;
    drop(messages);

    let consumer: StreamConsumer = client_config(&stack.kafka_brokers, &BTreeMap::new())
        .set("group.id", unique_name("bench-raw-"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the Kafka consumer failed")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;

    consumer.assign(&assignment)?;
    let first = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .with_context(|| format!("no message from {topic} within 30 s"))??;
    let started = Instant::now();
    let mut bytes = first.payload_len();
    drop(first);
    let mut received = 1;
    while received < count {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .with_context(|| format!("no message from {topic} for 30 s after {received}"))??;
        bytes += message.payload_len();
        received += 1;
    }
    let elapsed = started.elapsed();
    if bytes == 0 {
        bail!("the introspections read from {topic} were empty");
    }
    Ok((count - 1) as f64 / elapsed.as_secs_f64())
}

/// Upserts `count` new registrations into a private schema in batches of `batch` rows,
/// one statement at a time as the registry's PostgreSQL worker does, and returns rows
/// per second.
pub async fn postgres_upsert_rate(
    stack: &Stack,
    count: usize,
    batch: usize,
) -> anyhow::Result<f64> {
    let schema = unique_name("bench_raw_");
    let registry_id = unique_name("bench-raw-");
    stack.created_schema(&schema);
    let pool = registry_operator::postgres::connect(&stack.database_url, &schema, 8)?;
    registry_operator::postgres::migrate(&pool, &schema).await?;
    let sink = PostgresSink::new(pool.clone(), &registry_id);

    let fleet = Fleet::new();
    let writes: Vec<_> = fleet
        .records(count, &registry_id)?
        .into_iter()
        .map(|record| (record, false))
        .collect();

    let started = Instant::now();
    for chunk in writes.chunks(batch) {
        let changed = sink.upsert(chunk).await?;
        if changed.len() != chunk.len() {
            bail!("upsert changed {} of {} rows", changed.len(), chunk.len());
        }
    }
    let elapsed = started.elapsed();
    pool.close().await;
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Registers `count` services under a private synthetic Consul node, 16 requests at a
/// time, and returns services per second. The services are removed afterwards with
/// `deregister_all`, outside the timed part.
pub async fn consul_register_rate(stack: &Stack, count: usize) -> anyhow::Result<f64> {
    let registry_id = unique_name("bench-raw-");
    let context = ServiceContext {
        registry_id: registry_id.clone(),
        extra_tags: Vec::new(),
        datacenter: None,
        synthetic_node: ServiceContext::default_synthetic_node(&registry_id),
        mode: RegistrationMode::Catalog,
        check_ttl_seconds: 90,
        deregister_after_seconds: 86_400,
    };
    stack.created_consul_node(&context.synthetic_node);
    let client = ConsulClient::new(&stack.consul_address, None, Duration::from_secs(5))?;
    let sink = ConsulSink::new(client, context);
    let records = Fleet::new().records(count, &registry_id)?;

    let started = Instant::now();
    let registered: Vec<_> = futures::stream::iter(&records)
        .map(|record| sink.register(record))
        .buffer_unordered(CONSUL_CONCURRENCY)
        .try_collect()
        .await
        .context("registering a Consul service failed")?;
    let elapsed = started.elapsed();

    let removed = sink.deregister_all().await?;
    if registered.len() != count || removed != count {
        bail!(
            "registered {} and removed {removed} Consul services, expected {count}",
            registered.len()
        );
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}
