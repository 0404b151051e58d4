//! Heartbeat: a node reports that it is alive, and its health.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::envelope::Envelope;
use super::error::ReadError;
use super::fields::Fields;
use super::limits::ReadLimits;
use super::timestamp;
use super::validate;
use crate::node::HealthStatus;

/// Payload of a `node_heartbeat` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeartbeatPayload {
    pub node_id: String,
    pub node_type: Option<String>,
    /// Reported health, `healthy` when the heartbeat leaves it out.
    pub health_status: HealthStatus,
    pub uptime_seconds: Option<u64>,
    #[serde(serialize_with = "timestamp::serialize_option")]
    pub last_activity_timestamp: Option<DateTime<Utc>>,
    pub active_operations: Option<u64>,
    pub resource_usage: Map<String, Value>,
    pub metadata: Map<String, Value>,
    #[serde(serialize_with = "timestamp::serialize_option")]
    pub timestamp: Option<DateTime<Utc>>,
}

impl HeartbeatPayload {
    /// Creates a payload with only the node id and health set.
    pub fn new(node_id: impl Into<String>, health_status: HealthStatus) -> Self {
        HeartbeatPayload {
            node_id: node_id.into(),
            node_type: None,
            health_status,
            uptime_seconds: None,
            last_activity_timestamp: None,
            active_operations: None,
            resource_usage: Map::new(),
            metadata: Map::new(),
            timestamp: None,
        }
    }
}

pub(crate) fn read_heartbeat(
    envelope: Envelope<()>,
    payload: &Map<String, Value>,
    limits: &ReadLimits,
) -> Result<Envelope<HeartbeatPayload>, ReadError> {
    let fields = Fields::new(payload, "payload.");

    let node_id = fields.required_string("node_id")?;
    validate::check_node_id(
        &fields.path("node_id"),
        node_id,
        limits.max_identifier_chars,
    )?;

    let node_type = fields.string("node_type")?;
    if let Some(node_type) = node_type {
        validate::check_node_type(&fields.path("node_type"), node_type)?;
    }

    let health_status = match fields.string("health_status")? {
        Some(text) => HealthStatus::from_str(text).map_err(|_| {
            ReadError::invalid_value(
                &fields.path("health_status"),
                text,
                "expected healthy, degraded, unhealthy, critical or recovering",
            )
        })?,
        None => HealthStatus::Healthy,
    };

    let heartbeat = HeartbeatPayload {
        node_id: node_id.to_owned(),
        node_type: node_type.map(str::to_owned),
        health_status,
        uptime_seconds: fields.unsigned("uptime_seconds")?,
        last_activity_timestamp: fields.timestamp("last_activity_timestamp")?,
        active_operations: fields.unsigned("active_operations")?,
        resource_usage: fields.free_object("resource_usage", limits.max_object_bytes)?,
        metadata: fields.free_object("metadata", limits.max_object_bytes)?,
        timestamp: fields.timestamp("timestamp")?,
    };
    Ok(envelope.with_payload(heartbeat))
}
