//! Handlers of `/api/v1/nodes`: list with filters, get one, deregister one.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;

use super::HttpState;
use super::auth::authorize;
use super::deregister::{Deregistration, deregister};
use super::error::ApiError;
use super::listing::{NodeItem, NodePage, find_node, list_nodes};
use super::query::{parse_list_query, parse_node_query};

/// `GET /api/v1/nodes`: one page of registered nodes, filtered.
pub(super) async fn list(
    State(state): State<HttpState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<NodePage>, ApiError> {
    let query = parse_list_query(raw.as_deref())?;
    let page = list_nodes(&state.registries, &query).await?;
    tracing::debug!(
        items = page.items.len(),
        more = page.continue_token.is_some(),
        "listed nodes"
    );
    Ok(Json(page))
}

/// `GET /api/v1/nodes/{id}`: one registered node.
pub(super) async fn get(
    State(state): State<HttpState>,
    Path(node_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<NodeItem>, ApiError> {
    let registry = parse_node_query(raw.as_deref())?;
    let (instance, node) = find_node(&state.registries, &node_id, registry.as_deref()).await?;
    Ok(Json(NodeItem {
        registry: instance.config.registry_id.clone(),
        node,
    }))
}

/// `DELETE /api/v1/nodes/{id}`: deregisters a node from both backends of its
/// registry. The token is checked before anything else, so that a client without it
/// learns nothing about which nodes exist.
pub(super) async fn delete(
    State(state): State<HttpState>,
    Path(node_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Deregistration>, ApiError> {
    authorize(state.api_token.as_deref(), &headers)?;

    let registry = parse_node_query(raw.as_deref())?;
    let (instance, node) = find_node(&state.registries, &node_id, registry.as_deref()).await?;
    let deregistration = deregister(&instance, &node).await.map_err(Box::new)?;
    Ok(Json(deregistration))
}
