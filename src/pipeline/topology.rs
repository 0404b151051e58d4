//! Topology change events (pure): what the registry publishes on the compacted topology
//! topic, keyed by node id, after each registration change.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::postgres::ChangedNode;

/// Kind of registration change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Registered,
    Updated,
    HealthChanged,
    Deregistered,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Registered => "registered",
            Change::Updated => "updated",
            Change::HealthChanged => "health_changed",
            Change::Deregistered => "deregistered",
        }
    }
}

/// One record for the topology topic: a key and a value, or `None` for a tombstone.
pub type TopologyRecord = (String, Option<Vec<u8>>);

/// Builds the records of one change. A deregistration is followed by a tombstone, so a
/// compacted topic ends up holding exactly the registered nodes.
pub fn records(
    change: Change,
    node: &ChangedNode,
    registry_id: &str,
    source_node_id: &str,
) -> Vec<TopologyRecord> {
    let event = json!({
        "envelope_version": "1.0",
        "event_id": Uuid::new_v4(),
        "event_type": "topology_change",
        "event_version": "1.0",
        "event_timestamp": Utc::now().to_rfc3339(),
        "source_node_id": source_node_id,
        "source_service": "registry-operator",
        "partition_key": node.node_id,
        "payload": {
            "change": change.as_str(),
            "registry_id": registry_id,
            "node_id": node.node_id,
            "node_type": node.node_type,
            "health_status": node.health_status,
            "network_id": node.network_id,
            "deployment_id": node.deployment_id,
            "epoch": node.epoch,
        },
        "metadata": {},
    });
    let mut records = vec![(node.node_id.clone(), Some(event.to_string().into_bytes()))];
    if change == Change::Deregistered {
        records.push((node.node_id.clone(), None));
    }
    records
}

/// Classifies a changed row of an introspection write.
pub fn registration_change(node: &ChangedNode) -> Change {
    if node.deregistered {
        Change::Deregistered
    } else if node.inserted {
        Change::Registered
    } else {
        Change::Updated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(deregistered: bool, inserted: bool) -> ChangedNode {
        ChangedNode {
            node_id: "n1".to_owned(),
            node_type: "reducer".to_owned(),
            health_status: "healthy".to_owned(),
            network_id: None,
            deployment_id: Some("d".to_owned()),
            epoch: Some(2),
            deregistered,
            inserted,
            previous_health: None,
        }
    }

    #[test]
    fn deregistration_adds_tombstone() {
        let records = records(Change::Deregistered, &node(true, false), "reg", "reg-pod");
        assert_eq!(records.len(), 2);
        assert_eq!(records[1], ("n1".to_owned(), None));
        let value: serde_json::Value =
            serde_json::from_slice(records[0].1.as_ref().expect("value")).expect("JSON");
        assert_eq!(value["payload"]["change"], "deregistered");
    }

    #[test]
    fn registration_kinds() {
        assert_eq!(registration_change(&node(false, true)), Change::Registered);
        assert_eq!(registration_change(&node(false, false)), Change::Updated);
        assert_eq!(
            registration_change(&node(true, false)),
            Change::Deregistered
        );
    }
}
