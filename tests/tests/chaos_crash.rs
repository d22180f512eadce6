//! Crashes of the ticket service: kill -9 at a random moment under load, and calls that
//! clients abandon in the middle of a transaction. Every acknowledged change must reach the
//! ticket database, the ledger and the metrics exactly once, and no database session may be
//! left idle inside a transaction.
//!
//! DOCKET_CHAOS_LOAD_SECONDS sets how long the load runs on each side of the kill (default
//! 2); `make chaos` runs it longer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use docket_proto::ticket::v1::*;
use docket_tests::chaos::{Change, idle_in_transaction, settle};
use docket_tests::process::ServiceProcess;
use docket_tests::{AuthChannel, TestDb, eventually, sample, scrape, start_audit, start_metrics, ticket_client, unused_addr};
use tokio::sync::Mutex;
use tonic::Code;

fn load_duration() -> Duration {
    let seconds = std::env::var("DOCKET_CHAOS_LOAD_SECONDS").ok().and_then(|text| text.parse().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(seconds)
}

fn create_request(request_id: &str) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: request_id.to_owned(),
        title: "Ransomware note on a file server".to_owned(),
        severity: Severity::Critical as i32,
        category: Category::Malware as i32,
        team: "soc".to_owned(),
        detection_source: "edr".to_owned(),
        ..Default::default()
    }
}

fn transition_request(ticket: &Ticket, to: Status) -> TransitionTicketRequest {
    TransitionTicketRequest { ticket: ticket.id.clone(), to_status: to as i32, etag: ticket.etag.clone(), ..Default::default() }
}

/// Creates tickets and moves each to acknowledged and investigating until `stop` is set,
/// adding every acknowledged change to `changes`. Failed calls are expected while the
/// service is down, so they only slow the loop.
async fn steady_load(mut client: TicketServiceClient<AuthChannel>, worker: usize, stop: Arc<AtomicBool>, changes: Arc<Mutex<Vec<Change>>>) {
    let mut sequence = 0;
    while !stop.load(Ordering::Relaxed) {
        sequence += 1;
        let request_id = format!("crash-{worker}-{sequence}");
        let Ok(created) = client.create_ticket(create_request(&request_id)).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut ticket = created.into_inner();
        changes.lock().await.push(Change::of(&ticket));
        for to in [Status::Acknowledged, Status::Investigating] {
            match client.transition_ticket(transition_request(&ticket, to)).await {
                Ok(moved) => {
                    ticket = moved.into_inner();
                    changes.lock().await.push(Change::of(&ticket));
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    break;
                }
            }
        }
    }
}

/// Returns a pause between 0 and `max`, different in each run.
fn random_pause(max: Duration) -> Duration {
    let random = uuid::Uuid::new_v4().as_u128();
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(u64::try_from(random % u128::from(millis)).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_during_load_loses_nothing() {
    let audit_db = TestDb::create("audit");
    let audit = start_audit(&audit_db).await;
    let metrics_db = TestDb::create("metrics");
    let metrics = start_metrics(&metrics_db, audit.addr).await;
    let ticket_db = TestDb::create("ticket");
    let ticket_addr = unused_addr();
    let mut ticket = ServiceProcess::ticket(&ticket_db, ticket_addr, audit.addr, metrics.addr, &["--relay-max-backoff", "1s"]);
    ticket.wait_until_serving().await;

    let stop = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let client = ticket_client(ticket_addr).await;
        workers.push(tokio::spawn(steady_load(client, worker, stop.clone(), changes.clone())));
    }

    let load = load_duration();
    tokio::time::sleep(load / 2 + random_pause(load)).await;
    ticket.kill();
    let status = ticket.wait_exit(Duration::from_secs(10)).await.expect("kill -9 ends the process");
    assert!(!status.success(), "a killed process does not exit cleanly: {status}");
    let before_restart = changes.lock().await.len();
    assert!(before_restart > 0, "the load ran before the kill");

    // PostgreSQL ends the killed process's sessions, rolling back any open transaction.
    let no_stale_sessions = eventually(Duration::from_secs(10), || async { (idle_in_transaction(&ticket_db).await == 0).then_some(()) }).await;
    assert!(no_stale_sessions.is_some(), "no session of the killed process stays idle in a transaction");

    let restarted = ServiceProcess::ticket(&ticket_db, ticket_addr, audit.addr, metrics.addr, &["--relay-max-backoff", "1s"]);
    restarted.wait_until_serving().await;
    tokio::time::sleep(load).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a load worker finishes");
    }
    let acknowledged = changes.lock().await.clone();
    assert!(acknowledged.len() > before_restart, "the load went on after the restart");

    let tally = settle("kill -9 ticket service under load", &acknowledged, &ticket_db, &audit_db, &metrics_db, Duration::from_secs(30)).await;
    tally.print();
    assert_eq!(tally.lost, 0, "every acknowledged change reaches all three places: {tally:?}");
    assert_eq!(tally.duplicated, 0, "no change is recorded twice: {tally:?}");
    assert_eq!(idle_in_transaction(&ticket_db).await, 0, "no session is idle in a transaction after the run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_call_leaves_no_open_transaction() {
    let audit_db = TestDb::create("audit");
    let audit = start_audit(&audit_db).await;
    let metrics_db = TestDb::create("metrics");
    let metrics = start_metrics(&metrics_db, audit.addr).await;
    let ticket_db = TestDb::create("ticket");
    let ticket = docket_tests::start_ticket(&ticket_db, audit.addr, metrics.addr).await;
    let mut client = ticket_client(ticket.addr).await;
    client.create_ticket(create_request("before")).await.expect("a create before the lock succeeds");

    // The lock holds the next create inside its transaction until the client gives up.
    let mut blocker = ticket_db.superuser_conn().await;
    blocker.batch_execute("BEGIN; LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE").await.expect("lock the tickets table");
    for attempt in 0..3 {
        let mut request = tonic::Request::new(create_request(&format!("abandoned-{attempt}")));
        request.set_timeout(Duration::from_millis(300));
        let status = client.create_ticket(request).await.expect_err("the held create times out");
        assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    }
    blocker.batch_execute("ROLLBACK").await.expect("release the lock");

    let settled = eventually(Duration::from_secs(10), || async { (idle_in_transaction(&ticket_db).await == 0).then_some(()) }).await;
    assert!(settled.is_some(), "no session stays idle in a transaction after the abandoned calls");
    let broken = sample(&scrape(ticket.prometheus).await, "docket_db_pool_connections_closed_broken_total").unwrap_or(0.0);
    assert!(broken >= 1.0, "the pool closed the connections that were left inside a transaction, closed {broken}");

    // The pool still works, and none of the abandoned creates was stored.
    client.create_ticket(create_request("after")).await.expect("a create after the abandoned calls succeeds");
    let listed = client.list_tickets(ListTicketsRequest { page_size: 100, ..Default::default() }).await.expect("list tickets").into_inner();
    let titles: Vec<&str> = listed.tickets.iter().map(|ticket| ticket.title.as_str()).collect();
    assert_eq!(titles.len(), 2, "only the creates before and after the lock are stored: {titles:?}");
}
