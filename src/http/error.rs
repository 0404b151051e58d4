//! Errors of the node API and their JSON responses: `{"error": "<message>"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::deregister::DeregisterError;
use super::query::QueryError;
use crate::postgres::PostgresError;

/// A request the node API could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Query(#[from] QueryError),

    #[error("node {node_id} not found")]
    NodeNotFound { node_id: String },

    #[error(
        "node {node_id} is registered by more than one registry ({}): add ?registry=<id> to choose one",
        registries.join(", ")
    )]
    AmbiguousNode {
        node_id: String,
        registries: Vec<String>,
    },

    #[error(
        "deregistering nodes is disabled because the API token is not configured: start the server with --api-token-file"
    )]
    TokenNotConfigured,

    #[error("missing API token: send the header \"Authorization: Bearer <token>\"")]
    MissingToken,

    #[error("invalid API token")]
    WrongToken,

    #[error("reading the nodes of registry {registry} from PostgreSQL failed: {source}")]
    Postgres {
        registry: String,
        #[source]
        source: PostgresError,
    },

    #[error(transparent)]
    Deregister(#[from] Box<DeregisterError>),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Query(_) => StatusCode::BAD_REQUEST,
            ApiError::NodeNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::AmbiguousNode { .. } => StatusCode::CONFLICT,
            ApiError::TokenNotConfigured => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::MissingToken => StatusCode::UNAUTHORIZED,
            ApiError::WrongToken => StatusCode::FORBIDDEN,
            ApiError::Postgres { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Deregister(error) => error.status(),
        }
    }

    /// Logs the error: failures of the server at error level, rejected credentials
    /// at warn level, and other mistakes of the client at debug level.
    fn log(&self, status: StatusCode) {
        let status = status.as_u16();
        match self {
            _ if status >= 500 => tracing::error!(status, error = %self, "node API request failed"),
            ApiError::MissingToken | ApiError::WrongToken => {
                tracing::warn!(status, error = %self, "node API request rejected")
            }
            _ => tracing::debug!(status, error = %self, "node API request rejected"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        self.log(status);

        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::MissingToken | ApiError::WrongToken => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TokenNotConfigured => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            _ => {}
        }
        response
    }
}
