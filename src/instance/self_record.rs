//! The registry's own record and introspection events (pure: no I/O).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::config::RegistryConfig;
use crate::node::{HealthStatus, NodeRecord};
use crate::wire::{
    Envelope, EventType, HeartbeatPayload, IntrospectionPayload, IntrospectionReason,
    RegistryRequestPayload, RequestReason,
};

/// `node_type` and `node_role` of every registry record.
pub const REGISTRY_NODE_TYPE: &str = "registry";

fn identity_metadata(config: &RegistryConfig) -> Map<String, Value> {
    let identity = &config.identity;
    let mut metadata = Map::new();
    metadata.insert("registry_id".into(), json!(config.registry_id));
    metadata.insert("pod".into(), json!(identity.pod_name));
    metadata.insert("pod_namespace".into(), json!(identity.pod_namespace));
    metadata.insert("pod_ip".into(), json!(identity.pod_ip));
    metadata.insert("node_name".into(), json!(identity.node_name));
    metadata.insert("deployment_id".into(), json!(identity.deployment_id));
    metadata.insert("epoch".into(), json!(identity.epoch));
    metadata.insert("network_id".into(), json!(network_id(config)));
    metadata.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    metadata
}

fn network_id(config: &RegistryConfig) -> Option<String> {
    config
        .identity
        .network_id
        .clone()
        .or_else(|| config.network_id.clone())
}

fn capabilities(config: &RegistryConfig) -> Map<String, Value> {
    let mut capabilities = Map::new();
    capabilities.insert("node_type".into(), json!(REGISTRY_NODE_TYPE));
    capabilities.insert(
        "supported_operations".into(),
        json!([
            "register_node",
            "deregister_node",
            "track_liveness",
            "answer_registry_request"
        ]),
    );
    capabilities.insert(
        "registration_backends".into(),
        json!(["postgres", "consul"]),
    );
    capabilities.insert(
        "consul_registration_mode".into(),
        json!(match config.registration_mode {
            crate::crd::RegistrationMode::Catalog => "catalog",
            crate::crd::RegistrationMode::Agent => "agent",
        }),
    );
    capabilities
}

fn endpoints(config: &RegistryConfig) -> std::collections::BTreeMap<String, String> {
    let base = config.http_base_url.trim_end_matches('/');
    [
        ("health", format!("{base}/healthz")),
        ("api", format!("{base}/api/v1/nodes")),
        ("metrics", format!("{base}/metrics")),
    ]
    .into_iter()
    .map(|(name, url)| (name.to_owned(), url))
    .collect()
}

/// Builds this process's introspection event.
pub fn introspection(
    config: &RegistryConfig,
    reason: IntrospectionReason,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
) -> Envelope<IntrospectionPayload> {
    let node_id = config.self_node_id();
    let mut payload = IntrospectionPayload::new(&node_id, REGISTRY_NODE_TYPE);
    payload.node_role = Some(REGISTRY_NODE_TYPE.to_owned());
    payload.node_version = Some(env!("CARGO_PKG_VERSION").to_owned());
    payload.capabilities = capabilities(config);
    payload.endpoints = endpoints(config);
    payload.metadata = identity_metadata(config);
    payload.network_id = network_id(config);
    payload.deployment_id = config.identity.deployment_id.clone();
    payload.epoch = config.identity.epoch;
    payload.correlation_id = correlation_id;
    let mut envelope = Envelope::new(EventType::Introspection, &node_id, payload);
    envelope.payload.timestamp = Some(envelope.event_timestamp);
    envelope.source_service = Some("registry-operator".to_owned());
    envelope.source_version = Some(env!("CARGO_PKG_VERSION").to_owned());
    envelope.source_instance = Some(config.identity.pod_name.clone());
    envelope.environment = Some(config.environment.clone());
    envelope.partition_key = Some(node_id);
    envelope.correlation_id = correlation_id;
    envelope.causation_id = causation_id;
    envelope.with_reason(reason)
}

/// Builds this process's heartbeat event.
pub fn heartbeat(config: &RegistryConfig, uptime_seconds: u64) -> Envelope<HeartbeatPayload> {
    let node_id = config.self_node_id();
    let mut payload = HeartbeatPayload::new(&node_id, HealthStatus::Healthy);
    payload.node_type = Some(REGISTRY_NODE_TYPE.to_owned());
    payload.uptime_seconds = Some(uptime_seconds);
    let mut envelope = Envelope::new(EventType::Heartbeat, &node_id, payload);
    envelope.payload.timestamp = Some(envelope.event_timestamp);
    envelope.source_service = Some("registry-operator".to_owned());
    envelope.source_instance = Some(config.identity.pod_name.clone());
    envelope.environment = Some(config.environment.clone());
    envelope.partition_key = Some(node_id);
    envelope
}

/// Builds a request asking every node to announce itself again.
pub fn registry_request(
    config: &RegistryConfig,
    reason: RequestReason,
) -> Envelope<RegistryRequestPayload> {
    let node_id = config.self_node_id();
    let mut payload = RegistryRequestPayload::new(&config.registry_id, reason);
    let correlation_id = Uuid::new_v4();
    payload.correlation_id = Some(correlation_id);
    let mut envelope = Envelope::new(EventType::RegistryRequest, &node_id, payload);
    envelope.payload.request_timestamp = Some(envelope.event_timestamp);
    envelope.source_service = Some("registry-operator".to_owned());
    envelope.source_instance = Some(config.identity.pod_name.clone());
    envelope.environment = Some(config.environment.clone());
    envelope.correlation_id = Some(correlation_id);
    envelope
}

/// Builds the registration record of an introspection event of this process.
pub fn record_of(envelope: &Envelope<IntrospectionPayload>, at: DateTime<Utc>) -> NodeRecord {
    let payload = &envelope.payload;
    NodeRecord {
        node_id: payload.node_id.clone(),
        node_type: payload.node_type.clone(),
        node_role: payload.node_role.clone(),
        node_version: payload.node_version.clone(),
        capabilities: Value::Object(payload.capabilities.clone()),
        endpoints: payload.endpoints.clone(),
        metadata: Value::Object(payload.metadata.clone()),
        health_status: HealthStatus::Healthy,
        network_id: payload.network_id.clone(),
        deployment_id: payload.deployment_id.clone(),
        epoch: payload.epoch,
        event_id: envelope.event_id,
        event_timestamp: at,
    }
}
