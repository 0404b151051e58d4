//! Node lifecycle against the real stack: liveness, expiry, phantom heartbeats and the
//! topology stream, with short timeouts so each test takes seconds.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use support::registry::Registry;
use support::{eventually, stack_env, unique_name};

const WAIT: Duration = Duration::from_secs(60);

fn introspection(node_id: &str) -> Value {
    json!({
        "envelope_version": "1.0",
        "event_id": uuid::Uuid::new_v4(),
        "event_type": "NODE_INTROSPECTION",
        "event_timestamp": chrono::Utc::now().to_rfc3339(),
        "source_node_id": node_id,
        "payload": {
            "node_id": node_id,
            "node_type": "effect",
            "endpoints": {"api": "http://10.1.0.7:8080"},
            "deployment_id": "d-1",
            "epoch": 1
        }
    })
}

fn heartbeat(node_id: &str, health: &str) -> Value {
    json!({
        "envelope_version": "1.0",
        "event_id": uuid::Uuid::new_v4(),
        "event_type": "NODE_HEARTBEAT",
        "event_timestamp": chrono::Utc::now().to_rfc3339(),
        "source_node_id": node_id,
        "payload": {"node_id": node_id, "node_type": "effect", "health_status": health}
    })
}

async fn produce(topic: &str, key: &str, value: &Value) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", stack_env("KAFKA_BOOTSTRAP_SERVERS"))
        .create()
        .expect("producer");
    let bytes = value.to_string();
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(&bytes),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("producing to {topic} failed: {error}"));
}

/// `node_id` to `(health_status, deregistered)` of every row.
async fn rows(registry: &Registry) -> BTreeMap<String, (String, bool)> {
    let Ok(pool) = registry.pool().await else {
        return BTreeMap::new();
    };
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT node_id, health_status, deregistered_at IS NOT NULL FROM node_registrations",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_default();
    pool.close().await;
    rows.into_iter()
        .map(|(id, health, gone)| (id, (health, gone)))
        .collect()
}

fn short_timeouts() -> Vec<&'static str> {
    vec![
        "--no-self-registration",
        "--liveness-timeout-seconds",
        "2",
        "--expiry-after-seconds",
        "6",
        "--sweep-interval-seconds",
        "1",
        "--heartbeat-write-interval-seconds",
        "1",
    ]
}

