//! Events as the ledger accepts them: decoded inputs, their validation, and the
//! validated form that is recorded.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{Violations, quote};

/// Maximum number of events in one AppendEvents call.
pub const MAX_BATCH: usize = 1000;

/// A timestamp field that is set in the request; an unset field is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampInput {
    /// Seconds or nanoseconds outside the range a timestamp can hold.
    OutOfRange,
    At(DateTime<Utc>),
}

/// One event as decoded from the request, not yet validated. Missing messages decode to
/// empty strings, so validation reports them by their leaf field.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventInput {
    pub event_id: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub resource_key: String,
    pub resource_version: i64,
    pub actor_subject: String,
    /// Wire value of `docket.events.v1.ActorKind`.
    pub actor_kind: i32,
    pub relayed_by: String,
    pub occurred_at: Option<TimestampInput>,
    pub source_service: String,
    pub trace_id: String,
    pub changes: Vec<ChangeInput>,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeInput {
    pub field: String,
    pub old_value: String,
    pub new_value: String,
}

/// Whether the actor is a person or a service principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    /// The producer left the kind unset. It is recorded as unspecified rather than guessed.
    Unspecified,
    Human,
    Service,
}

impl ActorKind {
    fn from_wire(value: i32) -> Option<ActorKind> {
        match value {
            0 => Some(ActorKind::Unspecified),
            1 => Some(ActorKind::Human),
            2 => Some(ActorKind::Service),
            _ => None,
        }
    }

    /// Name used in the canonical record.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Unspecified => "unspecified",
            ActorKind::Human => "human",
            ActorKind::Service => "service",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub kind: String,
    pub id: String,
    /// Empty when the resource has no human key.
    pub key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub kind: ActorKind,
    pub relayed_by: String,
}

/// One changed field with its values parsed from JSON text; `Value::Null` stands for an
/// unset value.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

/// A validated event, ready to become a ledger record.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event_id: Uuid,
    pub action: String,
    pub resource: Resource,
    pub resource_version: i64,
    pub actor: Actor,
    /// Truncated to microseconds, the precision PostgreSQL stores, so the value in the
    /// canonical bytes equals the value in the `occurred_at` column.
    pub occurred_at: DateTime<Utc>,
    pub source_service: String,
    pub trace_id: String,
    pub changes: Vec<Change>,
    pub reason: String,
}

/// Validates a whole batch. Every event is checked before anything is written, and all
/// violations are reported together, named by their path (`events[3].event_id`).
pub fn validate_batch(inputs: Vec<EventInput>) -> Result<Vec<Event>, Violations> {
    if inputs.is_empty() {
        return Err(Violations::single(
            "events",
            format!("is empty; send 1 to {MAX_BATCH} events"),
        ));
    }
    if inputs.len() > MAX_BATCH {
        return Err(Violations::single(
            "events",
            format!(
                "has {} events; send at most {MAX_BATCH} per call and split larger batches",
                inputs.len()
            ),
        ));
    }

    let mut violations = Violations::default();
    let mut events = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.into_iter().enumerate() {
        if let Some(event) = validate_event(index, input, &mut violations) {
            events.push(event);
        }
    }
    violations.into_result()?;
    Ok(events)
}

/// Validates one event, adding its violations to `violations`. Returns the event only
/// when it has none.
fn validate_event(index: usize, input: EventInput, violations: &mut Violations) -> Option<Event> {
    let before = violations.total();
    let path = |field: &str| format!("events[{index}].{field}");

    let event_id = parse_event_id(&path("event_id"), &input.event_id, violations);

    require_text(
        &path("action"),
        &input.action,
        "a dotted verb such as ticket.created",
        violations,
    );
    require_text(
        &path("resource.id"),
        &input.resource_id,
        "the resource's stable id",
        violations,
    );
    require_text(
        &path("actor.subject"),
        &input.actor_subject,
        "the person or service that made the change",
        violations,
    );
    reject_nul(&path("resource.type"), &input.resource_type, violations);
    reject_nul(&path("resource.key"), &input.resource_key, violations);
    reject_nul(&path("actor.relayed_by"), &input.relayed_by, violations);

    if input.resource_version < 0 {
        violations.push(
            path("resource_version"),
            format!(
                "is {}; send the version after the change, or 0 when it created none",
                input.resource_version
            ),
        );
    }

    let kind = ActorKind::from_wire(input.actor_kind);
    if kind.is_none() {
        violations.push(
            path("actor.kind"),
            format!(
                "{} is not a known ActorKind; send ACTOR_KIND_HUMAN or ACTOR_KIND_SERVICE",
                input.actor_kind
            ),
        );
    }

    let occurred_at = validate_occurred_at(&path("occurred_at"), input.occurred_at, violations);
    let changes = validate_changes(index, input.changes, violations);

    if violations.total() > before {
        return None;
    }
    Some(Event {
        event_id: event_id?,
        action: input.action,
        resource: Resource {
            kind: input.resource_type,
            id: input.resource_id,
            key: input.resource_key,
        },
        resource_version: input.resource_version,
        actor: Actor {
            subject: input.actor_subject,
            kind: kind?,
            relayed_by: input.relayed_by,
        },
        occurred_at: occurred_at?,
        source_service: input.source_service,
        trace_id: input.trace_id,
        changes: changes?,
        reason: input.reason,
    })
}

