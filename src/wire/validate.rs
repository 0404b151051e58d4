//! Validation of received values that PostgreSQL or Consul would reject or misread.
//! An invalid value rejects the whole event, and nothing is truncated or rewritten.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use url::Url;

use super::error::{ReadError, quote};
use super::limits::ReadLimits;

/// Maximum length of a node type. The Consul service name is built from it, and
/// Consul service names are DNS labels, which RFC 1035 limits to 63 characters.
pub const MAX_NODE_TYPE_CHARS: usize = 63;

/// Maximum length of an endpoint name. Endpoint names may become Consul meta keys,
/// which Consul limits to 128 characters of `[A-Za-z0-9_-]`, so this leaves room
/// for a prefix.
pub const MAX_ENDPOINT_NAME_CHARS: usize = 64;

/// Checks a node id: 1 to `max_chars` characters of `[A-Za-z0-9._:-]`, starting
/// with a letter or digit. The node id is the PostgreSQL primary key and the Consul
/// service ID, and appears in Consul URL paths.
pub(crate) fn check_node_id(field: &str, value: &str, max_chars: usize) -> Result<(), ReadError> {
    check_pattern(field, value, max_chars, |character| {
        character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | ':' | '-')
    })?;
    if !value.starts_with(|character: char| character.is_ascii_alphanumeric()) {
        return Err(ReadError::invalid_identifier(
            field,
            value,
            "must start with a letter or digit",
        ));
    }
    Ok(())
}

/// Checks a node type: 1 to 63 characters of `[A-Za-z0-9_-]`, starting with a
/// letter.
pub(crate) fn check_node_type(field: &str, value: &str) -> Result<(), ReadError> {
    check_pattern(field, value, MAX_NODE_TYPE_CHARS, |character| {
        character.is_ascii_alphanumeric() || matches!(character, '_' | '-')
    })?;
    if !value.starts_with(|character: char| character.is_ascii_alphabetic()) {
        return Err(ReadError::invalid_identifier(
            field,
            value,
            "must start with a letter",
        ));
    }
    Ok(())
}

/// Checks an identifier without a fixed character set (`network_id`,
/// `deployment_id`, `source_node_id`, ...): 1 to `max_chars` characters, none of
/// them a control character.
pub(crate) fn check_label(field: &str, value: &str, max_chars: usize) -> Result<(), ReadError> {
    check_pattern(field, value, max_chars, |character| !character.is_control())
}

/// Checks a free-text value: at most `max_bytes` bytes and no control characters.
/// Empty text is allowed.
pub(crate) fn check_text(field: &str, value: &str, max_bytes: usize) -> Result<(), ReadError> {
    if value.len() > max_bytes {
        return Err(ReadError::FieldTooLarge {
            field: field.to_owned(),
            size: value.len(),
            limit: max_bytes,
            unit: "bytes",
        });
    }
    if let Some(character) = value.chars().find(|character| character.is_control()) {
        return Err(ReadError::invalid_value(
            field,
            value,
            format!("contains the control character {character:?}"),
        ));
    }
    Ok(())
}

/// Checks the size of a free-form object, measured as compact JSON.
pub(crate) fn check_object_size(
    field: &str,
    object: &Map<String, Value>,
    max_bytes: usize,
) -> Result<(), ReadError> {
    // Serializing a map of JSON values into a Vec cannot fail: its keys are strings
    // and writing to a Vec never fails.
    let size = serde_json::to_vec(object).map_or(usize::MAX, |json| json.len());
    if size > max_bytes {
        return Err(ReadError::FieldTooLarge {
            field: field.to_owned(),
            size,
            limit: max_bytes,
            unit: "bytes",
        });
    }
    Ok(())
}

/// Reads `endpoints` (endpoint name to URL), checking each name and each URL in
/// name order. A URL must parse and have a host, and any scheme is accepted.
pub(crate) fn read_endpoints(
    field: &str,
    object: &Map<String, Value>,
    limits: &ReadLimits,
) -> Result<BTreeMap<String, String>, ReadError> {
    if object.len() > limits.max_endpoints {
        return Err(ReadError::FieldTooLarge {
            field: field.to_owned(),
            size: object.len(),
            limit: limits.max_endpoints,
            unit: "entries",
        });
    }

    let sorted: BTreeMap<&String, &Value> = object.iter().collect();
    let mut endpoints = BTreeMap::new();
    for (name, value) in sorted {
        let Value::String(url) = value else {
            let path = format!("{field}.{}", quote(name));
            return Err(ReadError::wrong_type(&path, "a URL string", value));
        };
        check_endpoint(name, url, limits.max_text_bytes)?;
        endpoints.insert(name.clone(), url.clone());
    }
    Ok(endpoints)
}

