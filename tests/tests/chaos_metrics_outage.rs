//! The metrics service goes down under load and comes back. Meanwhile ticket calls and
//! audit delivery carry on, and the metrics backlog in the outbox grows. Once the service
//! is back, its projection catches up until GetResponseMetrics returns the figures that
//! the test computes from the ticket database itself.
//!
//! Settings (whole numbers), with the short defaults `make test` uses:
//! - DOCKET_CHAOS_METRICS_DOWN_SECS (3): how long the metrics service stays down.
//! - DOCKET_CHAOS_METRICS_WORKERS (4): concurrent clients.
//!
//! `make chaos` should pass DOCKET_CHAOS_METRICS_DOWN_SECS=120.

use std::collections::BTreeMap;
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;
use docket_proto::metrics::v1::{DurationStats, GetResponseMetricsRequest, GroupBy, MetricsGroup, Population};
use docket_tests::chaos::settle;
use docket_tests::load::{Load, env_number, env_seconds};
use docket_tests::process::ServiceProcess;
use docket_tests::{TestDb, eventually, keys, metrics_client, start_audit, start_ticket_with, unused_addr};

const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// Time allowed for progress, delivery and catching up. Only a failure waits this long.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Difference in seconds up to which two durations count as equal. Both sides come from
/// the same microsecond timestamps, so only floating-point rounding may differ.
const TOLERANCE_SECONDS: f64 = 1e-6;

fn start_metrics_process(db: &TestDb, addr: std::net::SocketAddr, audit: std::net::SocketAddr) -> ServiceProcess {
    let extra = [
        "--audit-addr".to_owned(),
        audit.to_string(),
        "--service-signing-key".to_owned(),
        keys().metrics_service_key.display().to_string(),
    ];
    ServiceProcess::spawn("docket-metrics", db, addr, &extra)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let mut conn = db.superuser_conn().await;
    let rows: Vec<Count> = diesel::sql_query(sql).load(&mut conn).await.expect("count query");
    rows[0].count
}

/// One ticket as the ticket database stores it, with every instant in microseconds since 1970.
#[derive(QueryableByName, Debug)]
struct TicketTimes {
    #[diesel(sql_type = Nullable<Text>)]
    severity: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    resolution: Option<String>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    occurred_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    detected_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    acknowledged_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    contained_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_resolved_at: Option<i64>,
}

async fn ticket_times(db: &TestDb) -> Vec<TicketTimes> {
    let micros = |column: &str| format!("(extract(epoch FROM {column}) * 1000000)::bigint AS {column}");
    let sql = format!(
        "SELECT severity, resolution, status, {}, {}, {}, {}, {}, {} FROM tickets",
        micros("created_at"),
        micros("occurred_at"),
        micros("detected_at"),
        micros("acknowledged_at"),
        micros("contained_at"),
        micros("last_resolved_at"),
    );
    let mut conn = db.superuser_conn().await;
    diesel::sql_query(sql).load(&mut conn).await.expect("read the tickets")
}

fn population(resolution: Option<&str>) -> Population {
    match resolution {
        None | Some("true_positive") => Population::Incident,
        Some("false_positive") => Population::FalsePositive,
        Some("benign") => Population::Benign,
        Some("duplicate") => Population::Duplicate,
        Some(other) => panic!("unknown resolution {other:?} in the ticket database"),
    }
}

/// Summarizes durations given in microseconds the way the metrics service documents it:
/// the mean, and percentiles by the nearest-rank method (the value at rank ceil(p/100 × n)).
fn summarize(mut micros: Vec<i64>) -> DurationStats {
    if micros.is_empty() {
        return DurationStats::default();
    }
    micros.sort_unstable();
    let count = micros.len();
    let seconds = |value: i64| value as f64 / 1e6;
    let rank = |percent: usize| micros[(percent * count).div_ceil(100) - 1];
    DurationStats {
        count: i64::try_from(count).expect("a ticket count fits in i64"),
        mean: micros.iter().map(|value| seconds(*value)).sum::<f64>() / count as f64,
        median: seconds(rank(50)),
        p90: seconds(rank(90)),
        p95: seconds(rank(95)),
        max: seconds(micros[count - 1]),
    }
}

