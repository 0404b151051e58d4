//! Errors of the Consul adapter.

use std::time::Duration;

/// Maximum number of bytes of a Consul response body kept in an error.
const MAX_ERROR_BODY_BYTES: usize = 512;

/// A failed Consul operation. URLs in messages never carry the ACL token, which is sent
/// only in the `X-Consul-Token` header.
#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    #[error("invalid Consul address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: String },

    #[error("invalid Consul ACL token: it contains characters not allowed in an HTTP header")]
    InvalidToken,

    #[error("failed to build the Consul HTTP client: {detail}")]
    ClientBuild { detail: String },

    #[error(
        "failed to connect to Consul for {method} {url}: {detail}; check the Consul address and that Consul is running"
    )]
    Connect {
        method: String,
        url: String,
        detail: String,
    },

    #[error("Consul request {method} {url} timed out after {timeout:?}")]
    Timeout {
        method: String,
        url: String,
        timeout: Duration,
    },

    #[error("Consul request {method} {url} failed: {detail}")]
    Transport {
        method: String,
        url: String,
        detail: String,
    },

    #[error("Consul returned HTTP {status} for {method} {url}: {body}")]
    Status {
        method: String,
        url: String,
        status: u16,
        /// Response body, cut to about 512 bytes.
        body: String,
    },

    #[error(
        "Consul has no service {service_id:?} on node {node:?} to attach the check to; register the service again"
    )]
    ServiceNotFound {
        node: String,
        service_id: String,
        /// Consul's response body, cut to about 512 bytes.
        body: String,
    },

    #[error("invalid response body from Consul for {method} {url}: {detail}")]
    Decode {
        method: String,
        url: String,
        detail: String,
    },
}

impl ConsulError {
    /// Returns a short stable label for metrics and Event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            ConsulError::InvalidAddress { .. } => "invalid_address",
            ConsulError::InvalidToken => "invalid_token",
            ConsulError::ClientBuild { .. } => "client_build",
            ConsulError::Connect { .. } => "connect",
            ConsulError::Timeout { .. } => "timeout",
            ConsulError::Transport { .. } => "transport",
            ConsulError::Status { status, .. } if (400..500).contains(status) => "http_4xx",
            ConsulError::Status { status, .. } if (500..600).contains(status) => "http_5xx",
            ConsulError::Status { .. } => "http_status",
            ConsulError::ServiceNotFound { .. } => "service_not_found",
            ConsulError::Decode { .. } => "decode",
        }
    }

    /// Tells whether retrying the same request may succeed: true for connection failures,
    /// timeouts, HTTP 5xx and HTTP 429 (rate limited), false for every other error.
    ///
    /// NOTE: Consul 1.14 returns HTTP 500 for many invalid catalog writes (for example a
    /// service address of `0.0.0.0`), so those count as transient although a retry repeats
    /// the failure. The service builder leaves out the invalid values it can detect:
    /// unspecified addresses and meta over Consul's limits.
    pub fn is_transient(&self) -> bool {
        match self {
            ConsulError::Connect { .. }
            | ConsulError::Timeout { .. }
            | ConsulError::Transport { .. } => true,
            ConsulError::Status { status, .. } => *status >= 500 || *status == 429,
            ConsulError::InvalidAddress { .. }
            | ConsulError::InvalidToken
            | ConsulError::ClientBuild { .. }
            | ConsulError::ServiceNotFound { .. }
            | ConsulError::Decode { .. } => false,
        }
    }

    /// Tells whether the service or check the request acts on does not exist: HTTP 404 (for
    /// example a TTL update of a check the agent does not have), or a catalog check update
    /// for a service missing from the node.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ConsulError::Status { status: 404, .. } | ConsulError::ServiceNotFound { .. }
        )
    }

    /// Classifies a reqwest failure of `method url`.
    pub(crate) fn from_request(
        method: &reqwest::Method,
        url: &url::Url,
        timeout: Duration,
        error: reqwest::Error,
    ) -> Self {
        let method = method.to_string();
        let url = url.to_string();
        if error.is_timeout() {
            ConsulError::Timeout {
                method,
                url,
                timeout,
            }
        } else if error.is_connect() {
            ConsulError::Connect {
                method,
                url,
                detail: error_chain(&error.without_url()),
            }
        } else {
            ConsulError::Transport {
                method,
                url,
                detail: error_chain(&error.without_url()),
            }
        }
    }

    pub(crate) fn from_status(
        method: &reqwest::Method,
        url: &url::Url,
        status: reqwest::StatusCode,
        body: &[u8],
    ) -> Self {
        ConsulError::Status {
            method: method.to_string(),
            url: url.to_string(),
            status: status.as_u16(),
            body: truncate_body(body),
        }
    }
}

