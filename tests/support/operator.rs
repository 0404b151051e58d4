//! Starts the built `registry-operator run` against the local stack, limited to one
//! namespace so that tests running in parallel do not reconcile each other's objects.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{stack_env, unique_name};

pub struct Operator {
    pub pod: String,
    pub http_port: u16,
    pub log_path: std::path::PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("no free port on 127.0.0.1")
}

impl Operator {
    /// Starts an operator process whose pod identity is `pod`, `deployment_id` and `epoch`.
    pub fn start(namespace: &str, pod: &str, deployment_id: &str, epoch: i64) -> Self {
        let http_port = free_port();
        let log_path =
            std::env::temp_dir().join(format!("{}.log", unique_name(&format!("operator-{pod}-"))));
        let log = std::fs::File::create(&log_path).expect("creating the operator log failed");
        let child = Command::new(env!("CARGO_BIN_EXE_registry-operator"))
            .args([
                "run",
                "--namespace",
                namespace,
                "--http-addr",
                &format!("127.0.0.1:{http_port}"),
                "--log-format",
                "json",
                "--resync-seconds",
                "2",
                "--grace-seconds",
                "10",
                "--lease-duration-seconds",
                "3",
                "--sweep-interval-seconds",
                "1",
            ])
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", namespace)
            .env("OMNINODE_DEPLOYMENT_ID", deployment_id)
            .env("OMNINODE_DEPLOYMENT_EPOCH", epoch.to_string())
            .env("OMNINODE_NETWORK_ID", "test-network")
            .env("RUST_LOG", "info,registry_operator=debug")
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting registry-operator run failed");
        Self {
            pod: pod.to_owned(),
            http_port,
            log_path,
            child: Some(child),
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("operator is not running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        panic!(
            "registry-operator did not exit within 30s of SIGTERM; log: {}",
            self.log_path.display()
        );
    }

    /// Kills the process with SIGKILL, as a crashed pod.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Applies the CRD and creates a fresh namespace; returns the client and the namespace.
pub async fn prepare_namespace(prefix: &str) -> (Client, String) {
    stack_env("KUBECONFIG");
    let client = Client::try_default().await.expect("kube client");
    let crd: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crds/registrynodes.omninode.io.yaml"
        ))
        .expect("reading the CRD failed"),
    )
    .expect("CRD YAML");
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.patch(
        "registrynodes.omninode.io",
        &PatchParams::apply("registry-operator-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("applying the CRD failed");

    let namespace = unique_name(prefix);
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
    (client, namespace)
}

/// Creates a Secret holding the stack's database URL under key `url`.
pub async fn create_database_secret(client: &Client, namespace: &str, name: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"url": stack_env("DATABASE_URL")}
    }))
    .expect("Secret JSON");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the Secret failed");
}

/// A RegistryNode spec pointing at the local stack.
pub fn registry_node(
    name: &str,
    environment: &str,
    schema: &str,
    secret: &str,
) -> serde_json::Value {
    json!({
        "apiVersion": "omninode.io/v1alpha1",
        "kind": "RegistryNode",
        "metadata": {"name": name},
        "spec": {
            "environment": environment,
            "kafka": {"bootstrapServers": stack_env("KAFKA_BOOTSTRAP_SERVERS")},
            "consul": {"address": stack_env("CONSUL_HTTP_ADDR")},
            "postgres": {"urlSecretRef": {"name": secret, "key": "url"}, "schema": schema},
            "heartbeat": {"intervalSeconds": 2}
        }
    })
}
