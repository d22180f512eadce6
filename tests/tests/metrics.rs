//! MetricsService against a real PostgreSQL database: the projection built from
//! hand-made events, and the response-time statistics computed from it. Every expected
//! figure below is worked out by hand in the comment next to it.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use docket_proto::events::v1::{Event, TicketSnapshot};
use docket_tests::snapshot_event as event;
use docket_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use docket_proto::metrics::v1::{
    DurationStats, GetResponseMetricsRequest, GroupBy, MetricsGroup, Population, RecordEventsRequest, RecordEventsResponse,
};
use docket_tests::{Running, TestDb, metrics_client, start_metrics, unused_addr};
use prost_types::Timestamp;
use tonic::Code;
use docket_tests::AuthChannel as Channel;
use tonic_types::StatusExt;
use uuid::Uuid;

/// 2026-01-01T00:00:00Z. Every instant in these tests is an offset in seconds from it.
const EPOCH: i64 = 1_767_225_600;

fn at(offset: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: EPOCH + offset,
        nanos: 0,
    })
}

/// A new ticket: created at offset 0, status `new`, severity `high`, category
/// `malware`, team `soc`, detection source `edr`, version 1.
fn ticket() -> TicketSnapshot {
    let id = Uuid::now_v7();
    TicketSnapshot {
        ticket_id: id.to_string(),
        key: format!("INC-{}", &id.simple().to_string()[24..]),
        version: 1,
        severity: "high".into(),
        category: "malware".into(),
        status: "new".into(),
        team: "soc".into(),
        detection_source: "edr".into(),
        created_at: at(0),
        ..Default::default()
    }
}

/// The next version of `previous`, resolved at `offset` with `resolution`. The first
/// resolution stays in `resolved_at`, as the ticket service keeps it across reopens.
fn resolved(previous: &TicketSnapshot, offset: i64, resolution: &str) -> TicketSnapshot {
    TicketSnapshot {
        version: previous.version + 1,
        status: "resolved".into(),
        resolution: resolution.into(),
        resolved_at: previous.resolved_at.or(at(offset)),
        last_resolved_at: at(offset),
        ..previous.clone()
    }
}

fn events(snapshots: &[TicketSnapshot]) -> Vec<Event> {
    snapshots.iter().map(event).collect()
}

fn stats(count: i64, mean: f64, median: f64, p90: f64, p95: f64, max: f64) -> DurationStats {
    DurationStats {
        count,
        mean,
        median,
        p90,
        p95,
        max,
    }
}

/// Compares every figure on its own, so a failure names the one that is wrong.
fn assert_stats(actual: &Option<DurationStats>, expected: DurationStats, label: &str) {
    let actual = actual.unwrap_or_else(|| panic!("{label}: statistics missing"));
    assert_eq!(actual.count, expected.count, "{label}: count");
    assert_eq!(actual.mean, expected.mean, "{label}: mean");
    assert_eq!(actual.median, expected.median, "{label}: median");
    assert_eq!(actual.p90, expected.p90, "{label}: p90");
    assert_eq!(actual.p95, expected.p95, "{label}: p95");
    assert_eq!(actual.max, expected.max, "{label}: max");
}

fn empty() -> DurationStats {
    stats(0, 0.0, 0.0, 0.0, 0.0, 0.0)
}

fn find<'a>(groups: &'a [MetricsGroup], key: &str, population: Population) -> &'a MetricsGroup {
    groups
        .iter()
        .find(|group| group.key == key && group.population == population as i32)
        .unwrap_or_else(|| panic!("no group {key}/{population:?} in {groups:#?}"))
}

fn keys(groups: &[MetricsGroup]) -> Vec<(String, Population)> {
    groups
        .iter()
        .map(|group| (group.key.clone(), Population::try_from(group.population).expect("known population")))
        .collect()
}

#[derive(QueryableByName)]
struct StoredIncident {
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    severity: String,
}

#[derive(QueryableByName)]
struct RowCount {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// A metrics service on a fresh database with a connected client.
struct Harness {
    db: TestDb,
    client: MetricsServiceClient<Channel>,
    _service: Running,
}

impl Harness {
    async fn start() -> Harness {
        let db = TestDb::create("metrics");
        let service = start_metrics(&db, unused_addr()).await;
        let client = metrics_client(service.addr).await;
        Harness {
            db,
            client,
            _service: service,
        }
    }

    async fn record(&mut self, events: Vec<Event>) -> RecordEventsResponse {
        self.client
            .record_events(RecordEventsRequest { events })
            .await
            .expect("RecordEvents succeeds")
            .into_inner()
    }

