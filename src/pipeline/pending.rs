//! Writes a backend has accepted but not yet made durable, compacted per node.
//!
//! Every write is idempotent and ordered by `(event_timestamp, event_id)`, so only the
//! newest write per node matters. A backend that is down therefore keeps at most one
//! registration and one heartbeat per node, however long the outage.

use std::collections::HashMap;
use std::sync::Arc;

use crate::node::NodeRecord;
use crate::postgres::HeartbeatTouch;

/// A registration change decided from an introspection event. The record is shared, not
/// copied, between the backends' pending writes.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistrationWrite {
    /// Startup or any other introspection: register or update.
    Register(Arc<NodeRecord>),
    /// Shutdown introspection: deregister.
    Deregister(Arc<NodeRecord>),
    /// Expiry by the liveness sweep, which PostgreSQL already recorded: Consul applies it
    /// whatever the order of events, because the node sent nothing newer.
    Expire(Arc<NodeRecord>),
}

impl RegistrationWrite {
    pub fn record(&self) -> &NodeRecord {
        match self {
            RegistrationWrite::Register(record)
            | RegistrationWrite::Deregister(record)
            | RegistrationWrite::Expire(record) => record,
        }
    }

    pub fn is_deregister(&self) -> bool {
        matches!(
            self,
            RegistrationWrite::Deregister(_) | RegistrationWrite::Expire(_)
        )
    }

    fn order_key(&self) -> (chrono::DateTime<chrono::Utc>, uuid::Uuid) {
        let record = self.record();
        (record.event_timestamp, record.event_id)
    }
}

/// Compacted writes for one backend.
#[derive(Debug, Default, Clone)]
pub struct PendingWrites {
    pub registrations: HashMap<String, RegistrationWrite>,
    pub heartbeats: HashMap<String, HeartbeatTouch>,
    /// Health set by the liveness sweep, which PostgreSQL already stores; only Consul
    /// applies these.
    pub health_overrides: HashMap<String, crate::node::HealthStatus>,
}

impl PendingWrites {
    pub fn is_empty(&self) -> bool {
        self.registrations.is_empty()
            && self.heartbeats.is_empty()
            && self.health_overrides.is_empty()
    }

    pub fn len(&self) -> usize {
        self.registrations.len() + self.heartbeats.len() + self.health_overrides.len()
    }

    /// Adds a registration write unless an equal or newer one for the node is pending.
    pub fn add_registration(&mut self, write: RegistrationWrite) {
        let node_id = write.record().node_id.clone();
        match self.registrations.get(&node_id) {
            Some(current) if current.order_key() >= write.order_key() => {}
            _ => {
                if write.is_deregister() {
                    // A heartbeat older than the shutdown must not outlive it.
                    self.heartbeats.remove(&node_id);
                }
                self.registrations.insert(node_id, write);
            }
        }
    }

    /// Adds a heartbeat unless a newer one for the node is pending.
    pub fn add_heartbeat(&mut self, touch: HeartbeatTouch) {
        match self.heartbeats.get(&touch.node_id) {
            Some(current) if current.timestamp >= touch.timestamp => {}
            _ => {
                self.heartbeats.insert(touch.node_id.clone(), touch);
            }
        }
    }

    /// Removes and returns up to `max` writes: registrations first, so that a node's
    /// row exists before its heartbeats are applied, then heartbeats, then health overrides.
    pub fn take_chunk(&mut self, max: usize) -> PendingWrites {
        let mut chunk = PendingWrites::default();
        let keys: Vec<String> = self.registrations.keys().take(max).cloned().collect();
        for key in keys {
            if let Some(write) = self.registrations.remove(&key) {
                chunk.registrations.insert(key, write);
            }
        }
        let room = max.saturating_sub(chunk.len());
        let keys: Vec<String> = self.heartbeats.keys().take(room).cloned().collect();
        for key in keys {
            if let Some(touch) = self.heartbeats.remove(&key) {
                chunk.heartbeats.insert(key, touch);
            }
        }
        let room = max.saturating_sub(chunk.len());
        let keys: Vec<String> = self.health_overrides.keys().take(room).cloned().collect();
        for key in keys {
            if let Some(health) = self.health_overrides.remove(&key) {
                chunk.health_overrides.insert(key, health);
            }
        }
        chunk
    }

