use std::fs;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};
use tonic::metadata::{MetadataMap, MetadataValue};

use super::*;
use crate::principal::{PrincipalKind, Role};
use crate::signer::{Ed25519KeyPair, generate_ed25519_keypair};

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "docket";
const ED_KID: &str = "kid-ed-7f3a";
const EC_KID: &str = "kid-ec-91c2";
const RSA_KID: &str = "kid-rsa-0b5e";
const DEV_SECRET: &[u8] = b"development secret of at least 32 bytes";

const EC_PRIVATE: &[u8] = include_bytes!("../../testdata/ec-p256-private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../../testdata/ec-p256-public.pem");
const EC_P384_PUBLIC: &[u8] = include_bytes!("../../testdata/ec-p384-public.pem");
const RSA_PRIVATE: &[u8] = include_bytes!("../../testdata/rsa-2048-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../testdata/rsa-2048-public.pem");
const RSA_1024_PUBLIC: &[u8] = include_bytes!("../../testdata/rsa-1024-public.pem");

fn config(keys: Vec<KeySource>) -> VerifierConfig {
    VerifierConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway: Duration::from_secs(30),
        keys,
        dev_hs256_secret: None,
    }
}

fn pem_source(kid: &str, pem: &[u8]) -> KeySource {
    KeySource::Pem {
        kid: kid.into(),
        pem: pem.to_vec(),
    }
}

/// A verifier with one Ed25519, one EC P-256 and one RSA key.
struct Fixture {
    ed: Ed25519KeyPair,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    fixture_with_dev_secret(None)
}

fn fixture_with_dev_secret(dev_hs256_secret: Option<Vec<u8>>) -> Fixture {
    let ed = generate_ed25519_keypair().expect("key pair");
    let mut config = config(vec![
        pem_source(ED_KID, ed.public_pem.as_bytes()),
        pem_source(EC_KID, EC_PUBLIC),
        pem_source(RSA_KID, RSA_PUBLIC),
    ]);
    config.dev_hs256_secret = dev_hs256_secret;
    let verifier = Verifier::new(config).expect("verifier");
    Fixture { ed, verifier }
}

fn valid_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice-4d2e",
        "iat": NOW - 5,
        "nbf": NOW - 5,
        "exp": NOW + 300,
        "jti": "jti-5c81",
        "roles": ["analyst"],
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut claims = valid_claims();
    claims[field] = value;
    claims
}

fn without(field: &str) -> Value {
    let mut claims = valid_claims();
    claims.as_object_mut().expect("object").remove(field);
    claims
}

fn sign(algorithm: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("encode")
}

fn sign_ed(fixture: &Fixture, claims: &Value) -> String {
    let key = EncodingKey::from_ed_pem(fixture.ed.private_pem.as_bytes()).expect("Ed25519 key");
    sign(Algorithm::EdDSA, Some(ED_KID), &key, claims)
}

/// Builds a token from raw parts, for headers that jsonwebtoken refuses to produce.
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Asserts the exact error, and that its message and debug form quote no part of the
/// token: not the token, none of its three parts, and none of the distinctive header and
/// claim values that the fixtures use.
fn assert_rejected(verifier: &Verifier, token: &str, expected: AuthError) {
    let result = verifier.verify_at(token, NOW);
    assert_eq!(result, Err(expected.clone()), "token {token:.60}");

    let message = expected.to_string();
    let debug = format!("{expected:?}");
    let mut fragments: Vec<&str> = token.split('.').filter(|part| part.len() >= 4).collect();
    fragments.push(token);
    fragments.extend([
        ED_KID,
        EC_KID,
        RSA_KID,
        "alice-4d2e",
        "jti-5c81",
        "kid-unknown-3e9d",
    ]);
    for fragment in fragments {
        if fragment.is_empty() {
            continue;
        }
        assert!(
            !message.contains(fragment),
            "message {message:?} quotes {fragment:.40}"
        );
        assert!(
            !debug.contains(fragment),
            "debug {debug:?} quotes {fragment:.40}"
        );
    }
}

