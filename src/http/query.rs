//! Query strings of the node API (pure: no I/O). Unknown, repeated and empty
//! parameters are rejected, so a misspelt filter never silently matches everything.

use std::str::FromStr;

use crate::node::HealthStatus;

/// Page size when the request sets no `limit`.
pub const DEFAULT_LIMIT: u32 = 100;

/// Largest accepted `limit`.
pub const MAX_LIMIT: u32 = 1000;

const LIST_PARAMETERS: [&str; 7] = [
    "registry",
    "type",
    "health",
    "network_id",
    "deployment_id",
    "limit",
    "continue",
];

const NODE_PARAMETERS: [&str; 1] = ["registry"];

/// A query string the node API rejects, with the parameter and value at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("unknown query parameter {name:?}: expected one of {expected}")]
    Unknown { name: String, expected: String },
    #[error("query parameter {name:?} is given more than once")]
    Repeated { name: String },
    #[error("query parameter {name:?} is empty")]
    Empty { name: String },
    #[error(
        "invalid value {value:?} for query parameter \"health\": expected healthy, degraded, unhealthy, critical or recovering"
    )]
    InvalidHealth { value: String },
    #[error(
        "invalid value {value:?} for query parameter \"limit\": expected an integer from 1 to {MAX_LIMIT}"
    )]
    InvalidLimit { value: String },
    #[error(
        "invalid value {value:?} for query parameter \"continue\": pass the \"continue\" value of the previous page unchanged"
    )]
    InvalidContinue { value: String },
}

/// Position after the last node of a page: nodes are ordered by node id, then by
/// registry id, both in byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub node_id: String,
    pub registry: String,
}

impl Cursor {
    /// Encodes the cursor as the opaque `continue` token: the hex digits of the
    /// JSON array `[node_id, registry]`.
    pub fn encode(&self) -> String {
        let json = serde_json::json!([self.node_id, self.registry]).to_string();
        json.bytes().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Decodes a token made by [`Cursor::encode`].
    pub fn decode(token: &str) -> Result<Cursor, QueryError> {
        let invalid = || QueryError::InvalidContinue {
            value: token.to_owned(),
        };
        if !token.len().is_multiple_of(2) || !token.is_ascii() {
            return Err(invalid());
        }

        let bytes = (0..token.len())
            .step_by(2)
            .map(|start| u8::from_str_radix(&token[start..start + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| invalid())?;
        let (node_id, registry): (String, String) =
            serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        Ok(Cursor { node_id, registry })
    }
}

/// Filters and page of `GET /api/v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub registry: Option<String>,
    pub node_type: Option<String>,
    pub health: Option<HealthStatus>,
    pub network_id: Option<String>,
    pub deployment_id: Option<String>,
    pub limit: u32,
    pub after: Option<Cursor>,
}

/// Parses the query string of `GET /api/v1/nodes`.
pub fn parse_list_query(raw: Option<&str>) -> Result<ListQuery, QueryError> {
    let pairs = parse_pairs(raw, &LIST_PARAMETERS)?;
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };

    let health = match value("health") {
        Some(text) => Some(
            HealthStatus::from_str(&text).map_err(|_| QueryError::InvalidHealth { value: text })?,
        ),
        None => None,
    };
    let limit = match value("limit") {
        Some(text) => match text.parse::<u32>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
            _ => return Err(QueryError::InvalidLimit { value: text }),
        },
        None => DEFAULT_LIMIT,
    };
    let after = match value("continue") {
        Some(token) => Some(Cursor::decode(&token)?),
        None => None,
    };

    Ok(ListQuery {
        registry: value("registry"),
        node_type: value("type"),
        health,
        network_id: value("network_id"),
        deployment_id: value("deployment_id"),
        limit,
        after,
    })
}

/// Parses the query string of `GET` and `DELETE /api/v1/nodes/{id}`, which takes
/// only `registry`, and returns that registry id.
pub fn parse_node_query(raw: Option<&str>) -> Result<Option<String>, QueryError> {
    let pairs = parse_pairs(raw, &NODE_PARAMETERS)?;
    Ok(pairs.into_iter().next().map(|(_, value)| value))
}