/// Computes the response metrics grouped by severity from the tickets themselves,
/// following the definitions in docs/metrics.md.
fn expected_groups(tickets: &[TicketTimes]) -> Vec<MetricsGroup> {
    #[derive(Default)]
    struct Samples {
        tickets: i64,
        ttd: Vec<i64>,
        tta: Vec<i64>,
        ttc: Vec<i64>,
        ttr: Vec<i64>,
    }

    let mut groups: BTreeMap<(String, i32), Samples> = BTreeMap::new();
    for ticket in tickets {
        let key = ticket.severity.clone().unwrap_or_else(|| "unrated".to_owned());
        let samples = groups.entry((key, population(ticket.resolution.as_deref()) as i32)).or_default();
        samples.tickets += 1;
        let start = ticket.detected_at.unwrap_or(ticket.created_at);
        if let (Some(occurred), Some(detected)) = (ticket.occurred_at, ticket.detected_at) {
            samples.ttd.push(detected - occurred);
        }
        if let Some(acknowledged) = ticket.acknowledged_at {
            samples.tta.push(acknowledged - start);
        }
        if let Some(contained) = ticket.contained_at {
            samples.ttc.push(contained - start);
        }
        let resolved_now = ticket.status == "resolved" || ticket.status == "closed";
        if let (true, Some(resolved)) = (resolved_now, ticket.last_resolved_at) {
            samples.ttr.push(resolved - start);
        }
    }
    groups
        .into_iter()
        .map(|((key, population), samples)| MetricsGroup {
            key,
            population,
            tickets: samples.tickets,
            ttd: Some(summarize(samples.ttd)),
            tta: Some(summarize(samples.tta)),
            ttc: Some(summarize(samples.ttc)),
            ttr: Some(summarize(samples.ttr)),
        })
        .collect()
}

/// Returns the first difference between two statistics, naming the figure.
fn compare_stats(name: &str, actual: Option<&DurationStats>, expected: Option<&DurationStats>) -> Option<String> {
    let (actual, expected) = (actual.cloned().unwrap_or_default(), expected.cloned().unwrap_or_default());
    if actual.count != expected.count {
        return Some(format!("{name}.count is {} instead of {}", actual.count, expected.count));
    }
    let figures = [
        ("mean", actual.mean, expected.mean),
        ("median", actual.median, expected.median),
        ("p90", actual.p90, expected.p90),
        ("p95", actual.p95, expected.p95),
        ("max", actual.max, expected.max),
    ];
    figures
        .into_iter()
        .find(|(_, actual, expected)| (actual - expected).abs() > TOLERANCE_SECONDS)
        .map(|(figure, actual, expected)| format!("{name}.{figure} is {actual} s instead of {expected} s"))
}

