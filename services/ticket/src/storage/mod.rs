//! PostgreSQL storage of tickets: the only module with SQL. Every change writes the
//! ticket row, a history entry and an outbox event in one transaction.

pub mod outbox;
mod rows;
mod schema;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prost::Message;
use uuid::Uuid;

use crate::Error;
use crate::domain::change::diff;
use crate::domain::import::ImportedTicket;
use crate::domain::page::ListQuery;
use crate::domain::ticket::NewTicket;
use crate::domain::{self, Comment, FieldChange, Ticket, TicketRef};
use crate::events::{self, ChangeRecord, DenialRecord};
use crate::relay::Wake;
pub use rows::HistoryEntry;
use rows::{CommentRow, HistoryRow, NewOutboxRow, NewTicketRow, TicketRow, changeset};
use schema::{outbox as outbox_table, ticket_comments, ticket_history, tickets};

/// A change computed by the domain from the current ticket.
pub struct Mutation {
    /// The ticket after the change; the store sets its version and update time.
    pub ticket: Ticket,
    pub action: &'static str,
    /// Note kept in the history entry.
    pub note: String,
    /// Worklog entry that the change appends.
    pub comment: Option<Comment>,
}

/// Result of importing one record.
pub enum ImportOutcome {
    Imported { id: Uuid, key: String },
    AlreadyPresent { id: Uuid, key: String },
}

/// Ticket storage on the service's connection pool.
#[derive(Clone)]
pub struct Store {
    pool: docket_db::Pool,
    wake: Arc<Wake>,
}

impl Store {
    pub fn new(pool: docket_db::Pool, wake: Arc<Wake>) -> Store {
        Store { pool, wake }
    }

