//! Redelivery by the outbox relay: every batch sent twice, and a relay that dies after a
//! send but before it marks the batch delivered. The ledger and the metrics projection must
//! end up as a clean run leaves them: each change once, none lost.
//!
//! The faults come from the ticket binary's `fault-injection` feature, which this crate
//! enables, through DOCKET_FAULT_RELAY.

use std::time::Duration;

use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use docket_proto::ticket::v1::*;
use docket_tests::chaos::{Change, Tally, settle};
use docket_tests::process::ServiceProcess;
use docket_tests::{AuthChannel, Running, TestDb, sample, scrape, start_audit, start_metrics, ticket_client, unused_addr};

fn create_request(request_id: &str) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: request_id.to_owned(),
        title: "Suspicious OAuth consent grant".to_owned(),
        severity: Severity::High as i32,
        category: Category::UnauthorizedAccess as i32,
        team: "cloud".to_owned(),
        detection_source: "siem".to_owned(),
        ..Default::default()
    }
}

/// Creates `count` tickets and acknowledges each, returning the acknowledged changes.
async fn make_changes(client: &mut TicketServiceClient<AuthChannel>, prefix: &str, count: usize) -> Vec<Change> {
    let mut changes = Vec::new();
    for index in 0..count {
        let created = client.create_ticket(create_request(&format!("{prefix}-{index}"))).await.expect("create").into_inner();
        changes.push(Change::of(&created));
        let request = TransitionTicketRequest { ticket: created.id.clone(), to_status: Status::Acknowledged as i32, etag: created.etag, ..Default::default() };
        let moved = client.transition_ticket(request).await.expect("acknowledge").into_inner();
        changes.push(Change::of(&moved));
    }
    changes
}

/// Audit and metrics services on fresh databases, with the ticket database named.
struct Sinks {
    audit_db: TestDb,
    metrics_db: TestDb,
    ticket_db: TestDb,
    audit: Running,
    metrics: Running,
}

async fn start_sinks() -> Sinks {
    let audit_db = TestDb::create("audit");
    let audit = start_audit(&audit_db).await;
    let metrics_db = TestDb::create("metrics");
    let metrics = start_metrics(&metrics_db, audit.addr).await;
    Sinks { audit_db, metrics_db, ticket_db: TestDb::create("ticket"), audit, metrics }
}

impl Sinks {
    async fn settle(&self, scenario: &str, changes: &[Change]) -> Tally {
        settle(scenario, changes, &self.ticket_db, &self.audit_db, &self.metrics_db, Duration::from_secs(30)).await
    }

    /// Events that the audit and metrics services received again and skipped.
    async fn redelivered(&self) -> f64 {
        let audit = sample(&scrape(self.audit.prometheus).await, "docket_audit_already_present_events_total").unwrap_or(0.0);
        let metrics = sample(&scrape(self.metrics.prometheus).await, "docket_metrics_ignored_events_total").unwrap_or(0.0);
        audit + metrics
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_batch_sent_twice_lands_once() {
    let sinks = start_sinks().await;
    let backoff = "--relay-max-backoff=1s";
    let ticket_addr = unused_addr();
    let ticket = ServiceProcess::spawn_with_env(
        ServiceProcess::ticket_args(&sinks.ticket_db, ticket_addr, sinks.audit.addr, sinks.metrics.addr, &[backoff]),
        &[("DOCKET_FAULT_RELAY", "duplicate-send")],
    );
    ticket.wait_until_serving().await;
    let mut client = ticket_client(ticket_addr).await;
    let changes = make_changes(&mut client, "twice", 10).await;

    let tally = sinks.settle("relay sends every batch twice", &changes).await;
    tally.print();
    assert_eq!(tally.lost, 0, "{tally:?}");
    assert_eq!(tally.duplicated, 0, "{tally:?}");
    let redelivered = sinks.redelivered().await;
    assert!(redelivered >= 20.0, "each of the 20 events reached a sink a second time, counted {redelivered}");
    assert!(ticket.log().contains("relay fault injection is on"), "the fault was active:\n{}", ticket.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_dying_after_send_redelivers_once() {
    let sinks = start_sinks().await;
    let ticket_addr = unused_addr();
    let mut dying = ServiceProcess::spawn_with_env(
        ServiceProcess::ticket_args(&sinks.ticket_db, ticket_addr, sinks.audit.addr, sinks.metrics.addr, &[]),
        &[("DOCKET_FAULT_RELAY", "exit-after-send")],
    );
    dying.wait_until_serving().await;
    let mut client = ticket_client(ticket_addr).await;
    let created = client.create_ticket(create_request("dies-after-send")).await.expect("the create commits before the relay runs").into_inner();
    let status = dying.wait_exit(Duration::from_secs(10)).await.unwrap_or_else(|| panic!("the relay exits after its first send; log:\n{}", dying.log()));
    assert_eq!(status.code(), Some(86), "the process ended at the injected fault; log:\n{}", dying.log());

    let restarted = ServiceProcess::ticket(&sinks.ticket_db, ticket_addr, sinks.audit.addr, sinks.metrics.addr, &[]);
    restarted.wait_until_serving().await;
    let mut client = ticket_client(ticket_addr).await;
    let mut changes = vec![Change::of(&created)];
    changes.extend(make_changes(&mut client, "after-restart", 5).await);

    let tally = sinks.settle("relay dies after send, before marking", &changes).await;
    tally.print();
    assert_eq!(tally.lost, 0, "{tally:?}");
    assert_eq!(tally.duplicated, 0, "{tally:?}");
    let redelivered = sinks.redelivered().await;
    assert!(redelivered >= 1.0, "the batch sent before the exit was sent again after the restart, counted {redelivered}");
}
