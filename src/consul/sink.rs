//! One registry's writes to Consul, through the catalog or the agent API as configured.

use super::catalog::{SyntheticNode, shard_node_name};
use super::client::ConsulClient;
use super::error::ConsulError;
use super::service::{
    CheckStatus, ConsulService, ServiceContext, build_check, build_service, check_id,
};
use crate::crd::RegistrationMode;
use crate::node::{HealthStatus, NodeRecord};

/// Registers, updates and removes one registry's services in Consul.
#[derive(Debug, Clone)]
pub struct ConsulSink {
    client: ConsulClient,
    context: ServiceContext,
}

impl ConsulSink {
    /// Creates the sink. A datacenter set in `context` replaces the client's datacenter.
    pub fn new(client: ConsulClient, context: ServiceContext) -> Self {
        let client = match &context.datacenter {
            Some(datacenter) => client.with_datacenter(Some(datacenter.clone())),
            None => client,
        };
        Self { client, context }
    }

    /// Returns the synthetic node that contains the service `service_id` in catalog mode.
    pub fn node_for(&self, service_id: &str) -> SyntheticNode {
        SyntheticNode {
            name: shard_node_name(&self.context.synthetic_node, service_id),
            registry_id: self.context.registry_id.clone(),
        }
    }

    /// Lists the synthetic nodes of this registry that exist in Consul, sorted.
    pub async fn synthetic_nodes(&self) -> Result<Vec<String>, ConsulError> {
        let prefix = format!("{}-", self.context.synthetic_node);
        let names = self
            .client
            .catalog_nodes_with_meta("registry-id", &self.context.registry_id)
            .await?;
        Ok(names
            .into_iter()
            .filter(|name| name.starts_with(&prefix))
            .collect())
    }

    pub fn client(&self) -> &ConsulClient {
        &self.client
    }

    pub fn context(&self) -> &ServiceContext {
        &self.context
    }

    /// Registers or updates the node's service and check, and returns the service as sent.
    /// Meta pairs left out for breaking Consul's limits are logged and listed in the result.
    pub async fn register(&self, record: &NodeRecord) -> Result<ConsulService, ConsulError> {
        let service = build_service(record, &self.context);
        for omitted in &service.omitted_meta {
            tracing::warn!(
                node_id = %record.node_id,
                meta_key = %omitted.key,
                reason = %omitted.reason,
                "Consul service meta left out"
            );
        }

        match self.context.mode {
            RegistrationMode::Catalog => {
                self.client
                    .catalog_register(&self.node_for(&service.id), &service)
                    .await?;
            }
            RegistrationMode::Agent => {
                self.client.agent_register(&service).await?;
                // The agent API takes no check output at registration, so a TTL update sets it.
                let check = &service.check;
                self.client
                    .agent_update_ttl(&check.check_id, check.status, &check.output)
                    .await?;
            }
        }
        tracing::debug!(
            node_id = %record.node_id,
            service = %service.name,
            mode = ?self.context.mode,
            "registered Consul service"
        );
        Ok(service)
    }

    /// Removes the node's service and check. A service that is already gone counts as success.
    pub async fn deregister(&self, node_id: &str) -> Result<(), ConsulError> {
        match self.context.mode {
            RegistrationMode::Catalog => {
                self.client
                    .catalog_deregister(&self.node_for(node_id).name, node_id)
                    .await?
            }
            RegistrationMode::Agent => self.client.agent_deregister(node_id).await?,
        }
        tracing::debug!(node_id, "deregistered Consul service");
        Ok(())
    }

    /// Sets the status and output of the node's check; in agent mode this also restarts
    /// the TTL. When the service is not registered, fails with an error whose
    /// `is_not_found()` is true: register the node again then.
    pub async fn set_health(
        &self,
        node_id: &str,
        health: HealthStatus,
        output: &str,
    ) -> Result<(), ConsulError> {
        match self.context.mode {
            RegistrationMode::Catalog => {
                let check = build_check(node_id, health, output.to_owned(), &self.context);
                self.client
                    .catalog_set_check(&self.node_for(node_id), node_id, &check)
                    .await
            }
            RegistrationMode::Agent => {
                self.client
                    .agent_update_ttl(&check_id(node_id), CheckStatus::from(health), output)
                    .await
            }
        }
    }

    /// Lists the IDs of the services whose `registry_id` meta names this registry, sorted:
    /// on its synthetic nodes in catalog mode, on the contacted agent in agent mode.
    pub async fn list_registered(&self) -> Result<Vec<String>, ConsulError> {
        let services = match self.context.mode {
            RegistrationMode::Catalog => {
                let mut services = Vec::new();
                for node in self.synthetic_nodes().await? {
                    services.extend(self.client.catalog_node_services(&node).await?);
                }
                services
            }
            RegistrationMode::Agent => {
                self.client
                    .agent_services(&self.context.registry_id)
                    .await?
            }
        };

        let mut ids: Vec<String> = services
            .into_iter()
            .filter(|service| service.registry_id() == Some(self.context.registry_id.as_str()))
            .map(|service| service.id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes every service of this registry and returns how many there were. In catalog
    /// mode each synthetic node goes too once it has no other service.
    pub async fn deregister_all(&self) -> Result<usize, ConsulError> {
        let service_ids = self.list_registered().await?;
        for service_id in &service_ids {
            self.deregister(service_id).await?;
        }

        if self.context.mode == RegistrationMode::Catalog {
            for node in self.synthetic_nodes().await? {
                let remaining = self.client.catalog_node_services(&node).await?;
                if remaining.is_empty() {
                    self.client.catalog_deregister_node(&node).await?;
                } else {
                    tracing::info!(
                        node = %node,
                        remaining = remaining.len(),
                        "kept a synthetic Consul node because it holds services of other registries"
                    );
                }
            }
        }
        Ok(service_ids.len())
    }
}
