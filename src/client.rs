//! `registry-operator nodes`: a client of the node API that prints nodes as a table or
//! as JSON.

use std::io::Write;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use crate::cli::{NodesArgs, NodesCommand, NodesGetArgs, NodesListArgs, OutputFormat};
use crate::http::MAX_LIMIT;

/// Maximum number of bytes of an unexpected response body kept in an error.
const MAX_BODY_BYTES: usize = 512;

/// A failed `nodes` command.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL {server:?}: {reason}")]
    InvalidServer { server: String, reason: String },

    #[error(
        "cannot reach the registry API at {server}: {detail}; check --server or REGISTRY_OPERATOR_SERVER and that registry-operator is running"
    )]
    Unreachable { server: String, detail: String },

    #[error("node {node_id} not found{}", registry.as_ref().map(|id| format!(" in registry {id}")).unwrap_or_default())]
    NodeNotFound {
        node_id: String,
        registry: Option<String>,
    },

    #[error("the registry API returned {status} for {url}: {message}")]
    Api {
        url: String,
        status: StatusCode,
        message: String,
    },

    #[error("the registry API returned an unexpected response for {url}: {detail}")]
    InvalidResponse { url: String, detail: String },

    #[error("writing the output failed: {0}")]
    Output(#[from] std::io::Error),
}

/// Filters of `nodes list`, passed to the API as query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFilters {
    pub registry: Option<String>,
    pub node_type: Option<String>,
    pub health: Option<String>,
    pub network_id: Option<String>,
    pub deployment_id: Option<String>,
}

impl NodeFilters {
    fn pairs(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("registry", self.registry.as_deref()),
            ("type", self.node_type.as_deref()),
            ("health", self.health.as_deref()),
            ("network_id", self.network_id.as_deref()),
            ("deployment_id", self.deployment_id.as_deref()),
        ]
    }
}

/// Nodes of one or more pages, and whether more nodes match.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub items: Vec<Value>,
    pub more: bool,
}

/// Client of the node API of one server.
pub struct NodesClient {
    server: Url,
    http: reqwest::Client,
}

