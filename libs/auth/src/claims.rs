//! Validation of the claims of a token whose signature has been checked, and the
//! [`Principal`] built from them.
//!
//! jsonwebtoken's own claim validation reports an `exp` given as a string as a missing
//! claim, so the claims are checked here to give each fault its own [`AuthError`].

use serde_json::{Map, Value};

use crate::error::AuthError;
use crate::principal::{Principal, PrincipalKind, Role};

/// Maximum length in bytes of the `sub` and `jti` claims, so that history and audit
/// records stay bounded.
pub const MAX_CLAIM_TEXT_BYTES: usize = 256;

pub(crate) const NUMERIC_DATE: &str =
    "a NumericDate: seconds since 1970-01-01T00:00:00Z as a non-negative JSON number";

/// Expected issuer and audience, and the tolerated clock skew.
pub(crate) struct ClaimRules<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) leeway_seconds: u64,
}

/// A principal with the time claims of its token, which must be checked again whenever
/// the token is accepted later without a new signature check.
pub(crate) struct CheckedClaims {
    pub(crate) principal: Principal,
    pub(crate) expires_at: u64,
    pub(crate) not_before: Option<u64>,
}

/// Checks the claims against `rules` at `now` (seconds since the Unix epoch) and builds
/// the principal.
#[cfg(test)]
pub(crate) fn principal_from_claims(
    claims: &Map<String, Value>,
    rules: &ClaimRules<'_>,
    now: u64,
) -> Result<Principal, AuthError> {
    check_claims(claims, rules, now).map(|checked| checked.principal)
}

/// Checks the claims against `rules` at `now` and returns the principal with `exp` and `nbf`.
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    rules: &ClaimRules<'_>,
    now: u64,
) -> Result<CheckedClaims, AuthError> {
    let expires_at =
        numeric_date(claims, "exp")?.ok_or(AuthError::MissingClaim { claim: "exp" })?;
    let not_before = numeric_date(claims, "nbf")?;
    // `iat` is not required, but a present one must be well formed.
    numeric_date(claims, "iat")?;

    check_issuer(claims, rules.issuer)?;
    check_audience(claims, rules.audience)?;
    check_time(expires_at, not_before, rules.leeway_seconds, now)?;

    let subject = bounded_text(claims, "sub")?.ok_or(AuthError::MissingClaim { claim: "sub" })?;
    let roles = roles(claims)?;
    let token_id = bounded_text(claims, "jti")?;

    let kind = if roles == [Role::Service] {
        PrincipalKind::Service
    } else {
        PrincipalKind::Human
    };
    Ok(CheckedClaims {
        principal: Principal {
            subject,
            roles,
            kind,
            token_id,
        },
        expires_at,
        not_before,
    })
}

/// Checks `exp` and `nbf` at `now`, each with `leeway_seconds` of tolerated clock skew.
pub(crate) fn check_time(expires_at: u64, not_before: Option<u64>, leeway_seconds: u64, now: u64) -> Result<(), AuthError> {
    if now >= expires_at.saturating_add(leeway_seconds) {
        return Err(AuthError::Expired);
    }
    if not_before.is_some_and(|not_before| now.saturating_add(leeway_seconds) < not_before) {
        return Err(AuthError::NotYetValid);
    }
    Ok(())
}

/// Reads a NumericDate claim (RFC 7519 section 2), rounding a fractional value down.
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<u64>, AuthError> {
    let invalid = AuthError::InvalidClaim {
        claim,
        expected: NUMERIC_DATE,
    };
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::Number(number)) => {
            if let Some(seconds) = number.as_u64() {
                return Ok(Some(seconds));
            }
            match number.as_f64() {
                Some(seconds)
                    if seconds.is_finite() && seconds >= 0.0 && seconds < u64::MAX as f64 =>
                {
                    Ok(Some(seconds.floor() as u64))
                }
                _ => Err(invalid),
            }
        }
        Some(_) => Err(invalid),
    }
}

fn check_issuer(claims: &Map<String, Value>, expected: &str) -> Result<(), AuthError> {
    match claims.get("iss") {
        None => Err(AuthError::MissingClaim { claim: "iss" }),
        Some(Value::String(issuer)) if issuer == expected => Ok(()),
        Some(Value::String(_)) => Err(AuthError::WrongIssuer {
            expected: expected.to_owned(),
        }),
        Some(_) => Err(AuthError::InvalidClaim {
            claim: "iss",
            expected: "a string",
        }),
    }
}

