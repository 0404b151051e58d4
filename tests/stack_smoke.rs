//! Smoke tests of the local real stack through the clients the product uses.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use registry_operator::crd::RegistryNode;
use serde_json::json;
use support::{eventually, stack_env, unique_name};

async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = RegistryNode::crd();
    crds.patch(
        "registrynodes.omninode.io",
        &PatchParams::apply("registry-operator-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("applying the CRD failed");
    eventually("CRD to be established", Duration::from_secs(20), || {
        let crds = crds.clone();
        async move {
            let crd = crds.get("registrynodes.omninode.io").await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn kube_registrynode_roundtrip() {
    stack_env("KUBECONFIG");
    let client = Client::try_default().await.expect("kube client");
    install_crd(&client).await;

    let namespace = unique_name("smoke-");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(namespace.clone()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("creating the namespace failed");

    let nodes: Api<RegistryNode> = Api::namespaced(client.clone(), &namespace);
    let object: RegistryNode = serde_json::from_value(json!({
        "apiVersion": "omninode.io/v1alpha1",
        "kind": "RegistryNode",
        "metadata": {"name": "smoke"},
        "spec": {
            "kafka": {"bootstrapServers": "127.0.0.1:9092"},
            "consul": {"address": "http://127.0.0.1:8500"},
            "postgres": {"urlSecretRef": {"name": "db", "key": "url"}}
        }
    }))
    .expect("RegistryNode JSON");
    nodes
        .create(&PostParams::default(), &object)
        .await
        .expect("creating the RegistryNode failed");

    let read = nodes
        .get("smoke")
        .await
        .expect("reading the RegistryNode back failed");
    assert_eq!(read.spec.environment, "dev");
    assert_eq!(read.spec.heartbeat.interval_seconds, 30);
    assert_eq!(read.spec.kafka.bootstrap_servers, "127.0.0.1:9092");

    let status = json!({
        "apiVersion": "omninode.io/v1alpha1",
        "kind": "RegistryNode",
        "status": {
            "registeredNodes": 3,
            "healthyNodes": 2,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Smoke", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]
        }
    });
    nodes
        .patch_status(
            "smoke",
            &PatchParams::apply("registry-operator-tests").force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("patching the status failed");
    let read = nodes
        .get_status("smoke")
        .await
        .expect("reading the status failed");
    let read_status = read.status.expect("status is missing after the patch");
    assert_eq!(read_status.registered_nodes, Some(3));
    assert_eq!(read_status.healthy_nodes, Some(2));
    assert_eq!(read_status.conditions[0].type_, "Ready");

    let output = std::process::Command::new("kubectl")
        .args(["get", "registrynodes", "-n", &namespace])
        .output()
        .expect("running kubectl failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let header: Vec<&str> = stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "NODES",
            "HEALTHY",
            "SELF",
            "DEPLOYMENT",
            "EPOCH",
            "AGE"
        ]
    );
    let row: Vec<&str> = stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..4], ["smoke", "True", "3", "2"]);
}

#[tokio::test]
async fn kafka_produce_consume() {
    let brokers = stack_env("KAFKA_BOOTSTRAP_SERVERS");
    let topic = unique_name("smoke.topic.");
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics request failed");
    assert!(
        results[0].is_ok(),
        "creating topic {topic} failed: {:?}",
        results[0]
    );

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(&topic).key("k").payload("hello"),
            Duration::from_secs(10),
        )
        .await
        .expect("producing failed");

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique_name("smoke-group-"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("no message within 30s")
        .expect("consuming failed");
    assert_eq!(message.payload(), Some(&b"hello"[..]));
    assert_eq!(message.key(), Some(&b"k"[..]));
    assert_eq!(message.offset(), 0);
}

#[tokio::test]
async fn postgres_query() {
    let url = stack_env("DATABASE_URL");
    let pool = sqlx::PgPool::connect(&url)
        .await
        .expect("connecting to PostgreSQL failed");
    let (sum,): (i32,) = sqlx::query_as("SELECT 40 + 2")
        .fetch_one(&pool)
        .await
        .expect("query");
    assert_eq!(sum, 42);
    let (database,): (String,) = sqlx::query_as("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .expect("query");
    assert_eq!(database, "registry");
}

#[tokio::test]
async fn consul_register_read_deregister() {
    let address = stack_env("CONSUL_HTTP_ADDR");
    let http = reqwest::Client::new();
    let service_id = unique_name("smoke-svc-");
    let body = json!({
        "Node": "smoke-node",
        "Address": "127.0.0.1",
        "Service": {"ID": service_id, "Service": "smoke", "Address": "10.1.2.3", "Port": 8060, "Meta": {"k": "v"}}
    });
    let response = http
        .put(format!("{address}/v1/catalog/register"))
        .json(&body)
        .send()
        .await
        .expect("register request failed");
    assert!(
        response.status().is_success(),
        "register returned {}",
        response.status()
    );

    let services: Vec<serde_json::Value> = http
        .get(format!("{address}/v1/catalog/service/smoke"))
        .send()
        .await
        .expect("read request failed")
        .json()
        .await
        .expect("catalog JSON");
    let ours: Vec<_> = services
        .iter()
        .filter(|s| s["ServiceID"] == service_id.as_str())
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["ServiceAddress"], "10.1.2.3");
    assert_eq!(ours[0]["ServicePort"], 8060);
    assert_eq!(ours[0]["ServiceMeta"]["k"], "v");

    let response = http
        .put(format!("{address}/v1/catalog/deregister"))
        .json(&json!({"Node": "smoke-node", "ServiceID": service_id}))
        .send()
        .await
        .expect("deregister request failed");
    assert!(response.status().is_success());
    let services: Vec<serde_json::Value> = http
        .get(format!("{address}/v1/catalog/service/smoke"))
        .send()
        .await
        .expect("read request failed")
        .json()
        .await
        .expect("catalog JSON");
    assert!(
        services
            .iter()
            .all(|s| s["ServiceID"] != service_id.as_str())
    );
}