/// Joins an error and its sources into one line, so the root cause (for example
/// "Connection refused") shows in the message.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Returns the body as text, trimmed and cut at a character boundary near 512 bytes.
fn truncate_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() <= MAX_ERROR_BODY_BYTES {
        return text.to_owned();
    }

    let mut end = MAX_ERROR_BODY_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in total)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_error(status: u16) -> ConsulError {
        ConsulError::Status {
            method: "PUT".to_owned(),
            url: "http://127.0.0.1:8500/v1/catalog/register".to_owned(),
            status,
            body: String::new(),
        }
    }

    #[test]
    fn status_labels_by_class() {
        assert_eq!(status_error(404).label(), "http_4xx");
        assert_eq!(status_error(500).label(), "http_5xx");
        assert_eq!(status_error(302).label(), "http_status");
    }

    #[test]
    fn transient_statuses() {
        assert!(status_error(500).is_transient());
        assert!(status_error(503).is_transient());
        assert!(status_error(429).is_transient());
        assert!(!status_error(400).is_transient());
        assert!(!status_error(403).is_transient());
        assert!(!status_error(404).is_transient());
    }

    #[test]
    fn connection_failures_transient() {
        let timeout = ConsulError::Timeout {
            method: "GET".to_owned(),
            url: "http://127.0.0.1:1/v1/status/leader".to_owned(),
            timeout: Duration::from_secs(5),
        };
        assert!(timeout.is_transient());
        assert_eq!(timeout.label(), "timeout");
        assert!(!ConsulError::InvalidToken.is_transient());
    }

    #[test]
    fn not_found_for_404_and_missing_service() {
        assert!(status_error(404).is_not_found());
        assert!(!status_error(403).is_not_found());

        let missing = ConsulError::ServiceNotFound {
            node: "registry-operator-prod".to_owned(),
            service_id: "a".to_owned(),
            body: "Unknown service ID 'a' for check ID 'registry:a'".to_owned(),
        };
        assert!(missing.is_not_found());
        assert!(!missing.is_transient());
        assert_eq!(missing.label(), "service_not_found");
    }

    #[test]
    fn short_body_kept_whole() {
        assert_eq!(
            truncate_body(b"  Unknown service ID \"x\"\n"),
            "Unknown service ID \"x\""
        );
    }

    #[test]
    fn long_body_cut_at_char_boundary() {
        // 511 ASCII bytes then a two-byte character that straddles the 512-byte limit.
        let body = format!("{}é{}", "a".repeat(511), "b".repeat(100));
        let cut = truncate_body(body.as_bytes());
        assert_eq!(cut, format!("{}... (613 bytes in total)", "a".repeat(511)));
    }

    #[test]
    fn status_message_names_request() {
        let error = ConsulError::Status {
            method: "PUT".to_owned(),
            url: "http://127.0.0.1:8500/v1/agent/check/update/registry:x".to_owned(),
            status: 404,
            body: "Unknown check ID".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "Consul returned HTTP 404 for PUT http://127.0.0.1:8500/v1/agent/check/update/registry:x: Unknown check ID"
        );
    }
}