/// Accepts `aud` as one string or an array of strings that includes `expected`
/// (RFC 7519 section 4.1.3).
fn check_audience(claims: &Map<String, Value>, expected: &str) -> Result<(), AuthError> {
    let invalid = AuthError::InvalidClaim {
        claim: "aud",
        expected: "a string or an array of strings",
    };
    let includes_expected = match claims.get("aud") {
        None => return Err(AuthError::MissingClaim { claim: "aud" }),
        Some(Value::String(audience)) => audience == expected,
        Some(Value::Array(audiences)) => {
            let mut found = false;
            for audience in audiences {
                match audience {
                    Value::String(audience) => found |= audience == expected,
                    _ => return Err(invalid),
                }
            }
            found
        }
        Some(_) => return Err(invalid),
    };

    if includes_expected {
        Ok(())
    } else {
        Err(AuthError::WrongAudience {
            expected: expected.to_owned(),
        })
    }
}

/// Reads an optional string claim of 1 to [`MAX_CLAIM_TEXT_BYTES`] bytes without control
/// characters.
fn bounded_text(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<String>, AuthError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::String(text))
            if !text.is_empty()
                && text.len() <= MAX_CLAIM_TEXT_BYTES
                && !text.chars().any(char::is_control) =>
        {
            Ok(Some(text.clone()))
        }
        Some(_) => Err(AuthError::InvalidClaim {
            claim,
            expected: "a string of 1 to 256 bytes without control characters",
        }),
    }
}

