//! Catalog API: services registered under a synthetic node that no agent runs.
//!
//! A service written through the catalog API under a node that runs an agent is removed by
//! that agent's anti-entropy, so the registry owns a node of its own, as consul-k8s does for
//! the services it syncs. Nothing in Consul changes the status of a check on such a node:
//! the registry sets it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::client::{ConsulClient, Scope, ignore_not_found};
use super::error::ConsulError;
use super::registered::{RegisteredService, ServiceEntry};
use super::service::{CheckStatus, ConsulService, MANAGED_BY, ServiceCheck};

/// Address of every synthetic node. A service without an address of its own resolves to it.
pub const SYNTHETIC_NODE_ADDRESS: &str = "127.0.0.1";

/// Synthetic nodes that one registry's catalog services are spread over. Consul does
/// work proportional to a node's services and checks on every catalog write to that
/// node, so a single node would make registering N services cost O(N²).
pub const CATALOG_SHARDS: u32 = 256;

/// Returns the name of the synthetic node that contains `service_id`: `<base>-<shard>`,
/// the shard as two hex digits. The shard is the 32-bit FNV-1a hash of the service ID modulo
/// [`CATALOG_SHARDS`], fixed so that every version and process places a service alike.
pub fn shard_node_name(base: &str, service_id: &str) -> String {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let hash = service_id.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(PRIME)
    });
    format!("{base}-{:02x}", hash % CATALOG_SHARDS)
}

/// A Consul node that contains catalog services of one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticNode {
    pub name: String,
    /// Written into the node meta as `registry-id`.
    pub registry_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogRegistration<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    datacenter: Option<&'a str>,
    node: &'a str,
    address: &'a str,
    node_meta: BTreeMap<&'a str, &'a str>,
    /// Creates the node when it is missing but leaves an existing node's address and meta
    /// alone, so a service write does not rewrite the node.
    skip_node_update: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<CatalogServiceBody<'a>>,
    check: CatalogCheckBody<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogServiceBody<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    service: &'a str,
    tags: &'a [String],
    address: &'a str,
    port: u16,
    meta: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogCheckBody<'a> {
    node: &'a str,
    #[serde(rename = "CheckID")]
    check_id: &'a str,
    name: &'a str,
    notes: &'a str,
    status: CheckStatus,
    output: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogDeregistration<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    datacenter: Option<&'a str>,
    node: &'a str,
    #[serde(rename = "ServiceID", skip_serializing_if = "Option::is_none")]
    service_id: Option<&'a str>,
}

/// One entry of `/v1/catalog/nodes`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeName {
    node: String,
}

/// Response of `/v1/catalog/node/<node>`. Consul sends `null` for an unknown node.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeServices {
    #[serde(default)]
    services: Option<HashMap<String, ServiceEntry>>,
}

impl ConsulClient {
    /// Registers the service and its check under the synthetic node
    /// (`PUT /v1/catalog/register`), creating the node when it is missing.
    pub async fn catalog_register(
        &self,
        node: &SyntheticNode,
        service: &ConsulService,
    ) -> Result<(), ConsulError> {
        let body = CatalogRegistration {
            service: Some(CatalogServiceBody {
                id: &service.id,
                service: &service.name,
                tags: &service.tags,
                address: service.address.as_deref().unwrap_or(""),
                port: service.port,
                meta: &service.meta,
            }),
            ..self.registration(node, &service.id, &service.check)
        };
        let url = self.endpoint(&["catalog", "register"], Scope::Datacenter)?;
        self.put(url, Some(&body)).await
    }

    /// Replaces the check of a service already registered under the synthetic node, leaving
    /// the service itself unchanged (`PUT /v1/catalog/register` without a service).
    /// Fails with `ConsulError::ServiceNotFound` when the node has no such service.
    pub async fn catalog_set_check(
        &self,
        node: &SyntheticNode,
        service_id: &str,
        check: &ServiceCheck,
    ) -> Result<(), ConsulError> {
        let body = self.registration(node, service_id, check);
        let url = self.endpoint(&["catalog", "register"], Scope::Datacenter)?;
        match self.put(url, Some(&body)).await {
            // Consul 1.14 returns HTTP 500 with "Unknown service ID '<id>' for check ID ..."
            // here, which would otherwise read as a transient server error.
            Err(ConsulError::Status {
                status: 500, body, ..
            }) if body.starts_with("Unknown service ID") => Err(ConsulError::ServiceNotFound {
                node: node.name.clone(),
                service_id: service_id.to_owned(),
                body,
            }),
            other => other,
        }
    }

    /// Removes a service and its checks from a node (`PUT /v1/catalog/deregister`).
    /// A service or node that is already gone counts as success.
    pub async fn catalog_deregister(
        &self,
        node: &str,
        service_id: &str,
    ) -> Result<(), ConsulError> {
        let body = CatalogDeregistration {
            datacenter: self.datacenter(),
            node,
            service_id: Some(service_id),
        };
        let url = self.endpoint(&["catalog", "deregister"], Scope::Datacenter)?;
        ignore_not_found(self.put(url, Some(&body)).await)
    }

