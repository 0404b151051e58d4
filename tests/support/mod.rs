//! Helpers shared by the integration tests, which run against the local real stack
//! started by `hack/stack.sh up`.
#![allow(dead_code)]

pub mod operator;
pub mod registry;

use std::time::Duration;

/// Reads a variable of the stack's env file, failing with the way to set it.
pub fn stack_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with hack/test.sh, or start the stack with \
             hack/stack.sh up and then eval \"$(hack/stack.sh env)\""
        )
    })
}

/// Returns a name unique to this test run, usable as a Kubernetes name, topic part and schema.
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &suffix[..10])
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lists the services on a registry's synthetic Consul nodes (catalog mode), sorted by
/// ID. The nodes are found by their `registry-id` meta, the way an operator of Consul
/// would. Empty while Consul is unreachable.
pub async fn consul_catalog_services(registry_id: &str) -> Vec<serde_json::Value> {
    let consul = stack_env("CONSUL_HTTP_ADDR");
    let prefix = format!("registry-operator-{registry_id}-");
    let url = format!("{consul}/v1/catalog/nodes?node-meta=registry-id:{registry_id}");
    let Ok(response) = reqwest::get(&url).await else {
        return Vec::new();
    };
    let nodes: serde_json::Value = response.json().await.unwrap_or_default();
    let mut services = Vec::new();
    for node in nodes.as_array().into_iter().flatten() {
        let Some(name) = node["Node"]
            .as_str()
            .filter(|name| name.starts_with(&prefix))
        else {
            continue;
        };
        let url = format!("{consul}/v1/catalog/node-services/{name}");
        let Ok(response) = reqwest::get(&url).await else {
            return Vec::new();
        };
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        services.extend(body["Services"].as_array().cloned().unwrap_or_default());
    }
    services.sort_by_key(|service| service["ID"].as_str().map(str::to_owned));
    services
}

/// Lists the IDs of the services on a registry's synthetic Consul nodes, sorted.
pub async fn consul_catalog_service_ids(registry_id: &str) -> Vec<String> {
    consul_catalog_services(registry_id)
        .await
        .iter()
        .filter_map(|service| service["ID"].as_str().map(str::to_owned))
        .collect()
}

/// Returns the status of a service's check in catalog mode, read from the health of
/// the synthetic node that contains the service.
pub async fn consul_catalog_check_status(registry_id: &str, service_id: &str) -> Option<String> {
    let base = registry_operator::consul::ServiceContext::default_synthetic_node(registry_id);
    let url = format!(
        "{}/v1/health/node/{}",
        stack_env("CONSUL_HTTP_ADDR"),
        registry_operator::consul::shard_node_name(&base, service_id)
    );
    let checks: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
    checks
        .as_array()?
        .iter()
        .find(|check| check["ServiceID"] == service_id)
        .and_then(|check| check["Status"].as_str().map(str::to_owned))
}
