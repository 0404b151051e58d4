//! Component tests of the Consul adapter against a real Consul agent (`CONSUL_HTTP_ADDR`).
//!
//! The adapter writes; the assertions read back through Consul's HTTP API with a plain
//! HTTP client. Every test uses its own registry id, node type and synthetic node, so the
//! tests run in parallel with each other and with other suites on the same agent.

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use chrono::Utc;
use registry_operator::consul::{
    ConsulClient, ConsulSink, MetaRejection, OmittedMeta, ServiceContext, service_name,
    shard_node_name,
};
use registry_operator::crd::RegistrationMode;
use registry_operator::node::{HealthStatus, NodeRecord};
use serde_json::{Value, json};
use support::{eventually, stack_env, unique_name};
use uuid::Uuid;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Reads back what Consul stores, independently of the adapter under test.
struct ConsulReader {
    http: reqwest::Client,
    address: String,
}

impl ConsulReader {
    fn new(address: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            address: address.trim_end_matches('/').to_owned(),
        }
    }

    /// GETs `path` and returns the status and the JSON body (`Null` for an empty body).
    async fn get(&self, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.address);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {url} failed: {error}"));
        let status = response.status().as_u16();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, body)
    }

    async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path} returned {status}: {body}");
        body
    }

    async fn catalog_service(&self, name: &str) -> Vec<Value> {
        let body = self.get_ok(&format!("/v1/catalog/service/{name}")).await;
        body.as_array().cloned().expect("catalog service list")
    }

    async fn health_checks(&self, name: &str) -> Vec<Value> {
        let body = self.get_ok(&format!("/v1/health/checks/{name}")).await;
        body.as_array().cloned().expect("health check list")
    }

    /// Returns the agent's checks of one service.
    async fn agent_checks(&self, service_id: &str) -> Vec<Value> {
        let body = self.get_ok("/v1/agent/checks").await;
        body.as_object()
            .expect("agent check map")
            .values()
            .filter(|check| check["ServiceID"] == service_id)
            .cloned()
            .collect()
    }
}

/// Percent-encodes one URL path segment for the reader's requests.
fn encode_segment(segment: &str) -> String {
    let mut url = url::Url::parse("http://127.0.0.1/").expect("base URL");
    url.path_segments_mut()
        .expect("base URL has a path")
        .push(segment);
    url.path().trim_start_matches('/').to_owned()
}

fn record(node_id: &str, node_type: &str) -> NodeRecord {
    NodeRecord {
        node_id: node_id.to_owned(),
        node_type: node_type.to_owned(),
        node_role: Some("writer".to_owned()),
        node_version: Some("1.4.2".to_owned()),
        capabilities: json!({"batch": true}),
        endpoints: BTreeMap::from([
            ("api".to_owned(), "http://[::1]:8080/v1".to_owned()),
            (
                "health".to_owned(),
                "http://127.0.0.1:8081/health".to_owned(),
            ),
        ]),
        metadata: json!({}),
        health_status: HealthStatus::Healthy,
        network_id: Some("net-test".to_owned()),
        deployment_id: Some("blue-1".to_owned()),
        epoch: Some(7),
        event_id: Uuid::new_v4(),
        event_timestamp: Utc::now(),
    }
}

fn context(registry_id: &str, mode: RegistrationMode) -> ServiceContext {
    ServiceContext {
        registry_id: registry_id.to_owned(),
        extra_tags: vec!["team:core".to_owned()],
        datacenter: None,
        synthetic_node: ServiceContext::default_synthetic_node(registry_id),
        mode,
        check_ttl_seconds: 90,
        deregister_after_seconds: 600,
    }
}

fn sink(address: &str, context: ServiceContext) -> ConsulSink {
    let client = ConsulClient::new(address, None, TIMEOUT).expect("Consul client");
    ConsulSink::new(client, context)
}

fn expected_meta(registry_id: &str, node_type: &str) -> Value {
    json!({
        "node_type": node_type,
        "node_role": "writer",
        "node_version": "1.4.2",
        "network_id": "net-test",
        "deployment_id": "blue-1",
        "epoch": "7",
        "registry_id": registry_id,
        "managed-by": "registry-operator",
        "external-source": "registry-operator",
        "health_endpoint": "http://127.0.0.1:8081/health",
    })
}