impl NodesClient {
    pub fn new(server: &str) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidServer {
            server: server.to_owned(),
            reason,
        };
        let mut url = Url::parse(server).map_err(|error| invalid(error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("expected an http or https URL".to_owned()));
        }
        // A base path such as `/registry` must end in `/`, or joining replaces it.
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }

        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| invalid(error.to_string()))?;
        Ok(Self { server: url, http })
    }

    fn nodes_url(&self) -> Url {
        let mut url = self.server.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["api", "v1", "nodes"]);
        }
        url
    }

    /// Lists matching nodes page by page until `max` nodes (all when `None`).
    pub async fn list(
        &self,
        filters: &NodeFilters,
        max: Option<u32>,
    ) -> Result<Listing, ClientError> {
        let mut items = Vec::new();
        let mut continue_token: Option<String> = None;
        loop {
            let remaining = max.map_or(MAX_LIMIT, |max| {
                max.saturating_sub(u32::try_from(items.len()).unwrap_or(u32::MAX))
            });
            if remaining == 0 {
                return Ok(Listing {
                    items,
                    more: continue_token.is_some(),
                });
            }

            let mut url = self.nodes_url();
            {
                let mut query = url.query_pairs_mut();
                for (name, value) in filters.pairs() {
                    if let Some(value) = value {
                        query.append_pair(name, value);
                    }
                }
                query.append_pair("limit", &remaining.min(MAX_LIMIT).to_string());
                if let Some(token) = &continue_token {
                    query.append_pair("continue", token);
                }
            }

            let page = self
                .get_json(url.clone())
                .await?
                .map_err(|(status, message)| ClientError::Api {
                    url: url.to_string(),
                    status,
                    message,
                })?;
            let invalid = |detail: &str| ClientError::InvalidResponse {
                url: url.to_string(),
                detail: detail.to_owned(),
            };
            let Some(page_items) = page.get("items").and_then(Value::as_array) else {
                return Err(invalid("no \"items\" array"));
            };
            items.extend(page_items.iter().cloned());
            continue_token = match page.get("continue") {
                Some(Value::String(token)) => Some(token.clone()),
                Some(Value::Null) | None => None,
                Some(_) => return Err(invalid("\"continue\" is not a string")),
            };
            if continue_token.is_none() {
                return Ok(Listing { items, more: false });
            }
        }
    }

    /// Returns one node, as the API serves it.
    pub async fn get(&self, node_id: &str, registry: Option<&str>) -> Result<Value, ClientError> {
        let mut url = self.nodes_url();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(node_id);
        }
        if let Some(registry) = registry {
            url.query_pairs_mut().append_pair("registry", registry);
        }

        match self.get_json(url.clone()).await? {
            Ok(node) => Ok(node),
            Err((StatusCode::NOT_FOUND, message)) if !message.starts_with("no route") => {
                Err(ClientError::NodeNotFound {
                    node_id: node_id.to_owned(),
                    registry: registry.map(str::to_owned),
                })
            }
            Err((status, message)) => Err(ClientError::Api {
                url: url.to_string(),
                status,
                message,
            }),
        }
    }

    /// Sends `GET url`. Returns the JSON body of a success, or the status and the
    /// error message of a failure response.
    async fn get_json(&self, url: Url) -> Result<Result<Value, (StatusCode, String)>, ClientError> {
        let response =
            self.http
                .get(url.clone())
                .send()
                .await
                .map_err(|error| ClientError::Unreachable {
                    server: self.server.to_string(),
                    detail: innermost_cause(&error),
                })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| ClientError::Unreachable {
                server: self.server.to_string(),
                detail: innermost_cause(&error),
            })?;

        if status.is_success() {
            let value =
                serde_json::from_slice(&body).map_err(|error| ClientError::InvalidResponse {
                    url: url.to_string(),
                    detail: format!("invalid JSON: {error}"),
                })?;
            return Ok(Ok(value));
        }
        Ok(Err((status, error_message(&body))))
    }
}

/// Returns the `error` field of a JSON error body, else the body cut to about 512 bytes.
fn error_message(body: &[u8]) -> String {
    if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body)
        && let Some(Value::String(message)) = object.get("error")
    {
        return message.clone();
    }
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(MAX_BODY_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_owned()
}

/// Returns the message of the deepest source, such as "Connection refused (os error
/// 111)", which is more specific than reqwest's "error sending request".
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

const COLUMNS: [&str; 6] = [
    "NODE_ID",
    "TYPE",
    "HEALTH",
    "DEPLOYMENT",
    "EPOCH",
    "REGISTRY",
];

/// Returns the table cells of one node, `<none>` for absent values.
fn row(node: &Value) -> [String; 6] {
    let text = |field: &str| match node.get(field) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => "<none>".to_owned(),
    };
    [
        text("node_id"),
        text("node_type"),
        text("health_status"),
        text("deployment_id"),
        text("epoch"),
        text("registry"),
    ]
}

/// Renders nodes as a table with a header and columns aligned by three spaces.
pub fn render_table(nodes: &[Value]) -> String {
    let rows: Vec<[String; 6]> = nodes.iter().map(row).collect();
    let mut widths = COLUMNS.map(|name| name.chars().count());
    for cells in &rows {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut output = String::new();
    let header = COLUMNS.map(str::to_owned);
    for cells in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == cells.len() {
                line.push_str(cell);
            } else {
                let padding = widths[index] - cell.chars().count() + 3;
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', padding));
            }
        }
        output.push_str(line.trim_end());
        output.push('\n');
    }
    output
}

