//! Bookkeeping of the fault-injection tests: which acknowledged changes reached the ticket
//! database, the audit ledger and the metrics projection, and a printed row per scenario.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

use crate::TestDb;

/// One change that a client got OK for: the ticket and its version after the change.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub ticket_id: String,
    pub version: i64,
}

impl Change {
    /// Returns the change that produced `ticket` as a response.
    pub fn of(ticket: &docket_proto::ticket::v1::Ticket) -> Change {
        Change { ticket_id: ticket.id.clone(), version: ticket.version }
    }
}

/// What one scenario found, one row of the table that `make chaos` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub scenario: String,
    pub acknowledged: usize,
    pub in_tickets: usize,
    pub in_ledger: usize,
    pub in_metrics: usize,
    /// Acknowledged changes missing from at least one of the three places.
    pub lost: usize,
    /// Changes recorded more than once in the ledger or applied more than once in metrics.
    pub duplicated: usize,
}

/// Header of the table, printed once before the rows.
pub const HEADER: &str = "scenario                              acknowledged  in tickets  in ledger  in metrics  lost  duplicated";

impl Tally {
    pub fn row(&self) -> String {
        format!(
            "{:<37} {:>12} {:>11} {:>10} {:>11} {:>5} {:>11}",
            self.scenario, self.acknowledged, self.in_tickets, self.in_ledger, self.in_metrics, self.lost, self.duplicated
        )
    }

    /// Prints the header and this row, so each test's output is readable on its own.
    pub fn print(&self) {
        println!("{HEADER}\n{}", self.row());
    }

    pub fn is_complete(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
}

#[derive(QueryableByName)]
struct HistoryRow {
    #[diesel(sql_type = Text)]
    ticket_id: String,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Text)]
    event_id: String,
}

#[derive(QueryableByName)]
struct EventCount {
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct VersionCount {
    #[diesel(sql_type = Text)]
    ticket_id: String,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Looks up every acknowledged change in the three databases, as the superuser.
pub async fn tally(scenario: &str, acknowledged: &[Change], ticket_db: &TestDb, audit_db: &TestDb, metrics_db: &TestDb) -> Tally {
    let mut tickets = ticket_db.superuser_conn().await;
    // A change is in the ticket database when its history entry and its outbox event both are.
    let history: Vec<HistoryRow> = diesel::sql_query(
        "SELECT h.ticket_id::text AS ticket_id, h.version, h.event_id::text AS event_id \
         FROM ticket_history h JOIN outbox o ON o.event_id = h.event_id",
    )
    .load(&mut tickets)
    .await
    .expect("read the ticket history");
    let event_of: BTreeMap<(String, i64), String> =
        history.into_iter().map(|row| ((row.ticket_id, row.version), row.event_id)).collect();

    let mut audit = audit_db.superuser_conn().await;
    let ledger: Vec<EventCount> = diesel::sql_query(
        "SELECT event_id::text AS event_id, count(*) AS count FROM ledger WHERE action LIKE 'ticket.%' GROUP BY event_id",
    )
    .load(&mut audit)
    .await
    .expect("read the ledger");
    // The same ticket version under two event ids would also be a duplicate.
    let ledger_versions: Vec<VersionCount> = diesel::sql_query(
        "SELECT resource_id AS ticket_id, (convert_from(canonical, 'UTF8')::jsonb ->> 'resource_version')::bigint AS version, \
         count(*) AS count FROM ledger WHERE action LIKE 'ticket.%' GROUP BY 1, 2 HAVING count(*) > 1",
    )
    .load(&mut audit)
    .await
    .expect("read the ledger versions");
    let in_ledger: BTreeMap<String, i64> = ledger.into_iter().map(|row| (row.event_id, row.count)).collect();

    let mut metrics = metrics_db.superuser_conn().await;
    let projected: Vec<VersionCount> =
        diesel::sql_query("SELECT ticket_id::text AS ticket_id, version, 1::bigint AS count FROM incidents")
            .load(&mut metrics)
            .await
            .expect("read the projection");
    let applied_twice: Vec<VersionCount> = diesel::sql_query(
        "SELECT ticket_id::text AS ticket_id, version, count(*) AS count FROM applied_events GROUP BY 1, 2 HAVING count(*) > 1",
    )
    .load(&mut metrics)
    .await
    .expect("read the applied events");
    let projected_version: BTreeMap<String, i64> = projected.into_iter().map(|row| (row.ticket_id, row.version)).collect();

    let mut result = Tally { scenario: scenario.to_owned(), acknowledged: acknowledged.len(), ..Tally::default() };
    let unique: BTreeSet<&Change> = acknowledged.iter().collect();
    for change in unique {
        let event = event_of.get(&(change.ticket_id.clone(), change.version));
        let stored = event.is_some();
        let ledgered = event.is_some_and(|id| in_ledger.contains_key(id));
        // The projection keeps one row per ticket, so a change is in it once that row has
        // reached the change's version.
        let projected = projected_version.get(&change.ticket_id).is_some_and(|version| *version >= change.version);
        result.in_tickets += usize::from(stored);
        result.in_ledger += usize::from(ledgered);
        result.in_metrics += usize::from(projected);
        result.lost += usize::from(!(stored && ledgered && projected));
    }
    let repeated_events: i64 = in_ledger.values().filter(|count| **count > 1).map(|count| count - 1).sum();
    let repeated_versions: i64 = ledger_versions.iter().map(|row| row.count - 1).sum();
    let repeated_applies: i64 = applied_twice.iter().map(|row| row.count - 1).sum();
    result.duplicated = usize::try_from(repeated_events + repeated_versions + repeated_applies).unwrap_or(usize::MAX);
    result
}

/// Tallies again every half second until nothing is lost or `timeout` passes, and returns
/// the last tally.
pub async fn settle(scenario: &str, acknowledged: &[Change], ticket_db: &TestDb, audit_db: &TestDb, metrics_db: &TestDb, timeout: Duration) -> Tally {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let current = tally(scenario, acknowledged, ticket_db, audit_db, metrics_db).await;
        if current.lost == 0 || tokio::time::Instant::now() >= deadline {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Counts the sessions on `db` that have sat idle inside an open transaction for 2 seconds
/// or more, which a cancelled request must never leave behind. A shorter wait is normal:
/// the outbox relay keeps its claim transaction open while it waits for a sink's response.
pub async fn idle_in_transaction(db: &TestDb) -> i64 {
    let mut conn = db.superuser_conn().await;
    let rows: Vec<Count> = diesel::sql_query(
        "SELECT count(*) AS count FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%' \
         AND now() - state_change >= interval '2 seconds'",
    )
    .load(&mut conn)
    .await
    .expect("read pg_stat_activity");
    rows[0].count
}