fn expected_tags(registry_id: &str, node_type: &str) -> Value {
    json!([
        node_type,
        "role:writer",
        format!("registry:{registry_id}"),
        "managed-by:registry-operator",
        "team:core",
    ])
}

#[tokio::test]
async fn leader_reported() {
    let address = stack_env("CONSUL_HTTP_ADDR");
    let client = ConsulClient::new(&address, None, TIMEOUT).expect("Consul client");

    let leader = client.leader().await.expect("leader request");
    let leader = leader.expect("a dev agent elects itself leader");
    assert!(leader.contains(':'), "leader address {leader:?}");
}

#[tokio::test]
async fn catalog_register_health_deregister() {
    let address = stack_env("CONSUL_HTTP_ADDR");
    let reader = ConsulReader::new(&address);
    let registry_id = unique_name("catalog-");
    let node_type = format!("Effect_{}", unique_name(""));
    let name = service_name(&node_type);
    let node_id = format!("effect:{}", unique_name(""));
    let context = context(&registry_id, RegistrationMode::Catalog);
    let synthetic_node = shard_node_name(&context.synthetic_node, &node_id);
    let sink = sink(&address, context);

    // Register and read the service back from the catalog.
    let service = sink
        .register(&record(&node_id, &node_type))
        .await
        .expect("catalog register");
    assert!(service.omitted_meta.is_empty());

    let entries = reader.catalog_service(&name).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["ServiceID"], node_id.as_str());
    assert_eq!(entry["ServiceName"], name.as_str());
    assert_eq!(entry["ServiceAddress"], "::1");
    assert_eq!(entry["ServicePort"], 8080);
    assert_eq!(
        entry["ServiceTags"],
        expected_tags(&registry_id, &node_type)
    );
    assert_eq!(
        entry["ServiceMeta"],
        expected_meta(&registry_id, &node_type)
    );
    assert_eq!(entry["Node"], synthetic_node.as_str());
    assert_eq!(entry["Address"], "127.0.0.1");
    assert_eq!(
        entry["NodeMeta"],
        json!({"external-source": "registry-operator", "registry-id": registry_id})
    );

    // The check starts with the record's health.
    let checks = reader.health_checks(&name).await;
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0]["CheckID"], format!("registry:{node_id}"));
    assert_eq!(checks[0]["ServiceID"], node_id.as_str());
    assert_eq!(checks[0]["Node"], synthetic_node.as_str());
    assert_eq!(checks[0]["Status"], "passing");
    assert_eq!(
        checks[0]["Output"],
        format!("Node health is healthy as last recorded by registry {registry_id}.")
    );

    assert_eq!(
        sink.list_registered().await.expect("list"),
        vec![node_id.clone()]
    );

    // Critical, then degraded.
    sink.set_health(&node_id, HealthStatus::Critical, "no heartbeat for 95 s")
        .await
        .expect("set critical");
    let checks = reader.health_checks(&name).await;
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0]["Status"], "critical");
    assert_eq!(checks[0]["Output"], "no heartbeat for 95 s");

    sink.set_health(&node_id, HealthStatus::Degraded, "node reports degraded")
        .await
        .expect("set degraded");
    let checks = reader.health_checks(&name).await;
    assert_eq!(checks[0]["Status"], "warning");
    assert_eq!(checks[0]["Output"], "node reports degraded");

    // The health update left the service unchanged.
    let entries = reader.catalog_service(&name).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        entries[0]["ServiceMeta"],
        expected_meta(&registry_id, &node_type)
    );

    // Deregister, twice.
    sink.deregister(&node_id).await.expect("deregister");
    assert!(reader.catalog_service(&name).await.is_empty());
    assert!(reader.health_checks(&name).await.is_empty());
    sink.deregister(&node_id)
        .await
        .expect("deregistering a service that is gone succeeds");
    assert!(sink.list_registered().await.expect("list").is_empty());

    // The emptied synthetic node goes too.
    assert_eq!(sink.deregister_all().await.expect("deregister all"), 0);
    let node_path = format!("/v1/catalog/node/{synthetic_node}");
    assert_eq!(reader.get_ok(&node_path).await, Value::Null);
}

