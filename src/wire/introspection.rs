//! Introspection: a node announces what it is and where it listens.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::envelope::Envelope;
use super::error::ReadError;
use super::fields::Fields;
use super::limits::ReadLimits;
use super::reader::read_reason;
use super::timestamp;
use super::validate;

/// Reason for an introspection. Received spellings match in any ASCII case, with
/// `-` or `_`, and unknown values are kept as [`IntrospectionReason::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IntrospectionReason {
    Startup,
    /// The node is stopping, so the registry deregisters it and never re-registers
    /// it from this event.
    Shutdown,
    /// Sent in response to a registry request.
    RegistryRequest,
    Periodic,
    Heartbeat,
    /// A reason this crate does not know, exactly as received.
    Other(String),
}

impl IntrospectionReason {
    pub fn from_wire(text: &str) -> IntrospectionReason {
        match text.to_ascii_lowercase().replace('-', "_").as_str() {
            "startup" => IntrospectionReason::Startup,
            "shutdown" => IntrospectionReason::Shutdown,
            "registry_request" => IntrospectionReason::RegistryRequest,
            "periodic" => IntrospectionReason::Periodic,
            "heartbeat" => IntrospectionReason::Heartbeat,
            _ => IntrospectionReason::Other(text.to_owned()),
        }
    }

    pub fn as_wire(&self) -> &str {
        match self {
            IntrospectionReason::Startup => "startup",
            IntrospectionReason::Shutdown => "shutdown",
            IntrospectionReason::RegistryRequest => "registry_request",
            IntrospectionReason::Periodic => "periodic",
            IntrospectionReason::Heartbeat => "heartbeat",
            IntrospectionReason::Other(text) => text,
        }
    }
}

impl fmt::Display for IntrospectionReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_wire())
    }
}

impl Serialize for IntrospectionReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_wire())
    }
}

/// Payload of a `node_introspection` event.
///
/// The reason is not a payload field. It is kept in the envelope's `metadata`,
/// where the writer emits it, and read and set with [`Envelope::reason`] and
/// [`Envelope::with_reason`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntrospectionPayload {
    pub node_id: String,
    pub node_type: String,
    pub node_role: Option<String>,
    pub node_version: Option<String>,
    pub capabilities: Map<String, Value>,
    /// Endpoint name to URL. Every URL parses and has a host.
    pub endpoints: BTreeMap<String, String>,
    pub metadata: Map<String, Value>,
    #[serde(serialize_with = "timestamp::serialize_option")]
    pub timestamp: Option<DateTime<Utc>>,
    pub correlation_id: Option<Uuid>,
    pub network_id: Option<String>,
    pub deployment_id: Option<String>,
    /// Rollout counter. A received RFC 3339 timestamp becomes Unix seconds.
    pub epoch: Option<i64>,
}

impl IntrospectionPayload {
    /// Creates a payload with only the required fields set.
    pub fn new(node_id: impl Into<String>, node_type: impl Into<String>) -> Self {
        IntrospectionPayload {
            node_id: node_id.into(),
            node_type: node_type.into(),
            node_role: None,
            node_version: None,
            capabilities: Map::new(),
            endpoints: BTreeMap::new(),
            metadata: Map::new(),
            timestamp: None,
            correlation_id: None,
            network_id: None,
            deployment_id: None,
            epoch: None,
        }
    }
}

impl Envelope<IntrospectionPayload> {
    /// Returns the reason from the envelope's `metadata.reason`. The reader has
    /// already moved a reason sent in the payload there.
    pub fn reason(&self) -> Option<IntrospectionReason> {
        self.metadata
            .get("reason")
            .and_then(Value::as_str)
            .map(IntrospectionReason::from_wire)
    }

    /// Sets `metadata.reason`, where the writer emits the reason.
    pub fn with_reason(mut self, reason: IntrospectionReason) -> Self {
        self.metadata.insert(
            "reason".to_owned(),
            Value::String(reason.as_wire().to_owned()),
        );
        self
    }
}

/// Reads the introspection payload and stores its reason in the envelope metadata.
/// A reason in the payload replaces one in the envelope metadata.
pub(crate) fn read_introspection(
    mut envelope: Envelope<()>,
    payload: &Map<String, Value>,
    limits: &ReadLimits,
) -> Result<Envelope<IntrospectionPayload>, ReadError> {
    let fields = Fields::new(payload, "payload.");
    let introspection = read_payload(&fields, limits)?;

    if let Some(reason) = read_reason(&fields, &envelope.metadata, limits)? {
        envelope
            .metadata
            .insert("reason".to_owned(), Value::String(reason));
    }
    Ok(envelope.with_payload(introspection))
}

fn read_payload(
    fields: &Fields<'_>,
    limits: &ReadLimits,
) -> Result<IntrospectionPayload, ReadError> {
    let node_id = fields.required_string("node_id")?;
    validate::check_node_id(
        &fields.path("node_id"),
        node_id,
        limits.max_identifier_chars,
    )?;

    let node_type = fields.required_string("node_type")?;
    validate::check_node_type(&fields.path("node_type"), node_type)?;

    let node_role = fields.label("node_role", limits.max_identifier_chars)?;
    let node_version = fields.text("node_version", limits.max_text_bytes)?;

    let capabilities = fields.free_object("capabilities", limits.max_object_bytes)?;
    let metadata = fields.free_object("metadata", limits.max_object_bytes)?;
    let endpoints = match fields.object("endpoints")? {
        Some(object) => validate::read_endpoints(&fields.path("endpoints"), object, limits)?,
        None => BTreeMap::new(),
    };

    let network_id = fields.label("network_id", limits.max_identifier_chars)?;
    let deployment_id = fields.label("deployment_id", limits.max_identifier_chars)?;

    Ok(IntrospectionPayload {
        node_id: node_id.to_owned(),
        node_type: node_type.to_owned(),
        node_role,
        node_version,
        capabilities,
        endpoints,
        metadata,
        timestamp: fields.timestamp("timestamp")?,
        correlation_id: fields.uuid("correlation_id")?,
        network_id,
        deployment_id,
        epoch: fields.epoch("epoch")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_spellings() {
        assert_eq!(
            IntrospectionReason::from_wire("SHUTDOWN"),
            IntrospectionReason::Shutdown
        );
        assert_eq!(
            IntrospectionReason::from_wire("registry-request"),
            IntrospectionReason::RegistryRequest
        );
        assert_eq!(
            IntrospectionReason::from_wire("Periodic"),
            IntrospectionReason::Periodic
        );
    }

    #[test]
    fn unknown_reason_kept_as_received() {
        assert_eq!(
            IntrospectionReason::from_wire("Config-Reload"),
            IntrospectionReason::Other("Config-Reload".to_owned())
        );
    }

    #[test]
    fn with_reason_sets_metadata() {
        let payload = IntrospectionPayload::new("node-1", "effect");
        let envelope = Envelope::new(super::super::EventType::Introspection, "node-1", payload)
            .with_reason(IntrospectionReason::Startup);
        assert_eq!(
            envelope.metadata.get("reason"),
            Some(&Value::from("startup"))
        );
        assert_eq!(envelope.reason(), Some(IntrospectionReason::Startup));
    }
}
