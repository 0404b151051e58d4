//! The Consul service built from a node's registration record (pure, no I/O).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::address::select_service_address;
use super::meta::{MetaBuilder, OmittedMeta};
use crate::crd::RegistrationMode;
use crate::node::{HealthStatus, NodeRecord};

/// Value of the `managed-by` tag and meta, and of Consul's conventional `external-source`
/// meta, on everything this operator registers.
pub const MANAGED_BY: &str = "registry-operator";

/// Settings of one registry that shape every service it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceContext {
    pub registry_id: String,
    /// Tags added to every service after the generated ones.
    pub extra_tags: Vec<String>,
    /// Consul datacenter. `None` means the datacenter of the contacted agent.
    pub datacenter: Option<String>,
    /// Base name of the Consul nodes that contain the services in catalog mode; each node
    /// is named `<base>-<shard>` (see [`super::shard_node_name`]).
    pub synthetic_node: String,
    pub mode: RegistrationMode,
    /// TTL of the agent-mode check, in seconds: the liveness timeout.
    pub check_ttl_seconds: u32,
    /// Seconds a check may stay critical before Consul removes the service in agent mode:
    /// the expiry. The agent raises values below its `check_deregister_interval_min` (1 minute
    /// by default in Consul 1.14) to that minimum.
    pub deregister_after_seconds: u32,
}

impl ServiceContext {
    /// Returns the base name of a registry's synthetic nodes: `registry-operator-<registry_id>`.
    pub fn default_synthetic_node(registry_id: &str) -> String {
        format!("{MANAGED_BY}-{registry_id}")
    }
}

/// Status of a Consul health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }
}