#[test]
fn ed25519_token_verifies() {
    let fixture = fixture();

    let principal = fixture
        .verifier
        .verify_at(&sign_ed(&fixture, &valid_claims()), NOW);

    assert_eq!(
        principal,
        Ok(Principal {
            subject: "alice-4d2e".into(),
            roles: vec![Role::Analyst],
            kind: PrincipalKind::Human,
            token_id: Some("jti-5c81".into()),
        })
    );
}

#[test]
fn es256_token_verifies() {
    let fixture = fixture();
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).expect("EC key");

    let token = sign(Algorithm::ES256, Some(EC_KID), &key, &valid_claims());

    assert!(fixture.verifier.verify_at(&token, NOW).is_ok());
}

#[test]
fn rs256_token_verifies() {
    let fixture = fixture();
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("RSA key");

    let token = sign(Algorithm::RS256, Some(RSA_KID), &key, &valid_claims());

    assert!(fixture.verifier.verify_at(&token, NOW).is_ok());
}

#[test]
fn pkcs1_rsa_public_key_verifies_rs256() {
    let pkcs1 = include_bytes!("../../testdata/rsa-2048-public-pkcs1.pem");
    let verifier = Verifier::new(config(vec![pem_source(RSA_KID, pkcs1)])).expect("verifier");
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("RSA key");

    let token = sign(Algorithm::RS256, Some(RSA_KID), &key, &valid_claims());

    assert!(verifier.verify_at(&token, NOW).is_ok());
}

#[test]
fn verifier_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}

    assert_send_sync::<Verifier>();
}

#[test]
fn verify_uses_the_system_clock() {
    let fixture = fixture();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice-4d2e",
        "exp": now + 300, "nbf": now - 5, "roles": ["viewer"],
    });

    assert!(fixture.verifier.verify(&sign_ed(&fixture, &claims)).is_ok());
}

#[test]
fn alg_none_is_rejected() {
    let fixture = fixture();
    let header = json!({"alg": "none", "typ": "JWT", "kid": ED_KID});

    let token = raw_token(&header, &valid_claims(), b"");

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::UnsupportedAlgorithm {
            algorithm: "none",
            accepted: ACCEPTED,
        },
    );
}

#[test]
fn alg_none_in_other_cases_is_rejected() {
    let fixture = fixture();
    for alg in ["None", "NONE", "nOnE"] {
        let token = raw_token(&json!({"alg": alg, "kid": ED_KID}), &valid_claims(), b"");

        assert_rejected(
            &fixture.verifier,
            &token,
            AuthError::UnsupportedAlgorithm {
                algorithm: "unrecognized",
                accepted: ACCEPTED,
            },
        );
    }
}

#[test]
fn alg_none_with_signature_is_rejected() {
    let fixture = fixture();
    let token = raw_token(
        &json!({"alg": "none", "kid": ED_KID}),
        &valid_claims(),
        b"forged",
    );

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::UnsupportedAlgorithm {
            algorithm: "none",
            accepted: ACCEPTED,
        },
    );
}

#[test]
fn hs256_signed_with_public_key_is_rejected() {
    let fixture = fixture();
    for (kid, public_pem) in [
        (ED_KID, fixture.ed.public_pem.as_bytes()),
        (RSA_KID, RSA_PUBLIC),
        (EC_KID, EC_PUBLIC),
    ] {
        let key = EncodingKey::from_secret(public_pem).expect("HMAC key");
        let token = sign(Algorithm::HS256, Some(kid), &key, &valid_claims());

        assert_rejected(
            &fixture.verifier,
            &token,
            AuthError::UnsupportedAlgorithm {
                algorithm: "HS256",
                accepted: ACCEPTED,
            },
        );
    }
}

#[test]
fn hs256_confusion_with_dev_secret_fails_signature() {
    let fixture = fixture_with_dev_secret(Some(DEV_SECRET.to_vec()));
    let key = EncodingKey::from_secret(RSA_PUBLIC).expect("HMAC key");

    let token = sign(Algorithm::HS256, Some(RSA_KID), &key, &valid_claims());

    assert_rejected(&fixture.verifier, &token, AuthError::BadSignature);
}

#[test]
fn hs256_with_dev_secret_verifies() {
    let fixture = fixture_with_dev_secret(Some(DEV_SECRET.to_vec()));
    let key = EncodingKey::from_secret(DEV_SECRET).expect("HMAC key");

    let token = sign(Algorithm::HS256, None, &key, &valid_claims());

    assert!(fixture.verifier.verify_at(&token, NOW).is_ok());
}

