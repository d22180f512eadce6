//! Errors of authentication, of building a verifier or signer, and of minting tokens.
//!
//! An [`AuthError`] goes back to the caller as the gRPC status message, so no variant contains
//! any byte of the token: not the token, not a header value such as `alg` or `kid`, not a
//! claim value. Fields hold only constants and the server's own configuration.

use std::path::PathBuf;

/// Reason a request could not be authenticated. Every variant maps to UNAUTHENTICATED.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing credentials: the request has no `authorization` metadata; send `authorization: Bearer <token>`"
    )]
    MissingCredentials,

    #[error(
        "invalid authorization metadata: {reason}; send exactly one `authorization: Bearer <token>` entry"
    )]
    InvalidAuthorizationMetadata { reason: &'static str },

    #[error(
        "unsupported authorization scheme: only the Bearer scheme is accepted; send `authorization: Bearer <token>`"
    )]
    UnsupportedScheme,

    #[error(
        "empty bearer token: the `authorization` metadata has no token after `Bearer`; send a token"
    )]
    EmptyBearerToken,

    #[error(
        "bearer token too large: {size} bytes, the maximum is {max} bytes; request a token with fewer claims"
    )]
    TokenTooLarge { size: usize, max: usize },

    #[error(
        "malformed token: {reason}; send a JWT in compact form (three base64url parts separated by dots)"
    )]
    MalformedToken { reason: &'static str },

    #[error(
        "unsupported token algorithm {algorithm}: the accepted algorithms are {accepted}; request a token signed with one of them"
    )]
    UnsupportedAlgorithm {
        /// A name from a fixed list of JOSE algorithm names, or "unrecognized".
        algorithm: &'static str,
        accepted: &'static str,
    },

    #[error(
        "unsupported critical header: the token header lists `crit` extensions, and this server implements none; request a token without `crit`"
    )]
    CriticalHeader,

    #[error(
        "missing key id: the token header has no `kid`; request a token from an issuer that names its signing key"
    )]
    MissingKeyId,

    #[error(
        "unknown key id: the token's `kid` names no configured verification key; the key may have been rotated out, so request a new token, or add the issuer's public key to the verifier's keys"
    )]
    UnknownKeyId,

    #[error(
        "algorithm mismatch: the token says {algorithm} but its key verifies only {key_algorithm}; request a token signed with the key's algorithm"
    )]
    AlgorithmMismatch {
        algorithm: &'static str,
        key_algorithm: &'static str,
    },

    #[error(
        "invalid signature: the token was not signed by the key its `kid` names, or was altered; request a new token"
    )]
    BadSignature,

    #[error("token expired: its `exp` time has passed; request a new token")]
    Expired,

    #[error(
        "token not yet valid: its `nbf` time is in the future; check the clocks of the issuer and this server, or wait"
    )]
    NotYetValid,

    #[error(
        "wrong issuer: the token's `iss` is not {expected:?}; request a token from that issuer"
    )]
    WrongIssuer { expected: String },

    #[error(
        "wrong audience: the token's `aud` does not include {expected:?}; request a token for that audience"
    )]
    WrongAudience { expected: String },

    #[error("missing claim: the token has no `{claim}` claim; request a token that sets it")]
    MissingClaim { claim: &'static str },

    #[error(
        "invalid claim `{claim}`: it must be {expected}; request a token that sets it correctly"
    )]
    InvalidClaim {
        claim: &'static str,
        expected: &'static str,
    },

    #[error(
        "invalid role: entry {position} of the `roles` claim is not a Docket role; the roles are viewer, analyst, lead, auditor, admin and service"
    )]
    InvalidRole {
        /// Position of the rejected entry in the claim, counted from 1.
        position: usize,
    },

    #[error(
        "invalid roles: a token with the `service` role must carry no other role; request a service token with only `service`, or a personal token without it"
    )]
    MixedServiceRoles,
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> tonic::Status {
        tonic::Status::unauthenticated(error.to_string())
    }
}

/// Failure to build a [`crate::Verifier`] or [`crate::Signer`], or to reload its keys.
///
/// These are configuration errors for the operator, so they name paths and key ids.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid leeway: {leeway:?} is more than the maximum of {max:?}; set a smaller leeway")]
    LeewayTooLarge {
        leeway: std::time::Duration,
        max: std::time::Duration,
    },

    #[error("missing {setting}: it must not be empty")]
    EmptySetting { setting: &'static str },

    #[error(
        "no verification keys: the key sources hold no key; add a PEM public key or a JWKS document"
    )]
    NoKeys,

    #[error(
        "development HS256 secret too short: {length} bytes, the minimum is {min}; use a longer random secret"
    )]
    DevSecretTooShort { length: usize, min: usize },

    #[error("failed to read key file {path}: {source}")]
    ReadKeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid key {kid:?} from {origin}: {reason}")]
    InvalidKey {
        kid: String,
        origin: String,
        reason: String,
    },

    #[error("invalid JWKS document {origin}: {reason}")]
    InvalidJwks { origin: String, reason: String },

    #[error(
        "duplicate key id {kid:?}: it is defined by {first} and by {second}; give each key its own id"
    )]
    DuplicateKeyId {
        kid: String,
        first: String,
        second: String,
    },

    #[error("invalid signing key: {reason}; pass an Ed25519 private key in PKCS#8 PEM form")]
    InvalidSigningKey { reason: String },

    #[error("failed to generate a key: the operating system's random source failed: {reason}")]
    RandomSource { reason: String },
}

/// Failure of [`crate::Signer::mint`] to make a token.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error("invalid subject: it must be 1 to {max} bytes, got {length}")]
    InvalidSubject { length: usize, max: usize },

    #[error("missing roles: a token needs at least one role")]
    NoRoles,

    #[error("invalid roles: the `service` role cannot be combined with other roles")]
    MixedServiceRoles,

    #[error("invalid time to live: {seconds} s, it must be between 1 s and {max} s")]
    InvalidTtl { seconds: u64, max: u64 },

    #[error("failed to sign the token: {reason}")]
    Signing { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_error_becomes_unauthenticated() {
        let status = tonic::Status::from(AuthError::Expired);

        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(status.message(), AuthError::Expired.to_string());
    }

    #[test]
    fn auth_error_messages_give_next_step() {
        let errors = [
            AuthError::MissingCredentials,
            AuthError::InvalidAuthorizationMetadata {
                reason: "the value is not ASCII",
            },
            AuthError::UnsupportedScheme,
            AuthError::EmptyBearerToken,
            AuthError::TokenTooLarge {
                size: 9000,
                max: 8192,
            },
            AuthError::MalformedToken {
                reason: "the header is not base64url",
            },
            AuthError::UnsupportedAlgorithm {
                algorithm: "none",
                accepted: "EdDSA",
            },
            AuthError::CriticalHeader,
            AuthError::MissingKeyId,
            AuthError::UnknownKeyId,
            AuthError::AlgorithmMismatch {
                algorithm: "RS256",
                key_algorithm: "EdDSA",
            },
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::WrongIssuer {
                expected: "docket".into(),
            },
            AuthError::WrongAudience {
                expected: "docket".into(),
            },
            AuthError::MissingClaim { claim: "sub" },
            AuthError::InvalidClaim {
                claim: "exp",
                expected: "a number",
            },
            AuthError::InvalidRole { position: 1 },
            AuthError::MixedServiceRoles,
        ];

        for error in errors {
            let message = error.to_string();
            let gives_next_step = ["send", "request", "check", "add", "the roles are"]
                .iter()
                .any(|advice| message.contains(advice));
            assert!(gives_next_step, "message gives no next step: {message}");
        }
    }
}
