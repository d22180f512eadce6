//! Writes of the incident projection: one transaction per RecordEvents batch.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Array, Bool, Int4, Int8, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::applied_events;
use super::{MAX_TRANSACTION_ATTEMPTS, is_retryable};
use crate::Error;
use crate::domain::events::{IncidentSnapshot, RecordedEvent};

/// Counts of one applied batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Events whose snapshot replaced the stored row or created it.
    pub applied: usize,
    /// Events already seen, older than the stored row, superseded by a newer event of
    /// the same ticket in the batch, or without a snapshot.
    pub ignored: usize,
}

#[derive(Insertable)]
#[diesel(table_name = applied_events)]
struct NewAppliedEvent {
    event_id: Uuid,
    ticket_id: Uuid,
    version: i64,
}

#[derive(QueryableByName)]
struct UpsertedTicket {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    #[allow(dead_code)]
    ticket_id: Uuid,
}

/// Applies a validated batch in one transaction, retrying it a few times when it
/// conflicts with a concurrent batch.
pub async fn record_events(pool: &docket_db::Pool, events: &[RecordedEvent]) -> Result<RecordOutcome, Error> {
    let mut conn = pool.get().await?;
    let mut attempt = 1;
    let applied = loop {
        let result = conn.transaction(async |conn| apply_events(conn, events).await).await;
        match result {
            Ok(applied) => break applied,
            Err(error) if is_retryable(&error) && attempt < MAX_TRANSACTION_ATTEMPTS => {
                tracing::warn!(attempt, %error, "event batch conflicted with a concurrent one, retrying");
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    };
    Ok(RecordOutcome {
        applied,
        ignored: events.len() - applied,
    })
}

/// Records the ids of the events not seen before, then upserts for each ticket the
/// newest of their snapshots. Returns how many events changed the projection.
async fn apply_events(conn: &mut AsyncPgConnection, events: &[RecordedEvent]) -> Result<usize, DieselError> {
    let mut markers: Vec<NewAppliedEvent> = events
        .iter()
        .filter_map(|event| match event {
            RecordedEvent::Ticket { event_id, snapshot } => Some(NewAppliedEvent {
                event_id: *event_id,
                ticket_id: snapshot.ticket_id,
                version: snapshot.version,
            }),
            RecordedEvent::Unrelated { .. } => None,
        })
        .collect();
    if markers.is_empty() {
        return Ok(0);
    }
    // Sorting gives concurrent batches the same lock order on the unique index, and the
    // stable dedup keeps the first occurrence of an id repeated inside the batch.
    markers.sort_by_key(|marker| marker.event_id);
    markers.dedup_by_key(|marker| marker.event_id);

    let mut first_seen: HashSet<Uuid> = diesel::insert_into(applied_events::table)
        .values(&markers)
        .on_conflict_do_nothing()
        .returning(applied_events::event_id)
        .get_results(conn)
        .await?
        .into_iter()
        .collect();

    // A BTreeMap orders the upsert by ticket id, which again fixes the lock order, and
    // one row per ticket is what a single INSERT .. ON CONFLICT DO UPDATE allows.
    let mut newest: BTreeMap<Uuid, &IncidentSnapshot> = BTreeMap::new();
    for event in events {
        if let RecordedEvent::Ticket { event_id, snapshot } = event
            && first_seen.remove(event_id)
        {
            let snapshot: &IncidentSnapshot = snapshot;
            newest
                .entry(snapshot.ticket_id)
                .and_modify(|kept| {
                    if snapshot.version > kept.version {
                        *kept = snapshot;
                    }
                })
                .or_insert(snapshot);
        }
    }
    if newest.is_empty() {
        return Ok(0);
    }
    upsert_incidents(conn, newest.into_values()).await
}

/// Column values of many snapshots, one array per column, for an `unnest` insert.
#[derive(Default)]
struct IncidentColumns {
    ticket_id: Vec<Uuid>,
    ticket_key: Vec<String>,
    severity: Vec<String>,
    category: Vec<String>,
    status: Vec<String>,
    resolution: Vec<String>,
    team: Vec<String>,
    detection_source: Vec<String>,
    imported: Vec<bool>,
    reopen_count: Vec<i32>,
    created_at: Vec<DateTime<Utc>>,
    occurred_at: Vec<Option<DateTime<Utc>>>,
    detected_at: Vec<Option<DateTime<Utc>>>,
    acknowledged_at: Vec<Option<DateTime<Utc>>>,
    contained_at: Vec<Option<DateTime<Utc>>>,
    resolved_at: Vec<Option<DateTime<Utc>>>,
    last_resolved_at: Vec<Option<DateTime<Utc>>>,
    closed_at: Vec<Option<DateTime<Utc>>>,
    version: Vec<i64>,
}

impl IncidentColumns {
    fn push(&mut self, snapshot: &IncidentSnapshot) {
        self.ticket_id.push(snapshot.ticket_id);
        self.ticket_key.push(snapshot.ticket_key.clone());
        self.severity.push(snapshot.severity.map_or("", |value| value.as_str()).to_owned());
        self.category.push(snapshot.category.map_or("", |value| value.as_str()).to_owned());
        self.status.push(snapshot.status.as_str().to_owned());
        self.resolution.push(snapshot.resolution.map_or("", |value| value.as_str()).to_owned());
        self.team.push(snapshot.team.clone());
        self.detection_source.push(snapshot.detection_source.clone());
        self.imported.push(snapshot.imported);
        self.reopen_count.push(snapshot.reopen_count);
        self.created_at.push(snapshot.created_at);
        self.occurred_at.push(snapshot.occurred_at);
        self.detected_at.push(snapshot.detected_at);
        self.acknowledged_at.push(snapshot.acknowledged_at);
        self.contained_at.push(snapshot.contained_at);
        self.resolved_at.push(snapshot.resolved_at);
        self.last_resolved_at.push(snapshot.last_resolved_at);
        self.closed_at.push(snapshot.closed_at);
        self.version.push(snapshot.version);
    }
}

/// Inserts or replaces the rows of the given tickets, each at most once. A stored row
/// is replaced only by a higher version, which makes delivery order irrelevant.
const UPSERT_INCIDENTS: &str = "
INSERT INTO incidents (
    ticket_id, ticket_key, severity, category, status, resolution, team, detection_source,
    imported, reopen_count, created_at, occurred_at, detected_at, acknowledged_at,
    contained_at, resolved_at, last_resolved_at, closed_at, version
)
SELECT * FROM unnest(
    $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
    $9::boolean[], $10::integer[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[],
    $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::timestamptz[],
    $18::timestamptz[], $19::bigint[]
)
ON CONFLICT (ticket_id) DO UPDATE SET
    ticket_key = EXCLUDED.ticket_key,
    severity = EXCLUDED.severity,
    category = EXCLUDED.category,
    status = EXCLUDED.status,
    resolution = EXCLUDED.resolution,
    team = EXCLUDED.team,
    detection_source = EXCLUDED.detection_source,
    imported = EXCLUDED.imported,
    reopen_count = EXCLUDED.reopen_count,
    created_at = EXCLUDED.created_at,
    occurred_at = EXCLUDED.occurred_at,
    detected_at = EXCLUDED.detected_at,
    acknowledged_at = EXCLUDED.acknowledged_at,
    contained_at = EXCLUDED.contained_at,
    resolved_at = EXCLUDED.resolved_at,
    last_resolved_at = EXCLUDED.last_resolved_at,
    closed_at = EXCLUDED.closed_at,
    version = EXCLUDED.version,
    updated_at = now()
WHERE incidents.version < EXCLUDED.version
RETURNING ticket_id";

/// Returns how many rows were inserted or replaced.
async fn upsert_incidents<'a>(
    conn: &mut AsyncPgConnection,
    snapshots: impl Iterator<Item = &'a IncidentSnapshot>,
) -> Result<usize, DieselError> {
    let mut columns = IncidentColumns::default();
    for snapshot in snapshots {
        columns.push(snapshot);
    }

    let upserted: Vec<UpsertedTicket> = diesel::sql_query(UPSERT_INCIDENTS)
        .bind::<Array<diesel::sql_types::Uuid>, _>(columns.ticket_id)
        .bind::<Array<Text>, _>(columns.ticket_key)
        .bind::<Array<Text>, _>(columns.severity)
        .bind::<Array<Text>, _>(columns.category)
        .bind::<Array<Text>, _>(columns.status)
        .bind::<Array<Text>, _>(columns.resolution)
        .bind::<Array<Text>, _>(columns.team)
        .bind::<Array<Text>, _>(columns.detection_source)
        .bind::<Array<Bool>, _>(columns.imported)
        .bind::<Array<Int4>, _>(columns.reopen_count)
        .bind::<Array<Timestamptz>, _>(columns.created_at)
        .bind::<Array<Nullable<Timestamptz>>, _>(columns.occurred_at)
        .bind::<Array<Nullable<Timestamptz>>, _>(columns.detected_at)
        .bind::<Array<Nullable<Timestamptz>>, _>(columns.acknowledged_at)
        .bind::<Array<Nullable<Timestamptz>>, _>(columns.contained_at)
        .bind::<Array<Nullable<Timestamptz>>, _>(columns.resolved_at)
        .bind::<Array<Nullable<Timestamptz>>, _>(columns.last_resolved_at)
        .bind::<Array<Nullable<Timestamptz>>, _>(columns.closed_at)
        .bind::<Array<Int8>, _>(columns.version)
        .load(conn)
        .await?;
    Ok(upserted.len())
}
