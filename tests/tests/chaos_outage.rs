//! The audit service down for a while under steady ticket traffic. Ticket calls keep
//! working, the outbox backlog grows and shows in the ticket service's metrics, and the
//! relay backs off instead of spinning. Once audit returns, the backlog drains with every
//! event in the ledger exactly once.
//!
//! DOCKET_CHAOS_AUDIT_DOWN_SECONDS sets the outage (default 4); `make chaos` runs it for
//! minutes.

use std::time::{Duration, Instant};

use docket_proto::ticket::v1::*;
use docket_tests::chaos::{Change, settle};
use docket_tests::process::ServiceProcess;
use docket_tests::{TestDb, eventually, sample, scrape, start_audit_at, start_metrics, ticket_client, unused_addr};

/// Largest wait between two delivery attempts in this test (--relay-max-backoff).
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Smallest wait after a failed delivery, as the relay has it.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

fn outage() -> Duration {
    let seconds = std::env::var("DOCKET_CHAOS_AUDIT_DOWN_SECONDS").ok().and_then(|text| text.parse().ok()).unwrap_or(4.0);
    Duration::from_secs_f64(seconds)
}

fn create_request(request_id: &str) -> CreateTicketRequest {
    CreateTicketRequest {
        request_id: request_id.to_owned(),
        title: "Impossible travel sign-in".to_owned(),
        severity: Severity::Medium as i32,
        category: Category::UnauthorizedAccess as i32,
        team: "identity".to_owned(),
        detection_source: "idp".to_owned(),
        ..Default::default()
    }
}

/// Returns the CPU time the process has used so far, user plus system, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // The command name in brackets may contain spaces, so the fields are counted after it.
    let after_name = &stat[stat.rfind(')').expect("a stat line names its command") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let per_second = rustix::param::clock_ticks_per_second();
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_outage_backlog_drains_once() {
    let audit_addr = unused_addr();
    let metrics_db = TestDb::create("metrics");
    let metrics = start_metrics(&metrics_db, audit_addr).await;
    let ticket_db = TestDb::create("ticket");
    let ticket_addr = unused_addr();
    let ticket = ServiceProcess::ticket(&ticket_db, ticket_addr, audit_addr, metrics.addr, &["--relay-max-backoff", "2s"]);
    ticket.wait_until_serving().await;
    let mut client = ticket_client(ticket_addr).await;

    let outage = outage();
    let attempts_before = sample(&scrape(ticket.prometheus).await, r#"docket_relay_failed_attempts_total{sink="audit"}"#).unwrap_or(0.0);
    let cpu_before = cpu_time(ticket.pid());
    let started = Instant::now();
    let mut changes = Vec::new();
    let mut sequence = 0;
    while started.elapsed() < outage {
        sequence += 1;
        let created = client.create_ticket(create_request(&format!("outage-{sequence}"))).await.expect("ticket calls keep working while audit is down");
        changes.push(Change::of(&created.into_inner()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = started.elapsed();
    let cpu = cpu_time(ticket.pid()) - cpu_before;
    let text = scrape(ticket.prometheus).await;
    let attempts = sample(&text, r#"docket_relay_failed_attempts_total{sink="audit"}"#).unwrap_or(0.0) - attempts_before;

    let pending = sample(&text, r#"docket_outbox_pending_events{sink="audit"}"#).expect("the backlog is exported");
    assert_eq!(pending, changes.len() as f64, "every event waits for audit:\n{text}");
    let oldest = sample(&text, r#"docket_outbox_oldest_pending_age_seconds{sink="audit"}"#).expect("the age is exported");
    assert!(oldest >= 1.0, "the oldest event has waited since the outage began, age {oldest}");
    let stuck = text
        .lines()
        .find(|line| line.starts_with(r#"docket_outbox_oldest_pending_attempts{sink="audit",event_id=""#))
        .unwrap_or_else(|| panic!("the oldest pending event is named with its id:\n{text}"));
    let stuck_attempts: f64 = stuck.rsplit(' ').next().and_then(|value| value.parse().ok()).expect("a sample value");
    assert!(stuck_attempts >= 1.0, "the oldest pending event shows its failed attempts: {stuck}");

    // Doubling from the minimum to the maximum takes log2(max / min) steps, and then the
    // relay tries once per maximum wait. Three more allow for the wake-ups of new commits.
    let doublings = (MAX_BACKOFF.as_secs_f64() / MIN_BACKOFF.as_secs_f64()).log2().ceil();
    let bound = doublings + (wall.as_secs_f64() / MAX_BACKOFF.as_secs_f64()).ceil() + 3.0;
    println!("relay while audit was down for {wall:?}: {attempts} failed attempts (bound {bound}), CPU {cpu:?} of the ticket process");
    assert!(attempts >= 1.0, "the relay tried to deliver");
    assert!(attempts <= bound, "the relay backs off: {attempts} attempts in {wall:?}, at most {bound} expected");
    assert!(cpu.as_secs_f64() < wall.as_secs_f64() / 2.0, "the ticket process did not spin: {cpu:?} of CPU in {wall:?}");

    let audit_db = TestDb::create("audit");
    let _audit = start_audit_at(&audit_db, audit_addr).await;
    let tally = settle("audit down, then back", &changes, &ticket_db, &audit_db, &metrics_db, MAX_BACKOFF * 10).await;
    tally.print();
    assert_eq!(tally.lost, 0, "{tally:?}");
    assert_eq!(tally.duplicated, 0, "{tally:?}");
    let drained = eventually(Duration::from_secs(10), || async {
        (sample(&scrape(ticket.prometheus).await, r#"docket_outbox_pending_events{sink="audit"}"#)? == 0.0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the backlog drains once audit is back");
}
