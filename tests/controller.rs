//! End-to-end tests of `registry-operator run`: the built binary against the real
//! kube-apiserver, Kafka, Consul and PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use registry_operator::crd::RegistryNode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::operator::{Operator, create_database_secret, prepare_namespace, registry_node};
use support::{eventually, stack_env, unique_name};

const WAIT: Duration = Duration::from_secs(60);

async fn create_node(client: &Client, namespace: &str, object: Value) -> Api<RegistryNode> {
    let api: Api<RegistryNode> = Api::namespaced(client.clone(), namespace);
    let node: RegistryNode = serde_json::from_value(object).expect("RegistryNode JSON");
    api.create(&PostParams::default(), &node)
        .await
        .expect("creating the RegistryNode failed");
    api
}

fn condition(node: &RegistryNode, type_: &str) -> Option<(String, String)> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn wait_condition(
    api: &Api<RegistryNode>,
    name: &str,
    type_: &str,
    status: &str,
) -> RegistryNode {
    eventually(
        &format!("{name} condition {type_}={status}"),
        WAIT,
        || async {
            let node = api.get(name).await.ok()?;
            (condition(&node, type_)?.0 == status).then_some(node)
        },
    )
    .await
}

async fn schema_pool(schema: &str) -> PgPool {
    let url = format!(
        "{}?options=-csearch_path%3D{schema}",
        stack_env("DATABASE_URL")
    );
    PgPool::connect(&url)
        .await
        .expect("connecting to PostgreSQL failed")
}

