//! The wire reader and writer against the sample events in `tests/fixtures`, and
//! against bad input built in code.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use registry_operator::node::HealthStatus;
use registry_operator::wire::{
    Envelope, Event, EventType, HeartbeatPayload, IntrospectionPayload, IntrospectionReason,
    ReadError, ReadLimits, RegistryRequestPayload, RequestReason, encode_event, kafka_key,
    read_event,
};
use serde_json::{Value, json};
use uuid::Uuid;

fn fixtures_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

fn fixture_bytes(kind: &str, name: &str) -> Vec<u8> {
    fs::read(fixtures_dir(kind).join(name)).unwrap()
}

fn fixture_value(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes("events", name)).unwrap()
}

/// Lists the message files of a fixture folder, without its README.
fn fixture_files(kind: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixtures_dir(kind))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "README.md")
        .collect();
    names.sort();
    names
}

fn read(bytes: &[u8]) -> Result<Event, ReadError> {
    read_event(bytes, &ReadLimits::default())
}

fn read_json(value: &Value) -> Result<Event, ReadError> {
    read(&serde_json::to_vec(value).unwrap())
}

fn read_fixture(name: &str) -> Event {
    read(&fixture_bytes("events", name)).unwrap()
}

fn rejection_label(value: &Value) -> &'static str {
    match read_json(value) {
        Ok(event) => panic!("expected a rejection, read {event:?}"),
        Err(error) => error.label(),
    }
}

fn introspection(event: Event) -> Envelope<IntrospectionPayload> {
    match event {
        Event::Introspection(envelope) => envelope,
        other => panic!("expected an introspection, read {other:?}"),
    }
}

fn heartbeat(event: Event) -> Envelope<HeartbeatPayload> {
    match event {
        Event::Heartbeat(envelope) => envelope,
        other => panic!("expected a heartbeat, read {other:?}"),
    }
}

