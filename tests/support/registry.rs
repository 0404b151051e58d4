//! Starts the built `registry-operator standalone` binary against the local stack, each
//! test with its own registry id, topic prefix and PostgreSQL schema.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{stack_env, unique_name};

pub struct Registry {
    pub registry_id: String,
    pub environment: String,
    pub schema: String,
    pub http_port: u16,
    pub log_path: std::path::PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("no free port on 127.0.0.1")
}

impl Registry {
    pub fn new(extra_args: &[&str]) -> Self {
        let name = unique_name("t");
        Self {
            registry_id: format!("reg-{name}"),
            environment: format!("env{name}"),
            schema: format!("s_{name}"),
            http_port: free_port(),
            log_path: std::env::temp_dir().join(format!("registry-{name}.log")),
            child: None,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        }
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening the registry log failed");
        let child = Command::new(env!("CARGO_BIN_EXE_registry-operator"))
            .args([
                "standalone",
                "--registry-id",
                &self.registry_id,
                "--environment",
                &self.environment,
                "--schema",
                &self.schema,
                "--http-addr",
                &format!("127.0.0.1:{}", self.http_port),
                "--kafka-brokers",
                &stack_env("KAFKA_BOOTSTRAP_SERVERS"),
                "--consul-address",
                &stack_env("CONSUL_HTTP_ADDR"),
                "--database-url",
                &stack_env("DATABASE_URL"),
                "--log-format",
                "json",
            ])
            .args(&self.extra_args)
            .env("POD_NAME", "pod-a")
            .env("RUST_LOG", "info,registry_operator=debug")
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting registry-operator failed");
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("registry is not running");
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
        panic!("registry-operator did not exit within 30s of SIGTERM");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}.omninode_bridge.onex.evt.{name}.v1", self.environment)
    }

    pub fn dead_letter_topic(&self, name: &str) -> String {
        format!("{}.omninode_bridge.onex.dlt.{name}.v1", self.environment)
    }

    pub fn self_node_id(&self) -> String {
        format!("{}-pod-a", self.registry_id)
    }

    /// Opens a pool whose connections all use the registry's schema.
    pub async fn pool(&self) -> Result<sqlx::PgPool, sqlx::Error> {
        let url = format!(
            "{}?options=-csearch_path%3D{}",
            stack_env("DATABASE_URL"),
            self.schema
        );
        sqlx::PgPool::connect(&url).await
    }

    /// Lists the service IDs on the registry's synthetic Consul nodes, sorted; empty while
    /// Consul is unreachable.
    pub async fn consul_service_ids(&self) -> Vec<String> {
        super::consul_catalog_service_ids(&self.registry_id).await
    }

    /// Returns the status of the check of `service_id` in Consul.
    pub async fn consul_check_status(&self, service_id: &str) -> Option<String> {
        super::consul_catalog_check_status(&self.registry_id, service_id).await
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Helpers for tests of the HTTP API and the user commands.
impl Registry {
    /// Creates a registry whose node API requires `token`, written to a token file
    /// with a trailing newline as editors leave it.
    pub fn with_api_token(extra_args: &[&str], token: &str) -> Self {
        let mut registry = Self::new(extra_args);
        let path = std::env::temp_dir().join(format!("{}.token", registry.registry_id));
        std::fs::write(&path, format!("{token}\n")).expect("writing the API token file failed");
        registry.extra_args.push("--api-token-file".to_owned());
        registry
            .extra_args
            .push(path.to_string_lossy().into_owned());
        registry
    }

    /// Base URL of the registry's HTTP server.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Waits until the HTTP server returns success for `/healthz`.
    pub async fn wait_until_serving(&self) {
        let url = format!("{}/healthz", self.base_url());
        super::eventually("the HTTP server", Duration::from_secs(60), || async {
            let response = reqwest::get(&url).await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }

    /// Runs `registry-operator emit <kind>` against this registry's topics and returns
    /// its standard output, failing the test when the command fails.
    pub fn emit(&self, kind: &str, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_registry-operator"))
            .args(["emit", kind, "--environment", &self.environment])
            .args(["--brokers", &stack_env("KAFKA_BOOTSTRAP_SERVERS")])
            .args(args)
            .output()
            .expect("starting registry-operator emit failed");
        assert!(
            output.status.success(),
            "registry-operator emit {kind} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
