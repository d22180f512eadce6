//! Listing queries and their opaque page tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Category, Severity, Status, Violations, format_time};

pub const DEFAULT_PAGE_SIZE: i64 = 100;
pub const MAX_PAGE_SIZE: i64 = 1000;

/// Checks a requested page size: 0 means the default, 1 to 1000 are taken as given.
pub fn page_size(field: &str, requested: i32, violations: &mut Violations) -> i64 {
    match i64::from(requested) {
        0 => DEFAULT_PAGE_SIZE,
        size @ 1..=MAX_PAGE_SIZE => size,
        size => {
            violations.add(field, format!("page_size {size} is out of range; use 1 to {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}"));
            DEFAULT_PAGE_SIZE
        }
    }
}

/// Encodes the position after the last returned item together with a digest of the
/// query, so a token is only accepted for the query that produced it.
pub fn encode_token(position: &str, query_digest: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{position}|{query_digest}"))
}

/// Decodes a token made by [`encode_token`] for a query with `query_digest`.
pub fn decode_token(field: &str, token: &str, query_digest: &str) -> Result<String, Violations> {
    let invalid = |reason: &str| {
        let mut violations = Violations::default();
        violations.add(field, format!("page_token is invalid: {reason}; send the token of the previous page unchanged, or none for the first page"));
        violations
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| invalid("not a token this service issued"))?;
    let text = String::from_utf8(bytes).map_err(|_| invalid("not a token this service issued"))?;
    let mut parts = text.splitn(3, '|');
    let (Some("v1"), Some(position), Some(digest)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a token this service issued"));
    };
    if digest != query_digest {
        return Err(invalid(
            "it was issued for other filters; keep the filters the same while paging",
        ));
    }
    Ok(position.to_owned())
}

fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// ListTickets filters as a client sent them.
#[derive(Clone, Debug, Default)]
pub struct ListInput {
    pub page_size: i32,
    pub page_token: String,
    pub statuses: Vec<i32>,
    pub severities: Vec<i32>,
    pub categories: Vec<i32>,
    pub assignee: String,
    pub team: String,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
}

/// A validated ListTickets query. Results are ordered by id, which is a UUIDv7 and so
/// follows creation time and never changes.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub page_size: i64,
    pub after: Option<Uuid>,
    pub statuses: Vec<Status>,
    /// `None` in this list selects unrated tickets.
    pub severities: Vec<Option<Severity>>,
    pub categories: Vec<Category>,
    pub assignee: Option<String>,
    pub team: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub updated_before: Option<DateTime<Utc>>,
    /// Digest of the filters, carried in page tokens.
    pub digest: String,
}

fn enum_list<T: Copy + Ord>(
    field: &str,
    codes: &[i32],
    from_code: fn(i32) -> Result<Option<T>, i32>,
    names: String,
    violations: &mut Violations,
) -> Vec<T> {
    let mut values = Vec::new();
    for (index, code) in codes.iter().enumerate() {
        match from_code(*code) {
            Ok(Some(value)) => values.push(value),
            _ => violations.add(
                format!("{field}[{index}]"),
                format!("value {code} is unknown or unspecified; use one of {names}"),
            ),
        }
    }
    values.sort();
    values.dedup();
    values
}

pub fn validate_list(input: ListInput) -> Result<ListQuery, Violations> {
    let mut violations = Violations::default();
    let page_size = page_size("page_size", input.page_size, &mut violations);
    let statuses = enum_list(
        "statuses",
        &input.statuses,
        Status::from_code,
        Status::names(),
        &mut violations,
    );
    let categories = enum_list(
        "categories",
        &input.categories,
        Category::from_code,
        Category::names(),
        &mut violations,
    );
    let mut severities: Vec<Option<Severity>> = Vec::new();
    for (index, code) in input.severities.iter().enumerate() {
        match Severity::from_code(*code) {
            Ok(severity) => severities.push(severity),
            Err(code) => violations.add(
                format!("severities[{index}]"),
                format!(
                    "severity {code} is unknown; use one of {}, or 0 for unrated",
                    Severity::names()
                ),
            ),
        }
    }
    severities.sort();
    severities.dedup();
    let non_empty = |text: &str| (!text.trim().is_empty()).then(|| text.trim().to_owned());

    let mut query = ListQuery {
        page_size,
        after: None,
        statuses,
        severities,
        categories,
        assignee: non_empty(&input.assignee),
        team: non_empty(&input.team),
        created_after: input.created_after,
        created_before: input.created_before,
        updated_after: input.updated_after,
        updated_before: input.updated_before,
        digest: String::new(),
    };
    query.digest = digest(&query.describe());
    if !input.page_token.is_empty() {
        match decode_token("page_token", &input.page_token, &query.digest) {
            Ok(position) => match Uuid::parse_str(&position) {
                Ok(id) => query.after = Some(id),
                Err(_) => violations.add(
                    "page_token",
                    "page_token is invalid: not a token this service issued",
                ),
            },
            Err(invalid) => violations.0.extend(invalid.0),
        }
    }
    violations.into_result(query)
}

impl ListQuery {
    /// Canonical text of the filters, without the page size and position.
    fn describe(&self) -> String {
        let time = |at: Option<DateTime<Utc>>| at.map(format_time).unwrap_or_default();
        format!(
            "statuses={:?};severities={:?};categories={:?};assignee={:?};team={:?};created=[{},{});updated=[{},{})",
            self.statuses,
            self.severities,
            self.categories,
            self.assignee,
            self.team,
            time(self.created_after),
            time(self.created_before),
            time(self.updated_after),
            time(self.updated_before)
        )
    }

    pub fn next_token(&self, last: Uuid) -> String {
        encode_token(&last.to_string(), &self.digest)
    }
}

/// Digest that binds a history page token to the ticket named in the request.
pub fn history_digest(ticket: &str) -> String {
    digest(&format!("history:{}", ticket.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        let query = validate_list(ListInput::default()).unwrap();
        let id = Uuid::now_v7();
        let next = validate_list(ListInput {
            page_token: query.next_token(id),
            ..ListInput::default()
        })
        .unwrap();
        assert_eq!(next.after, Some(id));
    }

    #[test]
    fn token_for_other_filters_is_rejected() {
        let query = validate_list(ListInput::default()).unwrap();
        let token = query.next_token(Uuid::now_v7());
        let other = ListInput {
            page_token: token,
            team: "red".into(),
            ..ListInput::default()
        };
        assert!(validate_list(other).is_err());
    }

    #[test]
    fn garbage_token_is_rejected() {
        assert!(
            validate_list(ListInput {
                page_token: "%%%".into(),
                ..ListInput::default()
            })
            .is_err()
        );
    }

    #[test]
    fn page_size_zero_means_default() {
        assert_eq!(
            validate_list(ListInput::default()).unwrap().page_size,
            DEFAULT_PAGE_SIZE
        );
    }

    #[test]
    fn page_size_above_max_is_rejected() {
        assert!(
            validate_list(ListInput {
                page_size: 1001,
                ..ListInput::default()
            })
            .is_err()
        );
    }
}
