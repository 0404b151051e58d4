use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::RegistryNodeStatus;

/// Declares one registry: where its Kafka, Consul and PostgreSQL are, and how it
/// judges the liveness of the nodes it registers.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "omninode.io",
    version = "v1alpha1",
    kind = "RegistryNode",
    plural = "registrynodes",
    shortname = "rn",
    namespaced,
    status = "RegistryNodeStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Nodes","type":"integer","jsonPath":".status.registeredNodes"}"#,
    printcolumn = r#"{"name":"Healthy","type":"integer","jsonPath":".status.healthyNodes"}"#,
    printcolumn = r#"{"name":"Self","type":"string","jsonPath":".status.conditions[?(@.type==\"SelfRegistered\")].status"}"#,
    printcolumn = r#"{"name":"Deployment","type":"string","jsonPath":".status.selfRegistration.deploymentId"}"#,
    printcolumn = r#"{"name":"Epoch","type":"integer","jsonPath":".status.selfRegistration.epoch"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RegistryNodeSpec {
    /// Identifier of this registry in events, records and Consul meta. Defaults to
    /// `<namespace>-<name>`. Lowercase letters, digits and `-`, at most 63 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_id: Option<String>,

    /// Environment prefix of every topic name (`<environment>.omninode_bridge.onex.evt.<name>.v1`).
    #[serde(default = "default_environment")]
    pub environment: String,

    /// Logical network this registry serves. Written into its own record and used to
    /// label the nodes it registers that do not report one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,

    /// Kafka cluster the registry consumes announcements from and publishes to.
    pub kafka: KafkaSpec,

    /// Consul agent or server that receives the service registrations.
    pub consul: ConsulSpec,

    /// PostgreSQL database that stores the `node_registrations` table.
    pub postgres: PostgresSpec,

    /// Heartbeats the registry publishes about itself.
    #[serde(default)]
    pub heartbeat: HeartbeatSpec,

    /// When a silent node turns critical.
    #[serde(default)]
    pub liveness: LivenessSpec,

    /// When a silent node is deregistered.
    #[serde(default)]
    pub expiry: ExpirySpec,

    /// Whether the registry registers itself like any other node.
    #[serde(default)]
    pub self_registration: SelfRegistrationSpec,

    /// What happens to the registrations when this RegistryNode is deleted.
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,
}

fn default_environment() -> String {
    "dev".to_owned()
}

/// Kafka connection and topic settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list of bootstrap brokers.
    pub bootstrap_servers: String,

    /// Consumer group of this registry. Defaults to `registry-operator.<namespace>.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,

    /// Topic name overrides. Unset topics follow the environment prefix.
    #[serde(default)]
    pub topics: TopicOverrides,

    /// Secret in the same namespace whose keys are extra librdkafka client properties
    /// (for example `security.protocol`, `sasl.username`, `ssl.ca.pem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties_secret_ref: Option<SecretReference>,

    /// Topic for rejected messages. Defaults to the dead-letter name of each source topic
    /// (`<environment>.omninode_bridge.onex.dlt.<name>.v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

/// Explicit topic names that replace the names derived from the environment prefix.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicOverrides {
    /// Topic of `NODE_INTROSPECTION` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection: Option<String>,
    /// Topic of `NODE_HEARTBEAT` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<String>,
    /// Topic of `REGISTRY_REQUEST` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_request: Option<String>,
    /// Compacted topic of registration changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<String>,
}

/// Consul connection and registration settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsulSpec {
    /// HTTP address of Consul, for example `http://consul.consul.svc:8500`.
    pub address: String,

    /// Secret key holding the ACL token sent as `X-Consul-Token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeySelector>,

    /// Consul datacenter. Defaults to the datacenter of the contacted agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,

    /// `catalog` registers services under synthetic Consul nodes owned by this registry,
    /// `registry-operator-<registryId>-00` to `-ff`, each service on the node its ID hashes
    /// to, with health checks whose status the registry sets (no Consul agent needed).
    /// `agent` registers through the agent API with TTL checks.
    #[serde(default)]
    pub registration_mode: RegistrationMode,

    /// Extra tags added to every service this registry registers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// How services reach Consul.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RegistrationMode {
    /// Catalog API under synthetic nodes named after the registry.
    #[default]
    #[serde(rename = "catalog")]
    Catalog,
    /// Agent API with TTL checks.
    #[serde(rename = "agent")]
    Agent,
}

/// PostgreSQL connection. Either `urlSecretRef`, or `host` and `database` with an
/// optional `passwordSecretRef`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Secret key holding a full `postgres://` connection URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeySelector>,
    /// Server host name, when no URL Secret is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Server port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32"))]
    pub port: Option<u16>,
    /// Database name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Secret key holding the password of `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// Schema that contains this registry's tables, so registries can share one database.
    #[serde(default = "default_schema")]
    pub schema: String,
}

fn default_schema() -> String {
    "public".to_owned()
}

/// A key of a Secret in the RegistryNode's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretKeySelector {
    /// Secret name.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// A whole Secret in the RegistryNode's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretReference {
    /// Secret name.
    pub name: String,
}

/// Self heartbeat settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatSpec {
    /// Seconds between two heartbeats of the registry itself.
    #[serde(default = "default_heartbeat_interval")]
    #[schemars(range(min = 1, max = 3600), extend("format" = "int64"))]
    pub interval_seconds: u32,
}

impl Default for HeartbeatSpec {
    fn default() -> Self {
        Self {
            interval_seconds: default_heartbeat_interval(),
        }
    }
}

fn default_heartbeat_interval() -> u32 {
    30
}

/// Liveness settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LivenessSpec {
    /// Seconds without a heartbeat or introspection after which a node turns critical.
    #[serde(default = "default_liveness_timeout")]
    #[schemars(range(min = 1), extend("format" = "int64"))]
    pub timeout_seconds: u32,
}

impl Default for LivenessSpec {
    fn default() -> Self {
        Self {
            timeout_seconds: default_liveness_timeout(),
        }
    }
}

fn default_liveness_timeout() -> u32 {
    90
}

/// Expiry settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpirySpec {
    /// Seconds without a heartbeat or introspection after which a node is deregistered.
    #[serde(default = "default_expiry")]
    #[schemars(range(min = 1), extend("format" = "int64"))]
    pub after_seconds: u32,
}

impl Default for ExpirySpec {
    fn default() -> Self {
        Self {
            after_seconds: default_expiry(),
        }
    }
}

fn default_expiry() -> u32 {
    86_400
}

/// Self-registration settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SelfRegistrationSpec {
    /// Publish the registry's own introspection and heartbeats and register it in both backends.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for SelfRegistrationSpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn default_true() -> bool {
    true
}

/// What deletion of the RegistryNode removes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CleanupPolicy {
    /// Keep PostgreSQL rows as history and deregister this registry's Consul services,
    /// whose health nothing would keep true any more.
    #[default]
    Retain,
    /// Remove this registry's PostgreSQL rows and Consul services.
    Delete,
}
