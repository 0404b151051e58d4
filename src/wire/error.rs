//! Reasons why a message value is rejected.

use serde_json::Value;

/// Maximum number of characters of a received value that an error keeps and prints.
/// Values come from untrusted producers, so errors and the log lines built from
/// them stay bounded.
pub const MAX_QUOTED_CHARS: usize = 64;

/// Error for a Kafka message value that is not a valid event.
///
/// Each variant carries the failing field and value. Quoted values are cut to
/// [`MAX_QUOTED_CHARS`] characters, with `…` marking the cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },

    #[error("message is not valid UTF-8: invalid byte sequence at offset {offset}")]
    NotUtf8 { offset: usize },

    #[error("message nests arrays and objects more than {limit} levels deep")]
    TooDeep { limit: usize },

    #[error("message is not valid JSON: {reason}")]
    InvalidJson { reason: String },

    #[error("required field {field} is missing or null")]
    MissingField { field: String },

    #[error("field {field} is {found}, expected {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error(
        "unknown event_type {value:?}: expected node_introspection, node_heartbeat or \
         registry_request_introspection (in any case, with - or _)"
    )]
    UnknownEventType { value: String },

    #[error("field {field} has invalid value {value:?}: {reason}")]
    InvalidValue {
        field: String,
        value: String,
        reason: String,
    },

    #[error("field {field} has invalid identifier {value:?}: {reason}")]
    InvalidIdentifier {
        field: String,
        value: String,
        reason: String,
    },

    #[error("invalid endpoint {name:?} ({url:?}): {reason}")]
    InvalidEndpoint {
        name: String,
        url: String,
        reason: String,
    },

    #[error("field {field} is {size} {unit}, over the limit of {limit} {unit}")]
    FieldTooLarge {
        field: String,
        size: usize,
        limit: usize,
        unit: &'static str,
    },

    #[error("field {field} contains a NUL character, which PostgreSQL text and JSONB cannot store")]
    NulCharacter { field: String },
}

impl ReadError {
    /// Returns a short snake_case name of the variant, stable for metric labels and
    /// dead-letter headers.
    pub fn label(&self) -> &'static str {
        match self {
            ReadError::TooLarge { .. } => "too_large",
            ReadError::NotUtf8 { .. } => "not_utf8",
            ReadError::TooDeep { .. } => "too_deep",
            ReadError::InvalidJson { .. } => "invalid_json",
            ReadError::MissingField { .. } => "missing_field",
            ReadError::WrongType { .. } => "wrong_type",
            ReadError::UnknownEventType { .. } => "unknown_event_type",
            ReadError::InvalidValue { .. } => "invalid_value",
            ReadError::InvalidIdentifier { .. } => "invalid_identifier",
            ReadError::InvalidEndpoint { .. } => "invalid_endpoint",
            ReadError::FieldTooLarge { .. } => "field_too_large",
            ReadError::NulCharacter { .. } => "nul_character",
        }
    }

    pub(crate) fn missing(field: &str) -> Self {
        ReadError::MissingField {
            field: field.to_owned(),
        }
    }

    pub(crate) fn wrong_type(field: &str, expected: &'static str, found: &Value) -> Self {
        ReadError::WrongType {
            field: field.to_owned(),
            expected,
            found: json_kind(found),
        }
    }

    pub(crate) fn invalid_value(field: &str, value: &str, reason: impl Into<String>) -> Self {
        ReadError::InvalidValue {
            field: field.to_owned(),
            value: quote(value),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_identifier(field: &str, value: &str, reason: impl Into<String>) -> Self {
        ReadError::InvalidIdentifier {
            field: field.to_owned(),
            value: quote(value),
            reason: reason.into(),
        }
    }
}

/// Returns the first [`MAX_QUOTED_CHARS`] characters of `value`, followed by `…`
/// when characters were cut.
pub(crate) fn quote(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// Returns the JSON type name of `value`, as error messages print it.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_keeps_short_value() {
        assert_eq!(quote("node-1"), "node-1");
    }

    #[test]
    fn quote_cuts_long_value() {
        let quoted = quote(&"é".repeat(100));
        assert_eq!(quoted.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(quoted.ends_with('…'));
    }

    #[test]
    fn message_names_field_and_value() {
        let error = ReadError::invalid_identifier("payload.node_id", "a/b", "contains '/'");
        assert_eq!(
            error.to_string(),
            "field payload.node_id has invalid identifier \"a/b\": contains '/'"
        );
    }
}