/// Decodes `application/x-www-form-urlencoded` pairs, rejecting names outside
/// `allowed`, repeated names and empty values.
fn parse_pairs(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, QueryError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let Some(raw) = raw else {
        return Ok(pairs);
    };

    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            return Err(QueryError::Unknown {
                name: name.into_owned(),
                expected: allowed.join(", "),
            });
        }
        if pairs.iter().any(|(key, _)| *key == name) {
            return Err(QueryError::Repeated {
                name: name.into_owned(),
            });
        }
        if value.is_empty() {
            return Err(QueryError::Empty {
                name: name.into_owned(),
            });
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_defaults() {
        let query = parse_list_query(None).unwrap();
        assert_eq!(query.limit, DEFAULT_LIMIT);
        assert_eq!(query.registry, None);
        assert_eq!(query.health, None);
        assert_eq!(query.after, None);
    }

    #[test]
    fn list_every_filter() {
        let query = parse_list_query(Some(
            "registry=r1&type=effect&health=Degraded&network_id=net&deployment_id=blue&limit=5",
        ))
        .unwrap();
        assert_eq!(query.registry.as_deref(), Some("r1"));
        assert_eq!(query.node_type.as_deref(), Some("effect"));
        assert_eq!(query.health, Some(HealthStatus::Degraded));
        assert_eq!(query.network_id.as_deref(), Some("net"));
        assert_eq!(query.deployment_id.as_deref(), Some("blue"));
        assert_eq!(query.limit, 5);
    }

    #[test]
    fn list_percent_decoded() {
        let query = parse_list_query(Some("deployment_id=a%2Fb+c")).unwrap();
        assert_eq!(query.deployment_id.as_deref(), Some("a/b c"));
    }

    #[test]
    fn unknown_parameter_named() {
        let error = parse_list_query(Some("type=effect&colour=blue")).unwrap_err();
        assert!(matches!(&error, QueryError::Unknown { name, .. } if name == "colour"));
        assert!(error.to_string().contains("\"colour\""));
    }

    #[test]
    fn repeated_parameter_rejected() {
        let error = parse_list_query(Some("type=a&type=b")).unwrap_err();
        assert_eq!(
            error,
            QueryError::Repeated {
                name: "type".to_owned()
            }
        );
    }

    #[test]
    fn empty_parameter_rejected() {
        let error = parse_list_query(Some("health=")).unwrap_err();
        assert_eq!(
            error,
            QueryError::Empty {
                name: "health".to_owned()
            }
        );
    }

    #[test]
    fn bad_health_rejected() {
        let error = parse_list_query(Some("health=sleepy")).unwrap_err();
        assert_eq!(
            error,
            QueryError::InvalidHealth {
                value: "sleepy".to_owned()
            }
        );
    }

    #[test]
    fn bad_limits_rejected() {
        for value in ["0", "1001", "-1", "ten", "1.5"] {
            let error = parse_list_query(Some(&format!("limit={value}"))).unwrap_err();
            assert_eq!(
                error,
                QueryError::InvalidLimit {
                    value: value.to_owned()
                },
                "{value}"
            );
        }
    }

    #[test]
    fn limit_bounds_accepted() {
        assert_eq!(parse_list_query(Some("limit=1")).unwrap().limit, 1);
        assert_eq!(parse_list_query(Some("limit=1000")).unwrap().limit, 1000);
    }

    #[test]
    fn cursor_round_trip() {
        let cursor = Cursor {
            node_id: "node-1".to_owned(),
            registry: "reg\"a".to_owned(),
        };
        let token = cursor.encode();
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        let query = parse_list_query(Some(&format!("continue={token}"))).unwrap();
        assert_eq!(query.after, Some(cursor));
    }

    #[test]
    fn bad_cursors_rejected() {
        for token in ["xyz", "abc", "7b7d", "é1"] {
            assert_eq!(
                Cursor::decode(token),
                Err(QueryError::InvalidContinue {
                    value: token.to_owned()
                }),
                "{token}"
            );
        }
    }

    #[test]
    fn node_query_takes_registry_only() {
        assert_eq!(parse_node_query(None).unwrap(), None);
        assert_eq!(
            parse_node_query(Some("registry=r1")).unwrap().as_deref(),
            Some("r1")
        );
        assert!(matches!(
            parse_node_query(Some("type=effect")),
            Err(QueryError::Unknown { .. })
        ));
    }
}