fn roles(claims: &Map<String, Value>) -> Result<Vec<Role>, AuthError> {
    let names = match claims.get("roles") {
        None => return Err(AuthError::MissingClaim { claim: "roles" }),
        Some(Value::Array(names)) if !names.is_empty() => names,
        Some(_) => {
            return Err(AuthError::InvalidClaim {
                claim: "roles",
                expected: "a non-empty array of role names",
            });
        }
    };

    let mut roles = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let role = name
            .as_str()
            .and_then(|name| name.parse::<Role>().ok())
            .ok_or(AuthError::InvalidRole {
                position: index + 1,
            })?;
        roles.push(role);
    }
    roles.sort();
    roles.dedup();

    if roles.contains(&Role::Service) && roles.len() > 1 {
        return Err(AuthError::MixedServiceRoles);
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn rules() -> ClaimRules<'static> {
        ClaimRules {
            issuer: "https://issuer.test",
            audience: "docket",
            leeway_seconds: 30,
        }
    }

    fn valid_claims() -> Value {
        json!({
            "iss": "https://issuer.test",
            "aud": "docket",
            "sub": "alice",
            "exp": NOW + 300,
            "nbf": NOW - 10,
            "iat": NOW - 10,
            "jti": "token-1",
            "roles": ["analyst"],
        })
    }

    fn check(claims: Value) -> Result<Principal, AuthError> {
        let Value::Object(claims) = claims else {
            panic!("claims must be a JSON object");
        };
        principal_from_claims(&claims, &rules(), NOW)
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

    #[test]
    fn valid_claims_build_a_human_principal() {
        let principal = check(valid_claims()).expect("valid claims");

        assert_eq!(
            principal,
            Principal {
                subject: "alice".into(),
                roles: vec![Role::Analyst],
                kind: PrincipalKind::Human,
                token_id: Some("token-1".into()),
            }
        );
    }

    #[test]
    fn service_role_builds_a_service_principal() {
        let principal = check(with("roles", json!(["service"]))).expect("valid claims");

        assert_eq!(principal.kind, PrincipalKind::Service);
    }

    #[test]
    fn service_role_with_another_role_is_rejected() {
        assert_eq!(
            check(with("roles", json!(["service", "admin"]))),
            Err(AuthError::MixedServiceRoles)
        );
    }

    #[test]
    fn roles_are_sorted_and_deduplicated() {
        let principal =
            check(with("roles", json!(["lead", "viewer", "lead"]))).expect("valid claims");

        assert_eq!(principal.roles, vec![Role::Viewer, Role::Lead]);
    }

    #[test]
    fn unknown_role_is_rejected_with_its_position() {
        assert_eq!(
            check(with("roles", json!(["viewer", "root"]))),
            Err(AuthError::InvalidRole { position: 2 })
        );
    }

    #[test]
    fn role_that_is_not_a_string_is_rejected() {
        assert_eq!(
            check(with("roles", json!([7]))),
            Err(AuthError::InvalidRole { position: 1 })
        );
    }

    #[test]
    fn missing_roles_are_rejected() {
        assert_eq!(
            check(without("roles")),
            Err(AuthError::MissingClaim { claim: "roles" })
        );
    }

    #[test]
    fn empty_or_scalar_roles_are_rejected() {
        for value in [json!([]), json!("admin"), json!(null)] {
            assert!(
                matches!(
                    check(with("roles", value.clone())),
                    Err(AuthError::InvalidClaim { claim: "roles", .. })
                ),
                "roles {value}"
            );
        }
    }

    #[test]
    fn missing_exp_is_rejected() {
        assert_eq!(
            check(without("exp")),
            Err(AuthError::MissingClaim { claim: "exp" })
        );
    }

    #[test]
    fn exp_as_string_is_rejected() {
        let exp = (NOW + 300).to_string();

        assert!(matches!(
            check(with("exp", json!(exp))),
            Err(AuthError::InvalidClaim { claim: "exp", .. })
        ));
    }

    #[test]
    fn negative_exp_is_rejected() {
        assert!(matches!(
            check(with("exp", json!(-1))),
            Err(AuthError::InvalidClaim { claim: "exp", .. })
        ));
    }

    #[test]
    fn fractional_exp_is_accepted() {
        let exp = (NOW + 300) as f64 + 0.5;

        assert!(check(with("exp", json!(exp))).is_ok());
    }

    #[test]
    fn exp_beyond_leeway_is_rejected() {
        assert_eq!(check(with("exp", json!(NOW - 30))), Err(AuthError::Expired));
    }

    #[test]
    fn exp_within_leeway_is_accepted() {
        assert!(check(with("exp", json!(NOW - 29))).is_ok());
    }

    #[test]
    fn nbf_beyond_leeway_is_rejected() {
        assert_eq!(
            check(with("nbf", json!(NOW + 31))),
            Err(AuthError::NotYetValid)
        );
    }

    #[test]
    fn nbf_within_leeway_is_accepted() {
        assert!(check(with("nbf", json!(NOW + 30))).is_ok());
    }

    #[test]
    fn nbf_as_string_is_rejected() {
        assert!(matches!(
            check(with("nbf", json!("soon"))),
            Err(AuthError::InvalidClaim { claim: "nbf", .. })
        ));
    }

    #[test]
    fn iat_as_string_is_rejected() {
        assert!(matches!(
            check(with("iat", json!("yesterday"))),
            Err(AuthError::InvalidClaim { claim: "iat", .. })
        ));
    }

    #[test]
    fn missing_iss_is_rejected() {
        assert_eq!(
            check(without("iss")),
            Err(AuthError::MissingClaim { claim: "iss" })
        );
    }

    #[test]
    fn wrong_iss_is_rejected() {
        assert_eq!(
            check(with("iss", json!("https://other.test"))),
            Err(AuthError::WrongIssuer {
                expected: "https://issuer.test".into()
            })
        );
    }

    #[test]
    fn missing_aud_is_rejected() {
        assert_eq!(
            check(without("aud")),
            Err(AuthError::MissingClaim { claim: "aud" })
        );
    }

    #[test]
    fn wrong_aud_is_rejected() {
        assert_eq!(
            check(with("aud", json!("grafana"))),
            Err(AuthError::WrongAudience {
                expected: "docket".into()
            })
        );
    }

    #[test]
    fn aud_array_including_audience_is_accepted() {
        assert!(check(with("aud", json!(["grafana", "docket"]))).is_ok());
    }

    #[test]
    fn aud_array_without_audience_is_rejected() {
        assert_eq!(
            check(with("aud", json!(["grafana"]))),
            Err(AuthError::WrongAudience {
                expected: "docket".into()
            })
        );
    }

    #[test]
    fn aud_array_with_number_is_rejected() {
        assert!(matches!(
            check(with("aud", json!(["docket", 1]))),
            Err(AuthError::InvalidClaim { claim: "aud", .. })
        ));
    }

    #[test]
    fn missing_sub_is_rejected() {
        assert_eq!(
            check(without("sub")),
            Err(AuthError::MissingClaim { claim: "sub" })
        );
    }

    #[test]
    fn empty_long_or_control_sub_is_rejected() {
        let long = "a".repeat(MAX_CLAIM_TEXT_BYTES + 1);
        for value in [json!(""), json!(long), json!("al\nice"), json!(42)] {
            assert!(
                matches!(
                    check(with("sub", value.clone())),
                    Err(AuthError::InvalidClaim { claim: "sub", .. })
                ),
                "sub {value}"
            );
        }
    }

    #[test]
    fn missing_jti_is_accepted() {
        let principal = check(without("jti")).expect("jti is optional");

        assert_eq!(principal.token_id, None);
    }
}
