use std::collections::BTreeMap;

use rdkafka::ClientConfig;

/// Builds a librdkafka configuration for `brokers` with the user's extra properties
/// (TLS, SASL) applied last, so they can override any default set here.
pub fn client_config(brokers: &str, extra: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "registry-operator")
        .set("socket.keepalive.enable", "true")
        .set("log_level", "4");
    for (key, value) in extra {
        config.set(key, value);
    }
    config
}