    async fn conn(&self) -> Result<docket_db::Conn<'_>, Error> {
        self.pool
            .get()
            .await
            .map_err(|error| Error::Database(error.into()))
    }

    /// Writes the outbox event of a denied call, so the relay carries it to the audit
    /// ledger. Denials of calls that name no loaded ticket share the nil ticket id, which
    /// keeps them in order among themselves.
    pub async fn record_denial(&self, record: &DenialRecord<'_>) -> Result<(), Error> {
        let event = events::build_denial_event(record);
        let mut conn = self.conn().await?;
        diesel::insert_into(outbox_table::table)
            .values(NewOutboxRow {
                event_id: record.event_id,
                ticket_id: record.ticket.map_or(Uuid::nil(), |(id, _)| id),
                ticket_version: 0,
                payload: event.encode_to_vec(),
                created_at: record.at,
                traceparent: docket_telemetry::current_traceparent(),
            })
            .execute(&mut conn)
            .await?;
        self.wake.notify();
        Ok(())
    }

    /// Inserts a ticket unless a ticket with the same request id exists. A retry with the
    /// same content returns the existing ticket; other content gets RequestIdReused.
    pub async fn create(&self, new: NewTicket, actor: &str) -> Result<Ticket, Error> {
        let mut conn = self.conn().await?;
        let (ticket, created) = conn
            .transaction::<_, Error, _>(async |conn| {
                let row = NewTicketRow::created(&new);
                // ON CONFLICT waits for a concurrent insert of the same request id to
                // commit or roll back, so exactly one of many retries inserts.
                let inserted: Option<TicketRow> = diesel::insert_into(tickets::table)
                    .values(&row)
                    .on_conflict(tickets::request_id)
                    .do_nothing()
                    .returning(TicketRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?;
                if let Some(row) = inserted {
                    let ticket = row.into_ticket()?;
                    let changes = diff(None, &ticket);
                    let at = ticket.created_at;
                    record_change(
                        conn,
                        &ticket,
                        events::ACTION_CREATED,
                        actor,
                        "",
                        "",
                        &changes,
                        at,
                    )
                    .await?;
                    return Ok((ticket, true));
                }

                let winner: TicketRow = tickets::table
                    .filter(tickets::request_id.eq(&new.request_id))
                    .select(TicketRow::as_select())
                    .first(conn)
                    .await?;
                if winner.request_digest.as_deref() != Some(new.request_digest.as_str()) {
                    return Err(Error::RequestIdReused {
                        request_id: new.request_id.clone(),
                        key: winner.key,
                    });
                }
                Ok((winner.into_ticket()?, false))
            })
            .await?;

        if created {
            self.wake.notify();
            tracing::info!(ticket_id = %ticket.id, key = %ticket.key, actor, "created ticket");
        } else {
            tracing::info!(ticket_id = %ticket.id, key = %ticket.key, request_id = %new.request_id, "create retried, returned the existing ticket");
        }
        Ok(ticket)
    }

    /// Reads one ticket and its worklog, oldest comment first. Both statements are sent
    /// together on the connection's pipeline, so the read costs one round trip. The
    /// comments are selected by the same id or key as the ticket.
    pub async fn get(&self, target: &TicketRef) -> Result<(Ticket, Vec<Comment>), Error> {
        let conn = self.conn().await?;
        let (ticket_query, comments_query) = match target {
            TicketRef::Id(id) => (
                tickets::table.find(*id).into_boxed(),
                ticket_comments::table.filter(ticket_comments::ticket_id.eq(*id)).into_boxed(),
            ),
            TicketRef::Key(key) => (
                tickets::table.filter(tickets::key.eq(key.as_str().to_owned())).into_boxed(),
                ticket_comments::table
                    .filter(ticket_comments::ticket_id.eq_any(tickets::table.filter(tickets::key.eq(key.as_str().to_owned())).select(tickets::id)))
                    .into_boxed(),
            ),
        };
        // Queries run through a shared reference to the connection may be in flight
        // together, which diesel-async allows for PostgreSQL.
        let conn: &AsyncPgConnection = &conn;
        let ticket = ticket_query.select(TicketRow::as_select()).first::<TicketRow>(&mut &*conn);
        let comments = comments_query
            .order((ticket_comments::created_at.asc(), ticket_comments::id.asc()))
            .select(CommentRow::as_select())
            .load::<CommentRow>(&mut &*conn);
        let (ticket, comments) = futures::join!(ticket, comments);
        let ticket = ticket.optional()?.ok_or_else(|| Error::NotFound(target.to_string()))?.into_ticket()?;
        Ok((ticket, comments?.into_iter().map(Comment::from).collect()))
    }

    /// Applies `apply` to the current ticket under a row lock and commits the result with
    /// its history entry and outbox event. `expected_version` is the caller's etag; a
    /// different current version gets StaleEtag. `apply` returning `None` means nothing
    /// changes, and the current ticket is returned without a new version.
    pub async fn change<F>(
        &self,
        target: &TicketRef,
        expected_version: Option<i64>,
        actor: &str,
        apply: F,
    ) -> Result<(Ticket, Option<Comment>), Error>
    where
        F: FnOnce(&Ticket, DateTime<Utc>) -> Result<Option<Mutation>, Error> + Send,
    {
        let mut conn = self.conn().await?;
        let (ticket, comment, changed) = conn
            .transaction::<_, Error, _>(async |conn| {
                let current = load(conn, target, true).await?;
                if let Some(expected) = expected_version
                    && expected != current.version
                {
                    return Err(stale(&current, expected));
                }
                let now = domain::now();
                let Some(mutation) = apply(&current, now)? else {
                    return Ok((current, None, false));
                };

                let mut next = mutation.ticket;
                next.version = current.version + 1;
                next.updated_at = now;
                let mut changes = diff(Some(&current), &next);
                if let Some(comment) = &mutation.comment {
                    changes.push(FieldChange {
                        field: "comments".to_owned(),
                        old_value: String::new(),
                        new_value: serde_json::json!({ "id": comment.id.to_string(), "author": comment.author, "body": comment.body })
                            .to_string(),
                    });
                }

                if let Some(comment) = &mutation.comment {
                    check_worklog_room(conn, &current, comment).await?;
                }

                // The version guard repeats the etag check in SQL, so a change can never
                // overwrite one that committed after this transaction read the row.
                let updated = diesel::update(tickets::table)
                    .filter(tickets::id.eq(current.id))
                    .filter(tickets::version.eq(current.version))
                    .set(changeset(&next))
                    .execute(conn)
                    .await?;
                if updated != 1 {
                    return Err(stale(&current, current.version));
                }
                if let Some(comment) = &mutation.comment {
                    diesel::insert_into(ticket_comments::table)
                        .values(CommentRow::from(comment))
                        .execute(conn)
                        .await?;
                }
                record_change(conn, &next, mutation.action, actor, &mutation.note, &mutation.note, &changes, now).await?;
                Ok((next, mutation.comment, true))
            })
            .await?;

        if changed {
            self.wake.notify();
            tracing::info!(ticket_id = %ticket.id, key = %ticket.key, version = ticket.version, actor, "changed ticket");
        }
        Ok((ticket, comment))
    }

    /// Returns one page of tickets in id order and whether more follow.
    pub async fn list(&self, query: &ListQuery) -> Result<(Vec<Ticket>, bool), Error> {
        let mut select = tickets::table.select(TicketRow::as_select()).into_boxed();
        if let Some(after) = query.after {
            select = select.filter(tickets::id.gt(after));
        }

        if !query.statuses.is_empty() {
            let names: Vec<&str> = query.statuses.iter().map(|value| value.as_str()).collect();
            select = select.filter(tickets::status.eq_any(names));
        }
        if !query.severities.is_empty() {
            let names: Vec<&str> = query
                .severities
                .iter()
                .flatten()
                .map(|value| value.as_str())
                .collect();
            if query.severities.contains(&None) {
                select = select.filter(
                    tickets::severity
                        .eq_any(names)
                        .or(tickets::severity.is_null()),
                );
            } else {
                select = select.filter(tickets::severity.eq_any(names));
            }
        }
        if !query.categories.is_empty() {
            let names: Vec<&str> = query
                .categories
                .iter()
                .map(|value| value.as_str())
                .collect();
            select = select.filter(tickets::category.eq_any(names));
        }

        if let Some(assignee) = &query.assignee {
            select = select.filter(tickets::assignee.eq(assignee));
        }
        if let Some(team) = &query.team {
            select = select.filter(tickets::team.eq(team));
        }

        if let Some(at) = query.created_after {
            select = select.filter(tickets::created_at.ge(at));
        }
        if let Some(at) = query.created_before {
            select = select.filter(tickets::created_at.lt(at));
        }
        if let Some(at) = query.updated_after {
            select = select.filter(tickets::updated_at.ge(at));
        }
        if let Some(at) = query.updated_before {
            select = select.filter(tickets::updated_at.lt(at));
        }

        // Reading one row past the page shows whether another page follows.
        let mut conn = self.conn().await?;
        let mut rows: Vec<TicketRow> = select
            .order(tickets::id.asc())
            .limit(query.page_size + 1)
            .load(&mut conn)
            .await?;
        let more = rows.len() as i64 > query.page_size;
        rows.truncate(query.page_size as usize);
        let tickets = rows
            .into_iter()
            .map(TicketRow::into_ticket)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((tickets, more))
    }

    /// Returns the ticket id and up to `limit` history entries after `after_version`,
    /// oldest first, and whether more follow.
    pub async fn history(
        &self,
        target: &TicketRef,
        after_version: i64,
        limit: i64,
    ) -> Result<(Uuid, Vec<HistoryEntry>, bool), Error> {
        let mut conn = self.conn().await?;
        let id = resolve_id(&mut conn, target).await?;
        let mut rows: Vec<HistoryRow> = ticket_history::table
            .filter(ticket_history::ticket_id.eq(id))
            .filter(ticket_history::version.gt(after_version))
            .order(ticket_history::version.asc())
            .limit(limit + 1)
            .select(HistoryRow::as_select())
            .load(&mut conn)
            .await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok((id, rows.into_iter().map(HistoryEntry::from).collect(), more))
    }

    /// Inserts an imported ticket unless its (source, digest) was imported before.
    pub async fn import(
        &self,
        imported: ImportedTicket,
        actor: &str,
    ) -> Result<ImportOutcome, Error> {
        let mut conn = self.conn().await?;
        let outcome = conn
            .transaction::<_, Error, _>(async |conn| {
                // Looking first keeps a re-import from drawing key numbers from the
                // sequence; ON CONFLICT below still settles a concurrent import.
                if let Some((id, key)) = find_imported(conn, &imported.source, &imported.digest).await? {
                    return Ok(ImportOutcome::AlreadyPresent { id, key });
                }
                let row = NewTicketRow {
                    id: imported.ticket.id,
                    fields: changeset(&imported.ticket),
                    imported: true,
                    import_source: Some(imported.source.clone()),
                    import_digest: Some(imported.digest.clone()),
                    request_id: None,
                    request_digest: None,
                    created_at: imported.ticket.created_at,
                };
                let inserted: Option<TicketRow> = diesel::insert_into(tickets::table)
                    .values(&row)
                    .on_conflict((tickets::import_source, tickets::import_digest))
                    .do_nothing()
                    .returning(TicketRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?;
                let Some(row) = inserted else {
                    let (id, key) = find_imported(conn, &imported.source, &imported.digest)
                        .await?
                        .ok_or(diesel::result::Error::NotFound)?;
                    return Ok(ImportOutcome::AlreadyPresent { id, key });
                };
                let ticket = row.into_ticket()?;
                let changes = diff(None, &ticket);
                let at = ticket.created_at;
                record_change(
                    conn,
                    &ticket,
                    events::ACTION_IMPORTED,
                    actor,
                    &imported.reason,
                    &imported.reason,
                    &changes,
                    at,
                )
                .await?;
                Ok(ImportOutcome::Imported {
                    id: ticket.id,
                    key: ticket.key,
                })
            })
            .await?;
        if let ImportOutcome::Imported { id, key } = &outcome {
            self.wake.notify();
            tracing::info!(ticket_id = %id, key = %key, source = %imported.source, "imported ticket");
        }
        Ok(outcome)
    }
}

/// Returns the id and key of the ticket imported from `source` with `digest`, if any.
async fn find_imported(
    conn: &mut AsyncPgConnection,
    source: &str,
    digest: &str,
) -> Result<Option<(Uuid, String)>, Error> {
    let found = tickets::table
        .filter(tickets::import_source.eq(source))
        .filter(tickets::import_digest.eq(digest))
        .select((tickets::id, tickets::key))
        .first(conn)
        .await
        .optional()?;
    Ok(found)
}

fn stale(current: &Ticket, expected: i64) -> Error {
    Error::StaleEtag {
        key: current.key.clone(),
        expected: expected.to_string(),
        current: current.etag(),
    }
}

async fn resolve_id(conn: &mut AsyncPgConnection, target: &TicketRef) -> Result<Uuid, Error> {
    let id = match target {
        TicketRef::Id(id) => tickets::table
            .find(*id)
            .select(tickets::id)
            .first(conn)
            .await
            .optional()?,
        TicketRef::Key(key) => tickets::table
            .filter(tickets::key.eq(key.as_str()))
            .select(tickets::id)
            .first(conn)
            .await
            .optional()?,
    };
    id.ok_or_else(|| Error::NotFound(target.to_string()))
}

/// Loads a ticket, locking its row until the transaction ends when `lock` is set. The
/// ticket is read by its id or its unique key in one statement.
async fn load(
    conn: &mut AsyncPgConnection,
    target: &TicketRef,
    lock: bool,
) -> Result<Ticket, Error> {
    let by_id = |id: Uuid| tickets::table.find(id).select(TicketRow::as_select());
    let by_key = |key: &str| {
        tickets::table
            .filter(tickets::key.eq(key.to_owned()))
            .select(TicketRow::as_select())
    };
    let row: Option<TicketRow> = match (target, lock) {
        (TicketRef::Id(id), false) => by_id(*id).first(conn).await.optional()?,
        (TicketRef::Id(id), true) => by_id(*id).for_update().first(conn).await.optional()?,
        (TicketRef::Key(key), false) => by_key(key.as_str()).first(conn).await.optional()?,
        (TicketRef::Key(key), true) => by_key(key.as_str()).for_update().first(conn).await.optional()?,
    };
    row.ok_or_else(|| Error::NotFound(target.to_string()))?
        .into_ticket()
}

/// Rejects `comment` when it would take the worklog of `ticket` past
/// [`domain::ticket::MAX_WORKLOG_BYTES`]. The caller has locked the ticket row, so no
/// other comment is added between this sum and the insert.
async fn check_worklog_room(conn: &mut AsyncPgConnection, ticket: &Ticket, comment: &Comment) -> Result<(), Error> {
    let used: i64 = ticket_comments::table
        .filter(ticket_comments::ticket_id.eq(ticket.id))
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>("COALESCE(SUM(octet_length(body)), 0)::bigint"))
        .first(conn)
        .await?;
    let adding = comment.body.len() as i64;
    if used + adding > domain::ticket::MAX_WORKLOG_BYTES {
        return Err(Error::WorklogFull {
            key: ticket.key.to_string(),
            used,
            adding,
            limit: domain::ticket::MAX_WORKLOG_BYTES,
        });
    }
    Ok(())
}

