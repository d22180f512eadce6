//! The ticket, its key, and the validation of creates and updates.

use std::fmt;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::indicator::{parse_assets, parse_indicators};
use super::{
    Asset, Category, Indicator, RawAsset, RawIndicator, Resolution, Severity, Status, Violations,
    check_not_future, check_text, format_time, normalize_tags,
};

pub const MAX_TITLE_LEN: usize = 200;
pub const MAX_DESCRIPTION_LEN: usize = 20_000;
/// Maximum length of an assignee, team, reporter, detection source or method, in characters.
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_REQUEST_ID_LEN: usize = 128;
pub const MAX_COMMENT_LEN: usize = 20_000;
/// Maximum size of a ticket's whole worklog, in bytes of comment text, so that comments
/// alone cannot fill the 16 MiB that a GetTicket response may hold.
// NOTE: the other fields' largest size (1,000 indicators and 1,000 assets) was not worked
// out, so a ticket near this limit with the largest of those may still pass 16 MiB.
pub const MAX_WORKLOG_BYTES: i64 = 8 * 1024 * 1024;
/// Maximum length of a transition note or import reason, in characters.
pub const MAX_NOTE_LEN: usize = 2_000;

/// An incident ticket as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Ticket {
    pub id: Uuid,
    pub key: String,
    pub title: String,
    pub description: String,
    /// `None` is unrated, which only imports may leave.
    pub severity: Option<Severity>,
    pub category: Category,
    pub status: Status,
    pub resolution: Option<Resolution>,
    pub assignee: String,
    pub team: String,
    pub reporter: String,
    pub detection_source: String,
    pub detection_method: String,
    pub indicators: Vec<Indicator>,
    pub assets: Vec<Asset>,
    pub tags: Vec<String>,
    pub imported: bool,
    pub import_source: Option<String>,
    pub reopen_count: i32,
    pub version: i64,
    pub occurred_at: Option<DateTime<Utc>>,
    pub detected_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub contained_at: Option<DateTime<Utc>>,
    pub eradicated_at: Option<DateTime<Utc>>,
    pub recovered_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub last_resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl Ticket {
    /// Entity tag: the version as decimal text.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }
}