    /// Puts back a chunk whose write failed. Writes that arrived meanwhile are newer and
    /// win over the chunk's.
    pub fn restore(&mut self, chunk: PendingWrites) {
        for write in chunk.registrations.into_values() {
            self.add_registration(write);
        }
        for touch in chunk.heartbeats.into_values() {
            self.add_heartbeat(touch);
        }
        for (node_id, health) in chunk.health_overrides {
            self.health_overrides.entry(node_id).or_insert(health);
        }
    }

    /// Moves every write of `other` into `self`, keeping the newest per node.
    pub fn merge(&mut self, other: PendingWrites) {
        for write in other.registrations.into_values() {
            self.add_registration(write);
        }
        for touch in other.heartbeats.into_values() {
            self.add_heartbeat(touch);
        }
        self.health_overrides.extend(other.health_overrides);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::HealthStatus;
    use chrono::{TimeZone, Utc};
    use std::collections::BTreeMap;
    use uuid::Uuid;

    fn record(node_id: &str, second: u32, version: &str) -> Arc<NodeRecord> {
        Arc::new(NodeRecord {
            node_id: node_id.to_owned(),
            node_type: "reducer".to_owned(),
            node_role: None,
            node_version: Some(version.to_owned()),
            capabilities: serde_json::json!({}),
            endpoints: BTreeMap::new(),
            metadata: serde_json::json!({}),
            health_status: HealthStatus::Healthy,
            network_id: None,
            deployment_id: None,
            epoch: None,
            event_id: Uuid::new_v4(),
            event_timestamp: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap(),
        })
    }

    #[test]
    fn newer_registration_wins() {
        let mut pending = PendingWrites::default();
        pending.add_registration(RegistrationWrite::Register(record("a", 2, "new")));
        pending.add_registration(RegistrationWrite::Register(record("a", 1, "old")));
        let kept = pending.registrations["a"].record();
        assert_eq!(kept.node_version.as_deref(), Some("new"));
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn deregister_drops_pending_heartbeat() {
        let mut pending = PendingWrites::default();
        pending.add_heartbeat(HeartbeatTouch {
            node_id: "a".to_owned(),
            health_status: HealthStatus::Degraded,
            timestamp: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap(),
        });
        pending.add_registration(RegistrationWrite::Deregister(record("a", 2, "v")));
        assert!(pending.heartbeats.is_empty());
        assert!(pending.registrations["a"].is_deregister());
    }

    #[test]
    fn chunks_take_registrations_first() {
        let mut pending = PendingWrites::default();
        for second in 0..3 {
            pending.add_registration(RegistrationWrite::Register(record(
                &format!("n{second}"),
                second,
                "v",
            )));
        }
        pending.add_heartbeat(HeartbeatTouch {
            node_id: "n0".to_owned(),
            health_status: HealthStatus::Healthy,
            timestamp: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 9).unwrap(),
        });
        let first = pending.take_chunk(2);
        assert_eq!(first.registrations.len(), 2);
        assert!(first.heartbeats.is_empty());
        let second = pending.take_chunk(2);
        assert_eq!(second.registrations.len(), 1);
        assert_eq!(second.heartbeats.len(), 1);
        assert!(pending.is_empty());
    }

    #[test]
    fn restore_keeps_newer_writes() {
        let mut pending = PendingWrites::default();
        pending.add_registration(RegistrationWrite::Register(record("a", 1, "old")));
        let chunk = pending.take_chunk(10);
        pending.add_registration(RegistrationWrite::Register(record("a", 2, "new")));
        pending.restore(chunk);
        assert_eq!(
            pending.registrations["a"].record().node_version.as_deref(),
            Some("new")
        );
    }

    #[test]
    fn merge_keeps_newest_heartbeat() {
        let touch = |second| HeartbeatTouch {
            node_id: "a".to_owned(),
            health_status: HealthStatus::Healthy,
            timestamp: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap(),
        };
        let mut first = PendingWrites::default();
        first.add_heartbeat(touch(5));
        let mut second = PendingWrites::default();
        second.add_heartbeat(touch(3));
        first.merge(second);
        assert_eq!(first.heartbeats["a"].timestamp.timestamp() % 60, 5);
    }
}
