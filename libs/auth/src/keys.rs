//! Verification keys: where they come from, how each is bound to one algorithm, and the
//! key set that the verifier looks tokens up in by `kid`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use crate::error::ConfigError;

/// Minimum RSA modulus size in bits. Smaller keys are rejected because they are no longer
/// considered safe for signatures.
pub const MIN_RSA_BITS: usize = 2048;

/// A place the verifier reads public keys from. File sources are read again on each
/// [`crate::Verifier::reload`], so a key added to or removed from a file takes effect then.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// One PEM public key (SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`) with its key id.
    PemFile { kid: String, path: PathBuf },
    /// Every `*.pem` file directly in the directory, each keyed by its file stem:
    /// `keys/2026-11.pem` verifies tokens with `kid` "2026-11". Names starting with a dot
    /// are skipped, such as the `..data` entries of a mounted Kubernetes secret.
    PemDirectory(PathBuf),
    /// A JWKS document (RFC 7517 section 5) in a file. Every key needs a `kid`. Keys marked
    /// `"use": "enc"` are skipped because they are not signing keys.
    JwksFile(PathBuf),
    /// One PEM public key held in memory, such as one read from an environment variable.
    Pem { kid: String, pem: Vec<u8> },
    /// A JWKS document held in memory.
    Jwks(JwkSet),
}

/// A public key and the one algorithm it verifies.
pub(crate) struct VerificationKey {
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
    /// Origin of the key, a path or "an in-memory PEM", for configuration errors.
    origin: String,
}

/// The keys of all sources, by key id.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: HashMap<String, VerificationKey>,
}

impl KeySet {
    /// Reads every source. Any invalid key fails the whole load, so a reload never
    /// half-applies a broken change.
    pub(crate) fn load(sources: &[KeySource]) -> Result<KeySet, ConfigError> {
        let mut set = KeySet::default();
        for source in sources {
            match source {
                KeySource::PemFile { kid, path } => {
                    let pem = read_key_file(path)?;
                    set.insert(kid, pem_key(kid, &pem, &path.display().to_string())?)?;
                }
                KeySource::PemDirectory(directory) => {
                    for (kid, path) in pem_files(directory)? {
                        let pem = read_key_file(&path)?;
                        set.insert(&kid, pem_key(&kid, &pem, &path.display().to_string())?)?;
                    }
                }
                KeySource::JwksFile(path) => {
                    let origin = path.display().to_string();
                    let document = read_key_file(path)?;
                    let jwks: JwkSet = serde_json::from_slice(&document).map_err(|error| {
                        ConfigError::InvalidJwks {
                            origin: origin.clone(),
                            reason: format!("not a JWKS JSON document: {error}"),
                        }
                    })?;
                    set.insert_jwks(&jwks, &origin)?;
                }
                KeySource::Pem { kid, pem } => {
                    set.insert(kid, pem_key(kid, pem, "an in-memory PEM")?)?;
                }
                KeySource::Jwks(jwks) => set.insert_jwks(jwks, "an in-memory JWKS")?,
            }
        }
        Ok(set)
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.get(kid)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.keys.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn insert_jwks(&mut self, jwks: &JwkSet, origin: &str) -> Result<(), ConfigError> {
        for (index, jwk) in jwks.keys.iter().enumerate() {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let kid = jwk
                .common
                .key_id
                .as_deref()
                .ok_or_else(|| ConfigError::InvalidJwks {
                    origin: origin.to_owned(),
                    reason: format!(
                        "key {index} (counted from 0) has no `kid`; give every signing key an id"
                    ),
                })?;
            self.insert(kid, jwk_key(kid, jwk, origin)?)?;
        }
        Ok(())
    }

    fn insert(&mut self, kid: &str, key: VerificationKey) -> Result<(), ConfigError> {
        if kid.is_empty() {
            return Err(invalid_key(kid, &key.origin, "the key id is empty"));
        }
        if let Some(existing) = self.keys.get(kid) {
            return Err(ConfigError::DuplicateKeyId {
                kid: kid.to_owned(),
                first: existing.origin.clone(),
                second: key.origin,
            });
        }
        self.keys.insert(kid.to_owned(), key);
        Ok(())
    }
}

/// Returns the JOSE name of one of the algorithms this crate uses, for messages.
pub(crate) fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::EdDSA => "EdDSA",
        Algorithm::ES256 => "ES256",
        Algorithm::RS256 => "RS256",
        Algorithm::HS256 => "HS256",
        _ => "another algorithm",
    }
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    fs::read(path).map_err(|source| ConfigError::ReadKeyFile {
        path: path.to_owned(),
        source,
    })
}

/// Lists the `*.pem` files of a directory with their key ids, sorted so errors repeat.
fn pem_files(directory: &Path) -> Result<Vec<(String, PathBuf)>, ConfigError> {
    let read_error = |source| ConfigError::ReadKeyFile {
        path: directory.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(directory).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let is_pem = path.extension().is_some_and(|extension| extension == "pem");
        let stem = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .map(str::to_owned);
        let Some(kid) = stem.filter(|stem| is_pem && !stem.starts_with('.')) else {
            continue;
        };
        // fs::metadata follows symbolic links, which mounted secrets use for each file.
        let metadata = fs::metadata(&path).map_err(|source| ConfigError::ReadKeyFile {
            path: path.clone(),
            source,
        })?;
        if metadata.is_file() {
            files.push((kid, path));
        }
    }
    files.sort();
    Ok(files)
}

