//! Reads and appends of the `ledger` and `ledger_head` tables.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use docket_db::{DbError, Pool};
use uuid::Uuid;

use super::schema::{ledger, ledger_head};
use crate::Error;
use crate::domain::chain::Head;
use crate::domain::event::Event;
use crate::domain::listing::ListQuery;
use crate::domain::record::{Record, plan_append};
use crate::domain::verify::{Report, StoredHead, Verifier};

/// Id of the single head row.
const HEAD_ID: i16 = 1;

/// Records read per query during verification. Each chunk is checked while the next one
/// loads, so memory stays at about two chunks whatever the ledger's size.
const VERIFY_CHUNK: i64 = 10_000;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = ledger, check_for_backend(diesel::pg::Pg))]
struct LedgerRow {
    seq: i64,
    event_id: Uuid,
    action: String,
    resource_type: String,
    resource_id: String,
    resource_key: String,
    actor: String,
    relayed_by: String,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    canonical: Vec<u8>,
    leaf_hash: Vec<u8>,
    chain_hash: Vec<u8>,
}

#[derive(Insertable)]
#[diesel(table_name = ledger)]
struct NewLedgerRow<'a> {
    seq: i64,
    event_id: Uuid,
    action: &'a str,
    resource_type: &'a str,
    resource_id: &'a str,
    resource_key: &'a str,
    actor: &'a str,
    relayed_by: &'a str,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    canonical: &'a [u8],
    leaf_hash: &'a [u8],
    chain_hash: &'a [u8],
}

impl<'a> From<&'a Record> for NewLedgerRow<'a> {
    fn from(record: &'a Record) -> Self {
        NewLedgerRow {
            seq: record.seq,
            event_id: record.event_id,
            action: &record.action,
            resource_type: &record.resource_type,
            resource_id: &record.resource_id,
            resource_key: &record.resource_key,
            actor: &record.actor,
            relayed_by: &record.relayed_by,
            occurred_at: record.occurred_at,
            recorded_at: record.recorded_at,
            canonical: &record.canonical,
            leaf_hash: &record.leaf_hash,
            chain_hash: &record.chain_hash,
        }
    }
}

impl From<LedgerRow> for Record {
    fn from(row: LedgerRow) -> Self {
        Record {
            seq: row.seq,
            event_id: row.event_id,
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            resource_key: row.resource_key,
            actor: row.actor,
            relayed_by: row.relayed_by,
            occurred_at: row.occurred_at,
            recorded_at: row.recorded_at,
            canonical: row.canonical,
            leaf_hash: row.leaf_hash,
            chain_hash: row.chain_hash,
        }
    }
}

/// Result of appending one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub appended: usize,
    pub already_present: usize,
    pub head_seq: i64,
}

/// Appends `events` in order in one transaction, skipping ids already recorded.
///
/// The head row is locked first, so concurrent appenders in any replica wait for each
/// other and every record extends the chain the previous commit left. Under READ
/// COMMITTED each later statement reads a new snapshot, which includes every append
/// committed before the lock was acquired.
pub async fn append(pool: &Pool, events: &[Event]) -> Result<Appended, Error> {
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();

    conn.transaction(async |conn| {
        let head = lock_head(conn).await?;
        // Taken after the lock, from the one database clock all replicas share, so
        // recorded_at never decreases along the chain unless that clock steps back.
        let recorded_at: DateTime<Utc> = diesel::select(diesel::dsl::sql::<Timestamptz>("clock_timestamp()"))
            .get_result(conn)
            .await?;
        let recorded: HashSet<Uuid> = ledger::table
            .filter(ledger::event_id.eq_any(&ids))
            .select(ledger::event_id)
            .load::<Uuid>(conn)
            .await?
            .into_iter()
            .collect();

        let plan = plan_append(head, recorded_at, events, &recorded);
        if !plan.records.is_empty() {
            let rows: Vec<NewLedgerRow<'_>> = plan.records.iter().map(NewLedgerRow::from).collect();
            diesel::insert_into(ledger::table).values(&rows).execute(conn).await?;
            diesel::update(ledger_head::table.find(HEAD_ID))
                .set((
                    ledger_head::seq.eq(plan.head.seq),
                    ledger_head::chain_hash.eq(plan.head.chain_hash.as_slice()),
                ))
                .execute(conn)
                .await?;
        }
        Ok(Appended {
            appended: plan.records.len(),
            already_present: plan.already_present,
            head_seq: plan.head.seq,
        })
    })
    .await
}

