//! Start-up latencies: a standalone registry's own record in both backends, and a new
//! RegistryNode turning Ready under `registry-operator run`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use registry_operator::consul::ServiceContext;
use registry_operator::crd::RegistryNode;
use serde_json::json;

use crate::process::{BINARY, Child, POD_NAME, StandaloneRegistry, free_port};
use crate::stack::{Stack, registry_topics, unique_name, wait_for};

/// Interval between two checks of the backends or of the RegistryNode's status.
const POLL: Duration = Duration::from_millis(10);

/// Seconds from process start until the self record was present.
pub struct SelfRegistration {
    /// First seen in PostgreSQL.
    pub postgres: f64,
    /// First seen in Consul.
    pub consul: f64,
    /// First seen in both backends by the same check.
    pub both: f64,
}

/// Starts a standalone registry on a fresh schema and topic prefix and measures from
/// the process start until its own record is registered in PostgreSQL and in Consul.
/// The backends are reachable the whole time, so the start is the reference point.
pub async fn self_registration_latency(stack: &Stack) -> anyhow::Result<SelfRegistration> {
    let registry = StandaloneRegistry::start(stack, &[])?;
    let self_id = registry.self_node_id();
    let node = registry.synthetic_node();
    let mut postgres = None;
    let mut consul = None;

    let both = loop {
        let elapsed = registry.process.started.elapsed();
        if elapsed > Duration::from_secs(30) {
            bail!(
                "the self record {self_id} was not in both backends at once within 30 s \
                 (first seen in PostgreSQL after {postgres:?}, in Consul after {consul:?}); log: {}",
                registry.process.log_path.display()
            );
        }
        registry.process.check_running()?;
        let in_postgres = stack.has_row(&registry.schema, &self_id).await;
        let in_consul = stack.has_consul_service(&node, &self_id).await?;
        let seen = registry.process.started.elapsed();
        if in_postgres {
            postgres.get_or_insert(seen);
        }
        if in_consul {
            consul.get_or_insert(seen);
        }
        if in_postgres && in_consul {
            break seen;
        }
        tokio::time::sleep(POLL).await;
    };

    registry.process.terminate(Duration::from_secs(30))?;
    Ok(SelfRegistration {
        postgres: postgres.unwrap_or(both).as_secs_f64(),
        consul: consul.unwrap_or(both).as_secs_f64(),
        both: both.as_secs_f64(),
    })
}

/// How long to wait for the operator's `/readyz` before creating the RegistryNode anyway.
const OPERATOR_READY_WAIT: Duration = Duration::from_secs(3);

/// Result of one RegistryNode readiness run.
pub struct ReadyRun {
    pub seconds: f64,
    /// Whether the operator's `/readyz` returned 200 before the RegistryNode was created.
    pub operator_reported_ready: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum OperatorReadiness {
    Reported,
    /// The HTTP server responded but `/readyz` stayed 503 for [`OPERATOR_READY_WAIT`].
    Assumed,
}

/// Waits until the operator's `/readyz` returns 200, which it does once its first list
/// of RegistryNodes is complete. When the HTTP server responds but `/readyz` does not
/// turn 200 within [`OPERATOR_READY_WAIT`], the operator is taken as started anyway.
/// Its debug log shows the first list completing within milliseconds of start, so the
/// measurement stays conservative.
async fn wait_for_operator(
    stack: &Stack,
    operator: &Child,
    http_port: u16,
) -> anyhow::Result<OperatorReadiness> {
    let readyz = format!("http://127.0.0.1:{http_port}/readyz");
    let answered_at = std::cell::Cell::new(None::<Instant>);
    wait_for(
        "the operator's HTTP server",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            operator.check_running()?;
            let Ok(response) = stack.http.get(&readyz).send().await else {
                return Ok(None);
            };
            if response.status().is_success() {
                return Ok(Some(OperatorReadiness::Reported));
            }
            let answered = answered_at.get().unwrap_or_else(Instant::now);
            answered_at.set(Some(answered));
            Ok((answered.elapsed() >= OPERATOR_READY_WAIT).then_some(OperatorReadiness::Assumed))
        },
    )
    .await
}