#[tokio::test]
async fn catalog_reregister_updates_in_place() {
    let address = stack_env("CONSUL_HTTP_ADDR");
    let reader = ConsulReader::new(&address);
    let registry_id = unique_name("catalog-");
    let node_type = format!("reducer_{}", unique_name(""));
    let name = service_name(&node_type);
    let node_id = unique_name("reducer-");
    let sink = sink(&address, context(&registry_id, RegistrationMode::Catalog));

    let mut record = record(&node_id, &node_type);
    sink.register(&record).await.expect("first register");

    record.node_version = Some("1.5.0".to_owned());
    record.epoch = Some(8);
    record.health_status = HealthStatus::Unhealthy;
    record.endpoints = BTreeMap::from([("api".to_owned(), "grpc://127.0.0.1:50051".to_owned())]);
    sink.register(&record).await.expect("second register");

    let entries = reader.catalog_service(&name).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["ServiceMeta"]["node_version"], "1.5.0");
    assert_eq!(entries[0]["ServiceMeta"]["epoch"], "8");
    assert_eq!(entries[0]["ServiceMeta"].get("health_endpoint"), None);
    assert_eq!(entries[0]["ServiceAddress"], "127.0.0.1");
    assert_eq!(entries[0]["ServicePort"], 50051);

    let checks = reader.health_checks(&name).await;
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0]["Status"], "critical");

    assert_eq!(sink.deregister_all().await.expect("deregister all"), 1);
}

#[tokio::test]
async fn catalog_long_meta_value_omitted() {
    let address = stack_env("CONSUL_HTTP_ADDR");
    let reader = ConsulReader::new(&address);
    let registry_id = unique_name("catalog-");
    let node_type = format!("compute_{}", unique_name(""));
    let name = service_name(&node_type);
    let node_id = unique_name("compute-");
    let sink = sink(&address, context(&registry_id, RegistrationMode::Catalog));

    let mut record = record(&node_id, &node_type);
    record.deployment_id = Some("d".repeat(600));
    let service = sink
        .register(&record)
        .await
        .expect("Consul accepts the service without the long value");

    assert_eq!(
        service.omitted_meta,
        vec![OmittedMeta {
            key: "deployment_id".to_owned(),
            reason: MetaRejection::ValueTooLong { bytes: 600 },
        }]
    );
    let entries = reader.catalog_service(&name).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["ServiceMeta"].get("deployment_id"), None);
    assert_eq!(entries[0]["ServiceMeta"]["epoch"], "7");

    sink.deregister_all().await.expect("deregister all");
}

#[tokio::test]
async fn catalog_unspecified_address_left_out() {
    // Consul rejects a service address of 0.0.0.0, which nodes often announce when they
    // listen on every interface.
    let address = stack_env("CONSUL_HTTP_ADDR");
    let reader = ConsulReader::new(&address);
    let registry_id = unique_name("catalog-");
    let node_type = format!("effect_{}", unique_name(""));
    let node_id = unique_name("effect-");
    let sink = sink(&address, context(&registry_id, RegistrationMode::Catalog));

    let mut record = record(&node_id, &node_type);
    record.endpoints = BTreeMap::from([("api".to_owned(), "http://0.0.0.0:8080".to_owned())]);
    sink.register(&record)
        .await
        .expect("Consul accepts the service without the unspecified address");

    let entries = reader.catalog_service(&service_name(&node_type)).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["ServiceAddress"], "");
    assert_eq!(entries[0]["ServicePort"], 8080);

    sink.deregister_all().await.expect("deregister all");
}