/// `(node_id, deployment_id, epoch, deregistered)` of every row, sorted.
async fn rows(schema: &str) -> Vec<(String, Option<String>, Option<i64>, bool)> {
    let pool = schema_pool(schema).await;
    let rows = sqlx::query_as(
        "SELECT node_id, deployment_id, epoch, deregistered_at IS NOT NULL FROM node_registrations ORDER BY node_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_default();
    pool.close().await;
    rows
}

fn kcat_publish(topic: &str, key: &str, file: &str) {
    let path = format!(
        "{}/tests/fixtures/events/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read_to_string(&path)
        .expect("fixture")
        .replace('\n', "");
    let mut child = std::process::Command::new("kcat")
        .args([
            "-P",
            "-b",
            &stack_env("KAFKA_BOOTSTRAP_SERVERS"),
            "-t",
            topic,
            "-k",
            key,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("running kcat failed (is it installed?)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("writing to kcat");
    assert!(
        child.wait().expect("kcat").success(),
        "kcat failed to publish {file}"
    );
}

#[tokio::test]
async fn registry_node_ready_and_registers_fixtures() {
    let (client, namespace) = prepare_namespace("ctl-").await;
    create_database_secret(&client, &namespace, "db").await;
    let environment = unique_name("env");
    let schema = unique_name("s_");
    let registry_id = format!("{namespace}-main");
    let started = Instant::now();
    let mut operator = Operator::start(&namespace, "pod-blue", "blue-001", 3);
    let api = create_node(
        &client,
        &namespace,
        registry_node("main", &environment, &schema, "db"),
    )
    .await;

    let self_id = format!("{registry_id}-pod-blue");
    eventually("self record in PostgreSQL", WAIT, || async {
        rows(&schema)
            .await
            .iter()
            .any(|row| row.0 == self_id)
            .then_some(())
    })
    .await;
    let postgres_at = started.elapsed();
    eventually("self record in Consul", WAIT, || async {
        support::consul_catalog_service_ids(&registry_id)
            .await
            .contains(&self_id)
            .then_some(())
    })
    .await;
    println!(
        "measured: operator start to self record in PostgreSQL {:?}, in both backends {:?} (target 1s after backends reachable)",
        postgres_at,
        started.elapsed()
    );
    let node = wait_condition(&api, "main", "Ready", "True").await;
    println!(
        "measured: operator start to Ready {:?} (target 2s)",
        started.elapsed()
    );

    // The operator reports ready once its RegistryNode cache is synced.
    let readyz = format!("http://127.0.0.1:{}/readyz", operator.http_port);
    eventually("operator /readyz 200", WAIT, || async {
        let response = reqwest::get(&readyz).await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

    let status = node.status.clone().expect("status");
    let self_status = status.self_registration.expect("selfRegistration");
    assert_eq!(self_status.node_id, self_id);
    assert_eq!(self_status.deployment_id.as_deref(), Some("blue-001"));
    assert_eq!(self_status.epoch, Some(3));
    assert_eq!(status.instances.len(), 1);
    assert_eq!(status.instances[0].pod, "pod-blue");
    assert!(status.instances[0].active);
    for type_ in [
        "KafkaConnected",
        "PostgresReady",
        "ConsulReady",
        "SelfRegistered",
    ] {
        assert_eq!(
            condition(&node, type_).map(|c| c.0),
            Some("True".to_owned()),
            "condition {type_}"
        );
    }
    assert_eq!(status.observed_generation, node.metadata.generation);

    let self_row = rows(&schema)
        .await
        .into_iter()
        .find(|row| row.0 == self_id)
        .expect("self row");
    assert_eq!(self_row.1.as_deref(), Some("blue-001"));
    assert_eq!(self_row.2, Some(3));
    let services = support::consul_catalog_services(&registry_id).await;
    let self_service = services
        .iter()
        .find(|s| s["ID"] == self_id.as_str())
        .expect("self service");
    assert_eq!(self_service["Service"], "onex-registry");
    assert_eq!(self_service["Meta"]["deployment_id"], "blue-001");
    assert_eq!(self_service["Meta"]["epoch"], "3");
    assert_eq!(self_service["Meta"]["network_id"], "test-network");

    // kubectl shows the printer columns.
    let output = std::process::Command::new("kubectl")
        .args(["get", "registrynodes", "-n", &namespace, "--no-headers"])
        .output()
        .expect("kubectl");
    let line = String::from_utf8_lossy(&output.stdout).to_string();
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(columns[0], "main", "kubectl output: {line}");
    assert_eq!(columns[1], "True", "kubectl output: {line}");
    assert_eq!(columns[4], "True", "kubectl output: {line}");
    assert_eq!(columns[5], "blue-001", "kubectl output: {line}");
    assert_eq!(columns[6], "3", "kubectl output: {line}");

    // Publish the sample events with kcat.
    let topic = |name: &str| format!("{environment}.omninode_bridge.onex.evt.{name}.v1");
    kcat_publish(
        &topic("node-introspection"),
        "orchestrator-7f3a9c",
        "01-node-introspection-startup.json",
    );
    kcat_publish(
        &topic("node-heartbeat"),
        "orchestrator-7f3a9c",
        "02-node-heartbeat.json",
    );
    kcat_publish(
        &topic("registry-request-introspection"),
        "9a8b7c6d",
        "03-registry-request-introspection.json",
    );
    kcat_publish(
        &topic("node-introspection"),
        "reducer-2b81d0",
        "04-node-introspection-registry-response.json",
    );
    eventually("sample nodes in both backends", WAIT, || async {
        let ids = support::consul_catalog_service_ids(&registry_id).await;
        let rows: Vec<String> = rows(&schema).await.into_iter().map(|row| row.0).collect();
        let expected = ["orchestrator-7f3a9c", "reducer-2b81d0"];
        (expected.iter().all(|id| ids.iter().any(|s| s == id))
            && expected.iter().all(|id| rows.iter().any(|r| r == id)))
        .then_some(())
    })
    .await;
    eventually("node counts in status", WAIT, || async {
        let node = api.get("main").await.ok()?;
        (node.status?.registered_nodes == Some(3)).then_some(())
    })
    .await;

    // The registry responded to fixture 03 with the request's correlation id.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", stack_env("KAFKA_BOOTSTRAP_SERVERS"))
        .set("group.id", unique_name("reader-"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&topic("node-introspection")])
        .expect("subscribe");
    let response = tokio::time::timeout(WAIT, async {
        loop {
            let message = consumer.recv().await.expect("consuming failed");
            let event: Value =
                serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or_default();
            // The registry also responds to its own startup request, with another id.
            if event["source_node_id"] == self_id.as_str()
                && event["correlation_id"] == "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
            {
                return event;
            }
        }
    })
    .await
    .expect("no response to the registry request");
    assert_eq!(response["metadata"]["reason"], "registry_request");
    assert_eq!(
        response["causation_id"],
        "0c5e7f2a-91b3-4d6e-a8f0-2b4c6d8e1f35"
    );
    assert_eq!(response["payload"]["node_type"], "registry");

    // Edit the spec: the instance restarts with the new settings.
    api.patch(
        "main",
        &PatchParams::apply("registry-operator-tests"),
        &Patch::Merge(json!({"spec": {"consul": {"tags": ["edited"]}}})),
    )
    .await
    .expect("patching the spec failed");
    eventually(
        "self service re-registered with the new tag",
        WAIT,
        || async {
            let services = support::consul_catalog_services(&registry_id).await;
            let service = services
                .iter()
                .find(|s| s["ID"] == self_id.as_str())?
                .clone();
            service["Tags"]
                .as_array()?
                .iter()
                .any(|tag| tag == "edited")
                .then_some(())
        },
    )
    .await;
    assert!(
        operator
            .log()
            .contains("spec changed; restarting the registry instance")
    );
    let node = eventually("Ready status of the edited generation", WAIT, || async {
        let node = api.get("main").await.ok()?;
        let observed = node.status.as_ref()?.observed_generation;
        let ready = condition(&node, "Ready")?.0 == "True";
        (ready && observed == node.metadata.generation).then_some(node)
    })
    .await;
    assert_eq!(node.metadata.generation, Some(2));

    // Delete: cleanup deregisters this registry's Consul services, keeps the rows
    // (cleanupPolicy Retain), and the finalizer goes away with the object.
    api.delete("main", &Default::default())
        .await
        .expect("deleting failed");
    eventually("RegistryNode gone", WAIT, || async {
        matches!(api.get_opt("main").await, Ok(None)).then_some(())
    })
    .await;
    assert_eq!(
        support::consul_catalog_service_ids(&registry_id).await,
        Vec::<String>::new()
    );
    let remaining: Vec<String> = rows(&schema).await.into_iter().map(|row| row.0).collect();
    assert!(
        remaining.contains(&"reducer-2b81d0".to_owned()),
        "rows retained: {remaining:?}"
    );
    assert!(operator.log().contains("cleanup done"));

    let status = operator.terminate();
    assert!(status.success(), "operator exited with {status}");

    // The database password from the Secret never reaches the log, even at debug level.
    let password = stack_env("POSTGRES_PASSWORD");
    assert!(
        !operator.log().contains(&password),
        "the log contains the database password"
    );
    assert!(
        operator.log().contains("\"level\":\"DEBUG\""),
        "the log was not written at debug level"
    );
}

#[tokio::test]
async fn blue_green_instances_told_apart() {
    let (client, namespace) = prepare_namespace("bg-").await;
    create_database_secret(&client, &namespace, "db").await;
    let environment = unique_name("env");
    let schema = unique_name("s_");
    let registry_id = format!("{namespace}-main");
    let api = create_node(
        &client,
        &namespace,
        registry_node("main", &environment, &schema, "db"),
    )
    .await;
    let mut blue = Operator::start(&namespace, "pod-blue", "blue", 1);
    let mut green = Operator::start(&namespace, "pod-green", "green", 2);

    let blue_id = format!("{registry_id}-pod-blue");
    let green_id = format!("{registry_id}-pod-green");
    eventually("both self records in both backends", WAIT, || async {
        let rows = rows(&schema).await;
        let ids = support::consul_catalog_service_ids(&registry_id).await;
        let in_rows = rows.iter().any(|r| r.0 == blue_id && !r.3)
            && rows.iter().any(|r| r.0 == green_id && !r.3);
        (in_rows && ids.contains(&blue_id) && ids.contains(&green_id)).then_some(())
    })
    .await;
    let rows_now = rows(&schema).await;
    let blue_row = rows_now.iter().find(|r| r.0 == blue_id).expect("blue row");
    let green_row = rows_now
        .iter()
        .find(|r| r.0 == green_id)
        .expect("green row");
    assert_eq!((blue_row.1.as_deref(), blue_row.2), (Some("blue"), Some(1)));
    assert_eq!(
        (green_row.1.as_deref(), green_row.2),
        (Some("green"), Some(2))
    );

    let node = eventually("both instances in status", WAIT, || async {
        let node = api.get("main").await.ok()?;
        let instances = node.status.as_ref()?.instances.clone();
        let green_active = instances.iter().any(|i| i.pod == "pod-green" && i.active);
        let blue_inactive = instances.iter().any(|i| i.pod == "pod-blue" && !i.active);
        (instances.len() == 2 && green_active && blue_inactive).then_some(node)
    })
    .await;
    let instances = node.status.expect("status").instances;
    let green_entry = instances
        .iter()
        .find(|i| i.pod == "pod-green")
        .expect("green entry");
    assert_eq!(green_entry.deployment_id.as_deref(), Some("green"));
    assert_eq!(green_entry.epoch, Some(2));

    // SIGTERM blue: only its record and its instance entry go.
    let status = blue.terminate();
    assert!(status.success(), "blue exited with {status}");
    let rows_after = rows(&schema).await;
    assert!(
        rows_after.iter().any(|r| r.0 == blue_id && r.3),
        "blue row is a tombstone: {rows_after:?}"
    );
    assert!(
        rows_after.iter().any(|r| r.0 == green_id && !r.3),
        "green row stays: {rows_after:?}"
    );
    let ids = support::consul_catalog_service_ids(&registry_id).await;
    assert!(!ids.contains(&blue_id), "blue service gone: {ids:?}");
    assert!(ids.contains(&green_id), "green service stays: {ids:?}");
    let node = api.get("main").await.expect("RegistryNode");
    let pods: Vec<String> = node
        .status
        .expect("status")
        .instances
        .into_iter()
        .map(|i| i.pod)
        .collect();
    assert_eq!(pods, ["pod-green"]);
    assert!(blue.log().contains("removed this pod's instance entry"));

    let status = green.terminate();
    assert!(status.success(), "green exited with {status}");
}

#[tokio::test]
async fn missing_secret_reported_others_run() {
    let (client, namespace) = prepare_namespace("bad-").await;
    create_database_secret(&client, &namespace, "db").await;
    let environment = unique_name("env");
    let schema = unique_name("s_");
    let api = create_node(
        &client,
        &namespace,
        registry_node("good", &environment, &schema, "db"),
    )
    .await;
    create_node(
        &client,
        &namespace,
        registry_node("broken", &unique_name("env"), &schema, "no-such-secret"),
    )
    .await;
    let operator = Operator::start(&namespace, "pod-a", "a", 1);

    let broken = wait_condition(&api, "broken", "Ready", "False").await;
    assert_eq!(
        condition(&broken, "Ready").map(|c| c.1),
        Some("SecretNotFound".to_owned())
    );
    let message = broken.status.as_ref().expect("status").conditions[0]
        .message
        .clone();
    assert_eq!(
        message,
        format!("Secret {namespace}/no-such-secret not found")
    );
    wait_condition(&api, "good", "Ready", "True").await;

    // An unchanged object produces no status write across several resyncs (2 s apart).
    eventually("good status settled", WAIT, || async {
        let node = api.get("good").await.ok()?;
        (node.status?.registered_nodes == Some(1)).then_some(())
    })
    .await;
    let before = api.get("good").await.expect("RegistryNode");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let after = api.get("good").await.expect("RegistryNode");
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "status was rewritten without a change: before {:?}, after {:?}",
        before.status, after.status
    );

    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let warning = eventually(
        "Warning event for the broken RegistryNode",
        WAIT,
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|event| {
                event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("broken")
                    && event.type_.as_deref() == Some("Warning")
            })
        },
    )
    .await;
    assert_eq!(warning.reason.as_deref(), Some("SecretNotFound"));

    // Creating the Secret is the change the broken object waits for.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &namespace);
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "no-such-secret"},
        "stringData": {"url": stack_env("DATABASE_URL")}
    }))
    .expect("Secret JSON");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the Secret failed");
    wait_condition(&api, "broken", "Ready", "True").await;
    drop(operator);
}

