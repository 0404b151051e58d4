//! Reconciliation of one RegistryNode: run its registry instance, report status, and
//! clean up through the finalizer.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, warn};

use super::Context;
use super::config::{ConfigError, resolve};
use super::status::{
    CONSUL_READY, ConditionState, KAFKA_CONNECTED, Observation, POSTGRES_READY, READY,
    SELF_REGISTERED, backend_condition, is_active, ready_condition, shared_status,
    shared_status_changed,
};
use crate::crd::{CleanupPolicy, FINALIZER, InstanceStatus, RegistryNode, SelfRegistrationStatus};
use crate::instance::{InstanceState, RegistryConfig, RegistryInstance, build_sinks};
use crate::metrics::ReconcileLabels;

/// Field manager of the status fields every operator pod writes.
pub const FIELD_MANAGER: &str = "registry-operator";

/// Reconcile failures, each a retry with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("finalizer of {object}: {source}")]
    Finalizer {
        object: String,
        #[source]
        source: Box<finalizer::Error<ReconcileError>>,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("patching the status of {object} failed: {source}")]
    Status {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("starting the registry of {object} failed: {source}")]
    Start {
        object: String,
        #[source]
        source: crate::instance::InstanceError,
    },
}

impl ReconcileError {
    pub fn label(&self) -> &'static str {
        match self {
            ReconcileError::Finalizer { .. } => "finalizer",
            ReconcileError::Config(_) => "config",
            ReconcileError::Status { .. } => "status",
            ReconcileError::Start { .. } => "start",
        }
    }
}

/// Field manager of this pod's own entry in `status.instances`, so that server-side
/// apply keeps the entries of other pods.
pub fn instance_field_manager(pod: &str) -> String {
    format!("registry-operator.{pod}")
}

pub(super) fn object_key_of(node: &RegistryNode) -> String {
    object_key(node)
}

pub(super) fn object_key(node: &RegistryNode) -> String {
    format!(
        "{}/{}",
        node.namespace().unwrap_or_default(),
        node.name_any()
    )
}

