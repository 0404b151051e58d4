use std::borrow::Borrow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use super::PostgresError;
use crate::node::{HealthStatus, NodeRecord};

/// A heartbeat reduced to what PostgreSQL stores of it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatTouch {
    pub node_id: String,
    pub health_status: HealthStatus,
    pub timestamp: DateTime<Utc>,
}

/// One row of `node_registrations` as read back.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct StoredNode {
    pub node_id: String,
    pub registry_id: String,
    pub node_type: String,
    pub node_role: Option<String>,
    pub node_version: Option<String>,
    pub capabilities: serde_json::Value,
    pub endpoints: serde_json::Value,
    pub metadata: serde_json::Value,
    pub health_status: String,
    pub health_endpoint: Option<String>,
    pub network_id: Option<String>,
    pub deployment_id: Option<String>,
    pub epoch: Option<i64>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub last_event_id: Uuid,
    pub last_event_timestamp: DateTime<Utc>,
    pub deregistered_at: Option<DateTime<Utc>>,
    /// Time of the last introspection or heartbeat written, on the registry's clock.
    pub last_seen_at: DateTime<Utc>,
}

/// Position of a row in the order of events: its last applied event and whether it is
/// a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKey {
    pub event: (DateTime<Utc>, Uuid),
    pub deregistered: bool,
}

/// A row that a write changed, as the topology stream reports it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct ChangedNode {
    pub node_id: String,
    pub node_type: String,
    pub health_status: String,
    pub network_id: Option<String>,
    pub deployment_id: Option<String>,
    pub epoch: Option<i64>,
    pub deregistered: bool,
    /// True when the row did not exist before the write.
    pub inserted: bool,
    /// Health before the write, for heartbeats and sweeps.
    pub previous_health: Option<String>,
}

/// Batched writes of one registry's `node_registrations` table.
#[derive(Clone)]
pub struct PostgresSink {
    pool: PgPool,
    registry_id: String,
}

const UPSERT: &str = r#"
INSERT INTO node_registrations AS n (
    node_id, registry_id, node_type, node_role, node_version, capabilities, endpoints, metadata,
    health_status, health_endpoint, network_id, deployment_id, epoch,
    registered_at, updated_at, last_heartbeat, last_event_id, last_event_timestamp, deregistered_at)
SELECT u.node_id, $1, u.node_type, u.node_role, u.node_version, u.capabilities, u.endpoints, u.metadata,
    u.health_status, u.health_endpoint, u.network_id, u.deployment_id, u.epoch,
    now(), now(), u.event_ts, u.event_id, u.event_ts,
    CASE WHEN u.deregistered THEN u.event_ts END
FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::jsonb[],
    $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[], $14::uuid[], $15::timestamptz[], $16::bool[])
    AS u(node_id, node_type, node_role, node_version, capabilities, endpoints, metadata,
    health_status, health_endpoint, network_id, deployment_id, epoch, event_id, event_ts, deregistered)
ON CONFLICT (node_id) DO UPDATE SET
    registry_id = EXCLUDED.registry_id,
    node_type = EXCLUDED.node_type,
    node_role = EXCLUDED.node_role,
    node_version = EXCLUDED.node_version,
    capabilities = EXCLUDED.capabilities,
    endpoints = EXCLUDED.endpoints,
    metadata = EXCLUDED.metadata,
    health_status = EXCLUDED.health_status,
    health_endpoint = EXCLUDED.health_endpoint,
    network_id = EXCLUDED.network_id,
    deployment_id = EXCLUDED.deployment_id,
    epoch = EXCLUDED.epoch,
    registered_at = CASE WHEN n.deregistered_at IS NOT NULL AND EXCLUDED.deregistered_at IS NULL
        THEN now() ELSE n.registered_at END,
    updated_at = now(),
    last_heartbeat = GREATEST(n.last_heartbeat, EXCLUDED.last_heartbeat),
    last_seen_at = now(),
    last_event_id = EXCLUDED.last_event_id,
    last_event_timestamp = EXCLUDED.last_event_timestamp,
    deregistered_at = EXCLUDED.deregistered_at
WHERE (n.last_event_timestamp, n.last_event_id) < (EXCLUDED.last_event_timestamp, EXCLUDED.last_event_id)
RETURNING n.node_id, n.node_type, n.health_status, n.network_id, n.deployment_id, n.epoch,
    n.deregistered_at IS NOT NULL AS deregistered, (n.xmax = 0) AS inserted,
    NULL::text AS previous_health
"#;

