//! Threat indicators and affected assets, validated per type and kept in canonical form
//! so that equal values compare equal.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Violations;
use super::enums::{AssetKind, CompromiseStatus, IndicatorType};

/// Maximum number of indicators or assets on one ticket.
pub const MAX_ITEMS: usize = 1000;

/// Maximum length of a domain name in characters (RFC 1035, without the trailing dot).
const MAX_DOMAIN_LEN: usize = 253;
/// Maximum lengths of URL, email address and file name values, in characters.
const MAX_URL_LEN: usize = 2048;
const MAX_EMAIL_LEN: usize = 254;
const MAX_FILENAME_LEN: usize = 255;
/// Maximum length of an asset name in characters.
const MAX_ASSET_NAME_LEN: usize = 256;

/// An indicator whose value is valid for its type and canonical.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Indicator {
    kind: IndicatorType,
    value: String,
}

/// Indicator as a client sent it: the type's wire number and the text.
#[derive(Clone, Debug, Default)]
pub struct RawIndicator {
    pub kind: i32,
    pub value: String,
}

impl Indicator {
    /// Validates `value` for `kind` and returns its canonical form, or why it is invalid.
    pub fn parse(kind: IndicatorType, value: &str) -> Result<Indicator, String> {
        let trimmed = value.trim();
        let canonical = match kind {
            IndicatorType::Ipv4 => canonical_ipv4(trimmed)?,
            IndicatorType::Ipv6 => canonical_ipv6(trimmed)?,
            IndicatorType::Domain => canonical_domain(trimmed)?,
            IndicatorType::Url => canonical_url(trimmed)?,
            IndicatorType::Email => canonical_email(trimmed)?,
            IndicatorType::Md5 => canonical_hex(trimmed, 32, "MD5")?,
            IndicatorType::Sha1 => canonical_hex(trimmed, 40, "SHA-1")?,
            IndicatorType::Sha256 => canonical_hex(trimmed, 64, "SHA-256")?,
            IndicatorType::Filename => canonical_filename(trimmed)?,
        };
        Ok(Indicator {
            kind,
            value: canonical,
        })
    }

    pub fn kind(&self) -> IndicatorType {
        self.kind
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "type": self.kind.as_str(), "value": self.value })
    }

    /// Reads an indicator stored by [`Indicator::to_json`], validating it again.
    pub fn from_json(value: &serde_json::Value) -> Option<Indicator> {
        let kind = IndicatorType::parse(value.get("type")?.as_str()?)?;
        Indicator::parse(kind, value.get("value")?.as_str()?).ok()
    }
}

fn canonical_ipv4(text: &str) -> Result<String, String> {
    // std accepts only the four-part dotted decimal form without leading zeros, which
    // rules out the octal and shortened forms that other parsers read differently.
    text.parse::<Ipv4Addr>()
        .map(|address| address.to_string())
        .map_err(|_| {
            "not an IPv4 address in dotted decimal form, for example 192.0.2.10".to_owned()
        })
}

fn canonical_ipv6(text: &str) -> Result<String, String> {
    // Display writes the compressed RFC 5952 form, lowercase with the longest zero run elided.
    text.parse::<Ipv6Addr>()
        .map(|address| address.to_string())
        .map_err(|_| "not an IPv6 address, for example 2001:db8::1".to_owned())
}

/// Checks a host name made of letter-digit-hyphen labels and returns it lowercase,
/// without a trailing dot.
fn canonical_domain(text: &str) -> Result<String, String> {
    let lower = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if lower.is_empty() || lower.len() > MAX_DOMAIN_LEN {
        return Err(format!(
            "a domain name has 1 to {MAX_DOMAIN_LEN} characters"
        ));
    }
    let labels: Vec<&str> = lower.split('.').collect();
    if labels.len() < 2 {
        return Err("a domain name needs at least two labels, for example example.com".to_owned());
    }
    for label in &labels {
        let valid_chars = label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if label.is_empty()
            || label.len() > 63
            || !valid_chars
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!(
                "label {label:?} is invalid: each label has 1 to 63 letters, digits or inner hyphens"
            ));
        }
    }
    let top = labels[labels.len() - 1];
    if top.chars().all(|c| c.is_ascii_digit()) {
        return Err(
            "the top-level label must not be all digits; use type ipv4 for addresses".to_owned(),
        );
    }
    Ok(lower)
}

