//! The strict writer: encodes envelopes exactly in the `OnexEnvelopeV1` format.

use serde::Serialize;

use super::envelope::Envelope;

/// Encodes an envelope as a compact JSON Kafka message value.
///
/// Every envelope field is written, absent ones as null, and nothing else. An
/// introspection's reason travels in `metadata.reason` (see
/// [`Envelope::with_reason`](super::Envelope::with_reason)).
///
/// Fails only when the payload's own `Serialize` implementation fails, or when it
/// produces a map with non-string keys. The payload types of this module never do.
pub fn encode_event<P: Serialize>(envelope: &Envelope<P>) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(envelope)
}

/// Returns the Kafka message key: `partition_key`, else `correlation_id`, else
/// `source_node_id`.
pub fn kafka_key<P>(envelope: &Envelope<P>) -> String {
    if let Some(partition_key) = &envelope.partition_key {
        return partition_key.clone();
    }
    if let Some(correlation_id) = envelope.correlation_id {
        return correlation_id.to_string();
    }
    envelope.source_node_id.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EventType;
    use uuid::Uuid;

    #[test]
    fn key_prefers_partition_key() {
        let mut envelope = Envelope::new(EventType::Heartbeat, "node-1", ());
        envelope.partition_key = Some("partition".to_owned());
        envelope.correlation_id = Some(Uuid::nil());
        assert_eq!(kafka_key(&envelope), "partition");
    }

    #[test]
    fn key_falls_back_to_correlation_id() {
        let mut envelope = Envelope::new(EventType::Heartbeat, "node-1", ());
        envelope.correlation_id = Some(Uuid::nil());
        assert_eq!(kafka_key(&envelope), "00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn key_falls_back_to_source_node_id() {
        let envelope = Envelope::new(EventType::Heartbeat, "node-1", ());
        assert_eq!(kafka_key(&envelope), "node-1");
    }

    #[test]
    fn encoded_envelope_has_every_field() {
        let envelope = Envelope::new(EventType::Heartbeat, "node-1", ());
        let bytes = encode_event(&envelope).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let serde_json::Value::Object(object) = value else {
            panic!("encoded event is not an object");
        };
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected = vec![
            "envelope_version",
            "event_id",
            "event_type",
            "event_version",
            "event_timestamp",
            "source_node_id",
            "source_service",
            "source_version",
            "source_instance",
            "correlation_id",
            "causation_id",
            "environment",
            "region",
            "partition_key",
            "payload",
            "metadata",
        ];
        let mut sorted_keys = keys.clone();
        sorted_keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(sorted_keys, expected);
        assert_eq!(object["region"], serde_json::Value::Null);
    }
}
