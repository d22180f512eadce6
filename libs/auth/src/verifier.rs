//! Token verification: header checks, key selection by `kid`, signature check through
//! jsonwebtoken, then claim validation.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tonic::metadata::MetadataMap;

use crate::bearer::{MAX_TOKEN_BYTES, bearer_token};
use crate::claims::{CheckedClaims, ClaimRules, check_claims, check_time};
use crate::error::{AuthError, ConfigError};
use crate::keys::{KeySet, KeySource, algorithm_name};
use crate::principal::Principal;

/// Maximum clock skew that a verifier may tolerate on `exp` and `nbf`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// Minimum length of the development HS256 secret, the output size of SHA-256 (RFC 7518
/// section 3.2).
pub const MIN_DEV_SECRET_BYTES: usize = 32;

/// Settings of a [`Verifier`].
#[derive(Clone)]
pub struct VerifierConfig {
    /// The exact `iss` value that tokens must carry.
    pub issuer: String,
    /// The value that the token's `aud` (a string or an array) must include.
    pub audience: String,
    /// Tolerated clock skew on `exp` and `nbf`, at most [`MAX_LEEWAY`].
    pub leeway: Duration,
    /// Sources of the public keys. Tokens signed with EdDSA, ES256 or RS256 name their key
    /// with the `kid` header.
    pub keys: Vec<KeySource>,
    /// Development only: a shared secret that also lets HS256 tokens in, whatever their
    /// `kid`. Anyone holding it can mint a token for any subject and role, so production
    /// configurations leave it `None`.
    pub dev_hs256_secret: Option<Vec<u8>>,
}

