//! Typed access to the fields of a received JSON object. Null counts as absent,
//! unknown fields are ignored, and errors name the field by its path.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::ReadError;
use super::timestamp;
use super::validate;

/// Fields of one JSON object, with the path prefix used in error messages
/// (`""` for the envelope, `"payload."` for the payload).
pub(crate) struct Fields<'a> {
    object: &'a Map<String, Value>,
    prefix: &'static str,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(object: &'a Map<String, Value>, prefix: &'static str) -> Self {
        Fields { object, prefix }
    }

    /// Returns the path of field `name` as error messages print it.
    pub(crate) fn path(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// Returns the value of field `name`, or `None` when it is absent or null.
    pub(crate) fn get(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name).filter(|value| !value.is_null())
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<&'a str>, ReadError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(ReadError::wrong_type(&self.path(name), "a string", other)),
        }
    }

    pub(crate) fn required_string(&self, name: &str) -> Result<&'a str, ReadError> {
        self.string(name)?
            .ok_or_else(|| ReadError::missing(&self.path(name)))
    }

    pub(crate) fn object(&self, name: &str) -> Result<Option<&'a Map<String, Value>>, ReadError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(object)) => Ok(Some(object)),
            Some(other) => Err(ReadError::wrong_type(&self.path(name), "an object", other)),
        }
    }

    pub(crate) fn uuid(&self, name: &str) -> Result<Option<Uuid>, ReadError> {
        let Some(text) = self.string(name)? else {
            return Ok(None);
        };
        Uuid::parse_str(text)
            .map(Some)
            .map_err(|error| ReadError::invalid_value(&self.path(name), text, error.to_string()))
    }

    pub(crate) fn required_uuid(&self, name: &str) -> Result<Uuid, ReadError> {
        self.uuid(name)?
            .ok_or_else(|| ReadError::missing(&self.path(name)))
    }

    pub(crate) fn timestamp(&self, name: &str) -> Result<Option<DateTime<Utc>>, ReadError> {
        let Some(text) = self.string(name)? else {
            return Ok(None);
        };
        timestamp::parse_timestamp(text).map(Some).ok_or_else(|| {
            ReadError::invalid_value(
                &self.path(name),
                text,
                "expected an RFC 3339 timestamp such as 2025-11-13T14:05:09.412871+00:00",
            )
        })
    }

    pub(crate) fn required_timestamp(&self, name: &str) -> Result<DateTime<Utc>, ReadError> {
        self.timestamp(name)?
            .ok_or_else(|| ReadError::missing(&self.path(name)))
    }

    /// Reads an optional free-form object, empty when absent, of at most
    /// `max_bytes` bytes as compact JSON.
    pub(crate) fn free_object(
        &self,
        name: &str,
        max_bytes: usize,
    ) -> Result<Map<String, Value>, ReadError> {
        let Some(object) = self.object(name)? else {
            return Ok(Map::new());
        };
        validate::check_object_size(&self.path(name), object, max_bytes)?;
        Ok(object.clone())
    }

    /// Reads an optional identifier without a fixed character set, such as
    /// `network_id`.
    pub(crate) fn label(&self, name: &str, max_chars: usize) -> Result<Option<String>, ReadError> {
        let Some(value) = self.string(name)? else {
            return Ok(None);
        };
        validate::check_label(&self.path(name), value, max_chars)?;
        Ok(Some(value.to_owned()))
    }

    /// Reads optional free text, such as a version string.
    pub(crate) fn text(&self, name: &str, max_bytes: usize) -> Result<Option<String>, ReadError> {
        let Some(value) = self.string(name)? else {
            return Ok(None);
        };
        validate::check_text(&self.path(name), value, max_bytes)?;
        Ok(Some(value.to_owned()))
    }

    /// Reads a count or duration: a non-negative integer, or a non-negative number
    /// with a fraction, which is rounded down (Python producers send `time.time()`
    /// differences as floats).
    pub(crate) fn unsigned(&self, name: &str) -> Result<Option<u64>, ReadError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let wrong_type = || ReadError::wrong_type(&self.path(name), "a non-negative number", value);
        let Value::Number(number) = value else {
            return Err(wrong_type());
        };

        if let Some(integer) = number.as_u64() {
            return Ok(Some(integer));
        }
        match number.as_f64() {
            // `as` saturates at u64::MAX for larger floats.
            Some(float) if float.is_finite() && float >= 0.0 => Ok(Some(float.floor() as u64)),
            _ => Err(wrong_type()),
        }
    }

    /// Reads a rollout epoch: an integer, a string of decimal digits, or an RFC 3339
    /// timestamp string converted to Unix seconds.
    pub(crate) fn epoch(&self, name: &str) -> Result<Option<i64>, ReadError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let expected = "an integer or an RFC 3339 timestamp";
        match value {
            Value::Number(number) => number
                .as_i64()
                .map(Some)
                .ok_or_else(|| ReadError::wrong_type(&self.path(name), expected, value)),
            Value::String(text) => timestamp::parse_epoch(text).map(Some).ok_or_else(|| {
                ReadError::invalid_value(&self.path(name), text, format!("expected {expected}"))
            }),
            other => Err(ReadError::wrong_type(&self.path(name), expected, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            _ => panic!("test value is not an object"),
        }
    }

    #[test]
    fn null_counts_as_absent() {
        let object = object(json!({"a": null}));
        let fields = Fields::new(&object, "payload.");
        assert_eq!(fields.string("a"), Ok(None));
    }

    #[test]
    fn required_null_is_missing() {
        let object = object(json!({"a": null}));
        let fields = Fields::new(&object, "payload.");
        let error = fields.required_string("a").unwrap_err();
        assert_eq!(error, ReadError::missing("payload.a"));
    }

    #[test]
    fn string_of_wrong_type() {
        let object = object(json!({"a": 1}));
        let fields = Fields::new(&object, "");
        let error = fields.string("a").unwrap_err();
        assert_eq!(error.to_string(), "field a is a number, expected a string");
    }

    #[test]
    fn unsigned_rounds_float_down() {
        let object = object(json!({"a": 12.9}));
        assert_eq!(Fields::new(&object, "").unsigned("a"), Ok(Some(12)));
    }

    #[test]
    fn unsigned_rejects_negative() {
        let object = object(json!({"a": -1}));
        let error = Fields::new(&object, "").unsigned("a").unwrap_err();
        assert_eq!(error.label(), "wrong_type");
    }

    #[test]
    fn epoch_rejects_float() {
        let object = object(json!({"epoch": 3.5}));
        let error = Fields::new(&object, "").epoch("epoch").unwrap_err();
        assert_eq!(error.label(), "wrong_type");
    }

    #[test]
    fn epoch_from_digit_string() {
        let object = object(json!({"epoch": "7"}));
        assert_eq!(Fields::new(&object, "").epoch("epoch"), Ok(Some(7)));
    }

    #[test]
    fn uuid_invalid_value() {
        let object = object(json!({"id": "not-a-uuid"}));
        let error = Fields::new(&object, "").uuid("id").unwrap_err();
        assert_eq!(error.label(), "invalid_value");
    }
}
