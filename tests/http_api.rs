//! End-to-end tests of the HTTP API: the built binary against the real stack, with
//! nodes created by `registry-operator emit`.

mod support;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::StatusCode;
use serde_json::Value;
use support::registry::Registry;
use support::{eventually, stack_env, unique_name};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "test-token-0123456789";

async fn get_json(url: &str) -> (StatusCode, Value) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|error| panic!("GET {url} failed: {error}"));
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn delete(url: &str, authorization: Option<&str>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().delete(url);
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("DELETE {url} failed: {error}"));
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Node ids of a page body, in order.
fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items array")
        .iter()
        .map(|item| item["node_id"].as_str().expect("node_id").to_owned())
        .collect()
}

/// Node ids that `query` lists, or the status and body of a failure.
async fn list_ids(registry: &Registry, query: &str) -> Vec<String> {
    let url = format!("{}/api/v1/nodes?{query}", registry.base_url());
    let (status, body) = get_json(&url).await;
    assert_eq!(status, StatusCode::OK, "GET {url}: {body}");
    assert_eq!(body["continue"], Value::Null, "GET {url}: {body}");
    ids(&body)
}

fn error_message(body: &Value) -> &str {
    body["error"].as_str().expect("a JSON error message")
}

/// Emits the introspection of `node_id` with the given type, network, deployment and epoch.
fn emit_node(
    registry: &Registry,
    node_id: &str,
    node_type: &str,
    network: &str,
    deployment: &str,
    epoch: &str,
) {
    registry.emit(
        "introspection",
        &[
            "--node-id",
            node_id,
            "--node-type",
            node_type,
            "--network-id",
            network,
            "--deployment-id",
            deployment,
            "--epoch",
            epoch,
            "--endpoint",
            "health=http://10.0.0.5:8080/health",
        ],
    );
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let mut registry = Registry::new(&[]);
    registry.start();
    registry.wait_until_serving().await;
    let self_id = registry.self_node_id();

    emit_node(&registry, "node-a", "effect", "net-a", "blue", "1");
    emit_node(&registry, "node-b", "effect", "net-b", "green", "2");
    emit_node(&registry, "node-c", "orchestrator", "net-a", "blue", "1");
    emit_node(&registry, "node-d", "reducer", "net-b", "green", "2");
    emit_node(&registry, "node-e", "compute", "net-a", "blue", "1");

    let mut all = vec![
        "node-a".to_owned(),
        "node-b".to_owned(),
        "node-c".to_owned(),
        "node-d".to_owned(),
        "node-e".to_owned(),
        self_id.clone(),
    ];
    all.sort();
    eventually("every node listed", WAIT, || async {
        (list_ids(&registry, "").await == all).then_some(())
    })
    .await;
    // Heartbeats of unknown nodes are ignored, so they follow the registrations.
    registry.emit(
        "heartbeat",
        &["--node-id", "node-b", "--health", "degraded"],
    );
    registry.emit(
        "heartbeat",
        &["--node-id", "node-d", "--health", "critical"],
    );
    eventually("both heartbeats applied", WAIT, || async {
        let applied = list_ids(&registry, "health=critical").await == ["node-d"]
            && list_ids(&registry, "health=degraded").await == ["node-b"];
        applied.then_some(())
    })
    .await;

    // Each filter.
    assert_eq!(
        list_ids(&registry, "type=effect").await,
        ["node-a", "node-b"]
    );
    assert_eq!(
        list_ids(&registry, "type=registry").await,
        [self_id.as_str()]
    );
    assert_eq!(list_ids(&registry, "health=degraded").await, ["node-b"]);
    assert_eq!(list_ids(&registry, "health=CRITICAL").await, ["node-d"]);
    assert_eq!(
        list_ids(&registry, "network_id=net-a").await,
        ["node-a", "node-c", "node-e"]
    );
    assert_eq!(
        list_ids(&registry, "deployment_id=green").await,
        ["node-b", "node-d"]
    );
    assert_eq!(
        list_ids(&registry, &format!("registry={}", registry.registry_id)).await,
        all
    );
    assert!(
        list_ids(&registry, "registry=no-such-registry")
            .await
            .is_empty()
    );
    assert_eq!(
        list_ids(&registry, "type=effect&network_id=net-a").await,
        ["node-a"]
    );
    assert!(
        list_ids(&registry, "type=effect&health=critical")
            .await
            .is_empty()
    );

    // Pages of two over all six nodes, then pages of one over a filter.
    let base = format!("{}/api/v1/nodes", registry.base_url());
    let mut pages = Vec::new();
    let mut url = format!("{base}?limit=2");
    loop {
        let (status, body) = get_json(&url).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages.push(ids(&body));
        match body["continue"].as_str() {
            Some(token) => url = format!("{base}?limit=2&continue={token}"),
            None => break,
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(
        pages,
        all.chunks(2).map(<[String]>::to_vec).collect::<Vec<_>>()
    );

    let (status, first) = get_json(&format!("{base}?type=effect&limit=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&first), ["node-a"]);
    let token = first["continue"].as_str().expect("a continue token");
    let (status, second) = get_json(&format!("{base}?type=effect&limit=1&continue={token}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&second), ["node-b"]);
    assert_eq!(second["continue"], Value::Null);

    // The default page contains every node and no continue token.
    let (status, body) = get_json(&base).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body), all);
    assert_eq!(body["continue"], Value::Null);

    // One node.
    let (status, node) = get_json(&format!("{base}/node-c")).await;
    assert_eq!(status, StatusCode::OK, "{node}");
    assert_eq!(node["node_id"], "node-c");
    assert_eq!(node["registry"], registry.registry_id.as_str());
    assert_eq!(node["node_type"], "orchestrator");
    assert_eq!(node["network_id"], "net-a");
    assert_eq!(node["deployment_id"], "blue");
    assert_eq!(node["epoch"], 1);
    assert_eq!(node["health_status"], "healthy");
    assert_eq!(node["endpoints"]["health"], "http://10.0.0.5:8080/health");
    assert_eq!(node["deregistered_at"], Value::Null);

    let (status, node) =
        get_json(&format!("{base}/node-c?registry={}", registry.registry_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node["node_id"], "node-c");

    // Unknown nodes.
    let (status, body) = get_json(&format!("{base}/no-such-node")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_message(&body), "node no-such-node not found");
    let (status, body) = get_json(&format!("{base}/node-c?registry=other")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_message(&body), "node node-c not found");

    // Bad query parameters.
    let (status, body) = get_json(&format!("{base}?type=effect&colour=blue")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("\"colour\""), "{body}");
    let (status, body) = get_json(&format!("{base}/node-c?type=effect")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("\"type\""), "{body}");
    for limit in ["0", "1001", "ten", "-3"] {
        let (status, body) = get_json(&format!("{base}?limit={limit}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit={limit}");
        assert!(
            error_message(&body).contains(&format!("{limit:?} for query parameter \"limit\"")),
            "{body}"
        );
    }
    let (status, body) = get_json(&format!("{base}?health=sleepy")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_message(&body).contains("\"sleepy\" for query parameter \"health\""),
        "{body}"
    );
    let (status, body) = get_json(&format!("{base}?continue=zz")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("\"continue\""), "{body}");

    // Without a configured token, deregistration is disabled.
    let (status, body) = delete(&format!("{base}/node-a"), Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        error_message(&body).contains("API token is not configured"),
        "{body}"
    );
    assert!(list_ids(&registry, "").await.contains(&"node-a".to_owned()));

    // Readiness reports the registry.
    let (status, readiness) = get_json(&format!("{}/readyz", registry.base_url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(readiness["status"], "ready");
    assert_eq!(
        readiness["registries"][0]["registry"],
        registry.registry_id.as_str()
    );
    assert_eq!(readiness["registries"][0]["kafka_connected"], true);
}

/// Returns whether the topology topic contains a tombstone (null value) keyed `node_id`.
async fn topology_tombstone(topic: &str, node_id: &str) -> bool {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack_env("KAFKA_BOOTSTRAP_SERVERS"))
        .set("group.id", unique_name("topology-reader-"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Ok(received) = tokio::time::timeout_at(deadline, consumer.recv()).await {
        let Ok(message) = received else { continue };
        if message.key() == Some(node_id.as_bytes()) && message.payload().is_none() {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn deregister_with_token() {
    let mut registry = Registry::with_api_token(&[], TOKEN);
    registry.start();
    registry.wait_until_serving().await;
    let base = format!("{}/api/v1/nodes", registry.base_url());

    emit_node(&registry, "doomed-1", "effect", "net-a", "blue", "4");
    emit_node(&registry, "kept-1", "effect", "net-a", "blue", "4");
    eventually("both nodes in Consul", WAIT, || async {
        let services = registry.consul_service_ids().await;
        (services.contains(&"doomed-1".to_owned()) && services.contains(&"kept-1".to_owned()))
            .then_some(())
    })
    .await;
    eventually("both nodes listed", WAIT, || async {
        (list_ids(&registry, "type=effect").await == ["doomed-1", "kept-1"]).then_some(())
    })
    .await;

    // Missing, malformed and wrong credentials change nothing.
    let url = format!("{base}/doomed-1");
    let (status, body) = delete(&url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error_message(&body).contains("missing API token"), "{body}");
    let (status, _) = delete(&url, Some(&format!("Basic {TOKEN}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = delete(&url, Some("Bearer wrong-token")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_message(&body), "invalid API token");
    let (status, body) = delete(&format!("{base}/no-such-node"), Some("Bearer wrong-token")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        list_ids(&registry, "type=effect").await,
        ["doomed-1", "kept-1"]
    );

    // The right token deregisters from both backends and the topology topic.
    let authorization = format!("Bearer {TOKEN}");
    let (status, body) = delete(&url, Some(&authorization)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["node_id"], "doomed-1");
    assert_eq!(body["registry"], registry.registry_id.as_str());
    assert_eq!(body["consul"]["deregistered"], true);
    assert_eq!(body["postgres"]["tombstone"], true);
    assert_eq!(
        body["topology"]["topic"],
        registry.topic("topology").as_str()
    );

    assert_eq!(list_ids(&registry, "type=effect").await, ["kept-1"]);
    let (status, body) = get_json(&url).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let pool = registry
        .pool()
        .await
        .expect("connecting to PostgreSQL failed");
    let (tombstone,): (bool,) = sqlx::query_as(
        "SELECT deregistered_at IS NOT NULL FROM node_registrations WHERE node_id = 'doomed-1'",
    )
    .fetch_one(&pool)
    .await
    .expect("doomed-1 row");
    assert!(tombstone, "doomed-1 row is not a tombstone");
    let (kept,): (bool,) = sqlx::query_as(
        "SELECT deregistered_at IS NULL FROM node_registrations WHERE node_id = 'kept-1'",
    )
    .fetch_one(&pool)
    .await
    .expect("kept-1 row");
    assert!(kept, "kept-1 was deregistered too");
    pool.close().await;

    let services = registry.consul_service_ids().await;
    assert!(!services.contains(&"doomed-1".to_owned()), "{services:?}");
    assert!(services.contains(&"kept-1".to_owned()), "{services:?}");

    assert!(
        topology_tombstone(&registry.topic("topology"), "doomed-1").await,
        "no null-value record keyed doomed-1 on the topology topic"
    );

    // The node is gone, so deleting it again finds nothing.
    let (status, body) = delete(&url, Some(&authorization)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_message(&body), "node doomed-1 not found");

    let log = registry.log();
    assert!(!log.contains(TOKEN), "the API token appears in the log");
}

/// Checks one sample line, `name{labels} value` or `name value`, and returns its name.
fn sample_name(line: &str) -> Result<&str, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("invalid metric name in {line:?}"));
    }

    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        let close = labels
            .find('}')
            .ok_or_else(|| format!("unclosed labels in {line:?}"))?;
        for pair in labels[..close].split(',').filter(|pair| !pair.is_empty()) {
            let (label, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("label without value in {line:?}"))?;
            let valid_label =
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
            if !valid_label || !quoted {
                return Err(format!("invalid label {pair:?} in {line:?}"));
            }
        }
        rest = &labels[close + 1..];
    }

    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value in {line:?}"))?;
    let numeric = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
    if !numeric {
        return Err(format!("invalid value {value:?} in {line:?}"));
    }
    Ok(name)
}

#[tokio::test]
async fn metrics_scrape_parses() {
    let mut registry = Registry::new(&[]);
    registry.start();
    registry.wait_until_serving().await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", stack_env("KAFKA_BOOTSTRAP_SERVERS"))
        .create()
        .expect("producer");
    let topic = registry.topic("node-introspection");
    producer
        .send(
            FutureRecord::<str, [u8]>::to(&topic).payload(b"{not json".as_slice()),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("producing to {topic} failed: {error}"));

    let url = format!("{}/metrics", registry.base_url());
    let text = eventually("a dead letter counted", WAIT, || async {
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        (text.contains("registry_operator_dead_letters_total{")
            && text.contains("registry_operator_backend_write_seconds_bucket{"))
        .then_some(text)
    })
    .await;

    let mut names = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match sample_name(line) {
            Ok(name) => names.push(name.to_owned()),
            Err(problem) => panic!("{problem}"),
        }
    }
    assert!(text.trim_end().ends_with("# EOF"), "no # EOF line");
    for expected in [
        "registry_operator_events_consumed_total",
        "registry_operator_dead_letters_total",
        "registry_operator_backend_write_seconds_bucket",
        "registry_operator_backend_write_seconds_sum",
        "registry_operator_backend_write_seconds_count",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "no {expected} sample"
        );
    }
    let registry_label = format!("registry=\"{}\"", registry.registry_id);
    let dead_letter = text
        .lines()
        .find(|line| line.starts_with("registry_operator_dead_letters_total{"))
        .expect("dead letter sample");
    assert!(dead_letter.contains(&registry_label), "{dead_letter}");
    assert!(dead_letter.ends_with(" 1"), "{dead_letter}");
}
