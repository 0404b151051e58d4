//! Resolution of a RegistryNode into the settings of its registry instance: reads the
//! Secrets it references and applies defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::validate::{SpecError, validate_spec};
use crate::crd::{RegistryNode, SecretKeySelector};
use crate::instance::{PodIdentity, RegistryConfig};
use crate::wire::topics::Topics;

/// Why a RegistryNode could not be turned into a registry configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The spec is invalid: waiting for the user to change it.
    #[error(transparent)]
    Invalid(#[from] SpecError),
    #[error("Secret {namespace}/{name} not found")]
    MissingSecret { namespace: String, name: String },
    #[error("Secret {namespace}/{name} has no key {key:?}")]
    MissingKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("Secret {namespace}/{name} key {key:?} is not valid UTF-8")]
    NotUtf8 {
        namespace: String,
        name: String,
        key: String,
    },
    /// Reading a Secret failed for a reason that may pass (API server unreachable).
    #[error("reading Secret {namespace}/{name} failed: {source}")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ConfigError {
    /// True when the user must change the spec or create a Secret before a retry helps.
    pub fn needs_user_action(&self) -> bool {
        !matches!(self, ConfigError::Kube { .. })
    }

    /// CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            ConfigError::Invalid(_) => "InvalidSpec",
            ConfigError::MissingSecret { .. } => "SecretNotFound",
            ConfigError::MissingKey { .. } => "SecretKeyNotFound",
            ConfigError::NotUtf8 { .. } => "InvalidSecret",
            ConfigError::Kube { .. } => "ApiError",
        }
    }
}

/// Reads Secrets of one namespace.
struct Secrets {
    api: Api<Secret>,
    namespace: String,
}

impl Secrets {
    async fn get(&self, name: &str) -> Result<Secret, ConfigError> {
        match self.api.get_opt(name).await {
            Ok(Some(secret)) => Ok(secret),
            Ok(None) => Err(ConfigError::MissingSecret {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
            }),
            Err(source) => Err(ConfigError::Kube {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                source,
            }),
        }
    }

    fn values(&self, name: &str, secret: &Secret) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut values = BTreeMap::new();
        for (key, bytes) in secret.data.iter().flatten() {
            let value = String::from_utf8(bytes.0.clone()).map_err(|_| ConfigError::NotUtf8 {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                key: key.clone(),
            })?;
            values.insert(key.clone(), value);
        }
        for (key, value) in secret.string_data.iter().flatten() {
            values.insert(key.clone(), value.clone());
        }
        Ok(values)
    }

    async fn key(&self, selector: &SecretKeySelector) -> Result<String, ConfigError> {
        let secret = self.get(&selector.name).await?;
        let mut values = self.values(&selector.name, &secret)?;
        values
            .remove(&selector.key)
            .map(|value| value.trim_end_matches(['\n', '\r']).to_owned())
            .ok_or_else(|| ConfigError::MissingKey {
                namespace: self.namespace.clone(),
                name: selector.name.clone(),
                key: selector.key.clone(),
            })
    }
}

/// Process-wide settings that every registry instance shares.
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    pub identity: PodIdentity,
    /// Base URL of this process's HTTP server, announced as each registry's endpoints.
    pub http_base_url: String,
    pub heartbeat_write_interval: Duration,
    pub sweep_interval: Duration,
    pub anti_entropy_interval: Duration,
}

