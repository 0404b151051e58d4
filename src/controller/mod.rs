//! The RegistryNode controller: one registry instance per RegistryNode, status through
//! server-side apply, events on transitions, and a finalizer for cleanup.

mod config;
mod lease;
mod reconcile;
mod status;
mod validate;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use config::{ConfigError, OperatorSettings};
pub use reconcile::{FIELD_MANAGER, ReconcileError, instance_field_manager};
pub use validate::SpecError;

use crate::cli::RunArgs;
use crate::crd::RegistryNode;
use crate::http::{HttpState, Registries, serve};
use crate::instance::{PodIdentity, RegistryInstance};
use crate::metrics::Metrics;

const CRD_NAME: &str = "registrynodes.omninode.io";

/// Shared state of every reconcile.
pub struct Context {
    client: Client,
    metrics: Arc<Metrics>,
    settings: OperatorSettings,
    recorder: Recorder,
    running: tokio::sync::Mutex<HashMap<String, RegistryInstance>>,
    registries: Registries,
    failures: std::sync::Mutex<HashMap<String, u32>>,
    grace: Duration,
    resync: Duration,
    lease_duration: Duration,
}

impl Context {
    fn next_backoff(&self, key: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        let delay = Duration::from_millis(500).saturating_mul(2u32.saturating_pow(*count - 1));
        delay.min(Duration::from_secs(300))
    }

    fn reset_backoff(&self, key: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(key);
    }
}

/// Errors that stop the operator at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("connecting to the Kubernetes API failed: {0}")]
    Client(#[source] kube::Error),
    #[error(
        "the CustomResourceDefinition {CRD_NAME} is not installed: apply it with \
         `kubectl apply --server-side -f crds/` or install the Helm chart"
    )]
    CrdMissing,
    #[error("reading the CustomResourceDefinition {CRD_NAME} failed: {0}")]
    CrdCheck(#[source] kube::Error),
    #[error(transparent)]
    Identity(#[from] crate::instance::config::InvalidEpoch),
    #[error(transparent)]
    ApiToken(#[from] crate::http::ApiTokenError),
}

fn references_secret(node: &RegistryNode, secret: &str) -> bool {
    let spec = &node.spec;
    spec.kafka
        .properties_secret_ref
        .as_ref()
        .is_some_and(|r| r.name == secret)
        || spec
            .consul
            .token_secret_ref
            .as_ref()
            .is_some_and(|r| r.name == secret)
        || spec
            .postgres
            .url_secret_ref
            .as_ref()
            .is_some_and(|r| r.name == secret)
        || spec
            .postgres
            .password_secret_ref
            .as_ref()
            .is_some_and(|r| r.name == secret)
}

/// Runs the operator until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> Result<(), StartError> {
    let client = Client::try_default().await.map_err(StartError::Client)?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt(CRD_NAME).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(StartError::CrdMissing),
        Err(source) => return Err(StartError::CrdCheck(source)),
    }

    let identity = PodIdentity::from_env()?;
    let host = identity
        .pod_ip
        .clone()
        .unwrap_or_else(|| args.http_addr.ip().to_string());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let settings = OperatorSettings {
        http_base_url: format!("http://{host}:{}", args.http_addr.port()),
        heartbeat_write_interval: Duration::from_secs(
            args.tuning.heartbeat_write_interval_seconds.into(),
        ),
        sweep_interval: Duration::from_secs(args.tuning.sweep_interval_seconds.max(1).into()),
        anti_entropy_interval: Duration::from_secs(
            args.tuning.anti_entropy_interval_seconds.max(1).into(),
        ),
        identity: identity.clone(),
    };
    let api_token = match &args.api_token_file {
        Some(path) => Some(crate::http::read_api_token(path)?),
        None => None,
    };
    let metrics = Metrics::new();
    let registries: Registries = Default::default();
    let watch_failing_since: Arc<std::sync::Mutex<Option<std::time::Instant>>> = Default::default();
    let ready = Arc::new(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    let http = tokio::spawn(serve(
        args.http_addr,
        HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
            registries: registries.clone(),
            api_token,
            failure_threshold: Duration::from_secs(args.tuning.readiness_failure_threshold_seconds),
            watch_failing_since: watch_failing_since.clone(),
        },
        cancel.clone(),
    ));

    let context = Arc::new(Context {
        client: client.clone(),
        metrics,
        settings,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "registry-operator".into(),
                instance: Some(identity.pod_name.clone()),
            },
        ),
        running: Default::default(),
        registries,
        failures: Default::default(),
        grace: Duration::from_secs(args.grace_seconds),
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        lease_duration: Duration::from_secs(args.lease_duration_seconds.max(3)),
    });

    let (nodes, secrets): (Api<RegistryNode>, Api<Secret>) = match &args.namespace {
        Some(namespace) => (
            Api::namespaced(client.clone(), namespace),
            Api::namespaced(client.clone(), namespace),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let controller = Controller::new(nodes, watcher::Config::default().any_semantic());
    let store = controller.store();
    let mapper_store = store.clone();
    let controller = controller
        .watches(
            secrets,
            watcher::Config::default(),
            move |secret: Secret| {
                let namespace = secret.namespace();
                let name = secret.name_any();
                mapper_store
                    .state()
                    .into_iter()
                    .filter(|node| node.namespace() == namespace && references_secret(node, &name))
                    .map(|node| ObjectRef::from_obj(&*node))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(cancel.clone().cancelled_owned());

    let signal_cancel = cancel.clone();
    tokio::spawn(async move {
        crate::signals::shutdown_signal().await;
        info!("stop signal received; stopping");
        signal_cancel.cancel();
    });
    let ready_store = store.clone();
    tokio::spawn(async move {
        wait_store_ready(&ready_store).await;
        info!("RegistryNode cache synced; ready");
        ready.store(true, Ordering::Relaxed);
    });
    tokio::spawn(stop_orphans(store, context.clone(), cancel.clone()));

    info!(pod = %identity.pod_name, deployment_id = ?identity.deployment_id, epoch = ?identity.epoch, "operator started");
    controller
        .run(
            reconcile::reconcile,
            reconcile::error_policy,
            context.clone(),
        )
        .for_each(|result| {
            let watch_failing_since = watch_failing_since.clone();
            async move {
                let watch_failed = match result {
                    Ok(_) => false,
                    Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => false,
                    Err(other) => {
                        warn!(error = %other, "controller error");
                        matches!(other, kube::runtime::controller::Error::QueueError(_))
                    }
                };
                if let Ok(mut since) = watch_failing_since.lock() {
                    if watch_failed {
                        since.get_or_insert_with(std::time::Instant::now);
                    } else {
                        *since = None;
                    }
                }
            }
        })
        .await;

    shutdown(&context).await;
    cancel.cancel();
    let _ = http.await;
    info!("operator stopped");
    Ok(())
}

/// Returns whether the store has completed its first list. A short poll, because a waiter
/// of `Store::wait_until_ready` can miss the wake-up when several tasks wait at once
/// (seen with kube-runtime 5.0: only the controller's own runner was woken).
async fn store_ready(store: &Store<RegistryNode>) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_millis(50), store.wait_until_ready()).await,
        Ok(Ok(()))
    )
}