#[test]
fn other_hmac_and_rsa_algorithms_are_rejected() {
    let fixture = fixture_with_dev_secret(Some(DEV_SECRET.to_vec()));
    let hmac = EncodingKey::from_secret(DEV_SECRET).expect("HMAC key");
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("RSA key");
    let cases = [
        (Algorithm::HS384, &hmac, "HS384"),
        (Algorithm::HS512, &hmac, "HS512"),
        (Algorithm::RS512, &rsa, "RS512"),
        (Algorithm::PS256, &rsa, "PS256"),
    ];

    for (algorithm, key, name) in cases {
        let token = sign(algorithm, Some(RSA_KID), key, &valid_claims());

        assert_rejected(
            &fixture.verifier,
            &token,
            AuthError::UnsupportedAlgorithm {
                algorithm: name,
                accepted: ACCEPTED_WITH_DEV_SECRET,
            },
        );
    }
}

#[test]
fn rs256_token_naming_ed25519_key_is_rejected() {
    let fixture = fixture();
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("RSA key");

    let token = sign(Algorithm::RS256, Some(ED_KID), &key, &valid_claims());

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::AlgorithmMismatch {
            algorithm: "RS256",
            key_algorithm: "EdDSA",
        },
    );
}

#[test]
fn eddsa_token_naming_ec_key_is_rejected() {
    let fixture = fixture();
    let key = EncodingKey::from_ed_pem(fixture.ed.private_pem.as_bytes()).expect("Ed25519 key");

    let token = sign(Algorithm::EdDSA, Some(EC_KID), &key, &valid_claims());

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::AlgorithmMismatch {
            algorithm: "EdDSA",
            key_algorithm: "ES256",
        },
    );
}

#[test]
fn unknown_kid_is_rejected() {
    let fixture = fixture();
    let key = EncodingKey::from_ed_pem(fixture.ed.private_pem.as_bytes()).expect("Ed25519 key");

    let token = sign(
        Algorithm::EdDSA,
        Some("kid-unknown-3e9d"),
        &key,
        &valid_claims(),
    );

    assert_rejected(&fixture.verifier, &token, AuthError::UnknownKeyId);
}

#[test]
fn missing_kid_is_rejected() {
    let fixture = fixture();
    let key = EncodingKey::from_ed_pem(fixture.ed.private_pem.as_bytes()).expect("Ed25519 key");

    let token = sign(Algorithm::EdDSA, None, &key, &valid_claims());

    assert_rejected(&fixture.verifier, &token, AuthError::MissingKeyId);
}

#[test]
fn token_signed_by_other_key_is_rejected() {
    let fixture = fixture();
    let attacker = generate_ed25519_keypair().expect("key pair");
    let key = EncodingKey::from_ed_pem(attacker.private_pem.as_bytes()).expect("Ed25519 key");

    let token = sign(Algorithm::EdDSA, Some(ED_KID), &key, &valid_claims());

    assert_rejected(&fixture.verifier, &token, AuthError::BadSignature);
}

#[test]
fn embedded_jwk_header_is_not_trusted() {
    let fixture = fixture();
    let attacker = generate_ed25519_keypair().expect("key pair");
    let public = DecodingKey::from_ed_pem(attacker.public_pem.as_bytes()).expect("public key");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(ED_KID.into());
    header.jwk = Some(Jwk::from_decoding_key(&public, Some(Algorithm::EdDSA)).expect("jwk"));
    let key = EncodingKey::from_ed_pem(attacker.private_pem.as_bytes()).expect("Ed25519 key");

    let token = jsonwebtoken::encode(&header, &valid_claims(), &key).expect("encode");

    assert_rejected(&fixture.verifier, &token, AuthError::BadSignature);
}

#[test]
fn tampered_claims_are_rejected() {
    let fixture = fixture();
    let token = sign_ed(&fixture, &valid_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = URL_SAFE_NO_PAD.encode(with("roles", json!(["admin"])).to_string());

    let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);

    assert_rejected(&fixture.verifier, &forged, AuthError::BadSignature);
}

