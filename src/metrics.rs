//! Prometheus metrics of the operator and its registries. Label values come from closed
//! sets (event types, outcomes, error labels, backend names, registry ids of existing
//! RegistryNode objects), so series stay bounded.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub registry: String,
    pub event_type: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub registry: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub registry: String,
    pub backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendErrorLabels {
    pub registry: String,
    pub backend: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    pub registry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub outcome: &'static str,
}

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    pub events_consumed: Family<EventLabels, Counter>,
    pub dead_letters: Family<ReasonLabels, Counter>,
    pub backend_write_seconds: Family<BackendLabels, Histogram>,
    pub backend_errors: Family<BackendErrorLabels, Counter>,
    /// Writes accepted from Kafka that the backend has not made durable yet.
    pub backend_pending_writes: Family<BackendLabels, Gauge>,
    /// 1 while the backend's last write failed (circuit open), 0 otherwise.
    pub backend_circuit_open: Family<BackendLabels, Gauge>,
    pub consumer_lag: Family<RegistryLabels, Gauge>,
    pub registered_nodes: Family<RegistryLabels, Gauge>,
    pub healthy_nodes: Family<RegistryLabels, Gauge>,
    pub heartbeats_ignored: Family<ReasonLabels, Counter>,
    pub reconciles: Family<ReconcileLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("registry_operator");
        let events_consumed = Family::<EventLabels, Counter>::default();
        registry.register(
            "events_consumed",
            "Kafka events consumed, by event type and outcome",
            events_consumed.clone(),
        );
        let dead_letters = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "dead_letters",
            "Messages sent to the dead-letter topic, by rejection reason",
            dead_letters.clone(),
        );
        let backend_write_seconds =
            Family::<BackendLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            });
        registry.register(
            "backend_write_seconds",
            "Duration of one batched write to a backend",
            backend_write_seconds.clone(),
        );
        let backend_errors = Family::<BackendErrorLabels, Counter>::default();
        registry.register(
            "backend_errors",
            "Failed backend writes, by backend and error kind",
            backend_errors.clone(),
        );
        let backend_pending_writes = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_pending_writes",
            "Node writes consumed from Kafka and not yet durable in the backend",
            backend_pending_writes.clone(),
        );
        let backend_circuit_open = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_circuit_open",
            "1 while writes to the backend fail and are being retried",
            backend_circuit_open.clone(),
        );
        let consumer_lag = Family::<RegistryLabels, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Messages between the committed offsets and the end of the consumed partitions",
            consumer_lag.clone(),
        );
        let registered_nodes = Family::<RegistryLabels, Gauge>::default();
        registry.register(
            "registered_nodes",
            "Nodes registered in PostgreSQL",
            registered_nodes.clone(),
        );
        let healthy_nodes = Family::<RegistryLabels, Gauge>::default();
        registry.register(
            "healthy_nodes",
            "Registered nodes whose health is healthy",
            healthy_nodes.clone(),
        );
        let heartbeats_ignored = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "heartbeats_ignored",
            "Heartbeats that changed nothing: unknown or deregistered node",
            heartbeats_ignored.clone(),
        );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "RegistryNode reconciliations, by outcome",
            reconciles.clone(),
        );
        Arc::new(Self {
            registry,
            events_consumed,
            dead_letters,
            backend_write_seconds,
            backend_errors,
            backend_pending_writes,
            backend_circuit_open,
            consumer_lag,
            registered_nodes,
            healthy_nodes,
            heartbeats_ignored,
            reconciles,
        })
    }

    /// Renders the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut output = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut output, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        output
    }
}
