//! `/readyz`: the process's readiness and, for each running registry, the state of
//! its Kafka consumer, backends and self-registration.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::HttpState;
use crate::instance::InstanceState;
use crate::pipeline::backend::BackendHealth;

#[derive(Debug, Serialize)]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: &'static str,
    /// Reason for not being ready, or null when ready.
    pub reason: Option<&'static str>,
    pub registries: Vec<RegistryReadiness>,
}

/// State of one registry. It is reported without changing the status code: one
/// registry whose backends are down must not take the whole process out of service.
#[derive(Debug, Serialize)]
pub struct RegistryReadiness {
    pub registry: String,
    /// True once the consumer has received its first message from Kafka.
    pub kafka_connected: bool,
    pub postgres: BackendReadiness,
    pub consul: BackendReadiness,
    pub self_registration: Option<SelfRegistrationReadiness>,
}

#[derive(Debug, Serialize)]
pub struct BackendReadiness {
    /// Node writes consumed from Kafka that are not durable in the backend yet.
    pub pending_writes: usize,
    /// Error of the last failed write while the backend keeps failing.
    pub error: Option<String>,
    pub failing_for_seconds: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct SelfRegistrationReadiness {
    pub postgres: &'static str,
    pub consul: &'static str,
}

fn backend_readiness(health: &BackendHealth) -> BackendReadiness {
    let failing = health
        .failing_since
        .lock()
        .ok()
        .and_then(|guard| (*guard).clone());
    BackendReadiness {
        pending_writes: health.pending.load(Ordering::Relaxed),
        failing_for_seconds: failing.as_ref().map(|(since, _)| since.elapsed().as_secs()),
        error: failing.map(|(_, message)| message),
    }
}

fn registry_readiness(state: &InstanceState) -> RegistryReadiness {
    let self_registration = state
        .config
        .self_registration
        .then(|| {
            state
                .self_registration
                .lock()
                .ok()
                .map(|guard| (*guard).clone())
        })
        .flatten()
        .map(|progress| SelfRegistrationReadiness {
            postgres: progress.postgres.as_str(),
            consul: progress.consul.as_str(),
        });
    RegistryReadiness {
        registry: state.config.registry_id.clone(),
        kafka_connected: state.kafka_connected.load(Ordering::Relaxed),
        postgres: backend_readiness(&state.postgres),
        consul: backend_readiness(&state.consul),
        self_registration,
    }
}

/// Returns 200 once the process has completed its first sync, 503 before it and while
/// the Kubernetes watch or a registry's Kafka connection has been failing longer than the
/// threshold, with the details of every registry in both cases.
pub(super) async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<Readiness>) {
    let registries = state
        .registries
        .read()
        .await
        .values()
        .map(|instance| registry_readiness(instance))
        .collect();

    let threshold = state.failure_threshold;
    let failing_too_long =
        |since: Option<std::time::Instant>| since.is_some_and(|since| since.elapsed() >= threshold);
    let watch_failing = failing_too_long(
        state
            .watch_failing_since
            .lock()
            .ok()
            .and_then(|guard| *guard),
    );
    let kafka_failing = state.registries.read().await.values().any(|instance| {
        failing_too_long(
            instance
                .kafka_failing_since
                .lock()
                .ok()
                .and_then(|guard| *guard),
        )
    });
    let reason = if !state.ready.load(Ordering::Relaxed) {
        Some("first sync not complete")
    } else if watch_failing {
        Some("the Kubernetes watch has been failing longer than the threshold")
    } else if kafka_failing {
        Some("Kafka has been unreachable longer than the threshold")
    } else {
        None
    };
    let (status, body) = match reason {
        None => (StatusCode::OK, ("ready", None)),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, ("not ready", Some(reason))),
    };
    (
        status,
        Json(Readiness {
            status: body.0,
            reason: body.1,
            registries,
        }),
    )
}
