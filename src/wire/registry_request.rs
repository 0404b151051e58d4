//! Registry request: a registry requests that nodes announce themselves again.

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

/// Reason for a registry request. Received spellings match in any ASCII case, with
/// `-` or `_`, and unknown values are kept as [`RequestReason::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestReason {
    Startup,
    StartupRebroadcast,
    Recovery,
    Refresh,
    Manual,
    NodeJoin,
    /// A reason this crate does not know, exactly as received.
    Other(String),
}

impl RequestReason {
    pub fn from_wire(text: &str) -> RequestReason {
        match text.to_ascii_lowercase().replace('-', "_").as_str() {
            "startup" => RequestReason::Startup,
            "startup_rebroadcast" => RequestReason::StartupRebroadcast,
            "recovery" => RequestReason::Recovery,
            "refresh" => RequestReason::Refresh,
            "manual" => RequestReason::Manual,
            "node_join" => RequestReason::NodeJoin,
            _ => RequestReason::Other(text.to_owned()),
        }
    }

    pub fn as_wire(&self) -> &str {
        match self {
            RequestReason::Startup => "startup",
            RequestReason::StartupRebroadcast => "startup_rebroadcast",
            RequestReason::Recovery => "recovery",
            RequestReason::Refresh => "refresh",
            RequestReason::Manual => "manual",
            RequestReason::NodeJoin => "node_join",
            RequestReason::Other(text) => text,
        }
    }
}

impl fmt::Display for RequestReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_wire())
    }
}

impl Serialize for RequestReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_wire())
    }
}

/// Payload of a `registry-request-introspection` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegistryRequestPayload {
    pub registry_id: Option<String>,
    pub reason: Option<RequestReason>,
    #[serde(serialize_with = "timestamp::serialize_option")]
    pub request_timestamp: Option<DateTime<Utc>>,
    /// Node types that should respond, or `None` for all nodes.
    pub target_node_types: Option<Vec<String>>,
    pub response_timeout_ms: Option<u64>,
    pub metadata: Map<String, Value>,
    /// Correlation id that responses carry. The reader fills it from the envelope's
    /// `correlation_id` when the payload has none.
    pub correlation_id: Option<Uuid>,
}

impl RegistryRequestPayload {
    /// Creates a request to all nodes with only the registry id and reason set.
    pub fn new(registry_id: impl Into<String>, reason: RequestReason) -> Self {
        RegistryRequestPayload {
            registry_id: Some(registry_id.into()),
            reason: Some(reason),
            request_timestamp: None,
            target_node_types: None,
            response_timeout_ms: None,
            metadata: Map::new(),
            correlation_id: None,
        }
    }

    /// Returns whether a node of `node_type` should respond to this request.
    pub fn targets(&self, node_type: &str) -> bool {
        match &self.target_node_types {
            None => true,
            Some(types) => types.iter().any(|target| target == node_type),
        }
    }
}

/// Reads a registry request. A `reason` in the payload replaces one in the envelope
/// metadata, and a correlation id missing on one side (envelope or payload) is
/// copied from the other.
pub(crate) fn read_registry_request(
    mut envelope: Envelope<()>,
    payload: &Map<String, Value>,
    limits: &ReadLimits,
) -> Result<Envelope<RegistryRequestPayload>, ReadError> {
    let fields = Fields::new(payload, "payload.");

    let reason = read_reason(&fields, &envelope.metadata, limits)?
        .map(|reason| RequestReason::from_wire(&reason));
    let mut request = RegistryRequestPayload {
        registry_id: fields.label("registry_id", limits.max_identifier_chars)?,
        reason,
        request_timestamp: fields.timestamp("request_timestamp")?,
        target_node_types: read_target_node_types(&fields, limits)?,
        response_timeout_ms: fields.unsigned("response_timeout_ms")?,
        metadata: fields.free_object("metadata", limits.max_object_bytes)?,
        correlation_id: fields.uuid("correlation_id")?,
    };

    request.correlation_id = request.correlation_id.or(envelope.correlation_id);
    envelope.correlation_id = envelope.correlation_id.or(request.correlation_id);
    Ok(envelope.with_payload(request))
}

fn read_target_node_types(
    fields: &Fields<'_>,
    limits: &ReadLimits,
) -> Result<Option<Vec<String>>, ReadError> {
    let field = fields.path("target_node_types");
    let Some(value) = fields.get("target_node_types") else {
        return Ok(None);
    };
    let Value::Array(items) = value else {
        return Err(ReadError::wrong_type(&field, "an array of strings", value));
    };
    if items.len() > limits.max_target_node_types {
        return Err(ReadError::FieldTooLarge {
            field,
            size: items.len(),
            limit: limits.max_target_node_types,
            unit: "entries",
        });
    }

    let mut node_types = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{index}]");
        let Value::String(node_type) = item else {
            return Err(ReadError::wrong_type(&item_field, "a string", item));
        };
        validate::check_node_type(&item_field, node_type)?;
        node_types.push(node_type.clone());
    }
    Ok(Some(node_types))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_spellings() {
        assert_eq!(
            RequestReason::from_wire("STARTUP-REBROADCAST"),
            RequestReason::StartupRebroadcast
        );
        assert_eq!(
            RequestReason::from_wire("node_join"),
            RequestReason::NodeJoin
        );
    }

    #[test]
    fn unknown_reason_kept_as_received() {
        assert_eq!(
            RequestReason::from_wire("Drill"),
            RequestReason::Other("Drill".to_owned())
        );
    }

    #[test]
    fn no_target_types_targets_all() {
        let request = RegistryRequestPayload::new("registry-main", RequestReason::Startup);
        assert!(request.targets("effect"));
    }

    #[test]
    fn target_types_filter() {
        let mut request = RegistryRequestPayload::new("registry-main", RequestReason::Startup);
        request.target_node_types = Some(vec!["reducer".to_owned()]);
        assert!(request.targets("reducer"));
        assert!(!request.targets("effect"));
    }
}
