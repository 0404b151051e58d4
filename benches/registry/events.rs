//! Events of a synthetic fleet of nodes, written with the crate's strict writer and
//! shaped like the sample events in `tests/fixtures/events`.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, bail};
use registry_operator::node::{HealthStatus, NodeRecord};
use registry_operator::pipeline::decision::{Decision, DecisionContext, decide};
use registry_operator::wire::{
    Envelope, EventType, HeartbeatPayload, IntrospectionPayload, IntrospectionReason, ReadLimits,
    encode_event, kafka_key, read_event,
};
use serde_json::{Map, Value, json};

use crate::stack::unique_name;

/// `source_service` of every benchmark event.
const SOURCE_SERVICE: &str = "registry-operator-bench";

const NODE_TYPES: [&str; 4] = ["orchestrator", "reducer", "effect", "compute"];

/// One Kafka message: key and JSON value.
pub struct Message {
    pub key: String,
    pub value: Vec<u8>,
}

/// A set of nodes with ids `<prefix>-<six-digit index>`. The prefix starts with `n`, so
/// no node id starts with a benchmark registry id (those start with `bench`), which the
/// registry would reject as a forged identity.
pub struct Fleet {
    pub prefix: String,
}

impl Fleet {
    pub fn new() -> Self {
        Self {
            prefix: unique_name("n"),
        }
    }

    pub fn node_id(&self, index: usize) -> String {
        format!("{}-{index:06}", self.prefix)
    }

    fn node_type(index: usize) -> &'static str {
        NODE_TYPES[index % NODE_TYPES.len()]
    }

    /// Builds the startup introspection of node `index`, with four endpoints on a
    /// private address unique to the node.
    pub fn introspection(&self, index: usize) -> Envelope<IntrospectionPayload> {
        let node_id = self.node_id(index);
        let node_type = Self::node_type(index);
        let host = format!(
            "10.{}.{}.{}",
            (index >> 16) & 0xff,
            (index >> 8) & 0xff,
            index & 0xff
        );

        let mut payload = IntrospectionPayload::new(node_id.clone(), node_type);
        payload.node_version = Some("1.4.2".to_owned());
        payload.capabilities = object(json!({
            "node_type": node_type,
            "supported_operations": ["execute", "coordinate_workflow", "manage_state"],
            "resource_limits": {"cpu_cores_available": 4, "memory_available_gb": 11.62},
        }));
        payload.endpoints = BTreeMap::from([
            ("api".to_owned(), format!("http://{host}:8060")),
            ("health".to_owned(), format!("http://{host}:8060/health")),
            ("metrics".to_owned(), format!("http://{host}:9090")),
            ("orchestration".to_owned(), format!("http://{host}:8060")),
        ]);
        payload.metadata = object(json!({"version": "1.4.2", "environment": "bench"}));
        payload.network_id = Some("bench-network".to_owned());
        payload.deployment_id = Some("bench-blue-001".to_owned());
        payload.epoch = Some(1);

        let mut envelope = Envelope::new(EventType::Introspection, node_id.clone(), payload)
            .with_reason(IntrospectionReason::Startup);
        envelope.payload.timestamp = Some(envelope.event_timestamp);
        envelope.source_service = Some(SOURCE_SERVICE.to_owned());
        envelope.source_instance = Some(node_id.clone());
        envelope.partition_key = Some(node_id);
        envelope
    }

    pub fn introspection_message(&self, index: usize) -> anyhow::Result<Message> {
        let envelope = self.introspection(index);
        Ok(Message {
            key: kafka_key(&envelope),
            value: encode_event(&envelope).context("encoding an introspection failed")?,
        })
    }

    /// Builds a healthy heartbeat of node `index`, timestamped now.
    pub fn heartbeat_message(&self, index: usize, uptime_seconds: u64) -> anyhow::Result<Message> {
        let node_id = self.node_id(index);
        let mut payload = HeartbeatPayload::new(node_id.clone(), HealthStatus::Healthy);
        payload.node_type = Some(Self::node_type(index).to_owned());
        payload.uptime_seconds = Some(uptime_seconds);
        payload.active_operations = Some(0);
        payload.resource_usage = object(json!({"cpu_percent": 12.5, "memory_mb": 210.0}));

        let mut envelope = Envelope::new(EventType::Heartbeat, node_id.clone(), payload);
        envelope.payload.timestamp = Some(envelope.event_timestamp);
        envelope.source_service = Some(SOURCE_SERVICE.to_owned());
        envelope.source_instance = Some(node_id.clone());
        envelope.partition_key = Some(node_id);
        Ok(Message {
            key: kafka_key(&envelope),
            value: encode_event(&envelope).context("encoding a heartbeat failed")?,
        })
    }

    /// Builds the registration records of nodes `0..count` from their encoded
    /// introspections with the registry's own reader and decision code, so they are the
    /// records the registry writes for the same events.
    pub fn records(&self, count: usize, registry_id: &str) -> anyhow::Result<Vec<NodeRecord>> {
        let instances = HashSet::new();
        let context = DecisionContext {
            registry_id,
            instances: &instances,
            default_network_id: None,
        };
        let limits = ReadLimits::default();
        let mut records = Vec::with_capacity(count);
        for index in 0..count {
            let message = self.introspection_message(index)?;
            let event = read_event(&message.value, &limits)
                .with_context(|| format!("the registry's reader rejected node {index}"))?;
            match decide(event, &context) {
                Decision::Register(record) => records.push(record),
                other => bail!("introspection of node {index} decided as {other:?}"),
            }
        }
        Ok(records)
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