#[test]
fn stripped_signature_is_rejected() {
    let fixture = fixture();
    let token = sign_ed(&fixture, &valid_claims());
    let unsigned = &token[..=token.rfind('.').expect("three parts")];

    assert_rejected(&fixture.verifier, unsigned, AuthError::BadSignature);
}

#[test]
fn crit_header_is_rejected() {
    let fixture = fixture();
    let header = json!({"alg": "EdDSA", "kid": ED_KID, "crit": ["exp-ext"], "exp-ext": 1});

    let token = raw_token(&header, &valid_claims(), b"signature");

    assert_rejected(&fixture.verifier, &token, AuthError::CriticalHeader);
}

#[test]
fn expired_beyond_leeway_is_rejected() {
    let fixture = fixture();

    let token = sign_ed(&fixture, &with("exp", json!(NOW - 31)));

    assert_rejected(&fixture.verifier, &token, AuthError::Expired);
}

#[test]
fn expired_within_leeway_is_accepted() {
    let fixture = fixture();

    let token = sign_ed(&fixture, &with("exp", json!(NOW - 20)));

    assert!(fixture.verifier.verify_at(&token, NOW).is_ok());
}

#[test]
fn nbf_in_future_is_rejected() {
    let fixture = fixture();

    let token = sign_ed(&fixture, &with("nbf", json!(NOW + 120)));

    assert_rejected(&fixture.verifier, &token, AuthError::NotYetValid);
}

#[test]
fn missing_aud_is_rejected() {
    let fixture = fixture();

    let token = sign_ed(&fixture, &without("aud"));

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::MissingClaim { claim: "aud" },
    );
}

#[test]
fn wrong_aud_is_rejected() {
    let fixture = fixture();

    let token = sign_ed(&fixture, &with("aud", json!("grafana")));

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::WrongAudience {
            expected: AUDIENCE.into(),
        },
    );
}

#[test]
fn wrong_iss_is_rejected() {
    let fixture = fixture();

    let token = sign_ed(&fixture, &with("iss", json!("https://attacker.test")));

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::WrongIssuer {
            expected: ISSUER.into(),
        },
    );
}

#[test]
fn missing_iss_is_rejected() {
    let fixture = fixture();

    let token = sign_ed(&fixture, &without("iss"));

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::MissingClaim { claim: "iss" },
    );
}

#[test]
fn missing_exp_is_rejected() {
    let fixture = fixture();

    let token = sign_ed(&fixture, &without("exp"));

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::MissingClaim { claim: "exp" },
    );
}

#[test]
fn exp_as_string_is_rejected() {
    let fixture = fixture();

    let token = sign_ed(&fixture, &with("exp", json!((NOW + 300).to_string())));

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::InvalidClaim {
            claim: "exp",
            expected: crate::claims::NUMERIC_DATE,
        },
    );
}

#[test]
fn missing_sub_is_rejected() {
    let fixture = fixture();

    let token = sign_ed(&fixture, &without("sub"));

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::MissingClaim { claim: "sub" },
    );
}

#[test]
fn unknown_role_is_rejected() {
    let fixture = fixture();

    let token = sign_ed(&fixture, &with("roles", json!(["viewer", "superuser"])));

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::InvalidRole { position: 2 },
    );
}

#[test]
fn garbage_is_rejected() {
    let fixture = fixture();
    let cases = [
        ("garbage", "the token does not have three parts"),
        ("a.b", "the token does not have three parts"),
        ("a.b.c.d", "the token does not have three parts"),
        ("....", "the token does not have three parts"),
        (
            "not a token",
            "the token contains characters other than base64url letters and dots",
        ),
        (
            "eyJ=.e30.sig",
            "the token contains characters other than base64url letters and dots",
        ),
        (
            "%%%.%%%.%%%",
            "the token contains characters other than base64url letters and dots",
        ),
        ("a.b.c", "the header is not valid base64url"),
        ("..", "the header is not a JSON object"),
        ("bm90IGpzb24.e30.c2ln", "the header is not a JSON object"),
        ("WzFd.e30.c2ln", "the header is not a JSON object"),
        ("e30.e30.c2ln", "the header has no `alg` string"),
    ];

    for (token, reason) in cases {
        assert_rejected(
            &fixture.verifier,
            token,
            AuthError::MalformedToken { reason },
        );
    }
}