fn canonical_url(text: &str) -> Result<String, String> {
    if text.chars().count() > MAX_URL_LEN {
        return Err(format!("a URL has at most {MAX_URL_LEN} characters"));
    }
    let parsed = url::Url::parse(text).map_err(|error| format!("not an absolute URL: {error}"))?;
    if !matches!(parsed.scheme(), "http" | "https" | "ftp") {
        return Err(format!(
            "scheme {:?} is not allowed; use http, https or ftp",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    Ok(parsed.to_string())
}

/// Checks `local@domain` with a dot-atom local part (RFC 5322) and a valid domain. The
/// local part keeps its case, because some mail systems treat it as case-sensitive.
fn canonical_email(text: &str) -> Result<String, String> {
    if text.chars().count() > MAX_EMAIL_LEN {
        return Err(format!(
            "an email address has at most {MAX_EMAIL_LEN} characters"
        ));
    }
    let Some((local, domain)) = text.rsplit_once('@') else {
        return Err("an email address has the form name@example.com".to_owned());
    };
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";
    let local_valid = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c));
    if !local_valid {
        return Err(format!(
            "the part before @ ({local:?}) is not a valid mailbox name"
        ));
    }
    let domain = canonical_domain(domain)?;
    Ok(format!("{local}@{domain}"))
}

fn canonical_hex(text: &str, digits: usize, name: &str) -> Result<String, String> {
    if text.len() != digits || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "a {name} digest is exactly {digits} hexadecimal digits"
        ));
    }
    Ok(text.to_ascii_lowercase())
}

fn canonical_filename(text: &str) -> Result<String, String> {
    if text.is_empty() || text.chars().count() > MAX_FILENAME_LEN {
        return Err(format!(
            "a file name has 1 to {MAX_FILENAME_LEN} characters"
        ));
    }
    if text.contains(['/', '\\', '\0']) {
        return Err(
            "a file name must not contain a path separator or NUL; give the last path component"
                .to_owned(),
        );
    }
    if text == "." || text == ".." {
        return Err("a file name must not be . or ..".to_owned());
    }
    Ok(text.to_owned())
}

/// Validates every indicator, reporting each bad one under `field[i]`, and drops
/// duplicates after canonicalization, keeping the first occurrence.
pub fn parse_indicators(
    field: &str,
    raw: &[RawIndicator],
    violations: &mut Violations,
) -> Vec<Indicator> {
    if raw.len() > MAX_ITEMS {
        violations.add(
            field,
            format!(
                "{} indicators given; at most {MAX_ITEMS} are allowed",
                raw.len()
            ),
        );
        return Vec::new();
    }
    let mut parsed: Vec<Indicator> = Vec::with_capacity(raw.len());
    for (index, item) in raw.iter().enumerate() {
        let kind = match IndicatorType::from_code(item.kind) {
            Ok(Some(kind)) => kind,
            Ok(None) | Err(_) => {
                violations.add(
                    format!("{field}[{index}].type"),
                    format!(
                        "indicator type {} is missing or unknown; use one of {}",
                        item.kind,
                        IndicatorType::names()
                    ),
                );
                continue;
            }
        };
        match Indicator::parse(kind, &item.value) {
            Ok(indicator) => {
                if !parsed.contains(&indicator) {
                    parsed.push(indicator);
                }
            }
            Err(reason) => violations.add(
                format!("{field}[{index}].value"),
                format!("invalid {kind} indicator {:?}: {reason}", item.value),
            ),
        }
    }
    parsed
}

/// An affected host, account or service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    pub kind: AssetKind,
    pub name: String,
    pub compromise: CompromiseStatus,
}

/// Asset as a client sent it.
#[derive(Clone, Debug, Default)]
pub struct RawAsset {
    pub kind: i32,
    pub name: String,
    pub compromise: i32,
}

impl Asset {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind.as_str(), "name": self.name, "compromise": self.compromise.as_str() })
    }

    pub fn from_json(value: &serde_json::Value) -> Option<Asset> {
        Some(Asset {
            kind: AssetKind::parse(value.get("kind")?.as_str()?)?,
            name: value.get("name")?.as_str()?.to_owned(),
            compromise: CompromiseStatus::parse(value.get("compromise")?.as_str()?)?,
        })
    }
}