async fn lock_head(conn: &mut AsyncPgConnection) -> Result<Head, Error> {
    let (seq, chain_hash): (i64, Vec<u8>) = ledger_head::table
        .find(HEAD_ID)
        .select((ledger_head::seq, ledger_head::chain_hash))
        .for_update()
        .get_result(conn)
        .await
        .optional()?
        .ok_or_else(|| Error::Inconsistent("the ledger_head row is missing".into()))?;
    let length = chain_hash.len();
    let chain_hash = chain_hash
        .try_into()
        .map_err(|_| Error::Inconsistent(format!("the ledger_head chain hash has {length} bytes instead of 32")))?;
    Ok(Head { seq, chain_hash })
}

/// Loads up to `query.page_size + 1` matching records after `query.after_seq`, in seq
/// order. The extra record shows the caller that another page exists.
pub async fn list(pool: &Pool, query: &ListQuery) -> Result<Vec<Record>, Error> {
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let filters = &query.filters;
    let limit = i64::try_from(query.page_size).unwrap_or(i64::MAX).saturating_add(1);

    let mut select = ledger::table
        .select(LedgerRow::as_select())
        .filter(ledger::seq.gt(query.after_seq))
        .order(ledger::seq.asc())
        .limit(limit)
        .into_boxed();
    if let Some(resource) = &filters.resource {
        select = select.filter(ledger::resource_id.eq(resource).or(ledger::resource_key.eq(resource)));
    }
    if let Some(actor) = &filters.actor {
        select = select.filter(ledger::actor.eq(actor));
    }
    if let Some(action) = &filters.action {
        select = select.filter(ledger::action.eq(action));
    }
    if let Some(after) = filters.occurred_after {
        select = select.filter(ledger::occurred_at.ge(after));
    }
    if let Some(before) = filters.occurred_before {
        select = select.filter(ledger::occurred_at.lt(before));
    }

    let rows: Vec<LedgerRow> = select.load(&mut conn).await?;
    Ok(rows.into_iter().map(Record::from).collect())
}

/// Verifies every record and the head row within one REPEATABLE READ snapshot, so
/// appends that commit meanwhile can neither appear half-done nor move the head.
pub async fn verify(pool: &Pool) -> Result<Report, Error> {
    let mut conn = pool.get().await.map_err(DbError::from)?;
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run(async |conn| {
            let mut verifier = Verifier::new();
            let mut chunk = load_chunk(conn, i64::MIN).await?;
            while let Some(last) = chunk.last() {
                let after = last.seq;
                let more = chunk.len() as i64 == VERIFY_CHUNK;

                // Hashing and parsing run on a blocking thread while the next chunk loads.
                let checked = tokio::task::spawn_blocking(move || {
                    for row in chunk {
                        verifier.check(&Record::from(row));
                        if verifier.failed() {
                            break;
                        }
                    }
                    verifier
                });
                let next = async {
                    if more {
                        load_chunk(conn, after).await
                    } else {
                        Ok(Vec::new())
                    }
                };
                let (checked, next) = tokio::join!(checked, next);
                verifier = checked?;
                if verifier.failed() {
                    break;
                }
                chunk = next?;
            }

            let head: Option<(i64, Vec<u8>)> = ledger_head::table
                .find(HEAD_ID)
                .select((ledger_head::seq, ledger_head::chain_hash))
                .get_result(conn)
                .await
                .optional()?;
            Ok(verifier.finish(head.map(|(seq, chain_hash)| StoredHead { seq, chain_hash })))
        })
        .await
}

async fn load_chunk(conn: &mut AsyncPgConnection, after_seq: i64) -> Result<Vec<LedgerRow>, Error> {
    let rows = ledger::table
        .select(LedgerRow::as_select())
        .filter(ledger::seq.gt(after_seq))
        .order(ledger::seq.asc())
        .limit(VERIFY_CHUNK)
        .load(conn)
        .await?;
    Ok(rows)
}
