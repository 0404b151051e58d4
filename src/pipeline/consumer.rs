//! The consumer loop of one registry: reads batches from Kafka, dead-letters bad input,
//! hands compacted writes to every backend worker, and commits offsets only once every
//! backend has made the writes they cover durable.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{RwLock, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use super::backend::{Ack, BatchWrites};
use super::decision::{Decision, DecisionContext, decide};
use super::offsets::{OffsetTracker, Positions};
use super::pending::{PendingWrites, RegistrationWrite};
use crate::kafka::{DeadLetter, EventProducer, client_config, ensure_topics};
use crate::metrics::{EventLabels, Metrics, ReasonLabels};
use crate::wire::{Envelope, ReadLimits, RegistryRequestPayload, read_event};

/// Settings of one registry's consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub brokers: String,
    pub group_id: String,
    pub topics: Vec<String>,
    /// Dead-letter topic override; by default each source topic's `.dlt.` twin.
    pub dead_letter_topic: Option<String>,
    pub extra_properties: BTreeMap<String, String>,
    pub max_batch: usize,
    pub batch_wait: Duration,
    pub read_limits: ReadLimits,
    pub registry_id: String,
    pub default_network_id: Option<String>,
    /// Topics created at start besides the consumed ones and their dead-letter twins.
    pub produced_topics: Vec<String>,
    /// Compacted topics created at start.
    pub compacted_topics: Vec<String>,
}

