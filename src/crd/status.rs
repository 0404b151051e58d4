use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a RegistryNode.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryNodeStatus {
    /// Generation of the spec that the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `KafkaConnected`, `PostgresReady`, `ConsulReady` and `SelfRegistered`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Nodes registered by this registry, itself included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_nodes: Option<i64>,

    /// Registered nodes whose health is `healthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_nodes: Option<i64>,

    /// The registry's own registration, as written by the active operator pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_registration: Option<SelfRegistrationStatus>,

    /// One entry per operator pod that runs this registry. Each pod writes only its own entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pod"]))]
    pub instances: Vec<InstanceStatus>,
}

/// A condition in the standard Kubernetes shape.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, unique within the list.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word that a program can match.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    /// Generation of the spec this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The registry's own record.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfRegistrationStatus {
    /// Node id of the registry's own record (`<registryId>-<pod>`).
    pub node_id: String,
    /// Rollout the registering pod belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// Rollout counter of the registering pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// RFC 3339 time the record was first written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<String>,
    /// `Registered`, `Pending` or `Failed` in PostgreSQL.
    pub postgres: String,
    /// `Registered`, `Pending` or `Failed` in Consul.
    pub consul: String,
}

/// One operator pod running this registry.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Pod name (the host name outside Kubernetes).
    pub pod: String,
    /// Rollout the pod belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// Rollout counter of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// True for the live instance with the newest epoch.
    #[serde(default)]
    pub active: bool,
    /// Node id of the pod's own registry record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}
