//! Bearer-token authorization of the node API's writes, and the token file.

use std::path::{Path, PathBuf};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use super::error::ApiError;

/// A token file that cannot serve as the API token. Messages name the file, never
/// its contents.
#[derive(Debug, thiserror::Error)]
pub enum ApiTokenError {
    #[error("reading the API token file {path:?} failed: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API token file {path:?} is empty: write the token into it")]
    Empty { path: PathBuf },
    #[error(
        "the API token in {path:?} contains whitespace or control characters, which an Authorization header cannot carry"
    )]
    InvalidCharacters { path: PathBuf },
}

/// Reads the API token from `path`, without surrounding whitespace.
pub fn read_api_token(path: &Path) -> Result<String, ApiTokenError> {
    let contents = std::fs::read_to_string(path).map_err(|source| ApiTokenError::Read {
        path: path.to_owned(),
        source,
    })?;

    let token = contents.trim();
    if token.is_empty() {
        return Err(ApiTokenError::Empty {
            path: path.to_owned(),
        });
    }
    if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ApiTokenError::InvalidCharacters {
            path: path.to_owned(),
        });
    }
    Ok(token.to_owned())
}

/// Checks the `Authorization: Bearer <token>` header against the configured token.
pub(super) fn authorize(configured: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = configured else {
        return Err(ApiError::TokenNotConfigured);
    };

    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .ok_or(ApiError::MissingToken)?;
    if constant_time_eq(expected.as_bytes(), presented.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::WrongToken)
    }
}

/// Returns the token of a `Bearer` credential. The scheme name is case-insensitive.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares in time that depends only on the length of `expected`, so response
/// times do not reveal how much of a guessed token matched.
fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    let mut difference = expected.len() ^ presented.len();
    for (index, byte) in expected.iter().enumerate() {
        let other = presented.get(index).copied().unwrap_or(0);
        difference |= usize::from(byte ^ other);
        difference = std::hint::black_box(difference);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        headers
    }

    #[test]
    fn equal_tokens_match() {
        assert!(constant_time_eq(b"secret", b"secret"));
    }

    #[test]
    fn different_tokens_differ() {
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b""));
    }

    #[test]
    fn right_token_authorized() {
        assert!(authorize(Some("s3cret"), &headers("Bearer s3cret")).is_ok());
        assert!(authorize(Some("s3cret"), &headers("bearer s3cret")).is_ok());
    }

    #[test]
    fn wrong_token_forbidden() {
        let result = authorize(Some("s3cret"), &headers("Bearer guess"));
        assert!(matches!(result, Err(ApiError::WrongToken)));
    }

    #[test]
    fn missing_token_unauthorized() {
        let result = authorize(Some("s3cret"), &HeaderMap::new());
        assert!(matches!(result, Err(ApiError::MissingToken)));
        let result = authorize(Some("s3cret"), &headers("Basic czNjcmV0"));
        assert!(matches!(result, Err(ApiError::MissingToken)));
        let result = authorize(Some("s3cret"), &headers("Bearer "));
        assert!(matches!(result, Err(ApiError::MissingToken)));
    }

    #[test]
    fn unconfigured_token_disables() {
        let result = authorize(None, &headers("Bearer anything"));
        assert!(matches!(result, Err(ApiError::TokenNotConfigured)));
    }

    #[test]
    fn token_file_trimmed() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "  s3cret\n").unwrap();
        assert_eq!(read_api_token(file.path()).unwrap(), "s3cret");
    }

    #[test]
    fn empty_token_file_rejected() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), " \n\t").unwrap();
        assert!(matches!(
            read_api_token(file.path()),
            Err(ApiTokenError::Empty { .. })
        ));
    }

    #[test]
    fn token_with_space_rejected() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "two words\n").unwrap();
        assert!(matches!(
            read_api_token(file.path()),
            Err(ApiTokenError::InvalidCharacters { .. })
        ));
    }

    #[test]
    fn missing_token_file_named() {
        let error = read_api_token(Path::new("/nonexistent/token")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/token"));
    }
}
