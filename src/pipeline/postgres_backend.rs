//! Applies compacted writes to PostgreSQL, coalesces heartbeats, publishes topology
//! changes, and runs the liveness sweep.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::backend::{Backend, BackendWriteError, BatchWrites};
use super::pending::{PendingWrites, RegistrationWrite};
use super::topology::{self, Change, TopologyRecord};
use crate::kafka::EventProducer;
use crate::metrics::{Metrics, ReasonLabels};
use crate::node::{HealthStatus, NodeRecord};
use crate::postgres::{ChangedNode, HeartbeatTouch, PostgresError, PostgresSink, StoredNode};

/// Where topology changes go.
pub struct TopologyOutput {
    pub producer: EventProducer,
    pub topic: String,
    pub source_node_id: String,
}

/// Liveness settings of the sweep.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub timeout: Duration,
    pub expiry: Duration,
}

/// PostgreSQL backend of one registry.
pub struct PostgresBackend {
    sink: PostgresSink,
    /// A heartbeat that changes neither health nor comes later than this after the last
    /// written one (on this process's clock) is not written, so steady heartbeats cost no
    /// database write each.
    staleness_bound: Duration,
    last_written: HashMap<String, (Instant, HealthStatus)>,
    metrics: Arc<Metrics>,
    registry_id: String,
    schema: String,
    migrated: bool,
    topology: TopologyOutput,
    /// Topology records not yet accepted by Kafka, published before anything else.
    unpublished: Vec<TopologyRecord>,
    liveness: Liveness,
    /// The Consul worker, which receives the sweep's health changes and expiries.
    consul: mpsc::UnboundedSender<BatchWrites>,
}

impl PostgresBackend {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sink: PostgresSink,
        schema: String,
        staleness_bound: Duration,
        metrics: Arc<Metrics>,
        registry_id: String,
        topology: TopologyOutput,
        liveness: Liveness,
        consul: mpsc::UnboundedSender<BatchWrites>,
    ) -> Self {
        Self {
            sink,
            // Coalescing must never hide a live node from the liveness sweep.
            staleness_bound: staleness_bound.min(liveness.timeout / 3),
            last_written: HashMap::new(),
            metrics,
            registry_id,
            schema,
            migrated: false,
            topology,
            unpublished: Vec::new(),
            liveness,
            consul,
        }
    }

    fn needs_write(&self, touch: &HeartbeatTouch) -> bool {
        match self.last_written.get(&touch.node_id) {
            None => true,
            Some((written_at, health)) => {
                *health != touch.health_status || written_at.elapsed() >= self.staleness_bound
            }
        }
    }

    async fn ensure_migrated(&mut self) -> Result<(), BackendWriteError> {
        // Migrating here, not at start-up, lets the registry start while PostgreSQL is down.
        if !self.migrated {
            crate::postgres::migrate(self.sink.pool(), &self.schema)
                .await
                .map_err(write_error)?;
            self.migrated = true;
        }
        Ok(())
    }

    fn queue_topology(&mut self, change: Change, node: &ChangedNode) {
        let records = topology::records(
            change,
            node,
            &self.registry_id,
            &self.topology.source_node_id,
        );
        self.unpublished.extend(records);
    }

    /// Publishes queued topology records. On failure the records from the first failed
    /// one on stay queued. Every record is handed to the producer before any
    /// acknowledgement is awaited, so a chunk costs one producer linger and round trip,
    /// not one per record. Records keep their order because they are queued in order to
    /// an idempotent producer. A record published again after a failure only repeats a
    /// value that a later record of the same key overrides.
    async fn publish_topology(&mut self) -> Result<(), BackendWriteError> {
        if self.unpublished.is_empty() {
            return Ok(());
        }
        let results = self
            .topology
            .producer
            .publish_all(
                &self.topology.topic,
                self.unpublished
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_deref())),
            )
            .await;
        let published = results.iter().take_while(|result| result.is_ok()).count();
        let first_error = results.into_iter().find_map(Result::err);
        self.unpublished.drain(..published);
        match first_error {
            None => Ok(()),
            Some(error) => Err(BackendWriteError {
                label: "topology_publish",
                message: error.to_string(),
            }),
        }
    }
}

fn write_error(error: PostgresError) -> BackendWriteError {
    BackendWriteError {
        label: error.label(),
        message: error.to_string(),
    }
}

/// Rebuilds the record of an expired row so that Consul can order the deregistration
/// after the row's last applied event.
pub(super) fn record_of_row(row: &StoredNode) -> NodeRecord {
    NodeRecord {
        node_id: row.node_id.clone(),
        node_type: row.node_type.clone(),
        node_role: row.node_role.clone(),
        node_version: row.node_version.clone(),
        capabilities: row.capabilities.clone(),
        endpoints: serde_json::from_value(row.endpoints.clone()).unwrap_or_default(),
        metadata: row.metadata.clone(),
        health_status: row.health_status.parse().unwrap_or(HealthStatus::Critical),
        network_id: row.network_id.clone(),
        deployment_id: row.deployment_id.clone(),
        epoch: row.epoch,
        event_id: row.last_event_id,
        event_timestamp: row.last_event_timestamp,
    }
}