#[test]
fn claims_that_are_not_json_are_rejected() {
    let fixture = fixture();
    let key = EncodingKey::from_ed_pem(fixture.ed.private_pem.as_bytes()).expect("Ed25519 key");
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "kid": ED_KID}).to_string());
    let payload = URL_SAFE_NO_PAD.encode("not json");
    let message = format!("{header}.{payload}");
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::EdDSA).expect("sign");

    let token = format!("{message}.{signature}");

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::MalformedToken {
            reason: "the header or the claims are not a valid JSON object",
        },
    );
}

#[test]
fn oversize_token_is_rejected() {
    let fixture = fixture();
    let token = sign_ed(
        &fixture,
        &with("padding", json!("a".repeat(MAX_TOKEN_BYTES))),
    );

    assert_rejected(
        &fixture.verifier,
        &token,
        AuthError::TokenTooLarge {
            size: token.len(),
            max: MAX_TOKEN_BYTES,
        },
    );
}

fn metadata(value: &str) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    let value: MetadataValue<_> = value.parse().expect("metadata value");
    metadata.insert(crate::bearer::AUTHORIZATION, value);
    metadata
}

#[test]
fn authenticate_reads_bearer_token() {
    let fixture = fixture();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice-4d2e",
        "exp": now + 300, "roles": ["viewer"],
    });
    let token = sign_ed(&fixture, &claims);

    let principal = fixture
        .verifier
        .authenticate(&metadata(&format!("Bearer {token}")));

    assert_eq!(
        principal.map(|principal| principal.subject),
        Ok("alice-4d2e".to_owned())
    );
}

#[test]
fn authenticate_rejects_empty_bearer() {
    let fixture = fixture();

    assert_eq!(
        fixture.verifier.authenticate(&metadata("Bearer ")),
        Err(AuthError::EmptyBearerToken)
    );
}

#[test]
fn authenticate_rejects_one_megabyte_header() {
    let fixture = fixture();
    let value = format!("Bearer {}", "A".repeat(1024 * 1024));

    let error = fixture
        .verifier
        .authenticate(&metadata(&value))
        .expect_err("rejected");

    assert_eq!(
        error,
        AuthError::TokenTooLarge {
            size: value.len(),
            max: MAX_TOKEN_BYTES
        }
    );
}

#[test]
fn authenticate_rejects_missing_header() {
    let fixture = fixture();

    assert_eq!(
        fixture.verifier.authenticate(&MetadataMap::new()),
        Err(AuthError::MissingCredentials)
    );
}

#[test]
fn authenticate_rejects_basic_scheme() {
    let fixture = fixture();

    assert_eq!(
        fixture
            .verifier
            .authenticate(&metadata("Basic YWxpY2U6c2VjcmV0")),
        Err(AuthError::UnsupportedScheme)
    );
}

#[test]
fn auth_error_status_never_quotes_the_token() {
    let fixture = fixture();
    let token = sign_ed(&fixture, &with("exp", json!(NOW - 3600)));

    let status = tonic::Status::from(
        fixture
            .verifier
            .verify_at(&token, NOW)
            .expect_err("expired"),
    );

    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(!status.message().contains(&token));
}

// Construction and key loading.

#[test]
fn leeway_over_sixty_seconds_is_rejected() {
    let ed = generate_ed25519_keypair().expect("key pair");
    let mut config = config(vec![pem_source(ED_KID, ed.public_pem.as_bytes())]);
    config.leeway = Duration::from_millis(60_001);

    let error = Verifier::new(config).expect_err("leeway is rejected");

    assert_eq!(
        error.to_string(),
        "invalid leeway: 60.001s is more than the maximum of 60s; set a smaller leeway"
    );
}

#[test]
fn leeway_of_sixty_seconds_is_accepted() {
    let ed = generate_ed25519_keypair().expect("key pair");
    let mut config = config(vec![pem_source(ED_KID, ed.public_pem.as_bytes())]);
    config.leeway = MAX_LEEWAY;

    assert!(Verifier::new(config).is_ok());
}

