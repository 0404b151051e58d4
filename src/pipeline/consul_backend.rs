//! Applies compacted writes to Consul.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;

use super::backend::{Backend, BackendWriteError};
use super::pending::{PendingWrites, RegistrationWrite};
use crate::consul::{ConsulError, ConsulSink};
use crate::crd::RegistrationMode;
use crate::node::HealthStatus;
use crate::postgres::{HeartbeatTouch, PostgresSink, RowKey};

/// One Consul request and the write it carries out, boxed so that requests of one kind
/// share a type.
type BoxedRequest<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = (T, Result<(), ConsulError>)> + Send + 'a>>;

/// Rows read from PostgreSQL at once when anti-entropy registers missing services.
const REPAIR_CHUNK: usize = 500;

/// Concurrent requests to Consul within one batch.
const CONCURRENCY: usize = 16;

/// Consul backend of one registry.
pub struct ConsulBackend {
    sink: ConsulSink,
    mode: RegistrationMode,
    /// Services this registry owns in Consul, with the health last sent (`None` when
    /// only known from listing Consul).
    registered: HashMap<String, Option<HealthStatus>>,
    /// `(event_timestamp, event_id)` of the last registration write applied per node, so
    /// that an older event never overwrites a newer one.
    // NOTE: this order is lost on restart, so an older event replayed after a restart can
    // re-register a node in Consul until the next anti-entropy pass removes it.
    applied: HashMap<String, (chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
    loaded: bool,
    anti_entropy: AntiEntropy,
}

/// Settings and state of the pass that makes Consul match PostgreSQL.
pub struct AntiEntropy {
    pub postgres: PostgresSink,
    pub interval: std::time::Duration,
    pub registry_id: String,
    pub schema: String,
    /// The running registry's own node id. Its self record is written by
    /// self-registration, not through this backend, and is never an orphan while the
    /// registry runs.
    pub own_node_id: String,
    migrated: bool,
    last_run: Option<std::time::Instant>,
    /// Set after a failed write or an unreachable Consul, so the next success forces a pass.
    outage: bool,
    /// Services of this registry that the last pass found in Consul without any row in
    /// PostgreSQL and kept.
    unlisted: HashSet<String>,
}

impl AntiEntropy {
    pub fn new(
        postgres: PostgresSink,
        schema: String,
        interval: std::time::Duration,
        registry_id: String,
        own_node_id: String,
    ) -> Self {
        Self {
            postgres,
            interval,
            registry_id,
            own_node_id,
            schema,
            migrated: false,
            last_run: None,
            outage: false,
            unlisted: HashSet::new(),
        }
    }
}

impl ConsulBackend {
    pub fn new(sink: ConsulSink, mode: RegistrationMode, anti_entropy: AntiEntropy) -> Self {
        Self {
            sink,
            mode,
            registered: HashMap::new(),
            applied: HashMap::new(),
            loaded: false,
            anti_entropy,
        }
    }