impl fmt::Debug for VerifierConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("VerifierConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("keys", &self.keys)
            .field(
                "dev_hs256_secret",
                &self.dev_hs256_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Checks bearer tokens and turns them into [`Principal`]s.
///
/// One verifier is shared by all requests of a service (wrap it in an `Arc`). The key set
/// sits behind a lock so that [`Verifier::reload`] swaps in rotated keys while requests
/// keep being verified.
pub struct Verifier {
    issuer: String,
    audience: String,
    leeway_seconds: u64,
    sources: Vec<KeySource>,
    keys: RwLock<Arc<KeySet>>,
    dev_secret: Option<DecodingKey>,
    verified: Mutex<VerifiedTokens>,
}

/// Maximum number of tokens a verifier remembers as verified. Clients send the same token
/// with every call until it expires, so a few thousand cover many clients. Each entry
/// stores the token text, typically under 1 KiB.
const VERIFIED_TOKENS_CAPACITY: usize = 4096;

/// Tokens whose signature and claims passed, keyed by their exact text, so that a repeated
/// token skips the signature check. Entries keep the time claims, which are checked again
/// on every use, and all entries are dropped when the keys are reloaded.
#[derive(Default)]
struct VerifiedTokens {
    /// Counts key reloads. A verification that started under an older key set does not
    /// store its result.
    key_generation: u64,
    entries: HashMap<String, VerifiedToken>,
}

struct VerifiedToken {
    principal: Principal,
    expires_at: u64,
    not_before: Option<u64>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_seconds", &self.leeway_seconds)
            .field("key_ids", &self.key_ids())
            .field("dev_hs256", &self.dev_secret.is_some())
            .finish()
    }
}

/// The algorithms that a configured key may verify, in the order messages list them.
const ACCEPTED: &str = "EdDSA, ES256 and RS256";
const ACCEPTED_WITH_DEV_SECRET: &str = "EdDSA, ES256, RS256 and HS256";

impl Verifier {
    /// Validates the settings and reads every key source.
    pub fn new(config: VerifierConfig) -> Result<Verifier, ConfigError> {
        if config.leeway > MAX_LEEWAY {
            return Err(ConfigError::LeewayTooLarge {
                leeway: config.leeway,
                max: MAX_LEEWAY,
            });
        }
        if config.issuer.is_empty() {
            return Err(ConfigError::EmptySetting { setting: "issuer" });
        }
        if config.audience.is_empty() {
            return Err(ConfigError::EmptySetting {
                setting: "audience",
            });
        }

        let dev_secret = match &config.dev_hs256_secret {
            None => None,
            Some(secret) if secret.len() < MIN_DEV_SECRET_BYTES => {
                return Err(ConfigError::DevSecretTooShort {
                    length: secret.len(),
                    min: MIN_DEV_SECRET_BYTES,
                });
            }
            Some(secret) => Some(DecodingKey::from_secret(secret).map_err(|_| {
                ConfigError::DevSecretTooShort {
                    length: secret.len(),
                    min: MIN_DEV_SECRET_BYTES,
                }
            })?),
        };

        let keys = KeySet::load(&config.keys)?;
        if keys.len() == 0 && dev_secret.is_none() {
            return Err(ConfigError::NoKeys);
        }

        Ok(Verifier {
            issuer: config.issuer,
            audience: config.audience,
            leeway_seconds: config.leeway.as_secs(),
            sources: config.keys,
            keys: RwLock::new(Arc::new(keys)),
            dev_secret,
            verified: Mutex::new(VerifiedTokens::default()),
        })
    }

    /// Reads the key sources again and swaps in the new key set, returning its size.
    ///
    /// On any error the previous keys stay in use, so a half-written key file does not
    /// lock every caller out. Call it on a timer or on SIGHUP to pick up rotated keys.
    pub fn reload(&self) -> Result<usize, ConfigError> {
        let keys = KeySet::load(&self.sources)?;
        if keys.len() == 0 && self.dev_secret.is_none() {
            return Err(ConfigError::NoKeys);
        }
        let count = keys.len();
        let mut verified = self.verified_tokens();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        verified.key_generation += 1;
        verified.entries.clear();
        Ok(count)
    }

    /// Returns the ids of the loaded keys, sorted, for startup and reload logs.
    pub fn key_ids(&self) -> Vec<String> {
        self.current_keys().key_ids()
    }

    /// Verifies the bearer token in the request metadata.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, AuthError> {
        self.verify(bearer_token(metadata)?)
    }

    /// Verifies one compact JWT against the current keys and clock.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since_epoch| since_epoch.as_secs());
        self.verify_at(token, now)
    }

    /// Verifies `token` as of `now`, in seconds since the Unix epoch. A token verified
    /// before under the current keys skips the signature check, but its `exp` and `nbf`
    /// are checked against `now` every time.
    pub(crate) fn verify_at(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        let key_generation = {
            let verified = self.verified_tokens();
            if let Some(entry) = verified.entries.get(token) {
                check_time(entry.expires_at, entry.not_before, self.leeway_seconds, now)?;
                return Ok(entry.principal.clone());
            }
            verified.key_generation
        };

        let CheckedClaims {
            principal,
            expires_at,
            not_before,
        } = self.verify_signature_and_claims(token, now)?;

        let mut verified = self.verified_tokens();
        if verified.key_generation == key_generation {
            if verified.entries.len() >= VERIFIED_TOKENS_CAPACITY {
                verified.entries.clear();
            }
            let entry = VerifiedToken {
                principal: principal.clone(),
                expires_at,
                not_before,
            };
            verified.entries.insert(token.to_owned(), entry);
        }
        Ok(principal)
    }

    /// Checks the header, the signature and the claims.
    fn verify_signature_and_claims(&self, token: &str, now: u64) -> Result<CheckedClaims, AuthError> {
        let header = parse_header(token)?;

        let keys = self.current_keys();
        let (algorithm, key) = self.select_key(&header, &keys)?;

        let mut validation = Validation::new(algorithm);
        // Claims are checked by `check_claims`, which reports each fault apart.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();

        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|error| signature_error(error.kind()))?
            .claims;

        let rules = ClaimRules {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway_seconds: self.leeway_seconds,
        };
        check_claims(&claims, &rules, now)
    }

    fn verified_tokens(&self) -> std::sync::MutexGuard<'_, VerifiedTokens> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current_keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Picks the key for the token: the dev secret for HS256 when configured, otherwise the
    /// key named by `kid`, which must be bound to the token's algorithm.
    fn select_key<'k>(
        &'k self,
        header: &Header,
        keys: &'k KeySet,
    ) -> Result<(Algorithm, &'k DecodingKey), AuthError> {
        if let ("HS256", Some(secret)) = (header.algorithm, &self.dev_secret) {
            return Ok((Algorithm::HS256, secret));
        }

        let algorithm = match header.algorithm {
            "EdDSA" => Algorithm::EdDSA,
            "ES256" => Algorithm::ES256,
            "RS256" => Algorithm::RS256,
            other => {
                let accepted = if self.dev_secret.is_some() {
                    ACCEPTED_WITH_DEV_SECRET
                } else {
                    ACCEPTED
                };
                return Err(AuthError::UnsupportedAlgorithm {
                    algorithm: other,
                    accepted,
                });
            }
        };

        let kid = header.kid.as_deref().ok_or(AuthError::MissingKeyId)?;
        let entry = keys.get(kid).ok_or(AuthError::UnknownKeyId)?;
        if entry.algorithm != algorithm {
            return Err(AuthError::AlgorithmMismatch {
                algorithm: algorithm_name(algorithm),
                key_algorithm: algorithm_name(entry.algorithm),
            });
        }
        Ok((algorithm, &entry.key))
    }
}