/// Parses one PEM public key and binds it to the algorithm of its key type.
fn pem_key(kid: &str, pem: &[u8], origin: &str) -> Result<VerificationKey, ConfigError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("PRIVATE KEY-----") {
        return Err(invalid_key(
            kid,
            origin,
            "this is a private key; give the verifier only the public key (`openssl pkey -pubout`)",
        ));
    }
    if text.matches("-----BEGIN ").count() != 1 {
        return Err(invalid_key(
            kid,
            origin,
            "expected exactly one PEM block, a `PUBLIC KEY` or `RSA PUBLIC KEY`",
        ));
    }
    if !text.contains("-----BEGIN PUBLIC KEY-----")
        && !text.contains("-----BEGIN RSA PUBLIC KEY-----")
    {
        return Err(invalid_key(
            kid,
            origin,
            "expected a `PUBLIC KEY` or `RSA PUBLIC KEY` PEM block; extract the public key from a certificate with `openssl x509 -pubkey -noout`",
        ));
    }

    // Each constructor accepts only its own key type, so at most one succeeds.
    let key = if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        key
    } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        key
    } else if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        key
    } else {
        return Err(invalid_key(
            kid,
            origin,
            "not an Ed25519, EC P-256 or RSA public key",
        ));
    };

    let algorithm = match key.family() {
        AlgorithmFamily::Ed => Algorithm::EdDSA,
        AlgorithmFamily::Ec => Algorithm::ES256,
        AlgorithmFamily::Rsa => Algorithm::RS256,
        AlgorithmFamily::Hmac => unreachable!("PEM constructors never build HMAC keys"),
    };
    check_key(kid, origin, algorithm, &key)?;
    Ok(VerificationKey {
        algorithm,
        key,
        origin: origin.to_owned(),
    })
}

/// Converts one JWK and binds it to the algorithm of its key type and curve.
fn jwk_key(kid: &str, jwk: &Jwk, origin: &str) -> Result<VerificationKey, ConfigError> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::OctetKey(_) => {
            return Err(invalid_key(
                kid,
                origin,
                "symmetric (`oct`) keys are not accepted; HS256 is only for development through the dev HS256 secret",
            ));
        }
        _ => {
            return Err(invalid_key(
                kid,
                origin,
                "unsupported key type or curve; use OKP Ed25519, EC P-256 or RSA",
            ));
        }
    };

    if let Some(declared) = jwk.common.key_algorithm
        && declared.to_string() != algorithm_name(algorithm)
    {
        return Err(invalid_key(
            kid,
            origin,
            &format!(
                "the key declares `alg` {declared} but this key type verifies only {}",
                algorithm_name(algorithm)
            ),
        ));
    }

    let key = DecodingKey::from_jwk(jwk)
        .map_err(|error| invalid_key(kid, origin, &format!("unusable key parameters: {error}")))?;
    check_key(kid, origin, algorithm, &key)?;
    Ok(VerificationKey {
        algorithm,
        key,
        origin: origin.to_owned(),
    })
}

/// Checks the key material now, so a bad key fails at load and not at the first request.
fn check_key(
    kid: &str,
    origin: &str,
    algorithm: Algorithm,
    key: &DecodingKey,
) -> Result<(), ConfigError> {
    if algorithm == Algorithm::ES256 {
        // An uncompressed P-256 point is 0x04 followed by two 32-byte coordinates.
        let point = key.try_get_as_bytes().unwrap_or_default();
        if point.len() != 65 {
            return Err(invalid_key(
                kid,
                origin,
                "not an uncompressed EC P-256 public key; ES256 needs the P-256 curve",
            ));
        }
    }
    if algorithm == Algorithm::RS256 {
        let bits = rsa_modulus_bits(key)
            .ok_or_else(|| invalid_key(kid, origin, "not a valid RSA public key"))?;
        if bits < MIN_RSA_BITS {
            return Err(invalid_key(
                kid,
                origin,
                &format!("the RSA key has {bits} bits, the minimum is {MIN_RSA_BITS}"),
            ));
        }
    }

    let provider = CryptoProvider::try_get_default()
        .ok_or_else(|| invalid_key(kid, origin, "no jsonwebtoken crypto provider is available"))?;
    (provider.verifier_factory)(&algorithm, key)
        .map(drop)
        .map_err(|error| invalid_key(kid, origin, &format!("unusable key: {error}")))
}

fn rsa_modulus_bits(key: &DecodingKey) -> Option<usize> {
    let jwk = Jwk::from_decoding_key(key, Some(Algorithm::RS256)).ok()?;
    let AlgorithmParameters::RSA(params) = jwk.algorithm else {
        return None;
    };
    let modulus = URL_SAFE_NO_PAD.decode(params.n).ok()?;
    let first = modulus.iter().position(|byte| *byte != 0)?;
    let leading_zero_bits = modulus[first].leading_zeros() as usize;
    Some((modulus.len() - first) * 8 - leading_zero_bits)
}

fn invalid_key(kid: &str, origin: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidKey {
        kid: kid.to_owned(),
        origin: origin.to_owned(),
        reason: reason.to_owned(),
    }
}
