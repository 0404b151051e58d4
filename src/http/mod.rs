//! The HTTP server: liveness, readiness, Prometheus metrics and the node API.
//!
//! `query` and `listing::merge_page` are pure; `listing`, `deregister` and the
//! handlers in `nodes` read and write the backends of the running registries.

mod auth;
mod deregister;
mod error;
mod listing;
mod nodes;
mod query;
mod readiness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

pub use auth::{ApiTokenError, read_api_token};
pub use deregister::Deregistration;
pub use listing::{NodeItem, NodePage};
pub use query::{DEFAULT_LIMIT, MAX_LIMIT};

use crate::metrics::Metrics;

/// Running registries by registry id, shared between the operator and the HTTP API.
pub type Registries = Arc<
    tokio::sync::RwLock<std::collections::BTreeMap<String, Arc<crate::instance::InstanceState>>>,
>;

/// State shared with the handlers.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// Set once the process has completed its first successful sync.
    pub ready: Arc<AtomicBool>,
    pub registries: Registries,
    /// How long the Kubernetes watch or a Kafka connection may fail before `/readyz`
    /// reports not ready.
    pub failure_threshold: std::time::Duration,
    /// Start of the current failure of the Kubernetes watch (never set in standalone mode).
    pub watch_failing_since: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Bearer token that `DELETE /api/v1/nodes/{id}` requires. Deregistration through
    /// the API is disabled while it is `None`.
    pub api_token: Option<String>,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn route_not_found(method: Method, uri: Uri) -> impl IntoResponse {
    let message = format!("no route for {method} {}", uri.path());
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": message })),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> impl IntoResponse {
    let message = format!("method {method} is not allowed on {}", uri.path());
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({ "error": message })),
    )
}

/// Builds the routes of the server.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readiness::readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/nodes", get(nodes::list))
        .route("/api/v1/nodes/{id}", get(nodes::get).delete(nodes::delete))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves until `cancel` fires.
pub async fn serve(
    address: SocketAddr,
    state: HttpState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let deregistration = if state.api_token.is_some() {
        "enabled"
    } else {
        "disabled: no API token configured"
    };
    let app = router(state);
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, deregistration, "HTTP server listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}