/// Validates every asset and drops exact repeats. The same kind and name with two
/// different compromise statuses is a contradiction and is reported.
pub fn parse_assets(field: &str, raw: &[RawAsset], violations: &mut Violations) -> Vec<Asset> {
    if raw.len() > MAX_ITEMS {
        violations.add(
            field,
            format!(
                "{} assets given; at most {MAX_ITEMS} are allowed",
                raw.len()
            ),
        );
        return Vec::new();
    }
    let mut parsed: Vec<Asset> = Vec::with_capacity(raw.len());
    for (index, item) in raw.iter().enumerate() {
        let kind = AssetKind::from_code(item.kind);
        let compromise = CompromiseStatus::from_code(item.compromise);
        let name = item.name.trim();
        let mut valid = true;
        if !matches!(kind, Ok(Some(_))) {
            valid = false;
            violations.add(
                format!("{field}[{index}].kind"),
                format!(
                    "asset kind {} is missing or unknown; use one of {}",
                    item.kind,
                    AssetKind::names()
                ),
            );
        }
        if !matches!(compromise, Ok(Some(_))) {
            valid = false;
            violations.add(
                format!("{field}[{index}].compromise"),
                format!(
                    "compromise status {} is missing or unknown; use one of {}",
                    item.compromise,
                    CompromiseStatus::names()
                ),
            );
        }
        if name.is_empty() || name.chars().count() > MAX_ASSET_NAME_LEN || name.contains('\0') {
            valid = false;
            violations.add(
                format!("{field}[{index}].name"),
                format!(
                    "asset name {:?} must have 1 to {MAX_ASSET_NAME_LEN} characters",
                    item.name
                ),
            );
        }
        let (Ok(Some(kind)), Ok(Some(compromise)), true) = (kind, compromise, valid) else {
            continue;
        };
        let asset = Asset {
            kind,
            name: name.to_owned(),
            compromise,
        };
        match parsed
            .iter()
            .find(|seen| seen.kind == asset.kind && seen.name == asset.name)
        {
            None => parsed.push(asset),
            Some(seen) if seen.compromise == asset.compromise => {}
            Some(seen) => violations.add(
                format!("{field}[{index}].compromise"),
                format!(
                    "{} {:?} is listed twice, as {} and as {}; list it once",
                    asset.kind, asset.name, seen.compromise, asset.compromise
                ),
            ),
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: IndicatorType, value: &str) -> Result<String, String> {
        Indicator::parse(kind, value).map(|indicator| indicator.value)
    }

    #[test]
    fn ipv4_accepts_dotted_decimal() {
        assert_eq!(
            parse(IndicatorType::Ipv4, "192.0.2.10"),
            Ok("192.0.2.10".to_owned())
        );
    }

    #[test]
    fn ipv4_rejects_out_of_range_octet() {
        assert!(parse(IndicatorType::Ipv4, "192.0.2.300").is_err());
    }

    #[test]
    fn ipv4_rejects_leading_zero() {
        assert!(parse(IndicatorType::Ipv4, "010.0.0.1").is_err());
    }

    #[test]
    fn ipv4_rejects_short_form() {
        assert!(parse(IndicatorType::Ipv4, "10.1").is_err());
    }

    #[test]
    fn ipv6_is_compressed() {
        assert_eq!(
            parse(IndicatorType::Ipv6, "2001:0DB8:0:0:0:0:0:1"),
            Ok("2001:db8::1".to_owned())
        );
    }

    #[test]
    fn domain_is_lowercased_without_trailing_dot() {
        assert_eq!(
            parse(IndicatorType::Domain, "Evil.Example.COM."),
            Ok("evil.example.com".to_owned())
        );
    }

    #[test]
    fn domain_rejects_underscore_and_edge_hyphen() {
        assert!(parse(IndicatorType::Domain, "bad_name.example").is_err());
        assert!(parse(IndicatorType::Domain, "-bad.example").is_err());
    }

    #[test]
    fn domain_rejects_single_label() {
        assert!(parse(IndicatorType::Domain, "localhost").is_err());
    }

    #[test]
    fn url_rejects_other_schemes() {
        assert!(parse(IndicatorType::Url, "javascript:alert(1)").is_err());
        assert!(parse(IndicatorType::Url, "file:///etc/passwd").is_err());
    }

    #[test]
    fn url_host_is_lowercased() {
        assert_eq!(
            parse(IndicatorType::Url, "HTTP://Evil.Example/a"),
            Ok("http://evil.example/a".to_owned())
        );
    }

    #[test]
    fn email_domain_is_lowercased() {
        assert_eq!(
            parse(IndicatorType::Email, "Alice@Example.COM"),
            Ok("Alice@example.com".to_owned())
        );
    }

    #[test]
    fn email_rejects_double_dot() {
        assert!(parse(IndicatorType::Email, "a..b@example.com").is_err());
    }

    #[test]
    fn sha256_is_lowercased() {
        let upper = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        assert_eq!(
            parse(IndicatorType::Sha256, upper),
            Ok(upper.to_ascii_lowercase())
        );
    }

    #[test]
    fn sha256_rejects_wrong_length() {
        assert!(parse(IndicatorType::Sha256, "e3b0c442").is_err());
    }

    #[test]
    fn md5_rejects_non_hex() {
        assert!(parse(IndicatorType::Md5, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz").is_err());
    }

    #[test]
    fn filename_rejects_path() {
        assert!(parse(IndicatorType::Filename, "c:\\temp\\evil.exe").is_err());
        assert!(parse(IndicatorType::Filename, "/tmp/evil").is_err());
    }

    #[test]
    fn duplicates_collapse_after_canonicalization() {
        let mut violations = Violations::default();
        let raw = vec![
            RawIndicator {
                kind: IndicatorType::Domain.code(),
                value: "Example.com".into(),
            },
            RawIndicator {
                kind: IndicatorType::Domain.code(),
                value: "example.com.".into(),
            },
        ];
        let parsed = parse_indicators("indicators", &raw, &mut violations);
        assert!(violations.is_empty());
        assert_eq!(parsed.len(), 1);
    }
}
