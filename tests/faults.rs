//! Fault tests: the built binary against the real stack while servers stop and restart.
//! One test function, because stopping a shared server would disturb parallel tests.

mod support;

use std::process::Command;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use support::registry::Registry;
use support::{eventually, stack_env};

const WAIT: Duration = Duration::from_secs(90);

fn stack(action: &str, server: &str) {
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/stack.sh"))
        .args([action, server])
        .status()
        .expect("running hack/stack.sh failed");
    assert!(status.success(), "hack/stack.sh {action} {server} failed");
}

fn introspection(node_id: &str) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/events/04-node-introspection-registry-response.json"
    );
    let mut event: Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("JSON");
    event["event_id"] = Value::String(uuid::Uuid::new_v4().to_string());
    event["payload"]["node_id"] = Value::String(node_id.to_owned());
    event["partition_key"] = Value::String(node_id.to_owned());
    event.to_string().into_bytes()
}

async fn produce_nodes(registry: &Registry, node_ids: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", stack_env("KAFKA_BOOTSTRAP_SERVERS"))
        .create()
        .expect("producer");
    let topic = registry.topic("node-introspection");
    for node_id in node_ids {
        let value = introspection(node_id);
        producer
            .send(
                FutureRecord::to(&topic).key(node_id).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("producing failed: {error}"));
    }
}

async fn row_ids(registry: &Registry) -> Vec<String> {
    let Ok(pool) = registry.pool().await else {
        return Vec::new();
    };
    let ids: Vec<(String,)> =
        sqlx::query_as("SELECT node_id FROM node_registrations ORDER BY node_id")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    pool.close().await;
    ids.into_iter().map(|(id,)| id).collect()
}

async fn metrics(registry: &Registry) -> String {
    let url = format!("http://127.0.0.1:{}/metrics", registry.http_port);
    match reqwest::get(&url).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:04}")).collect();
    names.sort();
    names
}

#[tokio::test]
async fn backends_down_and_process_killed() {
    let mut registry = Registry::new(&[
        "--no-self-registration",
        "--sweep-interval-seconds",
        "1",
        "--anti-entropy-interval-seconds",
        "2",
        "--readiness-failure-threshold-seconds",
        "2",
    ]);
    registry.start();

    // PostgreSQL down: Consul keeps up, and metrics and logs name the lagging backend.
    stack("stop", "postgres");
    let first = names("pgdown", 20);
    produce_nodes(&registry, &first).await;
    eventually(
        "Consul to register nodes while PostgreSQL is down",
        WAIT,
        || async { (registry.consul_service_ids().await == first).then_some(()) },
    )
    .await;
    let circuit = format!(
        "registry_operator_backend_circuit_open{{registry=\"{}\",backend=\"postgres\"}} 1",
        registry.registry_id
    );
    eventually("postgres circuit open in metrics", WAIT, || async {
        metrics(&registry).await.contains(&circuit).then_some(())
    })
    .await;
    assert!(registry.log().contains("\"backend\":\"postgres\""));
    assert!(registry.log().contains("this backend is behind"));
    stack("start", "postgres");
    eventually("PostgreSQL to catch up", WAIT, || async {
        (row_ids(&registry).await == first).then_some(())
    })
    .await;

    // Consul down: PostgreSQL keeps up; the restarted dev agent (empty) gets the new writes.
    stack("stop", "consul");
    let second = names("consuldown", 10);
    produce_nodes(&registry, &second).await;
    let mut both: Vec<String> = first.iter().chain(second.iter()).cloned().collect();
    both.sort();
    eventually(
        "PostgreSQL to register nodes while Consul is down",
        WAIT,
        || async { (row_ids(&registry).await == both).then_some(()) },
    )
    .await;
    stack("start", "consul");
    // The restarted dev agent lost every service: anti-entropy registers all live nodes
    // again, the ones written before the outage included.
    eventually("Consul to catch up with every live node", WAIT, || async {
        (registry.consul_service_ids().await == both).then_some(())
    })
    .await;
    assert!(registry.log().contains("anti-entropy repaired Consul"));

    // Kafka down past the readiness threshold: /readyz turns 503, and 200 once it returns.
    let readyz = |port: u16| async move {
        reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .map(|response| response.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(readyz(registry.http_port).await, 200);
    stack("stop", "kafka");
    eventually("readiness to fail while Kafka is down", WAIT, || async {
        (readyz(registry.http_port).await == 503).then_some(())
    })
    .await;
    stack("start", "kafka");
    eventually("readiness to recover with Kafka", WAIT, || async {
        (readyz(registry.http_port).await == 200).then_some(())
    })
    .await;

    // SIGKILL mid-stream, then restart: every event's effect is present exactly once.
    let third = names("killed", 300);
    produce_nodes(&registry, &third).await;
    registry.kill();
    registry.start();
    let mut all: Vec<String> = both.iter().chain(third.iter()).cloned().collect();
    all.sort();
    eventually("every row after the restart", WAIT, || async {
        (row_ids(&registry).await == all).then_some(())
    })
    .await;
    eventually("every Consul service after the restart", WAIT, || async {
        let services = registry.consul_service_ids().await;
        third.iter().all(|id| services.contains(id)).then_some(())
    })
    .await;
}