#[test]
fn verifier_without_keys_is_rejected() {
    assert!(matches!(
        Verifier::new(config(Vec::new())),
        Err(ConfigError::NoKeys)
    ));
}

#[test]
fn verifier_with_only_dev_secret_is_accepted() {
    let mut config = config(Vec::new());
    config.dev_hs256_secret = Some(DEV_SECRET.to_vec());

    assert!(Verifier::new(config).is_ok());
}

#[test]
fn short_dev_secret_is_rejected() {
    let mut config = config(Vec::new());
    config.dev_hs256_secret = Some(b"too short".to_vec());

    assert!(matches!(
        Verifier::new(config),
        Err(ConfigError::DevSecretTooShort {
            length: 9,
            min: MIN_DEV_SECRET_BYTES
        })
    ));
}

#[test]
fn config_debug_hides_dev_secret() {
    let mut config = config(Vec::new());
    config.dev_hs256_secret = Some(DEV_SECRET.to_vec());

    let debug = format!("{config:?}");

    assert!(!debug.contains("development secret"), "{debug}");
    assert!(!debug.contains("100, 101, 118"), "{debug}");
}

fn load_error(keys: Vec<KeySource>) -> ConfigError {
    Verifier::new(config(keys)).expect_err("keys are rejected")
}

#[test]
fn p384_key_is_rejected() {
    let error = load_error(vec![pem_source(EC_KID, EC_P384_PUBLIC)]);

    assert!(matches!(error, ConfigError::InvalidKey { .. }), "{error}");
}

#[test]
fn short_rsa_key_is_rejected() {
    let error = load_error(vec![pem_source(RSA_KID, RSA_1024_PUBLIC)]);

    assert!(
        error
            .to_string()
            .contains("has 1024 bits, the minimum is 2048"),
        "{error}"
    );
}

#[test]
fn private_key_as_verification_key_is_rejected() {
    let error = load_error(vec![pem_source(RSA_KID, RSA_PRIVATE)]);

    assert!(
        error.to_string().contains("this is a private key"),
        "{error}"
    );
}

#[test]
fn garbage_pem_is_rejected() {
    let error = load_error(vec![pem_source(
        RSA_KID,
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )]);

    assert!(matches!(error, ConfigError::InvalidKey { .. }), "{error}");
}

#[test]
fn duplicate_kid_is_rejected() {
    let error = load_error(vec![
        pem_source(EC_KID, EC_PUBLIC),
        pem_source(EC_KID, RSA_PUBLIC),
    ]);

    assert!(
        matches!(error, ConfigError::DuplicateKeyId { .. }),
        "{error}"
    );
}

#[test]
fn missing_key_file_is_rejected() {
    let error = load_error(vec![KeySource::PemFile {
        kid: EC_KID.into(),
        path: "/nonexistent/docket/key.pem".into(),
    }]);

    assert!(matches!(error, ConfigError::ReadKeyFile { .. }), "{error}");
}

fn ed_jwk(kid: &str, public_pem: &str) -> Jwk {
    let key = DecodingKey::from_ed_pem(public_pem.as_bytes()).expect("public key");
    let mut jwk = Jwk::from_decoding_key(&key, Some(Algorithm::EdDSA)).expect("jwk");
    jwk.common.key_id = Some(kid.into());
    jwk
}

#[test]
fn jwks_symmetric_key_is_rejected() {
    let jwks: JwkSet = serde_json::from_value(json!({
        "keys": [{"kty": "oct", "kid": "hmac-1", "k": URL_SAFE_NO_PAD.encode(DEV_SECRET)}]
    }))
    .expect("jwks");

    let error = load_error(vec![KeySource::Jwks(jwks)]);

    assert!(error.to_string().contains("symmetric"), "{error}");
}

#[test]
fn jwks_key_with_mismatched_alg_is_rejected() {
    let ed = generate_ed25519_keypair().expect("key pair");
    let mut jwk = ed_jwk(ED_KID, &ed.public_pem);
    jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);

    let error = load_error(vec![KeySource::Jwks(JwkSet { keys: vec![jwk] })]);

    assert!(
        error.to_string().contains("declares `alg` RS256"),
        "{error}"
    );
}

