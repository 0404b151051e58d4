//! `registry-operator standalone`: one registry configured by flags, without Kubernetes.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::{ConsulMode, StandaloneArgs};
use crate::crd::{CleanupPolicy, RegistrationMode};
use crate::http::{HttpState, serve};
use crate::instance::{PodIdentity, RegistryConfig, RegistryInstance};
use crate::metrics::Metrics;
use crate::wire::topics::Topics;

/// Builds the registry configuration from the flags and the process environment.
pub fn config_from_args(args: &StandaloneArgs) -> anyhow::Result<RegistryConfig> {
    crate::postgres::validate_schema(&args.schema)?;
    let identity = PodIdentity::from_env()?;
    let host = identity
        .pod_ip
        .clone()
        .unwrap_or_else(|| args.http_addr.ip().to_string());
    Ok(RegistryConfig {
        registry_id: args.registry_id.clone(),
        environment: args.environment.clone(),
        network_id: args.network_id.clone(),
        topics: Topics::for_environment(&args.environment),
        kafka_brokers: args.kafka_brokers.clone(),
        consumer_group: args
            .consumer_group
            .clone()
            .unwrap_or_else(|| format!("registry-operator.{}", args.registry_id)),
        dead_letter_topic: None,
        kafka_properties: Default::default(),
        consul_address: args.consul_address.clone(),
        consul_token: None,
        consul_datacenter: None,
        registration_mode: match args.consul_mode {
            ConsulMode::Catalog => RegistrationMode::Catalog,
            ConsulMode::Agent => RegistrationMode::Agent,
        },
        consul_tags: Vec::new(),
        postgres_url: args.database_url.clone(),
        postgres_schema: args.schema.clone(),
        heartbeat_interval: Duration::from_secs(args.heartbeat_interval_seconds.max(1).into()),
        liveness_timeout: Duration::from_secs(args.liveness_timeout_seconds.into()),
        expiry_after: Duration::from_secs(args.expiry_after_seconds.into()),
        self_registration: !args.no_self_registration,
        cleanup_policy: CleanupPolicy::Retain,
        heartbeat_write_interval: Duration::from_secs(
            args.tuning.heartbeat_write_interval_seconds.into(),
        ),
        sweep_interval: Duration::from_secs(args.tuning.sweep_interval_seconds.max(1).into()),
        anti_entropy_interval: Duration::from_secs(
            args.tuning.anti_entropy_interval_seconds.max(1).into(),
        ),
        // One standalone process per registry: it is always the one that runs sweeps.
        leader_by_default: true,
        http_base_url: format!(
            "http://{}",
            std::net::SocketAddr::new(
                host.parse().unwrap_or(args.http_addr.ip()),
                args.http_addr.port()
            )
        ),
        identity,
    })
}

/// Runs until SIGTERM or SIGINT, then stops within the grace period.
pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let config = config_from_args(&args)?;
    let api_token = match &args.api_token_file {
        Some(path) => Some(crate::http::read_api_token(path)?),
        None => None,
    };

    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    let ready = Arc::new(AtomicBool::new(true));
    let registries: crate::http::Registries = Default::default();
    let instance = RegistryInstance::start(config, metrics.clone())?;
    registries.write().await.insert(
        instance.state.config.registry_id.clone(),
        instance.state.clone(),
    );
    let http = tokio::spawn(serve(
        args.http_addr,
        HttpState {
            metrics,
            ready,
            registries,
            api_token,
            failure_threshold: Duration::from_secs(args.tuning.readiness_failure_threshold_seconds),
            watch_failing_since: Default::default(),
        },
        cancel.clone(),
    ));
    crate::signals::shutdown_signal().await;
    tracing::info!("stop signal received; stopping");
    instance.stop(Duration::from_secs(args.grace_seconds)).await;
    cancel.cancel();
    let _ = http.await;
    Ok(())
}