const TOUCH: &str = r#"
UPDATE node_registrations AS n
SET last_heartbeat = u.ts, health_status = u.health, updated_at = now(), last_seen_at = now()
FROM (
    SELECT t.node_id, t.health, t.ts, o.health_status AS previous_health
    FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS t(node_id, health, ts)
    JOIN node_registrations AS o ON o.node_id = t.node_id
) AS u
WHERE n.node_id = u.node_id
  AND n.deregistered_at IS NULL
  AND (n.last_heartbeat IS NULL OR n.last_heartbeat <= u.ts)
RETURNING n.node_id, n.node_type, n.health_status, n.network_id, n.deployment_id, n.epoch,
    false AS deregistered, false AS inserted, u.previous_health
"#;

/// Silent nodes turn critical; their previous health is returned for the topology stream.
const MARK_SILENT: &str = r#"
UPDATE node_registrations AS n
SET health_status = 'critical', updated_at = now()
FROM (
    SELECT node_id, health_status AS previous_health FROM node_registrations
    WHERE deregistered_at IS NULL AND health_status <> 'critical'
      AND last_seen_at < now() - make_interval(secs => $1)
    FOR UPDATE
) AS u
WHERE n.node_id = u.node_id
RETURNING n.node_id, n.node_type, n.health_status, n.network_id, n.deployment_id, n.epoch,
    false AS deregistered, false AS inserted, u.previous_health
"#;

/// Nodes silent past expiry are deregistered. The ordering columns stay as they are, so
/// the node's next introspection registers it again.
const EXPIRE_SILENT: &str = r#"
UPDATE node_registrations AS n
SET deregistered_at = now(), updated_at = now()
WHERE deregistered_at IS NULL AND last_seen_at < now() - make_interval(secs => $1)
RETURNING n.*
"#;

