//! Service address and port taken from a node's announced endpoints.

use std::collections::BTreeMap;
use std::net::IpAddr;

use url::{Host, Url};

/// Endpoint names tried first, in this order. Other endpoints follow in name order.
const PREFERRED_ENDPOINTS: [&str; 2] = ["api", "health"];

/// Host and port of a service, parsed from one endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddress {
    /// Name of the endpoint the address comes from.
    pub endpoint: String,
    /// Host name or IP address, IPv6 without brackets. `None` when the endpoint listens on
    /// an unspecified address (`0.0.0.0`, `::`), which Consul rejects as a service address.
    pub host: Option<String>,
    /// The URL's port, else the scheme's default port, else 0.
    pub port: u16,
}

/// Selects the service address from the endpoints: `api` first, then `health`, then the
/// other endpoints in name order.
///
/// An endpoint with a specific host wins over one that listens on an unspecified address.
/// When every endpoint listens on an unspecified address, the first one's port is used
/// without a host. Endpoints without a host (for example `unix:/run/node.sock`) are skipped.
/// Returns `None` when no endpoint has a host.
pub fn select_service_address(endpoints: &BTreeMap<String, String>) -> Option<ServiceAddress> {
    let preferred = PREFERRED_ENDPOINTS
        .iter()
        .filter_map(|name| endpoints.get_key_value(*name));
    let others = endpoints
        .iter()
        .filter(|(name, _)| !PREFERRED_ENDPOINTS.contains(&name.as_str()));

    let candidates: Vec<ServiceAddress> = preferred
        .chain(others)
        .filter_map(|(name, url)| parse_endpoint(name, url))
        .collect();

    let with_host = candidates.iter().find(|address| address.host.is_some());
    with_host.or(candidates.first()).cloned()
}

/// Parses one endpoint URL into host and port. Returns `None` for an unparsable URL or a
/// URL without a host.
fn parse_endpoint(name: &str, raw_url: &str) -> Option<ServiceAddress> {
    let url = Url::parse(raw_url).ok()?;

    // `host_str` keeps the brackets of an IPv6 literal, but Consul expects a bare address.
    let host = match url.host()? {
        Host::Domain(domain) => domain.to_owned(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    if host.is_empty() {
        return None;
    }

    // Non-special schemes such as grpc:// return IPv4 literals as `Host::Domain`, so the
    // unspecified check parses the text instead of matching the variant.
    let is_unspecified = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());

    Some(ServiceAddress {
        endpoint: name.to_owned(),
        host: (!is_unspecified).then_some(host),
        port: url.port_or_known_default().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, url)| ((*name).to_owned(), (*url).to_owned()))
            .collect()
    }

    fn address(endpoint: &str, host: Option<&str>, port: u16) -> Option<ServiceAddress> {
        Some(ServiceAddress {
            endpoint: endpoint.to_owned(),
            host: host.map(str::to_owned),
            port,
        })
    }

    #[test]
    fn api_preferred_over_health() {
        let found = select_service_address(&endpoints(&[
            ("admin", "http://10.0.0.1:9000"),
            ("health", "http://10.0.0.2:8081/health"),
            ("api", "http://10.0.0.3:8080/v1"),
        ]));
        assert_eq!(found, address("api", Some("10.0.0.3"), 8080));
    }

    #[test]
    fn health_preferred_over_others() {
        let found = select_service_address(&endpoints(&[
            ("admin", "http://10.0.0.1:9000"),
            ("health", "http://10.0.0.2:8081/health"),
        ]));
        assert_eq!(found, address("health", Some("10.0.0.2"), 8081));
    }

    #[test]
    fn others_taken_in_name_order() {
        let found = select_service_address(&endpoints(&[
            ("metrics", "http://10.0.0.1:9090"),
            ("admin", "http://10.0.0.2:9000"),
        ]));
        assert_eq!(found, address("admin", Some("10.0.0.2"), 9000));
    }

    #[test]
    fn ipv6_host_without_brackets() {
        let found = select_service_address(&endpoints(&[("api", "http://[fd00::1:2]:8080/")]));
        assert_eq!(found, address("api", Some("fd00::1:2"), 8080));
    }

    #[test]
    fn missing_port_uses_scheme_default() {
        let https =
            select_service_address(&endpoints(&[("api", "https://node.example.internal/v1")]));
        assert_eq!(https, address("api", Some("node.example.internal"), 443));

        let http = select_service_address(&endpoints(&[("api", "http://node.example.internal")]));
        assert_eq!(http, address("api", Some("node.example.internal"), 80));
    }

    #[test]
    fn grpc_scheme_gives_host_and_port() {
        let found = select_service_address(&endpoints(&[("api", "grpc://10.1.2.3:50051")]));
        assert_eq!(found, address("api", Some("10.1.2.3"), 50051));
    }

    #[test]
    fn grpc_ipv6_gives_host_and_port() {
        let found = select_service_address(&endpoints(&[("api", "grpc://[::1]:50051")]));
        assert_eq!(found, address("api", Some("::1"), 50051));
    }

    #[test]
    fn tcp_scheme_gives_host_and_port() {
        let found = select_service_address(&endpoints(&[("data", "tcp://broker-0.local:9092")]));
        assert_eq!(found, address("data", Some("broker-0.local"), 9092));
    }

    #[test]
    fn unknown_scheme_without_port_gives_port_zero() {
        let found = select_service_address(&endpoints(&[("api", "grpc://10.1.2.3")]));
        assert_eq!(found, address("api", Some("10.1.2.3"), 0));
    }

    #[test]
    fn no_endpoints_give_none() {
        assert_eq!(select_service_address(&BTreeMap::new()), None);
    }

    #[test]
    fn endpoints_without_host_skipped() {
        let only_socket = select_service_address(&endpoints(&[("api", "unix:/run/node.sock")]));
        assert_eq!(only_socket, None);

        let found = select_service_address(&endpoints(&[
            ("api", "unix:/run/node.sock"),
            ("health", "http://10.0.0.2:8081/health"),
        ]));
        assert_eq!(found, address("health", Some("10.0.0.2"), 8081));
    }

    #[test]
    fn unparsable_endpoint_skipped() {
        let found = select_service_address(&endpoints(&[
            ("api", "not a url"),
            ("health", "http://10.0.0.2:8081/health"),
        ]));
        assert_eq!(found, address("health", Some("10.0.0.2"), 8081));
    }

    #[test]
    fn specific_host_preferred_over_unspecified() {
        let found = select_service_address(&endpoints(&[
            ("api", "http://0.0.0.0:8080"),
            ("health", "http://10.0.0.2:8081/health"),
        ]));
        assert_eq!(found, address("health", Some("10.0.0.2"), 8081));
    }

    #[test]
    fn only_unspecified_hosts_give_port_alone() {
        let ipv4 = select_service_address(&endpoints(&[("api", "http://0.0.0.0:8080")]));
        assert_eq!(ipv4, address("api", None, 8080));

        let ipv6 = select_service_address(&endpoints(&[("api", "http://[::]:8080")]));
        assert_eq!(ipv6, address("api", None, 8080));

        let grpc = select_service_address(&endpoints(&[("api", "grpc://0.0.0.0:50051")]));
        assert_eq!(grpc, address("api", None, 50051));
    }
}