impl From<HealthStatus> for CheckStatus {
    fn from(health: HealthStatus) -> Self {
        // `consul_check_status` returns only these three values.
        match health.consul_check_status() {
            "passing" => CheckStatus::Passing,
            "warning" => CheckStatus::Warning,
            _ => CheckStatus::Critical,
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Timing of an agent-mode TTL check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckTtl {
    /// Seconds without a TTL update after which the agent turns the check critical.
    pub ttl_seconds: u32,
    /// Seconds critical after which the agent deregisters the service.
    pub deregister_critical_after_seconds: u32,
}

/// The health check attached to a service, whose status the registry sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCheck {
    pub check_id: String,
    pub name: String,
    pub notes: String,
    pub status: CheckStatus,
    /// Text Consul shows next to the status: why the check has it.
    pub output: String,
    /// Used by the agent API only. The catalog API stores the status as set and never
    /// changes it by itself.
    pub ttl: CheckTtl,
}

/// A service registration ready for the Consul catalog or agent API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulService {
    /// The node_id.
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    /// `None` lets Consul use the address of the service's node.
    pub address: Option<String>,
    /// 0 when no endpoint gives a port.
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    pub check: ServiceCheck,
    /// Meta pairs left out because they break Consul's limits.
    pub omitted_meta: Vec<OmittedMeta>,
}

/// Returns the service name for a node type: `onex-` plus the type, lowercased, with `_`
/// replaced by `-` (`NODE_ORCHESTRATOR` gives `onex-node-orchestrator`).
pub fn service_name(node_type: &str) -> String {
    format!("onex-{}", node_type.to_lowercase().replace('_', "-"))
}

/// Returns the check ID of a node's health check: `registry:<node_id>`.
pub fn check_id(node_id: &str) -> String {
    format!("registry:{node_id}")
}

/// Builds the health check of a node.
pub fn build_check(
    node_id: &str,
    health: HealthStatus,
    output: String,
    context: &ServiceContext,
) -> ServiceCheck {
    let ttl = CheckTtl {
        ttl_seconds: context.check_ttl_seconds,
        deregister_critical_after_seconds: context.deregister_after_seconds,
    };

    ServiceCheck {
        check_id: check_id(node_id),
        name: "Node heartbeat".to_owned(),
        notes: format!(
            "Status set by registry {} from the node's heartbeats and its liveness timeout.",
            context.registry_id
        ),
        status: CheckStatus::from(health),
        output,
        ttl,
    }
}

/// Builds the Consul service of a node.
///
/// The address and port come from the `api` endpoint, else `health`, else the first
/// endpoint by name. Meta pairs that break Consul's limits are left out and listed in
/// `omitted_meta`.
pub fn build_service(record: &NodeRecord, context: &ServiceContext) -> ConsulService {
    let address = select_service_address(&record.endpoints);
    let (meta, omitted_meta) = build_meta(record, context);

    let output = format!(
        "Node health is {} as last recorded by registry {}.",
        record.health_status, context.registry_id
    );

    ConsulService {
        id: record.node_id.clone(),
        name: service_name(&record.node_type),
        tags: build_tags(record, context),
        address: address.as_ref().and_then(|found| found.host.clone()),
        port: address.map_or(0, |found| found.port),
        meta,
        check: build_check(&record.node_id, record.health_status, output, context),
        omitted_meta,
    }
}

/// Tags in a fixed order without duplicates: node type, role, registry, manager, extra tags.
fn build_tags(record: &NodeRecord, context: &ServiceContext) -> Vec<String> {
    let mut candidates = vec![record.node_type.clone()];
    if let Some(role) = &record.node_role {
        candidates.push(format!("role:{role}"));
    }
    candidates.push(format!("registry:{}", context.registry_id));
    candidates.push(format!("managed-by:{MANAGED_BY}"));
    candidates.extend(context.extra_tags.iter().cloned());

    let mut tags: Vec<String> = Vec::with_capacity(candidates.len());
    for tag in candidates {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

fn build_meta(
    record: &NodeRecord,
    context: &ServiceContext,
) -> (BTreeMap<String, String>, Vec<OmittedMeta>) {
    let epoch = record.epoch.map(|epoch| epoch.to_string());

    let mut meta = MetaBuilder::default();
    meta.insert("node_type", &record.node_type);
    meta.insert_some("node_role", record.node_role.as_deref());
    meta.insert_some("node_version", record.node_version.as_deref());
    meta.insert_some("network_id", record.network_id.as_deref());
    meta.insert_some("deployment_id", record.deployment_id.as_deref());
    meta.insert_some("epoch", epoch.as_deref());
    meta.insert("registry_id", &context.registry_id);
    meta.insert("managed-by", MANAGED_BY);
    meta.insert("external-source", MANAGED_BY);
    meta.insert_some("health_endpoint", record.health_endpoint());
    meta.finish()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::consul::meta::MetaRejection;

    fn record() -> NodeRecord {
        NodeRecord {
            node_id: "effect-7f3a".to_owned(),
            node_type: "effect".to_owned(),
            node_role: Some("writer".to_owned()),
            node_version: Some("1.4.2".to_owned()),
            capabilities: serde_json::json!({}),
            endpoints: BTreeMap::from([
                ("api".to_owned(), "http://10.0.0.7:8080/v1".to_owned()),
                (
                    "health".to_owned(),
                    "http://10.0.0.7:8081/health".to_owned(),
                ),
            ]),
            metadata: serde_json::json!({}),
            health_status: HealthStatus::Healthy,
            network_id: Some("net-a".to_owned()),
            deployment_id: Some("blue-2024".to_owned()),
            epoch: Some(42),
            event_id: Uuid::nil(),
            event_timestamp: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).single().unwrap(),
        }
    }

    fn context(mode: RegistrationMode) -> ServiceContext {
        ServiceContext {
            registry_id: "prod-main".to_owned(),
            extra_tags: vec!["team:core".to_owned(), "effect".to_owned()],
            datacenter: None,
            synthetic_node: "registry-operator-prod-main".to_owned(),
            mode,
            check_ttl_seconds: 90,
            deregister_after_seconds: 86_400,
        }
    }

    #[test]
    fn service_identity_from_record() {
        let service = build_service(&record(), &context(RegistrationMode::Catalog));
        assert_eq!(service.id, "effect-7f3a");
        assert_eq!(service.name, "onex-effect");
        assert_eq!(service.address.as_deref(), Some("10.0.0.7"));
        assert_eq!(service.port, 8080);
    }

    #[test]
    fn service_name_normalised() {
        assert_eq!(service_name("orchestrator"), "onex-orchestrator");
        assert_eq!(service_name("NODE_ORCHESTRATOR"), "onex-node-orchestrator");
        assert_eq!(service_name("Compute_Node"), "onex-compute-node");
    }

    #[test]
    fn tags_in_order_without_duplicates() {
        let service = build_service(&record(), &context(RegistrationMode::Catalog));
        assert_eq!(
            service.tags,
            vec![
                "effect",
                "role:writer",
                "registry:prod-main",
                "managed-by:registry-operator",
                "team:core",
            ]
        );
    }

    #[test]
    fn tags_without_role() {
        let mut record = record();
        record.node_role = None;
        let mut context = context(RegistrationMode::Catalog);
        context.extra_tags.clear();

        let service = build_service(&record, &context);
        assert_eq!(
            service.tags,
            vec![
                "effect",
                "registry:prod-main",
                "managed-by:registry-operator",
            ]
        );
    }

    #[test]
    fn meta_contents() {
        let service = build_service(&record(), &context(RegistrationMode::Catalog));
        let expected: BTreeMap<String, String> = [
            ("node_type", "effect"),
            ("node_role", "writer"),
            ("node_version", "1.4.2"),
            ("network_id", "net-a"),
            ("deployment_id", "blue-2024"),
            ("epoch", "42"),
            ("registry_id", "prod-main"),
            ("managed-by", "registry-operator"),
            ("external-source", "registry-operator"),
            ("health_endpoint", "http://10.0.0.7:8081/health"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        assert_eq!(service.meta, expected);
        assert!(service.omitted_meta.is_empty());
    }

    #[test]
    fn meta_skips_absent_fields() {
        let mut record = record();
        record.node_role = None;
        record.node_version = None;
        record.network_id = None;
        record.deployment_id = None;
        record.epoch = None;
        record.endpoints.clear();

        let service = build_service(&record, &context(RegistrationMode::Catalog));
        let keys: Vec<&str> = service.meta.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec!["external-source", "managed-by", "node_type", "registry_id"]
        );
    }

    #[test]
    fn long_deployment_id_omitted_and_reported() {
        let mut record = record();
        record.deployment_id = Some("d".repeat(600));

        let service = build_service(&record, &context(RegistrationMode::Catalog));
        assert!(!service.meta.contains_key("deployment_id"));
        assert_eq!(service.meta.get("epoch").map(String::as_str), Some("42"));
        assert_eq!(
            service.omitted_meta,
            vec![OmittedMeta {
                key: "deployment_id".to_owned(),
                reason: MetaRejection::ValueTooLong { bytes: 600 },
            }]
        );
    }

    #[test]
    fn value_at_limit_kept_whole() {
        let mut record = record();
        let at_limit = "d".repeat(512);
        record.deployment_id = Some(at_limit.clone());

        let service = build_service(&record, &context(RegistrationMode::Catalog));
        assert_eq!(service.meta.get("deployment_id"), Some(&at_limit));
        assert!(service.omitted_meta.is_empty());
    }

    #[test]
    fn no_endpoints_give_no_address() {
        let mut record = record();
        record.endpoints.clear();

        let service = build_service(&record, &context(RegistrationMode::Catalog));
        assert_eq!(service.address, None);
        assert_eq!(service.port, 0);
        assert!(!service.meta.contains_key("health_endpoint"));
    }

    #[test]
    fn ipv6_endpoint_address() {
        let mut record = record();
        record.endpoints = BTreeMap::from([("api".to_owned(), "http://[fd00::7]:8080".to_owned())]);

        let service = build_service(&record, &context(RegistrationMode::Catalog));
        assert_eq!(service.address.as_deref(), Some("fd00::7"));
        assert_eq!(service.port, 8080);
    }

    #[test]
    fn missing_port_uses_scheme_default() {
        let mut record = record();
        record.endpoints =
            BTreeMap::from([("api".to_owned(), "https://effect.internal/v1".to_owned())]);

        let service = build_service(&record, &context(RegistrationMode::Catalog));
        assert_eq!(service.address.as_deref(), Some("effect.internal"));
        assert_eq!(service.port, 443);
    }

    #[test]
    fn grpc_endpoint_address() {
        let mut record = record();
        record.endpoints = BTreeMap::from([("api".to_owned(), "grpc://10.0.0.9:50051".to_owned())]);

        let service = build_service(&record, &context(RegistrationMode::Catalog));
        assert_eq!(service.address.as_deref(), Some("10.0.0.9"));
        assert_eq!(service.port, 50051);
    }

    #[test]
    fn check_status_and_output() {
        let mut record = record();
        record.health_status = HealthStatus::Degraded;

        let service = build_service(&record, &context(RegistrationMode::Catalog));
        assert_eq!(service.check.check_id, "registry:effect-7f3a");
        assert_eq!(service.check.status, CheckStatus::Warning);
        assert_eq!(
            service.check.output,
            "Node health is degraded as last recorded by registry prod-main."
        );
    }

    #[test]
    fn check_ttl_from_context() {
        let mut record = record();
        record.health_status = HealthStatus::Critical;

        let service = build_service(&record, &context(RegistrationMode::Agent));
        assert_eq!(service.check.status, CheckStatus::Critical);
        assert_eq!(
            service.check.ttl,
            CheckTtl {
                ttl_seconds: 90,
                deregister_critical_after_seconds: 86_400,
            }
        );
    }

    #[test]
    fn check_status_follows_health() {
        for health in HealthStatus::ALL {
            assert_eq!(
                CheckStatus::from(health).as_str(),
                health.consul_check_status(),
                "health {health}"
            );
        }
    }

    #[test]
    fn default_synthetic_node_name() {
        assert_eq!(
            ServiceContext::default_synthetic_node("prod-main"),
            "registry-operator-prod-main"
        );
    }
}