fn parse_event_id(field: &str, text: &str, violations: &mut Violations) -> Option<Uuid> {
    if text.is_empty() {
        violations.push(
            field,
            "is required; set it to the UUID the producer chose for this event",
        );
        return None;
    }
    match Uuid::parse_str(text) {
        Ok(id) if id.is_nil() => {
            violations.push(
                field,
                "is the nil UUID; set it to the UUID the producer chose for this event",
            );
            None
        }
        Ok(id) => Some(id),
        Err(_) => {
            violations.push(
                field,
                format!(
                    "{} is not a UUID; send one such as 0190f1a2-7c3e-7d4f-8a5b-6c7d8e9f0a1b",
                    quote(text)
                ),
            );
            None
        }
    }
}

/// Checks a required text field that is also stored in a `text` column, which cannot
/// hold NUL characters.
fn require_text(field: &str, value: &str, meaning: &str, violations: &mut Violations) {
    if value.trim().is_empty() {
        violations.push(field, format!("is required; set it to {meaning}"));
    } else {
        reject_nul(field, value, violations);
    }
}

fn reject_nul(field: &str, value: &str, violations: &mut Violations) {
    if value.contains('\0') {
        violations.push(field, format!("{} contains a NUL character; remove it", quote(value)));
    }
}

fn validate_occurred_at(
    field: &str,
    input: Option<TimestampInput>,
    violations: &mut Violations,
) -> Option<DateTime<Utc>> {
    let Some(input) = input else {
        violations.push(field, "is required; set it to the commit time of the change");
        return None;
    };
    check_timestamp(field, input, violations).map(truncate_to_micros)
}

/// Checks a timestamp that is set: it must be representable, and its year must have four
/// digits, because RFC 3339, the form used in canonical records, allows no others.
pub(crate) fn check_timestamp(
    field: &str,
    input: TimestampInput,
    violations: &mut Violations,
) -> Option<DateTime<Utc>> {
    match input {
        TimestampInput::OutOfRange => {
            violations.push(
                field,
                "is not a valid timestamp; send nanos in 0..1e9 and a year from 1 to 9999",
            );
            None
        }
        TimestampInput::At(at) if !(1..=9999).contains(&at.year()) => {
            violations.push(field, format!("has year {}; send a year from 1 to 9999", at.year()));
            None
        }
        TimestampInput::At(at) => Some(at),
    }
}

fn validate_changes(index: usize, inputs: Vec<ChangeInput>, violations: &mut Violations) -> Option<Vec<Change>> {
    let before = violations.total();
    let mut changes = Vec::with_capacity(inputs.len());
    for (position, input) in inputs.into_iter().enumerate() {
        let path = |field: &str| format!("events[{index}].changes[{position}].{field}");
        if input.field.trim().is_empty() {
            violations.push(path("field"), "is required; set it to the name of the changed field");
        }
        let old = parse_value(&path("old_value"), &input.old_value, violations);
        let new = parse_value(&path("new_value"), &input.new_value, violations);
        if let (Some(old), Some(new)) = (old, new) {
            changes.push(Change {
                field: input.field,
                old,
                new,
            });
        }
    }
    (violations.total() == before).then_some(changes)
}

/// Parses a value's JSON text; empty text means the field was unset.
fn parse_value(field: &str, text: &str, violations: &mut Violations) -> Option<Value> {
    if text.is_empty() {
        return Some(Value::Null);
    }
    match serde_json::from_str(text) {
        Ok(value) => Some(value),
        Err(error) => {
            violations.push(
                field,
                format!(
                    "{} is not valid JSON ({error}); send JSON text such as \"\\\"high\\\"\", or empty for unset",
                    quote(text)
                ),
            );
            None
        }
    }
}

