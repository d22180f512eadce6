//! Several replicas at once: ticket service replicas that share one database and all
//! relay its outbox, audit service replicas that share one ledger and all append to it,
//! and metrics service replicas that share one projection. Clients spread each ticket's
//! changes over the ticket replicas.
//!
//! The test checks that each ticket's events reach the ledger and the projection in
//! version order, and that nothing is lost or recorded twice. It also checks that the
//! ledger has neither a fork nor a gap: its sequence numbers are 1..n, and each chain hash
//! extends the one before.
//!
//! Settings (whole numbers), with the short defaults `make test` uses:
//! - DOCKET_CHAOS_REPLICAS_TICKET (3), DOCKET_CHAOS_REPLICAS_AUDIT (3) and
//!   DOCKET_CHAOS_REPLICAS_METRICS (2): replicas of each service.
//! - DOCKET_CHAOS_REPLICAS_WORKERS (6): concurrent clients.
//! - DOCKET_CHAOS_REPLICAS_SECS (4): how long the load runs.
//!
//! `make chaos` should pass DOCKET_CHAOS_REPLICAS_TICKET=4 DOCKET_CHAOS_REPLICAS_AUDIT=4
//! DOCKET_CHAOS_REPLICAS_WORKERS=16 DOCKET_CHAOS_REPLICAS_SECS=60.

use std::collections::BTreeMap;
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bytea, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use docket_proto::audit::v1::VerifyLedgerRequest;
use docket_tests::chaos::settle;
use docket_tests::load::{Load, env_number, env_seconds};
use docket_tests::{Running, TestDb, audit_client, start_audit, start_metrics, start_ticket_with};
use sha2::{Digest, Sha256};

const CALL_DEADLINE: Duration = Duration::from_secs(10);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One ticket event in the ledger, in ledger order.
#[derive(QueryableByName)]
struct LedgerEvent {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    ticket_id: String,
    #[diesel(sql_type = Text)]
    event_id: String,
}

/// One link of the ledger's hash chain.
#[derive(QueryableByName)]
struct ChainLink {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Bytea)]
    leaf_hash: Vec<u8>,
    #[diesel(sql_type = Bytea)]
    chain_hash: Vec<u8>,
}

#[derive(QueryableByName)]
struct Head {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Bytea)]
    chain_hash: Vec<u8>,
}

/// One event of the ticket database's history, by ticket and version.
#[derive(QueryableByName)]
struct HistoryEvent {
    #[diesel(sql_type = Text)]
    ticket_id: String,
    #[diesel(sql_type = Text)]
    event_id: String,
}

/// One event the metrics service applied, with the start time of the transaction that
/// applied it.
#[derive(QueryableByName)]
struct AppliedEvent {
    #[diesel(sql_type = Text)]
    ticket_id: String,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Timestamptz)]
    applied_at: chrono::DateTime<chrono::Utc>,
}

fn count_setting(name: &str, default: u64) -> usize {
    usize::try_from(env_number(name, default)).expect("the setting fits in usize")
}

