//! Graceful shutdown of a real service process: SIGTERM under load, the grace period, and
//! a second signal.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use docket_proto::ticket::v1::*;
use docket_tests::process::ServiceProcess;
use docket_tests::{TestDb, start_audit, start_metrics, ticket_client, unused_addr};
use tonic::Code;

const CLIENTS: usize = 8;

fn create_request(request_id: &str) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: request_id.to_owned(),
        title: "Beaconing from a build server".to_owned(),
        severity: Severity::High as i32,
        category: Category::Malware as i32,
        team: "soc".to_owned(),
        detection_source: "edr".to_owned(),
        ..Default::default()
    }
}

/// Outcome of one CreateTicket call: its request id, and the status code and message when
/// it failed.
type Outcome = (String, Result<(), (Code, String)>);

/// Returns whether a failed call never reached the server's handler: UNAVAILABLE, or the
/// CANCELLED that tonic 0.14 reports when hyper drops a request that was still queued on a
/// connection the server closed ("operation was canceled", hyper's `is_canceled`).
fn refused_before_start(result: &Result<(), (Code, String)>) -> bool {
    match result {
        Err((Code::Unavailable, _)) => true,
        Err((Code::Cancelled, message)) => message == "operation was canceled",
        _ => false,
    }
}

#[derive(QueryableByName)]
struct RequestId {
    #[diesel(sql_type = Text)]
    request_id: String,
}