/// Builds the registry configuration of `node`, reading the Secrets it references.
pub async fn resolve(
    client: &Client,
    node: &RegistryNode,
    settings: &OperatorSettings,
) -> Result<RegistryConfig, ConfigError> {
    let namespace = node.namespace().unwrap_or_else(|| "default".to_owned());
    let name = node.name_any();
    let spec = &node.spec;
    let registry_id = spec
        .registry_id
        .clone()
        .unwrap_or_else(|| format!("{namespace}-{name}"));
    validate_spec(spec, &registry_id)?;

    let secrets = Secrets {
        api: Api::namespaced(client.clone(), &namespace),
        namespace: namespace.clone(),
    };
    let kafka_properties = match &spec.kafka.properties_secret_ref {
        Some(reference) => {
            let secret = secrets.get(&reference.name).await?;
            secrets.values(&reference.name, &secret)?
        }
        None => BTreeMap::new(),
    };
    let consul_token = match &spec.consul.token_secret_ref {
        Some(selector) => Some(secrets.key(selector).await?),
        None => None,
    };
    let postgres_url = match &spec.postgres.url_secret_ref {
        Some(selector) => secrets.key(selector).await?,
        None => {
            let password = match &spec.postgres.password_secret_ref {
                Some(selector) => Some(secrets.key(selector).await?),
                None => None,
            };
            postgres_url_from_parts(&spec.postgres, password.as_deref())?
        }
    };

    let mut topics = Topics::for_environment(&spec.environment);
    let overrides = &spec.kafka.topics;
    if let Some(topic) = &overrides.introspection {
        topics.introspection = topic.clone();
    }
    if let Some(topic) = &overrides.heartbeat {
        topics.heartbeat = topic.clone();
    }
    if let Some(topic) = &overrides.registry_request {
        topics.registry_request = topic.clone();
    }
    if let Some(topic) = &overrides.topology {
        topics.topology = topic.clone();
    }

    Ok(RegistryConfig {
        registry_id,
        environment: spec.environment.clone(),
        network_id: spec.network_id.clone(),
        topics,
        kafka_brokers: spec.kafka.bootstrap_servers.clone(),
        consumer_group: spec
            .kafka
            .consumer_group
            .clone()
            .unwrap_or_else(|| format!("registry-operator.{namespace}.{name}")),
        dead_letter_topic: spec.kafka.dead_letter_topic.clone(),
        kafka_properties,
        consul_address: spec.consul.address.clone(),
        consul_token,
        consul_datacenter: spec.consul.datacenter.clone(),
        registration_mode: spec.consul.registration_mode,
        consul_tags: spec.consul.tags.clone(),
        postgres_url,
        postgres_schema: spec.postgres.schema.clone(),
        heartbeat_interval: Duration::from_secs(spec.heartbeat.interval_seconds.max(1).into()),
        liveness_timeout: Duration::from_secs(spec.liveness.timeout_seconds.into()),
        expiry_after: Duration::from_secs(spec.expiry.after_seconds.into()),
        self_registration: spec.self_registration.enabled,
        cleanup_policy: spec.cleanup_policy,
        heartbeat_write_interval: settings.heartbeat_write_interval,
        sweep_interval: settings.sweep_interval,
        anti_entropy_interval: settings.anti_entropy_interval,
        // The lease decides which pod runs singleton work.
        leader_by_default: false,
        http_base_url: settings.http_base_url.clone(),
        identity: settings.identity.clone(),
    })
}

/// Builds `postgres://user:password@host:port/database` with every part percent-encoded.
fn postgres_url_from_parts(
    spec: &crate::crd::PostgresSpec,
    password: Option<&str>,
) -> Result<String, SpecError> {
    let host = spec.host.as_deref().ok_or(SpecError::MissingPostgres)?;
    let database = spec.database.as_deref().ok_or(SpecError::MissingPostgres)?;
    let mut url = url::Url::parse("postgres://placeholder")
        .map_err(|error| SpecError::InvalidPostgresHost(error.to_string()))?;
    url.set_host(Some(host))
        .map_err(|error| SpecError::InvalidPostgresHost(format!("{host}: {error}")))?;
    let _ = url.set_port(Some(spec.port.unwrap_or(5432)));
    url.set_path(database);
    if let Some(user) = &spec.user {
        let _ = url.set_username(user);
    }
    if let Some(password) = password {
        let _ = url.set_password(Some(password));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PostgresSpec;

    #[test]
    fn postgres_url_encodes_password() {
        let spec = PostgresSpec {
            url_secret_ref: None,
            host: Some("db.example".to_owned()),
            port: Some(5433),
            database: Some("registry".to_owned()),
            user: Some("app".to_owned()),
            password_secret_ref: None,
            schema: "public".to_owned(),
        };
        let url = postgres_url_from_parts(&spec, Some("p@ss/word")).expect("url");
        assert_eq!(url, "postgres://app:p%40ss%2Fword@db.example:5433/registry");
    }

    #[test]
    fn postgres_url_requires_host() {
        let spec = PostgresSpec {
            url_secret_ref: None,
            host: None,
            port: None,
            database: Some("registry".to_owned()),
            user: None,
            password_secret_ref: None,
            schema: "public".to_owned(),
        };
        assert!(matches!(
            postgres_url_from_parts(&spec, None),
            Err(SpecError::MissingPostgres)
        ));
    }
}
