//! Reads the projection rows written since an earlier read, which keeps the service's
//! in-memory copy of `incidents` equal to the table.
//!
//! Every row stores in `changed_by` the id of the transaction that last wrote it. A read
//! runs in one REPEATABLE READ snapshot and returns, besides the rows, the snapshot's
//! xmin: every transaction below it had ended when the snapshot was taken. A transaction
//! that the snapshot could not see has an id at or above that xmin, so the next read, which
//! selects rows with `changed_by` at or above it, finds its rows once it has committed,
//! however late that is. The service never deletes projection rows, but an operator may.
//! Triggers record each deleted ticket id, and each TRUNCATE, in `incident_deletions`, and a
//! read returns those by the same rule.

use diesel::QueryableByName;
use diesel::data_types::PgTimestamp;
use diesel::sql_types::{Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use uuid::Uuid;

use crate::Error;

/// Rows fetched per round trip, which bounds the memory a large first read needs before
/// the rows are made compact.
const FETCH_ROWS: usize = 10_000;

/// The columns of an `incidents` row that the response-time statistics use. Instants are
/// PostgreSQL's own microseconds since 2000-01-01, so `infinity` and instants beyond
/// chrono's range are read rather than failing the whole refresh.
#[derive(QueryableByName, Clone, Debug, PartialEq)]
pub struct IncidentRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub ticket_id: Uuid,
    #[diesel(sql_type = Text)]
    pub severity: String,
    #[diesel(sql_type = Text)]
    pub category: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Text)]
    pub resolution: String,
    #[diesel(sql_type = Text)]
    pub team: String,
    #[diesel(sql_type = Text)]
    pub detection_source: String,
    #[diesel(sql_type = Bool)]
    pub imported: bool,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: PgTimestamp,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub occurred_at: Option<PgTimestamp>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub detected_at: Option<PgTimestamp>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub acknowledged_at: Option<PgTimestamp>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub contained_at: Option<PgTimestamp>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_resolved_at: Option<PgTimestamp>,
}

#[derive(QueryableByName)]
struct DeletionRow {
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    ticket_id: Option<Uuid>,
}

#[derive(QueryableByName)]
struct HorizonRow {
    #[diesel(sql_type = Text)]
    horizon: String,
}

/// Point in the database's history up to which an in-memory copy is complete: the
/// snapshot xmin of its latest read. Zero means nothing has been read yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Horizon(u64);

/// Outcome of a read, besides the rows it passed on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Rows passed to the consumer.
    pub rows: usize,
    /// Tickets deleted since the previous read, to drop before storing the rows.
    pub deleted: Vec<Uuid>,
    /// The table was truncated since the previous read, so every row was read again and
    /// the copy must start empty.
    pub reset: bool,
    /// Horizon the next read starts from.
    pub horizon: Horizon,
}

/// Reads, in one snapshot, every row whose latest write is at or after `since` and the
/// tickets deleted since then, and passes the rows to `consume` in batches of at most
/// [`FETCH_ROWS`]. After a TRUNCATE it reads every row instead.
pub async fn read_changes(
    pool: &docket_db::Pool,
    since: Horizon,
    mut consume: impl FnMut(Vec<IncidentRow>) + Send,
) -> Result<ReadSummary, Error> {
    let mut conn = pool.get().await?;
    let result = conn
        .build_transaction()
        .read_only()
        .repeatable_read()
        .run(async |conn| {
            // The first statement takes the transaction's snapshot, so the xmin read here
            // belongs to the same snapshot as the rows below.
            let row: HorizonRow = diesel::sql_query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon")
                .get_result(conn)
                .await?;
            let horizon = parse_horizon(&row.horizon)?;
            let mut summary = ReadSummary { horizon, ..ReadSummary::default() };
            let mut since = since;
            if since > Horizon::default() {
                let deletions: Vec<DeletionRow> = diesel::sql_query(format!(
                    "SELECT ticket_id FROM incident_deletions WHERE changed_by >= '{}'::xid8 ORDER BY ticket_id NULLS FIRST",
                    since.0
                ))
                .load(conn)
                .await?;
                summary.reset = deletions.iter().any(|deletion| deletion.ticket_id.is_none());
                if summary.reset {
                    since = Horizon::default();
                } else {
                    summary.deleted = deletions.into_iter().filter_map(|deletion| deletion.ticket_id).collect();
                }
            }
            summary.rows = fetch_rows(conn, since, &mut consume).await?;
            Ok::<_, Error>(summary)
        })
        .await?;
    Ok(result)
}

async fn fetch_rows(
    conn: &mut AsyncPgConnection,
    since: Horizon,
    consume: &mut (impl FnMut(Vec<IncidentRow>) + Send),
) -> Result<usize, Error> {
    // DECLARE takes no bind parameters, so the bound is formatted into the statement, here
    // and for the deletions. It is always an integer that this code parsed.
    conn.batch_execute(&format!(
        "DECLARE incident_changes NO SCROLL CURSOR FOR \
         SELECT ticket_id, severity, category, status, resolution, team, detection_source, imported, \
                created_at, occurred_at, detected_at, acknowledged_at, contained_at, last_resolved_at \
         FROM incidents WHERE changed_by >= '{}'::xid8",
        since.0
    ))
    .await?;
    let mut read = 0;
    loop {
        let rows: Vec<IncidentRow> = diesel::sql_query(format!("FETCH {FETCH_ROWS} FROM incident_changes")).load(conn).await?;
        let fetched = rows.len();
        read += fetched;
        if fetched > 0 {
            consume(rows);
        }
        if fetched < FETCH_ROWS {
            return Ok(read);
        }
    }
}

fn parse_horizon(text: &str) -> Result<Horizon, Error> {
    text.parse().map(Horizon).map_err(|_| {
        Error::Database(docket_db::DbError::Query(diesel::result::Error::DeserializationError(
            format!("snapshot xmin {text:?} is not an unsigned integer").into(),
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizon_parses_xid8_text() {
        assert_eq!(parse_horizon("727").unwrap(), Horizon(727));
        assert_eq!(parse_horizon("18446744073709551615").unwrap(), Horizon(u64::MAX));
        assert!(parse_horizon("-1").is_err());
    }

    #[test]
    fn first_horizon_precedes_every_transaction() {
        assert!(Horizon::default() < Horizon(3));
    }
}