#[tokio::test]
async fn exits_without_api_server() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_registry-operator"))
        .args(["run", "--http-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("running registry-operator failed");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("connecting to the Kubernetes API failed"),
        "stderr: {stderr}"
    );
}

/// Runs `hack/stack.sh` against a second, private stack in `dir`.
fn private_stack(dir: &std::path::Path, action: &str) -> std::process::Output {
    std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hack/stack.sh"))
        .arg(action)
        .env("REGISTRY_OPERATOR_STACK_DIR", dir)
        .output()
        .expect("running hack/stack.sh failed")
}

#[tokio::test]
async fn exits_when_crd_missing() {
    // A private API server, because the shared one has the CRD installed by other tests.
    let dir = std::env::temp_dir().join(unique_name("stack-nocrd-"));
    let up = private_stack(&dir, "up");
    assert!(
        up.status.success(),
        "private stack failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_registry-operator"))
        .args(["run", "--http-addr", "127.0.0.1:0", "--log-format", "text"])
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running registry-operator failed");
    let down = private_stack(&dir, "down");
    assert!(down.status.success(), "stopping the private stack failed");
    assert!(
        !output.status.success(),
        "the operator must exit non-zero without the CRD"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the CustomResourceDefinition registrynodes.omninode.io is not installed"),
        "stderr: {stderr}"
    );
}