/// Channels and shared state the consumer works with.
pub struct ConsumerLinks {
    pub backends: Vec<(&'static str, mpsc::UnboundedSender<BatchWrites>)>,
    pub acks: mpsc::UnboundedReceiver<Ack>,
    pub requests: mpsc::UnboundedSender<Envelope<RegistryRequestPayload>>,
    pub producer: EventProducer,
    pub instances: Arc<RwLock<HashSet<String>>>,
    pub metrics: Arc<Metrics>,
    /// Set when a message was fetched; the instance's Kafka probe also maintains it.
    pub connected: Arc<std::sync::atomic::AtomicBool>,
}

/// Errors that stop the consumer before it starts.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("creating the Kafka consumer for group {group} failed: {source}")]
    Create {
        group: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("subscribing to topics {topics:?} failed: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

/// Runs until `cancel` fires; then waits up to `drain_timeout` for the backends to make
/// outstanding batches durable and commits what they finished.
pub async fn run_consumer(
    settings: ConsumerSettings,
    mut links: ConsumerLinks,
    cancel: CancellationToken,
    drain_timeout: Duration,
) -> Result<(), ConsumerError> {
    let consumer: StreamConsumer = client_config(&settings.brokers, &settings.extra_properties)
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        // librdkafka prefetches up to 64 MiB per partition by default; 16 MiB keeps
        // batches full while bounding the resident memory of each registry.
        .set("queued.max.messages.kbytes", "16384")
        .create()
        .map_err(|source| ConsumerError::Create {
            group: settings.group_id.clone(),
            source,
        })?;
    create_topics(&settings, &cancel).await;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| ConsumerError::Subscribe {
            topics: settings.topics.clone(),
            source,
        })?;
    info!(registry = %settings.registry_id, group = %settings.group_id, topics = ?settings.topics, "consumer started");

    let names: Vec<&'static str> = links.backends.iter().map(|(name, _)| *name).collect();
    let mut tracker = OffsetTracker::new(&names);
    let mut sequence = 0u64;
    let mut committed = Positions::new();
    let mut lag_ticks = tokio::time::interval(Duration::from_secs(5));
    lag_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some((backend, acknowledged)) = links.acks.recv() => {
                if let Some(positions) = tracker.acknowledge(backend, acknowledged) {
                    commit(&consumer, &positions, CommitMode::Async, &settings.registry_id);
                    committed.extend(positions);
                }
            }
            _ = lag_ticks.tick() => {
                if let Some(lag) = consumer_lag(&consumer, &committed) {
                    links
                        .metrics
                        .consumer_lag
                        .get_or_create(&crate::metrics::RegistryLabels { registry: settings.registry_id.clone() })
                        .set(lag);
                }
            }
            received = consumer.recv() => {
                let first = match received {
                    Ok(message) => message,
                    Err(error) => {
                        warn!(registry = %settings.registry_id, %error, "Kafka consumer error; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                links.connected.store(true, std::sync::atomic::Ordering::Relaxed);
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + settings.batch_wait;
                while batch.len() < settings.max_batch {
                    match tokio::time::timeout_at(deadline, consumer.recv()).await {
                        Ok(Ok(message)) => batch.push(message),
                        Ok(Err(error)) => {
                            warn!(registry = %settings.registry_id, %error, "Kafka consumer error");
                            break;
                        }
                        Err(_) => break,
                    }
                }
                sequence += 1;
                let span = tracing::info_span!("batch", registry = %settings.registry_id, sequence, messages = batch.len());
                let (writes, positions) = process_batch(&settings, &links, &batch).instrument(span).await;
                drop(batch);
                tracker.seal(sequence, positions);
                for (_, sender) in &links.backends {
                    let _ = sender.send((sequence, writes.clone()));
                }
            }
        }
    }

    // Give the backends a bounded time to finish what was consumed, then commit.
    let deadline = tokio::time::Instant::now() + drain_timeout;
    let mut committable = Positions::new();
    while tracker.outstanding() > 0 {
        match tokio::time::timeout_at(deadline, links.acks.recv()).await {
            Ok(Some((backend, acknowledged))) => {
                if let Some(positions) = tracker.acknowledge(backend, acknowledged) {
                    committable.extend(positions);
                }
            }
            _ => break,
        }
    }
    if !committable.is_empty() {
        commit(
            &consumer,
            &committable,
            CommitMode::Sync,
            &settings.registry_id,
        );
    }
    if tracker.outstanding() > 0 {
        warn!(registry = %settings.registry_id, batches = tracker.outstanding(), "stopping with batches not yet durable in every backend; they will be consumed again");
    }
    info!(registry = %settings.registry_id, "consumer stopped");
    Ok(())
}

/// Creates the registry's topics, retrying until Kafka responds, so that subscribing
/// never waits for a topic that has no messages yet.
async fn create_topics(settings: &ConsumerSettings, cancel: &CancellationToken) {
    let mut topics = settings.topics.clone();
    match &settings.dead_letter_topic {
        Some(topic) => topics.push(topic.clone()),
        None => topics.extend(
            settings
                .topics
                .iter()
                .map(|topic| crate::wire::topics::dead_letter_for(topic)),
        ),
    }
    topics.extend(settings.produced_topics.iter().cloned());
    let mut backoff = Duration::from_millis(200);
    loop {
        match ensure_topics(
            &settings.brokers,
            &settings.extra_properties,
            &topics,
            &settings.compacted_topics,
        )
        .await
        {
            Ok(()) => return,
            Err(error) => {
                warn!(registry = %settings.registry_id, %error, retry_in_ms = backoff.as_millis() as u64, "creating topics failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Decides every message of a batch. Bad messages are dead-lettered before the batch is
/// sealed, so their offsets may be committed with the rest.
async fn process_batch(
    settings: &ConsumerSettings,
    links: &ConsumerLinks,
    batch: &[BorrowedMessage<'_>],
) -> (PendingWrites, Positions) {
    let instances = links.instances.read().await.clone();
    let context = DecisionContext {
        registry_id: &settings.registry_id,
        instances: &instances,
        default_network_id: settings.default_network_id.as_deref(),
    };
    let mut writes = PendingWrites::default();
    let mut positions = Positions::new();

    for message in batch {
        positions.insert(
            (message.topic().to_owned(), message.partition()),
            message.offset() + 1,
        );
        let value = message.payload().unwrap_or_default();
        let decision = match read_event(value, &settings.read_limits) {
            Ok(event) => {
                let event_type = event_type_label(&event);
                let decision = decide(event, &context);
                let outcome = match &decision {
                    Decision::Reject { .. } => "rejected",
                    _ => "accepted",
                };
                count_event(links, settings, event_type, outcome);
                decision
            }
            Err(error) => {
                count_event(links, settings, "unknown", "rejected");
                Decision::Reject {
                    label: error.label(),
                    reason: error.to_string(),
                }
            }
        };

        match decision {
            Decision::Register(record) => {
                debug!(node_id = %record.node_id, offset = message.offset(), "registration accepted");
                writes.add_registration(RegistrationWrite::Register(record.into()));
            }
            Decision::Deregister(record) => {
                info!(node_id = %record.node_id, "shutdown introspection: deregistering node");
                writes.add_registration(RegistrationWrite::Deregister(record.into()));
            }
            Decision::Heartbeat(touch) => writes.add_heartbeat(touch),
            Decision::RegistryRequest(envelope) => {
                let _ = links.requests.send(*envelope);
            }
            Decision::Reject { label, reason } => {
                dead_letter(settings, links, message, label, &reason).await;
            }
        }
    }
    (writes, positions)
}

fn event_type_label(event: &crate::wire::Event) -> &'static str {
    match event {
        crate::wire::Event::Introspection(_) => "node_introspection",
        crate::wire::Event::Heartbeat(_) => "node_heartbeat",
        crate::wire::Event::RegistryRequest(_) => "registry_request",
    }
}

fn count_event(
    links: &ConsumerLinks,
    settings: &ConsumerSettings,
    event_type: &'static str,
    outcome: &'static str,
) {
    links
        .metrics
        .events_consumed
        .get_or_create(&EventLabels {
            registry: settings.registry_id.clone(),
            event_type,
            outcome,
        })
        .inc();
}

/// Publishes a rejected message to its dead-letter topic, retrying until the broker
/// accepts it: the offset must not be committed before the dead letter is durable.
async fn dead_letter(
    settings: &ConsumerSettings,
    links: &ConsumerLinks,
    message: &BorrowedMessage<'_>,
    label: &'static str,
    reason: &str,
) {
    let topic = settings
        .dead_letter_topic
        .clone()
        .unwrap_or_else(|| crate::wire::topics::dead_letter_for(message.topic()));
    warn!(
        registry = %settings.registry_id,
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        error = label,
        reason,
        dead_letter_topic = %topic,
        "rejected message sent to the dead-letter topic"
    );
    let letter = DeadLetter {
        topic: &topic,
        source_topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key(),
        value: message.payload().unwrap_or_default(),
        label,
        reason,
    };
    let mut backoff = Duration::from_millis(200);
    while let Err(error) = links.producer.publish_dead_letter(&letter).await {
        error!(%error, dead_letter_topic = %topic, "publishing a dead letter failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    links
        .metrics
        .dead_letters
        .get_or_create(&ReasonLabels {
            registry: settings.registry_id.clone(),
            reason: label,
        })
        .inc();
}

/// Sums, over the assigned partitions, the messages between the committed position and
/// the partition's end. Returns `None` when Kafka does not answer.
fn consumer_lag(consumer: &StreamConsumer, committed: &Positions) -> Option<i64> {
    let assignment = consumer.assignment().ok()?;
    let mut lag = 0;
    for element in assignment.elements() {
        // fetch_watermarks blocks on a broker request; block_in_place keeps the other
        // tasks of this runtime running meanwhile.
        let (low, high) = tokio::task::block_in_place(|| {
            consumer.fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(2))
        })
        .ok()?;
        let position = committed
            .get(&(element.topic().to_owned(), element.partition()))
            .copied()
            .unwrap_or(low);
        lag += (high - position).max(0);
    }
    Some(lag)
}

fn commit(consumer: &StreamConsumer, positions: &Positions, mode: CommitMode, registry_id: &str) {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in positions {
        if let Err(error) = list.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            warn!(%error, topic, partition, "invalid offset to commit");
        }
    }
    // NOTE: after a rebalance, a commit for a partition this consumer no longer owns fails.
    // The new owner then consumes those messages again, which idempotent writes make harmless.
    match consumer.commit(&list, mode) {
        Ok(()) => debug!(registry = registry_id, ?positions, "offsets committed"),
        Err(error) => warn!(registry = registry_id, %error, "committing offsets failed"),
    }
}
