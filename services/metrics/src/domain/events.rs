//! Validation of the events that feed the projection.

use chrono::{DateTime, Utc};
use docket_proto::events::v1::{Event, TicketSnapshot};
use uuid::Uuid;

use super::names::{self, Category, Resolution, Severity, Status};
use super::time;
use crate::error::{Error, FieldViolation};

/// Largest batch one RecordEvents call accepts.
pub const MAX_EVENTS: usize = 1000;

/// Violations reported for one request at most, which keeps the error response small
/// when a whole batch is malformed the same way.
const MAX_VIOLATIONS: usize = 100;

/// Prefix of the actions that change a ticket and therefore must carry its snapshot.
const TICKET_ACTION_PREFIX: &str = "ticket.";

/// State of one ticket after a change, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentSnapshot {
    pub ticket_id: Uuid,
    pub ticket_key: String,
    pub version: i64,
    pub severity: Option<Severity>,
    pub category: Option<Category>,
    pub status: Status,
    pub resolution: Option<Resolution>,
    pub team: String,
    pub detection_source: String,
    pub imported: bool,
    pub reopen_count: i32,
    pub created_at: DateTime<Utc>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub detected_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub contained_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub last_resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// One validated event of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordedEvent {
    /// An event carrying a ticket snapshot, which may update the projection.
    Ticket { event_id: Uuid, snapshot: Box<IncidentSnapshot> },
    /// An event without a snapshot, which the projection has no use for.
    Unrelated { event_id: Uuid },
}

/// Validates a RecordEvents batch as a whole: either every event is valid, or the
/// error lists the invalid fields and nothing may be written.
pub fn parse_events(events: &[Event]) -> Result<Vec<RecordedEvent>, Error> {
    if events.is_empty() {
        return Err(Error::InvalidArgument(vec![FieldViolation::new(
            "events",
            "the batch is empty; send between 1 and 1000 events",
        )]));
    }
    if events.len() > MAX_EVENTS {
        return Err(Error::InvalidArgument(vec![FieldViolation::new(
            "events",
            format!("the batch has {} events; send at most {MAX_EVENTS} per call", events.len()),
        )]));
    }

    let mut violations = Vec::new();
    let mut parsed = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        if let Some(event) = parse_event(&format!("events[{index}]"), event, &mut violations) {
            parsed.push(event);
        }
    }
    if violations.is_empty() {
        Ok(parsed)
    } else {
        violations.truncate(MAX_VIOLATIONS);
        Err(Error::InvalidArgument(violations))
    }
}

fn parse_event(path: &str, event: &Event, violations: &mut Vec<FieldViolation>) -> Option<RecordedEvent> {
    let event_id = parse_uuid(&format!("{path}.event_id"), &event.event_id, violations);

    let snapshot = match &event.ticket {
        Some(ticket) => parse_snapshot(&format!("{path}.ticket"), ticket, violations),
        // An event that created no ticket version, such as a denied attempt, changes no
        // ticket state, so it may come without a snapshot even when its action is a
        // ticket action.
        None if event.action.starts_with(TICKET_ACTION_PREFIX) && event.resource_version > 0 => {
            violations.push(FieldViolation::new(
                format!("{path}.ticket"),
                format!(
                    "missing; the `{}` event creates ticket version {} and must carry the ticket snapshot",
                    event.action, event.resource_version
                ),
            ));
            None
        }
        None => return event_id.map(|event_id| RecordedEvent::Unrelated { event_id }),
    };

    let snapshot = snapshot?;
    check_consistency(path, event, &snapshot, violations)?;
    Some(RecordedEvent::Ticket {
        event_id: event_id?,
        snapshot: Box::new(snapshot),
    })
}