#[test]
fn jwks_key_without_kid_is_rejected() {
    let ed = generate_ed25519_keypair().expect("key pair");
    let mut jwk = ed_jwk(ED_KID, &ed.public_pem);
    jwk.common.key_id = None;

    let error = load_error(vec![KeySource::Jwks(JwkSet { keys: vec![jwk] })]);

    assert!(matches!(error, ConfigError::InvalidJwks { .. }), "{error}");
}

#[test]
fn jwks_encryption_key_is_skipped() {
    let signing = generate_ed25519_keypair().expect("key pair");
    let encryption = generate_ed25519_keypair().expect("key pair");
    let mut encryption_jwk = ed_jwk("enc-1", &encryption.public_pem);
    encryption_jwk.common.public_key_use = Some(PublicKeyUse::Encryption);
    let jwks = JwkSet {
        keys: vec![ed_jwk(ED_KID, &signing.public_pem), encryption_jwk],
    };

    let verifier = Verifier::new(config(vec![KeySource::Jwks(jwks)])).expect("verifier");

    assert_eq!(verifier.key_ids(), vec![ED_KID.to_owned()]);
}

#[test]
fn jwks_with_es256_and_rs256_keys_verifies_both() {
    let ec = Jwk::from_decoding_key(&DecodingKey::from_ec_pem(EC_PUBLIC).expect("EC key"), None);
    let rsa = Jwk::from_decoding_key(
        &DecodingKey::from_rsa_pem(RSA_PUBLIC).expect("RSA key"),
        None,
    );
    let mut ec = ec.expect("EC jwk");
    let mut rsa = rsa.expect("RSA jwk");
    ec.common.key_id = Some(EC_KID.into());
    rsa.common.key_id = Some(RSA_KID.into());
    let verifier = Verifier::new(config(vec![KeySource::Jwks(JwkSet {
        keys: vec![ec, rsa],
    })]))
    .expect("verifier");

    let ec_token = sign(
        Algorithm::ES256,
        Some(EC_KID),
        &EncodingKey::from_ec_pem(EC_PRIVATE).expect("EC key"),
        &valid_claims(),
    );
    let rsa_token = sign(
        Algorithm::RS256,
        Some(RSA_KID),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("RSA key"),
        &valid_claims(),
    );

    assert!(verifier.verify_at(&ec_token, NOW).is_ok());
    assert!(verifier.verify_at(&rsa_token, NOW).is_ok());
}

// Key rotation.

fn write_jwks(path: &std::path::Path, keys: Vec<Jwk>) {
    fs::write(
        path,
        serde_json::to_vec(&JwkSet { keys }).expect("serialize"),
    )
    .expect("write JWKS");
}

fn ed_token(pair: &Ed25519KeyPair, kid: &str) -> String {
    let key = EncodingKey::from_ed_pem(pair.private_pem.as_bytes()).expect("Ed25519 key");
    sign(Algorithm::EdDSA, Some(kid), &key, &valid_claims())
}

#[test]
fn jwks_rotation_drops_removed_key() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("jwks.json");
    let old = generate_ed25519_keypair().expect("key pair");
    let new = generate_ed25519_keypair().expect("key pair");
    write_jwks(
        &path,
        vec![
            ed_jwk("2026-10", &old.public_pem),
            ed_jwk("2026-11", &new.public_pem),
        ],
    );
    let verifier =
        Verifier::new(config(vec![KeySource::JwksFile(path.clone())])).expect("verifier");
    let old_token = ed_token(&old, "2026-10");
    let new_token = ed_token(&new, "2026-11");

    assert!(
        verifier.verify_at(&old_token, NOW).is_ok(),
        "old key before rotation"
    );
    assert!(
        verifier.verify_at(&new_token, NOW).is_ok(),
        "new key before rotation"
    );

    write_jwks(&path, vec![ed_jwk("2026-11", &new.public_pem)]);
    assert_eq!(verifier.reload().expect("reload"), 1);

    assert_eq!(
        verifier.verify_at(&old_token, NOW),
        Err(AuthError::UnknownKeyId)
    );
    assert!(
        verifier.verify_at(&new_token, NOW).is_ok(),
        "new key after rotation"
    );
}

