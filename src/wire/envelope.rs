//! The `OnexEnvelopeV1` envelope that wraps every event.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::timestamp;

/// Version written to `envelope_version` and `event_version`, and assumed when a
/// received event leaves them out.
pub const WIRE_VERSION: &str = "1.0";

/// Kind of event, from the envelope's `event_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Introspection,
    Heartbeat,
    RegistryRequest,
}

impl EventType {
    /// Parses an `event_type` in any ASCII case, with `-` or `_` between words:
    /// `NODE_INTROSPECTION`, `node-heartbeat`, `registry_request` and
    /// `registry-request-introspection` are all accepted.
    pub fn from_wire(name: &str) -> Option<EventType> {
        let normalized = name.to_ascii_lowercase().replace('-', "_");
        match normalized.as_str() {
            "node_introspection" => Some(EventType::Introspection),
            "node_heartbeat" => Some(EventType::Heartbeat),
            "registry_request" | "registry_request_introspection" => {
                Some(EventType::RegistryRequest)
            }
            _ => None,
        }
    }

    /// Returns the spelling the writer emits, which is the one existing producers
    /// use for each type (so strict consumers still match it).
    pub fn as_wire(self) -> &'static str {
        match self {
            EventType::Introspection => "node_introspection",
            EventType::Heartbeat => "node_heartbeat",
            EventType::RegistryRequest => "registry-request-introspection",
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_wire())
    }
}

/// One event in the `OnexEnvelopeV1` format. The writer emits the fields in this
/// order, absent optional fields as null.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope<P> {
    pub envelope_version: String,
    pub event_id: Uuid,
    pub event_type: EventType,
    pub event_version: String,
    #[serde(serialize_with = "timestamp::serialize")]
    pub event_timestamp: DateTime<Utc>,
    pub source_node_id: String,
    pub source_service: Option<String>,
    pub source_version: Option<String>,
    pub source_instance: Option<String>,
    pub correlation_id: Option<Uuid>,
    /// Id of the event that caused this one.
    pub causation_id: Option<Uuid>,
    pub environment: Option<String>,
    pub region: Option<String>,
    pub partition_key: Option<String>,
    pub payload: P,
    pub metadata: Map<String, Value>,
}

impl<P> Envelope<P> {
    /// Creates an envelope with a new random event id, version 1.0 and the current
    /// time, without the optional fields.
    ///
    /// The timestamp is cut to whole microseconds, the precision of PostgreSQL
    /// `timestamptz`, so that a stored copy compares equal to the event.
    pub fn new(event_type: EventType, source_node_id: impl Into<String>, payload: P) -> Self {
        Envelope {
            envelope_version: WIRE_VERSION.to_owned(),
            event_id: Uuid::new_v4(),
            event_type,
            event_version: WIRE_VERSION.to_owned(),
            event_timestamp: Utc::now().trunc_subsecs(6),
            source_node_id: source_node_id.into(),
            source_service: None,
            source_version: None,
            source_instance: None,
            correlation_id: None,
            causation_id: None,
            environment: None,
            region: None,
            partition_key: None,
            payload,
            metadata: Map::new(),
        }
    }

    /// Returns the same envelope around another payload.
    pub fn with_payload<Q>(self, payload: Q) -> Envelope<Q> {
        Envelope {
            envelope_version: self.envelope_version,
            event_id: self.event_id,
            event_type: self.event_type,
            event_version: self.event_version,
            event_timestamp: self.event_timestamp,
            source_node_id: self.source_node_id,
            source_service: self.source_service,
            source_version: self.source_version,
            source_instance: self.source_instance,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            environment: self.environment,
            region: self.region,
            partition_key: self.partition_key,
            payload,
            metadata: self.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_spellings() {
        let cases = [
            ("NODE_INTROSPECTION", EventType::Introspection),
            ("node_introspection", EventType::Introspection),
            ("node-introspection", EventType::Introspection),
            ("Node-Introspection", EventType::Introspection),
            ("NODE_HEARTBEAT", EventType::Heartbeat),
            ("node-heartbeat", EventType::Heartbeat),
            ("REGISTRY_REQUEST", EventType::RegistryRequest),
            ("registry-request", EventType::RegistryRequest),
            ("registry-request-introspection", EventType::RegistryRequest),
            ("REGISTRY_REQUEST_INTROSPECTION", EventType::RegistryRequest),
        ];
        for (name, expected) in cases {
            assert_eq!(EventType::from_wire(name), Some(expected), "{name}");
        }
    }

    #[test]
    fn event_type_unknown() {
        assert_eq!(EventType::from_wire("node_teleportation"), None);
    }

    #[test]
    fn event_type_wire_spelling_parses_back() {
        for event_type in [
            EventType::Introspection,
            EventType::Heartbeat,
            EventType::RegistryRequest,
        ] {
            assert_eq!(EventType::from_wire(event_type.as_wire()), Some(event_type));
        }
    }

    #[test]
    fn new_envelope_defaults() {
        let envelope = Envelope::new(EventType::Heartbeat, "node-1", ());
        assert_eq!(envelope.envelope_version, "1.0");
        assert_eq!(envelope.event_version, "1.0");
        assert_eq!(envelope.source_node_id, "node-1");
        assert_eq!(envelope.event_id.get_version_num(), 4);
        assert_eq!(envelope.event_timestamp.timestamp_subsec_nanos() % 1000, 0);
        assert!(envelope.metadata.is_empty());
    }
}
