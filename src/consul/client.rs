//! HTTP client of the Consul API: connection settings, request sending and error mapping.
//! The catalog and agent endpoints live in `catalog.rs` and `agent.rs`.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::error::{ConsulError, error_chain};

/// Header that carries the ACL token.
const TOKEN_HEADER: &str = "X-Consul-Token";

/// Client of one Consul agent or server over HTTP.
#[derive(Clone)]
pub struct ConsulClient {
    http: reqwest::Client,
    base_url: Url,
    datacenter: Option<String>,
    timeout: Duration,
    has_token: bool,
}

impl fmt::Debug for ConsulClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulClient")
            .field("base_url", &self.base_url.as_str())
            .field("datacenter", &self.datacenter)
            .field("timeout", &self.timeout)
            .field("has_token", &self.has_token)
            .finish()
    }
}

/// Whether a request names the datacenter with `?dc=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Catalog, health and status endpoints, which serve any datacenter.
    Datacenter,
    /// Agent endpoints, which act on the contacted agent only.
    Agent,
}

impl ConsulClient {
    /// Creates a client of the Consul HTTP API at `address` (`http://host:8500`, or
    /// `host:8500` meaning `http://`). `timeout` bounds each request, connecting included.
    pub fn new(
        address: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, ConsulError> {
        let base_url = parse_address(address)?;

        let token = token.filter(|token| !token.is_empty());
        let has_token = token.is_some();
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&token).map_err(|_| ConsulError::InvalidToken)?;
            value.set_sensitive(true);
            headers.insert(TOKEN_HEADER, value);
        }

        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|error| ConsulError::ClientBuild {
                detail: error_chain(&error),
            })?;

        Ok(Self {
            http,
            base_url,
            datacenter: None,
            timeout,
            has_token,
        })
    }

    /// Sets the datacenter sent with catalog, health and status requests. `None` or an
    /// empty name means the datacenter of the contacted agent.
    pub fn with_datacenter(mut self, datacenter: Option<String>) -> Self {
        self.datacenter = datacenter.filter(|name| !name.is_empty());
        self
    }

    /// Base URL of the Consul HTTP API.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub fn datacenter(&self) -> Option<&str> {
        self.datacenter.as_deref()
    }

    /// Returns the address of the Raft leader (`GET /v1/status/leader`), or `None` while
    /// the cluster has no leader.
    pub async fn leader(&self) -> Result<Option<String>, ConsulError> {
        let url = self.endpoint(&["status", "leader"], Scope::Datacenter)?;
        let leader: String = self.get_json(url).await?;
        Ok(Some(leader).filter(|address| !address.is_empty()))
    }

    /// Builds the URL of `/v1/<segments>`, percent-encoding each segment, so a segment such
    /// as a node id may contain `/`, `?` or `#`.
    pub(crate) fn endpoint(&self, segments: &[&str], scope: Scope) -> Result<Url, ConsulError> {
        let mut url = self.base_url.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| ConsulError::InvalidAddress {
                    address: self.base_url.to_string(),
                    reason: "the URL cannot have a path".to_owned(),
                })?;
            path.pop_if_empty().push("v1").extend(segments);
        }

        if scope == Scope::Datacenter
            && let Some(datacenter) = &self.datacenter
        {
            url.query_pairs_mut().append_pair("dc", datacenter);
        }
        Ok(url)
    }

    /// Sends a GET request and decodes the JSON response body.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, ConsulError> {
        let body = self.send(Method::GET, url.clone(), None::<&()>).await?;
        serde_json::from_slice(&body).map_err(|error| ConsulError::Decode {
            method: Method::GET.to_string(),
            url: url.to_string(),
            detail: error.to_string(),
        })
    }

    /// Sends a PUT request with an optional JSON body and ignores the response body.
    pub(crate) async fn put<B: Serialize + ?Sized>(
        &self,
        url: Url,
        body: Option<&B>,
    ) -> Result<(), ConsulError> {
        self.send(Method::PUT, url, body).await.map(drop)
    }

    /// Sends a request and returns the body of a 2xx response. Any other status becomes
    /// `ConsulError::Status` with the start of the body.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<Vec<u8>, ConsulError> {
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }

        tracing::trace!(%method, %url, "sending Consul request");
        let response = request
            .send()
            .await
            .map_err(|error| ConsulError::from_request(&method, &url, self.timeout, error))?;

        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| ConsulError::from_request(&method, &url, self.timeout, error))?;

        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(ConsulError::from_status(&method, &url, status, &body))
        }
    }
}