/// Returns the event ids of each ticket in the order of `events`.
fn by_ticket(events: impl Iterator<Item = (String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut tickets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (ticket_id, event_id) in events {
        tickets.entry(ticket_id).or_default().push(event_id);
    }
    tickets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_keep_order_without_fork_or_gap() {
    let ticket_replicas = count_setting("DOCKET_CHAOS_REPLICAS_TICKET", 3);
    let audit_replicas = count_setting("DOCKET_CHAOS_REPLICAS_AUDIT", 3);
    let metrics_replicas = count_setting("DOCKET_CHAOS_REPLICAS_METRICS", 2);
    let workers = count_setting("DOCKET_CHAOS_REPLICAS_WORKERS", 6);
    let duration = env_seconds("DOCKET_CHAOS_REPLICAS_SECS", 4);

    let audit_db = TestDb::create("audit");
    let mut audits: Vec<Running> = Vec::new();
    for _ in 0..audit_replicas {
        audits.push(start_audit(&audit_db).await);
    }
    let metrics_db = TestDb::create("metrics");
    let mut metrics: Vec<Running> = Vec::new();
    for replica in 0..metrics_replicas {
        metrics.push(start_metrics(&metrics_db, audits[replica % audit_replicas].addr).await);
    }
    // Each ticket replica relays to its own audit and metrics replica, so every audit
    // replica appends at the same time as the others.
    let ticket_db = TestDb::create("ticket");
    let mut tickets: Vec<Running> = Vec::new();
    for replica in 0..ticket_replicas {
        let audit = audits[replica % audit_replicas].addr;
        let metrics = metrics[replica % metrics_replicas].addr;
        tickets.push(start_ticket_with(&ticket_db, audit, metrics, &["--relay-max-backoff", "1s"]).await);
    }

    let targets: Vec<_> = tickets.iter().map(|ticket| ticket.addr).collect();
    let load = Load::start(&targets, workers, CALL_DEADLINE).await;
    tokio::time::sleep(duration).await;
    let report = load.stop().await;

    let tally = settle("Several ticket and audit replicas", &report.acknowledged, &ticket_db, &audit_db, &metrics_db, SETTLE_TIMEOUT).await;
    tally.print();
    assert!(report.failures.is_empty(), "no call fails: {:?}", report.failure_messages);
    assert!(tally.acknowledged > 0, "the load made changes");
    assert_eq!(tally.lost, 0, "every acknowledged change reaches the tickets, the ledger and the metrics: {tally:?}");
    assert_eq!(tally.duplicated, 0, "no change is recorded twice: {tally:?}");

    // Per ticket, the ledger contains the events of the ticket's history in version order.
    let mut tickets_conn = ticket_db.superuser_conn().await;
    let history: Vec<HistoryEvent> = diesel::sql_query(
        "SELECT ticket_id::text AS ticket_id, event_id::text AS event_id FROM ticket_history ORDER BY ticket_id, version",
    )
    .load(&mut tickets_conn)
    .await
    .expect("read the ticket history");
    let expected = by_ticket(history.into_iter().map(|event| (event.ticket_id, event.event_id)));
    let mut audit_conn = audit_db.superuser_conn().await;
    let ledger: Vec<LedgerEvent> = diesel::sql_query(
        "SELECT seq, resource_id AS ticket_id, event_id::text AS event_id FROM ledger WHERE action LIKE 'ticket.%' ORDER BY seq",
    )
    .load(&mut audit_conn)
    .await
    .expect("read the ledger");
    assert!(ledger.windows(2).all(|pair| pair[0].seq < pair[1].seq), "the ledger query returns records in seq order");
    let recorded = by_ticket(ledger.into_iter().map(|event| (event.ticket_id, event.event_id)));
    let out_of_order: Vec<&String> = expected.keys().filter(|ticket| recorded.get(*ticket) != expected.get(*ticket)).collect();
    assert!(
        out_of_order.is_empty(),
        "{} of {} tickets have ledger records that differ from their history in order or content, for example {:?}",
        out_of_order.len(),
        expected.len(),
        out_of_order.first()
    );

    // The ledger's sequence numbers are 1..n without a gap, and each chain hash is
    // SHA-256(previous chain hash || leaf hash), starting from 32 zero bytes: one chain, no fork.
    let links: Vec<ChainLink> =
        diesel::sql_query("SELECT seq, leaf_hash, chain_hash FROM ledger ORDER BY seq").load(&mut audit_conn).await.expect("read the chain");
    let mut previous = vec![0u8; 32];
    for (index, link) in links.iter().enumerate() {
        assert_eq!(link.seq, i64::try_from(index + 1).expect("a record count fits in i64"), "the ledger has a gap before seq {}", link.seq);
        let mut hasher = Sha256::new();
        hasher.update(&previous);
        hasher.update(&link.leaf_hash);
        let computed = hasher.finalize().to_vec();
        assert_eq!(hex::encode(&computed), hex::encode(&link.chain_hash), "record {} does not extend the chain before it", link.seq);
        previous = computed;
    }
    let head: Vec<Head> = diesel::sql_query("SELECT seq, chain_hash FROM ledger_head").load(&mut audit_conn).await.expect("read the head");
    assert_eq!(head.len(), 1, "the ledger has one head row");
    assert_eq!(head[0].seq, i64::try_from(links.len()).expect("a record count fits in i64"), "the head points at the last record");
    assert_eq!(hex::encode(&head[0].chain_hash), hex::encode(&previous), "the head holds the last record's chain hash");

    let mut audit = audit_client(audits[0].addr).await;
    let verified = audit.verify_ledger(VerifyLedgerRequest {}).await.expect("VerifyLedger succeeds").into_inner();
    assert!(verified.intact, "VerifyLedger finds the ledger intact: {verified:?}");
    assert_eq!(verified.records_checked, i64::try_from(links.len()).expect("a record count fits in i64"), "VerifyLedger checks every record");

    // Per ticket, the metrics service applied the events in version order: a later
    // version was never applied by an earlier transaction.
    let mut metrics_conn = metrics_db.superuser_conn().await;
    let applied: Vec<AppliedEvent> = diesel::sql_query(
        "SELECT ticket_id::text AS ticket_id, version, applied_at FROM applied_events ORDER BY ticket_id, version",
    )
    .load(&mut metrics_conn)
    .await
    .expect("read the applied events");
    let reordered: Vec<(&String, i64)> = applied
        .windows(2)
        .filter(|pair| pair[0].ticket_id == pair[1].ticket_id && pair[1].applied_at < pair[0].applied_at)
        .map(|pair| (&pair[1].ticket_id, pair[1].version))
        .collect();
    assert!(reordered.is_empty(), "the metrics service applied these ticket versions before an earlier one: {reordered:?}");
}