/// Reconciles one RegistryNode.
pub async fn reconcile(
    node: Arc<RegistryNode>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = node.namespace().unwrap_or_default();
    let key = object_key(&node);
    let span =
        tracing::info_span!("reconcile", object = %key, generation = ?node.metadata.generation);
    let api: Api<RegistryNode> = Api::namespaced(context.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, node, |event| async {
        match event {
            finalizer::Event::Apply(node) => apply(node, &context).await,
            finalizer::Event::Cleanup(node) => cleanup(node, &context).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|source| ReconcileError::Finalizer {
        object: key.clone(),
        source: Box::new(source),
    });
    let outcome = if result.is_ok() { "success" } else { "error" };
    context
        .metrics
        .reconciles
        .get_or_create(&ReconcileLabels { outcome })
        .inc();
    if result.is_ok() {
        context.reset_backoff(&key);
    }
    result
}

/// Computes the retry delay of a failed reconcile: doubles per consecutive failure of the
/// object, from 500 ms up to 5 minutes, and resets on success.
pub fn error_policy(
    node: Arc<RegistryNode>,
    error: &ReconcileError,
    context: Arc<Context>,
) -> Action {
    let key = object_key(&node);
    let delay = context.next_backoff(&key);
    warn!(object = %key, error = %error, error_kind = error.label(), retry_in_ms = delay.as_millis() as u64, "reconcile failed; retrying");
    Action::requeue(delay)
}

async fn apply(node: Arc<RegistryNode>, context: &Context) -> Result<Action, ReconcileError> {
    let key = object_key(&node);
    let config = match resolve(&context.client, &node, &context.settings).await {
        Ok(config) => config,
        Err(error) if error.needs_user_action() => {
            report_invalid(&node, context, &error).await?;
            return Ok(Action::await_change());
        }
        Err(error) => return Err(error.into()),
    };

    let state = ensure_running(&key, config, context).await?;
    let observation = observe(&node, &state, context).await;
    let ready = observation
        .conditions
        .iter()
        .any(|condition| condition.type_ == READY && condition.status);
    write_status(&node, context, &observation).await?;
    if state.leader.load(std::sync::atomic::Ordering::Relaxed) {
        prune_stopped_instances(&node, &state, context).await;
    }
    Ok(Action::requeue(if ready {
        context.resync
    } else if state.started_at.elapsed() < STARTING {
        // A fresh instance usually turns ready within tens of milliseconds.
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    }))
}

/// Starts the registry when it is not running here, or restarts it when its settings changed.
async fn ensure_running(
    key: &str,
    config: RegistryConfig,
    context: &Context,
) -> Result<Arc<InstanceState>, ReconcileError> {
    let mut running = context.running.lock().await;
    if let Some(instance) = running.get(key) {
        if instance.state.config == config {
            return Ok(instance.state.clone());
        }
        info!(object = %key, "spec changed; restarting the registry instance");
        if let Some(old) = running.remove(key) {
            context
                .registries
                .write()
                .await
                .remove(&old.state.config.registry_id);
            old.stop(context.grace).await;
        }
    }
    let instance = RegistryInstance::start(config, context.metrics.clone()).map_err(|source| {
        ReconcileError::Start {
            object: key.to_owned(),
            source,
        }
    })?;
    let state = instance.state.clone();
    let (namespace, name) = key.split_once('/').unwrap_or(("default", key));
    let holder = super::lease::LeaseHolder::new(
        context.client.clone(),
        namespace,
        format!("registry-operator-{name}"),
        context.settings.identity.pod_name.clone(),
        context.lease_duration,
    );
    tokio::spawn(super::lease::run(
        holder,
        state.leader.clone(),
        instance.child_token(),
    ));
    context
        .registries
        .write()
        .await
        .insert(state.config.registry_id.clone(), state.clone());
    running.insert(key.to_owned(), instance);
    Ok(state)
}

/// How long after an instance starts its readiness is checked every 200 ms, not every second.
const STARTING: Duration = Duration::from_secs(5);

async fn observe(node: &RegistryNode, state: &InstanceState, context: &Context) -> Observation {
    let probe_timeout = Duration::from_secs(2);
    let postgres = tokio::time::timeout(probe_timeout, state.postgres_sink.ping()).await;
    let postgres_error = match postgres {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some("PostgreSQL did not respond within 2s".to_owned()),
    };
    let consul = tokio::time::timeout(probe_timeout, state.consul_sink.client().leader()).await;
    let consul_error = match consul {
        Ok(Ok(Some(_))) => None,
        Ok(Ok(None)) => Some("Consul has no leader".to_owned()),
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some("Consul did not respond within 2s".to_owned()),
    };
    let counts = if postgres_error.is_none() {
        state.postgres_sink.counts().await.ok()
    } else {
        None
    };

    let now = Utc::now();
    let kafka = if state
        .kafka_connected
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        ConditionState::new(KAFKA_CONNECTED, true, "Connected", "")
    } else {
        ConditionState::new(
            KAFKA_CONNECTED,
            false,
            "Connecting",
            "no message fetched from Kafka yet",
        )
    };
    let self_state = state
        .self_registration
        .lock()
        .map(|guard| guard.clone())
        .unwrap_or_default();
    let self_condition = if !state.config.self_registration {
        ConditionState::new(
            SELF_REGISTERED,
            true,
            "Disabled",
            "selfRegistration.enabled is false",
        )
    } else if self_state.complete() {
        ConditionState::new(
            SELF_REGISTERED,
            true,
            "Registered",
            "registered in PostgreSQL and Consul",
        )
    } else {
        ConditionState::new(
            SELF_REGISTERED,
            false,
            "Pending",
            format!(
                "PostgreSQL: {}, Consul: {}{}",
                self_state.postgres.as_str(),
                self_state.consul.as_str(),
                self_state
                    .last_error
                    .as_deref()
                    .map(|error| format!("; last error: {error}"))
                    .unwrap_or_default()
            ),
        )
    };

    let mut conditions = vec![
        kafka,
        backend_condition(
            POSTGRES_READY,
            postgres_error,
            state.postgres.pending_since(),
            now,
        ),
        backend_condition(
            CONSUL_READY,
            consul_error,
            state.consul.pending_since(),
            now,
        ),
        self_condition,
    ];
    conditions.insert(0, ready_condition(&conditions));

    let own = own_instance(state);
    let others = node
        .status
        .as_ref()
        .map(|status| status.instances.clone())
        .unwrap_or_default();
    {
        // Events about an instance record are accepted only from the pods listed here.
        let mut pods = state.instances.write().await;
        pods.clear();
        pods.insert(own.pod.clone());
        pods.extend(others.iter().map(|instance| instance.pod.clone()));
    }
    let self_registration =
        (state.config.self_registration && is_active(&own, &others)).then(|| {
            SelfRegistrationStatus {
                node_id: state.config.self_node_id(),
                deployment_id: state.config.identity.deployment_id.clone(),
                epoch: state.config.identity.epoch,
                registered_at: self_state
                    .registered_at
                    .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                postgres: self_state.postgres.as_str().to_owned(),
                consul: self_state.consul.as_str().to_owned(),
            }
        });
    let _ = context;
    Observation {
        generation: node.metadata.generation,
        conditions,
        counts,
        self_registration,
    }
}

/// Removes the `instances` entries of pods that stopped without removing their own (a
/// crash or SIGKILL): those whose self record in PostgreSQL is gone, deregistered, or
/// silent for longer than the liveness timeout. Runs on the Lease holder only.
async fn prune_stopped_instances(node: &RegistryNode, state: &InstanceState, context: &Context) {
    let own_pod = &state.config.identity.pod_name;
    let Some(status) = node.status.as_ref() else {
        return;
    };
    let api: Api<RegistryNode> = Api::namespaced(
        context.client.clone(),
        &node.namespace().unwrap_or_default(),
    );
    for instance in status
        .instances
        .iter()
        .filter(|instance| &instance.pod != own_pod)
    {
        let Some(node_id) = instance.node_id.as_deref() else {
            continue;
        };
        let row = match state.postgres_sink.get(node_id).await {
            Ok(row) => row,
            Err(error) => {
                warn!(object = %object_key(node), node_id, %error, "checking an instance's record failed");
                continue;
            }
        };
        let silent_for =
            |seen: chrono::DateTime<Utc>| (Utc::now() - seen).to_std().unwrap_or_default();
        let stopped = match &row {
            None => true,
            Some(row) => {
                row.deregistered_at.is_some()
                    || silent_for(row.last_seen_at) > state.config.liveness_timeout
            }
        };
        if !stopped {
            continue;
        }
        // Applying an empty list as the stopped pod's field manager removes its entry only.
        let patch = json!({
            "apiVersion": "omninode.io/v1alpha1",
            "kind": "RegistryNode",
            "status": {"instances": []},
        });
        let manager = instance_field_manager(&instance.pod);
        match api
            .patch_status(
                &node.name_any(),
                &PatchParams::apply(&manager).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => {
                info!(object = %object_key(node), pod = %instance.pod, "removed the instance entry of a stopped pod")
            }
            Err(error) => {
                warn!(object = %object_key(node), pod = %instance.pod, %error, "removing a stopped pod's instance entry failed")
            }
        }
    }
}

fn own_instance(state: &InstanceState) -> InstanceStatus {
    let identity = &state.config.identity;
    InstanceStatus {
        pod: identity.pod_name.clone(),
        deployment_id: identity.deployment_id.clone(),
        epoch: identity.epoch,
        active: false,
        node_id: Some(state.config.self_node_id()),
    }
}

async fn write_status(
    node: &RegistryNode,
    context: &Context,
    observation: &Observation,
) -> Result<(), ReconcileError> {
    let key = object_key(node);
    let previous = node.status.as_ref();
    let computed = shared_status(observation, previous, Utc::now());
    let api: Api<RegistryNode> = Api::namespaced(
        context.client.clone(),
        &node.namespace().unwrap_or_default(),
    );
    if shared_status_changed(&computed, previous) {
        let patch = json!({
            "apiVersion": "omninode.io/v1alpha1",
            "kind": "RegistryNode",
            "status": computed,
        });
        api.patch_status(
            &node.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| ReconcileError::Status {
            object: key.clone(),
            source,
        })?;
        publish_ready_transition(node, context, previous, &computed).await;
    }

    let Some(own) = context.own_instance_entry(&key).await else {
        return Ok(());
    };
    let others: Vec<InstanceStatus> = previous
        .map(|status| status.instances.clone())
        .unwrap_or_default();
    let mut own = own;
    own.active = is_active(&own, &others);
    let existing = others.iter().find(|instance| instance.pod == own.pod);
    if existing != Some(&own) {
        let patch = json!({
            "apiVersion": "omninode.io/v1alpha1",
            "kind": "RegistryNode",
            "status": {"instances": [own]},
        });
        let manager = instance_field_manager(&context.settings.identity.pod_name);
        api.patch_status(
            &node.name_any(),
            &PatchParams::apply(&manager).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| ReconcileError::Status {
            object: key,
            source,
        })?;
    }
    Ok(())
}

/// Publishes an event when `Ready` changes, so repeated reconciles add no events.
async fn publish_ready_transition(
    node: &RegistryNode,
    context: &Context,
    previous: Option<&crate::crd::RegistryNodeStatus>,
    computed: &crate::crd::RegistryNodeStatus,
) {
    let ready = |status: &crate::crd::RegistryNodeStatus| {
        status
            .conditions
            .iter()
            .find(|condition| condition.type_ == READY)
            .map(|condition| {
                (
                    condition.status.clone(),
                    condition.reason.clone(),
                    condition.message.clone(),
                )
            })
    };
    let before = previous.and_then(ready);
    let Some((status, reason, message)) = ready(computed) else {
        return;
    };
    if before.as_ref().map(|(status, reason, _)| (status, reason)) == Some((&status, &reason)) {
        return;
    }
    let event_type = if status == "True" {
        EventType::Normal
    } else {
        EventType::Warning
    };
    let reason = if status == "True" {
        "Ready".to_owned()
    } else {
        reason
    };
    context
        .publish_event(node, event_type, &reason, &message, "Reconcile")
        .await;
}

async fn report_invalid(
    node: &RegistryNode,
    context: &Context,
    error: &ConfigError,
) -> Result<(), ReconcileError> {
    let key = object_key(node);
    warn!(object = %key, error = %error, "RegistryNode cannot run; waiting for a change");
    if let Some(instance) = context.running.lock().await.remove(&key) {
        context
            .registries
            .write()
            .await
            .remove(&instance.state.config.registry_id);
        instance.stop(context.grace).await;
    }
    let message = error.to_string();
    let conditions = vec![ConditionState::new(
        READY,
        false,
        error.reason(),
        message.clone(),
    )];
    let observation = Observation {
        generation: node.metadata.generation,
        conditions,
        counts: None,
        self_registration: None,
    };
    let previous = node.status.as_ref();
    let computed = shared_status(&observation, previous, Utc::now());
    if shared_status_changed(&computed, previous) {
        let api: Api<RegistryNode> = Api::namespaced(
            context.client.clone(),
            &node.namespace().unwrap_or_default(),
        );
        let patch = json!({
            "apiVersion": "omninode.io/v1alpha1",
            "kind": "RegistryNode",
            "status": computed,
        });
        api.patch_status(
            &node.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| ReconcileError::Status {
            object: key,
            source,
        })?;
        context
            .publish_event(
                node,
                EventType::Warning,
                error.reason(),
                &message,
                "Validate",
            )
            .await;
    }
    Ok(())
}

/// Stops the registry here and applies the cleanup policy. Never fails on an invalid spec
/// or an unreachable backend, so deletion is never blocked; what could not be cleaned is
/// logged and reported as an event.
async fn cleanup(node: Arc<RegistryNode>, context: &Context) -> Result<Action, ReconcileError> {
    let key = object_key(&node);
    info!(object = %key, "RegistryNode deleted; cleaning up");
    if let Some(instance) = context.running.lock().await.remove(&key) {
        context
            .registries
            .write()
            .await
            .remove(&instance.state.config.registry_id);
        instance.stop(context.grace).await;
    }
    let config = match resolve(&context.client, &node, &context.settings).await {
        Ok(config) => config,
        Err(error) => {
            warn!(object = %key, error = %error, "cleanup skipped: the spec cannot be resolved");
            context
                .publish_event(
                    &node,
                    EventType::Warning,
                    "CleanupSkipped",
                    &error.to_string(),
                    "Cleanup",
                )
                .await;
            return Ok(Action::await_change());
        }
    };
    let outcome = apply_cleanup_policy(&config).await;
    match outcome {
        Ok(summary) => {
            info!(object = %key, %summary, "cleanup done");
            context
                .publish_event(&node, EventType::Normal, "CleanedUp", &summary, "Cleanup")
                .await;
        }
        Err(error) => {
            warn!(object = %key, %error, "cleanup incomplete");
            context
                .publish_event(
                    &node,
                    EventType::Warning,
                    "CleanupIncomplete",
                    &error,
                    "Cleanup",
                )
                .await;
        }
    }
    Ok(Action::await_change())
}

async fn apply_cleanup_policy(config: &RegistryConfig) -> Result<String, String> {
    let (postgres, consul) = build_sinks(config).map_err(|error| error.to_string())?;
    let timeout = Duration::from_secs(10);
    let services = tokio::time::timeout(timeout, consul.deregister_all())
        .await
        .map_err(|_| "Consul did not respond within 10s".to_owned())?
        .map_err(|error| format!("deregistering Consul services failed: {error}"))?;
    let rows = match config.cleanup_policy {
        CleanupPolicy::Retain => None,
        CleanupPolicy::Delete => Some(
            tokio::time::timeout(timeout, postgres.delete_all())
                .await
                .map_err(|_| "PostgreSQL did not respond within 10s".to_owned())?
                .map_err(|error| format!("deleting PostgreSQL rows failed: {error}"))?,
        ),
    };
    Ok(match rows {
        None => format!("deregistered {services} Consul services; PostgreSQL rows retained"),
        Some(rows) => {
            format!("deregistered {services} Consul services and deleted {rows} PostgreSQL rows")
        }
    })
}

impl Context {
    async fn own_instance_entry(&self, key: &str) -> Option<InstanceStatus> {
        let running = self.running.lock().await;
        running
            .get(key)
            .map(|instance| own_instance(&instance.state))
    }

    pub(super) async fn publish_event(
        &self,
        node: &RegistryNode,
        type_: EventType,
        reason: &str,
        note: &str,
        action: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.chars().take(1000).collect()),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &node.object_ref(&())).await {
            warn!(object = %object_key(node), %error, reason, "publishing a Kubernetes event failed");
        }
    }
}
