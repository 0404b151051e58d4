//! Self-registration of the registry: startup introspection, its own record in both
//! backends (each retried in the background), heartbeats, a request for every node to
//! announce itself again, and responses to registry requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::InstanceState;
use super::self_record::{self, REGISTRY_NODE_TYPE};
use crate::kafka::EventProducer;
use crate::wire::{
    Envelope, IntrospectionReason, RegistryRequestPayload, RequestReason, encode_event, kafka_key,
};

/// Progress of the self record in one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendState {
    #[default]
    Pending,
    Registered,
    Failed,
}

impl BackendState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Pending => "Pending",
            BackendState::Registered => "Registered",
            BackendState::Failed => "Failed",
        }
    }
}

/// Progress of self-registration in each backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelfRegistrationState {
    pub postgres: BackendState,
    pub consul: BackendState,
    pub registered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl SelfRegistrationState {
    pub fn complete(&self) -> bool {
        self.postgres == BackendState::Registered && self.consul == BackendState::Registered
    }
}

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

async fn publish<P: serde::Serialize>(
    producer: &EventProducer,
    topic: &str,
    envelope: &Envelope<P>,
) -> Result<(), String> {
    let bytes = encode_event(envelope).map_err(|error| error.to_string())?;
    producer
        .publish(topic, &kafka_key(envelope), Some(&bytes))
        .await
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Runs self-registration, heartbeats and request responses until `cancel` fires.
pub async fn run(
    state: Arc<InstanceState>,
    producer: EventProducer,
    mut requests: mpsc::UnboundedReceiver<Envelope<RegistryRequestPayload>>,
    cancel: CancellationToken,
) {
    let config = &state.config;
    let started = Instant::now();
    if config.self_registration {
        let startup = self_record::introspection(config, IntrospectionReason::Startup, None, None);
        let record = self_record::record_of(&startup, startup.event_timestamp);
        spawn_postgres_registration(state.clone(), record.clone(), cancel.clone());
        spawn_consul_registration(state.clone(), record, cancel.clone());
        let topic = config.topics.introspection.clone();
        let request_topic = config.topics.registry_request.clone();
        let request = self_record::registry_request(config, RequestReason::Startup);
        let producer_for_startup = producer.clone();
        let startup_cancel = cancel.clone();
        tokio::spawn(async move {
            retry("publish startup introspection", &startup_cancel, || {
                publish(&producer_for_startup, &topic, &startup)
            })
            .await;
            retry("publish registry request", &startup_cancel, || {
                publish(&producer_for_startup, &request_topic, &request)
            })
            .await;
        });
    }

    let mut heartbeat = tokio::time::interval(config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = heartbeat.tick(), if config.self_registration => {
                let event = self_record::heartbeat(config, started.elapsed().as_secs());
                if let Err(error) = publish(&producer, &config.topics.heartbeat, &event).await {
                    warn!(registry = %config.registry_id, %error, "publishing the registry's heartbeat failed");
                }
            }
            Some(request) = requests.recv() => answer(&state, &producer, &request).await,
        }
    }
}

/// Publishes this registry's introspection in response to a registry request that
/// targets registries (or every node), echoing the request's correlation id.
async fn answer(
    state: &InstanceState,
    producer: &EventProducer,
    request: &Envelope<RegistryRequestPayload>,
) {
    let config = &state.config;
    if !config.self_registration {
        return;
    }
    let targeted = request
        .payload
        .target_node_types
        .as_ref()
        .is_none_or(|types| {
            types
                .iter()
                .any(|node_type| node_type.eq_ignore_ascii_case(REGISTRY_NODE_TYPE))
        });
    if !targeted {
        debug!(registry = %config.registry_id, event_id = %request.event_id, "registry request does not target registries");
        return;
    }
    let correlation_id = request.correlation_id.or(request.payload.correlation_id);
    let response = self_record::introspection(
        config,
        IntrospectionReason::RegistryRequest,
        correlation_id,
        Some(request.event_id),
    );
    match publish(producer, &config.topics.introspection, &response).await {
        Ok(()) => {
            info!(registry = %config.registry_id, request = %request.event_id, correlation_id = ?correlation_id, "responded to registry request")
        }
        Err(error) => {
            warn!(registry = %config.registry_id, %error, "responding to a registry request failed")
        }
    }
}

async fn retry<F, Fut>(what: &str, cancel: &CancellationToken, mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut backoff = RETRY_MIN;
    loop {
        match attempt().await {
            Ok(()) => return true,
            Err(error) => {
                warn!(%error, retry_in_ms = backoff.as_millis() as u64, "{what} failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return false,
                }
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

fn update(state: &InstanceState, change: impl FnOnce(&mut SelfRegistrationState)) {
    if let Ok(mut guard) = state.self_registration.lock() {
        change(&mut guard);
    }
}

fn spawn_postgres_registration(
    state: Arc<InstanceState>,
    record: crate::node::NodeRecord,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let config = &state.config;
        let done = retry("self-registration in PostgreSQL", &cancel, || async {
            let result = async {
                crate::postgres::migrate(state.postgres_sink.pool(), &config.postgres_schema)
                    .await?;
                state.postgres_sink.upsert(&[(record.clone(), false)]).await
            }
            .await;
            if let Err(error) = &result {
                let message = error.to_string();
                update(&state, |s| {
                    s.postgres = BackendState::Failed;
                    s.last_error = Some(message);
                });
            }
            result.map(|_| ()).map_err(|error| error.to_string())
        })
        .await;
        if done {
            update(&state, |s| {
                s.postgres = BackendState::Registered;
                s.registered_at.get_or_insert(record.event_timestamp);
            });
            info!(registry = %config.registry_id, node_id = %record.node_id, "self record written to PostgreSQL");
        }
    });
}

fn spawn_consul_registration(
    state: Arc<InstanceState>,
    record: crate::node::NodeRecord,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        let config = &state.config;
        let done = retry("self-registration in Consul", &cancel, || async {
            let result = state.consul_sink.register(&record).await;
            if let Err(error) = &result {
                let message = error.to_string();
                update(&state, |s| {
                    s.consul = BackendState::Failed;
                    s.last_error = Some(message);
                });
            }
            result.map(|_| ()).map_err(|error| error.to_string())
        })
        .await;
        if done {
            update(&state, |s| {
                s.consul = BackendState::Registered;
                s.registered_at.get_or_insert(record.event_timestamp);
            });
            info!(registry = %config.registry_id, node_id = %record.node_id, "self record registered in Consul");
        }
    });
}

/// Publishes the shutdown introspection and removes the self record from both
/// backends. Each step is tried once; failures are logged.
pub async fn shutdown(state: &InstanceState, producer: &EventProducer) {
    let config = &state.config;
    let event = self_record::introspection(config, IntrospectionReason::Shutdown, None, None);
    if let Err(error) = publish(producer, &config.topics.introspection, &event).await {
        warn!(registry = %config.registry_id, %error, "publishing the shutdown introspection failed");
    }
    let record = self_record::record_of(&event, event.event_timestamp);
    let tombstone = [(record.clone(), true)];
    let (postgres, consul) = tokio::join!(
        state.postgres_sink.upsert(&tombstone),
        state.consul_sink.deregister(&record.node_id)
    );
    if let Err(error) = postgres {
        warn!(registry = %config.registry_id, %error, "removing the self record from PostgreSQL failed");
    }
    if let Err(error) = consul {
        warn!(registry = %config.registry_id, %error, "removing the self record from Consul failed");
    }
    info!(registry = %config.registry_id, node_id = %record.node_id, "self record deregistered");
}