/// The fields of a JOSE header that select the key.
struct Header {
    /// The `alg` value when it is a known JOSE name, else "unrecognized". It is a
    /// `&'static str` so that messages never echo bytes of the token.
    algorithm: &'static str,
    kid: Option<String>,
}

/// Registered JOSE signature algorithm names, the only `alg` values that messages may name.
const KNOWN_ALGORITHMS: [&str; 17] = [
    "none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "ES256K", "EdDSA", "Ed25519", "Ed448",
];

/// Decodes the header after checking the token's size and shape, so that nothing larger
/// than [`MAX_TOKEN_BYTES`] or outside the base64url alphabet reaches a decoder.
fn parse_header(token: &str) -> Result<Header, AuthError> {
    if token.is_empty() {
        return Err(AuthError::EmptyBearerToken);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TokenTooLarge {
            size: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    let is_base64url_or_dot =
        |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.');
    if !token.bytes().all(is_base64url_or_dot) {
        return Err(AuthError::MalformedToken {
            reason: "the token contains characters other than base64url letters and dots",
        });
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(AuthError::MalformedToken {
            reason: "the token does not have three parts",
        });
    }

    let header_json = URL_SAFE_NO_PAD
        .decode(parts[0])
        .map_err(|_| AuthError::MalformedToken {
            reason: "the header is not valid base64url",
        })?;
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&header_json) else {
        return Err(AuthError::MalformedToken {
            reason: "the header is not a JSON object",
        });
    };

    let Some(Value::String(algorithm)) = fields.get("alg") else {
        return Err(AuthError::MalformedToken {
            reason: "the header has no `alg` string",
        });
    };
    let algorithm = KNOWN_ALGORITHMS
        .into_iter()
        .find(|known| known == algorithm)
        .unwrap_or("unrecognized");

    // RFC 7515 section 4.1.11: a recipient that does not implement the listed extensions
    // must reject the token, and this verifier implements none.
    if fields.contains_key("crit") {
        return Err(AuthError::CriticalHeader);
    }

    let kid = match fields.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => {
            return Err(AuthError::MalformedToken {
                reason: "the header's `kid` is not a string",
            });
        }
    };
    Ok(Header { algorithm, kid })
}

/// Maps a jsonwebtoken decoding error to the caller's error without its text, which can
/// quote decoded token content.
fn signature_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        ErrorKind::Base64(_) => AuthError::MalformedToken {
            reason: "a part of the token is not valid base64url",
        },
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => AuthError::MalformedToken {
            reason: "the header or the claims are not a valid JSON object",
        },
        _ => AuthError::MalformedToken {
            reason: "the token could not be decoded",
        },
    }
}

#[cfg(test)]
mod tests;