/// An entry of a ticket's worklog.
#[derive(Clone, Debug, PartialEq)]
pub struct Comment {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// Human key of a ticket, `INC-` followed by a positive sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TicketKey(String);

impl TicketKey {
    pub fn parse(text: &str) -> Option<TicketKey> {
        let number = text.strip_prefix("INC-")?;
        let valid = !number.is_empty()
            && number.len() <= 18
            && number.chars().all(|c| c.is_ascii_digit())
            && !number.starts_with('0');
        valid.then(|| TicketKey(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ticket named by its id or its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TicketRef {
    Id(Uuid),
    Key(TicketKey),
}

impl TicketRef {
    pub fn parse(field: &str, text: &str) -> Result<TicketRef, Violations> {
        let text = text.trim();
        if let Some(key) = TicketKey::parse(text) {
            return Ok(TicketRef::Key(key));
        }
        if let Ok(id) = Uuid::parse_str(text) {
            return Ok(TicketRef::Id(id));
        }
        let mut violations = Violations::default();
        violations.add(
            field,
            format!("{text:?} is neither a ticket id (UUID) nor a key such as INC-1042"),
        );
        Err(violations)
    }
}

impl fmt::Display for TicketRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TicketRef::Id(id) => write!(f, "{id}"),
            TicketRef::Key(key) => write!(f, "{key}"),
        }
    }
}

/// Parses an etag sent by a client: the decimal version, with or without quotes.
pub fn parse_etag(field: &str, text: &str) -> Result<i64, Violations> {
    let trimmed = text.trim().trim_start_matches("W/").trim_matches('"');
    match trimmed.parse::<i64>() {
        Ok(version) if version > 0 => Ok(version),
        _ => {
            let mut violations = Violations::default();
            violations.add(
                field,
                format!("etag {text:?} is invalid; send the etag of the ticket as last read"),
            );
            Err(violations)
        }
    }
}

/// Fields of a CreateTicket request, before validation.
#[derive(Clone, Debug, Default)]
pub struct CreateInput {
    pub request_id: String,
    pub title: String,
    pub description: String,
    pub severity: i32,
    pub category: i32,
    pub assignee: String,
    pub team: String,
    pub reporter: String,
    pub detection_source: String,
    pub detection_method: String,
    pub indicators: Vec<RawIndicator>,
    pub assets: Vec<RawAsset>,
    pub tags: Vec<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub detected_at: Option<DateTime<Utc>>,
}

/// A validated create: the ticket to insert, its idempotency key and the digest of its
/// content. The digest separates a retry from a different request that reuses the key.
#[derive(Clone, Debug)]
pub struct NewTicket {
    pub ticket: Ticket,
    pub request_id: String,
    pub request_digest: String,
}

/// Validates a create request. `actor` becomes the reporter when the request names none.
pub fn validate_create(
    input: CreateInput,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<NewTicket, Violations> {
    let mut violations = Violations::default();
    let request_id = input.request_id.trim().to_owned();
    if request_id.is_empty() || request_id.chars().count() > MAX_REQUEST_ID_LEN {
        violations.add(
            "request_id",
            format!(
                "request_id {:?} must have 1 to {MAX_REQUEST_ID_LEN} characters; send a unique id such as a UUID and reuse it only for retries",
                input.request_id
            ),
        );
    }

    let title = input.title.trim().to_owned();
    check_text("title", &title, 1, MAX_TITLE_LEN, &mut violations);
    check_text(
        "description",
        &input.description,
        0,
        MAX_DESCRIPTION_LEN,
        &mut violations,
    );
    let severity = required_severity("severity", input.severity, &mut violations);
    let category = required_category("category", input.category, &mut violations);
    let reporter = if input.reporter.trim().is_empty() {
        actor.to_owned()
    } else {
        input.reporter.trim().to_owned()
    };
    let names = [
        ("assignee", input.assignee.trim()),
        ("team", input.team.trim()),
        ("reporter", reporter.as_str()),
        ("detection_source", input.detection_source.trim()),
        ("detection_method", input.detection_method.trim()),
    ];
    for (field, value) in names {
        check_text(field, value, 0, MAX_NAME_LEN, &mut violations);
    }
    let indicators = parse_indicators("indicators", &input.indicators, &mut violations);
    let assets = parse_assets("assets", &input.assets, &mut violations);
    let tags = normalize_tags("tags", &input.tags, &mut violations);
    check_not_future("occurred_at", input.occurred_at, now, &mut violations);
    check_not_future("detected_at", input.detected_at, now, &mut violations);

    let ticket = Ticket {
        id: Uuid::now_v7(),
        key: String::new(),
        title,
        description: input.description,
        severity,
        category: category.unwrap_or(Category::Other),
        status: Status::New,
        resolution: None,
        assignee: input.assignee.trim().to_owned(),
        team: input.team.trim().to_owned(),
        reporter,
        detection_source: input.detection_source.trim().to_owned(),
        detection_method: input.detection_method.trim().to_owned(),
        indicators,
        assets,
        tags,
        imported: false,
        import_source: None,
        reopen_count: 0,
        version: 1,
        occurred_at: input.occurred_at,
        detected_at: input.detected_at,
        created_at: now,
        updated_at: now,
        acknowledged_at: None,
        contained_at: None,
        eradicated_at: None,
        recovered_at: None,
        resolved_at: None,
        last_resolved_at: None,
        closed_at: None,
    };
    check_timestamp_order(&ticket, &mut violations);
    let request_digest = content_digest(&ticket);
    violations.into_result(NewTicket {
        ticket,
        request_id,
        request_digest,
    })
}

/// SHA-256 of the ticket's client-given content in canonical JSON, without the id and
/// the server's timestamps, so two requests with equal content have equal digests.
fn content_digest(ticket: &Ticket) -> String {
    let content = serde_json::json!({
        "title": ticket.title,
        "description": ticket.description,
        "severity": ticket.severity.map(Severity::as_str),
        "category": ticket.category.as_str(),
        "assignee": ticket.assignee,
        "team": ticket.team,
        "reporter": ticket.reporter,
        "detection_source": ticket.detection_source,
        "detection_method": ticket.detection_method,
        "indicators": ticket.indicators.iter().map(Indicator::to_json).collect::<Vec<_>>(),
        "assets": ticket.assets.iter().map(Asset::to_json).collect::<Vec<_>>(),
        "tags": ticket.tags,
        "occurred_at": ticket.occurred_at.map(format_time),
        "detected_at": ticket.detected_at.map(format_time),
    });
    // serde_json without the preserve_order feature writes object keys sorted.
    hex::encode(Sha256::digest(content.to_string().as_bytes()))
}

pub(crate) fn required_severity(
    field: &str,
    code: i32,
    violations: &mut Violations,
) -> Option<Severity> {
    match Severity::from_code(code) {
        Ok(Some(severity)) => Some(severity),
        _ => {
            violations.add(
                field,
                format!(
                    "severity {code} is missing or unknown; use one of {}",
                    Severity::names()
                ),
            );
            None
        }
    }
}

pub(crate) fn required_category(
    field: &str,
    code: i32,
    violations: &mut Violations,
) -> Option<Category> {
    match Category::from_code(code) {
        Ok(Some(category)) => Some(category),
        _ => {
            violations.add(
                field,
                format!(
                    "category {code} is missing or unknown; use one of {}",
                    Category::names()
                ),
            );
            None
        }
    }
}

/// Checks that detection does not precede the activity and that no response step
/// precedes detection. Each violation names both fields and their values.
pub fn check_timestamp_order(ticket: &Ticket, violations: &mut Violations) {
    let mut require_not_before =
        |later: &str,
         later_at: Option<DateTime<Utc>>,
         earlier: &str,
         earlier_at: Option<DateTime<Utc>>| {
            if let (Some(later_at), Some(earlier_at)) = (later_at, earlier_at)
                && later_at < earlier_at
            {
                violations.add(
                later,
                format!(
                    "{later} {} is before {earlier} {}; {later} must not be earlier than {earlier}",
                    format_time(later_at),
                    format_time(earlier_at)
                ),
            );
            }
        };
    require_not_before(
        "detected_at",
        ticket.detected_at,
        "occurred_at",
        ticket.occurred_at,
    );
    require_not_before(
        "acknowledged_at",
        ticket.acknowledged_at,
        "detected_at",
        ticket.detected_at,
    );
    require_not_before(
        "contained_at",
        ticket.contained_at,
        "detected_at",
        ticket.detected_at,
    );
    require_not_before(
        "resolved_at",
        ticket.resolved_at,
        "detected_at",
        ticket.detected_at,
    );
    require_not_before(
        "closed_at",
        ticket.closed_at,
        "resolved_at",
        ticket.resolved_at,
    );
}

/// Paths of [`PatchInput`] that UpdateTicket accepts in its field mask.
pub const PATCH_PATHS: &[&str] = &[
    "title",
    "description",
    "severity",
    "category",
    "assignee",
    "team",
    "detection_source",
    "detection_method",
    "indicators",
    "assets",
    "tags",
    "occurred_at",
    "detected_at",
];

/// Fields of an UpdateTicket request, before validation.
#[derive(Clone, Debug, Default)]
pub struct PatchInput {
    pub paths: Vec<String>,
    pub title: String,
    pub description: String,
    pub severity: i32,
    pub category: i32,
    pub assignee: String,
    pub team: String,
    pub detection_source: String,
    pub detection_method: String,
    pub indicators: Vec<RawIndicator>,
    pub assets: Vec<RawAsset>,
    pub tags: Vec<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub detected_at: Option<DateTime<Utc>>,
}

/// Checks the field mask alone, before the ticket is read.
pub fn check_mask(paths: &[String]) -> Result<(), Violations> {
    let mut violations = Violations::default();
    if paths.is_empty() {
        violations.add(
            "update_mask",
            format!(
                "update_mask is required; list the fields to change from: {}",
                PATCH_PATHS.join(", ")
            ),
        );
    }
    for path in paths {
        if PATCH_PATHS.contains(&path.as_str()) {
            continue;
        }
        let hint = match path.as_str() {
            "status" | "resolution" => {
                "status and resolution change only through TransitionTicket".to_owned()
            }
            _ => format!("valid paths are: {}", PATCH_PATHS.join(", ")),
        };
        violations.add(
            "update_mask",
            format!("path {path:?} cannot be updated; {hint}"),
        );
    }
    violations.into_result(())
}

/// Applies the masked fields of `input` to a copy of `current` and validates the result.
pub fn apply_patch(
    current: &Ticket,
    input: PatchInput,
    now: DateTime<Utc>,
) -> Result<Ticket, Violations> {
    check_mask(&input.paths)?;
    let mut violations = Violations::default();
    let mut next = current.clone();
    for path in &input.paths {
        let field = format!("patch.{path}");
        match path.as_str() {
            "title" => {
                next.title = input.title.trim().to_owned();
                check_text(&field, &next.title, 1, MAX_TITLE_LEN, &mut violations);
            }
            "description" => {
                next.description = input.description.clone();
                check_text(
                    &field,
                    &next.description,
                    0,
                    MAX_DESCRIPTION_LEN,
                    &mut violations,
                );
            }
            "severity" => {
                next.severity =
                    required_severity(&field, input.severity, &mut violations).or(next.severity)
            }
            "category" => {
                next.category = required_category(&field, input.category, &mut violations)
                    .unwrap_or(next.category)
            }
            "assignee" | "team" | "detection_source" | "detection_method" => {
                let (target, value) = match path.as_str() {
                    "assignee" => (&mut next.assignee, &input.assignee),
                    "team" => (&mut next.team, &input.team),
                    "detection_source" => (&mut next.detection_source, &input.detection_source),
                    _ => (&mut next.detection_method, &input.detection_method),
                };
                *target = value.trim().to_owned();
                check_text(&field, target, 0, MAX_NAME_LEN, &mut violations);
            }
            "indicators" => {
                next.indicators = parse_indicators(&field, &input.indicators, &mut violations)
            }
            "assets" => next.assets = parse_assets(&field, &input.assets, &mut violations),
            "tags" => next.tags = normalize_tags(&field, &input.tags, &mut violations),
            "occurred_at" => {
                check_not_future(&field, input.occurred_at, now, &mut violations);
                next.occurred_at = input.occurred_at;
            }
            "detected_at" => {
                check_not_future(&field, input.detected_at, now, &mut violations);
                next.detected_at = input.detected_at;
            }
            _ => unreachable!("check_mask accepted only known paths"),
        }
    }
    check_timestamp_order(&next, &mut violations);
    violations.into_result(next)
}

/// Validates a comment body and returns it unchanged.
pub fn validate_comment(body: &str) -> Result<(), Violations> {
    let mut violations = Violations::default();
    if body.trim().is_empty() {
        violations.add(
            "body",
            format!("body is required; write 1 to {MAX_COMMENT_LEN} characters"),
        );
    } else {
        check_text("body", body, 1, MAX_COMMENT_LEN, &mut violations);
    }
    violations.into_result(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn input() -> CreateInput {
        CreateInput {
            request_id: "r-1".into(),
            title: "Beaconing host".into(),
            severity: Severity::High.code(),
            category: Category::Malware.code(),
            ..CreateInput::default()
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap()
    }

    #[test]
    fn create_accepts_minimal_request() {
        assert!(validate_create(input(), "alice", now()).is_ok());
    }

    #[test]
    fn create_defaults_reporter_to_actor() {
        let created = validate_create(input(), "alice", now()).unwrap();
        assert_eq!(created.ticket.reporter, "alice");
    }

    #[test]
    fn create_rejects_empty_title() {
        let mut request = input();
        request.title = "   ".into();
        let violations = validate_create(request, "alice", now()).unwrap_err();
        assert_eq!(violations.0[0].field, "title");
    }

    #[test]
    fn create_rejects_terminal_escapes_in_title() {
        let mut request = input();
        request.title = "bell\u{7}\u{1b}[31mred".into();
        let violations = validate_create(request, "alice", now()).unwrap_err();
        assert_eq!(violations.0[0].field, "title");
        assert!(violations.0[0].description.contains("U+0007"), "{}", violations.0[0].description);
    }

    #[test]
    fn create_keeps_line_breaks_in_description() {
        let mut request = input();
        request.description = "first line\nsecond line\tindented".into();
        assert!(validate_create(request, "alice", now()).is_ok());
    }

    #[test]
    fn create_rejects_long_request_id() {
        let mut request = input();
        request.request_id = "x".repeat(129);
        let violations = validate_create(request, "alice", now()).unwrap_err();
        assert_eq!(violations.0[0].field, "request_id");
    }

    #[test]
    fn create_rejects_detection_before_occurrence() {
        let mut request = input();
        request.occurred_at = Some(now() - chrono::Duration::hours(1));
        request.detected_at = Some(now() - chrono::Duration::hours(2));
        let violations = validate_create(request, "alice", now()).unwrap_err();
        assert_eq!(violations.0[0].field, "detected_at");
        assert!(violations.0[0].description.contains("occurred_at"));
    }

    #[test]
    fn create_rejects_future_detection() {
        let mut request = input();
        request.detected_at = Some(now() + chrono::Duration::hours(1));
        assert!(validate_create(request, "alice", now()).is_err());
    }

    #[test]
    fn equal_content_has_equal_digest() {
        let first = validate_create(input(), "alice", now()).unwrap();
        let second = validate_create(input(), "alice", now()).unwrap();
        assert_eq!(first.request_digest, second.request_digest);
    }

    #[test]
    fn other_content_has_other_digest() {
        let first = validate_create(input(), "alice", now()).unwrap();
        let mut other = input();
        other.title = "Another".into();
        let second = validate_create(other, "alice", now()).unwrap();
        assert_ne!(first.request_digest, second.request_digest);
    }

    #[test]
    fn ticket_key_rejects_leading_zero() {
        assert!(TicketKey::parse("INC-0042").is_none());
        assert!(TicketKey::parse("INC-42").is_some());
    }

    #[test]
    fn mask_rejects_status_path() {
        let violations = check_mask(&["status".to_owned()]).unwrap_err();
        assert!(violations.0[0].description.contains("TransitionTicket"));
    }

    #[test]
    fn mask_rejects_unknown_path_listing_valid_ones() {
        let violations = check_mask(&["colour".to_owned()]).unwrap_err();
        assert!(violations.0[0].description.contains("detection_method"));
    }
}