#[test]
fn failed_reload_keeps_previous_keys() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("jwks.json");
    let pair = generate_ed25519_keypair().expect("key pair");
    write_jwks(&path, vec![ed_jwk("2026-11", &pair.public_pem)]);
    let verifier =
        Verifier::new(config(vec![KeySource::JwksFile(path.clone())])).expect("verifier");

    fs::write(&path, b"{\"keys\": [").expect("write truncated JWKS");

    assert!(matches!(
        verifier.reload(),
        Err(ConfigError::InvalidJwks { .. })
    ));
    assert!(verifier.verify_at(&ed_token(&pair, "2026-11"), NOW).is_ok());
}

#[test]
fn reload_to_no_keys_is_rejected() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("jwks.json");
    let pair = generate_ed25519_keypair().expect("key pair");
    write_jwks(&path, vec![ed_jwk("2026-11", &pair.public_pem)]);
    let verifier =
        Verifier::new(config(vec![KeySource::JwksFile(path.clone())])).expect("verifier");

    write_jwks(&path, Vec::new());

    assert!(matches!(verifier.reload(), Err(ConfigError::NoKeys)));
    assert!(verifier.verify_at(&ed_token(&pair, "2026-11"), NOW).is_ok());
}

#[test]
fn pem_directory_reload_adds_new_key() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let first = generate_ed25519_keypair().expect("key pair");
    let second = generate_ed25519_keypair().expect("key pair");
    fs::write(directory.path().join("2026-10.pem"), &first.public_pem).expect("write key");
    fs::write(directory.path().join("README.txt"), "not a key").expect("write note");
    fs::write(directory.path().join(".hidden.pem"), "not a key").expect("write hidden file");
    let verifier = Verifier::new(config(vec![KeySource::PemDirectory(
        directory.path().to_owned(),
    )]))
    .expect("verifier");

    assert_eq!(verifier.key_ids(), vec!["2026-10".to_owned()]);
    assert_eq!(
        verifier.verify_at(&ed_token(&second, "2026-11"), NOW),
        Err(AuthError::UnknownKeyId)
    );

    fs::write(directory.path().join("2026-11.pem"), &second.public_pem).expect("write key");
    assert_eq!(verifier.reload().expect("reload"), 2);

    assert!(
        verifier
            .verify_at(&ed_token(&first, "2026-10"), NOW)
            .is_ok()
    );
    assert!(
        verifier
            .verify_at(&ed_token(&second, "2026-11"), NOW)
            .is_ok()
    );
}

#[test]
fn pem_file_source_reads_the_file() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("signing.pem");
    let pair = generate_ed25519_keypair().expect("key pair");
    fs::write(&path, &pair.public_pem).expect("write key");

    let verifier = Verifier::new(config(vec![KeySource::PemFile {
        kid: "dev".into(),
        path,
    }]))
    .expect("verifier");

    assert!(verifier.verify_at(&ed_token(&pair, "dev"), NOW).is_ok());
}

#[test]
fn repeated_token_still_expires() {
    let fixture = fixture();
    let token = sign_ed(&fixture, &valid_claims());

    let first = fixture.verifier.verify_at(&token, NOW).expect("valid at NOW");
    let again = fixture.verifier.verify_at(&token, NOW + 100).expect("valid 100 s later");
    let late = fixture.verifier.verify_at(&token, NOW + 330);

    assert_eq!(first, again);
    assert_eq!(late, Err(AuthError::Expired));
}

#[test]
fn repeated_token_checks_not_before() {
    let fixture = fixture();
    let token = sign_ed(&fixture, &valid_claims());

    assert!(fixture.verifier.verify_at(&token, NOW).is_ok());

    assert_eq!(fixture.verifier.verify_at(&token, NOW - 100), Err(AuthError::NotYetValid));
}

#[test]
fn repeated_token_with_altered_signature_is_rejected() {
    let fixture = fixture();
    let token = sign_ed(&fixture, &valid_claims());
    assert!(fixture.verifier.verify_at(&token, NOW).is_ok());

    // The same header and claims with another signature must be checked again.
    let (signed, _) = token.rsplit_once('.').expect("three parts");
    let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));

    assert_eq!(fixture.verifier.verify_at(&forged, NOW), Err(AuthError::BadSignature));
}