impl Backend for PostgresBackend {
    const NAME: &'static str = "postgres";

    async fn apply(&mut self, writes: &PendingWrites) -> Result<(), BackendWriteError> {
        self.publish_topology().await?;
        if writes.registrations.is_empty() && writes.heartbeats.is_empty() {
            return Ok(());
        }
        self.ensure_migrated().await?;

        if !writes.registrations.is_empty() {
            let rows: Vec<_> = writes
                .registrations
                .values()
                .map(|write| (write.record(), write.is_deregister()))
                .collect();
            let changed = self.sink.upsert_changes(&rows).await.map_err(write_error)?;
            for node in &changed {
                self.queue_topology(topology::registration_change(node), node);
            }
            for write in writes.registrations.values() {
                let record = write.record();
                match write {
                    RegistrationWrite::Register(_) => {
                        self.last_written.insert(
                            record.node_id.clone(),
                            (Instant::now(), record.health_status),
                        );
                    }
                    RegistrationWrite::Deregister(_) | RegistrationWrite::Expire(_) => {
                        self.last_written.remove(&record.node_id);
                    }
                }
            }
        }

        let touches: Vec<HeartbeatTouch> = writes
            .heartbeats
            .values()
            .filter(|touch| self.needs_write(touch))
            .cloned()
            .collect();
        if !touches.is_empty() {
            let updated = self.sink.touch(&touches).await.map_err(write_error)?;
            let updated_ids: HashSet<&str> =
                updated.iter().map(|node| node.node_id.as_str()).collect();
            for touch in &touches {
                if updated_ids.contains(touch.node_id.as_str()) {
                    self.last_written
                        .insert(touch.node_id.clone(), (Instant::now(), touch.health_status));
                } else {
                    self.metrics
                        .heartbeats_ignored
                        .get_or_create(&ReasonLabels {
                            registry: self.registry_id.clone(),
                            reason: "unknown_or_deregistered",
                        })
                        .inc();
                    tracing::debug!(node_id = %touch.node_id, "heartbeat for an unknown or deregistered node ignored");
                }
            }
            for node in &updated {
                if node.previous_health.as_deref() != Some(node.health_status.as_str()) {
                    self.queue_topology(Change::HealthChanged, node);
                }
            }
        }
        self.publish_topology().await
    }

    /// Turns silent nodes critical and deregisters expired ones, in PostgreSQL here and in
    /// Consul through the Consul worker.
    async fn maintain(&mut self) -> Result<(), BackendWriteError> {
        self.ensure_migrated().await?;
        let critical = self
            .sink
            .mark_silent_critical(self.liveness.timeout)
            .await
            .map_err(write_error)?;
        let expired = self
            .sink
            .expire_silent(self.liveness.expiry)
            .await
            .map_err(write_error)?;
        let (registered, healthy) = self.sink.counts().await.map_err(write_error)?;
        let labels = crate::metrics::RegistryLabels {
            registry: self.registry_id.clone(),
        };
        self.metrics
            .registered_nodes
            .get_or_create(&labels)
            .set(registered);
        self.metrics
            .healthy_nodes
            .get_or_create(&labels)
            .set(healthy);
        if critical.is_empty() && expired.is_empty() {
            return self.publish_topology().await;
        }

        let mut consul = PendingWrites::default();
        for node in &critical {
            tracing::info!(registry = %self.registry_id, node_id = %node.node_id, "node silent past the liveness timeout; marked critical");
            consul
                .health_overrides
                .insert(node.node_id.clone(), HealthStatus::Critical);
            self.last_written.remove(&node.node_id);
            self.queue_topology(Change::HealthChanged, node);
        }
        for row in &expired {
            tracing::info!(registry = %self.registry_id, node_id = %row.node_id, "node silent past expiry; deregistered");
            let record = record_of_row(row);
            consul.registrations.insert(
                row.node_id.clone(),
                RegistrationWrite::Expire(record.into()),
            );
            self.last_written.remove(&row.node_id);
            let changed = ChangedNode {
                node_id: row.node_id.clone(),
                node_type: row.node_type.clone(),
                health_status: row.health_status.clone(),
                network_id: row.network_id.clone(),
                deployment_id: row.deployment_id.clone(),
                epoch: row.epoch,
                deregistered: true,
                inserted: false,
                previous_health: None,
            };
            self.queue_topology(Change::Deregistered, &changed);
        }
        let _ = self.consul.send((0, consul));
        self.publish_topology().await
    }
}