fn registry_request(event: Event) -> Envelope<RegistryRequestPayload> {
    match event {
        Event::RegistryRequest(envelope) => envelope,
        other => panic!("expected a registry request, read {other:?}"),
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn uuid(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap()
}

/// Returns sample event 01 with `payload.<field>` replaced.
fn introspection_with(field: &str, value: Value) -> Value {
    let mut event = fixture_value("01-node-introspection-startup.json");
    event["payload"][field] = value;
    event
}

// Sample events

#[test]
fn every_sample_event_is_read() {
    let files = fixture_files("events");
    assert_eq!(files.len(), 5);
    for name in files {
        let result = read(&fixture_bytes("events", &name));
        assert!(result.is_ok(), "{name}: {result:?}");
    }
}

#[test]
fn startup_introspection_fields() {
    let envelope = introspection(read_fixture("01-node-introspection-startup.json"));
    let payload = &envelope.payload;

    assert_eq!(
        envelope.event_id,
        uuid("3f6c2a1e-8b4d-4c1a-9e2f-5a7b8c9d0e11")
    );
    assert_eq!(envelope.event_type, EventType::Introspection);
    assert_eq!(envelope.event_timestamp, utc("2025-11-13T14:05:09.412871Z"));
    assert_eq!(envelope.source_node_id, "orchestrator-7f3a9c");
    assert_eq!(envelope.source_service.as_deref(), Some("omninode-bridge"));
    assert_eq!(envelope.environment.as_deref(), Some("production"));
    assert_eq!(envelope.region.as_deref(), Some("us-west-2"));
    assert_eq!(envelope.correlation_id, None);
    assert_eq!(envelope.reason(), None);
    assert_eq!(kafka_key(&envelope), "orchestrator-7f3a9c");

    assert_eq!(payload.node_id, "orchestrator-7f3a9c");
    assert_eq!(payload.node_type, "orchestrator");
    assert_eq!(payload.node_role, None);
    assert_eq!(payload.network_id.as_deref(), Some("omninode-network-1"));
    assert_eq!(
        payload.deployment_id.as_deref(),
        Some("prod-us-west-2-blue-003")
    );
    assert_eq!(payload.epoch, Some(3));
    assert_eq!(payload.timestamp, Some(utc("2025-11-13T14:05:09.410233Z")));
    assert_eq!(payload.endpoints.len(), 4);
    assert_eq!(
        payload.endpoints.get("health").map(String::as_str),
        Some("http://10.42.3.17:8060/health")
    );
    assert_eq!(
        payload.capabilities["supported_operations"][0],
        "execute_orchestration"
    );
    assert_eq!(payload.metadata["version"], "1.4.2");
}

#[test]
fn heartbeat_fields() {
    let envelope = heartbeat(read_fixture("02-node-heartbeat.json"));
    let payload = &envelope.payload;

    assert_eq!(envelope.event_type, EventType::Heartbeat);
    assert_eq!(envelope.region, None);
    assert_eq!(payload.node_id, "orchestrator-7f3a9c");
    assert_eq!(payload.node_type.as_deref(), Some("orchestrator"));
    assert_eq!(payload.health_status, HealthStatus::Degraded);
    assert_eq!(payload.uptime_seconds, Some(1830));
    assert_eq!(payload.active_operations, Some(7));
    assert_eq!(
        payload.last_activity_timestamp,
        Some(utc("2025-11-13T14:35:39.886511Z"))
    );
    assert_eq!(payload.resource_usage["memory_mb"], 388.9);
}

#[test]
fn registry_request_fields() {
    let envelope = registry_request(read_fixture("03-registry-request-introspection.json"));
    let payload = &envelope.payload;
    let correlation_id = uuid("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d");

    assert_eq!(envelope.event_type, EventType::RegistryRequest);
    assert_eq!(envelope.source_node_id, "registry-main");
    assert_eq!(envelope.correlation_id, Some(correlation_id));
    assert_eq!(kafka_key(&envelope), correlation_id.to_string());
    assert_eq!(payload.registry_id.as_deref(), Some("registry-main"));
    assert_eq!(payload.reason, Some(RequestReason::StartupRebroadcast));
    assert_eq!(payload.target_node_types, None);
    assert_eq!(payload.response_timeout_ms, Some(5000));
    assert_eq!(payload.correlation_id, Some(correlation_id));
}

#[test]
fn registry_response_introspection_fields() {
    let envelope = introspection(read_fixture("04-node-introspection-registry-response.json"));
    let payload = &envelope.payload;
    let correlation_id = uuid("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d");

    assert_eq!(envelope.correlation_id, Some(correlation_id));
    assert_eq!(
        envelope.causation_id,
        Some(uuid("0c5e7f2a-91b3-4d6e-a8f0-2b4c6d8e1f35"))
    );
    assert_eq!(payload.node_id, "reducer-2b81d0");
    assert_eq!(payload.node_type, "reducer");
    assert_eq!(payload.deployment_id.as_deref(), Some("dev-001"));
    assert_eq!(payload.epoch, Some(1));
    assert_eq!(payload.network_id, None);
    assert_eq!(payload.correlation_id, Some(correlation_id));
}

#[test]
fn shutdown_reason_from_envelope_metadata() {
    let envelope = introspection(read_fixture("05-node-introspection-shutdown.json"));

    assert_eq!(envelope.reason(), Some(IntrospectionReason::Shutdown));
    assert_eq!(envelope.payload.node_id, "orchestrator-7f3a9c");
    assert_eq!(envelope.payload.endpoints.len(), 1);
    assert!(envelope.payload.capabilities.is_empty());
}

// Bad sample events

#[test]
fn every_bad_sample_event_is_rejected() {
    let expected_labels = BTreeMap::from([
        ("01-not-json.txt", "invalid_json"),
        ("02-missing-payload.json", "missing_field"),
        ("03-wrong-types.json", "wrong_type"),
        ("04-unknown-event-type.json", "unknown_event_type"),
        ("05-bad-endpoint-url.json", "invalid_endpoint"),
    ]);
    let files = fixture_files("bad-events");
    assert_eq!(files.len(), expected_labels.len());

    for name in files {
        let expected = expected_labels.get(name.as_str()).copied();
        let result = read(&fixture_bytes("bad-events", &name));
        let label = result.as_ref().err().map(ReadError::label);
        assert_eq!(label, expected, "{name}: {result:?}");
    }
}

#[test]
fn missing_payload_names_field() {
    let error = read(&fixture_bytes("bad-events", "02-missing-payload.json")).unwrap_err();
    assert_eq!(
        error,
        ReadError::MissingField {
            field: "payload".to_owned()
        }
    );
}

#[test]
fn wrong_types_names_node_id() {
    let error = read(&fixture_bytes("bad-events", "03-wrong-types.json")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "field payload.node_id is a number, expected a string"
    );
}

#[test]
fn unknown_event_type_names_value() {
    let error = read(&fixture_bytes("bad-events", "04-unknown-event-type.json")).unwrap_err();
    assert_eq!(
        error,
        ReadError::UnknownEventType {
            value: "node_teleportation".to_owned()
        }
    );
}

#[test]
fn bad_endpoint_names_endpoint() {
    let error = read(&fixture_bytes("bad-events", "05-bad-endpoint-url.json")).unwrap_err();
    let ReadError::InvalidEndpoint { name, url, .. } = error else {
        panic!("expected an invalid endpoint, got {error:?}");
    };
    // Endpoints are checked in name order, so `api` comes before `health`.
    assert_eq!(name, "api");
    assert_eq!(url, "not a url");
}

// Bad input built in code

#[test]
fn message_over_one_mebibyte_is_too_large() {
    let bytes = vec![b' '; 1_048_577];
    let error = read(&bytes).unwrap_err();
    assert_eq!(
        error,
        ReadError::TooLarge {
            size: 1_048_577,
            limit: 1_048_576
        }
    );
}

#[test]
fn message_at_one_mebibyte_is_not_too_large() {
    // Pads a valid event with trailing spaces up to exactly the limit.
    let mut bytes = fixture_bytes("events", "01-node-introspection-startup.json");
    bytes.resize(1_048_576, b' ');
    assert!(read(&bytes).is_ok());
}

#[test]
fn invalid_utf8_is_rejected() {
    let mut bytes = fixture_bytes("events", "01-node-introspection-startup.json");
    let position = bytes
        .windows(8)
        .position(|window| window == b"orchestr")
        .unwrap();
    bytes[position] = 0xff;
    let error = read(&bytes).unwrap_err();
    assert_eq!(error.label(), "not_utf8");
}

#[test]
fn nesting_ten_thousand_deep_is_rejected() {
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let text = format!(
        r#"{{"event_type":"node_introspection","payload":{{"node_id":"a","node_type":"b","metadata":{{"deep":{nested}}}}}}}"#
    );
    let error = read(text.as_bytes()).unwrap_err();
    assert_eq!(error, ReadError::TooDeep { limit: 64 });
}

#[test]
fn top_level_array_is_wrong_type() {
    assert_eq!(rejection_label(&json!([1, 2])), "wrong_type");
}

#[test]
fn missing_event_id_is_rejected() {
    let mut event = fixture_value("01-node-introspection-startup.json");
    event.as_object_mut().unwrap().remove("event_id");
    assert_eq!(rejection_label(&event), "missing_field");
}

#[test]
fn invalid_event_id_is_rejected() {
    let mut event = fixture_value("01-node-introspection-startup.json");
    event["event_id"] = json!("42");
    assert_eq!(rejection_label(&event), "invalid_value");
}

#[test]
fn event_type_spellings_are_accepted() {
    let cases = [
        (
            "NODE_INTROSPECTION",
            "01-node-introspection-startup.json",
            EventType::Introspection,
        ),
        (
            "node_introspection",
            "01-node-introspection-startup.json",
            EventType::Introspection,
        ),
        (
            "node-introspection",
            "01-node-introspection-startup.json",
            EventType::Introspection,
        ),
        (
            "NODE_HEARTBEAT",
            "02-node-heartbeat.json",
            EventType::Heartbeat,
        ),
        (
            "node-heartbeat",
            "02-node-heartbeat.json",
            EventType::Heartbeat,
        ),
        (
            "REGISTRY_REQUEST",
            "03-registry-request-introspection.json",
            EventType::RegistryRequest,
        ),
        (
            "registry_request",
            "03-registry-request-introspection.json",
            EventType::RegistryRequest,
        ),
        (
            "registry-request-introspection",
            "03-registry-request-introspection.json",
            EventType::RegistryRequest,
        ),
        (
            "REGISTRY_REQUEST_INTROSPECTION",
            "03-registry-request-introspection.json",
            EventType::RegistryRequest,
        ),
    ];
    for (spelling, fixture, expected) in cases {
        let mut event = fixture_value(fixture);
        event["event_type"] = json!(spelling);
        let read_type = read_json(&event).map(|event| event.event_type());
        assert_eq!(read_type, Ok(expected), "{spelling}");
    }
}

#[test]
fn epoch_as_integer() {
    let event = introspection_with("epoch", json!(42));
    let envelope = introspection(read_json(&event).unwrap());
    assert_eq!(envelope.payload.epoch, Some(42));
}

#[test]
fn epoch_as_rfc3339_string() {
    let event = introspection_with("epoch", json!("2026-01-10T08:00:00+00:00"));
    let envelope = introspection(read_json(&event).unwrap());
    let expected = Utc
        .with_ymd_and_hms(2026, 1, 10, 8, 0, 0)
        .unwrap()
        .timestamp();
    assert_eq!(envelope.payload.epoch, Some(expected));
}

#[test]
fn epoch_as_invalid_string() {
    let event = introspection_with("epoch", json!("green"));
    assert_eq!(rejection_label(&event), "invalid_value");
}

#[test]
fn timestamp_without_offset_is_utc() {
    let mut event = fixture_value("01-node-introspection-startup.json");
    event["event_timestamp"] = json!("2025-11-13T14:05:09.412871");
    let envelope = introspection(read_json(&event).unwrap());
    assert_eq!(envelope.event_timestamp, utc("2025-11-13T14:05:09.412871Z"));
}

#[test]
fn invalid_timestamp_is_rejected() {
    let mut event = fixture_value("01-node-introspection-startup.json");
    event["event_timestamp"] = json!("13/11/2025");
    assert_eq!(rejection_label(&event), "invalid_value");
}

#[test]
fn nul_in_node_id_is_rejected() {
    let event = introspection_with("node_id", json!("orchestrator\u{0}-7f3a9c"));
    let error = read_json(&event).unwrap_err();
    assert_eq!(
        error,
        ReadError::NulCharacter {
            field: "payload.node_id".to_owned()
        }
    );
}

#[test]
fn nul_in_capabilities_is_rejected() {
    let event = introspection_with("capabilities", json!({"note": "a\u{0}b"}));
    assert_eq!(rejection_label(&event), "nul_character");
}

#[test]
fn node_id_with_slash_is_rejected() {
    let event = introspection_with("node_id", json!("orchestrator/7f3a9c"));
    assert_eq!(rejection_label(&event), "invalid_identifier");
}

#[test]
fn node_id_with_space_is_rejected() {
    let event = introspection_with("node_id", json!("orchestrator 7f3a9c"));
    assert_eq!(rejection_label(&event), "invalid_identifier");
}

#[test]
fn node_id_of_129_chars_is_rejected() {
    let event = introspection_with("node_id", json!("a".repeat(129)));
    assert_eq!(rejection_label(&event), "invalid_identifier");
}

#[test]
fn node_id_of_128_chars_is_accepted() {
    let event = introspection_with("node_id", json!("a".repeat(128)));
    let envelope = introspection(read_json(&event).unwrap());
    assert_eq!(envelope.payload.node_id.len(), 128);
}

#[test]
fn node_type_with_dot_is_rejected() {
    let event = introspection_with("node_type", json!("orchestrator.v2"));
    assert_eq!(rejection_label(&event), "invalid_identifier");
}

#[test]
fn deployment_id_of_129_chars_is_rejected() {
    let event = introspection_with("deployment_id", json!("d".repeat(129)));
    assert_eq!(rejection_label(&event), "invalid_identifier");
}

#[test]
fn network_id_with_newline_is_rejected() {
    let event = introspection_with("network_id", json!("net\n1"));
    assert_eq!(rejection_label(&event), "invalid_identifier");
}

#[test]
fn ipv6_endpoint_is_accepted() {
    let endpoints = json!({"api": "http://[fd00::17]:8060", "health": "http://[::1]:8060/health"});
    let event = introspection_with("endpoints", endpoints);
    let envelope = introspection(read_json(&event).unwrap());
    assert_eq!(
        envelope.payload.endpoints.get("api").map(String::as_str),
        Some("http://[fd00::17]:8060")
    );
}

#[test]
fn endpoint_without_host_is_rejected() {
    let event = introspection_with("endpoints", json!({"health": "file:///health"}));
    assert_eq!(rejection_label(&event), "invalid_endpoint");
}

#[test]
fn endpoints_as_string_are_wrong_type() {
    let event = introspection_with("endpoints", json!("http://10.0.0.5:8061"));
    assert_eq!(rejection_label(&event), "wrong_type");
}

#[test]
fn node_type_as_list_is_wrong_type() {
    let event = introspection_with("node_type", json!(["reducer"]));
    assert_eq!(rejection_label(&event), "wrong_type");
}

#[test]
fn too_many_endpoints_are_rejected() {
    let endpoints: serde_json::Map<String, Value> = (0..33)
        .map(|index| (format!("e{index}"), json!("http://10.0.0.1:80")))
        .collect();
    let event = introspection_with("endpoints", Value::Object(endpoints));
    assert_eq!(rejection_label(&event), "field_too_large");
}

#[test]
fn capabilities_over_64_kib_are_rejected() {
    let event = introspection_with("capabilities", json!({"blob": "x".repeat(70_000)}));
    assert_eq!(rejection_label(&event), "field_too_large");
}

#[test]
fn unknown_health_status_is_rejected() {
    let mut event = fixture_value("02-node-heartbeat.json");
    event["payload"]["health_status"] = json!("splendid");
    assert_eq!(rejection_label(&event), "invalid_value");
}

#[test]
fn health_status_in_upper_case_is_accepted() {
    let mut event = fixture_value("02-node-heartbeat.json");
    event["payload"]["health_status"] = json!("CRITICAL");
    let envelope = heartbeat(read_json(&event).unwrap());
    assert_eq!(envelope.payload.health_status, HealthStatus::Critical);
}

#[test]
fn unknown_fields_are_ignored() {
    let mut event = fixture_value("01-node-introspection-startup.json");
    event["trace_context"] = json!({"span": [1, 2, 3]});
    event["payload"]["future_field"] = json!(true);
    assert!(read_json(&event).is_ok());
}

#[test]
fn payload_reason_wins_over_metadata() {
    let mut event = fixture_value("05-node-introspection-shutdown.json");
    event["payload"]["reason"] = json!("periodic");
    let envelope = introspection(read_json(&event).unwrap());
    assert_eq!(envelope.reason(), Some(IntrospectionReason::Periodic));
}

#[test]
fn unknown_reason_is_kept() {
    let mut event = fixture_value("05-node-introspection-shutdown.json");
    event["metadata"]["reason"] = json!("config_reload");
    let envelope = introspection(read_json(&event).unwrap());
    assert_eq!(
        envelope.reason(),
        Some(IntrospectionReason::Other("config_reload".to_owned()))
    );
}

#[test]
fn request_correlation_id_from_payload() {
    let mut event = fixture_value("03-registry-request-introspection.json");
    let correlation_id = "c0ffee00-1234-4abc-8def-0123456789ab";
    event["correlation_id"] = Value::Null;
    event["payload"]["correlation_id"] = json!(correlation_id);
    let envelope = registry_request(read_json(&event).unwrap());
    assert_eq!(envelope.correlation_id, Some(uuid(correlation_id)));
}

#[test]
fn request_reason_from_envelope_metadata() {
    let mut event = fixture_value("03-registry-request-introspection.json");
    event["payload"]["reason"] = Value::Null;
    event["metadata"]["reason"] = json!("node-join");
    let envelope = registry_request(read_json(&event).unwrap());
    assert_eq!(envelope.payload.reason, Some(RequestReason::NodeJoin));
}

#[test]
fn long_hostile_value_is_cut_in_message() {
    let mut event = fixture_value("01-node-introspection-startup.json");
    event["event_type"] = json!("x".repeat(100_000));
    let message = read_json(&event).unwrap_err().to_string();
    assert!(message.len() < 300, "message is {} bytes", message.len());
}

// Writer

fn full_envelope<P>(event_type: EventType, payload: P) -> Envelope<P> {
    let mut envelope = Envelope::new(event_type, "registry-main-pod-0", payload);
    envelope.source_service = Some("registry-operator".to_owned());
    envelope.source_version = Some("0.1.0".to_owned());
    envelope.source_instance = Some("registry-operator-5d9c7-x2x8q".to_owned());
    envelope.correlation_id = Some(uuid("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"));
    envelope.causation_id = Some(uuid("0c5e7f2a-91b3-4d6e-a8f0-2b4c6d8e1f35"));
    envelope.environment = Some("dev".to_owned());
    envelope.region = Some("local".to_owned());
    envelope.partition_key = Some("registry-main-pod-0".to_owned());
    envelope
        .metadata
        .insert("pod".to_owned(), json!("registry-operator-5d9c7-x2x8q"));
    envelope
}

#[test]
fn introspection_round_trip() {
    let mut payload = IntrospectionPayload::new("registry-main-pod-0", "registry");
    payload.node_role = Some("registry".to_owned());
    payload.node_version = Some("0.1.0".to_owned());
    payload
        .capabilities
        .insert("operations".to_owned(), json!(["register", "deregister"]));
    payload.endpoints.insert(
        "health".to_owned(),
        "http://[fd00::5]:8080/healthz".to_owned(),
    );
    payload
        .metadata
        .insert("epoch_source".to_owned(), json!("env"));
    payload.timestamp = Some(utc("2026-01-10T08:00:00.123456Z"));
    payload.correlation_id = Some(uuid("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"));
    payload.network_id = Some("omninode-network-1".to_owned());
    payload.deployment_id = Some("dev-blue-004".to_owned());
    payload.epoch = Some(4);
    let envelope =
        full_envelope(EventType::Introspection, payload).with_reason(IntrospectionReason::Startup);

    let bytes = encode_event(&envelope).unwrap();
    let read_back = introspection(read(&bytes).unwrap());
    assert_eq!(read_back, envelope);
}

#[test]
fn heartbeat_round_trip() {
    let mut payload = HeartbeatPayload::new("registry-main-pod-0", HealthStatus::Recovering);
    payload.node_type = Some("registry".to_owned());
    payload.uptime_seconds = Some(3600);
    payload.last_activity_timestamp = Some(utc("2026-01-10T08:00:00Z"));
    payload.active_operations = Some(2);
    payload
        .resource_usage
        .insert("memory_mb".to_owned(), json!(120.5));
    payload.timestamp = Some(utc("2026-01-10T08:00:00.5Z"));
    let envelope = full_envelope(EventType::Heartbeat, payload);

    let bytes = encode_event(&envelope).unwrap();
    let read_back = heartbeat(read(&bytes).unwrap());
    assert_eq!(read_back, envelope);
}

#[test]
fn registry_request_round_trip() {
    let mut payload = RegistryRequestPayload::new("registry-main", RequestReason::Startup);
    payload.request_timestamp = Some(utc("2026-01-10T08:00:00Z"));
    payload.target_node_types = Some(vec!["reducer".to_owned(), "effect".to_owned()]);
    payload.response_timeout_ms = Some(5000);
    payload.correlation_id = Some(uuid("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"));
    let envelope = full_envelope(EventType::RegistryRequest, payload);

    let bytes = encode_event(&envelope).unwrap();
    let read_back = registry_request(read(&bytes).unwrap());
    assert_eq!(read_back, envelope);
}

#[test]
fn minimal_envelope_round_trip() {
    let payload = IntrospectionPayload::new("effect-07", "effect");
    let envelope = Envelope::new(EventType::Introspection, "effect-07", payload);

    let bytes = encode_event(&envelope).unwrap();
    let read_back = introspection(read(&bytes).unwrap());
    assert_eq!(read_back, envelope);
}

#[test]
fn writer_emits_reason_in_metadata_only() {
    let payload = IntrospectionPayload::new("effect-07", "effect");
    let envelope = Envelope::new(EventType::Introspection, "effect-07", payload)
        .with_reason(IntrospectionReason::Shutdown);

    let written: Value = serde_json::from_slice(&encode_event(&envelope).unwrap()).unwrap();
    assert_eq!(written["metadata"]["reason"], "shutdown");
    assert_eq!(written["payload"].get("reason"), None);
}

#[test]
fn writer_emits_timestamps_with_colon_offset() {
    let mut envelope = Envelope::new(EventType::Heartbeat, "effect-07", ());
    envelope.event_timestamp = utc("2025-11-13T14:05:09.412871Z");

    let written: Value = serde_json::from_slice(&encode_event(&envelope).unwrap()).unwrap();
    assert_eq!(
        written["event_timestamp"],
        "2025-11-13T14:05:09.412871+00:00"
    );
}

#[test]
fn writer_emits_existing_event_type_spellings() {
    let request = RegistryRequestPayload::new("registry-main", RequestReason::Manual);
    let envelope = Envelope::new(EventType::RegistryRequest, "registry-main", request);

    let written: Value = serde_json::from_slice(&encode_event(&envelope).unwrap()).unwrap();
    assert_eq!(written["event_type"], "registry-request-introspection");
}
