//! The tolerant reader: turns a Kafka message value into a typed event, or into a
//! [`ReadError`] with the reason for rejecting it.

use serde_json::{Map, Value};

use super::envelope::{Envelope, EventType, WIRE_VERSION};
use super::error::{ReadError, quote};
use super::fields::Fields;
use super::heartbeat::{HeartbeatPayload, read_heartbeat};
use super::introspection::{IntrospectionPayload, read_introspection};
use super::limits::ReadLimits;
use super::precheck::check_raw;
use super::registry_request::{RegistryRequestPayload, read_registry_request};
use super::validate;

/// One received event, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Introspection(Envelope<IntrospectionPayload>),
    Heartbeat(Envelope<HeartbeatPayload>),
    RegistryRequest(Envelope<RegistryRequestPayload>),
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::Introspection(_) => EventType::Introspection,
            Event::Heartbeat(_) => EventType::Heartbeat,
            Event::RegistryRequest(_) => EventType::RegistryRequest,
        }
    }
}

/// Reads one Kafka message value as an `OnexEnvelopeV1` event.
///
/// Checks run from cheapest to dearest: size, UTF-8 and nesting depth on the raw
/// bytes, then JSON parsing, NUL characters anywhere, the envelope and the payload.
/// The reader accepts the variants that producers in the field send. Unknown fields
/// and null optional fields are ignored, and `event_type` may use any case with `-`
/// or `_`. `epoch` may be an integer or a timestamp, timestamps without offset are
/// UTC, and `reason` may sit in the payload or in the envelope metadata.
///
/// Required: `event_id`, `event_type`, `event_timestamp`, `source_node_id` and
/// `payload` in the envelope, and `node_id` in introspection and heartbeat payloads
/// (plus `node_type` in introspections). `envelope_version` and `event_version`
/// default to "1.0".
pub fn read_event(bytes: &[u8], limits: &ReadLimits) -> Result<Event, ReadError> {
    let text = check_raw(bytes, limits)?;
    let message: Value = serde_json::from_str(text).map_err(|error| ReadError::InvalidJson {
        reason: error.to_string(),
    })?;
    validate::reject_nul(&message)?;

    let Value::Object(object) = &message else {
        return Err(ReadError::wrong_type("(top level)", "an object", &message));
    };
    let fields = Fields::new(object, "");

    let event_type_name = fields.required_string("event_type")?;
    let event_type =
        EventType::from_wire(event_type_name).ok_or_else(|| ReadError::UnknownEventType {
            value: quote(event_type_name),
        })?;
    let Some(payload) = fields.object("payload")? else {
        return Err(ReadError::missing("payload"));
    };
    let envelope = read_envelope(&fields, event_type, limits)?;

    let event = match event_type {
        EventType::Introspection => {
            Event::Introspection(read_introspection(envelope, payload, limits)?)
        }
        EventType::Heartbeat => Event::Heartbeat(read_heartbeat(envelope, payload, limits)?),
        EventType::RegistryRequest => {
            Event::RegistryRequest(read_registry_request(envelope, payload, limits)?)
        }
    };
    Ok(event)
}

/// Reads the envelope fields other than the payload.
fn read_envelope(
    fields: &Fields<'_>,
    event_type: EventType,
    limits: &ReadLimits,
) -> Result<Envelope<()>, ReadError> {
    let text_bytes = limits.max_text_bytes;

    let source_node_id = fields.required_string("source_node_id")?;
    validate::check_label(
        "source_node_id",
        source_node_id,
        limits.max_identifier_chars,
    )?;

    Ok(Envelope {
        envelope_version: fields
            .text("envelope_version", text_bytes)?
            .unwrap_or_else(|| WIRE_VERSION.to_owned()),
        event_id: fields.required_uuid("event_id")?,
        event_type,
        event_version: fields
            .text("event_version", text_bytes)?
            .unwrap_or_else(|| WIRE_VERSION.to_owned()),
        event_timestamp: fields.required_timestamp("event_timestamp")?,
        source_node_id: source_node_id.to_owned(),
        source_service: fields.text("source_service", text_bytes)?,
        source_version: fields.text("source_version", text_bytes)?,
        source_instance: fields.text("source_instance", text_bytes)?,
        correlation_id: fields.uuid("correlation_id")?,
        causation_id: fields.uuid("causation_id")?,
        environment: fields.text("environment", text_bytes)?,
        region: fields.text("region", text_bytes)?,
        partition_key: fields.text("partition_key", text_bytes)?,
        payload: (),
        metadata: fields.free_object("metadata", limits.max_object_bytes)?,
    })
}

/// Reads `reason` from the payload, else from the envelope `metadata`, as received
/// after checking it as free text.
pub(crate) fn read_reason(
    payload: &Fields<'_>,
    envelope_metadata: &Map<String, Value>,
    limits: &ReadLimits,
) -> Result<Option<String>, ReadError> {
    if let Some(reason) = payload.text("reason", limits.max_text_bytes)? {
        return Ok(Some(reason));
    }
    Fields::new(envelope_metadata, "metadata.").text("reason", limits.max_text_bytes)
}
