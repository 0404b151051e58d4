//! One running registry: its Kafka consumer, backend workers, producer and
//! self-registration, started and stopped as a unit.

pub mod config;
mod self_record;
mod self_registration;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::{RwLock, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{PodIdentity, RegistryConfig};
pub use self_record::REGISTRY_NODE_TYPE;
pub use self_registration::{BackendState, SelfRegistrationState};

use crate::consul::{ConsulClient, ConsulError, ConsulSink, ServiceContext};
use crate::kafka::{EventProducer, KafkaError};
use crate::metrics::Metrics;
use crate::pipeline::backend::{BackendHealth, Maintenance, run_worker};
use crate::pipeline::consul_backend::{AntiEntropy, ConsulBackend};
use crate::pipeline::consumer::{ConsumerLinks, ConsumerSettings, run_consumer};
use crate::pipeline::postgres_backend::{Liveness, PostgresBackend, TopologyOutput};
use crate::postgres::{PostgresError, PostgresSink};

/// Errors that keep an instance from starting. All are configuration errors: backends
/// that are down do not stop an instance from starting.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error(transparent)]
    Consul(#[from] ConsulError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Live state of an instance, read by status, readiness and the HTTP API.
pub struct InstanceState {
    pub config: RegistryConfig,
    pub postgres: Arc<BackendHealth>,
    pub consul: Arc<BackendHealth>,
    pub kafka_connected: Arc<AtomicBool>,
    /// Start of the current Kafka outage seen by the probe.
    pub kafka_failing_since: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    pub self_registration: Arc<std::sync::Mutex<SelfRegistrationState>>,
    pub postgres_sink: PostgresSink,
    pub consul_sink: ConsulSink,
    pub producer: EventProducer,
    /// Pod names of this registry's live instances; events about their records are
    /// accepted only from them.
    pub instances: Arc<RwLock<HashSet<String>>>,
    /// True while this pod runs the registry's singleton work (sweeps, anti-entropy).
    pub leader: Arc<AtomicBool>,
    pub started_at: std::time::Instant,
}

/// Sets `connected` from a metadata request to Kafka every 5 seconds, so the flag reflects
/// the brokers even while no message arrives.
async fn probe_kafka(
    producer: EventProducer,
    connected: Arc<AtomicBool>,
    failing_since: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    registry_id: String,
    cancel: CancellationToken,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let reachable = producer.probe(Duration::from_secs(3)).await;
        let was = connected.swap(reachable.is_ok(), std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut since) = failing_since.lock() {
            match reachable {
                Ok(()) => *since = None,
                Err(_) => {
                    since.get_or_insert_with(std::time::Instant::now);
                }
            }
        }
        match reachable {
            Ok(()) if !was => info!(registry = %registry_id, "Kafka reachable"),
            Err(error) if was => warn!(registry = %registry_id, %error, "Kafka unreachable"),
            _ => {}
        }
    }
}

/// Builds the PostgreSQL and Consul sinks of a registry. Neither connects yet.
pub fn build_sinks(config: &RegistryConfig) -> Result<(PostgresSink, ConsulSink), InstanceError> {
    let pool = crate::postgres::connect(&config.postgres_url, &config.postgres_schema, 8)?;
    let postgres_sink = PostgresSink::new(pool, &config.registry_id);
    let client = ConsulClient::new(
        &config.consul_address,
        config.consul_token.clone(),
        Duration::from_secs(5),
    )?;
    let context = ServiceContext {
        registry_id: config.registry_id.clone(),
        extra_tags: config.consul_tags.clone(),
        datacenter: config.consul_datacenter.clone(),
        synthetic_node: ServiceContext::default_synthetic_node(&config.registry_id),
        mode: config.registration_mode,
        check_ttl_seconds: u32::try_from(config.liveness_timeout.as_secs()).unwrap_or(u32::MAX),
        deregister_after_seconds: u32::try_from(config.expiry_after.as_secs()).unwrap_or(u32::MAX),
    };
    Ok((postgres_sink, ConsulSink::new(client, context)))
}

/// A running registry.
pub struct RegistryInstance {
    pub state: Arc<InstanceState>,
    cancel: CancellationToken,
    consumer: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    self_task: JoinHandle<()>,
    producer: EventProducer,
}

impl RegistryInstance {
    /// Starts every task of the registry. Returns once the tasks run, without waiting
    /// for any backend.
    pub fn start(config: RegistryConfig, metrics: Arc<Metrics>) -> Result<Self, InstanceError> {
        let cancel = CancellationToken::new();
        let producer = EventProducer::new(&config.kafka_brokers, &config.kafka_properties)?;
        let (postgres_sink, consul_sink) = build_sinks(&config)?;

        let leader = Arc::new(AtomicBool::new(config.leader_by_default));
        let maintenance = Maintenance {
            interval: config.sweep_interval,
            leader: leader.clone(),
        };
        let postgres_health = Arc::new(BackendHealth::default());
        let consul_health = Arc::new(BackendHealth::default());
        let (ack_sender, ack_receiver) = mpsc::unbounded_channel();
        let (postgres_sender, postgres_receiver) = mpsc::unbounded_channel();
        let (consul_sender, consul_receiver) = mpsc::unbounded_channel();
        let workers = vec![
            tokio::spawn(run_worker(
                PostgresBackend::new(
                    postgres_sink.clone(),
                    config.postgres_schema.clone(),
                    config.heartbeat_write_interval,
                    metrics.clone(),
                    config.registry_id.clone(),
                    TopologyOutput {
                        producer: producer.clone(),
                        topic: config.topics.topology.clone(),
                        source_node_id: config.self_node_id(),
                    },
                    Liveness {
                        timeout: config.liveness_timeout,
                        expiry: config.expiry_after,
                    },
                    consul_sender.clone(),
                ),
                postgres_receiver,
                ack_sender.clone(),
                postgres_health.clone(),
                metrics.clone(),
                config.registry_id.clone(),
                maintenance.clone(),
                cancel.clone(),
            )),
            tokio::spawn(run_worker(
                ConsulBackend::new(
                    consul_sink.clone(),
                    config.registration_mode,
                    AntiEntropy::new(
                        postgres_sink.clone(),
                        config.postgres_schema.clone(),
                        config.anti_entropy_interval,
                        config.registry_id.clone(),
                        config.self_node_id(),
                    ),
                ),
                consul_receiver,
                ack_sender,
                consul_health.clone(),
                metrics.clone(),
                config.registry_id.clone(),
                maintenance,
                cancel.clone(),
            )),
        ];

        let instances = Arc::new(RwLock::new(HashSet::from([config
            .identity
            .pod_name
            .clone()])));
        let kafka_connected = Arc::new(AtomicBool::new(false));
        let (request_sender, request_receiver) = mpsc::unbounded_channel();
        let settings = ConsumerSettings {
            brokers: config.kafka_brokers.clone(),
            group_id: config.consumer_group.clone(),
            topics: vec![
                config.topics.introspection.clone(),
                config.topics.heartbeat.clone(),
                config.topics.registry_request.clone(),
            ],
            dead_letter_topic: config.dead_letter_topic.clone(),
            extra_properties: config.kafka_properties.clone(),
            max_batch: 1000,
            batch_wait: Duration::from_millis(20),
            read_limits: Default::default(),
            registry_id: config.registry_id.clone(),
            default_network_id: config.network_id.clone(),
            produced_topics: Vec::new(),
            compacted_topics: vec![config.topics.topology.clone()],
        };
        let links = ConsumerLinks {
            backends: vec![("postgres", postgres_sender), ("consul", consul_sender)],
            acks: ack_receiver,
            requests: request_sender,
            producer: producer.clone(),
            instances: instances.clone(),
            metrics: metrics.clone(),
            connected: kafka_connected.clone(),
        };
        let consumer_cancel = cancel.child_token();
        let consumer = tokio::spawn(async move {
            if let Err(error) =
                run_consumer(settings, links, consumer_cancel, Duration::from_secs(10)).await
            {
                tracing::error!(%error, "consumer failed to start");
            }
        });

        let self_registration = Arc::new(std::sync::Mutex::new(SelfRegistrationState::default()));
        let state = Arc::new(InstanceState {
            config: config.clone(),
            postgres: postgres_health,
            consul: consul_health,
            kafka_connected,
            kafka_failing_since: Default::default(),
            self_registration: self_registration.clone(),
            postgres_sink,
            consul_sink,
            producer: producer.clone(),
            instances,
            leader,
            started_at: std::time::Instant::now(),
        });
        tokio::spawn(probe_kafka(
            producer.clone(),
            state.kafka_connected.clone(),
            state.kafka_failing_since.clone(),
            config.registry_id.clone(),
            cancel.child_token(),
        ));
        let self_task = tokio::spawn(self_registration::run(
            state.clone(),
            producer.clone(),
            request_receiver,
            cancel.child_token(),
        ));
        info!(registry = %config.registry_id, node_id = %config.self_node_id(), "registry instance started");
        Ok(Self {
            state,
            cancel,
            consumer,
            workers,
            self_task,
            producer,
        })
    }

    /// Returns a token cancelled when the instance stops, for tasks tied to its lifetime.
    pub fn child_token(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    /// Stops the instance: publishes the shutdown introspection, deregisters the
    /// registry's own record, lets the consumer commit what the backends finished, and
    /// stops every task, all within `grace`.
    pub async fn stop(self, grace: Duration) {
        let registry = self.state.config.registry_id.clone();
        let deadline = tokio::time::Instant::now() + grace;
        if self.state.config.self_registration {
            let shutdown = self_registration::shutdown(&self.state, &self.producer);
            if tokio::time::timeout_at(deadline, shutdown).await.is_err() {
                warn!(%registry, "self-deregistration did not finish within the grace period");
            }
        }
        self.cancel.cancel();
        let _ = tokio::time::timeout_at(deadline, self.self_task).await;
        let _ = tokio::time::timeout_at(deadline, self.consumer).await;
        for worker in self.workers {
            let _ = tokio::time::timeout_at(deadline, worker).await;
        }
        info!(%registry, "registry instance stopped");
    }
}