impl PostgresSink {
    pub fn new(pool: PgPool, registry_id: impl Into<String>) -> Self {
        Self {
            pool,
            registry_id: registry_id.into(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes registrations in one statement. A record whose `(event_timestamp, event_id)`
    /// is not newer than the stored row's changes nothing, which makes replays and
    /// out-of-order deliveries harmless. `deregistered` marks shutdown introspections:
    /// the row stays as a tombstone so that an older introspection cannot bring it back.
    /// Returns the node ids whose row changed.
    pub async fn upsert<R: Borrow<NodeRecord>>(
        &self,
        writes: &[(R, bool)],
    ) -> Result<Vec<String>, PostgresError> {
        let changed = self.upsert_changes(writes).await?;
        Ok(changed.into_iter().map(|node| node.node_id).collect())
    }

    /// Writes registrations like [`PostgresSink::upsert`] and returns the changed rows.
    /// Records are borrowed, so callers that hold them elsewhere need not copy them.
    pub async fn upsert_changes<R: Borrow<NodeRecord>>(
        &self,
        writes: &[(R, bool)],
    ) -> Result<Vec<ChangedNode>, PostgresError> {
        let writes = latest_per_node(writes);
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut columns = UpsertColumns::with_capacity(writes.len());
        for (record, deregistered) in writes {
            columns.push(record, deregistered);
        }
        let changed: Vec<ChangedNode> = sqlx::query_as(UPSERT)
            .bind(&self.registry_id)
            .bind(columns.node_id)
            .bind(columns.node_type)
            .bind(columns.node_role)
            .bind(columns.node_version)
            .bind(columns.capabilities)
            .bind(columns.endpoints)
            .bind(columns.metadata)
            .bind(columns.health_status)
            .bind(columns.health_endpoint)
            .bind(columns.network_id)
            .bind(columns.deployment_id)
            .bind(columns.epoch)
            .bind(columns.event_id)
            .bind(columns.event_timestamp)
            .bind(columns.deregistered)
            .fetch_all(&self.pool)
            .await
            .map_err(PostgresError::query("upsert node_registrations"))?;
        Ok(changed)
    }

    /// Records heartbeats of registered nodes in one statement. Nodes that are unknown or
    /// deregistered are left alone, so a late heartbeat never resurrects a node. Returns
    /// the node ids that were updated.
    pub async fn touch(
        &self,
        touches: &[HeartbeatTouch],
    ) -> Result<Vec<ChangedNode>, PostgresError> {
        let mut latest: HashMap<&str, &HeartbeatTouch> = HashMap::new();
        for touch in touches {
            let entry = latest.entry(touch.node_id.as_str()).or_insert(touch);
            if touch.timestamp > entry.timestamp {
                *entry = touch;
            }
        }
        if latest.is_empty() {
            return Ok(Vec::new());
        }
        let node_ids: Vec<&str> = latest.keys().copied().collect();
        let health: Vec<&str> = node_ids
            .iter()
            .map(|id| latest[id].health_status.as_str())
            .collect();
        let timestamps: Vec<DateTime<Utc>> =
            node_ids.iter().map(|id| latest[id].timestamp).collect();
        let updated: Vec<ChangedNode> = sqlx::query_as(TOUCH)
            .bind(&node_ids)
            .bind(&health)
            .bind(&timestamps)
            .fetch_all(&self.pool)
            .await
            .map_err(PostgresError::query("update heartbeats"))?;
        Ok(updated)
    }

    /// Turns nodes silent for longer than `timeout` critical and returns them.
    pub async fn mark_silent_critical(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Vec<ChangedNode>, PostgresError> {
        sqlx::query_as(MARK_SILENT)
            .bind(timeout.as_secs_f64())
            .fetch_all(&self.pool)
            .await
            .map_err(PostgresError::query("mark silent nodes critical"))
    }

    /// Deregisters nodes silent for longer than `after` and returns their rows.
    pub async fn expire_silent(
        &self,
        after: std::time::Duration,
    ) -> Result<Vec<StoredNode>, PostgresError> {
        sqlx::query_as(EXPIRE_SILENT)
            .bind(after.as_secs_f64())
            .fetch_all(&self.pool)
            .await
            .map_err(PostgresError::query("expire silent nodes"))
    }

    /// Sets the health of registered nodes, for the liveness sweep.
    pub async fn set_health(
        &self,
        node_ids: &[String],
        health: HealthStatus,
    ) -> Result<u64, PostgresError> {
        let result = sqlx::query(
            "UPDATE node_registrations SET health_status = $2, updated_at = now() \
             WHERE node_id = ANY($1) AND deregistered_at IS NULL AND health_status <> $2",
        )
        .bind(node_ids)
        .bind(health.as_str())
        .execute(&self.pool)
        .await
        .map_err(PostgresError::query("set health"))?;
        Ok(result.rows_affected())
    }

    pub async fn get(&self, node_id: &str) -> Result<Option<StoredNode>, PostgresError> {
        sqlx::query_as("SELECT * FROM node_registrations WHERE node_id = $1")
            .bind(node_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(PostgresError::query("select node"))
    }

    /// Lists the node id and health of every row that is not a tombstone, ordered by
    /// node id. Only these two columns are read, so a pass over a large registry stays
    /// small in memory.
    pub async fn list_live_health(&self) -> Result<Vec<(String, String)>, PostgresError> {
        sqlx::query_as(
            "SELECT node_id, health_status FROM node_registrations \
             WHERE deregistered_at IS NULL ORDER BY node_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(PostgresError::query("list live nodes"))
    }

    /// Reads the rows of `node_ids` that are not tombstones.
    pub async fn get_live(&self, node_ids: &[&str]) -> Result<Vec<StoredNode>, PostgresError> {
        if node_ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as(
            "SELECT * FROM node_registrations \
             WHERE node_id = ANY($1) AND deregistered_at IS NULL ORDER BY node_id",
        )
        .bind(node_ids)
        .fetch_all(&self.pool)
        .await
        .map_err(PostgresError::query("select live nodes"))
    }

    /// Returns the ordering key `(last_event_timestamp, last_event_id)` and whether the
    /// row is a tombstone, for each of `node_ids` that has a row.
    pub async fn event_keys(
        &self,
        node_ids: &[&str],
    ) -> Result<HashMap<String, RowKey>, PostgresError> {
        if node_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, DateTime<Utc>, Uuid, bool)> = sqlx::query_as(
            "SELECT node_id, last_event_timestamp, last_event_id, deregistered_at IS NOT NULL \
             FROM node_registrations WHERE node_id = ANY($1)",
        )
        .bind(node_ids)
        .fetch_all(&self.pool)
        .await
        .map_err(PostgresError::query("select event keys"))?;
        Ok(rows
            .into_iter()
            .map(|(node_id, timestamp, event_id, deregistered)| {
                (
                    node_id,
                    RowKey {
                        event: (timestamp, event_id),
                        deregistered,
                    },
                )
            })
            .collect())
    }

    /// Lists up to `limit` registered rows of this registry that match every given
    /// filter exactly, ordered by node id in byte order (`COLLATE "C"`), for keyset
    /// pagination across registries by `(node_id, registry_id)`.
    ///
    /// `after` is the `(node_id, registry_id)` of the last row of the previous page:
    /// rows sort after it when their node id is greater, or equal with this registry's
    /// id sorting after `registry_id`.
    // NOTE: the ordering cannot use the primary key index, whose collation is the
    // database default, so every page sorts the matching rows (a top-N sort).
    pub async fn list_page(
        &self,
        node_type: Option<&str>,
        health: Option<HealthStatus>,
        network_id: Option<&str>,
        deployment_id: Option<&str>,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<StoredNode>, PostgresError> {
        let after_node_id = after.map(|(node_id, _)| node_id);
        let include_after_node_id =
            after.is_some_and(|(_, registry_id)| self.registry_id.as_str() > registry_id);
        sqlx::query_as(
            "SELECT * FROM node_registrations \
             WHERE deregistered_at IS NULL AND registry_id = $1 \
               AND ($2::text IS NULL OR node_type = $2) \
               AND ($3::text IS NULL OR health_status = $3) \
               AND ($4::text IS NULL OR network_id = $4) \
               AND ($5::text IS NULL OR deployment_id = $5) \
               AND ($6::text IS NULL OR node_id COLLATE \"C\" > $6 \
                    OR (node_id = $6 AND $7)) \
             ORDER BY node_id COLLATE \"C\" \
             LIMIT $8",
        )
        .bind(&self.registry_id)
        .bind(node_type)
        .bind(health.map(HealthStatus::as_str))
        .bind(network_id)
        .bind(deployment_id)
        .bind(after_node_id)
        .bind(include_after_node_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(PostgresError::query("list nodes page"))
    }

    /// Counts registered and healthy nodes.
    pub async fn counts(&self) -> Result<(i64, i64), PostgresError> {
        sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE health_status = 'healthy') \
             FROM node_registrations WHERE deregistered_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(PostgresError::query("count nodes"))
    }

    /// Removes one row, tombstone or not. Returns whether a row existed.
    pub async fn delete(&self, node_id: &str) -> Result<bool, PostgresError> {
        let result = sqlx::query("DELETE FROM node_registrations WHERE node_id = $1")
            .bind(node_id)
            .execute(&self.pool)
            .await
            .map_err(PostgresError::query("delete node"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Removes every row this registry wrote, for the `Delete` cleanup policy.
    pub async fn delete_all(&self) -> Result<u64, PostgresError> {
        let result = sqlx::query("DELETE FROM node_registrations WHERE registry_id = $1")
            .bind(&self.registry_id)
            .execute(&self.pool)
            .await
            .map_err(PostgresError::query("delete registry rows"))?;
        Ok(result.rows_affected())
    }

    /// Runs `SELECT 1`, to report whether the server is reachable.
    pub async fn ping(&self) -> Result<(), PostgresError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(PostgresError::query("ping"))?;
        Ok(())
    }
}

/// Keeps one write per node (the newest event), because one INSERT ... ON CONFLICT
/// statement may not touch the same row twice.
fn latest_per_node<R: Borrow<NodeRecord>>(writes: &[(R, bool)]) -> Vec<(&NodeRecord, bool)> {
    let mut latest: HashMap<&str, (&NodeRecord, bool)> = HashMap::new();
    for (record, deregistered) in writes {
        let record = record.borrow();
        let candidate = (record, *deregistered);
        match latest.get(record.node_id.as_str()) {
            Some((current, _))
                if (current.event_timestamp, current.event_id)
                    >= (record.event_timestamp, record.event_id) => {}
            _ => {
                latest.insert(record.node_id.as_str(), candidate);
            }
        }
    }
    latest.into_values().collect()
}

#[derive(Default)]
struct UpsertColumns<'a> {
    node_id: Vec<&'a str>,
    node_type: Vec<&'a str>,
    node_role: Vec<Option<&'a str>>,
    node_version: Vec<Option<&'a str>>,
    capabilities: Vec<Json<&'a serde_json::Value>>,
    endpoints: Vec<Json<&'a std::collections::BTreeMap<String, String>>>,
    metadata: Vec<Json<&'a serde_json::Value>>,
    health_status: Vec<&'static str>,
    health_endpoint: Vec<Option<&'a str>>,
    network_id: Vec<Option<&'a str>>,
    deployment_id: Vec<Option<&'a str>>,
    epoch: Vec<Option<i64>>,
    event_id: Vec<Uuid>,
    event_timestamp: Vec<DateTime<Utc>>,
    deregistered: Vec<bool>,
}

impl<'a> UpsertColumns<'a> {
    fn with_capacity(capacity: usize) -> Self {
        let mut columns = Self::default();
        columns.node_id.reserve(capacity);
        columns
    }

    fn push(&mut self, record: &'a NodeRecord, deregistered: bool) {
        self.node_id.push(&record.node_id);
        self.node_type.push(&record.node_type);
        self.node_role.push(record.node_role.as_deref());
        self.node_version.push(record.node_version.as_deref());
        self.capabilities.push(Json(&record.capabilities));
        self.endpoints.push(Json(&record.endpoints));
        self.metadata.push(Json(&record.metadata));
        self.health_status.push(record.health_status.as_str());
        self.health_endpoint.push(record.health_endpoint());
        self.network_id.push(record.network_id.as_deref());
        self.deployment_id.push(record.deployment_id.as_deref());
        self.epoch.push(record.epoch);
        self.event_id.push(record.event_id);
        self.event_timestamp.push(record.event_timestamp);
        self.deregistered.push(deregistered);
    }
}