#[tokio::test]
async fn catalog_health_of_unknown_service_not_found() {
    let address = stack_env("CONSUL_HTTP_ADDR");
    let registry_id = unique_name("catalog-");
    let sink = sink(&address, context(&registry_id, RegistrationMode::Catalog));

    let error = sink
        .set_health(&unique_name("missing-"), HealthStatus::Healthy, "heartbeat")
        .await
        .expect_err("a check needs its service");

    assert!(error.is_not_found(), "{error}");
    assert!(!error.is_transient(), "{error}");
    assert_eq!(error.label(), "service_not_found");

    sink.deregister_all().await.expect("deregister all");
}

#[tokio::test]
async fn catalog_deregister_all_removes_node() {
    let address = stack_env("CONSUL_HTTP_ADDR");
    let reader = ConsulReader::new(&address);
    let registry_id = unique_name("catalog-");
    let node_type = format!("orchestrator_{}", unique_name(""));
    let context = context(&registry_id, RegistrationMode::Catalog);
    let base = context.synthetic_node.clone();
    let nodes_path = format!("/v1/catalog/nodes?node-meta=registry-id:{registry_id}");
    let sink = sink(&address, context);

    let first = unique_name("orchestrator-");
    let second = unique_name("orchestrator-");
    sink.register(&record(&first, &node_type))
        .await
        .expect("register first");
    sink.register(&record(&second, &node_type))
        .await
        .expect("register second");

    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(sink.list_registered().await.expect("list"), expected);
    let mut expected_nodes = vec![
        shard_node_name(&base, &first),
        shard_node_name(&base, &second),
    ];
    expected_nodes.sort();
    expected_nodes.dedup();
    assert_eq!(sink.synthetic_nodes().await.expect("nodes"), expected_nodes);
    let mut listed: Vec<String> = reader
        .get_ok(&nodes_path)
        .await
        .as_array()
        .expect("node list")
        .iter()
        .filter_map(|node| node["Node"].as_str().map(str::to_owned))
        .collect();
    listed.sort();
    assert_eq!(listed, expected_nodes);

    assert_eq!(sink.deregister_all().await.expect("deregister all"), 2);
    assert!(
        reader
            .catalog_service(&service_name(&node_type))
            .await
            .is_empty()
    );
    assert_eq!(reader.get_ok(&nodes_path).await, json!([]));
}

#[tokio::test]
async fn agent_register_ttl_deregister() {
    let address = stack_env("CONSUL_HTTP_ADDR");
    let reader = ConsulReader::new(&address);
    let registry_id = unique_name("agent-");
    let node_type = format!("compute_{}", unique_name(""));
    let name = service_name(&node_type);
    // `:` and `/` in the id must survive the agent endpoints' URL paths.
    let node_id = format!("compute:{}/0", unique_name(""));
    let service_path = format!("/v1/agent/service/{}", encode_segment(&node_id));
    let sink = sink(&address, context(&registry_id, RegistrationMode::Agent));

    // Register and read the service back from the agent.
    sink.register(&record(&node_id, &node_type))
        .await
        .expect("agent register");

    let service = reader.get_ok(&service_path).await;
    assert_eq!(service["ID"], node_id.as_str());
    assert_eq!(service["Service"], name.as_str());
    assert_eq!(service["Address"], "::1");
    assert_eq!(service["Port"], 8080);
    assert_eq!(service["Tags"], expected_tags(&registry_id, &node_type));
    assert_eq!(service["Meta"], expected_meta(&registry_id, &node_type));

    let checks = reader.agent_checks(&node_id).await;
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0]["CheckID"], format!("registry:{node_id}"));
    assert_eq!(checks[0]["Type"], "ttl");
    assert_eq!(checks[0]["Status"], "passing");
    assert_eq!(
        checks[0]["Output"],
        format!("Node health is healthy as last recorded by registry {registry_id}.")
    );

    assert_eq!(
        sink.list_registered().await.expect("list"),
        vec![node_id.clone()]
    );

    // TTL updates.
    sink.set_health(&node_id, HealthStatus::Critical, "no heartbeat for 95 s")
        .await
        .expect("set critical");
    let checks = reader.agent_checks(&node_id).await;
    assert_eq!(checks[0]["Status"], "critical");
    assert_eq!(checks[0]["Output"], "no heartbeat for 95 s");

    sink.set_health(&node_id, HealthStatus::Healthy, "heartbeat received")
        .await
        .expect("set passing");
    let checks = reader.agent_checks(&node_id).await;
    assert_eq!(checks[0]["Status"], "passing");
    assert_eq!(checks[0]["Output"], "heartbeat received");

    // Deregister, twice; a TTL update afterwards reports the check as not found.
    sink.deregister(&node_id).await.expect("deregister");
    let (status, _) = reader.get(&service_path).await;
    assert_eq!(status, 404);
    assert!(reader.agent_checks(&node_id).await.is_empty());
    sink.deregister(&node_id)
        .await
        .expect("deregistering a service that is gone succeeds");

    let error = sink
        .set_health(&node_id, HealthStatus::Healthy, "late heartbeat")
        .await
        .expect_err("no check after deregistration");
    assert!(error.is_not_found(), "{error}");
    assert_eq!(error.label(), "http_4xx");
    assert!(sink.list_registered().await.expect("list").is_empty());
}

