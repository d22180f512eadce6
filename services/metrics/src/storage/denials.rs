//! The denial outbox: audit events of denied calls that wait for the audit service.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::schema::denial_outbox;
use crate::Error;

/// One denial waiting for delivery.
#[derive(Queryable)]
pub struct PendingDenial {
    pub event_id: Uuid,
    pub event: Vec<u8>,
}

/// Stores one encoded event.
pub async fn insert(pool: &docket_db::Pool, event_id: Uuid, event: &[u8]) -> Result<(), Error> {
    let mut conn = pool.get().await?;
    diesel::insert_into(denial_outbox::table)
        .values((denial_outbox::event_id.eq(event_id), denial_outbox::event.eq(event)))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Returns up to `limit` of the oldest pending denials, oldest first.
pub async fn oldest(pool: &docket_db::Pool, limit: i64) -> Result<Vec<PendingDenial>, Error> {
    let mut conn = pool.get().await?;
    let rows = denial_outbox::table
        .select((denial_outbox::event_id, denial_outbox::event))
        .order(denial_outbox::event_id)
        .limit(limit)
        .load(&mut conn)
        .await?;
    Ok(rows)
}

/// Deletes the denials that the audit service accepted.
pub async fn delete(pool: &docket_db::Pool, event_ids: &[Uuid]) -> Result<(), Error> {
    let mut conn = pool.get().await?;
    diesel::delete(denial_outbox::table.filter(denial_outbox::event_id.eq_any(event_ids)))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Counts one more failed attempt for each of `event_ids`.
pub async fn count_failure(pool: &docket_db::Pool, event_ids: &[Uuid]) -> Result<(), Error> {
    let mut conn = pool.get().await?;
    diesel::update(denial_outbox::table.filter(denial_outbox::event_id.eq_any(event_ids)))
        .set(denial_outbox::attempts.eq(denial_outbox::attempts + 1))
        .execute(&mut conn)
        .await?;
    Ok(())
}
