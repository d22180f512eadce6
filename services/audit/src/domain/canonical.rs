//! The canonical form of a ledger record: the exact bytes that are hashed and stored.
//!
//! A record is one JSON object, UTF-8, with no whitespace between tokens and with the
//! keys of every object sorted by Unicode code point. Strings and numbers are written as
//! serde_json writes them: strings escape `"`, `\` and control characters and keep other
//! characters as UTF-8, and numbers use their shortest round-trip form. The members are:
//!
//! ```text
//! {"action":"ticket.transitioned",
//!  "actor":{"kind":"human","relayed_by":"docket-ticket","subject":"alice"},
//!  "changes":[{"field":"status","new":"acknowledged","old":"new"}],
//!  "event_id":"0190f1a2-7c3e-7d4f-8a5b-6c7d8e9f0a1b",
//!  "occurred_at":"2024-01-02T03:04:05.123456Z",
//!  "reason":"",
//!  "recorded_at":"2024-01-02T03:04:05.654321Z",
//!  "resource":{"id":"0190f1a2-...","key":"INC-1042","type":"ticket"},
//!  "resource_version":3,
//!  "seq":17,
//!  "source_service":"docket-ticket",
//!  "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}
//! ```
//!
//! (shown on several lines here; the stored form is one line). Every member is always
//! present; empty strings stay empty strings. `old` and `new` are the parsed JSON values
//! of the change, `null` when unset. The ticket snapshot of an event is not recorded.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::event::Event;

/// Encodes the record for `event` at position `seq`, recorded at `recorded_at`.
pub fn encode(seq: i64, event: &Event, recorded_at: DateTime<Utc>) -> Vec<u8> {
    let changes: Vec<Value> = event
        .changes
        .iter()
        .map(|change| json!({ "field": change.field, "old": change.old, "new": change.new }))
        .collect();
    let record = json!({
        "seq": seq,
        "event_id": event.event_id.hyphenated().to_string(),
        "action": event.action,
        "resource": {
            "type": event.resource.kind,
            "id": event.resource.id,
            "key": event.resource.key,
        },
        "resource_version": event.resource_version,
        "actor": {
            "subject": event.actor.subject,
            "kind": event.actor.kind.as_str(),
            "relayed_by": event.actor.relayed_by,
        },
        "occurred_at": format_timestamp(event.occurred_at),
        "recorded_at": format_timestamp(recorded_at),
        "source_service": event.source_service,
        "trace_id": event.trace_id,
        "changes": changes,
        "reason": event.reason,
    });
    to_canonical_bytes(&record)
}

/// Formats a timestamp as RFC 3339 in UTC with exactly six fractional digits, for
/// example `2024-01-02T03:04:05.123456Z`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Serializes `value` with object keys sorted and no whitespace.
///
/// The keys are sorted here rather than left to `serde_json::Map`, because another crate
/// in the build enabling serde_json's `preserve_order` feature would silently switch
/// that map to insertion order.
pub fn to_canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Byte order of UTF-8 strings is code point order.
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (position, (key, member)) in entries.into_iter().enumerate() {
                if position > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_value(member, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, value).expect("writing a JSON scalar to a Vec cannot fail");
}

/// The members of a canonical record that are copied into indexed columns, read back
/// by verification to check that the columns agree with the hashed bytes.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct IndexedFields {
    pub seq: i64,
    pub event_id: String,
    pub action: String,
    pub resource: IndexedResource,
    pub actor: IndexedActor,
    pub occurred_at: String,
    pub recorded_at: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct IndexedResource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub key: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct IndexedActor {
    pub subject: String,
    pub relayed_by: String,
}

/// Reads the indexed members out of canonical bytes.
pub fn decode_indexed_fields(canonical: &[u8]) -> Result<IndexedFields, serde_json::Error> {
    serde_json::from_slice(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Actor, ActorKind, Change, Resource};

    fn sample_event() -> Event {
        Event {
            event_id: "0190f1a2-7c3e-7d4f-8a5b-6c7d8e9f0a1b".parse().unwrap(),
            action: "ticket.transitioned".into(),
            resource: Resource {
                kind: "ticket".into(),
                id: "0190f1a2-0000-7000-8000-000000000001".into(),
                key: "INC-1042".into(),
            },
            resource_version: 3,
            actor: Actor {
                subject: "alice".into(),
                kind: ActorKind::Human,
                relayed_by: "docket-ticket".into(),
            },
            occurred_at: "2024-01-02T03:04:05.123456Z".parse().unwrap(),
            source_service: "docket-ticket".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            changes: vec![Change {
                field: "status".into(),
                old: json!("new"),
                new: json!("acknowledged"),
            }],
            reason: String::new(),
        }
    }

    #[test]
    fn encode_produces_exact_bytes() {
        let recorded_at = "2024-01-02T03:04:05.654321Z".parse().unwrap();
        let bytes = encode(17, &sample_event(), recorded_at);
        let expected = concat!(
            r#"{"action":"ticket.transitioned","#,
            r#""actor":{"kind":"human","relayed_by":"docket-ticket","subject":"alice"},"#,
            r#""changes":[{"field":"status","new":"acknowledged","old":"new"}],"#,
            r#""event_id":"0190f1a2-7c3e-7d4f-8a5b-6c7d8e9f0a1b","#,
            r#""occurred_at":"2024-01-02T03:04:05.123456Z","#,
            r#""reason":"","#,
            r#""recorded_at":"2024-01-02T03:04:05.654321Z","#,
            r#""resource":{"id":"0190f1a2-0000-7000-8000-000000000001","key":"INC-1042","type":"ticket"},"#,
            r#""resource_version":3,"#,
            r#""seq":17,"#,
            r#""source_service":"docket-ticket","#,
            r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn nested_change_values_have_sorted_keys() {
        let value: Value = serde_json::from_str(r#"{"z": 1, "a": {"y": [true, null], "b": "x"}}"#).unwrap();
        assert_eq!(to_canonical_bytes(&value), br#"{"a":{"b":"x","y":[true,null]},"z":1}"#);
    }

    #[test]
    fn keys_sort_by_code_point() {
        let value = json!({ "é": 1, "z": 2, "Z": 3, "a": 4 });
        assert_eq!(
            String::from_utf8(to_canonical_bytes(&value)).unwrap(),
            r#"{"Z":3,"a":4,"z":2,"é":1}"#
        );
    }

    #[test]
    fn strings_escape_quotes_and_control_characters_only() {
        let value = json!("say \"hi\"\n\u{1} ü");
        assert_eq!(
            String::from_utf8(to_canonical_bytes(&value)).unwrap(),
            r#""say \"hi\"\n\u0001 ü""#
        );
    }

    #[test]
    fn timestamp_has_six_fraction_digits() {
        let at = "2024-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(format_timestamp(at), "2024-01-02T03:04:05.000000Z");
    }

    #[test]
    fn unset_values_encode_as_null() {
        let mut event = sample_event();
        event.changes[0].old = Value::Null;
        let text = String::from_utf8(encode(1, &event, event.occurred_at)).unwrap();
        assert!(
            text.contains(r#"{"field":"status","new":"acknowledged","old":null}"#),
            "{text}"
        );
    }

    #[test]
    fn indexed_fields_round_trip() {
        let event = sample_event();
        let bytes = encode(5, &event, event.occurred_at);
        let fields = decode_indexed_fields(&bytes).unwrap();
        assert_eq!(fields.seq, 5);
        assert_eq!(fields.resource.key, "INC-1042");
        assert_eq!(fields.actor.subject, "alice");
    }
}