fn check_endpoint(name: &str, url: &str, max_url_bytes: usize) -> Result<(), ReadError> {
    let invalid = |reason: String| ReadError::InvalidEndpoint {
        name: quote(name),
        url: quote(url),
        reason,
    };

    let name_is_valid = (1..=MAX_ENDPOINT_NAME_CHARS).contains(&name.chars().count())
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || matches!(character, '_' | '-'));
    if !name_is_valid {
        return Err(invalid(format!(
            "endpoint names must be 1 to {MAX_ENDPOINT_NAME_CHARS} characters of \
             letters, digits, _ and -"
        )));
    }

    if url.len() > max_url_bytes {
        return Err(invalid(format!(
            "the URL is {} bytes, over the limit of {max_url_bytes} bytes",
            url.len()
        )));
    }
    let parsed =
        Url::parse(url).map_err(|error| invalid(format!("the URL does not parse ({error})")))?;
    if parsed.host().is_none() {
        return Err(invalid("the URL has no host".to_owned()));
    }
    Ok(())
}

/// Rejects a NUL character in any string or object key of the message.
/// PostgreSQL cannot store NUL in `text`, and rejects `\u0000` in `jsonb`.
pub(crate) fn reject_nul(message: &Value) -> Result<(), ReadError> {
    match find_nul(message) {
        Some(reversed_path) => Err(ReadError::NulCharacter {
            field: format_path(&reversed_path),
        }),
        None => Ok(()),
    }
}

enum PathSegment {
    Key(String),
    Index(usize),
}

