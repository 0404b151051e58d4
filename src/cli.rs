//! Command-line interface.

use clap::{Parser, Subcommand};

/// Kubernetes operator that keeps a registry of nodes in PostgreSQL and Consul.
#[derive(Parser, Debug)]
#[command(name = "registry-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator: watch RegistryNode objects and run one registry per object.
    Run(RunArgs),
    /// Print the RegistryNode CustomResourceDefinition as YAML.
    Crd,
    /// Apply the SQL migrations to a PostgreSQL database.
    Migrate(MigrateArgs),
    /// Run one registry without Kubernetes, configured by flags (for tests, benchmarks
    /// and local use).
    Standalone(StandaloneArgs),
    /// List or show registered nodes through the HTTP API of a running operator.
    Nodes(NodesArgs),
    /// Publish one introspection or heartbeat event to Kafka, as a node would.
    Emit(EmitArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct StandaloneArgs {
    /// Registry id written into records and Consul meta.
    #[arg(long, env = "REGISTRY_ID", default_value = "registry")]
    pub registry_id: String,

    /// Environment prefix of the topic names.
    #[arg(long, env = "REGISTRY_ENVIRONMENT", default_value = "dev")]
    pub environment: String,

    /// Network id recorded for nodes that report none.
    #[arg(long, env = "REGISTRY_NETWORK_ID")]
    pub network_id: Option<String>,

    /// Kafka bootstrap servers (`host:port,...`).
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_brokers: String,

    /// Kafka consumer group (default `registry-operator.<registry id>`).
    #[arg(long)]
    pub consumer_group: Option<String>,

    /// Consul HTTP address, for example `http://127.0.0.1:8500`.
    #[arg(long, env = "CONSUL_HTTP_ADDR")]
    pub consul_address: String,

    /// Consul registration mode.
    #[arg(long, default_value = "catalog")]
    pub consul_mode: ConsulMode,

    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// PostgreSQL schema of this registry's tables.
    #[arg(long, default_value = "public")]
    pub schema: String,

    /// Seconds between the registry's own heartbeats.
    #[arg(long, default_value_t = 30)]
    pub heartbeat_interval_seconds: u32,

    /// Seconds of silence after which a node turns critical.
    #[arg(long, default_value_t = 90)]
    pub liveness_timeout_seconds: u32,

    /// Seconds of silence after which a node is deregistered.
    #[arg(long, default_value_t = 86_400)]
    pub expiry_after_seconds: u32,

    #[command(flatten)]
    pub tuning: TuningArgs,

    /// Do not publish or register the registry's own record.
    #[arg(long)]
    pub no_self_registration: bool,

    /// Address of the HTTP server.
    #[arg(
        long,
        env = "REGISTRY_OPERATOR_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: std::net::SocketAddr,

    /// Seconds allowed for a graceful stop after SIGTERM.
    #[arg(long, default_value_t = 20)]
    pub grace_seconds: u64,

    /// Log format: `json` for clusters, `text` for terminals.
    #[arg(long, env = "REGISTRY_OPERATOR_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// File with the bearer token that `DELETE /api/v1/nodes/{id}` requires; whitespace
    /// around it is ignored. Deregistration through the API is disabled without it.
    #[arg(long, env = "REGISTRY_OPERATOR_API_TOKEN_FILE")]
    pub api_token_file: Option<std::path::PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsulMode {
    Catalog,
    Agent,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Address of the HTTP server for health, readiness, metrics and the node API.
    #[arg(
        long,
        env = "REGISTRY_OPERATOR_HTTP_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub http_addr: std::net::SocketAddr,

    /// Only watch RegistryNode objects in this namespace (all namespaces when unset).
    #[arg(long, env = "REGISTRY_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,

    /// Log format: `json` for clusters, `text` for terminals.
    #[arg(long, env = "REGISTRY_OPERATOR_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,

    /// Seconds allowed for stopping the registries after SIGTERM.
    #[arg(long, env = "REGISTRY_OPERATOR_GRACE_SECONDS", default_value_t = 20)]
    pub grace_seconds: u64,

    /// Seconds between two status refreshes of a Ready RegistryNode.
    #[arg(long, env = "REGISTRY_OPERATOR_RESYNC_SECONDS", default_value_t = 15)]
    pub resync_seconds: u64,

    /// Seconds a registry's Lease stays valid without renewal; another pod takes over
    /// singleton work at most this long after the holder stops renewing.
    #[arg(
        long,
        env = "REGISTRY_OPERATOR_LEASE_DURATION_SECONDS",
        default_value_t = 15
    )]
    pub lease_duration_seconds: u64,

    #[command(flatten)]
    pub tuning: TuningArgs,

    /// File holding the bearer token that `DELETE /api/v1/nodes/{id}` requires; the
    /// endpoint is disabled without it.
    #[arg(long, env = "REGISTRY_OPERATOR_API_TOKEN_FILE")]
    pub api_token_file: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct MigrateArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Schema to create the tables in.
    #[arg(long, default_value = "public")]
    pub schema: String,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(clap::Args, Debug, Clone)]