/// Appends the history entry and the outbox event of a change that the caller's
/// transaction has written to the ticket row.
#[allow(clippy::too_many_arguments)]
async fn record_change(
    conn: &mut AsyncPgConnection,
    ticket: &Ticket,
    action: &'static str,
    actor: &str,
    note: &str,
    reason: &str,
    changes: &[FieldChange],
    at: DateTime<Utc>,
) -> Result<Uuid, Error> {
    let event_id = Uuid::now_v7();
    let event = events::build_event(&ChangeRecord {
        event_id,
        action,
        ticket,
        changes,
        actor,
        reason,
        at,
    });
    diesel::insert_into(ticket_history::table)
        .values(HistoryRow {
            ticket_id: ticket.id,
            version: ticket.version,
            action: action.to_owned(),
            actor: actor.to_owned(),
            at,
            changes: serde_json::Value::Array(changes.iter().map(FieldChange::to_json).collect()),
            note: note.to_owned(),
            event_id,
        })
        .execute(conn)
        .await?;
    diesel::insert_into(outbox_table::table)
        .values(NewOutboxRow {
            event_id,
            ticket_id: ticket.id,
            ticket_version: ticket.version,
            payload: event.encode_to_vec(),
            created_at: at,
            traceparent: docket_telemetry::current_traceparent(),
        })
        .execute(conn)
        .await?;
    Ok(event_id)
}