/// Rejects a snapshot that contradicts its own event: a different ticket than the
/// event's resource, or a different version than the one the event created.
fn check_consistency(path: &str, event: &Event, snapshot: &IncidentSnapshot, violations: &mut Vec<FieldViolation>) -> Option<()> {
    let before = violations.len();
    if let Some(resource) = &event.resource
        && resource.r#type == "ticket"
        && Uuid::try_parse(&resource.id).ok() != Some(snapshot.ticket_id)
    {
        violations.push(FieldViolation::new(
            format!("{path}.ticket.ticket_id"),
            format!(
                "{} does not match resource.id {:?}; the snapshot must describe the ticket the event changed",
                snapshot.ticket_id, resource.id
            ),
        ));
    }
    if event.resource_version > 0 && event.resource_version != snapshot.version {
        violations.push(FieldViolation::new(
            format!("{path}.ticket.version"),
            format!(
                "{} does not match resource_version {}; the snapshot must be the state after this change",
                snapshot.version, event.resource_version
            ),
        ));
    }
    (violations.len() == before).then_some(())
}

fn parse_snapshot(path: &str, ticket: &TicketSnapshot, violations: &mut Vec<FieldViolation>) -> Option<IncidentSnapshot> {
    let before = violations.len();
    let ticket_id = parse_uuid(&format!("{path}.ticket_id"), &ticket.ticket_id, violations);
    if ticket.version < 1 {
        violations.push(FieldViolation::new(
            format!("{path}.version"),
            format!("{} is not a ticket version; versions start at 1", ticket.version),
        ));
    }
    let severity = parse_optional_name(&format!("{path}.severity"), &ticket.severity, "severity", Severity::parse, Severity::NAMES, violations);
    let category = parse_optional_name(&format!("{path}.category"), &ticket.category, "category", Category::parse, Category::NAMES, violations);
    let resolution = parse_optional_name(
        &format!("{path}.resolution"),
        &ticket.resolution,
        "resolution",
        Resolution::parse,
        Resolution::NAMES,
        violations,
    );
    let status = Status::parse(&ticket.status);
    if status.is_none() {
        violations.push(FieldViolation::new(
            format!("{path}.status"),
            format!("{:?} is not a status; use one of {}", ticket.status, names::list(Status::NAMES)),
        ));
    }
    if ticket.reopen_count < 0 {
        violations.push(FieldViolation::new(
            format!("{path}.reopen_count"),
            format!("{} is negative; a reopen count starts at 0", ticket.reopen_count),
        ));
    }

    let created_at = match &ticket.created_at {
        Some(timestamp) => parse_timestamp(&format!("{path}.created_at"), timestamp, violations),
        None => {
            violations.push(FieldViolation::new(format!("{path}.created_at"), "missing; every ticket has a creation time"));
            None
        }
    };
    let mut optional = |field: &str, timestamp: &Option<prost_types::Timestamp>| {
        timestamp
            .as_ref()
            .and_then(|timestamp| parse_timestamp(&format!("{path}.{field}"), timestamp, violations))
    };
    let occurred_at = optional("occurred_at", &ticket.occurred_at);
    let detected_at = optional("detected_at", &ticket.detected_at);
    let acknowledged_at = optional("acknowledged_at", &ticket.acknowledged_at);
    let contained_at = optional("contained_at", &ticket.contained_at);
    let resolved_at = optional("resolved_at", &ticket.resolved_at);
    let last_resolved_at = optional("last_resolved_at", &ticket.last_resolved_at);
    let closed_at = optional("closed_at", &ticket.closed_at);

    if violations.len() > before {
        return None;
    }
    Some(IncidentSnapshot {
        ticket_id: ticket_id?,
        ticket_key: ticket.key.clone(),
        version: ticket.version,
        severity: severity?,
        category: category?,
        status: status?,
        resolution: resolution?,
        team: ticket.team.clone(),
        detection_source: ticket.detection_source.clone(),
        imported: ticket.imported,
        reopen_count: ticket.reopen_count,
        created_at: created_at?,
        occurred_at,
        detected_at,
        acknowledged_at,
        contained_at,
        resolved_at,
        last_resolved_at,
        closed_at,
    })
}

fn parse_uuid(field: &str, text: &str, violations: &mut Vec<FieldViolation>) -> Option<Uuid> {
    match Uuid::try_parse(text) {
        Ok(id) if !id.is_nil() => Some(id),
        Ok(_) => {
            violations.push(FieldViolation::new(field, "the nil UUID is not an id; send the UUID the producer assigned"));
            None
        }
        Err(_) => {
            violations.push(FieldViolation::new(
                field,
                format!("{text:?} is not a UUID; send a hyphenated UUID such as 0190b7f2-1c3a-7d4e-8f00-1a2b3c4d5e6f"),
            ));
            None
        }
    }
}