fn render_json(value: &Value) -> String {
    // serde_json fails only on map keys that are not strings, which a Value never has.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

async fn list(args: NodesListArgs) -> Result<(), ClientError> {
    let client = NodesClient::new(&args.server.server)?;
    let filters = NodeFilters {
        registry: args.registry,
        node_type: args.node_type,
        health: args.health.map(|health| health.as_str().to_owned()),
        network_id: args.network_id,
        deployment_id: args.deployment_id,
    };
    let listing = client.list(&filters, args.limit).await?;

    let mut stdout = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            stdout.write_all(render_json(&Value::from(listing.items)).as_bytes())?
        }
        OutputFormat::Table if listing.items.is_empty() => eprintln!("No nodes found."),
        OutputFormat::Table => stdout.write_all(render_table(&listing.items).as_bytes())?,
    }
    if listing.more {
        eprintln!("More nodes match: raise --limit to list them.");
    }
    Ok(())
}

async fn get(args: NodesGetArgs) -> Result<(), ClientError> {
    let client = NodesClient::new(&args.server.server)?;
    let node = client.get(&args.node_id, args.registry.as_deref()).await?;

    let output = match args.output {
        OutputFormat::Json => render_json(&node),
        OutputFormat::Table => render_table(std::slice::from_ref(&node)),
    };
    std::io::stdout().lock().write_all(output.as_bytes())?;
    Ok(())
}

/// Runs `nodes list` or `nodes get`.
pub async fn run(args: NodesArgs) -> Result<(), ClientError> {
    match args.command {
        NodesCommand::List(args) => list(args).await,
        NodesCommand::Get(args) => get(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_aligns_columns() {
        let nodes = [
            json!({"node_id": "orchestrator-1", "node_type": "orchestrator", "health_status": "healthy",
                   "deployment_id": "blue", "epoch": 3, "registry": "r1"}),
            json!({"node_id": "e2", "node_type": "effect", "health_status": "critical",
                   "deployment_id": null, "registry": "registry-two"}),
        ];
        assert_eq!(
            render_table(&nodes),
            "NODE_ID          TYPE           HEALTH     DEPLOYMENT   EPOCH    REGISTRY\n\
             orchestrator-1   orchestrator   healthy    blue         3        r1\n\
             e2               effect         critical   <none>       <none>   registry-two\n"
        );
    }

    #[test]
    fn empty_table_is_header() {
        assert_eq!(
            render_table(&[]),
            "NODE_ID   TYPE   HEALTH   DEPLOYMENT   EPOCH   REGISTRY\n"
        );
    }

    #[test]
    fn server_path_kept() {
        let client = NodesClient::new("http://127.0.0.1:9/prefix").unwrap();
        assert_eq!(
            client.nodes_url().as_str(),
            "http://127.0.0.1:9/prefix/api/v1/nodes"
        );
        let client = NodesClient::new("http://127.0.0.1:9").unwrap();
        assert_eq!(
            client.nodes_url().as_str(),
            "http://127.0.0.1:9/api/v1/nodes"
        );
    }

    #[test]
    fn server_must_be_http() {
        assert!(matches!(
            NodesClient::new("ftp://127.0.0.1"),
            Err(ClientError::InvalidServer { .. })
        ));
        assert!(matches!(
            NodesClient::new("127.0.0.1:8080"),
            Err(ClientError::InvalidServer { .. })
        ));
    }

    #[test]
    fn error_message_from_json_or_text() {
        assert_eq!(error_message(br#"{"error":"bad limit"}"#), "bad limit");
        assert_eq!(error_message(b"plain failure\n"), "plain failure");
    }

    #[test]
    fn not_found_message() {
        let error = ClientError::NodeNotFound {
            node_id: "n1".to_owned(),
            registry: None,
        };
        assert_eq!(error.to_string(), "node n1 not found");
        let error = ClientError::NodeNotFound {
            node_id: "n1".to_owned(),
            registry: Some("r1".to_owned()),
        };
        assert_eq!(error.to_string(), "node n1 not found in registry r1");
    }
}