#[tokio::test]
async fn agent_ttl_expiry_turns_critical() {
    let address = stack_env("CONSUL_HTTP_ADDR");
    let reader = ConsulReader::new(&address);
    let registry_id = unique_name("agent-");
    let node_id = unique_name("effect-");
    let mut context = context(&registry_id, RegistrationMode::Agent);
    context.check_ttl_seconds = 1;
    let sink = sink(&address, context);

    sink.register(&record(&node_id, "effect"))
        .await
        .expect("agent register");

    let (reader, node_id) = (&reader, &node_id);
    let output = eventually(
        "the TTL check to expire",
        Duration::from_secs(10),
        || async move {
            let checks = reader.agent_checks(node_id).await;
            let check = checks.first()?;
            (check["Status"] == "critical").then(|| check["Output"].to_string())
        },
    )
    .await;
    // Consul appends the last output before the TTL ran out to this prefix.
    assert!(output.starts_with("\"TTL expired"), "{output}");

    sink.deregister_all().await.expect("deregister all");
}

#[tokio::test]
async fn agent_list_only_own_registry() {
    let address = stack_env("CONSUL_HTTP_ADDR");
    let ours = sink(
        &address,
        context(&unique_name("agent-"), RegistrationMode::Agent),
    );
    let theirs = sink(
        &address,
        context(&unique_name("agent-"), RegistrationMode::Agent),
    );
    let our_node = unique_name("effect-");
    let their_node = unique_name("effect-");

    ours.register(&record(&our_node, "effect"))
        .await
        .expect("register ours");
    theirs
        .register(&record(&their_node, "effect"))
        .await
        .expect("register theirs");

    assert_eq!(
        ours.list_registered().await.expect("list ours"),
        vec![our_node]
    );
    assert_eq!(
        theirs.list_registered().await.expect("list theirs"),
        vec![their_node.clone()]
    );

    assert_eq!(ours.deregister_all().await.expect("deregister ours"), 1);
    assert_eq!(
        theirs.list_registered().await.expect("list theirs"),
        vec![their_node]
    );
    assert_eq!(theirs.deregister_all().await.expect("deregister theirs"), 1);
}

#[tokio::test]
async fn refused_connection_is_transient() {
    // A port that was just free on loopback: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let address = format!("http://127.0.0.1:{port}");
    let client = ConsulClient::new(&address, Some("secret-token".to_owned()), TIMEOUT)
        .expect("Consul client");

    let error = client.leader().await.expect_err("nothing listens");

    assert_eq!(error.label(), "connect");
    assert!(error.is_transient());
    let message = error.to_string();
    assert!(message.contains(&address), "{message}");
    assert!(!message.contains("secret-token"), "{message}");
}

#[tokio::test]
async fn silent_server_times_out() {
    // The kernel accepts the connection into the backlog, but no process reads the request.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    let client =
        ConsulClient::new(&address, None, Duration::from_millis(300)).expect("Consul client");

    let error = client.leader().await.expect_err("no response arrives");

    assert_eq!(error.label(), "timeout");
    assert!(error.is_transient());
    drop(listener);
}
