//! Extraction of the bearer token from gRPC request metadata (RFC 6750, section 2.1).

use tonic::metadata::MetadataMap;

use crate::error::AuthError;

/// Metadata key of the credentials, in lowercase because gRPC metadata are HTTP/2 headers.
pub const AUTHORIZATION: &str = "authorization";

/// Maximum token size in bytes. Docket tokens are a few hundred bytes, so a larger one is
/// rejected before any decoding work is spent on it.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Returns the token of the single `authorization: Bearer <token>` entry in `metadata`.
///
/// The scheme name is matched without regard to case, as HTTP auth schemes are, and the
/// spaces around the token are ignored.
pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, AuthError> {
    let mut values = metadata.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::MissingCredentials)?;
    if values.next().is_some() {
        return Err(AuthError::InvalidAuthorizationMetadata {
            reason: "the request has more than one `authorization` entry",
        });
    }

    // A value far beyond the token limit is rejected by size before it is scanned.
    if value.len() > MAX_TOKEN_BYTES + "bearer ".len() + 64 {
        return Err(AuthError::TokenTooLarge {
            size: value.len(),
            max: MAX_TOKEN_BYTES,
        });
    }

    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidAuthorizationMetadata {
            reason: "the value contains bytes that are not visible ASCII",
        })?;
    parse_bearer(value)
}

fn parse_bearer(value: &str) -> Result<&str, AuthError> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::UnsupportedScheme);
    }

    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::EmptyBearerToken);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TokenTooLarge {
            size: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use tonic::metadata::{MetadataMap, MetadataValue};

    use super::*;

    fn metadata_with(values: &[&str]) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        for value in values {
            let value: MetadataValue<_> = value.parse().expect("valid metadata value");
            metadata.append(AUTHORIZATION, value);
        }
        metadata
    }

    #[test]
    fn bearer_token_is_extracted() {
        let metadata = metadata_with(&["Bearer abc.def.ghi"]);

        assert_eq!(bearer_token(&metadata), Ok("abc.def.ghi"));
    }

    #[test]
    fn bearer_scheme_ignores_case() {
        let metadata = metadata_with(&["bEaReR abc.def.ghi"]);

        assert_eq!(bearer_token(&metadata), Ok("abc.def.ghi"));
    }

    #[test]
    fn bearer_token_ignores_surrounding_spaces() {
        let metadata = metadata_with(&["Bearer   abc.def.ghi "]);

        assert_eq!(bearer_token(&metadata), Ok("abc.def.ghi"));
    }

    #[test]
    fn missing_header_is_rejected() {
        assert_eq!(
            bearer_token(&MetadataMap::new()),
            Err(AuthError::MissingCredentials)
        );
    }

    #[test]
    fn empty_bearer_is_rejected() {
        for value in ["Bearer", "Bearer ", "Bearer    "] {
            let metadata = metadata_with(&[value]);

            assert_eq!(
                bearer_token(&metadata),
                Err(AuthError::EmptyBearerToken),
                "value {value:?}"
            );
        }
    }

    #[test]
    fn empty_header_value_is_rejected() {
        let metadata = metadata_with(&[""]);

        assert_eq!(bearer_token(&metadata), Err(AuthError::UnsupportedScheme));
    }

    #[test]
    fn other_schemes_are_rejected() {
        for value in [
            "Basic dXNlcjpwYXNz",
            "Token abc.def.ghi",
            "abc.def.ghi",
            "Bearer:abc.def.ghi",
        ] {
            let metadata = metadata_with(&[value]);

            assert_eq!(
                bearer_token(&metadata),
                Err(AuthError::UnsupportedScheme),
                "value {value:?}"
            );
        }
    }

    #[test]
    fn two_authorization_entries_are_rejected() {
        let metadata = metadata_with(&["Bearer abc.def.ghi", "Bearer jkl.mno.pqr"]);

        assert!(matches!(
            bearer_token(&metadata),
            Err(AuthError::InvalidAuthorizationMetadata { .. })
        ));
    }

    #[test]
    fn non_ascii_value_is_rejected() {
        let mut metadata = MetadataMap::new();
        let value =
            MetadataValue::try_from("Bearer é.é.é".as_bytes()).expect("opaque bytes are allowed");
        metadata.insert(AUTHORIZATION, value);

        assert!(matches!(
            bearer_token(&metadata),
            Err(AuthError::InvalidAuthorizationMetadata { .. })
        ));
    }

    #[test]
    fn one_megabyte_header_is_rejected() {
        let value = format!("Bearer {}", "a".repeat(1024 * 1024));
        let metadata = metadata_with(&[&value]);

        assert_eq!(
            bearer_token(&metadata),
            Err(AuthError::TokenTooLarge {
                size: value.len(),
                max: MAX_TOKEN_BYTES
            })
        );
    }

    #[test]
    fn token_just_over_limit_is_rejected() {
        let value = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        let metadata = metadata_with(&[&value]);

        assert_eq!(
            bearer_token(&metadata),
            Err(AuthError::TokenTooLarge {
                size: MAX_TOKEN_BYTES + 1,
                max: MAX_TOKEN_BYTES
            })
        );
    }

    #[test]
    fn token_at_limit_is_accepted() {
        let token = "a".repeat(MAX_TOKEN_BYTES);
        let metadata = metadata_with(&[&format!("Bearer {token}")]);

        assert_eq!(bearer_token(&metadata), Ok(token.as_str()));
    }
}