/// Drops sub-microsecond digits, which PostgreSQL would drop on storage.
pub fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = at.nanosecond();
    at.with_nanosecond(nanos - nanos % 1_000).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_input() -> EventInput {
        EventInput {
            event_id: "0190f1a2-7c3e-7d4f-8a5b-6c7d8e9f0a1b".into(),
            action: "ticket.created".into(),
            resource_type: "ticket".into(),
            resource_id: "0190f1a2-0000-7000-8000-000000000001".into(),
            resource_key: "INC-1".into(),
            resource_version: 1,
            actor_subject: "alice".into(),
            actor_kind: 1,
            relayed_by: "docket-ticket".into(),
            occurred_at: Some(TimestampInput::At(
                DateTime::from_timestamp(1_704_164_645, 123_456_789).unwrap(),
            )),
            source_service: "docket-ticket".into(),
            trace_id: String::new(),
            changes: vec![ChangeInput {
                field: "status".into(),
                old_value: String::new(),
                new_value: "\"new\"".into(),
            }],
            reason: String::new(),
        }
    }

    fn fields(violations: &Violations) -> Vec<&str> {
        violations.reported().iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn valid_event_is_accepted() {
        let events = validate_batch(vec![valid_input()]).unwrap();
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn occurred_at_is_truncated_to_micros() {
        let events = validate_batch(vec![valid_input()]).unwrap();
        assert_eq!(events[0].occurred_at.nanosecond(), 123_456_000);
    }

    #[test]
    fn empty_old_value_becomes_null() {
        let events = validate_batch(vec![valid_input()]).unwrap();
        assert_eq!(events[0].changes[0].old, Value::Null);
        assert_eq!(events[0].changes[0].new, Value::String("new".into()));
    }

    #[test]
    fn empty_batch_is_rejected() {
        let violations = validate_batch(vec![]).unwrap_err();
        assert_eq!(fields(&violations), ["events"]);
    }

    #[test]
    fn batch_over_limit_is_rejected() {
        let violations = validate_batch(vec![valid_input(); MAX_BATCH + 1]).unwrap_err();
        assert_eq!(fields(&violations), ["events"]);
    }

    #[test]
    fn violations_name_event_index_and_field() {
        let mut bad = valid_input();
        bad.event_id = "not-a-uuid".into();
        bad.action = " ".into();
        bad.resource_id = String::new();
        bad.actor_subject = String::new();
        bad.occurred_at = None;
        let violations = validate_batch(vec![valid_input(), valid_input(), valid_input(), bad]).unwrap_err();
        assert_eq!(
            fields(&violations),
            [
                "events[3].event_id",
                "events[3].action",
                "events[3].resource.id",
                "events[3].actor.subject",
                "events[3].occurred_at"
            ]
        );
    }

    #[test]
    fn invalid_change_json_names_change_index() {
        let mut bad = valid_input();
        bad.changes.push(ChangeInput {
            field: "severity".into(),
            old_value: "{not json".into(),
            new_value: "\"high\"".into(),
        });
        let violations = validate_batch(vec![bad]).unwrap_err();
        assert_eq!(fields(&violations), ["events[0].changes[1].old_value"]);
    }

    #[test]
    fn nil_event_id_is_rejected() {
        let mut bad = valid_input();
        bad.event_id = Uuid::nil().to_string();
        let violations = validate_batch(vec![bad]).unwrap_err();
        assert_eq!(fields(&violations), ["events[0].event_id"]);
    }

    #[test]
    fn unknown_actor_kind_is_rejected() {
        let mut bad = valid_input();
        bad.actor_kind = 9;
        let violations = validate_batch(vec![bad]).unwrap_err();
        assert_eq!(fields(&violations), ["events[0].actor.kind"]);
    }

    #[test]
    fn nul_in_stored_text_is_rejected() {
        let mut bad = valid_input();
        bad.resource_key = "INC\0-1".into();
        let violations = validate_batch(vec![bad]).unwrap_err();
        assert_eq!(fields(&violations), ["events[0].resource.key"]);
    }

    #[test]
    fn five_digit_year_is_rejected() {
        let mut bad = valid_input();
        bad.occurred_at = Some(TimestampInput::At(
            DateTime::from_timestamp(253_402_300_800, 0).unwrap(),
        ));
        let violations = validate_batch(vec![bad]).unwrap_err();
        assert_eq!(fields(&violations), ["events[0].occurred_at"]);
    }

    #[test]
    fn negative_resource_version_is_rejected() {
        let mut bad = valid_input();
        bad.resource_version = -1;
        let violations = validate_batch(vec![bad]).unwrap_err();
        assert_eq!(fields(&violations), ["events[0].resource_version"]);
    }
}
