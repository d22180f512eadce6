//! Field-level changes between two states of a ticket, as history entries and events
//! carry them.

use serde_json::Value;

use super::{Asset, Indicator, Ticket, format_time};

/// One changed field with its JSON values; an empty string means unset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    pub field: String,
    pub old_value: String,
    pub new_value: String,
}

impl FieldChange {
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "field": self.field, "old_value": self.old_value, "new_value": self.new_value })
    }

    pub fn from_json(value: &Value) -> Option<FieldChange> {
        Some(FieldChange {
            field: value.get("field")?.as_str()?.to_owned(),
            old_value: value.get("old_value")?.as_str()?.to_owned(),
            new_value: value.get("new_value")?.as_str()?.to_owned(),
        })
    }
}

fn text(value: &str) -> Option<Value> {
    (!value.is_empty()).then(|| Value::from(value))
}

fn time(value: Option<chrono::DateTime<chrono::Utc>>) -> Option<Value> {
    value.map(|at| Value::from(format_time(at)))
}

/// Lists every client-visible field of a ticket with its JSON value, `None` when unset.
/// The id, key, version and the server's created and updated times are left out,
/// because every event carries them in its resource and snapshot.
fn field_values(ticket: &Ticket) -> Vec<(&'static str, Option<Value>)> {
    let list = |values: Vec<Value>| (!values.is_empty()).then_some(Value::Array(values));
    vec![
        ("title", text(&ticket.title)),
        ("description", text(&ticket.description)),
        (
            "severity",
            ticket.severity.map(|value| Value::from(value.as_str())),
        ),
        ("category", Some(Value::from(ticket.category.as_str()))),
        ("status", Some(Value::from(ticket.status.as_str()))),
        (
            "resolution",
            ticket.resolution.map(|value| Value::from(value.as_str())),
        ),
        ("assignee", text(&ticket.assignee)),
        ("team", text(&ticket.team)),
        ("reporter", text(&ticket.reporter)),
        ("detection_source", text(&ticket.detection_source)),
        ("detection_method", text(&ticket.detection_method)),
        (
            "indicators",
            list(ticket.indicators.iter().map(Indicator::to_json).collect()),
        ),
        (
            "assets",
            list(ticket.assets.iter().map(Asset::to_json).collect()),
        ),
        (
            "tags",
            list(
                ticket
                    .tags
                    .iter()
                    .map(|tag| Value::from(tag.as_str()))
                    .collect(),
            ),
        ),
        ("imported", ticket.imported.then_some(Value::Bool(true))),
        (
            "import_source",
            ticket.import_source.as_deref().and_then(text),
        ),
        (
            "reopen_count",
            (ticket.reopen_count != 0).then(|| Value::from(ticket.reopen_count)),
        ),
        ("occurred_at", time(ticket.occurred_at)),
        ("detected_at", time(ticket.detected_at)),
        ("acknowledged_at", time(ticket.acknowledged_at)),
        ("contained_at", time(ticket.contained_at)),
        ("eradicated_at", time(ticket.eradicated_at)),
        ("recovered_at", time(ticket.recovered_at)),
        ("resolved_at", time(ticket.resolved_at)),
        ("last_resolved_at", time(ticket.last_resolved_at)),
        ("closed_at", time(ticket.closed_at)),
    ]
}

fn json_text(value: Option<Value>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

/// Fields whose value differs between `old` and `new`. With no `old`, as for a create or
/// an import, every set field of `new` is listed.
pub fn diff(old: Option<&Ticket>, new: &Ticket) -> Vec<FieldChange> {
    let before = old.map(field_values);
    field_values(new)
        .into_iter()
        .enumerate()
        .filter_map(|(index, (field, new_value))| {
            let old_value = before.as_ref().and_then(|values| values[index].1.clone());
            (old_value != new_value).then(|| FieldChange {
                field: field.to_owned(),
                old_value: json_text(old_value),
                new_value: json_text(new_value),
            })
        })
        .collect()
}
