//! The raw limit of the ticket service's writes and reads: the statements its storage
//! module runs, issued directly through the same driver (diesel-async on a bb8 pool built
//! by `docket_db::connect`), with no gRPC, no token check and no domain code.
//!
//! The tables below repeat the ticket service's migrations, and the row types list their
//! columns in the order of the service's own row types, so diesel generates the same SQL
//! text: an `INSERT … ON CONFLICT (request_id) DO NOTHING RETURNING …` of the ticket, an
//! `INSERT` of the history entry and one of the outbox event, in one transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

diesel::table! {
    tickets (id) {
        id -> Uuid,
        key -> Text,
        title -> Text,
        description -> Text,
        severity -> Nullable<Text>,
        category -> Text,
        status -> Text,
        resolution -> Nullable<Text>,
        assignee -> Text,
        team -> Text,
        reporter -> Text,
        detection_source -> Text,
        detection_method -> Text,
        indicators -> Jsonb,
        assets -> Jsonb,
        tags -> Array<Text>,
        imported -> Bool,
        import_source -> Nullable<Text>,
        import_digest -> Nullable<Text>,
        request_id -> Nullable<Text>,
        request_digest -> Nullable<Text>,
        reopen_count -> Int4,
        version -> Int8,
        occurred_at -> Nullable<Timestamptz>,
        detected_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        acknowledged_at -> Nullable<Timestamptz>,
        contained_at -> Nullable<Timestamptz>,
        eradicated_at -> Nullable<Timestamptz>,
        recovered_at -> Nullable<Timestamptz>,
        resolved_at -> Nullable<Timestamptz>,
        last_resolved_at -> Nullable<Timestamptz>,
        closed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    ticket_history (ticket_id, version) {
        ticket_id -> Uuid,
        version -> Int8,
        action -> Text,
        actor -> Text,
        at -> Timestamptz,
        changes -> Jsonb,
        note -> Text,
        event_id -> Uuid,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        event_id -> Uuid,
        ticket_id -> Uuid,
        ticket_version -> Int8,
        payload -> Bytea,
        created_at -> Timestamptz,
        traceparent -> Nullable<Text>,
    }
}

/// The columns the ticket service reads back, in the order of its `TicketRow`. The
/// benchmark reads them all, as the service does, but uses only some.
#[allow(dead_code)]
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

/// Insert form of a ticket, with the columns in the order the ticket service inserts them.
/// The key is left to its column default, which draws it from the key sequence.
#[derive(Insertable, Clone, Debug)]
#[diesel(table_name = tickets, treat_none_as_default_value = false)]
pub struct NewTicket {
    pub id: Uuid,
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
    pub imported: bool,
    pub import_source: Option<String>,
    pub import_digest: Option<String>,
    pub request_id: Option<String>,
    pub request_digest: Option<String>,
    pub created_at: DateTime<Utc>,
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

#[derive(Queryable, Selectable, Insertable, Clone, Debug)]
#[diesel(table_name = outbox, check_for_backend(diesel::pg::Pg), treat_none_as_default_value = false)]
pub struct OutboxRow {
    pub event_id: Uuid,
    pub ticket_id: Uuid,
    pub ticket_version: i64,
    pub payload: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

/// One ticket as the ticket service stored it, with its history entry and outbox event.
/// The raw side inserts copies of these values, so both sides write rows of the same size.
#[derive(Clone, Debug)]
pub struct CreateTemplate {
    pub ticket: TicketRow,
    pub history: HistoryRow,
    pub outbox: OutboxRow,
}

impl CreateTemplate {
    /// Reads the ticket with `id` and its first history entry and outbox event from the
    /// ticket service's database.
    pub async fn load(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<CreateTemplate> {
        let ticket = tickets::table.find(id).select(TicketRow::as_select()).first(conn).await?;
        let history = ticket_history::table
            .filter(ticket_history::ticket_id.eq(id))
            .filter(ticket_history::version.eq(1))
            .select(HistoryRow::as_select())
            .first(conn)
            .await?;
        let outbox = outbox::table
            .filter(outbox::event_id.eq(history.event_id))
            .select(OutboxRow::as_select())
            .first(conn)
            .await?;
        Ok(CreateTemplate { ticket, history, outbox })
    }

    fn new_ticket(&self, id: Uuid, request_id: String, now: DateTime<Utc>) -> NewTicket {
        let t = &self.ticket;
        NewTicket {
            id,
            title: t.title.clone(),
            description: t.description.clone(),
            severity: t.severity.clone(),
            category: t.category.clone(),
            status: t.status.clone(),
            resolution: t.resolution.clone(),
            assignee: t.assignee.clone(),
            team: t.team.clone(),
            reporter: t.reporter.clone(),
            detection_source: t.detection_source.clone(),
            detection_method: t.detection_method.clone(),
            indicators: t.indicators.clone(),
            assets: t.assets.clone(),
            tags: t.tags.clone(),
            reopen_count: t.reopen_count,
            version: t.version,
            occurred_at: t.occurred_at,
            detected_at: t.detected_at,
            updated_at: now,
            acknowledged_at: t.acknowledged_at,
            contained_at: t.contained_at,
            eradicated_at: t.eradicated_at,
            recovered_at: t.recovered_at,
            resolved_at: t.resolved_at,
            last_resolved_at: t.last_resolved_at,
            closed_at: t.closed_at,
            imported: t.imported,
            import_source: t.import_source.clone(),
            import_digest: None,
            request_id: Some(request_id),
            request_digest: t.request_digest.clone(),
            created_at: now,
        }
    }
}

/// Runs the ticket service's create transaction with the template's values: the ticket
/// row, its history entry and its outbox event, then the commit.
pub async fn create(pool: &docket_db::Pool, template: &CreateTemplate, request_id: String) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|error| format!("raw create: no connection: {error}"))?;
    let now = Utc::now();
    let id = Uuid::now_v7();
    let event_id = Uuid::now_v7();
    let row = template.new_ticket(id, request_id, now);
    let history = HistoryRow {
        ticket_id: id,
        event_id,
        at: now,
        ..template.history.clone()
    };
    let outbox_row = OutboxRow {
        event_id,
        ticket_id: id,
        created_at: now,
        ..template.outbox.clone()
    };
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let inserted: Option<TicketRow> = diesel::insert_into(tickets::table)
            .values(&row)
            .on_conflict(tickets::request_id)
            .do_nothing()
            .returning(TicketRow::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        if inserted.is_none() {
            return Err(diesel::result::Error::NotFound);
        }
        diesel::insert_into(ticket_history::table).values(&history).execute(conn).await?;
        diesel::insert_into(outbox::table).values(&outbox_row).execute(conn).await?;
        Ok(())
    })
    .await
    .map_err(|error| format!("raw create: {error}"))
}

/// Reads one ticket by id with a point select, the core of GetTicket.
pub async fn get(pool: &docket_db::Pool, id: Uuid) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|error| format!("raw get: no connection: {error}"))?;
    let _row: TicketRow = tickets::table
        .find(id)
        .select(TicketRow::as_select())
        .first(&mut conn)
        .await
        .map_err(|error| format!("raw get {id}: {error}"))?;
    Ok(())
}

/// Returns the ids of up to `limit` tickets of a database with the ticket schema.
pub async fn ticket_ids(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<Uuid>> {
    tickets::table.select(tickets::id).order(tickets::id).limit(limit).load(conn).await
}