    async fn record_snapshots(&mut self, snapshots: &[TicketSnapshot]) -> RecordEventsResponse {
        self.record(events(snapshots)).await
    }

    async fn groups(&mut self, request: GetResponseMetricsRequest) -> Vec<MetricsGroup> {
        self.client
            .get_response_metrics(request)
            .await
            .expect("GetResponseMetrics succeeds")
            .into_inner()
            .groups
    }

    /// The ungrouped incident group for `request`, which must exist.
    async fn incidents(&mut self, request: GetResponseMetricsRequest) -> MetricsGroup {
        let groups = self.groups(request).await;
        find(&groups, "all", Population::Incident).clone()
    }

    async fn stored(&self, snapshot: &TicketSnapshot) -> StoredIncident {
        let mut conn = self.db.superuser_conn().await;
        diesel::sql_query("SELECT version, status, severity FROM incidents WHERE ticket_id = $1")
            .bind::<diesel::sql_types::Uuid, _>(Uuid::parse_str(&snapshot.ticket_id).unwrap())
            .get_result(&mut conn)
            .await
            .expect("the ticket has a projection row")
    }

    async fn row_count(&self, table: &str) -> i64 {
        let mut conn = self.db.superuser_conn().await;
        let row: RowCount = diesel::sql_query(format!("SELECT count(*) AS count FROM {table}"))
            .get_result(&mut conn)
            .await
            .expect("count rows");
        row.count
    }
}

fn ungrouped() -> GetResponseMetricsRequest {
    GetResponseMetricsRequest::default()
}

fn grouped_by(group_by: GroupBy) -> GetResponseMetricsRequest {
    GetResponseMetricsRequest {
        group_by: group_by as i32,
        ..Default::default()
    }
}

fn window(start: Option<i64>, end: Option<i64>) -> GetResponseMetricsRequest {
    GetResponseMetricsRequest {
        start: start.and_then(at),
        end: end.and_then(at),
        ..Default::default()
    }
}

fn bad_request_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|details| details.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttd_statistics_use_nearest_rank() {
    let mut harness = Harness::start().await;
    let mut snapshots: Vec<TicketSnapshot> = [60, 120, 180, 240, 3600]
        .into_iter()
        .map(|detected| TicketSnapshot {
            occurred_at: at(0),
            detected_at: at(detected),
            ..ticket()
        })
        .collect();
    // Detected but with no occurrence time: outside the TTD population, still a ticket.
    snapshots.push(TicketSnapshot {
        detected_at: at(30),
        ..ticket()
    });
    harness.record_snapshots(&snapshots).await;

    let group = harness.incidents(ungrouped()).await;

    assert_eq!(group.tickets, 6);
    // Sorted sample 60, 120, 180, 240, 3600 (n = 5). Mean 4200 / 5 = 840. Median: rank
    // ceil(0.5 × 5) = 3 → 180. p90: rank ceil(4.5) = 5 → 3600. p95: rank ceil(4.75) = 5 → 3600.
    assert_stats(&group.ttd, stats(5, 840.0, 180.0, 3600.0, 3600.0, 3600.0), "ttd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentiles_on_ten_values_pick_exact_ranks() {
    let mut harness = Harness::start().await;
    let snapshots: Vec<TicketSnapshot> = (1..=10)
        .map(|k| TicketSnapshot {
            version: 2,
            status: "acknowledged".into(),
            detected_at: at(0),
            acknowledged_at: at(60 * k),
            ..ticket()
        })
        .collect();
    harness.record_snapshots(&snapshots).await;

    let group = harness.incidents(ungrouped()).await;

    // TTA sample 60, 120, ..., 600 (n = 10). Mean 60 × 55 / 10 = 330. Median: rank
    // ceil(5) = 5 → 300, the lower middle and not the interpolated 330. p90: rank
    // ceil(9) = 9 → 540. p95: rank ceil(9.5) = 10 → 600.
    assert_stats(&group.tta, stats(10, 330.0, 300.0, 540.0, 600.0, 600.0), "tta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tta_starts_at_detection_else_creation() {
    let mut harness = Harness::start().await;
    let detected_before_creation = TicketSnapshot {
        version: 2,
        status: "acknowledged".into(),
        created_at: at(200),
        detected_at: at(100),
        acknowledged_at: at(400),
        ..ticket()
    };
    let never_detected = TicketSnapshot {
        version: 2,
        status: "acknowledged".into(),
        acknowledged_at: at(50),
        ..ticket()
    };
    let unacknowledged = TicketSnapshot {
        detected_at: at(0),
        ..ticket()
    };
    harness.record_snapshots(&[detected_before_creation, never_detected, unacknowledged]).await;

    let group = harness.incidents(ungrouped()).await;

    assert_eq!(group.tickets, 3);
    // 400 − 100 = 300 (from detection) and 50 − 0 = 50 (from creation); the
    // unacknowledged ticket is absent. Sorted 50, 300: mean 175, median rank 1 → 50,
    // p90 rank ceil(1.8) = 2 → 300, p95 rank ceil(1.9) = 2 → 300.
    assert_stats(&group.tta, stats(2, 175.0, 50.0, 300.0, 300.0, 300.0), "tta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttc_counts_only_contained_tickets() {
    let mut harness = Harness::start().await;
    let contained = TicketSnapshot {
        version: 3,
        status: "contained".into(),
        detected_at: at(0),
        acknowledged_at: at(10),
        contained_at: at(1000),
        ..ticket()
    };
    let contained_undetected = TicketSnapshot {
        version: 3,
        status: "contained".into(),
        contained_at: at(250),
        ..ticket()
    };
    let investigating = TicketSnapshot {
        version: 3,
        status: "investigating".into(),
        detected_at: at(0),
        acknowledged_at: at(10),
        ..ticket()
    };
    harness.record_snapshots(&[contained, contained_undetected, investigating]).await;

    let group = harness.incidents(ungrouped()).await;

    // 1000 − 0 = 1000 and 250 − 0 = 250 (from creation). Sorted 250, 1000: mean 625,
    // median rank 1 → 250, p90 and p95 rank 2 → 1000.
    assert_stats(&group.ttc, stats(2, 625.0, 250.0, 1000.0, 1000.0, 1000.0), "ttc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_tickets_are_absent_not_zero() {
    let mut harness = Harness::start().await;
    let detected = || TicketSnapshot {
        detected_at: at(0),
        ..ticket()
    };
    let resolved_ticket = resolved(&detected(), 600, "true_positive");
    let resolved_late = resolved(&detected(), 1200, "true_positive");
    let closed = TicketSnapshot {
        version: resolved_late.version + 1,
        status: "closed".into(),
        closed_at: at(1300),
        ..resolved_late
    };
    let open = TicketSnapshot {
        detected_at: at(0),
        acknowledged_at: at(30),
        status: "investigating".into(),
        version: 3,
        ..ticket()
    };
    harness.record_snapshots(&[resolved_ticket, closed, open]).await;

    let group = harness.incidents(ungrouped()).await;

    assert_eq!(group.tickets, 3);
    // TTR 600 and 1200; counting the open ticket as zero would give count 3 and mean
    // 600. Sorted 600, 1200: mean 900, median rank 1 → 600, p90 and p95 rank 2 → 1200.
    assert_stats(&group.ttr, stats(2, 900.0, 600.0, 1200.0, 1200.0, 1200.0), "ttr");
    // No ticket was contained: an empty sample reports count 0 and zero figures.
    assert_stats(&group.ttc, empty(), "ttc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_ticket_uses_latest_resolution() {
    let mut harness = Harness::start().await;
    let new = TicketSnapshot {
        detected_at: at(0),
        ..ticket()
    };
    let first_resolution = resolved(&new, 100, "true_positive");
    let reopened = TicketSnapshot {
        version: 3,
        status: "investigating".into(),
        resolution: String::new(),
        reopen_count: 1,
        last_resolved_at: None,
        ..first_resolution.clone()
    };
    let second_resolution = resolved(&reopened, 700, "true_positive");

    harness.record_snapshots(&[new, first_resolution]).await;
    let after_first = harness.incidents(ungrouped()).await;
    // Resolved once at 100: TTR 100 − 0 = 100.
    assert_stats(&after_first.ttr, stats(1, 100.0, 100.0, 100.0, 100.0, 100.0), "ttr after first resolution");

    harness.record_snapshots(&[reopened]).await;
    let while_reopened = harness.incidents(ungrouped()).await;
    assert_eq!(while_reopened.tickets, 1);
    assert_stats(&while_reopened.ttr, empty(), "ttr while reopened");

    harness.record_snapshots(&[second_resolution]).await;
    let after_second = harness.incidents(ungrouped()).await;
    // The latest resolution counts: TTR 700 − 0 = 700, not the first 100.
    assert_stats(&after_second.ttr, stats(1, 700.0, 700.0, 700.0, 700.0, 700.0), "ttr after second resolution");

    // The TTR window applies to the latest resolution: [0, 200) contains only the first.
    let early_window = harness.incidents(window(Some(0), Some(200))).await;
    assert_stats(&early_window.ttr, empty(), "ttr in a window around the first resolution");
    let late_window = harness.incidents(window(Some(600), Some(800))).await;
    assert_eq!(late_window.ttr.unwrap().count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttr_ignores_open_ticket_resolution_time() {
    let mut harness = Harness::start().await;
    // A reopened ticket that still carries last_resolved_at: its status decides.
    let reopened = TicketSnapshot {
        version: 3,
        status: "investigating".into(),
        detected_at: at(0),
        resolved_at: at(100),
        last_resolved_at: at(100),
        reopen_count: 1,
        ..ticket()
    };
    harness.record_snapshots(&[reopened]).await;

    let group = harness.incidents(ungrouped()).await;

    assert_stats(&group.ttr, empty(), "ttr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn false_positives_form_their_own_population() {
    let mut harness = Harness::start().await;
    let detected = || TicketSnapshot {
        detected_at: at(0),
        ..ticket()
    };
    let snapshots = [
        resolved(&detected(), 100, "true_positive"),
        resolved(&detected(), 300, "true_positive"),
        detected(),
        resolved(&detected(), 10, "false_positive"),
        resolved(&detected(), 50, "false_positive"),
        resolved(&detected(), 20, "benign"),
        resolved(&detected(), 30, "duplicate"),
    ];
    harness.record_snapshots(&snapshots).await;

    let groups = harness.groups(ungrouped()).await;

    let expected_order = [
        ("all".to_owned(), Population::Incident),
        ("all".to_owned(), Population::FalsePositive),
        ("all".to_owned(), Population::Benign),
        ("all".to_owned(), Population::Duplicate),
    ];
    assert_eq!(keys(&groups), expected_order);

    // Incidents: two true positives and the unresolved ticket. TTR 100, 300: mean
    // 200, median rank 1 → 100, p90 and p95 rank 2 → 300. The false positives at 10
    // and 50 would pull the mean down to 115 if they were mixed in.
    let incident = find(&groups, "all", Population::Incident);
    assert_eq!(incident.tickets, 3);
    assert_stats(&incident.ttr, stats(2, 200.0, 100.0, 300.0, 300.0, 300.0), "incident ttr");

    // False positives: TTR 10, 50: mean 30, median rank 1 → 10, p90 and p95 rank 2 → 50.
    let false_positive = find(&groups, "all", Population::FalsePositive);
    assert_eq!(false_positive.tickets, 2);
    assert_stats(&false_positive.ttr, stats(2, 30.0, 10.0, 50.0, 50.0, 50.0), "false positive ttr");

    let benign = find(&groups, "all", Population::Benign);
    assert_eq!(benign.tickets, 1);
    assert_stats(&benign.ttr, stats(1, 20.0, 20.0, 20.0, 20.0, 20.0), "benign ttr");

    let duplicate = find(&groups, "all", Population::Duplicate);
    assert_eq!(duplicate.tickets, 1);
    assert_stats(&duplicate.ttr, stats(1, 30.0, 30.0, 30.0, 30.0, 30.0), "duplicate ttr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_versions_keep_newest() {
    let mut harness = Harness::start().await;
    let v1 = ticket();
    let v2 = TicketSnapshot {
        version: 2,
        status: "acknowledged".into(),
        acknowledged_at: at(60),
        ..v1.clone()
    };
    let v3 = TicketSnapshot {
        version: 3,
        status: "contained".into(),
        severity: "critical".into(),
        contained_at: at(120),
        ..v2.clone()
    };

    let first = harness.record_snapshots(&[v1]).await;
    let newest = harness.record_snapshots(std::slice::from_ref(&v3)).await;
    let late = harness.record_snapshots(&[v2]).await;

    assert_eq!((first.applied, first.ignored), (1, 0));
    assert_eq!((newest.applied, newest.ignored), (1, 0));
    assert_eq!((late.applied, late.ignored), (0, 1), "version 2 after version 3 changes nothing");
    let stored = harness.stored(&v3).await;
    assert_eq!(stored.version, 3);
    assert_eq!(stored.status, "contained");
    assert_eq!(stored.severity, "critical");
    let groups = harness.groups(grouped_by(GroupBy::Severity)).await;
    assert_eq!(keys(&groups), [("critical".to_owned(), Population::Incident)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_event_changes_nothing() {
    let mut harness = Harness::start().await;
    let v1 = ticket();
    let delivered = event(&v1);

    let first = harness.record(vec![delivered.clone()]).await;
    let again = harness.record(vec![delivered.clone()]).await;
    // The same id with different content is still the same event: the id decides.
    let altered = Event {
        resource_version: 2,
        ticket: Some(TicketSnapshot {
            version: 2,
            status: "acknowledged".into(),
            ..v1.clone()
        }),
        ..delivered
    };
    let altered_again = harness.record(vec![altered]).await;

    assert_eq!((first.applied, first.ignored), (1, 0));
    assert_eq!((again.applied, again.ignored), (0, 1));
    assert_eq!((altered_again.applied, altered_again.ignored), (0, 1));
    let stored = harness.stored(&v1).await;
    assert_eq!(stored.version, 1);
    assert_eq!(stored.status, "new");
    assert_eq!(harness.row_count("applied_events").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_applies_newest_version_per_ticket() {
    let mut harness = Harness::start().await;
    let v1 = ticket();
    let v2 = TicketSnapshot {
        version: 2,
        status: "acknowledged".into(),
        acknowledged_at: at(60),
        ..v1.clone()
    };
    let repeated = event(&v1);

    let response = harness.record(vec![event(&v2), repeated.clone(), repeated]).await;

    // Version 2 is applied; version 1 is older and its repeated id is seen once.
    assert_eq!(response.applied, 1);
    assert_eq!(response.ignored, 2);
    assert_eq!(harness.stored(&v2).await.version, 2);
    assert_eq!(harness.row_count("applied_events").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_converge_on_newest_version() {
    let harness = Harness::start().await;
    let base = ticket();
    let versions: Vec<TicketSnapshot> = (1..=40)
        .map(|version| TicketSnapshot {
            version,
            reopen_count: (version / 10) as i32,
            ..base.clone()
        })
        .collect();

    // Four batches of interleaved versions, sent at the same time on separate calls.
    let mut tasks = Vec::new();
    for lane in 0..4 {
        let batch: Vec<Event> = versions.iter().skip(lane).step_by(4).rev().map(event).collect();
        let mut client = harness.client.clone();
        tasks.push(tokio::spawn(async move {
            client.record_events(RecordEventsRequest { events: batch }).await.map(|response| response.into_inner())
        }));
    }
    let mut applied = 0;
    for task in tasks {
        let response = task.await.expect("task joins").expect("RecordEvents succeeds");
        applied += response.applied;
    }

    assert!((1..=4).contains(&applied), "each batch applies at most its newest version, got {applied}");
    assert_eq!(harness.stored(&base).await.version, 40);
    assert_eq!(harness.row_count("applied_events").await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_severity_orders_keys_and_populations() {
    let mut harness = Harness::start().await;
    let with_ttd = |severity: &str, ttd: i64| TicketSnapshot {
        severity: severity.into(),
        occurred_at: at(0),
        detected_at: at(ttd),
        ..ticket()
    };
    let snapshots = [
        with_ttd("high", 20),
        with_ttd("critical", 10),
        with_ttd("", 5),
        with_ttd("high", 40),
        resolved(&with_ttd("high", 1000), 2000, "false_positive"),
    ];
    harness.record_snapshots(&snapshots).await;

    let groups = harness.groups(grouped_by(GroupBy::Severity)).await;

    let expected_order = [
        ("critical".to_owned(), Population::Incident),
        ("high".to_owned(), Population::Incident),
        ("high".to_owned(), Population::FalsePositive),
        ("unrated".to_owned(), Population::Incident),
    ];
    assert_eq!(keys(&groups), expected_order);
    assert_stats(&find(&groups, "critical", Population::Incident).ttd, stats(1, 10.0, 10.0, 10.0, 10.0, 10.0), "critical ttd");
    // High incidents: TTD 20, 40: mean 30, median rank 1 → 20, p90 and p95 rank 2 → 40.
    let high = find(&groups, "high", Population::Incident);
    assert_eq!(high.tickets, 2);
    assert_stats(&high.ttd, stats(2, 30.0, 20.0, 40.0, 40.0, 40.0), "high ttd");
    let high_false_positive = find(&groups, "high", Population::FalsePositive);
    assert_stats(&high_false_positive.ttd, stats(1, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0), "high false positive ttd");
    assert_stats(&find(&groups, "unrated", Population::Incident).ttd, stats(1, 5.0, 5.0, 5.0, 5.0, 5.0), "unrated ttd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_other_fields_uses_none_for_unset() {
    let mut harness = Harness::start().await;
    let open = ticket();
    let blank = resolved(
        &TicketSnapshot {
            team: String::new(),
            detection_source: String::new(),
            category: String::new(),
            ..ticket()
        },
        100,
        "true_positive",
    );
    let benign = resolved(
        &TicketSnapshot {
            team: "ir".into(),
            detection_source: "siem".into(),
            category: "phishing".into(),
            ..ticket()
        },
        100,
        "benign",
    );
    harness.record_snapshots(&[open, blank, benign]).await;

    let cases = [
        (GroupBy::Team, [("ir", Population::Benign), ("none", Population::Incident), ("soc", Population::Incident)]),
        (GroupBy::Source, [("edr", Population::Incident), ("none", Population::Incident), ("siem", Population::Benign)]),
        (
            GroupBy::Category,
            [("malware", Population::Incident), ("none", Population::Incident), ("phishing", Population::Benign)],
        ),
        (
            GroupBy::Resolution,
            [("benign", Population::Benign), ("none", Population::Incident), ("true_positive", Population::Incident)],
        ),
    ];
    for (group_by, expected) in cases {
        let groups = harness.groups(grouped_by(group_by)).await;
        let expected: Vec<(String, Population)> = expected.iter().map(|(key, population)| (key.to_string(), *population)).collect();
        assert_eq!(keys(&groups), expected, "grouped by {group_by:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_matching_tickets() {
    let mut harness = Harness::start().await;
    let with_ttd = |ttd: i64| TicketSnapshot {
        occurred_at: at(0),
        detected_at: at(ttd),
        ..ticket()
    };
    // A: high, malware, soc, edr, live, TTD 10.
    let a = with_ttd(10);
    // B: critical, phishing, ir, siem, imported, TTD 20.
    let b = TicketSnapshot {
        severity: "critical".into(),
        category: "phishing".into(),
        team: "ir".into(),
        detection_source: "siem".into(),
        imported: true,
        ..with_ttd(20)
    };
    // C: no severity, malware, soc, siem, live, TTD 30.
    let c = TicketSnapshot {
        severity: String::new(),
        detection_source: "siem".into(),
        ..with_ttd(30)
    };
    harness.record_snapshots(&[a, b, c]).await;

    let strings = |values: &[&str]| values.iter().map(|value| value.to_string()).collect::<Vec<_>>();
    // (case, request, expected TTD count, expected TTD mean)
    let cases = [
        ("severity high", GetResponseMetricsRequest { severities: strings(&["high"]), ..ungrouped() }, 1, 10.0),
        ("severity unrated", GetResponseMetricsRequest { severities: strings(&["unrated"]), ..ungrouped() }, 1, 30.0),
        // A and B: (10 + 20) / 2 = 15.
        ("two severities", GetResponseMetricsRequest { severities: strings(&["high", "critical"]), ..ungrouped() }, 2, 15.0),
        // A and C: (10 + 30) / 2 = 20.
        ("category malware", GetResponseMetricsRequest { categories: strings(&["malware"]), ..ungrouped() }, 2, 20.0),
        ("team soc", GetResponseMetricsRequest { teams: strings(&["soc"]), ..ungrouped() }, 2, 20.0),
        // B and C: (20 + 30) / 2 = 25.
        ("source siem", GetResponseMetricsRequest { sources: strings(&["siem"]), ..ungrouped() }, 2, 25.0),
        ("imported", GetResponseMetricsRequest { imported: Some(true), ..ungrouped() }, 1, 20.0),
        ("live", GetResponseMetricsRequest { imported: Some(false), ..ungrouped() }, 2, 20.0),
    ];
    for (case, request, count, mean) in cases {
        let group = harness.incidents(request).await;
        let ttd = group.ttd.unwrap();
        assert_eq!(ttd.count, count, "{case}: count");
        assert_eq!(ttd.mean, mean, "{case}: mean");
        assert_eq!(group.tickets, count, "{case}: tickets");
    }

    // No ticket is both high and from siem.
    let none = harness
        .groups(GetResponseMetricsRequest {
            severities: strings(&["high"]),
            sources: strings(&["siem"]),
            ..ungrouped()
        })
        .await;
    assert!(none.is_empty(), "expected no groups, got {none:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_applies_to_each_end_event() {
    let mut harness = Harness::start().await;
    // A: TTD ends at 100 (100 s), TTA ends at 5000 (5000 − 100 = 4900 s).
    let a = TicketSnapshot {
        version: 2,
        status: "acknowledged".into(),
        occurred_at: at(0),
        detected_at: at(100),
        acknowledged_at: at(5000),
        ..ticket()
    };
    // B: TTD ends at 300 (300 s), TTA ends at 400 (400 − 300 = 100 s).
    let b = TicketSnapshot {
        version: 2,
        status: "acknowledged".into(),
        occurred_at: at(0),
        detected_at: at(300),
        acknowledged_at: at(400),
        ..ticket()
    };
    harness.record_snapshots(&[a, b]).await;

    // [50, 200): A's detection only; neither acknowledgement. Tickets are not windowed.
    let narrow = harness.incidents(window(Some(50), Some(200))).await;
    assert_eq!(narrow.tickets, 2);
    assert_stats(&narrow.ttd, stats(1, 100.0, 100.0, 100.0, 100.0, 100.0), "ttd in [50, 200)");
    assert_stats(&narrow.tta, empty(), "tta in [50, 200)");

    // [300, 5000): start is inclusive (B's detection at 300), end exclusive (A's
    // acknowledgement at 5000 is out, B's at 400 is in).
    let bounds = harness.incidents(window(Some(300), Some(5000))).await;
    assert_stats(&bounds.ttd, stats(1, 300.0, 300.0, 300.0, 300.0, 300.0), "ttd in [300, 5000)");
    assert_stats(&bounds.tta, stats(1, 100.0, 100.0, 100.0, 100.0, 100.0), "tta in [300, 5000)");

    // [400, open): both acknowledgements. Sorted 100, 4900: mean 2500, median rank 1 →
    // 100, p90 and p95 rank 2 → 4900. No detection is that late.
    let open_end = harness.incidents(window(Some(400), None)).await;
    assert_stats(&open_end.tta, stats(2, 2500.0, 100.0, 4900.0, 4900.0, 4900.0), "tta from 400");
    assert_stats(&open_end.ttd, empty(), "ttd from 400");

    // (open, 100): the detection at exactly 100 is excluded.
    let open_start = harness.incidents(window(None, Some(100))).await;
    assert_stats(&open_start.ttd, empty(), "ttd before 100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_keep_microseconds() {
    let mut harness = Harness::start().await;
    // Detected 1.500001234 s after occurrence; stored to the microsecond, so 1.500001 s.
    let snapshot = TicketSnapshot {
        occurred_at: at(0),
        detected_at: Some(Timestamp {
            seconds: EPOCH + 1,
            nanos: 500_001_234,
        }),
        ..ticket()
    };
    harness.record_snapshots(&[snapshot]).await;

    let group = harness.incidents(ungrouped()).await;

    assert_stats(&group.ttd, stats(1, 1.500001, 1.500001, 1.500001, 1.500001, 1.500001), "ttd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_durations_keep_microseconds() {
    let mut harness = Harness::start().await;
    // 400 days and one microsecond; the days and the microsecond must both survive.
    let snapshot = TicketSnapshot {
        occurred_at: at(0),
        detected_at: Some(Timestamp {
            seconds: EPOCH + 400 * 86_400,
            nanos: 1_000,
        }),
        ..ticket()
    };
    harness.record_snapshots(&[snapshot]).await;

    let group = harness.incidents(ungrouped()).await;

    let seconds = 34_560_000.000001;
    assert_stats(&group.ttd, stats(1, seconds, seconds, seconds, seconds, seconds), "ttd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_ticket_counts_follow_changes() {
    let mut harness = Harness::start().await;
    let detected = || TicketSnapshot {
        occurred_at: at(0),
        detected_at: at(100),
        ..ticket()
    };
    let high = detected();
    let low = TicketSnapshot {
        severity: "low".into(),
        ..detected()
    };
    let other = TicketSnapshot {
        severity: "low".into(),
        ..detected()
    };
    harness.record_snapshots(&[high.clone(), low.clone(), other]).await;
    // A newer version moves one ticket to another severity and another to false positives.
    let raised = TicketSnapshot {
        version: low.version + 1,
        severity: "critical".into(),
        ..low
    };
    harness.record_snapshots(&[raised, resolved(&high, 200, "false_positive")]).await;

    // The window excludes every end instant, so only the ticket counts are left.
    let groups = harness.groups(GetResponseMetricsRequest {
        start: at(10_000),
        group_by: GroupBy::Severity as i32,
        ..Default::default()
    }).await;

    let expected = [
        ("critical".to_owned(), Population::Incident),
        ("high".to_owned(), Population::FalsePositive),
        ("low".to_owned(), Population::Incident),
    ];
    assert_eq!(keys(&groups), expected);
    for (key, population) in expected {
        let group = find(&groups, &key, population);
        assert_eq!(group.tickets, 1, "{key}/{population:?} tickets");
        assert_stats(&group.ttd, empty(), &format!("{key}/{population:?} ttd"));
    }
    assert_eq!(harness.row_count("incidents").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_duration_is_included() {
    let mut harness = Harness::start().await;
    // Acknowledged 60 s before its detection: the ticket service rejects this order, so
    // only a faulty producer sends it, and the metric shows it instead of hiding it.
    let snapshot = TicketSnapshot {
        version: 2,
        status: "acknowledged".into(),
        detected_at: at(100),
        acknowledged_at: at(40),
        ..ticket()
    };
    harness.record_snapshots(&[snapshot]).await;

    let group = harness.incidents(ungrouped()).await;

    assert_stats(&group.tta, stats(1, -60.0, -60.0, -60.0, -60.0, -60.0), "tta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_snapshot_are_ignored() {
    let mut harness = Harness::start().await;
    let denied = Event {
        event_id: Uuid::now_v7().to_string(),
        action: "ticket.access_denied".into(),
        resource_version: 0,
        ..Default::default()
    };
    let other = Event {
        event_id: Uuid::now_v7().to_string(),
        action: "platform.alert_forwarded".into(),
        ..Default::default()
    };

    let response = harness.record(vec![denied, other]).await;

    assert_eq!((response.applied, response.ignored), (0, 2));
    assert_eq!(harness.row_count("incidents").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_are_rejected_and_nothing_written() {
    let mut harness = Harness::start().await;
    let valid = event(&ticket());
    let bad_id = Event {
        event_id: "not-a-uuid".into(),
        ..event(&ticket())
    };
    let bad_severity = event(&TicketSnapshot {
        severity: "urgent".into(),
        ..ticket()
    });

    let status = harness
        .client
        .record_events(RecordEventsRequest {
            events: vec![valid, bad_id, bad_severity],
        })
        .await
        .expect_err("a batch with invalid events is rejected");

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(bad_request_fields(&status), ["events[1].event_id", "events[2].ticket.severity"]);
    assert!(status.message().contains("events[1].event_id"), "message: {}", status.message());
    assert_eq!(harness.row_count("incidents").await, 0);
    assert_eq!(harness.row_count("applied_events").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_change_without_snapshot_is_rejected() {
    let mut harness = Harness::start().await;
    let missing = Event {
        ticket: None,
        ..event(&TicketSnapshot {
            version: 2,
            ..ticket()
        })
    };

    let status = harness
        .client
        .record_events(RecordEventsRequest { events: vec![missing] })
        .await
        .expect_err("a ticket change without its snapshot is rejected");

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(bad_request_fields(&status), ["events[0].ticket"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_limits_are_enforced() {
    let mut harness = Harness::start().await;

    let empty_batch = harness
        .client
        .record_events(RecordEventsRequest { events: Vec::new() })
        .await
        .expect_err("an empty batch is rejected");
    let oversized = harness
        .client
        .record_events(RecordEventsRequest {
            events: (0..1001).map(|_| event(&ticket())).collect(),
        })
        .await
        .expect_err("a batch of 1001 events is rejected");

    assert_eq!(empty_batch.code(), Code::InvalidArgument);
    assert_eq!(bad_request_fields(&empty_batch), ["events"]);
    assert_eq!(oversized.code(), Code::InvalidArgument);
    assert_eq!(bad_request_fields(&oversized), ["events"]);
    assert_eq!(harness.row_count("incidents").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_query_is_rejected() {
    let mut harness = Harness::start().await;
    let cases = [
        ("unknown severity", GetResponseMetricsRequest { severities: vec!["urgent".into()], ..ungrouped() }, "severities[0]"),
        ("unknown category", GetResponseMetricsRequest { categories: vec!["malwares".into()], ..ungrouped() }, "categories[0]"),
        ("empty team", GetResponseMetricsRequest { teams: vec![String::new()], ..ungrouped() }, "teams[0]"),
        ("empty window", window(Some(100), Some(100)), "end"),
        ("reversed window", window(Some(200), Some(100)), "end"),
        ("unknown group-by", GetResponseMetricsRequest { group_by: 42, ..ungrouped() }, "group_by"),
    ];
    for (case, request, field) in cases {
        let status = harness.client.get_response_metrics(request).await.expect_err(case);
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: code");
        assert_eq!(bad_request_fields(&status), [field], "{case}: fields");
    }

    let status = harness
        .client
        .get_response_metrics(GetResponseMetricsRequest {
            severities: vec!["urgent".into()],
            ..ungrouped()
        })
        .await
        .expect_err("unknown severity");
    assert!(
        status.message().contains("critical, high, medium, low, informational"),
        "the message lists the allowed severities: {}",
        status.message()
    );
}
