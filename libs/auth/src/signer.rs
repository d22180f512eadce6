//! Token minting with an Ed25519 key, for development tokens and service-to-service calls,
//! and generation of Ed25519 key pairs.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::claims::MAX_CLAIM_TEXT_BYTES;
use crate::error::{ConfigError, MintError};
use crate::principal::Role;

/// Maximum lifetime of a minted token. A stolen token stays usable until it expires, and
/// Docket keeps no revocation list, so tokens are short-lived.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Mints EdDSA tokens that a [`crate::Verifier`] holding the matching public key under the
/// same `kid` accepts.
pub struct Signer {
    key: EncodingKey,
    kid: String,
    issuer: String,
    audience: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Signer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    roles: Vec<&'static str>,
}

impl Signer {
    /// Builds a signer from an Ed25519 private key in PKCS#8 PEM form (`PRIVATE KEY`).
    pub fn from_pem(
        private_pem: &[u8],
        kid: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Signer, ConfigError> {
        let (kid, issuer, audience) = (kid.into(), issuer.into(), audience.into());
        for (setting, value) in [
            ("key id", &kid),
            ("issuer", &issuer),
            ("audience", &audience),
        ] {
            if value.is_empty() {
                return Err(ConfigError::EmptySetting { setting });
            }
        }

        let key =
            EncodingKey::from_ed_pem(private_pem).map_err(|_| ConfigError::InvalidSigningKey {
                reason: "the PEM is not an Ed25519 private key".to_owned(),
            })?;
        // The PEM check above reads only the key type, so parse the key itself now rather
        // than fail on the first mint.
        let provider =
            CryptoProvider::try_get_default().ok_or_else(|| ConfigError::InvalidSigningKey {
                reason: "no jsonwebtoken crypto provider is available".to_owned(),
            })?;
        (provider.signer_factory)(&Algorithm::EdDSA, &key).map_err(|error| {
            ConfigError::InvalidSigningKey {
                reason: format!("unusable key: {error}"),
            }
        })?;

        Ok(Signer {
            key,
            kid,
            issuer,
            audience,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Mints a token for `subject` with `roles`, valid from now for `ttl`. It carries
    /// `iss`, `aud`, `sub`, `iat`, `nbf`, `exp`, `roles` and a random `jti`.
    pub fn mint(&self, subject: &str, roles: &[Role], ttl: Duration) -> Result<String, MintError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since_epoch| since_epoch.as_secs());
        self.mint_at(subject, roles, ttl, now)
    }

    pub(crate) fn mint_at(
        &self,
        subject: &str,
        roles: &[Role],
        ttl: Duration,
        now: u64,
    ) -> Result<String, MintError> {
        if subject.is_empty()
            || subject.len() > MAX_CLAIM_TEXT_BYTES
            || subject.chars().any(char::is_control)
        {
            return Err(MintError::InvalidSubject {
                length: subject.len(),
                max: MAX_CLAIM_TEXT_BYTES,
            });
        }
        if roles.is_empty() {
            return Err(MintError::NoRoles);
        }
        if roles.contains(&Role::Service) && roles.iter().any(|role| *role != Role::Service) {
            return Err(MintError::MixedServiceRoles);
        }
        if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
            return Err(MintError::InvalidTtl {
                seconds: ttl.as_secs(),
                max: MAX_TTL.as_secs(),
            });
        }

        let mut role_names: Vec<&'static str> = roles.iter().map(|role| role.as_str()).collect();
        role_names.sort_unstable();
        role_names.dedup();
        let claims = MintedClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: subject,
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            roles: role_names,
        };

        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|error| MintError::Signing {
            reason: error.to_string(),
        })
    }
}

/// A freshly generated Ed25519 key pair in PEM form.
pub struct Ed25519KeyPair {
    /// PKCS#8 `PRIVATE KEY` PEM, for [`Signer::from_pem`]. Keep it secret.
    pub private_pem: String,
    /// SPKI `PUBLIC KEY` PEM, for a verifier's [`crate::KeySource`].
    pub public_pem: String,
}

impl fmt::Debug for Ed25519KeyPair {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Ed25519KeyPair")
            .field("private_pem", &"[redacted]")
            .field("public_pem", &self.public_pem)
            .finish()
    }
}

