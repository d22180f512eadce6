//! Validation of imported historical incidents, which arrive in their final state.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::indicator::{parse_assets, parse_indicators};
use super::ticket::{
    MAX_DESCRIPTION_LEN, MAX_NAME_LEN, MAX_NOTE_LEN, MAX_TITLE_LEN, check_timestamp_order,
    required_category,
};
use super::{
    RawAsset, RawIndicator, Resolution, Severity, Status, Ticket, Violations, check_not_future,
    check_text, normalize_tags,
};

/// Maximum number of records in one ImportTickets call.
pub const MAX_RECORDS: usize = 1000;
/// Maximum length of an import source name, in characters.
pub const MAX_SOURCE_LEN: usize = 64;

/// One record of an ImportTickets request, before validation.
#[derive(Clone, Debug, Default)]
pub struct ImportInput {
    pub source: String,
    pub digest: String,
    pub source_id: String,
    pub title: String,
    pub description: String,
    pub severity: i32,
    pub category: i32,
    pub status: i32,
    pub resolution: i32,
    pub detection_source: String,
    pub tags: Vec<String>,
    pub indicators: Vec<RawIndicator>,
    pub assets: Vec<RawAsset>,
    pub reason: String,
    pub occurred_at: Option<DateTime<Utc>>,
    pub detected_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub contained_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// A validated import: the ticket to insert and its de-duplication key.
#[derive(Clone, Debug)]
pub struct ImportedTicket {
    pub ticket: Ticket,
    pub source: String,
    pub digest: String,
    pub reason: String,
}

/// Validates one record. The ticket is created directly in the record's status with the
/// record's lifecycle timestamps; a timestamp the record leaves unset stays unset.
pub fn validate_import(
    input: ImportInput,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<ImportedTicket, Violations> {
    let mut violations = Violations::default();
    let source = input.source.trim().to_owned();
    check_text("source", &source, 1, MAX_SOURCE_LEN, &mut violations);
    let digest_valid = input.digest.len() == 64
        && input
            .digest
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if !digest_valid {
        violations.add(
            "digest",
            format!("digest {:?} must be the SHA-256 of the source record as 64 lowercase hexadecimal digits", input.digest),
        );
    }
    check_text(
        "source_id",
        &input.source_id,
        0,
        MAX_NAME_LEN,
        &mut violations,
    );
    let title = input.title.trim().to_owned();
    check_text("title", &title, 1, MAX_TITLE_LEN, &mut violations);
    check_text(
        "description",
        &input.description,
        0,
        MAX_DESCRIPTION_LEN,
        &mut violations,
    );
    check_text(
        "detection_source",
        input.detection_source.trim(),
        0,
        MAX_NAME_LEN,
        &mut violations,
    );
    check_text("reason", &input.reason, 0, MAX_NOTE_LEN, &mut violations);

    // An import may leave the severity unrated when the source gives no rating.
    let severity = match Severity::from_code(input.severity) {
        Ok(severity) => severity,
        Err(code) => {
            violations.add(
                "severity",
                format!(
                    "severity {code} is unknown; use one of {} or leave it unset",
                    Severity::names()
                ),
            );
            None
        }
    };
    let category = required_category("category", input.category, &mut violations);
    let status = match Status::from_code(input.status) {
        Ok(Some(status)) => Some(status),
        _ => {
            violations.add(
                "status",
                format!(
                    "status {} is missing or unknown; use one of {}",
                    input.status,
                    Status::names()
                ),
            );
            None
        }
    };
    let resolution = check_resolution(status, input.resolution, &mut violations);
    check_state_timestamps(status, &input, &mut violations);

    let indicators = parse_indicators("indicators", &input.indicators, &mut violations);
    let assets = parse_assets("assets", &input.assets, &mut violations);
    let tags = normalize_tags("tags", &input.tags, &mut violations);
    let timestamps = [
        ("occurred_at", input.occurred_at),
        ("detected_at", input.detected_at),
        ("acknowledged_at", input.acknowledged_at),
        ("contained_at", input.contained_at),
        ("resolved_at", input.resolved_at),
        ("closed_at", input.closed_at),
    ];
    for (field, value) in timestamps {
        check_not_future(field, value, now, &mut violations);
    }

    let status = status.unwrap_or(Status::New);
    let resolved = matches!(status, Status::Resolved | Status::Closed);
    let description = if input.source_id.is_empty() || input.description.contains(&input.source_id)
    {
        input.description
    } else if input.description.is_empty() {
        format!("Imported from {source} record {}.", input.source_id)
    } else {
        format!(
            "{}\n\nImported from {source} record {}.",
            input.description, input.source_id
        )
    };
    let ticket = Ticket {
        id: Uuid::now_v7(),
        key: String::new(),
        title,
        description,
        severity,
        category: category.unwrap_or(super::Category::Other),
        status,
        resolution,
        assignee: String::new(),
        team: String::new(),
        reporter: actor.to_owned(),
        detection_source: input.detection_source.trim().to_owned(),
        detection_method: String::new(),
        indicators,
        assets,
        tags,
        imported: true,
        import_source: Some(source.clone()),
        reopen_count: 0,
        version: 1,
        occurred_at: input.occurred_at,
        detected_at: input.detected_at,
        created_at: now,
        updated_at: now,
        acknowledged_at: input.acknowledged_at,
        contained_at: input.contained_at,
        eradicated_at: None,
        recovered_at: None,
        resolved_at: input.resolved_at,
        last_resolved_at: if resolved { input.resolved_at } else { None },
        closed_at: input.closed_at,
    };
    check_timestamp_order(&ticket, &mut violations);
    violations.into_result(ImportedTicket {
        ticket,
        source,
        digest: input.digest,
        reason: input.reason,
    })
}

/// Checks the resolution, which a resolved or closed record needs and an open one must not have.
fn check_resolution(
    status: Option<Status>,
    code: i32,
    violations: &mut Violations,
) -> Option<Resolution> {
    let resolution = match Resolution::from_code(code) {
        Ok(resolution) => resolution,
        Err(code) => {
            violations.add(
                "resolution",
                format!(
                    "resolution {code} is unknown; use one of {}",
                    Resolution::names()
                ),
            );
            return None;
        }
    };
    match (status, resolution) {
        (Some(Status::Resolved | Status::Closed), None) => violations.add(
            "resolution",
            format!("a resolved or closed record needs a resolution; use one of {}", Resolution::names()),
        ),
        (Some(status), Some(resolution)) if status.is_open() => violations.add(
            "resolution",
            format!("resolution {resolution} is set but status {status} is open; leave it unset or resolve the record"),
        ),
        _ => {}
    }
    resolution
}

/// Rejects timestamps of states the record's status has not reached.
fn check_state_timestamps(
    status: Option<Status>,
    input: &ImportInput,
    violations: &mut Violations,
) {
    let Some(status) = status else { return };
    if input.closed_at.is_some() && status != Status::Closed {
        violations.add("closed_at", format!("closed_at is set but status is {status}; set status closed or leave closed_at unset"));
    }
    if input.resolved_at.is_some() && status.is_open() {
        violations.add(
            "resolved_at",
            format!("resolved_at is set but status {status} is open; set status resolved or closed, or leave resolved_at unset"),
        );
    }
    if status == Status::New {
        for (field, value) in [
            ("acknowledged_at", input.acknowledged_at),
            ("contained_at", input.contained_at),
        ] {
            if value.is_some() {
                violations.add(
                    field,
                    format!("{field} is set but status is new; give the status the record reached"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Category;
    use chrono::TimeZone;

    fn record() -> ImportInput {
        ImportInput {
            source: "veris".into(),
            digest: "a".repeat(64),
            title: "Lost laptop".into(),
            category: Category::PhysicalTheftOrLoss.code(),
            status: Status::Closed.code(),
            resolution: Resolution::TruePositive.code(),
            detected_at: Some(Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap()),
            resolved_at: Some(Utc.with_ymd_and_hms(2020, 1, 5, 0, 0, 0).unwrap()),
            closed_at: Some(Utc.with_ymd_and_hms(2020, 1, 6, 0, 0, 0).unwrap()),
            ..ImportInput::default()
        }
    }

    #[test]
    fn import_keeps_given_timestamps() {
        let imported = validate_import(record(), "importer", crate::domain::now()).unwrap();
        assert_eq!(imported.ticket.closed_at, record().closed_at);
        assert_eq!(imported.ticket.last_resolved_at, record().resolved_at);
        assert_eq!(imported.ticket.acknowledged_at, None);
    }

    #[test]
    fn import_allows_unrated_severity() {
        let imported = validate_import(record(), "importer", crate::domain::now()).unwrap();
        assert_eq!(imported.ticket.severity, None);
    }

    #[test]
    fn import_rejects_uppercase_digest() {
        let mut input = record();
        input.digest = "A".repeat(64);
        let violations = validate_import(input, "importer", crate::domain::now()).unwrap_err();
        assert_eq!(violations.0[0].field, "digest");
    }

    #[test]
    fn import_rejects_resolution_before_detection() {
        let mut input = record();
        input.resolved_at = Some(Utc.with_ymd_and_hms(2019, 12, 1, 0, 0, 0).unwrap());
        let violations = validate_import(input, "importer", crate::domain::now()).unwrap_err();
        assert!(
            violations
                .0
                .iter()
                .any(|violation| violation.field == "resolved_at")
        );
    }
}