/// Parses an enum name where the empty string means unset. The outer `Option` is `None`
/// when the name is invalid.
fn parse_optional_name<T>(
    field: &str,
    text: &str,
    kind: &str,
    parse: fn(&str) -> Option<T>,
    allowed: &[&str],
    violations: &mut Vec<FieldViolation>,
) -> Option<Option<T>> {
    if text.is_empty() {
        return Some(None);
    }
    match parse(text) {
        Some(value) => Some(Some(value)),
        None => {
            violations.push(FieldViolation::new(
                field,
                format!("{text:?} is not a {kind}; use one of {}, or an empty string when unset", names::list(allowed)),
            ));
            None
        }
    }
}

fn parse_timestamp(field: &str, timestamp: &prost_types::Timestamp, violations: &mut Vec<FieldViolation>) -> Option<DateTime<Utc>> {
    let instant = time::from_proto(timestamp);
    if instant.is_none() {
        violations.push(FieldViolation::new(field, time::invalid_description(timestamp)));
    }
    instant
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> TicketSnapshot {
        TicketSnapshot {
            ticket_id: "0190b7f2-1c3a-7d4e-8f00-1a2b3c4d5e6f".into(),
            key: "INC-1".into(),
            version: 1,
            severity: "high".into(),
            status: "new".into(),
            created_at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
            ..Default::default()
        }
    }

    fn event(ticket: Option<TicketSnapshot>) -> Event {
        Event {
            event_id: "0190b7f2-1c3a-7d4e-8f00-000000000001".into(),
            action: "ticket.created".into(),
            resource_version: 1,
            ticket,
            ..Default::default()
        }
    }

    fn violated_fields(error: Error) -> Vec<String> {
        match error {
            Error::InvalidArgument(violations) => violations.into_iter().map(|violation| violation.field).collect(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn valid_ticket_event_parses() {
        let parsed = parse_events(&[event(Some(snapshot()))]).unwrap();
        assert!(matches!(&parsed[0], RecordedEvent::Ticket { snapshot, .. } if snapshot.severity == Some(Severity::High)));
    }

    #[test]
    fn bad_fields_are_named_with_their_index() {
        let mut bad = snapshot();
        bad.severity = "urgent".into();
        bad.version = 0;
        let error = parse_events(&[event(Some(snapshot())), event(Some(bad))]).unwrap_err();
        assert_eq!(violated_fields(error), ["events[1].ticket.version", "events[1].ticket.severity"]);
    }

    #[test]
    fn ticket_change_without_snapshot_is_rejected() {
        let error = parse_events(&[event(None)]).unwrap_err();
        assert_eq!(violated_fields(error), ["events[0].ticket"]);
    }

    #[test]
    fn versionless_event_without_snapshot_is_unrelated() {
        let mut denied = event(None);
        denied.action = "ticket.access_denied".into();
        denied.resource_version = 0;
        let parsed = parse_events(&[denied]).unwrap();
        assert!(matches!(parsed[0], RecordedEvent::Unrelated { .. }));
    }

    #[test]
    fn snapshot_must_match_its_event() {
        let mut mismatched = event(Some(snapshot()));
        mismatched.resource = Some(docket_proto::events::v1::Resource {
            r#type: "ticket".into(),
            id: "0190b7f2-1c3a-7d4e-8f00-ffffffffffff".into(),
            key: "INC-1".into(),
        });
        mismatched.resource_version = 2;
        let error = parse_events(&[mismatched]).unwrap_err();
        assert_eq!(violated_fields(error), ["events[0].ticket.ticket_id", "events[0].ticket.version"]);
    }

    #[test]
    fn empty_and_oversized_batches_are_rejected() {
        assert_eq!(violated_fields(parse_events(&[]).unwrap_err()), ["events"]);
        let many = vec![event(Some(snapshot())); MAX_EVENTS + 1];
        assert_eq!(violated_fields(parse_events(&many).unwrap_err()), ["events"]);
    }
}