/// Treats HTTP 404 as success, for deregistrations of something already gone.
pub(crate) fn ignore_not_found(result: Result<(), ConsulError>) -> Result<(), ConsulError> {
    match result {
        Err(ConsulError::Status { status, .. }) if status == StatusCode::NOT_FOUND.as_u16() => {
            Ok(())
        }
        other => other,
    }
}

/// Parses the Consul address into a base URL with an `http` or `https` scheme.
fn parse_address(address: &str) -> Result<Url, ConsulError> {
    let trimmed = address.trim();
    let invalid = |reason: &str| ConsulError::InvalidAddress {
        address: trimmed.to_owned(),
        reason: reason.to_owned(),
    };

    if trimmed.is_empty() {
        return Err(invalid("the address is empty"));
    }

    // Like the Consul CLI's CONSUL_HTTP_ADDR, an address without a scheme means http.
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };

    let url = Url::parse(&with_scheme).map_err(|error| invalid(&error.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid("the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // The message shows the address without the credentials, so it never echoes a password.
        let mut redacted = url.clone();
        let _ = redacted.set_password(None);
        let _ = redacted.set_username("");
        return Err(ConsulError::InvalidAddress {
            address: redacted.to_string(),
            reason: "user credentials in the address are not supported; pass the ACL token instead"
                .to_owned(),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("the address must not have a query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(address: &str) -> ConsulClient {
        ConsulClient::new(address, None, Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn address_without_scheme_means_http() {
        assert_eq!(
            client("127.0.0.1:8500").base_url().as_str(),
            "http://127.0.0.1:8500/"
        );
    }

    #[test]
    fn address_scheme_checked() {
        let error = ConsulClient::new("ftp://127.0.0.1", None, Duration::from_secs(5)).unwrap_err();
        assert_eq!(error.label(), "invalid_address");
        assert_eq!(
            error.to_string(),
            "invalid Consul address \"ftp://127.0.0.1\": the scheme must be http or https"
        );
    }

    #[test]
    fn empty_address_rejected() {
        let error = ConsulClient::new(" ", None, Duration::from_secs(5)).unwrap_err();
        assert_eq!(error.label(), "invalid_address");
    }

    #[test]
    fn address_credentials_not_echoed() {
        let error = ConsulClient::new(
            "http://user:hunter2@127.0.0.1:8500",
            None,
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(error.label(), "invalid_address");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn endpoint_encodes_segments() {
        let url = client("http://127.0.0.1:8500")
            .endpoint(
                &["agent", "service", "deregister", "a b/c?d#e:f"],
                Scope::Agent,
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8500/v1/agent/service/deregister/a%20b%2Fc%3Fd%23e:f"
        );
    }

    #[test]
    fn endpoint_keeps_base_path() {
        let url = client("https://consul.example.internal/prefix/")
            .endpoint(&["status", "leader"], Scope::Datacenter)
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://consul.example.internal/prefix/v1/status/leader"
        );
    }

    #[test]
    fn datacenter_only_on_datacenter_scope() {
        let client = client("http://127.0.0.1:8500").with_datacenter(Some("dc 2".to_owned()));

        let catalog = client
            .endpoint(&["catalog", "register"], Scope::Datacenter)
            .unwrap();
        assert_eq!(
            catalog.as_str(),
            "http://127.0.0.1:8500/v1/catalog/register?dc=dc+2"
        );

        let agent = client
            .endpoint(&["agent", "services"], Scope::Agent)
            .unwrap();
        assert_eq!(agent.as_str(), "http://127.0.0.1:8500/v1/agent/services");
    }

    #[test]
    fn empty_datacenter_ignored() {
        let client = client("http://127.0.0.1:8500").with_datacenter(Some(String::new()));
        assert_eq!(client.datacenter(), None);
    }

    #[test]
    fn debug_hides_token() {
        let client = ConsulClient::new(
            "http://127.0.0.1:8500",
            Some("secret-token-value".to_owned()),
            Duration::from_secs(5),
        )
        .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("secret-token-value"), "{debug}");
        assert!(debug.contains("has_token: true"), "{debug}");
    }

    #[test]
    fn token_with_newline_rejected() {
        let error = ConsulClient::new(
            "http://127.0.0.1:8500",
            Some("secret\nvalue".to_owned()),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(error.label(), "invalid_token");
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn not_found_ignored_other_errors_kept() {
        let status = |status: u16| ConsulError::Status {
            method: "PUT".to_owned(),
            url: "http://127.0.0.1:8500/v1/agent/service/deregister/x".to_owned(),
            status,
            body: String::new(),
        };
        assert!(ignore_not_found(Err(status(404))).is_ok());
        assert!(ignore_not_found(Err(status(500))).is_err());
    }
}