#[tokio::test]
async fn lease_moves_to_survivor() {
    use k8s_openapi::api::coordination::v1::Lease;

    let (client, namespace) = prepare_namespace("lease-").await;
    create_database_secret(&client, &namespace, "db").await;
    let environment = unique_name("env");
    let schema = unique_name("s_");
    let mut object = registry_node("main", &environment, &schema, "db");
    object["spec"]["liveness"] = json!({"timeoutSeconds": 3});
    let api = create_node(&client, &namespace, object).await;
    let mut operators = [
        Operator::start(&namespace, "pod-a", "a", 1),
        Operator::start(&namespace, "pod-b", "b", 2),
    ];
    wait_condition(&api, "main", "Ready", "True").await;

    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let holder = |lease: &Lease| {
        lease
            .spec
            .as_ref()
            .and_then(|spec| spec.holder_identity.clone())
    };
    let first = eventually("a Lease holder", WAIT, || async {
        holder(&leases.get("registry-operator-main").await.ok()?)
    })
    .await;
    // Both pods run; only the holder runs singleton work.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let acquired: Vec<bool> = operators
        .iter()
        .map(|operator| operator.log().contains("acquired the Lease"))
        .collect();
    assert_eq!(
        acquired.iter().filter(|acquired| **acquired).count(),
        1,
        "exactly one pod holds the Lease: {acquired:?}"
    );
    let (leader, follower) = if first == "pod-a" { (0, 1) } else { (1, 0) };
    assert_eq!(operators[leader].pod, first);
    assert!(acquired[leader]);

    // The holder crashes: the other pod takes over once the Lease expires (3 s).
    operators[leader].kill();
    let killed_at = std::time::Instant::now();
    let survivor = operators[follower].pod.clone();
    eventually("the survivor to hold the Lease", WAIT, || async {
        let lease = leases.get("registry-operator-main").await.ok()?;
        (holder(&lease).as_deref() == Some(survivor.as_str())).then_some(())
    })
    .await;
    let takeover = killed_at.elapsed();
    println!(
        "measured: Lease takeover after the holder was killed: {takeover:?} (Lease duration 3s)"
    );
    assert!(
        takeover <= Duration::from_secs(5),
        "takeover took {takeover:?}, more than the Lease duration plus one renewal period"
    );
    assert!(operators[follower].log().contains("acquired the Lease"));

    // The new holder prunes the killed pod's entry once its record is silent past the
    // liveness timeout (3 s here), and the survivor becomes the active instance.
    let node = eventually("the killed pod's entry pruned", WAIT, || async {
        let node = api.get("main").await.ok()?;
        let instances = node.status.as_ref()?.instances.clone();
        (instances.len() == 1 && instances[0].pod == survivor && instances[0].active)
            .then_some(node)
    })
    .await;
    assert_eq!(node.status.expect("status").instances[0].pod, survivor);
    assert!(
        operators[follower]
            .log()
            .contains("removed the instance entry of a stopped pod")
    );
}

