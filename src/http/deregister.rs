//! Deregistration of one node through the API: its Consul service, a PostgreSQL
//! tombstone and a tombstone on the topology topic, in that order.
//!
//! Consul goes first so that a failure leaves PostgreSQL unchanged and the request
//! can simply be repeated; Consul treats a service that is already gone as removed.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::consul::ConsulError;
use crate::instance::InstanceState;
use crate::kafka::KafkaError;
use crate::node::{HealthStatus, NodeRecord};
use crate::postgres::{PostgresError, StoredNode};

/// A deregistration that did not complete, saying which steps did.
#[derive(Debug, thiserror::Error)]
pub enum DeregisterError {
    #[error(
        "removing node {node_id} of registry {registry} from Consul failed, so nothing was changed: {source}"
    )]
    Consul {
        node_id: String,
        registry: String,
        #[source]
        source: ConsulError,
    },

    #[error(
        "node {node_id} of registry {registry} was removed from Consul, but writing its PostgreSQL tombstone failed: {source}; repeat the request"
    )]
    Postgres {
        node_id: String,
        registry: String,
        #[source]
        source: PostgresError,
    },

    #[error(
        "node {node_id} of registry {registry} was removed from Consul, but a newer event changed its PostgreSQL row meanwhile; read the node again and repeat the request"
    )]
    Changed { node_id: String, registry: String },

    #[error(
        "the stored row of node {node_id} in registry {registry} cannot be read back as a registration: {reason}"
    )]
    StoredRow {
        node_id: String,
        registry: String,
        reason: String,
    },

    #[error(
        "node {node_id} of registry {registry} was deregistered from Consul and PostgreSQL, but publishing its tombstone to topic {topic} failed: {source}"
    )]
    Topology {
        node_id: String,
        registry: String,
        topic: String,
        #[source]
        source: KafkaError,
    },
}

impl DeregisterError {
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            DeregisterError::Consul { .. }
            | DeregisterError::Postgres { .. }
            | DeregisterError::Topology { .. } => StatusCode::SERVICE_UNAVAILABLE,
            DeregisterError::Changed { .. } => StatusCode::CONFLICT,
            DeregisterError::StoredRow { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Steps of a completed deregistration, returned as the response body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deregistration {
    pub node_id: String,
    pub registry: String,
    pub consul: ConsulOutcome,
    pub postgres: PostgresOutcome,
    pub topology: TopologyOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsulOutcome {
    pub service_id: String,
    pub deregistered: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostgresOutcome {
    pub tombstone: bool,
    pub deregistered_at: DateTime<Utc>,
    pub event_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopologyOutcome {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Deregisters `node`, a registered row of `state`'s registry.
pub async fn deregister(
    state: &InstanceState,
    node: &StoredNode,
) -> Result<Deregistration, DeregisterError> {
    let node_id = node.node_id.clone();
    let registry = state.config.registry_id.clone();

    state
        .consul_sink
        .deregister(&node_id)
        .await
        .map_err(|source| DeregisterError::Consul {
            node_id: node_id.clone(),
            registry: registry.clone(),
            source,
        })?;

    let record =
        tombstone_record(node, Utc::now()).map_err(|reason| DeregisterError::StoredRow {
            node_id: node_id.clone(),
            registry: registry.clone(),
            reason,
        })?;
    let changed = state
        .postgres_sink
        .upsert(&[(record.clone(), true)])
        .await
        .map_err(|source| DeregisterError::Postgres {
            node_id: node_id.clone(),
            registry: registry.clone(),
            source,
        })?;
    if !changed.contains(&node_id) {
        return Err(DeregisterError::Changed { node_id, registry });
    }

    let topic = state.config.topics.topology.clone();
    let (partition, offset) = state
        .producer
        .publish(&topic, &node_id, None)
        .await
        .map_err(|source| DeregisterError::Topology {
            node_id: node_id.clone(),
            registry: registry.clone(),
            topic: topic.clone(),
            source,
        })?;

    tracing::info!(%node_id, %registry, %topic, partition, offset, "node deregistered through the API");
    Ok(Deregistration {
        node_id: node_id.clone(),
        registry,
        consul: ConsulOutcome {
            service_id: node_id,
            deregistered: true,
        },
        postgres: PostgresOutcome {
            tombstone: true,
            deregistered_at: record.event_timestamp,
            event_id: record.event_id,
        },
        topology: TopologyOutcome {
            topic,
            partition,
            offset,
        },
    })
}

/// Builds the record of the tombstone write: the stored registration with a new
/// event id, timestamped by [`tombstone_timestamp`].
pub fn tombstone_record(node: &StoredNode, now: DateTime<Utc>) -> Result<NodeRecord, String> {
    let endpoints = stored_endpoints(&node.endpoints)?;
    let health_status: HealthStatus = node
        .health_status
        .parse()
        .map_err(|error| format!("health_status: {error}"))?;

    Ok(NodeRecord {
        node_id: node.node_id.clone(),
        node_type: node.node_type.clone(),
        node_role: node.node_role.clone(),
        node_version: node.node_version.clone(),
        capabilities: node.capabilities.clone(),
        endpoints,
        metadata: node.metadata.clone(),
        health_status,
        network_id: node.network_id.clone(),
        deployment_id: node.deployment_id.clone(),
        epoch: node.epoch,
        event_id: Uuid::new_v4(),
        event_timestamp: tombstone_timestamp(now, node.last_event_timestamp),
    })
}

/// Returns `now` in whole microseconds, as PostgreSQL stores it. When the stored
/// event claims a later time, because its producer's clock is ahead, returns one
/// microsecond after that event instead, so that the tombstone wins the
/// `(event_timestamp, event_id)` ordering.
pub fn tombstone_timestamp(now: DateTime<Utc>, last_event: DateTime<Utc>) -> DateTime<Utc> {
    now.trunc_subsecs(6)
        .max(last_event + Duration::microseconds(1))
}

/// Reads the stored `endpoints` column back as endpoint names and URLs.
fn stored_endpoints(
    endpoints: &serde_json::Value,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    serde_json::from_value(endpoints.clone()).map_err(|error| format!("endpoints: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tombstone_timestamped_now() {
        let now = Utc::now();
        let timestamp = tombstone_timestamp(now, now - Duration::seconds(60));
        assert_eq!(timestamp, now.trunc_subsecs(6));
    }

    #[test]
    fn tombstone_after_future_event() {
        let now = Utc::now().trunc_subsecs(6);
        let ahead = now + Duration::seconds(30);
        let timestamp = tombstone_timestamp(now, ahead);
        assert_eq!(timestamp, ahead + Duration::microseconds(1));
    }

    #[test]
    fn stored_endpoints_read_back() {
        let endpoints = stored_endpoints(&json!({"health": "http://10.0.0.1:8080/health"}));
        assert_eq!(
            endpoints.unwrap().get("health").map(String::as_str),
            Some("http://10.0.0.1:8080/health")
        );
    }

    #[test]
    fn stored_endpoints_not_strings() {
        let error = stored_endpoints(&json!({"health": 5})).unwrap_err();
        assert!(error.starts_with("endpoints:"), "{error}");
    }
}