fn compare_groups(actual: &[MetricsGroup], expected: &[MetricsGroup]) -> Vec<String> {
    let label = |group: &MetricsGroup| format!("{}/{:?}", group.key, Population::try_from(group.population).unwrap_or(Population::Unspecified));
    let actual_labels: Vec<String> = actual.iter().map(label).collect();
    let expected_labels: Vec<String> = expected.iter().map(label).collect();
    if actual_labels != expected_labels {
        return vec![format!("groups are {actual_labels:?} instead of {expected_labels:?}")];
    }
    let mut differences = Vec::new();
    for (actual, expected) in actual.iter().zip(expected) {
        if actual.tickets != expected.tickets {
            differences.push(format!("{}: tickets is {} instead of {}", label(actual), actual.tickets, expected.tickets));
        }
        let metrics = [
            ("ttd", actual.ttd.as_ref(), expected.ttd.as_ref()),
            ("tta", actual.tta.as_ref(), expected.tta.as_ref()),
            ("ttc", actual.ttc.as_ref(), expected.ttc.as_ref()),
            ("ttr", actual.ttr.as_ref(), expected.ttr.as_ref()),
        ];
        for (name, actual_stats, expected_stats) in metrics {
            if let Some(difference) = compare_stats(name, actual_stats, expected_stats) {
                differences.push(format!("{}: {difference}", label(actual)));
            }
        }
    }
    differences
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_catch_up_after_outage() {
    let down = env_seconds("DOCKET_CHAOS_METRICS_DOWN_SECS", 3);
    let workers = usize::try_from(env_number("DOCKET_CHAOS_METRICS_WORKERS", 4)).expect("the worker count fits in usize");

    let audit_db = TestDb::create("audit");
    let audit = start_audit(&audit_db).await;
    let metrics_db = TestDb::create("metrics");
    let metrics_addr = unused_addr();
    let mut metrics = start_metrics_process(&metrics_db, metrics_addr, audit.addr);
    metrics.wait_until_serving().await;
    let ticket_db = TestDb::create("ticket");
    let ticket = start_ticket_with(&ticket_db, audit.addr, metrics_addr, &["--relay-max-backoff", "1s"]).await;

    let load = Load::start(&[ticket.addr], workers, CALL_DEADLINE).await;
    assert!(load.wait_for_progress(20, PROGRESS_TIMEOUT).await, "the load makes progress before the outage");

    metrics.kill();
    let exit = metrics.wait_exit(Duration::from_secs(10)).await;
    assert!(exit.is_some(), "the metrics service ends after SIGKILL");
    let pending_metrics = "SELECT count(*) AS count FROM outbox WHERE metrics_delivered_at IS NULL";
    let backlog_at_stop = count(&ticket_db, pending_metrics).await;
    assert!(load.wait_for_progress(20, PROGRESS_TIMEOUT).await, "ticket calls keep succeeding while the metrics service is down");
    tokio::time::sleep(down).await;
    let backlog_while_down = count(&ticket_db, pending_metrics).await;
    assert!(
        backlog_while_down > backlog_at_stop,
        "the metrics backlog grows while the service is down: {backlog_at_stop} events at the stop, {backlog_while_down} later"
    );

    // Events written during the outage still reach the ledger: the audit delivery does
    // not wait for the metrics delivery.
    let last_id = count(&ticket_db, "SELECT coalesce(max(id), 0) AS count FROM outbox").await;
    let audit_pending = format!("SELECT count(*) AS count FROM outbox WHERE id <= {last_id} AND audit_delivered_at IS NULL");
    let audit_caught_up = eventually(PROGRESS_TIMEOUT, || {
        let ticket_db = &ticket_db;
        let audit_pending = &audit_pending;
        async move { (count(ticket_db, audit_pending).await == 0).then_some(()) }
    })
    .await;
    assert!(audit_caught_up.is_some(), "events reach the ledger while the metrics service is down");

    let metrics = start_metrics_process(&metrics_db, metrics_addr, audit.addr);
    metrics.wait_until_serving().await;
    assert!(load.wait_for_progress(20, PROGRESS_TIMEOUT).await, "the load makes progress after the metrics service returned");
    let report = load.stop().await;

    let tally = settle("Metrics service down, then back", &report.acknowledged, &ticket_db, &audit_db, &metrics_db, SETTLE_TIMEOUT).await;
    tally.print();
    assert!(report.failures.is_empty(), "no ticket call fails while the metrics service is down: {:?}", report.failure_messages);
    assert_eq!(tally.lost, 0, "every acknowledged change reaches the tickets, the ledger and the metrics: {tally:?}");
    assert_eq!(tally.duplicated, 0, "no change is recorded twice: {tally:?}");

    let drained = eventually(SETTLE_TIMEOUT, || async { (count(&ticket_db, pending_metrics).await == 0).then_some(()) }).await;
    assert!(drained.is_some(), "the metrics backlog drains once the service is back; its log:\n{}", metrics.log());

    let expected = expected_groups(&ticket_times(&ticket_db).await);
    let mut client = metrics_client(metrics_addr).await;
    let request = GetResponseMetricsRequest { group_by: GroupBy::Severity as i32, ..Default::default() };
    let actual = client.get_response_metrics(request).await.expect("GetResponseMetrics succeeds").into_inner().groups;
    let differences = compare_groups(&actual, &expected);
    assert!(differences.is_empty(), "GetResponseMetrics equals the figures computed from the ticket database: {differences:#?}");
    assert!(expected.iter().any(|group| group.ttr.as_ref().is_some_and(|ttr| ttr.count > 0)), "the load resolved tickets, so TTR is compared");
}