/// Generates an Ed25519 key pair from the operating system's random source.
pub fn generate_ed25519_keypair() -> Result<Ed25519KeyPair, ConfigError> {
    let mut seed = [0u8; ed25519_dalek::SECRET_KEY_LENGTH];
    getrandom::fill(&mut seed).map_err(|error| ConfigError::RandomSource {
        reason: error.to_string(),
    })?;
    let signing_key = SigningKey::from_bytes(&seed);
    seed.fill(0);

    let encoding_error = |error: &dyn fmt::Display| ConfigError::InvalidSigningKey {
        reason: format!("failed to encode the generated key as PEM: {error}"),
    };
    let private_pem = signing_key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|error| encoding_error(&error))?;
    let public_pem = signing_key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|error| encoding_error(&error))?;

    Ok(Ed25519KeyPair {
        private_pem: private_pem.to_string(),
        public_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySource;
    use crate::principal::PrincipalKind;
    use crate::verifier::{Verifier, VerifierConfig};

    const NOW: u64 = 1_800_000_000;

    fn signer_and_verifier() -> (Signer, Verifier) {
        let pair = generate_ed25519_keypair().expect("key pair");
        let signer = Signer::from_pem(pair.private_pem.as_bytes(), "dev-1", "docket-dev", "docket")
            .expect("signer");
        let verifier = Verifier::new(VerifierConfig {
            issuer: "docket-dev".into(),
            audience: "docket".into(),
            leeway: Duration::from_secs(30),
            keys: vec![KeySource::Pem {
                kid: "dev-1".into(),
                pem: pair.public_pem.into_bytes(),
            }],
            dev_hs256_secret: None,
        })
        .expect("verifier");
        (signer, verifier)
    }

    #[test]
    fn minted_token_verifies() {
        let (signer, verifier) = signer_and_verifier();

        let token = signer
            .mint_at(
                "alice",
                &[Role::Analyst, Role::Viewer],
                Duration::from_secs(600),
                NOW,
            )
            .expect("mint");
        let principal = verifier.verify_at(&token, NOW).expect("verify");

        assert_eq!(principal.subject, "alice");
        assert_eq!(principal.roles, vec![Role::Viewer, Role::Analyst]);
        assert_eq!(principal.kind, PrincipalKind::Human);
        assert!(principal.token_id.is_some(), "minted tokens carry a jti");
    }

    #[test]
    fn minted_service_token_is_a_service_principal() {
        let (signer, verifier) = signer_and_verifier();

        let token = signer
            .mint_at(
                "docket-ticket",
                &[Role::Service],
                Duration::from_secs(300),
                NOW,
            )
            .expect("mint");

        assert_eq!(
            verifier.verify_at(&token, NOW).expect("verify").kind,
            PrincipalKind::Service
        );
    }

    #[test]
    fn minted_token_expires_after_ttl() {
        let (signer, verifier) = signer_and_verifier();

        let token = signer
            .mint_at("alice", &[Role::Viewer], Duration::from_secs(600), NOW)
            .expect("mint");

        assert_eq!(
            verifier.verify_at(&token, NOW + 600 + 30),
            Err(crate::AuthError::Expired)
        );
    }

    #[test]
    fn each_minted_token_has_its_own_jti() {
        let (signer, verifier) = signer_and_verifier();
        let mint = || {
            signer
                .mint_at("alice", &[Role::Viewer], Duration::from_secs(60), NOW)
                .expect("mint")
        };

        let first = verifier.verify_at(&mint(), NOW).expect("verify").token_id;
        let second = verifier.verify_at(&mint(), NOW).expect("verify").token_id;

        assert_ne!(first, second);
    }

    #[test]
    fn mint_rejects_bad_input() {
        let (signer, _) = signer_and_verifier();
        let hour = Duration::from_secs(3600);

        assert_eq!(
            signer.mint_at("", &[Role::Viewer], hour, NOW),
            Err(MintError::InvalidSubject {
                length: 0,
                max: MAX_CLAIM_TEXT_BYTES
            })
        );
        assert_eq!(
            signer.mint_at("alice", &[], hour, NOW),
            Err(MintError::NoRoles)
        );
        assert_eq!(
            signer.mint_at("alice", &[Role::Service, Role::Admin], hour, NOW),
            Err(MintError::MixedServiceRoles)
        );
        assert_eq!(
            signer.mint_at("alice", &[Role::Viewer], Duration::ZERO, NOW),
            Err(MintError::InvalidTtl {
                seconds: 0,
                max: MAX_TTL.as_secs()
            })
        );
        assert_eq!(
            signer.mint_at(
                "alice",
                &[Role::Viewer],
                MAX_TTL + Duration::from_secs(1),
                NOW
            ),
            Err(MintError::InvalidTtl {
                seconds: MAX_TTL.as_secs() + 1,
                max: MAX_TTL.as_secs()
            })
        );
    }

    #[test]
    fn signer_rejects_public_key() {
        let pair = generate_ed25519_keypair().expect("key pair");

        let result = Signer::from_pem(pair.public_pem.as_bytes(), "dev-1", "docket-dev", "docket");

        assert!(matches!(result, Err(ConfigError::InvalidSigningKey { .. })));
    }

    #[test]
    fn signer_rejects_ec_private_key() {
        let pem = include_bytes!("../testdata/ec-p256-private.pem");

        let result = Signer::from_pem(pem, "dev-1", "docket-dev", "docket");

        assert!(matches!(result, Err(ConfigError::InvalidSigningKey { .. })));
    }

    #[test]
    fn signer_rejects_empty_issuer() {
        let pair = generate_ed25519_keypair().expect("key pair");

        let result = Signer::from_pem(pair.private_pem.as_bytes(), "dev-1", "", "docket");

        assert!(matches!(
            result,
            Err(ConfigError::EmptySetting { setting: "issuer" })
        ));
    }

    #[test]
    fn generated_key_pairs_differ() {
        let first = generate_ed25519_keypair().expect("key pair");
        let second = generate_ed25519_keypair().expect("key pair");

        assert_ne!(first.private_pem, second.private_pem);
    }

    #[test]
    fn generated_pems_have_standard_labels() {
        let pair = generate_ed25519_keypair().expect("key pair");

        assert!(
            pair.private_pem
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    }

    #[test]
    fn key_pair_debug_hides_private_key() {
        let pair = generate_ed25519_keypair().expect("key pair");

        assert!(!format!("{pair:?}").contains("PRIVATE KEY"));
    }
}
