//! Listing and looking up registered nodes across the running registries.

use std::sync::Arc;

use serde::Serialize;

use super::Registries;
use super::error::ApiError;
use super::query::{Cursor, ListQuery};
use crate::instance::InstanceState;
use crate::postgres::{PostgresError, StoredNode};

/// SQLSTATE of a query on a table that does not exist.
const UNDEFINED_TABLE: &str = "42P01";

/// A registered node and the registry that registered it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeItem {
    pub registry: String,
    #[serde(flatten)]
    pub node: StoredNode,
}

/// One page of `GET /api/v1/nodes`. `continue` is null on the last page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePage {
    pub items: Vec<NodeItem>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
}

/// Turns the error of a query on a missing table into an empty result. A registry
/// creates its table before its first write, so until then it has no nodes.
fn without_table_as_empty<T: Default>(
    result: Result<T, PostgresError>,
) -> Result<T, PostgresError> {
    match result {
        Err(PostgresError::Query {
            source: sqlx::Error::Database(error),
            ..
        }) if error.code().as_deref() == Some(UNDEFINED_TABLE) => Ok(T::default()),
        other => other,
    }
}

/// Returns the running registries, or only `registry` when given. The lock is
/// released before any query runs.
async fn select_registries(
    registries: &Registries,
    registry: Option<&str>,
) -> Vec<Arc<InstanceState>> {
    let registries = registries.read().await;
    match registry {
        Some(id) => registries.get(id).cloned().into_iter().collect(),
        None => registries.values().cloned().collect(),
    }
}

/// Lists one page of registered nodes. Each registry returns at most `limit + 1`
/// rows after the cursor, so the page is complete and the extra row shows whether
/// another page exists.
pub async fn list_nodes(registries: &Registries, query: &ListQuery) -> Result<NodePage, ApiError> {
    let instances = select_registries(registries, query.registry.as_deref()).await;
    let after = query
        .after
        .as_ref()
        .map(|cursor| (cursor.node_id.as_str(), cursor.registry.as_str()));
    let fetch = i64::from(query.limit) + 1;

    let pages = futures::future::join_all(instances.iter().map(|state| {
        state.postgres_sink.list_page(
            query.node_type.as_deref(),
            query.health,
            query.network_id.as_deref(),
            query.deployment_id.as_deref(),
            after,
            fetch,
        )
    }))
    .await;

    let mut candidates = Vec::new();
    for (state, page) in instances.iter().zip(pages) {
        let registry = &state.config.registry_id;
        let nodes = without_table_as_empty(page).map_err(|source| ApiError::Postgres {
            registry: registry.clone(),
            source,
        })?;
        candidates.extend(nodes.into_iter().map(|node| NodeItem {
            registry: registry.clone(),
            node,
        }));
    }
    let (items, continue_token) = merge_page(candidates, query.limit);
    Ok(NodePage {
        items,
        continue_token,
    })
}

/// Sort key of a listed node: its node id, then its registry id.
pub trait PageKey {
    fn page_key(&self) -> (&str, &str);
}

impl PageKey for NodeItem {
    fn page_key(&self) -> (&str, &str) {
        (&self.node.node_id, &self.registry)
    }
}

/// Orders the candidates of every registry by [`PageKey`] and keeps the first
/// `limit`, with the `continue` token after the last one kept. Since every registry
/// sent up to `limit + 1` rows, a candidate beyond `limit` means that another page
/// exists.
pub fn merge_page<T: PageKey>(mut candidates: Vec<T>, limit: u32) -> (Vec<T>, Option<String>) {
    candidates.sort_by(|a, b| a.page_key().cmp(&b.page_key()));

    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = candidates.len() > limit;
    candidates.truncate(limit);
    let continue_token = match candidates.last() {
        Some(last) if more => {
            let (node_id, registry) = last.page_key();
            let cursor = Cursor {
                node_id: node_id.to_owned(),
                registry: registry.to_owned(),
            };
            Some(cursor.encode())
        }
        _ => None,
    };
    (candidates, continue_token)
}

/// Finds the registered node `node_id` in `registry`, or in every running registry.
/// Fails when no registry has it, or when more than one does and none was named.
pub async fn find_node(
    registries: &Registries,
    node_id: &str,
    registry: Option<&str>,
) -> Result<(Arc<InstanceState>, StoredNode), ApiError> {
    let instances = select_registries(registries, registry).await;
    let rows = futures::future::join_all(
        instances
            .iter()
            .map(|state| state.postgres_sink.get(node_id)),
    )
    .await;

    let mut found = Vec::new();
    for (state, row) in instances.into_iter().zip(rows) {
        let row = without_table_as_empty(row).map_err(|source| ApiError::Postgres {
            registry: state.config.registry_id.clone(),
            source,
        })?;
        // A schema may be shared by registries, so the row must be this registry's.
        let registered = row.filter(|node| {
            node.registry_id == state.config.registry_id && node.deregistered_at.is_none()
        });
        if let Some(node) = registered {
            found.push((state, node));
        }
    }

    if found.len() > 1 {
        return Err(ApiError::AmbiguousNode {
            node_id: node_id.to_owned(),
            registries: found
                .iter()
                .map(|(state, _)| state.config.registry_id.clone())
                .collect(),
        });
    }
    found.pop().ok_or_else(|| ApiError::NodeNotFound {
        node_id: node_id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A candidate as `(node_id, registry)`.
    struct Candidate(&'static str, &'static str);

    impl PageKey for Candidate {
        fn page_key(&self) -> (&str, &str) {
            (self.0, self.1)
        }
    }

    fn keys(items: &[Candidate]) -> Vec<(&str, &str)> {
        items.iter().map(PageKey::page_key).collect()
    }

    #[test]
    fn merge_orders_by_node_then_registry() {
        let candidates = vec![
            Candidate("b", "r2"),
            Candidate("a", "r2"),
            Candidate("b", "r1"),
            Candidate("C", "r1"),
        ];
        let (items, continue_token) = merge_page(candidates, 10);
        assert_eq!(
            keys(&items),
            [("C", "r1"), ("a", "r2"), ("b", "r1"), ("b", "r2")]
        );
        assert_eq!(continue_token, None);
    }

    #[test]
    fn merge_cuts_at_limit_with_cursor() {
        let candidates = vec![
            Candidate("c", "r1"),
            Candidate("a", "r1"),
            Candidate("b", "r2"),
        ];
        let (items, continue_token) = merge_page(candidates, 2);
        assert_eq!(keys(&items), [("a", "r1"), ("b", "r2")]);
        let token = continue_token.expect("a continue token");
        assert_eq!(
            Cursor::decode(&token).unwrap(),
            Cursor {
                node_id: "b".to_owned(),
                registry: "r2".to_owned()
            }
        );
    }

    #[test]
    fn merge_exactly_limit_is_last_page() {
        let candidates = vec![Candidate("a", "r1"), Candidate("b", "r1")];
        let (items, continue_token) = merge_page(candidates, 2);
        assert_eq!(items.len(), 2);
        assert_eq!(continue_token, None);
    }
}
