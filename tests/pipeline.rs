//! End-to-end tests of the ingest pipeline: the built binary against the real stack.

mod support;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use support::registry::Registry;
use support::{eventually, stack_env, unique_name};

const WAIT: Duration = Duration::from_secs(60);

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|error| panic!("reading fixture {path} failed: {error}"))
}

async fn produce(topic: &str, key: Option<&str>, value: &[u8]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", stack_env("KAFKA_BOOTSTRAP_SERVERS"))
        .set("message.max.bytes", "8388608")
        .create()
        .expect("producer");
    let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .unwrap_or_else(|(error, _)| panic!("producing to {topic} failed: {error}"));
}

/// `(node_id, health_status, deregistered)` of every row, sorted.
async fn rows(registry: &Registry) -> Vec<(String, String, bool)> {
    let pool = registry
        .pool()
        .await
        .expect("connecting to PostgreSQL failed");
    let rows = sqlx::query_as(
        "SELECT node_id, health_status, deregistered_at IS NOT NULL FROM node_registrations ORDER BY node_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_default();
    pool.close().await;
    rows
}

async fn publish_fixture(registry: &Registry, file: &str, topic: &str) {
    let bytes = fixture(file);
    let envelope: Value = serde_json::from_slice(&bytes).expect("fixture JSON");
    let key = envelope["partition_key"].as_str().map(str::to_owned);
    produce(&registry.topic(topic), key.as_deref(), &bytes).await;
}

#[tokio::test]
async fn fixtures_registered_in_both_backends() {
    let mut registry = Registry::new(&[]);
    registry.start();
    let self_id = registry.self_node_id();

    publish_fixture(
        &registry,
        "events/01-node-introspection-startup.json",
        "node-introspection",
    )
    .await;
    publish_fixture(
        &registry,
        "events/04-node-introspection-registry-response.json",
        "node-introspection",
    )
    .await;
    publish_fixture(&registry, "events/02-node-heartbeat.json", "node-heartbeat").await;

    let expected = vec![
        (
            "orchestrator-7f3a9c".to_owned(),
            "degraded".to_owned(),
            false,
        ),
        ("reducer-2b81d0".to_owned(), "healthy".to_owned(), false),
        (self_id.clone(), "healthy".to_owned(), false),
    ];
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    eventually("rows in PostgreSQL", WAIT, || async {
        (rows(&registry).await == sorted_expected).then_some(())
    })
    .await;
    let mut expected_services = vec![
        "orchestrator-7f3a9c".to_owned(),
        "reducer-2b81d0".to_owned(),
        self_id.clone(),
    ];
    expected_services.sort();
    eventually("services in Consul", WAIT, || async {
        (registry.consul_service_ids().await == expected_services).then_some(())
    })
    .await;
    eventually("degraded check in Consul", WAIT, || async {
        (registry
            .consul_check_status("orchestrator-7f3a9c")
            .await
            .as_deref()
            == Some("warning"))
        .then_some(())
    })
    .await;

    let pool = registry
        .pool()
        .await
        .expect("connecting to PostgreSQL failed");
    let (deployment_id, epoch, node_type): (Option<String>, Option<i64>, String) = sqlx::query_as(
        "SELECT deployment_id, epoch, node_type FROM node_registrations WHERE node_id = 'orchestrator-7f3a9c'",
    )
    .fetch_one(&pool)
    .await
    .expect("orchestrator row");
    assert_eq!(deployment_id.as_deref(), Some("prod-us-west-2-blue-003"));
    assert_eq!(epoch, Some(3));
    assert_eq!(node_type, "orchestrator");

    // Shutdown deregisters from both backends and keeps a tombstone row.
    publish_fixture(
        &registry,
        "events/05-node-introspection-shutdown.json",
        "node-introspection",
    )
    .await;
    eventually("orchestrator deregistered in Consul", WAIT, || async {
        (!registry
            .consul_service_ids()
            .await
            .contains(&"orchestrator-7f3a9c".to_owned()))
        .then_some(())
    })
    .await;
    eventually("orchestrator tombstone in PostgreSQL", WAIT, || async {
        rows(&registry)
            .await
            .contains(&("orchestrator-7f3a9c".to_owned(), "healthy".to_owned(), true))
            .then_some(())
    })
    .await;

    // A heartbeat after the shutdown does not bring the node back.
    let mut late: Value =
        serde_json::from_slice(&fixture("events/02-node-heartbeat.json")).expect("JSON");
    late["event_id"] = Value::String(uuid::Uuid::new_v4().to_string());
    late["event_timestamp"] = Value::String("2025-11-13T19:00:00+00:00".to_owned());
    produce(
        &registry.topic("node-heartbeat"),
        Some("orchestrator-7f3a9c"),
        late.to_string().as_bytes(),
    )
    .await;
    // And a replay of the startup (older than the shutdown) changes nothing either.
    publish_fixture(
        &registry,
        "events/01-node-introspection-startup.json",
        "node-introspection",
    )
    .await;
    // A fresh marker event proves both were consumed before we look.
    let mut marker: Value = serde_json::from_slice(&fixture(
        "events/04-node-introspection-registry-response.json",
    ))
    .expect("JSON");
    marker["payload"]["node_id"] = Value::String("marker-1".to_owned());
    marker["event_id"] = Value::String(uuid::Uuid::new_v4().to_string());
    produce(
        &registry.topic("node-introspection"),
        Some("marker-1"),
        marker.to_string().as_bytes(),
    )
    .await;
    eventually("marker registered", WAIT, || async {
        registry
            .consul_service_ids()
            .await
            .contains(&"marker-1".to_owned())
            .then_some(())
    })
    .await;
    eventually("marker row", WAIT, || async {
        rows(&registry)
            .await
            .iter()
            .any(|(id, _, _)| id == "marker-1")
            .then_some(())
    })
    .await;
    let orchestrator: Vec<_> = rows(&registry)
        .await
        .into_iter()
        .filter(|(id, _, _)| id == "orchestrator-7f3a9c")
        .collect();
    assert_eq!(
        orchestrator,
        vec![("orchestrator-7f3a9c".to_owned(), "healthy".to_owned(), true)]
    );
    assert!(
        !registry
            .consul_service_ids()
            .await
            .contains(&"orchestrator-7f3a9c".to_owned())
    );

    // SIGTERM: the registry removes its own record from both backends.
    let status = registry.terminate();
    assert!(status.success(), "registry exited with {status}");
    assert!(!registry.consul_service_ids().await.contains(&self_id));
    assert!(
        rows(&registry)
            .await
            .contains(&(self_id.clone(), "healthy".to_owned(), true))
    );
}

#[tokio::test]
async fn bad_events_dead_lettered() {
    let mut registry = Registry::new(&["--no-self-registration"]);
    registry.start();
    let topic = registry.topic("node-introspection");
    let bad_files = [
        ("bad-events/01-not-json.txt", "invalid_json"),
        ("bad-events/02-missing-payload.json", "missing_field"),
        ("bad-events/03-wrong-types.json", "wrong_type"),
        (
            "bad-events/04-unknown-event-type.json",
            "unknown_event_type",
        ),
        ("bad-events/05-bad-endpoint-url.json", "invalid_endpoint"),
    ];

    publish_fixture(
        &registry,
        "events/04-node-introspection-registry-response.json",
        "node-introspection",
    )
    .await;
    for (file, _) in &bad_files {
        produce(&topic, None, &fixture(file)).await;
    }
    produce(&topic, None, &[0xff, 0xfe, 0x00]).await;
    produce(&topic, None, &vec![b'['; 2 * 1024 * 1024]).await;
    publish_fixture(
        &registry,
        "events/01-node-introspection-startup.json",
        "node-introspection",
    )
    .await;

    eventually(
        "good events around the bad ones registered",
        WAIT,
        || async {
            let ids: Vec<String> = rows(&registry)
                .await
                .into_iter()
                .map(|(id, _, _)| id)
                .collect();
            (ids == ["orchestrator-7f3a9c", "reducer-2b81d0"]).then_some(())
        },
    )
    .await;
    let services = registry.consul_service_ids().await;
    assert_eq!(services, ["orchestrator-7f3a9c", "reducer-2b81d0"]);

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack_env("KAFKA_BOOTSTRAP_SERVERS"))
        .set("group.id", unique_name("dlt-reader-"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&registry.dead_letter_topic("node-introspection")])
        .expect("subscribe");
    let mut letters = Vec::new();
    while letters.len() < bad_files.len() + 2 {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("dead letters missing")
            .expect("consuming dead letters failed");
        let headers = message.headers().expect("dead letter without headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        letters.push((
            message.payload().unwrap_or_default().to_vec(),
            header("dlt.error").unwrap_or_default(),
            header("dlt.reason").unwrap_or_default(),
        ));
    }
    for (index, (file, label)) in bad_files.iter().enumerate() {
        assert_eq!(
            letters[index].0,
            fixture(file),
            "dead letter {index} must carry the bytes of {file}"
        );
        assert_eq!(letters[index].1, *label, "dead letter label of {file}");
        assert!(
            !letters[index].2.is_empty(),
            "dead letter reason of {file} is empty"
        );
    }
    assert_eq!(letters[5].0, vec![0xff, 0xfe, 0x00]);
    assert_eq!(letters[5].1, "not_utf8");
    assert_eq!(letters[6].0.len(), 2 * 1024 * 1024);
    assert_eq!(letters[6].1, "too_large");

    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", registry.http_port))
        .await
        .expect("metrics request failed")
        .text()
        .await
        .expect("metrics body");
    assert!(
        metrics.contains(&format!(
            "registry_operator_dead_letters_total{{registry=\"{}\",reason=\"invalid_json\"}} 1",
            registry.registry_id
        )),
        "metrics lack the invalid_json dead letter:\n{metrics}"
    );
    assert!(
        registry
            .log()
            .contains("rejected message sent to the dead-letter topic")
    );
}