#[tokio::test]
async fn silent_node_turns_critical_recovers_expires() {
    let mut registry = Registry::new(&short_timeouts());
    registry.start();
    let node = "effect-live-1";
    produce(
        &registry.topic("node-introspection"),
        node,
        &introspection(node),
    )
    .await;
    eventually("node registered healthy", WAIT, || async {
        (rows(&registry).await.get(node) == Some(&("healthy".to_owned(), false))).then_some(())
    })
    .await;
    eventually("passing check", WAIT, || async {
        (registry.consul_check_status(node).await.as_deref() == Some("passing")).then_some(())
    })
    .await;

    // Silent past the liveness timeout: critical in both backends.
    eventually("node critical in PostgreSQL", WAIT, || async {
        (rows(&registry).await.get(node) == Some(&("critical".to_owned(), false))).then_some(())
    })
    .await;
    eventually("critical check in Consul", WAIT, || async {
        (registry.consul_check_status(node).await.as_deref() == Some("critical")).then_some(())
    })
    .await;

    // The next heartbeat brings it back.
    produce(
        &registry.topic("node-heartbeat"),
        node,
        &heartbeat(node, "healthy"),
    )
    .await;
    eventually("node healthy again in PostgreSQL", WAIT, || async {
        (rows(&registry).await.get(node) == Some(&("healthy".to_owned(), false))).then_some(())
    })
    .await;
    eventually("passing check again", WAIT, || async {
        (registry.consul_check_status(node).await.as_deref() == Some("passing")).then_some(())
    })
    .await;

    // Silent past expiry: deregistered from both.
    eventually("node expired in PostgreSQL", WAIT, || async {
        rows(&registry)
            .await
            .get(node)
            .is_some_and(|(_, gone)| *gone)
            .then_some(())
    })
    .await;
    eventually("service removed from Consul", WAIT, || async {
        (!registry
            .consul_service_ids()
            .await
            .contains(&node.to_owned()))
        .then_some(())
    })
    .await;
    assert!(
        registry
            .log()
            .contains("node silent past expiry; deregistered")
    );

    // A new introspection registers it again.
    produce(
        &registry.topic("node-introspection"),
        node,
        &introspection(node),
    )
    .await;
    eventually("node registered again", WAIT, || async {
        (rows(&registry).await.get(node) == Some(&("healthy".to_owned(), false))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn phantom_heartbeat_creates_nothing() {
    let mut registry = Registry::new(&["--no-self-registration"]);
    registry.start();
    let known = "effect-known";
    produce(
        &registry.topic("node-introspection"),
        known,
        &introspection(known),
    )
    .await;
    produce(
        &registry.topic("node-heartbeat"),
        "effect-phantom",
        &heartbeat("effect-phantom", "healthy"),
    )
    .await;
    produce(
        &registry.topic("node-heartbeat"),
        known,
        &heartbeat(known, "degraded"),
    )
    .await;
    eventually("known node degraded", WAIT, || async {
        (rows(&registry).await.get(known) == Some(&("degraded".to_owned(), false))).then_some(())
    })
    .await;
    let all = rows(&registry).await;
    assert_eq!(all.keys().collect::<Vec<_>>(), [known]);
    assert_eq!(registry.consul_service_ids().await, [known]);
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", registry.http_port))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let series = format!(
        "registry_operator_heartbeats_ignored_total{{registry=\"{}\",reason=\"unknown_or_deregistered\"}} 1",
        registry.registry_id
    );
    assert!(metrics.contains(&series), "missing {series} in:\n{metrics}");

    // Lag and node gauges: every message committed, one node registered and unhealthy.
    let registry_label = format!("{{registry=\"{}\"}}", registry.registry_id);
    let expected = [
        format!("registry_operator_consumer_lag{registry_label} 0"),
        format!("registry_operator_registered_nodes{registry_label} 1"),
        format!("registry_operator_healthy_nodes{registry_label} 0"),
    ];
    eventually("lag and node gauges", WAIT, || async {
        let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", registry.http_port))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        expected
            .iter()
            .all(|series| metrics.contains(series))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn topology_stream_rebuilds_current_nodes() {
    let mut registry = Registry::new(&short_timeouts());
    registry.start();
    let topic = registry.topic("node-introspection");
    for node in ["topo-a", "topo-b", "topo-c"] {
        produce(&topic, node, &introspection(node)).await;
    }
    produce(
        &registry.topic("node-heartbeat"),
        "topo-b",
        &heartbeat("topo-b", "degraded"),
    )
    .await;
    let mut shutdown = introspection("topo-c");
    shutdown["metadata"] = json!({"reason": "shutdown"});
    produce(&topic, "topo-c", &shutdown).await;
    eventually("topo-c deregistered and topo-b degraded", WAIT, || async {
        let rows = rows(&registry).await;
        (rows.get("topo-c").is_some_and(|(_, gone)| *gone)
            && rows.get("topo-b") == Some(&("degraded".to_owned(), false)))
        .then_some(())
    })
    .await;

    // A fresh consumer applies the stream in order: the last value per key wins and a
    // tombstone removes the key, as compaction would.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack_env("KAFKA_BOOTSTRAP_SERVERS"))
        .set("group.id", unique_name("topology-reader-"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&registry.topic("topology")])
        .expect("subscribe");
    let mut view: BTreeMap<String, String> = BTreeMap::new();
    let expected: BTreeMap<String, String> = rows(&registry)
        .await
        .into_iter()
        .filter(|(_, (_, gone))| !gone)
        .map(|(id, (health, _))| (id, health))
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while view != expected {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = tokio::time::timeout(remaining, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("topology view {view:?} never matched {expected:?}"))
            .expect("consuming the topology topic failed");
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        match message.payload() {
            None => {
                view.remove(&key);
            }
            Some(bytes) => {
                let event: Value = serde_json::from_slice(bytes).expect("topology JSON");
                assert_eq!(event["payload"]["node_id"], key.as_str());
                if event["payload"]["change"] == "deregistered" {
                    view.remove(&key);
                } else {
                    let health = event["payload"]["health_status"]
                        .as_str()
                        .unwrap_or_default();
                    view.insert(key, health.to_owned());
                }
            }
        }
    }
    assert_eq!(view.get("topo-b").map(String::as_str), Some("degraded"));
    assert!(!view.contains_key("topo-c"));
}

/// Registers a service of this registry straight in Consul, as a crashed pod or a missed
/// deregistration leaves behind.
async fn plant_consul_service(registry: &Registry, node_id: &str) {
    use registry_operator::consul::{ConsulClient, ConsulSink, ServiceContext};
    let client = ConsulClient::new(&stack_env("CONSUL_HTTP_ADDR"), None, Duration::from_secs(5))
        .expect("Consul client");
    let context = ServiceContext {
        registry_id: registry.registry_id.clone(),
        extra_tags: Vec::new(),
        datacenter: None,
        synthetic_node: ServiceContext::default_synthetic_node(&registry.registry_id),
        mode: registry_operator::crd::RegistrationMode::Catalog,
        check_ttl_seconds: 90,
        deregister_after_seconds: 600,
    };
    let record = registry_operator::node::NodeRecord {
        node_id: node_id.to_owned(),
        node_type: "effect".to_owned(),
        node_role: None,
        node_version: None,
        capabilities: json!({}),
        endpoints: BTreeMap::new(),
        metadata: json!({}),
        health_status: registry_operator::node::HealthStatus::Healthy,
        network_id: None,
        deployment_id: None,
        epoch: None,
        event_id: uuid::Uuid::new_v4(),
        event_timestamp: chrono::Utc::now(),
    };
    ConsulSink::new(client, context)
        .register(&record)
        .await
        .expect("planting a Consul service failed");
}

#[tokio::test]
async fn anti_entropy_removes_orphaned_services() {
    let mut registry = Registry::new(&[
        "--no-self-registration",
        "--anti-entropy-interval-seconds",
        "1",
    ]);
    registry.start();
    let topic = registry.topic("node-introspection");
    produce(&topic, "ae-live", &introspection("ae-live")).await;
    produce(&topic, "ae-gone", &introspection("ae-gone")).await;
    let mut shutdown = introspection("ae-gone");
    shutdown["metadata"] = json!({"reason": "shutdown"});
    produce(&topic, "ae-gone", &shutdown).await;
    eventually("ae-gone deregistered in PostgreSQL", WAIT, || async {
        let rows = rows(&registry).await;
        (rows.get("ae-gone").is_some_and(|(_, gone)| *gone) && rows.contains_key("ae-live"))
            .then_some(())
    })
    .await;
    eventually("only ae-live in Consul", WAIT, || async {
        (registry.consul_service_ids().await == ["ae-live"]).then_some(())
    })
    .await;

    // One orphan whose row is a tombstone, one that PostgreSQL never recorded. The
    // second is kept by the first pass that finds it, because its row could still be on
    // its way, and removed by the next.
    plant_consul_service(&registry, "ae-gone").await;
    plant_consul_service(&registry, "ae-never").await;
    assert_eq!(
        registry.consul_service_ids().await,
        ["ae-gone", "ae-live", "ae-never"]
    );
    eventually("both orphans removed from Consul", WAIT, || async {
        (registry.consul_service_ids().await == ["ae-live"]).then_some(())
    })
    .await;
    assert!(registry.log().contains("anti-entropy repaired Consul"));
    assert_eq!(
        rows(&registry).await.keys().collect::<Vec<_>>(),
        ["ae-gone", "ae-live"]
    );
}
