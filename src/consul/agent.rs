//! Agent API: services registered on the contacted agent with TTL checks.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::client::{ConsulClient, Scope, ignore_not_found};
use super::error::ConsulError;
use super::registered::{RegisteredService, ServiceEntry};
use super::service::{CheckStatus, ConsulService};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentRegistration<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    tags: &'a [String],
    address: &'a str,
    port: u16,
    meta: &'a BTreeMap<String, String>,
    check: AgentCheck<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentCheck<'a> {
    #[serde(rename = "CheckID")]
    check_id: &'a str,
    name: &'a str,
    notes: &'a str,
    /// Consul duration string, for example `90s`.
    #[serde(rename = "TTL")]
    ttl: String,
    /// Initial status. The agent API takes no output here.
    status: CheckStatus,
    deregister_critical_service_after: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TtlUpdate<'a> {
    status: CheckStatus,
    output: &'a str,
}

impl ConsulClient {
    /// Registers the service with its TTL check on the agent
    /// (`PUT /v1/agent/service/register?replace-existing-checks=true`), replacing any other
    /// check the service had.
    ///
    /// The agent raises a `DeregisterCriticalServiceAfter` below its
    /// `check_deregister_interval_min` (1 minute by default in Consul 1.14) to that minimum.
    pub async fn agent_register(&self, service: &ConsulService) -> Result<(), ConsulError> {
        let check = &service.check;
        let body = AgentRegistration {
            id: &service.id,
            name: &service.name,
            tags: &service.tags,
            address: service.address.as_deref().unwrap_or(""),
            port: service.port,
            meta: &service.meta,
            check: AgentCheck {
                check_id: &check.check_id,
                name: &check.name,
                notes: &check.notes,
                ttl: format!("{}s", check.ttl.ttl_seconds),
                status: check.status,
                deregister_critical_service_after: format!(
                    "{}s",
                    check.ttl.deregister_critical_after_seconds
                ),
            },
        };

        let mut url = self.endpoint(&["agent", "service", "register"], Scope::Agent)?;
        url.query_pairs_mut()
            .append_pair("replace-existing-checks", "true");
        self.put(url, Some(&body)).await
    }

    /// Removes a service and its checks from the agent
    /// (`PUT /v1/agent/service/deregister/<id>`). A service that is already gone counts as
    /// success.
    pub async fn agent_deregister(&self, service_id: &str) -> Result<(), ConsulError> {
        let url = self.endpoint(
            &["agent", "service", "deregister", service_id],
            Scope::Agent,
        )?;
        ignore_not_found(self.put(url, None::<&()>).await)
    }

    /// Sets the status and output of a TTL check and restarts its TTL
    /// (`PUT /v1/agent/check/update/<id>`). Fails with HTTP 404 (`is_not_found`) when the
    /// agent has no such check, for example after an agent restart without persisted state.
    pub async fn agent_update_ttl(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), ConsulError> {
        let url = self.endpoint(&["agent", "check", "update", check_id], Scope::Agent)?;
        self.put(url, Some(&TtlUpdate { status, output })).await
    }

    /// Lists the agent's services whose `registry_id` meta is `registry_id`
    /// (`GET /v1/agent/services?filter=...`), sorted by ID.
    pub async fn agent_services(
        &self,
        registry_id: &str,
    ) -> Result<Vec<RegisteredService>, ConsulError> {
        let mut url = self.endpoint(&["agent", "services"], Scope::Agent)?;
        url.query_pairs_mut()
            .append_pair("filter", &registry_filter(registry_id));

        let response: HashMap<String, ServiceEntry> = self.get_json(url).await?;
        let mut services: Vec<RegisteredService> = response
            .into_values()
            .map(RegisteredService::from)
            .collect();
        services.sort_by(|left, right| left.id.cmp(&right.id));
        Ok(services)
    }
}

/// Returns the Consul filter expression that matches the `registry_id` meta value.
fn registry_filter(registry_id: &str) -> String {
    // A JSON string literal is also a valid double-quoted string in Consul's filter language
    // (go-bexpr unquotes it with Go's strconv.Unquote), so quotes and backslashes stay literal.
    let quoted = serde_json::Value::String(registry_id.to_owned()).to_string();
    format!("Meta.registry_id == {quoted}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_quotes_value() {
        assert_eq!(
            registry_filter("prod-main"),
            r#"Meta.registry_id == "prod-main""#
        );
        assert_eq!(
            registry_filter(r#"a"b\c"#),
            r#"Meta.registry_id == "a\"b\\c""#
        );
    }
}
