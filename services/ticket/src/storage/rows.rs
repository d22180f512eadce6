//! Rows of the ticket tables and their conversion to domain values.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::schema::{outbox, ticket_comments, ticket_history, tickets};
use crate::Error;
use crate::domain::{
    Asset, Category, Comment, FieldChange, Indicator, Resolution, Severity, Status, Ticket,
};

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = tickets, check_for_backend(diesel::pg::Pg))]
pub struct TicketRow {
    pub id: Uuid,
    pub key: String,
    pub title: String,
    pub description: String,
    pub severity: Option<String>,
    pub category: String,
    pub status: String,
    pub resolution: Option<String>,
    pub assignee: String,
    pub team: String,
    pub reporter: String,
    pub detection_source: String,
    pub detection_method: String,
    pub indicators: serde_json::Value,
    pub assets: serde_json::Value,
    pub tags: Vec<String>,
    pub imported: bool,
    pub import_source: Option<String>,
    pub request_digest: Option<String>,
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

/// Columns a change may write: everything except the id, key and the keys that
/// de-duplicate creates and imports.
#[derive(AsChangeset, Insertable, Clone, Debug)]
#[diesel(table_name = tickets, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct TicketChangeset {
    pub title: String,
    pub description: String,
    pub severity: Option<String>,
    pub category: String,
    pub status: String,
    pub resolution: Option<String>,
    pub assignee: String,
    pub team: String,
    pub reporter: String,
    pub detection_source: String,
    pub detection_method: String,
    pub indicators: serde_json::Value,
    pub assets: serde_json::Value,
    pub tags: Vec<String>,
    pub reopen_count: i32,
    pub version: i64,
    pub occurred_at: Option<DateTime<Utc>>,
    pub detected_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub contained_at: Option<DateTime<Utc>>,
    pub eradicated_at: Option<DateTime<Utc>>,
    pub recovered_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub last_resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// Insert form of a ticket: the key is left to the column default, which draws it from
/// the key sequence.
///
/// Every insert form sets `treat_none_as_default_value = false`. Without it each field may
/// fall back to DEFAULT, so diesel prepares and closes the insert anew on every call. The
/// nullable columns all default to NULL, so a NULL parameter stores the same row.
#[derive(Insertable, Clone, Debug)]
#[diesel(table_name = tickets, treat_none_as_default_value = false)]
pub struct NewTicketRow {
    pub id: Uuid,
    #[diesel(embed)]
    pub fields: TicketChangeset,
    pub imported: bool,
    pub import_source: Option<String>,
    pub import_digest: Option<String>,
    pub request_id: Option<String>,
    pub request_digest: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl NewTicketRow {
    /// Builds the row of a ticket created through the API, keyed by its request id.
    pub fn created(new: &crate::domain::ticket::NewTicket) -> NewTicketRow {
        NewTicketRow {
            id: new.ticket.id,
            fields: changeset(&new.ticket),
            imported: false,
            import_source: None,
            import_digest: None,
            request_id: Some(new.request_id.clone()),
            request_digest: Some(new.request_digest.clone()),
            created_at: new.ticket.created_at,
        }
    }
}

pub fn changeset(ticket: &Ticket) -> TicketChangeset {
    TicketChangeset {
        title: ticket.title.clone(),
        description: ticket.description.clone(),
        severity: ticket.severity.map(|value| value.as_str().to_owned()),
        category: ticket.category.as_str().to_owned(),
        status: ticket.status.as_str().to_owned(),
        resolution: ticket.resolution.map(|value| value.as_str().to_owned()),
        assignee: ticket.assignee.clone(),
        team: ticket.team.clone(),
        reporter: ticket.reporter.clone(),
        detection_source: ticket.detection_source.clone(),
        detection_method: ticket.detection_method.clone(),
        indicators: serde_json::Value::Array(
            ticket.indicators.iter().map(Indicator::to_json).collect(),
        ),
        assets: serde_json::Value::Array(ticket.assets.iter().map(Asset::to_json).collect()),
        tags: ticket.tags.clone(),
        reopen_count: ticket.reopen_count,
        version: ticket.version,
        occurred_at: ticket.occurred_at,
        detected_at: ticket.detected_at,
        updated_at: ticket.updated_at,
        acknowledged_at: ticket.acknowledged_at,
        contained_at: ticket.contained_at,
        eradicated_at: ticket.eradicated_at,
        recovered_at: ticket.recovered_at,
        resolved_at: ticket.resolved_at,
        last_resolved_at: ticket.last_resolved_at,
        closed_at: ticket.closed_at,
    }
}

fn corrupt(id: Uuid, column: &str, value: &str) -> Error {
    Error::Corrupt(format!("ticket {id} has an unknown {column} {value:?}"))
}

impl TicketRow {
    pub fn into_ticket(self) -> Result<Ticket, Error> {
        let id = self.id;
        let severity = match self.severity.as_deref() {
            None => None,
            Some(text) => Some(Severity::parse(text).ok_or_else(|| corrupt(id, "severity", text))?),
        };
        let resolution = match self.resolution.as_deref() {
            None => None,
            Some(text) => {
                Some(Resolution::parse(text).ok_or_else(|| corrupt(id, "resolution", text))?)
            }
        };
        let category = Category::parse(&self.category)
            .ok_or_else(|| corrupt(id, "category", &self.category))?;
        let status =
            Status::parse(&self.status).ok_or_else(|| corrupt(id, "status", &self.status))?;
        let indicators = json_items(id, "indicators", &self.indicators, Indicator::from_json)?;
        let assets = json_items(id, "assets", &self.assets, Asset::from_json)?;
        Ok(Ticket {
            id,
            key: self.key,
            title: self.title,
            description: self.description,
            severity,
            category,
            status,
            resolution,
            assignee: self.assignee,
            team: self.team,
            reporter: self.reporter,
            detection_source: self.detection_source,
            detection_method: self.detection_method,
            indicators,
            assets,
            tags: self.tags,
            imported: self.imported,
            import_source: self.import_source,
            reopen_count: self.reopen_count,
            version: self.version,
            occurred_at: self.occurred_at,
            detected_at: self.detected_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            acknowledged_at: self.acknowledged_at,
            contained_at: self.contained_at,
            eradicated_at: self.eradicated_at,
            recovered_at: self.recovered_at,
            resolved_at: self.resolved_at,
            last_resolved_at: self.last_resolved_at,
            closed_at: self.closed_at,
        })
    }
}

fn json_items<T>(
    id: Uuid,
    column: &str,
    value: &serde_json::Value,
    parse: fn(&serde_json::Value) -> Option<T>,
) -> Result<Vec<T>, Error> {
    let items = value
        .as_array()
        .ok_or_else(|| corrupt(id, column, &value.to_string()))?;
    items
        .iter()
        .map(|item| parse(item).ok_or_else(|| corrupt(id, column, &item.to_string())))
        .collect()
}

#[derive(Queryable, Selectable, Insertable, Clone, Debug)]
#[diesel(table_name = ticket_comments, check_for_backend(diesel::pg::Pg), treat_none_as_default_value = false)]
pub struct CommentRow {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl From<CommentRow> for Comment {
    fn from(row: CommentRow) -> Self {
        Comment {
            id: row.id,
            ticket_id: row.ticket_id,
            author: row.author,
            body: row.body,
            created_at: row.created_at,
        }
    }
}

impl From<&Comment> for CommentRow {
    fn from(comment: &Comment) -> Self {
        CommentRow {
            id: comment.id,
            ticket_id: comment.ticket_id,
            author: comment.author.clone(),
            body: comment.body.clone(),
            created_at: comment.created_at,
        }
    }
}

#[derive(Queryable, Selectable, Insertable, Clone, Debug)]
#[diesel(table_name = ticket_history, check_for_backend(diesel::pg::Pg), treat_none_as_default_value = false)]
pub struct HistoryRow {
    pub ticket_id: Uuid,
    pub version: i64,
    pub action: String,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub changes: serde_json::Value,
    pub note: String,
    pub event_id: Uuid,
}

/// One committed change of a ticket, oldest first in listings.
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    pub ticket_id: Uuid,
    pub version: i64,
    pub action: String,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub changes: Vec<FieldChange>,
    pub note: String,
    pub event_id: Uuid,
}

impl From<HistoryRow> for HistoryEntry {
    fn from(row: HistoryRow) -> Self {
        let changes = row
            .changes
            .as_array()
            .map(|items| items.iter().filter_map(FieldChange::from_json).collect())
            .unwrap_or_default();
        HistoryEntry {
            ticket_id: row.ticket_id,
            version: row.version,
            action: row.action,
            actor: row.actor,
            at: row.at,
            changes,
            note: row.note,
            event_id: row.event_id,
        }
    }
}

#[derive(Insertable, Clone, Debug)]
#[diesel(table_name = outbox, treat_none_as_default_value = false)]
pub struct NewOutboxRow {
    pub event_id: Uuid,
    pub ticket_id: Uuid,
    pub ticket_version: i64,
    pub payload: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use diesel::pg::Pg;
    use diesel::query_builder::QueryFragment;