async fn stored_request_ids(db: &TestDb) -> BTreeSet<String> {
    let mut conn = db.superuser_conn().await;
    let rows: Vec<RequestId> = diesel::sql_query("SELECT request_id FROM tickets WHERE request_id IS NOT NULL")
        .load(&mut conn)
        .await
        .expect("read the stored request ids");
    rows.into_iter().map(|row| row.request_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_fails_no_started_call() {
    let audit_db = TestDb::create("audit");
    let audit = start_audit(&audit_db).await;
    let metrics_db = TestDb::create("metrics");
    let metrics = start_metrics(&metrics_db, audit.addr).await;
    let ticket_db = TestDb::create("ticket");
    let grace = Duration::from_secs(5);
    let mut ticket = ServiceProcess::ticket(&ticket_db, unused_addr(), audit.addr, metrics.addr, &["--shutdown-grace", "5s"]);
    ticket.wait_until_serving().await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..CLIENTS {
        let mut client = ticket_client(ticket.addr).await;
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut outcomes: Vec<Outcome> = Vec::new();
            let mut sequence = 0;
            while !stop.load(Ordering::Relaxed) {
                let request_id = format!("load-{worker}-{sequence}");
                sequence += 1;
                let result = client.create_ticket(create_request(&request_id)).await;
                let failed = result.is_err();
                outcomes.push((request_id, result.map(|_| ()).map_err(|status| (status.code(), status.message().to_owned()))));
                if failed {
                    // The server is gone or going: retry slowly instead of spinning on refused connections.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            outcomes
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    ticket.terminate();
    let signalled = Instant::now();
    let status = ticket.wait_exit(grace + Duration::from_secs(10)).await;
    let exited_after = signalled.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.expect("a load worker finishes"));
    }
    let log = ticket.log();
    let status = status.unwrap_or_else(|| panic!("the ticket service did not exit after SIGTERM; its log:\n{log}"));
    assert!(status.success(), "the ticket service exits cleanly after SIGTERM, not with {status}; its log:\n{log}");
    assert!(exited_after < grace, "the process exits within the {grace:?} grace period, took {exited_after:?}");
    assert!(log.contains("shutdown signal received, draining"), "the service logs the start of the drain:\n{log}");

    let acknowledged: BTreeSet<String> = outcomes.iter().filter(|(_, result)| result.is_ok()).map(|(id, _)| id.clone()).collect();
    let failed: Vec<&Outcome> = outcomes.iter().filter(|(_, result)| result.is_err()).collect();
    assert!(acknowledged.len() >= CLIENTS, "the load ran before the signal: {} calls succeeded", acknowledged.len());
    assert!(!failed.is_empty(), "calls made after the exit fail, so the load overlapped the shutdown");
    let unexpected: Vec<&&Outcome> = failed.iter().filter(|(_, result)| !refused_before_start(result)).collect();
    assert!(unexpected.is_empty(), "every failed call ends with UNAVAILABLE; these did not: {unexpected:?}");

    let stored = stored_request_ids(&ticket_db).await;
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "every acknowledged create is stored; missing: {lost:?}");
    let started: Vec<&String> = stored.difference(&acknowledged).collect();
    assert!(started.is_empty(), "a call that failed with UNAVAILABLE stored nothing; stored anyway: {started:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_signal_ends_drain_at_once() {
    let ticket_db = TestDb::create("ticket");
    let mut ticket = ServiceProcess::ticket(&ticket_db, unused_addr(), unused_addr(), unused_addr(), &["--shutdown-grace", "60s"]);
    ticket.wait_until_serving().await;
    let mut client = ticket_client(ticket.addr).await;
    client.create_ticket(create_request("before-lock")).await.expect("a create before the lock succeeds");

    // A table lock held by the test keeps the next create in flight, so the drain waits for it.
    let mut blocker = ticket_db.superuser_conn().await;
    diesel::sql_query("BEGIN").execute(&mut blocker).await.expect("begin");
    diesel::sql_query("LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE").execute(&mut blocker).await.expect("lock the tickets table");
    let in_flight = tokio::spawn(async move { client.create_ticket(create_request("held")).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(500)).await;

    ticket.terminate();
    let still_draining = ticket.wait_exit(Duration::from_secs(2)).await;
    assert!(still_draining.is_none(), "the first SIGTERM waits for the call in flight, but the process exited: {still_draining:?}");

    ticket.terminate();
    let status = ticket.wait_exit(Duration::from_secs(5)).await;
    let log = ticket.log();
    let status = status.unwrap_or_else(|| panic!("the second SIGTERM ends the process at once; its log:\n{log}"));
    assert_eq!(status.code(), Some(130), "a second signal exits with code 130; log:\n{log}");
    assert!(log.contains("second shutdown signal received, exiting now"), "log:\n{log}");

    let call = in_flight.await.expect("the client task finishes");
    assert!(call.is_err(), "the held call cannot finish once the process is gone");
    diesel::sql_query("ROLLBACK").execute(&mut blocker).await.expect("release the lock");
    let stored = stored_request_ids(&ticket_db).await;
    assert!(stored.contains("before-lock"), "the earlier ticket is kept");
    assert!(!stored.contains("held"), "the call cut off by the exit stored nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_bounds_the_drain() {
    let ticket_db = TestDb::create("ticket");
    let grace = Duration::from_secs(2);
    let mut ticket = ServiceProcess::ticket(&ticket_db, unused_addr(), unused_addr(), unused_addr(), &["--shutdown-grace", "2s"]);
    ticket.wait_until_serving().await;
    let mut client = ticket_client(ticket.addr).await;
    client.create_ticket(create_request("before-lock")).await.expect("a create before the lock succeeds");

    let mut blocker = ticket_db.superuser_conn().await;
    diesel::sql_query("BEGIN").execute(&mut blocker).await.expect("begin");
    diesel::sql_query("LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE").execute(&mut blocker).await.expect("lock the tickets table");
    let in_flight = tokio::spawn(async move { client.create_ticket(create_request("held")).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(500)).await;

    ticket.terminate();
    let signalled = Instant::now();
    let status = ticket.wait_exit(grace + Duration::from_secs(10)).await;
    let exited_after = signalled.elapsed();
    let log = ticket.log();
    let status = status.unwrap_or_else(|| panic!("the ticket service did not exit after its grace period; its log:\n{log}"));
    assert!(status.success(), "a drain cut short by the grace period still exits cleanly, not with {status}; log:\n{log}");
    assert!(exited_after >= grace, "the drain waited the whole grace period for the held call, only {exited_after:?}");
    assert!(exited_after < grace + Duration::from_secs(5), "the process exits soon after its grace period, took {exited_after:?}");
    assert!(log.contains("in-flight calls still running after the grace period"), "log:\n{log}");
    let _ = in_flight.await;

    diesel::sql_query("ROLLBACK").execute(&mut blocker).await.expect("release the lock");
    assert!(stored_request_ids(&ticket_db).await.contains("before-lock"), "the earlier ticket is kept");
    assert!(!stored_request_ids(&ticket_db).await.contains("held"), "the call cut off by the shutdown stored nothing");
}
