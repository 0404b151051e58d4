//! Checks on the raw bytes of a message value, run before JSON parsing so that
//! oversized, non-UTF-8 or deeply nested input is rejected cheaply.

use super::error::ReadError;
use super::limits::ReadLimits;

/// Returns the message as text after checking its size, UTF-8 encoding and nesting
/// depth.
pub(crate) fn check_raw<'a>(bytes: &'a [u8], limits: &ReadLimits) -> Result<&'a str, ReadError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(ReadError::TooLarge {
            size: bytes.len(),
            limit: limits.max_message_bytes,
        });
    }

    let text = std::str::from_utf8(bytes).map_err(|error| ReadError::NotUtf8 {
        offset: error.valid_up_to(),
    })?;

    check_depth(text, limits.max_depth)?;
    Ok(text)
}

/// Rejects text whose arrays and objects nest more than `max_depth` levels.
///
/// Brackets inside JSON strings do not count. Malformed JSON passes here and is
/// left to the parser.
fn check_depth(text: &str, max_depth: usize) -> Result<(), ReadError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut after_backslash = false;

    // Scanning bytes is safe on UTF-8 text: bytes of multi-byte characters are all
    // >= 0x80, so they never equal a quote, backslash or bracket.
    for byte in text.bytes() {
        if in_string {
            if after_backslash {
                after_backslash = false;
            } else if byte == b'\\' {
                after_backslash = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }

        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(ReadError::TooDeep { limit: max_depth });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_at_limit_passes() {
        let text = format!("{}{}", "[".repeat(3), "]".repeat(3));
        assert_eq!(check_depth(&text, 3), Ok(()));
    }

    #[test]
    fn depth_over_limit_fails() {
        let text = format!("{}{}", "[".repeat(4), "]".repeat(4));
        assert_eq!(check_depth(&text, 3), Err(ReadError::TooDeep { limit: 3 }));
    }

    #[test]
    fn depth_ignores_brackets_in_strings() {
        let text = r#"{"a": "[[[[{{{{", "b": "\"[[[["}"#;
        assert_eq!(check_depth(text, 1), Ok(()));
    }

    #[test]
    fn depth_counts_after_escaped_backslash() {
        // The string is `\`, so the brackets after it are structure.
        let text = r#"{"a": "\\", "b": [[1]]}"#;
        assert_eq!(check_depth(text, 2), Err(ReadError::TooDeep { limit: 2 }));
    }

    #[test]
    fn depth_allows_siblings() {
        let text = r#"{"a": {"b": 1}, "c": {"d": 2}, "e": [1, [2]]}"#;
        assert_eq!(check_depth(text, 3), Ok(()));
    }

    #[test]
    fn size_over_limit_fails() {
        let limits = ReadLimits {
            max_message_bytes: 4,
            ..ReadLimits::default()
        };
        let error = check_raw(b"{ }  ", &limits);
        assert_eq!(error, Err(ReadError::TooLarge { size: 5, limit: 4 }));
    }

    #[test]
    fn invalid_utf8_reports_offset() {
        let error = check_raw(b"{\"a\xff\": 1}", &ReadLimits::default());
        assert_eq!(error, Err(ReadError::NotUtf8 { offset: 3 }));
    }
}
