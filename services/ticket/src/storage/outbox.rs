//! Claiming and marking outbox rows for the relay.
//!
//! A delivery loop claims, in one transaction, the oldest pending row of as many tickets
//! as it can lock (`FOR UPDATE SKIP LOCKED`), adds the later pending rows of those same
//! tickets, sends them as one batch and marks them delivered before committing. A row
//! is claimed only while no older row of its ticket is pending, so events of one ticket
//! reach each sink in version order even with several relay replicas.

use std::future::Future;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bytea, Integer, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use uuid::Uuid;

use crate::Error;

/// A destination of events, each with its own delivery column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Audit,
    Metrics,
}

impl Sink {
    pub fn name(self) -> &'static str {
        match self {
            Sink::Audit => "audit",
            Sink::Metrics => "metrics",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Sink::Audit => "audit_delivered_at",
            Sink::Metrics => "metrics_delivered_at",
        }
    }
}

/// An outbox row waiting for delivery.
#[derive(QueryableByName, Clone, Debug)]
pub struct PendingEvent {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = SqlUuid)]
    pub event_id: Uuid,
    #[diesel(sql_type = Bytea)]
    pub payload: Vec<u8>,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub traceparent: Option<String>,
}

/// Result of one delivery round.
#[derive(Debug)]
pub enum Delivery {
    /// No row was pending or every pending ticket is being delivered by another relay.
    Idle,
    /// This many events were sent and marked delivered.
    Delivered(usize),
    /// The batch could not be sent; its rows stay pending.
    Failed {
        event_ids: Vec<Uuid>,
        /// Attempt number of this failure, counting from 1.
        attempt: i32,
        error: String,
    },
}

enum RoundError {
    Database(Error),
    Send {
        ids: Vec<i64>,
        event_ids: Vec<Uuid>,
        attempt: i32,
        error: String,
    },
}

impl From<diesel::result::Error> for RoundError {
    fn from(error: diesel::result::Error) -> Self {
        RoundError::Database(error.into())
    }
}

/// Claims up to `limit` pending rows for `sink`, passes them to `send` in id order and
/// marks them delivered when it succeeds. On failure the claim is rolled back, and the
/// rows' attempt count and last error are recorded in a separate statement.
pub async fn deliver_batch<F, Fut>(
    pool: &docket_db::Pool,
    sink: Sink,
    limit: i64,
    send: F,
) -> Result<Delivery, Error>
where
    F: FnOnce(Vec<PendingEvent>) -> Fut + Send,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let mut conn = pool
        .get()
        .await
        .map_err(|error| Error::Database(error.into()))?;
    let column = sink.column();
    let round = conn
        .transaction::<_, RoundError, _>(async |conn| {
            // The commit only marks rows delivered. A crash that loses it makes the relay
            // send the rows again, which both receivers ignore by event id. So this commit
            // does not wait for the disk, which the creates need.
            conn.batch_execute("SET LOCAL synchronous_commit = off").await?;
            // The heads stay locked until the commit, so no other relay can claim a later
            // row of these tickets. MATERIALIZED keeps the claim from being folded into
            // the outer query, which then locks the pending rows of the claimed tickets.
            let pending: Vec<PendingEvent> = diesel::sql_query(format!(
                "WITH heads AS MATERIALIZED ( \
                   SELECT o.ticket_id FROM outbox o \
                   WHERE o.{column} IS NULL \
                     AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.ticket_id = o.ticket_id AND p.{column} IS NULL AND p.id < o.id) \
                   ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED) \
                 SELECT id, event_id, payload, attempts, traceparent FROM outbox \
                 WHERE ticket_id IN (SELECT ticket_id FROM heads) AND {column} IS NULL \
                 ORDER BY id LIMIT $1 FOR UPDATE"
            ))
            .bind::<BigInt, _>(limit)
            .load(conn)
            .await?;
            if pending.is_empty() {
                return Ok(0);
            }

            let ids: Vec<i64> = pending.iter().map(|row| row.id).collect();
            let event_ids: Vec<Uuid> = pending.iter().map(|row| row.event_id).collect();
            let attempt = pending.iter().map(|row| row.attempts).max().unwrap_or(0) + 1;
            let count = pending.len();
            if let Err(error) = send(pending).await {
                return Err(RoundError::Send { ids, event_ids, attempt, error });
            }

            diesel::sql_query(format!("UPDATE outbox SET {column} = now() WHERE id = ANY($1)"))
                .bind::<Array<BigInt>, _>(ids)
                .execute(conn)
                .await?;
            Ok(count)
        })
        .await;

    match round {
        Ok(0) => Ok(Delivery::Idle),
        Ok(count) => Ok(Delivery::Delivered(count)),
        Err(RoundError::Database(error)) => Err(error),
        Err(RoundError::Send {
            ids,
            event_ids,
            attempt,
            error,
        }) => {
            diesel::sql_query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)",
            )
            .bind::<Array<BigInt>, _>(ids)
            .bind::<Text, _>(&error)
            .execute(&mut conn)
            .await?;
            Ok(Delivery::Failed {
                event_ids,
                attempt,
                error,
            })
        }
    }
}

/// Pending events of one sink: how many, and the oldest one's age, event id and failed
/// attempts.
#[derive(QueryableByName, Clone, Debug, PartialEq)]
pub struct Backlog {
    #[diesel(sql_type = BigInt)]
    pub pending: i64,
    /// Seconds since the oldest pending event was committed; 0 when none is pending.
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub oldest_age_seconds: f64,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub oldest_event_id: Option<String>,
    #[diesel(sql_type = Integer)]
    pub oldest_attempts: i32,
}

/// Measures the backlog of `sink`. The aggregate reads the partial index of the sink's
/// pending rows, and the oldest row is then fetched by its primary key.
pub async fn backlog(pool: &docket_db::Pool, sink: Sink) -> Result<Backlog, Error> {
    let mut conn = pool.get().await.map_err(docket_db::DbError::from)?;
    let sql = format!(
        "WITH pending AS ( \
             SELECT count(*) AS pending, min(created_at) AS oldest_at, min(id) AS oldest_id FROM outbox WHERE {} IS NULL \
         ) \
         SELECT pending.pending, \
                COALESCE(EXTRACT(EPOCH FROM now() - pending.oldest_at), 0)::float8 AS oldest_age_seconds, \
                oldest.event_id::text AS oldest_event_id, COALESCE(oldest.attempts, 0) AS oldest_attempts \
         FROM pending LEFT JOIN outbox oldest ON oldest.id = pending.oldest_id",
        sink.column()
    );
    let backlog = diesel::sql_query(sql).get_result(&mut conn).await?;
    Ok(backlog)
}
