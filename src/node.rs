//! The registration record of one node, as both backends store it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Health a node reports in its heartbeats, or that the liveness sweep assigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    #[default]
    Healthy,
    Degraded,
    Unhealthy,
    Critical,
    Recovering,
}

impl HealthStatus {
    pub const ALL: [HealthStatus; 5] = [
        HealthStatus::Healthy,
        HealthStatus::Degraded,
        HealthStatus::Unhealthy,
        HealthStatus::Critical,
        HealthStatus::Recovering,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Critical => "critical",
            HealthStatus::Recovering => "recovering",
        }
    }

    /// Consul check status for this health: `passing`, `warning` or `critical`.
    pub fn consul_check_status(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "passing",
            HealthStatus::Degraded | HealthStatus::Recovering => "warning",
            HealthStatus::Unhealthy | HealthStatus::Critical => "critical",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a health status string outside the five known values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown health status {0:?}: expected healthy, degraded, unhealthy, critical or recovering"
)]
pub struct UnknownHealthStatus(pub String);

impl FromStr for HealthStatus {
    type Err = UnknownHealthStatus;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        HealthStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| UnknownHealthStatus(value.to_owned()))
    }
}

/// A node's registration: one row of `node_registrations` and one Consul service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub node_type: String,
    pub node_role: Option<String>,
    pub node_version: Option<String>,
    /// JSON object as announced.
    pub capabilities: serde_json::Value,
    /// Endpoint name to URL, each URL already checked to parse.
    pub endpoints: BTreeMap<String, String>,
    /// JSON object as announced.
    pub metadata: serde_json::Value,
    pub health_status: HealthStatus,
    pub network_id: Option<String>,
    pub deployment_id: Option<String>,
    pub epoch: Option<i64>,
    /// Id of the introspection event this record was built from.
    pub event_id: Uuid,
    /// `event_timestamp` of that event; an event with an older timestamp never replaces the record.
    pub event_timestamp: DateTime<Utc>,
}

impl NodeRecord {
    /// URL of the `health` endpoint, if the node announced one.
    pub fn health_endpoint(&self) -> Option<&str> {
        self.endpoints.get("health").map(String::as_str)
    }
}