#[tokio::test]
async fn delete_policy_removes_rows() {
    let (client, namespace) = prepare_namespace("del-").await;
    create_database_secret(&client, &namespace, "db").await;
    let schema = unique_name("s_");
    let registry_id = format!("{namespace}-main");
    let mut object = registry_node("main", &unique_name("env"), &schema, "db");
    object["spec"]["cleanupPolicy"] = json!("Delete");
    let api = create_node(&client, &namespace, object).await;
    let operator = Operator::start(&namespace, "pod-a", "a", 1);
    wait_condition(&api, "main", "Ready", "True").await;
    assert_eq!(rows(&schema).await.len(), 1, "the self record is written");
    assert_eq!(
        support::consul_catalog_service_ids(&registry_id)
            .await
            .len(),
        1
    );

    api.delete("main", &Default::default())
        .await
        .expect("deleting failed");
    eventually("RegistryNode gone", WAIT, || async {
        matches!(api.get_opt("main").await, Ok(None)).then_some(())
    })
    .await;
    assert_eq!(rows(&schema).await, Vec::new(), "Delete removes the rows");
    assert_eq!(
        support::consul_catalog_service_ids(&registry_id).await,
        Vec::<String>::new()
    );
    assert!(operator.log().contains("deleted 1 PostgreSQL rows"));
}