/// Applies the RegistryNode CRD generated from the compiled types.
async fn apply_crd(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = serde_json::to_value(RegistryNode::crd())?;
    crds.patch(
        "registrynodes.omninode.io",
        &PatchParams::apply("registry-operator-bench").force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the RegistryNode CRD failed")?;
    Ok(())
}

/// Starts `registry-operator run` for a fresh namespace and waits until its first sync
/// is complete, then creates a RegistryNode whose backends are reachable and measures
/// the seconds until its `Ready` condition is `True`.
///
/// The RegistryNode is deleted afterwards, so its finalizer deregisters the registry
/// from Consul. The namespace stays: the local stack runs no namespace controller that
/// could finish deleting it.
pub async fn registry_node_ready_latency(stack: &Stack) -> anyhow::Result<ReadyRun> {
    std::env::var("KUBECONFIG")
        .context("KUBECONFIG is not set: run hack/bench.sh, or eval \"$(hack/stack.sh env)\"")?;
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API failed")?;
    apply_crd(&client).await?;

    let namespace = unique_name("bench-ready-");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}}))?;
    namespaces.create(&PostParams::default(), &object).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "stringData": {"url": stack.database_url},
    }))?;
    secrets.create(&PostParams::default(), &secret).await?;

    let name = "main";
    let registry_id = format!("{namespace}-{name}");
    let environment = unique_name("benchready");
    let schema = unique_name("bench_ready_");
    stack.created_schema(&schema);
    stack.created_topics(registry_topics(&environment));
    stack.created_consumer_group(&format!("registry-operator.{registry_id}"));
    stack.created_consul_node(&ServiceContext::default_synthetic_node(&registry_id));

    let http_port = free_port()?;
    let mut command = Command::new(BINARY);
    command
        .args(["run", "--namespace", &namespace])
        .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
        .args(["--log-format", "json"])
        .env("POD_NAME", POD_NAME)
        .env("POD_NAMESPACE", &namespace)
        .env("RUST_LOG", "info");
    let operator = Child::spawn(command, &namespace)?;
    let readiness = wait_for_operator(stack, &operator, http_port).await?;

    let nodes: Api<RegistryNode> = Api::namespaced(client.clone(), &namespace);
    let node: RegistryNode = serde_json::from_value(json!({
        "apiVersion": "omninode.io/v1alpha1",
        "kind": "RegistryNode",
        "metadata": {"name": name},
        "spec": {
            "environment": environment,
            "kafka": {"bootstrapServers": stack.kafka_brokers},
            "consul": {"address": stack.consul_address},
            "postgres": {"urlSecretRef": {"name": "db", "key": "url"}, "schema": schema},
        }
    }))?;

    let started = Instant::now();
    nodes.create(&PostParams::default(), &node).await?;
    let ready = wait_for(
        "the RegistryNode's Ready condition",
        Duration::from_secs(60),
        POLL,
        || async {
            operator.check_running()?;
            let node = nodes.get(name).await?;
            let ready = node.status.as_ref().is_some_and(|status| {
                status
                    .conditions
                    .iter()
                    .any(|condition| condition.type_ == "Ready" && condition.status == "True")
            });
            Ok(ready.then(|| started.elapsed()))
        },
    )
    .await;

    nodes.delete(name, &DeleteParams::default()).await?;
    wait_for(
        "the RegistryNode's finalizer",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async { Ok(nodes.get_opt(name).await?.is_none().then_some(())) },
    )
    .await?;
    operator.terminate(Duration::from_secs(30))?;
    let ready = ready.with_context(|| format!("operator log: {}", operator.log_path.display()))?;
    Ok(ReadyRun {
        seconds: ready.as_secs_f64(),
        operator_reported_ready: readiness == OperatorReadiness::Reported,
    })
}
