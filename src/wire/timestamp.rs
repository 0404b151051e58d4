//! Timestamps and rollout epochs as producers send them, and as the writer emits
//! them.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Formats for timestamps without an offset, which are read as UTC. `%.f` also
/// matches no fraction at all.
const FORMATS_WITHOUT_OFFSET: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];

/// Parses an RFC 3339 timestamp, also accepting an offset without colon
/// (`+0000`) and no offset at all, which means UTC.
pub(crate) fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(timestamp) = DateTime::parse_from_rfc3339(text) {
        return Some(timestamp.with_timezone(&Utc));
    }
    if let Ok(timestamp) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(timestamp.with_timezone(&Utc));
    }
    FORMATS_WITHOUT_OFFSET.iter().find_map(|format| {
        NaiveDateTime::parse_from_str(text, format)
            .ok()
            .map(|naive| naive.and_utc())
    })
}

/// Parses an epoch sent as a string: decimal digits are the epoch itself, and a
/// timestamp becomes its Unix time in seconds.
pub(crate) fn parse_epoch(text: &str) -> Option<i64> {
    if let Ok(epoch) = text.parse::<i64>() {
        return Some(epoch);
    }
    parse_timestamp(text).map(|timestamp| timestamp.timestamp())
}

/// Formats a timestamp as RFC 3339 with offset `+00:00`, because Python's
/// `datetime.fromisoformat` reads `Z` only from Python 3.11 on. The fraction has as
/// many digits as needed (0, 3, 6 or 9), so nothing is lost. Before 3.11, Python
/// reads only what its own `isoformat` writes, so it also rejects 9 digits, which
/// timestamps in whole microseconds never need.
pub(crate) fn format_timestamp(timestamp: &DateTime<Utc>) -> String {
    timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

pub(crate) fn serialize<S: Serializer>(
    timestamp: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_timestamp(timestamp))
}

pub(crate) fn serialize_option<S: Serializer>(
    timestamp: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match timestamp {
        Some(timestamp) => serialize(timestamp, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn timestamp_with_offset_converts_to_utc() {
        let parsed = parse_timestamp("2025-11-13T16:05:09.5+02:00");
        assert_eq!(parsed, Some(utc("2025-11-13T14:05:09.5Z")));
    }

    #[test]
    fn timestamp_with_z() {
        let parsed = parse_timestamp("2025-11-13T14:05:09Z");
        assert_eq!(parsed, Some(utc("2025-11-13T14:05:09Z")));
    }

    #[test]
    fn timestamp_offset_without_colon() {
        let parsed = parse_timestamp("2025-11-13T14:05:09.412871+0000");
        assert_eq!(parsed, Some(utc("2025-11-13T14:05:09.412871Z")));
    }

    #[test]
    fn timestamp_without_offset_is_utc() {
        let parsed = parse_timestamp("2025-11-13T14:05:09.412871");
        assert_eq!(parsed, Some(utc("2025-11-13T14:05:09.412871Z")));
    }

    #[test]
    fn timestamp_without_offset_or_fraction() {
        let parsed = parse_timestamp("2025-11-13T14:05:09");
        assert_eq!(parsed, Some(utc("2025-11-13T14:05:09Z")));
    }

    #[test]
    fn timestamp_with_space_separator() {
        let parsed = parse_timestamp("2025-11-13 14:05:09.25");
        assert_eq!(parsed, Some(utc("2025-11-13T14:05:09.25Z")));
    }

    #[test]
    fn timestamp_rejects_date_only() {
        assert_eq!(parse_timestamp("2025-11-13"), None);
    }

    #[test]
    fn timestamp_rejects_text() {
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn epoch_from_digits() {
        assert_eq!(parse_epoch("3"), Some(3));
    }

    #[test]
    fn epoch_from_timestamp() {
        assert_eq!(
            parse_epoch("2026-01-10T08:00:00+00:00"),
            Some(1_768_032_000)
        );
    }

    #[test]
    fn epoch_rejects_text() {
        assert_eq!(parse_epoch("blue"), None);
    }

    #[test]
    fn format_uses_colon_offset() {
        let timestamp = Utc.with_ymd_and_hms(2025, 11, 13, 14, 5, 9).unwrap();
        assert_eq!(format_timestamp(&timestamp), "2025-11-13T14:05:09+00:00");
    }

    #[test]
    fn format_keeps_microseconds() {
        let timestamp = utc("2025-11-13T14:05:09.412871Z");
        assert_eq!(
            format_timestamp(&timestamp),
            "2025-11-13T14:05:09.412871+00:00"
        );
    }
}