    /// Removes a node with all its services and checks (`PUT /v1/catalog/deregister`).
    /// A node that is already gone counts as success.
    pub async fn catalog_deregister_node(&self, node: &str) -> Result<(), ConsulError> {
        let body = CatalogDeregistration {
            datacenter: self.datacenter(),
            node,
            service_id: None,
        };
        let url = self.endpoint(&["catalog", "deregister"], Scope::Datacenter)?;
        ignore_not_found(self.put(url, Some(&body)).await)
    }

    /// Lists the services of a node (`GET /v1/catalog/node/<node>`), sorted by ID.
    /// An unknown node has none.
    pub async fn catalog_node_services(
        &self,
        node: &str,
    ) -> Result<Vec<RegisteredService>, ConsulError> {
        let url = self.endpoint(&["catalog", "node", node], Scope::Datacenter)?;
        let response: Option<NodeServices> = self.get_json(url).await?;

        let mut services: Vec<RegisteredService> = response
            .and_then(|node| node.services)
            .unwrap_or_default()
            .into_values()
            .map(RegisteredService::from)
            .collect();
        services.sort_by(|left, right| left.id.cmp(&right.id));
        Ok(services)
    }

    /// Lists the names of the nodes whose meta contains `key` = `value`
    /// (`GET /v1/catalog/nodes?node-meta=<key>:<value>`), sorted.
    pub async fn catalog_nodes_with_meta(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, ConsulError> {
        let mut url = self.endpoint(&["catalog", "nodes"], Scope::Datacenter)?;
        url.query_pairs_mut()
            .append_pair("node-meta", &format!("{key}:{value}"));
        let nodes: Option<Vec<NodeName>> = self.get_json(url).await?;
        let mut names: Vec<String> = nodes
            .unwrap_or_default()
            .into_iter()
            .map(|node| node.node)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Builds a registration of the node and one check, without a service.
    fn registration<'a>(
        &'a self,
        node: &'a SyntheticNode,
        service_id: &'a str,
        check: &'a ServiceCheck,
    ) -> CatalogRegistration<'a> {
        CatalogRegistration {
            datacenter: self.datacenter(),
            node: &node.name,
            address: SYNTHETIC_NODE_ADDRESS,
            node_meta: BTreeMap::from([
                ("external-source", MANAGED_BY),
                ("registry-id", node.registry_id.as_str()),
            ]),
            skip_node_update: true,
            service: None,
            check: CatalogCheckBody {
                node: &node.name,
                check_id: &check.check_id,
                name: &check.name,
                notes: &check.notes,
                status: check.status,
                output: &check.output,
                service_id,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::consul::service::CheckTtl;

    #[test]
    fn shard_names_are_stable_and_spread() {
        // FNV-1a of "" is the offset basis, 0x811c9dc5; of "a" it is 0xe40c292c.
        assert_eq!(
            shard_node_name("registry-operator-r", ""),
            "registry-operator-r-c5"
        );
        assert_eq!(
            shard_node_name("registry-operator-r", "a"),
            "registry-operator-r-2c"
        );
        let shards: std::collections::HashSet<String> = (0..10_000)
            .map(|index| shard_node_name("b", &format!("node-{index}")))
            .collect();
        assert_eq!(shards.len(), CATALOG_SHARDS as usize);
    }

    #[test]
    fn registration_body_shape() {
        let client = ConsulClient::new("http://127.0.0.1:8500", None, Duration::from_secs(5))
            .unwrap()
            .with_datacenter(Some("dc2".to_owned()));
        let node = SyntheticNode {
            name: "registry-operator-prod".to_owned(),
            registry_id: "prod".to_owned(),
        };
        let check = ServiceCheck {
            check_id: "registry:a".to_owned(),
            name: "Node heartbeat".to_owned(),
            notes: "notes".to_owned(),
            status: CheckStatus::Warning,
            output: "why".to_owned(),
            ttl: CheckTtl {
                ttl_seconds: 90,
                deregister_critical_after_seconds: 600,
            },
        };

        let body = serde_json::to_value(client.registration(&node, "a", &check)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "Datacenter": "dc2",
                "Node": "registry-operator-prod",
                "Address": "127.0.0.1",
                "NodeMeta": {"external-source": "registry-operator", "registry-id": "prod"},
                "SkipNodeUpdate": true,
                "Check": {
                    "Node": "registry-operator-prod",
                    "CheckID": "registry:a",
                    "Name": "Node heartbeat",
                    "Notes": "notes",
                    "Status": "warning",
                    "Output": "why",
                    "ServiceID": "a",
                },
            })
        );
    }
}