    use super::*;
    use crate::domain::enums::{Category, Severity};
    use crate::domain::ticket::{CreateInput, validate_create};

    /// Returns a created ticket with most optional fields absent: no resolution, no
    /// detection instant, no lifecycle instants.
    fn created() -> crate::domain::ticket::NewTicket {
        let input = CreateInput {
            request_id: "r-1".into(),
            title: "Beaconing host".into(),
            severity: Severity::High.code(),
            category: Category::Malware.code(),
            ..CreateInput::default()
        };
        validate_create(input, "alice", Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap()).unwrap()
    }

    fn assert_cacheable(statement: &impl QueryFragment<Pg>, name: &str) {
        assert!(
            statement.is_safe_to_cache_prepared(&Pg).unwrap(),
            "the {name} insert is prepared anew on every call; its insert form needs treat_none_as_default_value = false"
        );
    }

    #[test]
    fn insert_statements_stay_prepared() {
        let new = created();
        let ticket = NewTicketRow::created(&new);
        assert_cacheable(
            &diesel::insert_into(tickets::table)
                .values(&ticket)
                .on_conflict(tickets::request_id)
                .do_nothing()
                .returning(TicketRow::as_returning()),
            "ticket",
        );
        let history = HistoryRow {
            ticket_id: new.ticket.id,
            version: 1,
            action: "created".into(),
            actor: "alice".into(),
            at: new.ticket.created_at,
            changes: serde_json::Value::Array(Vec::new()),
            note: String::new(),
            event_id: Uuid::now_v7(),
        };
        assert_cacheable(&diesel::insert_into(ticket_history::table).values(history), "history");
        let event = NewOutboxRow {
            event_id: Uuid::now_v7(),
            ticket_id: new.ticket.id,
            ticket_version: 1,
            payload: vec![1, 2, 3],
            created_at: new.ticket.created_at,
            traceparent: None,
        };
        assert_cacheable(&diesel::insert_into(outbox::table).values(event), "outbox");
        let comment = CommentRow {
            id: Uuid::now_v7(),
            ticket_id: new.ticket.id,
            author: "alice".into(),
            body: "Isolated the host.".into(),
            created_at: new.ticket.created_at,
        };
        assert_cacheable(&diesel::insert_into(ticket_comments::table).values(&comment), "comment");
    }
}
