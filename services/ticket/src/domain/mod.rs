//! Rules of the ticket service: validated values, the lifecycle graph and the changes
//! each request makes. Nothing here depends on gRPC or SQL.

pub mod change;
pub mod enums;
pub mod import;
pub mod indicator;
pub mod lifecycle;
pub mod page;
pub mod ticket;

use std::fmt;

use chrono::{DateTime, Duration, DurationRound, Utc};

pub use change::FieldChange;
pub use enums::{
    AssetKind, Category, CompromiseStatus, IndicatorType, Resolution, Severity, Status,
};
pub use indicator::{Asset, Indicator, RawAsset, RawIndicator};
pub use ticket::{Comment, Ticket, TicketKey, TicketRef};

/// How far in the future a client clock may be before a timestamp counts as invalid.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// One invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Path of the field, for example `indicators[0].value`.
    pub field: String,
    /// Problem with the field, quoting the bad value and saying how to fix it.
    pub description: String,
}

/// Every invalid field of one request, so a client can fix them all in one round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(Violation {
            field: field.into(),
            description: description.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns `value` when nothing was reported, else the violations.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Returns the violations with `prefix.` in front of each field path.
    pub fn prefixed(self, prefix: &str) -> Violations {
        Violations(
            self.0
                .into_iter()
                .map(|violation| Violation {
                    field: format!("{prefix}.{}", violation.field),
                    description: violation.description,
                })
                .collect(),
        )
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, violation) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", violation.field, violation.description)?;
        }
        Ok(())
    }
}

/// Drops sub-microsecond digits, which PostgreSQL does not store, so a value returned
/// before and after a round trip through the database is the same.
pub fn truncate_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(Duration::microseconds(1)).unwrap_or(at)
}

/// Returns the current time at microsecond precision.
pub fn now() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

/// Formats an instant as RFC 3339 in UTC with microseconds, as in messages and history.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Checks the length of a text field in characters; `min` 1 makes it required.
pub fn check_text(field: &str, value: &str, min: usize, max: usize, violations: &mut Violations) {
    let length = value.chars().count();
    if length < min {
        violations.add(
            field,
            format!("{field} is required; give 1 to {max} characters"),
        );
    } else if length > max {
        violations.add(
            field,
            format!("{field} has {length} characters; at most {max} are allowed"),
        );
    } else if let Some(control) = value.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        // Control characters such as ESC would reach analysts' terminals through the CLI.
        violations.add(
            field,
            format!(
                "{field} contains the control character U+{:04X}; only line breaks and tabs are allowed",
                u32::from(control)
            ),
        );
    }
}

/// Rejects an instant later than now plus the allowed clock skew.
pub fn check_not_future(
    field: &str,
    value: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    violations: &mut Violations,
) {
    if let Some(value) = value
        && value > now + CLOCK_SKEW
    {
        violations.add(
            field,
            format!(
                "{field} {} lies in the future (now is {}); give the time the event happened",
                format_time(value),
                format_time(now)
            ),
        );
    }
}

/// Maximum number of tags on a ticket and maximum tag length in characters.
pub const MAX_TAGS: usize = 64;
pub const MAX_TAG_LEN: usize = 64;

/// Trims and lowercases tags, drops empty ones and repeats, and checks the bounds.
pub fn normalize_tags(field: &str, raw: &[String], violations: &mut Violations) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for (index, tag) in raw.iter().enumerate() {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() {
            continue;
        }
        if tag.chars().count() > MAX_TAG_LEN || tag.chars().any(char::is_control) {
            violations.add(
                format!("{field}[{index}]"),
                format!("tag {tag:?} must have at most {MAX_TAG_LEN} characters and no control characters"),
            );
            continue;
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.len() > MAX_TAGS {
        violations.add(
            field,
            format!(
                "{} distinct tags given; at most {MAX_TAGS} are allowed",
                tags.len()
            ),
        );
    }
    tags
}
