//! Resolved settings of one registry instance: the RegistryNode spec with its Secrets read
//! and its defaults applied, plus the identity of the pod that runs it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::crd::{CleanupPolicy, RegistrationMode};
use crate::wire::topics::Topics;

/// Identity of the operator process, from the downward API and rollout variables.
#[derive(Debug, Clone, PartialEq)]
pub struct PodIdentity {
    /// `POD_NAME`, or the host name outside a pod.
    pub pod_name: String,
    pub pod_namespace: Option<String>,
    pub pod_ip: Option<String>,
    pub node_name: Option<String>,
    /// `OMNINODE_DEPLOYMENT_ID`.
    pub deployment_id: Option<String>,
    /// `OMNINODE_DEPLOYMENT_EPOCH`.
    pub epoch: Option<i64>,
    /// `OMNINODE_NETWORK_ID`.
    pub network_id: Option<String>,
}

/// Error for an identity variable that is set but invalid.
#[derive(Debug, thiserror::Error)]
#[error("OMNINODE_DEPLOYMENT_EPOCH={0:?} is not an integer")]
pub struct InvalidEpoch(pub String);

impl PodIdentity {
    /// Reads the identity from the environment.
    pub fn from_env() -> Result<Self, InvalidEpoch> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let pod_name = var("POD_NAME")
            .or_else(|| var("HOSTNAME"))
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|name| name.trim().to_owned())
            })
            .unwrap_or_else(|| "registry-operator".to_owned());
        let epoch = match var("OMNINODE_DEPLOYMENT_EPOCH") {
            Some(value) => Some(value.trim().parse().map_err(|_| InvalidEpoch(value))?),
            None => None,
        };
        Ok(Self {
            pod_name,
            pod_namespace: var("POD_NAMESPACE"),
            pod_ip: var("POD_IP"),
            node_name: var("NODE_NAME"),
            deployment_id: var("OMNINODE_DEPLOYMENT_ID"),
            epoch,
            network_id: var("OMNINODE_NETWORK_ID"),
        })
    }
}

/// Everything one registry instance needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    pub registry_id: String,
    pub environment: String,
    pub network_id: Option<String>,
    pub topics: Topics,
    pub kafka_brokers: String,
    pub consumer_group: String,
    pub dead_letter_topic: Option<String>,
    pub kafka_properties: BTreeMap<String, String>,
    pub consul_address: String,
    pub consul_token: Option<String>,
    pub consul_datacenter: Option<String>,
    pub registration_mode: RegistrationMode,
    pub consul_tags: Vec<String>,
    pub postgres_url: String,
    pub postgres_schema: String,
    pub heartbeat_interval: Duration,
    pub liveness_timeout: Duration,
    pub expiry_after: Duration,
    pub self_registration: bool,
    pub cleanup_policy: CleanupPolicy,
    /// Heartbeats that change nothing but time are written to PostgreSQL at most this often per node.
    pub heartbeat_write_interval: Duration,
    /// Period of the liveness sweep and of the anti-entropy reachability check.
    pub sweep_interval: Duration,
    /// Period of the full anti-entropy pass between Consul and PostgreSQL.
    pub anti_entropy_interval: Duration,
    /// Whether singleton work runs before any lease is held: true where no lease is used.
    pub leader_by_default: bool,
    /// Base URL of this process's HTTP server, announced as the registry's endpoints.
    pub http_base_url: String,
    pub identity: PodIdentity,
}

impl RegistryConfig {
    /// Node id of this process's own registry record: `<registryId>-<pod>`.
    pub fn self_node_id(&self) -> String {
        format!("{}-{}", self.registry_id, self.identity.pod_name)
    }
}