/// Waits until the store has completed its first list, polling every 200 ms.
async fn wait_store_ready(store: &Store<RegistryNode>) {
    while !store_ready(store).await {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops instances whose RegistryNode no longer exists, such as when another pod ran
/// the finalizer and the object went away before this pod saw the deletion.
async fn stop_orphans(
    store: Store<RegistryNode>,
    context: Arc<Context>,
    cancel: CancellationToken,
) {
    let mut interval = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        if !store_ready(&store).await {
            continue;
        }
        let live: std::collections::HashSet<String> = store
            .state()
            .iter()
            .map(|node| reconcile::object_key_of(node))
            .collect();
        let orphans: Vec<RegistryInstance> = {
            let mut running = context.running.lock().await;
            let keys: Vec<String> = running
                .keys()
                .filter(|key| !live.contains(*key))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|key| running.remove(&key))
                .collect()
        };
        for instance in orphans {
            info!(registry = %instance.state.config.registry_id, "RegistryNode is gone; stopping its registry");
            context
                .registries
                .write()
                .await
                .remove(&instance.state.config.registry_id);
            instance.stop(context.grace).await;
        }
    }
}

/// Stops every instance (each publishes its shutdown introspection and deregisters its
/// own record) and removes this pod's entry from each RegistryNode's status.
async fn shutdown(context: &Context) {
    let instances: Vec<(String, RegistryInstance)> = context.running.lock().await.drain().collect();
    let pod = context.settings.identity.pod_name.clone();
    let manager = instance_field_manager(&pod);
    let stops = instances.into_iter().map(|(key, instance)| {
        let manager = manager.clone();
        let pod = pod.clone();
        async move {
            instance.stop(context.grace).await;
            let Some((namespace, name)) = key.split_once('/') else {
                return;
            };
            let api: Api<RegistryNode> = Api::namespaced(context.client.clone(), namespace);
            let patch = json!({
                "apiVersion": "omninode.io/v1alpha1",
                "kind": "RegistryNode",
                "status": {"instances": []},
            });
            match api
                .patch_status(
                    name,
                    &PatchParams::apply(&manager).force(),
                    &Patch::Apply(&patch),
                )
                .await
            {
                Ok(_) => info!(object = %key, %pod, "removed this pod's instance entry"),
                Err(kube::Error::Api(response)) if response.code == 404 => {}
                Err(error) => {
                    error!(object = %key, %error, "removing this pod's instance entry failed")
                }
            }
        }
    });
    futures::future::join_all(stops).await;
}