pub struct NodesArgs {
    #[command(subcommand)]
    pub command: NodesCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum NodesCommand {
    /// List registered nodes, all of them unless filters or --limit are given.
    List(NodesListArgs),
    /// Show one registered node.
    Get(NodesGetArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Base URL of the operator's HTTP API.
    #[arg(
        long,
        env = "REGISTRY_OPERATOR_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct NodesListArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Only nodes of this node type, for example `orchestrator`.
    #[arg(long = "type")]
    pub node_type: Option<String>,

    /// Only nodes with this health status.
    #[arg(long)]
    pub health: Option<crate::node::HealthStatus>,

    /// Only nodes of this registry id.
    #[arg(long)]
    pub registry: Option<String>,

    /// Only nodes of this network id.
    #[arg(long)]
    pub network_id: Option<String>,

    /// Only nodes of this deployment id.
    #[arg(long)]
    pub deployment_id: Option<String>,

    /// Maximum number of nodes to print (all when unset).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,

    /// Output format.
    #[arg(short, long, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(clap::Args, Debug, Clone)]
pub struct NodesGetArgs {
    /// Node id.
    pub node_id: String,

    #[command(flatten)]
    pub server: ServerArgs,

    /// Registry id, needed when more than one registry has registered the node.
    #[arg(long)]
    pub registry: Option<String>,

    /// Output format.
    #[arg(short, long, default_value = "json")]
    pub output: OutputFormat,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct EmitArgs {
    #[command(subcommand)]
    pub event: EmitEvent,
}

#[derive(Subcommand, Debug, Clone)]
pub enum EmitEvent {
    /// Publish a node introspection: the node announces itself, or its shutdown.
    Introspection(EmitIntrospectionArgs),
    /// Publish a node heartbeat with a health status.
    Heartbeat(EmitHeartbeatArgs),
}

/// Destination of an emitted event, and the node that sends it.
#[derive(clap::Args, Debug, Clone)]
pub struct EmitTarget {
    /// Node id, also used as the envelope's `source_node_id` and Kafka key.
    #[arg(long)]
    pub node_id: String,

    /// Environment prefix of the topic names.
    #[arg(long, env = "REGISTRY_ENVIRONMENT", default_value = "dev")]
    pub environment: String,

    /// Kafka bootstrap servers (`host:port,...`).
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct EmitIntrospectionArgs {
    #[command(flatten)]
    pub target: EmitTarget,

    /// Node type, for example `orchestrator`, `reducer`, `effect` or `compute`.
    #[arg(long)]
    pub node_type: String,

    /// Node role.
    #[arg(long)]
    pub node_role: Option<String>,

    /// Node version.
    #[arg(long)]
    pub node_version: Option<String>,

    /// Network id.
    #[arg(long)]
    pub network_id: Option<String>,

    /// Deployment id (the rollout the node belongs to).
    #[arg(long)]
    pub deployment_id: Option<String>,

    /// Rollout counter of the deployment.
    #[arg(long)]
    pub epoch: Option<i64>,

    /// Endpoint as `NAME=URL`, for example `health=http://10.0.0.5:8080/health`;
    /// repeat for several endpoints.
    #[arg(long = "endpoint", value_parser = parse_endpoint)]
    pub endpoints: Vec<(String, String)>,

    /// Announce the node's shutdown (reason `shutdown`), which deregisters it.
    #[arg(long)]
    pub shutdown: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct EmitHeartbeatArgs {
    #[command(flatten)]
    pub target: EmitTarget,

    /// Node type, for example `orchestrator`.
    #[arg(long)]
    pub node_type: Option<String>,

    /// Health status reported by the heartbeat.
    #[arg(long, default_value = "healthy")]
    pub health: crate::node::HealthStatus,

    /// Seconds since the node started.
    #[arg(long)]
    pub uptime_seconds: Option<u64>,
}

/// Parses `NAME=URL`, where the URL must be absolute and have a host.
fn parse_endpoint(value: &str) -> Result<(String, String), String> {
    let Some((name, url)) = value.split_once('=') else {
        return Err(format!(
            "expected NAME=URL, for example health=http://10.0.0.5:8080/health, got {value:?}"
        ));
    };
    if name.is_empty() {
        return Err(format!("endpoint name is empty in {value:?}"));
    }

    let parsed = url::Url::parse(url).map_err(|error| format!("invalid URL {url:?}: {error}"))?;
    if parsed.host().is_none() {
        return Err(format!("URL {url:?} has no host"));
    }
    Ok((name.to_owned(), url.to_owned()))
}

/// Timing of the work every registry does, shared by `run` and `standalone`.
#[derive(clap::Args, Debug, Clone)]
pub struct TuningArgs {
    /// Minimum seconds between two PostgreSQL writes of an unchanged node's heartbeat.
    #[arg(long, default_value_t = 10)]
    pub heartbeat_write_interval_seconds: u32,

    /// Seconds between two liveness sweeps (silent nodes turn critical, then expire).
    #[arg(long, default_value_t = 5)]
    pub sweep_interval_seconds: u32,

    /// Seconds between two anti-entropy passes that make Consul match PostgreSQL.
    #[arg(long, default_value_t = 60)]
    pub anti_entropy_interval_seconds: u32,

    /// Seconds the Kubernetes watch or a registry's Kafka connection may fail before
    /// `/readyz` reports not ready.
    #[arg(long, default_value_t = 30)]
    pub readiness_failure_threshold_seconds: u64,
}
