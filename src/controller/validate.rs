//! Checks of a RegistryNode spec that need no I/O.

use crate::crd::RegistryNodeSpec;

/// An invalid spec, with the failing value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "registryId {0:?} is invalid: expected 1 to 63 of a-z, 0-9 and -, starting with a letter or digit"
    )]
    InvalidRegistryId(String),
    #[error("environment {0:?} is invalid: expected 1 to 63 of A-Z, a-z, 0-9, _ and -")]
    InvalidEnvironment(String),
    #[error(
        "postgres.schema {0:?} is invalid: expected 1 to 63 of a-z, 0-9 and _, not starting with a digit"
    )]
    InvalidSchema(String),
    #[error("postgres needs either urlSecretRef, or host and database")]
    MissingPostgres,
    #[error("postgres host is invalid: {0}")]
    InvalidPostgresHost(String),
    #[error("consul.address {0:?} is invalid: expected an http:// or https:// URL")]
    InvalidConsulAddress(String),
    #[error("kafka.bootstrapServers is empty")]
    MissingBrokers,
    #[error(
        "expiry.afterSeconds ({expiry}) must be greater than liveness.timeoutSeconds ({liveness})"
    )]
    ExpiryBeforeLiveness { expiry: u32, liveness: u32 },
}

fn is_registry_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
}

fn is_environment(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks the spec and the effective registry id.
pub fn validate_spec(spec: &RegistryNodeSpec, registry_id: &str) -> Result<(), SpecError> {
    if !is_registry_id(registry_id) {
        return Err(SpecError::InvalidRegistryId(registry_id.to_owned()));
    }
    if !is_environment(&spec.environment) {
        return Err(SpecError::InvalidEnvironment(spec.environment.clone()));
    }
    if crate::postgres::validate_schema(&spec.postgres.schema).is_err() {
        return Err(SpecError::InvalidSchema(spec.postgres.schema.clone()));
    }
    if spec.postgres.url_secret_ref.is_none()
        && (spec.postgres.host.is_none() || spec.postgres.database.is_none())
    {
        return Err(SpecError::MissingPostgres);
    }
    let consul_ok = url::Url::parse(&spec.consul.address)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
    if !consul_ok {
        return Err(SpecError::InvalidConsulAddress(spec.consul.address.clone()));
    }
    if spec.kafka.bootstrap_servers.trim().is_empty() {
        return Err(SpecError::MissingBrokers);
    }
    if spec.expiry.after_seconds <= spec.liveness.timeout_seconds {
        return Err(SpecError::ExpiryBeforeLiveness {
            expiry: spec.expiry.after_seconds,
            liveness: spec.liveness.timeout_seconds,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RegistryNodeSpec {
        serde_json::from_value(serde_json::json!({
            "kafka": {"bootstrapServers": "127.0.0.1:9092"},
            "consul": {"address": "http://127.0.0.1:8500"},
            "postgres": {"urlSecretRef": {"name": "db", "key": "url"}}
        }))
        .expect("spec")
    }

    #[test]
    fn default_spec_is_valid() {
        assert_eq!(validate_spec(&spec(), "ns-name"), Ok(()));
    }

    #[test]
    fn invalid_values_rejected() {
        assert!(matches!(
            validate_spec(&spec(), "Bad_Id"),
            Err(SpecError::InvalidRegistryId(_))
        ));
        let mut bad = spec();
        bad.environment = "a.b".to_owned();
        assert!(matches!(
            validate_spec(&bad, "x"),
            Err(SpecError::InvalidEnvironment(_))
        ));
        let mut bad = spec();
        bad.consul.address = "consul:8500".to_owned();
        assert!(matches!(
            validate_spec(&bad, "x"),
            Err(SpecError::InvalidConsulAddress(_))
        ));
        let mut bad = spec();
        bad.postgres.url_secret_ref = None;
        assert_eq!(validate_spec(&bad, "x"), Err(SpecError::MissingPostgres));
        let mut bad = spec();
        bad.expiry.after_seconds = 10;
        assert!(matches!(
            validate_spec(&bad, "x"),
            Err(SpecError::ExpiryBeforeLiveness { .. })
        ));
        let mut bad = spec();
        bad.postgres.schema = "Bad".to_owned();
        assert!(matches!(
            validate_spec(&bad, "x"),
            Err(SpecError::InvalidSchema(_))
        ));
    }
}