/// Returns the path to the first NUL character, innermost segment first.
fn find_nul(value: &Value) -> Option<Vec<PathSegment>> {
    match value {
        Value::String(text) => text.contains('\0').then(Vec::new),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            let mut path = find_nul(item)?;
            path.push(PathSegment::Index(index));
            Some(path)
        }),
        Value::Object(object) => object.iter().find_map(|(key, item)| {
            let mut path = if key.contains('\0') {
                Vec::new()
            } else {
                find_nul(item)?
            };
            path.push(PathSegment::Key(quote(key)));
            Some(path)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

fn format_path(reversed_path: &[PathSegment]) -> String {
    let mut path = String::new();
    for segment in reversed_path.iter().rev() {
        match segment {
            PathSegment::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key.escape_debug().to_string());
            }
            PathSegment::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    if path.is_empty() {
        path.push_str("(message)");
    }
    path
}

/// Checks that `value` is 1 to `max_chars` characters long and that `allowed`
/// accepts each of them.
fn check_pattern(
    field: &str,
    value: &str,
    max_chars: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), ReadError> {
    let length = value.chars().count();
    if length == 0 {
        return Err(ReadError::invalid_identifier(
            field,
            value,
            "is empty; send null or leave the field out instead",
        ));
    }
    if length > max_chars {
        return Err(ReadError::invalid_identifier(
            field,
            value,
            format!("is {length} characters long, over the limit of {max_chars}"),
        ));
    }
    if let Some(character) = value.chars().find(|character| !allowed(*character)) {
        return Err(ReadError::invalid_identifier(
            field,
            value,
            format!("contains the character {character:?}, which is not allowed here"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn label_of<T>(result: Result<T, ReadError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(error) => error.label(),
        }
    }

    #[test]
    fn node_id_accepts_allowed_characters() {
        assert_eq!(label_of(check_node_id("f", "Node-1.a_b:c", 128)), "ok");
    }

    #[test]
    fn node_id_rejects_slash() {
        assert_eq!(
            label_of(check_node_id("f", "a/b", 128)),
            "invalid_identifier"
        );
    }

    #[test]
    fn node_id_rejects_space() {
        assert_eq!(
            label_of(check_node_id("f", "a b", 128)),
            "invalid_identifier"
        );
    }

    #[test]
    fn node_id_rejects_leading_dash() {
        assert_eq!(
            label_of(check_node_id("f", "-a", 128)),
            "invalid_identifier"
        );
    }

    #[test]
    fn node_id_rejects_empty() {
        assert_eq!(label_of(check_node_id("f", "", 128)), "invalid_identifier");
    }

    #[test]
    fn node_id_length_limit() {
        assert_eq!(label_of(check_node_id("f", &"a".repeat(128), 128)), "ok");
        assert_eq!(
            label_of(check_node_id("f", &"a".repeat(129), 128)),
            "invalid_identifier"
        );
    }

    #[test]
    fn node_type_rejects_leading_digit() {
        assert_eq!(
            label_of(check_node_type("f", "1effect")),
            "invalid_identifier"
        );
    }

    #[test]
    fn node_type_rejects_dot() {
        assert_eq!(
            label_of(check_node_type("f", "effect.v2")),
            "invalid_identifier"
        );
    }

    #[test]
    fn node_type_length_limit() {
        assert_eq!(label_of(check_node_type("f", &"a".repeat(63))), "ok");
        assert_eq!(
            label_of(check_node_type("f", &"a".repeat(64))),
            "invalid_identifier"
        );
    }

    #[test]
    fn label_accepts_unicode() {
        assert_eq!(label_of(check_label("f", "réseau-1", 128)), "ok");
    }

    #[test]
    fn label_rejects_newline() {
        assert_eq!(
            label_of(check_label("f", "a\nb", 128)),
            "invalid_identifier"
        );
    }

    #[test]
    fn text_rejects_over_limit() {
        assert_eq!(label_of(check_text("f", "abcde", 4)), "field_too_large");
    }

    #[test]
    fn text_rejects_control_character() {
        assert_eq!(label_of(check_text("f", "1.0\u{1b}", 512)), "invalid_value");
    }

    #[test]
    fn endpoint_accepts_ipv6() {
        assert_eq!(
            label_of(check_endpoint("api", "http://[::1]:8080/health", 512)),
            "ok"
        );
    }

    #[test]
    fn endpoint_accepts_grpc_scheme() {
        assert_eq!(
            label_of(check_endpoint("grpc", "grpc://node-1.svc:50051", 512)),
            "ok"
        );
    }

    #[test]
    fn endpoint_rejects_missing_host() {
        assert_eq!(
            label_of(check_endpoint("socket", "unix:/run/node.sock", 512)),
            "invalid_endpoint"
        );
    }

    #[test]
    fn endpoint_rejects_name_with_dot() {
        assert_eq!(
            label_of(check_endpoint("api.v1", "http://a:1", 512)),
            "invalid_endpoint"
        );
    }

    #[test]
    fn endpoints_over_count_limit() {
        let limits = ReadLimits {
            max_endpoints: 1,
            ..ReadLimits::default()
        };
        let Value::Object(object) = json!({"a": "http://a", "b": "http://b"}) else {
            panic!("not an object");
        };
        let result = read_endpoints("payload.endpoints", &object, &limits);
        assert_eq!(label_of(result), "field_too_large");
    }

    #[test]
    fn nul_path_names_nested_key() {
        let message = json!({"payload": {"metadata": {"tags": ["ok", "a\u{0}b"]}}});
        let error = reject_nul(&message).unwrap_err();
        assert_eq!(
            error,
            ReadError::NulCharacter {
                field: "payload.metadata.tags[1]".to_owned()
            }
        );
    }

    #[test]
    fn nul_in_key_is_found() {
        let message = json!({"meta\u{0}data": 1});
        let error = reject_nul(&message).unwrap_err();
        assert_eq!(
            error,
            ReadError::NulCharacter {
                field: "meta\\0data".to_owned()
            }
        );
    }

    #[test]
    fn object_size_over_limit() {
        let Value::Object(object) = json!({"key": "value"}) else {
            panic!("not an object");
        };
        // Compact JSON `{"key":"value"}` is 15 bytes.
        assert_eq!(label_of(check_object_size("f", &object, 15)), "ok");
        assert_eq!(
            label_of(check_object_size("f", &object, 14)),
            "field_too_large"
        );
    }
}