    /// Registers every live PostgreSQL node missing from Consul, removes services of this
    /// registry that PostgreSQL does not list, and resets the health this backend
    /// remembers to PostgreSQL's.
    async fn repair(&mut self) -> Result<(), BackendWriteError> {
        if !self.anti_entropy.migrated {
            crate::postgres::migrate(self.anti_entropy.postgres.pool(), &self.anti_entropy.schema)
                .await
                .map_err(|error| BackendWriteError {
                    label: error.label(),
                    message: format!("anti-entropy: migrating PostgreSQL failed: {error}"),
                })?;
            self.anti_entropy.migrated = true;
        }
        let read_error = |error: crate::postgres::PostgresError| BackendWriteError {
            label: error.label(),
            message: format!("anti-entropy: reading PostgreSQL failed: {error}"),
        };
        let live_health = self
            .anti_entropy
            .postgres
            .list_live_health()
            .await
            .map_err(read_error)?;
        let owned: HashSet<String> = self
            .sink
            .list_registered()
            .await
            .map_err(write_error)?
            .into_iter()
            .collect();
        let live: HashSet<&str> = live_health.iter().map(|(id, _)| id.as_str()).collect();

        // Full rows are read only for the nodes Consul lacks, a chunk at a time.
        let missing: Vec<&str> = live
            .iter()
            .copied()
            .filter(|id| !owned.contains(*id))
            .collect();
        let mut registered = 0;
        for chunk in missing.chunks(REPAIR_CHUNK) {
            let rows = self
                .anti_entropy
                .postgres
                .get_live(chunk)
                .await
                .map_err(read_error)?;
            let sink = &self.sink;
            let mut requests: Vec<BoxedRequest<'_, ()>> = Vec::with_capacity(rows.len());
            for row in &rows {
                requests.push(Box::pin(async move {
                    let record = super::postgres_backend::record_of_row(row);
                    ((), sink.register(&record).await.map(|_| ()))
                }));
            }
            let results: Vec<_> = futures::stream::iter(requests)
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for ((), result) in results {
                result.map_err(write_error)?;
                registered += 1;
            }
        }

        let orphans: Vec<&str> = owned
            .iter()
            .map(String::as_str)
            .filter(|id| !live.contains(id) && *id != self.anti_entropy.own_node_id)
            .collect();
        let keys = self
            .anti_entropy
            .postgres
            .event_keys(&orphans)
            .await
            .map_err(read_error)?;
        let mut removed = 0;
        let mut kept_orphans = HashSet::new();
        for orphan in orphans {
            if self.is_stale(orphan, keys.get(orphan)) {
                self.sink.deregister(orphan).await.map_err(write_error)?;
                removed += 1;
            } else {
                kept_orphans.insert(orphan.to_owned());
            }
        }

        let mut remembered: HashMap<String, Option<HealthStatus>> = live_health
            .iter()
            .map(|(id, health)| (id.clone(), health.parse().ok()))
            .collect();
        for id in &kept_orphans {
            let health = self.registered.get(id).copied().flatten();
            remembered.insert(id.clone(), health);
        }
        self.registered = remembered;
        if !kept_orphans.is_empty() {
            tracing::debug!(registry = %self.anti_entropy.registry_id, services = kept_orphans.len(), "anti-entropy kept services that PostgreSQL does not list yet; removed on the next pass if still unlisted");
        }
        self.anti_entropy.unlisted = kept_orphans;
        self.loaded = true;
        self.anti_entropy.last_run = Some(std::time::Instant::now());
        self.anti_entropy.outage = false;
        if registered > 0 || removed > 0 {
            tracing::info!(registry = %self.anti_entropy.registry_id, registered, removed, "anti-entropy repaired Consul");
        } else {
            tracing::debug!(registry = %self.anti_entropy.registry_id, services = live.len(), "anti-entropy found Consul in step");
        }
        Ok(())
    }

    /// Tells whether a service of this registry that PostgreSQL does not list as live is
    /// an orphan to remove (see [`orphan_is_stale`]).
    fn is_stale(&self, node_id: &str, row: Option<&RowKey>) -> bool {
        let applied_here = self
            .applied
            .get(node_id)
            .filter(|_| self.registered.contains_key(node_id));
        orphan_is_stale(
            row,
            applied_here,
            self.anti_entropy.unlisted.contains(node_id),
        )
    }

    /// Forgets what was registered, so the next write lists Consul again; used after
    /// Consul lost its state.
    pub fn reset(&mut self) {
        self.registered.clear();
        self.loaded = false;
    }
}

/// Decides whether anti-entropy removes a Consul service that PostgreSQL does not list
/// as live. The two backends progress independently, so a service may reach Consul
/// before its row reaches PostgreSQL: a fresh self record, or writes that Consul applied
/// while PostgreSQL was behind. Such a service is kept while this backend registered it
/// from a newer event than the row's (`applied_here`). A service without any row is
/// removed only when the previous pass found it without a row too (`unlisted_before`).
fn orphan_is_stale(
    row: Option<&RowKey>,
    applied_here: Option<&(chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
    unlisted_before: bool,
) -> bool {
    match (row, applied_here) {
        (Some(row), Some(applied)) => row.deregistered && row.event >= *applied,
        (Some(row), None) => row.deregistered,
        (None, Some(_)) => false,
        (None, None) => unlisted_before,
    }
}

fn write_error(error: ConsulError) -> BackendWriteError {
    BackendWriteError {
        label: error.label(),
        message: error.to_string(),
    }
}

impl Backend for ConsulBackend {
    const NAME: &'static str = "consul";

    async fn apply(&mut self, writes: &PendingWrites) -> Result<(), BackendWriteError> {
        if writes.is_empty() {
            return Ok(());
        }
        let result = self.apply_writes(writes).await;
        if result.is_err() {
            self.anti_entropy.outage = true;
        }
        result
    }

    /// Runs anti-entropy when its interval has passed, or as soon as Consul answers again
    /// after an outage (a restarted Consul agent may have lost every service).
    async fn maintain(&mut self) -> Result<(), BackendWriteError> {
        let reachable = self
            .sink
            .client()
            .leader()
            .await
            .is_ok_and(|leader| leader.is_some());
        if !reachable {
            self.anti_entropy.outage = true;
            return Ok(());
        }
        let due = self
            .anti_entropy
            .last_run
            .is_none_or(|last| last.elapsed() >= self.anti_entropy.interval);
        if due || self.anti_entropy.outage {
            self.repair().await?;
        }
        Ok(())
    }
}

impl ConsulBackend {
    async fn apply_writes(&mut self, writes: &PendingWrites) -> Result<(), BackendWriteError> {
        if self.anti_entropy.outage && self.sink.client().leader().await.is_ok_and(|l| l.is_some())
        {
            self.repair().await?;
        }
        if !self.loaded {
            let owned = self.sink.list_registered().await.map_err(write_error)?;
            self.registered = owned.into_iter().map(|id| (id, None)).collect();
            self.loaded = true;
        }

        let sink = &self.sink;
        let mut requests: Vec<BoxedRequest<'_, &RegistrationWrite>> = Vec::new();
        let newer = writes.registrations.values().filter(|write| {
            let record = write.record();
            self.applied
                .get(&record.node_id)
                .is_none_or(|applied| *applied < (record.event_timestamp, record.event_id))
                || matches!(write, RegistrationWrite::Expire(_))
        });
        // Chunks hold at most 1000 writes, which bounds these boxed requests.
        for write in newer {
            requests.push(Box::pin(async move {
                let result = match write {
                    RegistrationWrite::Register(record) => sink.register(record).await.map(|_| ()),
                    RegistrationWrite::Deregister(record) | RegistrationWrite::Expire(record) => {
                        sink.deregister(&record.node_id).await
                    }
                };
                (write, result)
            }));
        }
        let results: Vec<_> = futures::stream::iter(requests)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut first_error = None;
        for (write, result) in results {
            match result {
                Ok(()) => {
                    let record = write.record();
                    // An expiry keeps the key of the last applied event, so replays of
                    // that event stay ignored.
                    if !matches!(write, RegistrationWrite::Expire(_)) {
                        self.applied.insert(
                            record.node_id.clone(),
                            (record.event_timestamp, record.event_id),
                        );
                    }
                    if write.is_deregister() {
                        self.registered.remove(&record.node_id);
                    } else {
                        self.registered
                            .insert(record.node_id.clone(), Some(record.health_status));
                    }
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(write_error(error));
        }

        for (node_id, health) in &writes.health_overrides {
            if !self.registered.contains_key(node_id) {
                continue;
            }
            let output =
                format!("no heartbeat or introspection; marked {health} by the liveness sweep");
            if let Err(error) = self.sink.set_health(node_id, *health, &output).await {
                first_error.get_or_insert(error);
            } else {
                self.registered.insert(node_id.clone(), Some(*health));
            }
        }
        if let Some(error) = first_error.take() {
            return Err(write_error(error));
        }

        // Heartbeats only change the health of services this registry owns; catalog checks
        // are written when the health changes, agent TTL checks on every heartbeat.
        let updates: Vec<_> = writes
            .heartbeats
            .values()
            .filter(|touch| match self.registered.get(&touch.node_id) {
                None => false,
                Some(last) => {
                    self.mode == RegistrationMode::Agent || *last != Some(touch.health_status)
                }
            })
            .collect();
        let mut requests: Vec<BoxedRequest<'_, &HeartbeatTouch>> = Vec::new();
        for touch in updates {
            requests.push(Box::pin(async move {
                let output = format!(
                    "node reported {} at {}",
                    touch.health_status,
                    touch.timestamp.to_rfc3339()
                );
                let result = sink
                    .set_health(&touch.node_id, touch.health_status, &output)
                    .await;
                (touch, result)
            }));
        }
        let results: Vec<_> = futures::stream::iter(requests)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (touch, result) in results {
            match result {
                Ok(()) => {
                    self.registered
                        .insert(touch.node_id.clone(), Some(touch.health_status));
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(write_error(error)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use super::*;

    fn key(second: u32) -> (chrono::DateTime<Utc>, Uuid) {
        (
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap(),
            Uuid::nil(),
        )
    }

    fn tombstone(second: u32) -> RowKey {
        RowKey {
            event: key(second),
            deregistered: true,
        }
    }

    #[test]
    fn tombstone_removes_service_without_newer_write() {
        assert!(orphan_is_stale(Some(&tombstone(5)), None, false));
        assert!(orphan_is_stale(Some(&tombstone(5)), Some(&key(5)), false));
        assert!(orphan_is_stale(Some(&tombstone(5)), Some(&key(4)), false));
    }

    #[test]
    fn newer_consul_write_outlives_tombstone() {
        assert!(!orphan_is_stale(Some(&tombstone(5)), Some(&key(6)), true));
    }

    #[test]
    fn live_row_is_never_stale() {
        let live = RowKey {
            event: key(5),
            deregistered: false,
        };
        assert!(!orphan_is_stale(Some(&live), None, true));
    }

    #[test]
    fn missing_row_removed_on_second_pass() {
        assert!(!orphan_is_stale(None, None, false));
        assert!(orphan_is_stale(None, None, true));
    }

    #[test]
    fn missing_row_kept_while_registered_here() {
        assert!(!orphan_is_stale(None, Some(&key(1)), true));
    }
}
