//! Consistency of GetResponseMetrics with the projection it reads. An oracle written in SQL
//! from the definitions in docs/metrics.md computes every figure straight from the
//! `incidents` table, and each response of the real service must match it. The other tests
//! check that a response includes every write committed before the request: writes through
//! another replica, a transaction that commits after a later one, and rows that an operator
//! inserts, updates or deletes with SQL.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use docket_proto::events::v1::TicketSnapshot;
use docket_tests::snapshot_event as event;
use docket_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use docket_proto::metrics::v1::{
    DurationStats, GetResponseMetricsRequest, GroupBy, MetricsGroup, Population, RecordEventsRequest, RecordEventsResponse,
};
use docket_tests::AuthChannel;
use docket_tests::{TestDb, metrics_client, start_metrics, unused_addr};
use prost_types::Timestamp;
use uuid::Uuid;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// 2026-01-01T00:00:00Z in microseconds since the Unix epoch. Generated tickets are created
/// in the two years after it.
const BASE_MICROS: i64 = 1_767_225_600 * MICROS_PER_SECOND;

/// Longest generated duration: 400 days.
const MAX_DURATION_MICROS: i64 = 400 * MICROS_PER_DAY;

/// Tickets that `figures_match_sql_oracle` records.
const ORACLE_TICKETS: usize = 1500;

/// Events per RecordEvents call, below the limit of 1000.
const BATCH_SIZE: usize = 500;

/// Bound on every call, so that a service that waits for a transaction the test keeps open
/// fails the test instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The service may sum durations in double precision and in any order, while the oracle sums
/// them in exact numeric, so the means may differ in the last bits. The rounding error of a
/// sum grows with the sum of the absolute values, so the tolerance is relative to the mean
/// absolute duration.
const MEAN_RELATIVE_TOLERANCE: f64 = 1e-9;

const SEVERITIES: &[&str] = &["", "critical", "high", "medium", "low", "informational"];
const CATEGORIES: &[&str] = &["", "malware", "phishing", "unauthorized_access", "data_exfiltration", "denial_of_service", "other"];
/// Team names are free text. `SOC-EU` sorts before the lowercase names in byte order but
/// after `cloud` and `ir` in case-insensitive collations such as en_US, so the group order
/// shows which order the service uses.
const TEAMS: &[&str] = &["", "soc", "ir", "cloud", "SOC-EU"];
const SOURCES: &[&str] = &["", "edr", "siem", "user_report", "threat_intel"];
const RESOLUTIONS: &[&str] = &["", "true_positive", "false_positive", "benign", "duplicate"];
const OPEN_STATUSES: &[&str] = &["new", "acknowledged", "contained"];
/// Statuses whose tickets belong to the TTR population when `last_resolved_at` is set.
const DONE_STATUSES: &[&str] = &["resolved", "closed"];

/// SplitMix64, a small deterministic generator, so that every run records the same tickets.
struct Rng {
    state: u64,
}

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a value in 0..bound.
    fn below(&mut self, bound: i64) -> i64 {
        let bound = u64::try_from(bound).expect("a positive bound");
        i64::try_from(self.next_u64() % bound).expect("a value below an i64 bound fits in i64")
    }

    fn percent(&mut self, percent: i64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, values: &[&'a str]) -> &'a str {
        let index = usize::try_from(self.below(values.len() as i64)).expect("an index fits in usize");
        values[index]
    }

    /// Returns a uniform value in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// Returns a duration in microseconds. Most are log-uniform from 1 s to 400 days with a
    /// microsecond fraction. Some are whole minutes, hours or days, so that samples contain ties,
    /// some are 0 or exactly 400 days, and some are negative, as from a producer that sent
    /// instants out of order.
    fn duration(&mut self) -> i64 {
        match self.below(100) {
            0..=5 => -(1 + self.below(3 * MICROS_PER_DAY)),
            6..=15 => [60, 300, 900, 3600, 86_400][usize::try_from(self.below(5)).expect("an index")] * MICROS_PER_SECOND,
            16 => 0,
            17 => MAX_DURATION_MICROS,
            _ => {
                let max_seconds_log10 = (MAX_DURATION_MICROS as f64 / MICROS_PER_SECOND as f64).log10();
                let seconds = 10f64.powf(self.unit() * max_seconds_log10);
                (seconds * MICROS_PER_SECOND as f64) as i64
            }
        }
    }

    /// Converts an instant in microseconds to a protobuf timestamp. One in ten also gets
    /// nanoseconds below the microsecond, which the service truncates.
    fn timestamp(&mut self, micros: i64) -> Timestamp {
        let extra_nanos = if self.percent(10) { self.below(1000) } else { 0 };
        let nanos = micros.rem_euclid(MICROS_PER_SECOND) * 1000 + extra_nanos;
        Timestamp {
            seconds: micros.div_euclid(MICROS_PER_SECOND),
            nanos: i32::try_from(nanos).expect("nanoseconds below one second fit in i32"),
        }
    }
}

fn micros_of(timestamp: &Option<Timestamp>) -> Option<i64> {
    timestamp
        .as_ref()
        .map(|timestamp| timestamp.seconds * MICROS_PER_SECOND + i64::from(timestamp.nanos) / 1000)
}

/// Returns a ticket at version 1 with random fields. Populations overlap on purpose: some
/// tickets carry `acknowledged_at` while new, `last_resolved_at` while open again, or a
/// resolved status without `last_resolved_at`, and some are detected before they were
/// created.
fn random_ticket(rng: &mut Rng, index: usize) -> TicketSnapshot {
    let ticket_id = rng.uuid();
    let severity = rng.pick(SEVERITIES);
    let category = rng.pick(CATEGORIES);
    let team = rng.pick(TEAMS);
    let detection_source = rng.pick(SOURCES);
    let imported = rng.percent(30);

    let created = BASE_MICROS + rng.below(730 * MICROS_PER_DAY);
    let detected = if rng.percent(80) {
        if rng.percent(20) {
            Some(created - rng.below(10 * MICROS_PER_DAY))
        } else {
            Some(created + rng.duration())
        }
    } else {
        None
    };
    let anchor = detected.unwrap_or(created);
    let occurred = rng.percent(75).then(|| anchor - rng.duration());
    let acknowledged = rng.percent(70).then(|| anchor + rng.duration());
    let contained = rng.percent(50).then(|| anchor + rng.duration());
    let last_resolved = rng.percent(55).then(|| anchor + rng.duration());

    let status = match last_resolved {
        Some(_) if rng.percent(85) => rng.pick(DONE_STATUSES),
        Some(_) => rng.pick(OPEN_STATUSES),
        None if rng.percent(10) => rng.pick(DONE_STATUSES),
        None => rng.pick(OPEN_STATUSES),
    };
    let resolution = if DONE_STATUSES.contains(&status) || rng.percent(10) {
        rng.pick(RESOLUTIONS)
    } else {
        ""
    };
    let reopen_count = if rng.percent(10) { 1 + rng.below(3) } else { 0 };
    let resolved = last_resolved.map(|at| if reopen_count > 0 { at - rng.below(30 * MICROS_PER_DAY) } else { at });
    let closed = (status == "closed").then(|| last_resolved.unwrap_or(anchor) + rng.below(7 * MICROS_PER_DAY));

    let mut timestamp = |micros: Option<i64>| micros.map(|micros| rng.timestamp(micros));
    TicketSnapshot {
        ticket_id: ticket_id.to_string(),
        key: format!("INC-{index}"),
        version: 1,
        severity: severity.into(),
        category: category.into(),
        status: status.into(),
        resolution: resolution.into(),
        team: team.into(),
        detection_source: detection_source.into(),
        imported,
        reopen_count: i32::try_from(reopen_count).expect("a small reopen count"),
        created_at: timestamp(Some(created)),
        occurred_at: timestamp(occurred),
        detected_at: timestamp(detected),
        acknowledged_at: timestamp(acknowledged),
        contained_at: timestamp(contained),
        resolved_at: timestamp(resolved),
        last_resolved_at: timestamp(last_resolved),
        closed_at: timestamp(closed),
    }
}

/// Returns the next version of `previous` with a new severity and resolution, a moved
/// acknowledgement, and a resolution that is either added or, by a reopen, removed.
fn revise(rng: &mut Rng, previous: &TicketSnapshot) -> TicketSnapshot {
    let anchor = micros_of(&previous.detected_at)
        .or(micros_of(&previous.created_at))
        .expect("every ticket has created_at");
    let acknowledged = anchor + rng.duration();
    let mut next = TicketSnapshot {
        version: previous.version + 1,
        severity: rng.pick(SEVERITIES).into(),
        resolution: rng.pick(RESOLUTIONS).into(),
        acknowledged_at: Some(rng.timestamp(acknowledged)),
        ..previous.clone()
    };
    if DONE_STATUSES.contains(&previous.status.as_str()) {
        next.status = "acknowledged".into();
        next.reopen_count += 1;
        next.last_resolved_at = None;
        next.closed_at = None;
    } else {
        let resolved = anchor + rng.duration();
        let resolved_at = rng.timestamp(resolved);
        next.status = rng.pick(DONE_STATUSES).into();
        next.resolved_at = previous.resolved_at.or(Some(resolved_at));
        next.last_resolved_at = Some(resolved_at);
    }
    next
}

/// Records `snapshots` in batches and returns the total of applied and of ignored events.
async fn record(client: &mut MetricsServiceClient<AuthChannel>, snapshots: &[TicketSnapshot]) -> RecordEventsResponse {
    let mut total = RecordEventsResponse::default();
    for batch in snapshots.chunks(BATCH_SIZE) {
        let request = RecordEventsRequest {
            events: batch.iter().map(event).collect(),
        };
        let response = tokio::time::timeout(CALL_TIMEOUT, client.record_events(request))
            .await
            .expect("RecordEvents returns within the call timeout")
            .expect("RecordEvents succeeds")
            .into_inner();
        total.applied += response.applied;
        total.ignored += response.ignored;
    }
    total
}

async fn query(client: &mut MetricsServiceClient<AuthChannel>, request: &GetResponseMetricsRequest) -> Vec<MetricsGroup> {
    tokio::time::timeout(CALL_TIMEOUT, client.get_response_metrics(request.clone()))
        .await
        .unwrap_or_else(|_| panic!("GetResponseMetrics timed out after {CALL_TIMEOUT:?}: {request:?}"))
        .unwrap_or_else(|status| panic!("GetResponseMetrics failed: {status}; request {request:?}"))
        .into_inner()
        .groups
}

fn grouped_by(group_by: GroupBy) -> GetResponseMetricsRequest {
    GetResponseMetricsRequest {
        group_by: group_by as i32,
        ..Default::default()
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

fn find<'a>(groups: &'a [MetricsGroup], key: &str, population: Population) -> Option<&'a MetricsGroup> {
    groups.iter().find(|group| group.key == key && group.population == population as i32)
}

fn tickets_in(groups: &[MetricsGroup], key: &str, population: Population) -> i64 {
    find(groups, key, population).map_or(0, |group| group.tickets)
}

fn total_tickets(groups: &[MetricsGroup]) -> i64 {
    groups.iter().map(|group| group.tickets).sum()
}

/// The four metrics in the order of `ExpectedGroup::metrics`, with the name the oracle
/// query gives each.
const METRIC_NAMES: [&str; 4] = ["ttd", "tta", "ttc", "ttr"];

/// Figures of one metric in one group, as the oracle computes them.
#[derive(Clone, Copy, Debug, Default)]
struct ExpectedStats {
    count: i64,
    mean: f64,
    /// Mean of the absolute durations, the scale of the tolerance on `mean`.
    mean_abs: f64,
    median: f64,
    p90: f64,
    p95: f64,
    max: f64,
}

/// One group and population of the oracle's result.
#[derive(Clone, Debug)]
struct ExpectedGroup {
    key: String,
    population: i32,
    tickets: i64,
    /// TTD, TTA, TTC and TTR.
    metrics: [ExpectedStats; 4],
}

#[derive(QueryableByName)]
struct OracleTicketRow {
    #[diesel(sql_type = Text)]
    group_key: String,
    #[diesel(sql_type = Integer)]
    population: i32,
    #[diesel(sql_type = BigInt)]
    tickets: i64,
}

#[derive(QueryableByName)]
struct OracleSampleRow {
    #[diesel(sql_type = Text)]
    group_key: String,
    #[diesel(sql_type = Integer)]
    population: i32,
    #[diesel(sql_type = Text)]
    metric: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Double)]
    mean: f64,
    #[diesel(sql_type = Double)]
    mean_abs: f64,
    #[diesel(sql_type = Double)]
    median: f64,
    #[diesel(sql_type = Double)]
    p90: f64,
    #[diesel(sql_type = Double)]
    p95: f64,
    #[diesel(sql_type = Double)]
    max: f64,
}

/// Returns the SQL for the group key of `column`: its value, or `unset` for ''.
fn key_of(column: &str, unset: &str) -> String {
    format!("(CASE {column} WHEN '' THEN '{unset}' ELSE {column} END)")
}

fn group_key_sql(group_by: i32) -> String {
    match GroupBy::try_from(group_by).expect("a known GroupBy") {
        GroupBy::Unspecified => "'all'::text".to_owned(),
        GroupBy::Severity => key_of("severity", "unrated"),
        GroupBy::Category => key_of("category", "none"),
        GroupBy::Team => key_of("team", "none"),
        GroupBy::Source => key_of("detection_source", "none"),
        GroupBy::Resolution => key_of("resolution", "none"),
    }
}

/// Returns the SQL of the tickets that match the request's filters, with their group key
/// and population number, over binds $1 to $5. An empty filter list is bound as NULL.
fn matching_tickets_sql(request: &GetResponseMetricsRequest) -> String {
    format!(
        "SELECT {key} AS group_key,
                CASE resolution
                    WHEN 'false_positive' THEN {false_positive}
                    WHEN 'benign' THEN {benign}
                    WHEN 'duplicate' THEN {duplicate}
                    ELSE {incident}
                END AS population,
                status, created_at, occurred_at, detected_at, acknowledged_at, contained_at, last_resolved_at
         FROM incidents
         WHERE ($1::text[] IS NULL OR {severity} = ANY ($1::text[]))
           AND ($2::text[] IS NULL OR {category} = ANY ($2::text[]))
           AND ($3::text[] IS NULL OR {team} = ANY ($3::text[]))
           AND ($4::text[] IS NULL OR {source} = ANY ($4::text[]))
           AND ($5::boolean IS NULL OR imported = $5::boolean)",
        key = group_key_sql(request.group_by),
        incident = Population::Incident as i32,
        false_positive = Population::FalsePositive as i32,
        benign = Population::Benign as i32,
        duplicate = Population::Duplicate as i32,
        severity = key_of("severity", "unrated"),
        category = key_of("category", "none"),
        team = key_of("team", "none"),
        source = key_of("detection_source", "none"),
    )
}

/// Returns the SQL of the ticket count per group and population, ordered by key in byte
/// order and then by population number.
fn oracle_tickets_sql(request: &GetResponseMetricsRequest) -> String {
    format!(
        "SELECT group_key, population, count(*) AS tickets
         FROM ({matching}) AS matching
         GROUP BY group_key, population
         ORDER BY group_key COLLATE \"C\", population",
        matching = matching_tickets_sql(request),
    )
}

/// Returns the SQL of the statistics per group, population and metric, over binds $1 to $7.
/// Each sample row is one duration in exact numeric seconds: extract(epoch) of the interval
/// between two timestamptz values is exact to the microsecond in PostgreSQL 14 and later.
/// The casts to double precision round each figure once, to the nearest double.
fn oracle_samples_sql(request: &GetResponseMetricsRequest) -> String {
    format!(
        "WITH matching AS ({matching}),
         samples AS (
             SELECT group_key, population, 'ttd' AS metric, detected_at AS end_at,
                    extract(epoch FROM detected_at - occurred_at) AS seconds
             FROM matching
             WHERE occurred_at IS NOT NULL AND detected_at IS NOT NULL
             UNION ALL
             SELECT group_key, population, 'tta', acknowledged_at,
                    extract(epoch FROM acknowledged_at - coalesce(detected_at, created_at))
             FROM matching
             WHERE acknowledged_at IS NOT NULL
             UNION ALL
             SELECT group_key, population, 'ttc', contained_at,
                    extract(epoch FROM contained_at - coalesce(detected_at, created_at))
             FROM matching
             WHERE contained_at IS NOT NULL
             UNION ALL
             SELECT group_key, population, 'ttr', last_resolved_at,
                    extract(epoch FROM last_resolved_at - coalesce(detected_at, created_at))
             FROM matching
             WHERE status IN ('resolved', 'closed') AND last_resolved_at IS NOT NULL
         )
         SELECT group_key, population, metric,
                count(*) AS count,
                avg(seconds)::float8 AS mean,
                avg(abs(seconds))::float8 AS mean_abs,
                (percentile_disc(0.5) WITHIN GROUP (ORDER BY seconds))::float8 AS median,
                (percentile_disc(0.9) WITHIN GROUP (ORDER BY seconds))::float8 AS p90,
                (percentile_disc(0.95) WITHIN GROUP (ORDER BY seconds))::float8 AS p95,
                max(seconds)::float8 AS max
         FROM samples
         WHERE ($6::timestamptz IS NULL OR end_at >= $6::timestamptz)
           AND ($7::timestamptz IS NULL OR end_at < $7::timestamptz)
         GROUP BY group_key, population, metric",
        matching = matching_tickets_sql(request),
    )
}

fn non_empty(values: &[String]) -> Option<Vec<String>> {
    (!values.is_empty()).then(|| values.to_vec())
}

fn instant_of(timestamp: &Option<Timestamp>) -> Option<DateTime<Utc>> {
    timestamp.as_ref().map(|timestamp| {
        assert_eq!(timestamp.nanos % 1000, 0, "window bounds in these tests are whole microseconds");
        let nanos = u32::try_from(timestamp.nanos).expect("non-negative nanoseconds");
        DateTime::from_timestamp(timestamp.seconds, nanos).expect("a window bound within chrono's range")
    })
}

fn bind_filters<'a>(sql: String, request: &GetResponseMetricsRequest) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    diesel::sql_query(sql)
        .into_boxed::<Pg>()
        .bind::<Nullable<Array<Text>>, _>(non_empty(&request.severities))
        .bind::<Nullable<Array<Text>>, _>(non_empty(&request.categories))
        .bind::<Nullable<Array<Text>>, _>(non_empty(&request.teams))
        .bind::<Nullable<Array<Text>>, _>(non_empty(&request.sources))
        .bind::<Nullable<Bool>, _>(request.imported)
}

/// Computes the expected response to `request` from the committed rows of `incidents`.
async fn oracle(conn: &mut AsyncPgConnection, request: &GetResponseMetricsRequest) -> Vec<ExpectedGroup> {
    let ticket_rows: Vec<OracleTicketRow> = bind_filters(oracle_tickets_sql(request), request)
        .load(conn)
        .await
        .unwrap_or_else(|error| panic!("oracle ticket counts failed: {error}"));
    let sample_rows: Vec<OracleSampleRow> = bind_filters(oracle_samples_sql(request), request)
        .bind::<Nullable<Timestamptz>, _>(instant_of(&request.start))
        .bind::<Nullable<Timestamptz>, _>(instant_of(&request.end))
        .load(conn)
        .await
        .unwrap_or_else(|error| panic!("oracle statistics failed: {error}"));

    let mut groups: Vec<ExpectedGroup> = ticket_rows
        .into_iter()
        .map(|row| ExpectedGroup {
            key: row.group_key,
            population: row.population,
            tickets: row.tickets,
            metrics: [ExpectedStats::default(); 4],
        })
        .collect();
    let index: BTreeMap<(String, i32), usize> = groups
        .iter()
        .enumerate()
        .map(|(position, group)| ((group.key.clone(), group.population), position))
        .collect();
    for row in sample_rows {
        let position = index
            .get(&(row.group_key.clone(), row.population))
            .unwrap_or_else(|| panic!("oracle sample of group {}/{} without tickets", row.group_key, row.population));
        let metric = METRIC_NAMES
            .iter()
            .position(|name| *name == row.metric)
            .expect("the oracle names only the four metrics");
        groups[*position].metrics[metric] = ExpectedStats {
            count: row.count,
            mean: row.mean,
            mean_abs: row.mean_abs,
            median: row.median,
            p90: row.p90,
            p95: row.p95,
            max: row.max,
        };
    }
    groups
}

fn population_name(population: i32) -> String {
    match Population::try_from(population) {
        Ok(population) => format!("{population:?}"),
        Err(_) => format!("unknown population {population}"),
    }
}

/// Lists every figure of `actual` that differs from `expected`, one line each.
fn differences(actual: &[MetricsGroup], expected: &[ExpectedGroup]) -> Vec<String> {
    let actual_keys: Vec<(String, String)> = actual
        .iter()
        .map(|group| (group.key.clone(), population_name(group.population)))
        .collect();
    let expected_keys: Vec<(String, String)> = expected
        .iter()
        .map(|group| (group.key.clone(), population_name(group.population)))
        .collect();
    if actual_keys != expected_keys {
        return vec![format!("groups and order: service {actual_keys:?}, oracle {expected_keys:?}")];
    }

    let mut lines = Vec::new();
    for (group, expected) in actual.iter().zip(expected) {
        let label = format!("{}/{}", group.key, population_name(group.population));
        if group.tickets != expected.tickets {
            lines.push(format!("{label} tickets: service {}, oracle {}", group.tickets, expected.tickets));
        }
        let stats = [&group.ttd, &group.tta, &group.ttc, &group.ttr];
        for ((name, actual), expected) in METRIC_NAMES.iter().zip(stats).zip(&expected.metrics) {
            let Some(actual) = actual else {
                lines.push(format!("{label} {name}: statistics missing"));
                continue;
            };
            lines.extend(stats_differences(&format!("{label} {name}"), actual, expected));
        }
    }
    lines
}

fn stats_differences(label: &str, actual: &DurationStats, expected: &ExpectedStats) -> Vec<String> {
    let mut lines = Vec::new();
    if actual.count != expected.count {
        lines.push(format!("{label} count: service {}, oracle {}", actual.count, expected.count));
    }
    // Percentiles and the maximum are durations that occurred, so they must match exactly.
    let exact = [
        ("median", actual.median, expected.median),
        ("p90", actual.p90, expected.p90),
        ("p95", actual.p95, expected.p95),
        ("max", actual.max, expected.max),
    ];
    for (figure, service, oracle) in exact {
        if service != oracle {
            lines.push(format!("{label} {figure}: service {service:?}, oracle {oracle:?}"));
        }
    }
    let tolerance = MEAN_RELATIVE_TOLERANCE * expected.mean_abs;
    if (actual.mean - expected.mean).abs() > tolerance {
        lines.push(format!(
            "{label} mean: service {:?}, oracle {:?}, difference {:e} above the tolerance {tolerance:e}",
            actual.mean,
            expected.mean,
            (actual.mean - expected.mean).abs()
        ));
    }
    lines
}

/// Sends `request` to the service and to the oracle and returns the service's groups with a
/// report of every difference, headed by the request, or `None` when they agree.
async fn compare(
    client: &mut MetricsServiceClient<AuthChannel>,
    conn: &mut AsyncPgConnection,
    name: &str,
    request: &GetResponseMetricsRequest,
) -> (Vec<MetricsGroup>, Option<String>) {
    let actual = query(client, request).await;
    let expected = oracle(conn, request).await;
    let lines = differences(&actual, &expected);
    let report = (!lines.is_empty()).then(|| format!("request {name:?} {request:?}:\n  {}", lines.join("\n  ")));
    (actual, report)
}

/// Asserts that the service's response to `request` matches the oracle, and returns it.
async fn assert_matches_oracle(
    client: &mut MetricsServiceClient<AuthChannel>,
    conn: &mut AsyncPgConnection,
    name: &str,
    request: &GetResponseMetricsRequest,
) -> Vec<MetricsGroup> {
    let (groups, report) = compare(client, conn, name, request).await;
    if let Some(report) = report {
        panic!("the service differs from the oracle on {report}");
    }
    groups
}

/// A row that the test writes straight into `incidents`, as an operator's bulk load would.
/// Instants are offsets in microseconds from `BASE_MICROS`, and the row is at version 1
/// with status `resolved` when `last_resolved` is set and `new` otherwise.
struct DirectRow {
    ticket_id: Uuid,
    severity: &'static str,
    team: &'static str,
    occurred: Option<i64>,
    detected: Option<i64>,
    acknowledged: Option<i64>,
    last_resolved: Option<i64>,
}

impl DirectRow {
    fn new(team: &'static str) -> DirectRow {
        DirectRow {
            ticket_id: Uuid::now_v7(),
            severity: "high",
            team,
            occurred: None,
            detected: None,
            acknowledged: None,
            last_resolved: None,
        }
    }
}

fn instant(offset_micros: Option<i64>) -> Option<DateTime<Utc>> {
    offset_micros.map(|offset| DateTime::from_timestamp_micros(BASE_MICROS + offset).expect("an instant in chrono's range"))
}

/// Inserts `row` with every NOT NULL column of `incidents` set. It names the columns, so
/// columns that a later migration adds with a default keep their default.
async fn insert_row(conn: &mut AsyncPgConnection, row: &DirectRow) {
    let status = if row.last_resolved.is_some() { "resolved" } else { "new" };
    let resolution = if row.last_resolved.is_some() { "true_positive" } else { "" };
    let key = format!("INC-SQL-{}", &row.ticket_id.simple().to_string()[24..]);
    diesel::sql_query(
        "INSERT INTO incidents (ticket_id, ticket_key, severity, category, status, resolution, team,
                                detection_source, imported, reopen_count, created_at, occurred_at, detected_at,
                                acknowledged_at, contained_at, resolved_at, last_resolved_at, closed_at, version)
         VALUES ($1, $2, $3, 'malware', $4, $5, $6, 'siem', true, 0, $7, $8, $9, $10, NULL, $11, $11, NULL, 1)",
    )
    .bind::<diesel::sql_types::Uuid, _>(row.ticket_id)
    .bind::<Text, _>(key)
    .bind::<Text, _>(row.severity)
    .bind::<Text, _>(status)
    .bind::<Text, _>(resolution)
    .bind::<Text, _>(row.team)
    .bind::<Timestamptz, _>(instant(Some(0)).expect("offset 0 is an instant"))
    .bind::<Nullable<Timestamptz>, _>(instant(row.occurred))
    .bind::<Nullable<Timestamptz>, _>(instant(row.detected))
    .bind::<Nullable<Timestamptz>, _>(instant(row.acknowledged))
    .bind::<Nullable<Timestamptz>, _>(instant(row.last_resolved))
    .execute(conn)
    .await
    .unwrap_or_else(|error| panic!("insert ticket {} straight into incidents: {error}", row.ticket_id));
}

/// A metrics service on a fresh database, a client, and a superuser connection for the
/// oracle and for writes with SQL.
struct Harness {
    db: TestDb,
    client: MetricsServiceClient<AuthChannel>,
    conn: AsyncPgConnection,
    _service: docket_tests::Running,
}

impl Harness {
    async fn start() -> Harness {
        let db = TestDb::create("metrics");
        let service = start_metrics(&db, unused_addr()).await;
        let client = metrics_client(service.addr).await;
        let conn = db.superuser_conn().await;
        Harness {
            db,
            client,
            conn,
            _service: service,
        }
    }

    /// Records `count` random tickets and returns them.
    async fn record_random(&mut self, rng: &mut Rng, count: usize) -> Vec<TicketSnapshot> {
        let tickets: Vec<TicketSnapshot> = (0..count).map(|index| random_ticket(rng, index)).collect();
        let response = record(&mut self.client, &tickets).await;
        assert_eq!(response.applied, i32::try_from(count).expect("a small count"), "every random ticket is applied");
        tickets
    }

    async fn assert_matches_oracle(&mut self, name: &str, request: &GetResponseMetricsRequest) -> Vec<MetricsGroup> {
        assert_matches_oracle(&mut self.client, &mut self.conn, name, request).await
    }
}

#[derive(QueryableByName)]
struct StoredInstant {
    #[diesel(sql_type = Timestamptz)]
    instant: DateTime<Utc>,
}

/// Returns the stored value of the end instant `column` at `fraction` of its sorted values,
/// so that a window bound equals an instant that some ticket carries.
async fn stored_instant(conn: &mut AsyncPgConnection, column: &str, fraction: f64) -> DateTime<Utc> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let count: Count = diesel::sql_query(format!("SELECT count({column}) AS count FROM incidents"))
        .get_result(conn)
        .await
        .unwrap_or_else(|error| panic!("count {column}: {error}"));
    assert!(count.count > 0, "some ticket has {column} set");
    let offset = (count.count as f64 * fraction) as i64;
    let row: StoredInstant = diesel::sql_query(format!(
        "SELECT {column} AS instant FROM incidents WHERE {column} IS NOT NULL ORDER BY {column} OFFSET $1 LIMIT 1"
    ))
    .bind::<BigInt, _>(offset)
    .get_result(conn)
    .await
    .unwrap_or_else(|error| panic!("read a stored {column}: {error}"));
    row.instant
}

fn timestamp_of(instant: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: instant.timestamp(),
        nanos: i32::try_from(instant.timestamp_subsec_nanos()).expect("nanoseconds fit in i32"),
    })
}

fn window(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>, group_by: GroupBy) -> GetResponseMetricsRequest {
    GetResponseMetricsRequest {
        start: start.and_then(timestamp_of),
        end: end.and_then(timestamp_of),
        group_by: group_by as i32,
        ..Default::default()
    }
}

/// Stored end instants that the windows of `oracle_requests` start or end at.
struct Bounds {
    detected_quarter: DateTime<Utc>,
    acknowledged_half: DateTime<Utc>,
    contained_low: DateTime<Utc>,
    contained_high: DateTime<Utc>,
    resolved_low: DateTime<Utc>,
    resolved_high: DateTime<Utc>,
}

impl Bounds {
    async fn read(conn: &mut AsyncPgConnection) -> Bounds {
        Bounds {
            detected_quarter: stored_instant(conn, "detected_at", 0.25).await,
            acknowledged_half: stored_instant(conn, "acknowledged_at", 0.5).await,
            contained_low: stored_instant(conn, "contained_at", 0.4).await,
            contained_high: stored_instant(conn, "contained_at", 0.6).await,
            resolved_low: stored_instant(conn, "last_resolved_at", 0.3).await,
            resolved_high: stored_instant(conn, "last_resolved_at", 0.75).await,
        }
    }
}

const ONE_MICROSECOND_FROM_ACKNOWLEDGED: &str = "one microsecond from a stored acknowledged_at";

/// Requests that cover every grouping, windows open on either side or on none, filters on
/// unset values, and combinations of filters.
fn oracle_requests(bounds: &Bounds) -> Vec<(&'static str, GetResponseMetricsRequest)> {
    let one_microsecond = chrono::TimeDelta::microseconds(1);
    let long_before = DateTime::from_timestamp_micros(BASE_MICROS - 3650 * MICROS_PER_DAY).expect("an instant in range");
    vec![
        ("ungrouped", GetResponseMetricsRequest::default()),
        ("by severity", grouped_by(GroupBy::Severity)),
        ("by category", grouped_by(GroupBy::Category)),
        ("by team", grouped_by(GroupBy::Team)),
        ("by source", grouped_by(GroupBy::Source)),
        ("by resolution", grouped_by(GroupBy::Resolution)),
        (
            "start at a stored detected_at",
            window(Some(bounds.detected_quarter), None, GroupBy::Unspecified),
        ),
        (
            "end at a stored last_resolved_at, by severity",
            window(None, Some(bounds.resolved_high), GroupBy::Severity),
        ),
        (
            "between two stored last_resolved_at, by category",
            window(Some(bounds.resolved_low), Some(bounds.resolved_high), GroupBy::Category),
        ),
        (
            "between two stored contained_at, by resolution",
            window(Some(bounds.contained_low), Some(bounds.contained_high), GroupBy::Resolution),
        ),
        (
            ONE_MICROSECOND_FROM_ACKNOWLEDGED,
            window(
                Some(bounds.acknowledged_half),
                Some(bounds.acknowledged_half + one_microsecond),
                GroupBy::Unspecified,
            ),
        ),
        (
            "one microsecond up to a stored acknowledged_at",
            window(
                Some(bounds.acknowledged_half - one_microsecond),
                Some(bounds.acknowledged_half),
                GroupBy::Team,
            ),
        ),
        ("window before every instant", window(None, Some(long_before), GroupBy::Source)),
        (
            "unrated severity",
            GetResponseMetricsRequest {
                severities: strings(&["unrated"]),
                ..Default::default()
            },
        ),
        (
            "critical or unrated, by category",
            GetResponseMetricsRequest {
                severities: strings(&["critical", "unrated"]),
                group_by: GroupBy::Category as i32,
                ..Default::default()
            },
        ),
        (
            "malware or no category, by team",
            GetResponseMetricsRequest {
                categories: strings(&["malware", "none"]),
                group_by: GroupBy::Team as i32,
                ..Default::default()
            },
        ),
        (
            "no team",
            GetResponseMetricsRequest {
                teams: strings(&["none"]),
                ..Default::default()
            },
        ),
        (
            "teams soc and SOC-EU, by source",
            GetResponseMetricsRequest {
                teams: strings(&["soc", "SOC-EU"]),
                group_by: GroupBy::Source as i32,
                ..Default::default()
            },
        ),
        (
            "edr or no source, by resolution",
            GetResponseMetricsRequest {
                sources: strings(&["edr", "none"]),
                group_by: GroupBy::Resolution as i32,
                ..Default::default()
            },
        ),
        (
            "imported",
            GetResponseMetricsRequest {
                imported: Some(true),
                ..Default::default()
            },
        ),
        (
            "live, by severity",
            GetResponseMetricsRequest {
                imported: Some(false),
                group_by: GroupBy::Severity as i32,
                ..Default::default()
            },
        ),
        (
            "every filter and a window, by source",
            GetResponseMetricsRequest {
                start: timestamp_of(bounds.resolved_low),
                end: timestamp_of(bounds.resolved_high),
                severities: strings(&["high", "medium", "unrated"]),
                categories: strings(&["phishing", "malware", "none"]),
                teams: strings(&["soc", "none"]),
                sources: strings(&["siem", "edr"]),
                group_by: GroupBy::Source as i32,
                imported: Some(false),
            },
        ),
        (
            "team ir, imported, from a stored detected_at, by resolution",
            GetResponseMetricsRequest {
                start: timestamp_of(bounds.detected_quarter),
                teams: strings(&["ir"]),
                imported: Some(true),
                group_by: GroupBy::Resolution as i32,
                ..Default::default()
            },
        ),
        (
            "other category from threat intel, until a stored last_resolved_at, by team",
            GetResponseMetricsRequest {
                end: timestamp_of(bounds.resolved_high),
                categories: strings(&["other"]),
                sources: strings(&["threat_intel"]),
                group_by: GroupBy::Team as i32,
                ..Default::default()
            },
        ),
        (
            "low or informational, until a stored acknowledged_at, by team",
            GetResponseMetricsRequest {
                end: timestamp_of(bounds.acknowledged_half),
                severities: strings(&["low", "informational"]),
                group_by: GroupBy::Team as i32,
                ..Default::default()
            },
        ),
        (
            "a team without tickets",
            GetResponseMetricsRequest {
                teams: strings(&["nobody"]),
                group_by: GroupBy::Severity as i32,
                ..Default::default()
            },
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_match_sql_oracle() {
    let mut harness = Harness::start().await;
    let mut rng = Rng::new(0x0D0C_4E75_0001);
    let mut reports = Vec::new();

    let tickets = harness.record_random(&mut rng, ORACLE_TICKETS).await;

    // First requests before any update, so that a service which keeps the projection between
    // requests has loaded it before the updates below.
    for (name, request) in [
        ("ungrouped before updates", GetResponseMetricsRequest::default()),
        ("by severity before updates", grouped_by(GroupBy::Severity)),
    ] {
        let (_, report) = compare(&mut harness.client, &mut harness.conn, name, &request).await;
        reports.extend(report);
    }

    // Version 2 of every fifth ticket and version 3 of every fifteenth, which change
    // severity, resolution, population and instants.
    let second: Vec<TicketSnapshot> = tickets.iter().step_by(5).map(|ticket| revise(&mut rng, ticket)).collect();
    let response = record(&mut harness.client, &second).await;
    assert_eq!(response.applied as usize, second.len(), "every second version is applied");
    let third: Vec<TicketSnapshot> = second.iter().step_by(3).map(|ticket| revise(&mut rng, ticket)).collect();
    let response = record(&mut harness.client, &third).await;
    assert_eq!(response.applied as usize, third.len(), "every third version is applied");

    // Second versions sent again with new event ids after their third versions: stale, so
    // they change nothing.
    let stale: Vec<TicketSnapshot> = second.iter().step_by(3).cloned().collect();
    let response = record(&mut harness.client, &stale).await;
    assert_eq!(response.applied, 0, "a version below the stored one is ignored");

    let bounds = Bounds::read(&mut harness.conn).await;
    for (name, request) in oracle_requests(&bounds) {
        let (groups, report) = compare(&mut harness.client, &mut harness.conn, name, &request).await;
        reports.extend(report);
        // Guards against a vacuous comparison: the data reach every population, and a window
        // that starts at a stored instant contains the ticket that carries it.
        if name == "ungrouped" {
            assert_eq!(total_tickets(&groups), ORACLE_TICKETS as i64, "tickets over all groups of the ungrouped response");
            assert_eq!(groups.len(), 4, "the ungrouped response has a group for each of the four populations");
        }
        if name == ONE_MICROSECOND_FROM_ACKNOWLEDGED {
            let acknowledged: i64 = groups.iter().filter_map(|group| group.tta).map(|tta| tta.count).sum();
            assert!(acknowledged >= 1, "a window from a stored acknowledged_at counts that ticket's TTA: {groups:#?}");
        }
    }

    assert!(reports.is_empty(), "the service differs from the oracle on {} requests:\n{}", reports.len(), reports.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sees_writes_of_another() {
    let db = TestDb::create("metrics");
    let replica_a = start_metrics(&db, unused_addr()).await;
    let replica_b = start_metrics(&db, unused_addr()).await;
    let mut writer = metrics_client(replica_a.addr).await;
    let mut reader = metrics_client(replica_b.addr).await;
    let mut conn = db.superuser_conn().await;
    let mut rng = Rng::new(0x0D0C_4E75_0002);
    let by_severity = grouped_by(GroupBy::Severity);

    let first: Vec<TicketSnapshot> = (0..40).map(|index| random_ticket(&mut rng, index)).collect();
    record(&mut writer, &first).await;
    let before = assert_matches_oracle(&mut reader, &mut conn, "replica B after the first tickets", &by_severity).await;
    assert_eq!(total_tickets(&before), 40);

    // An acknowledged high severity incident with TTD and TTA, which moves to low below.
    let moved = TicketSnapshot {
        severity: "high".into(),
        status: "acknowledged".into(),
        resolution: String::new(),
        occurred_at: Some(rng.timestamp(BASE_MICROS - 3600 * MICROS_PER_SECOND)),
        detected_at: Some(rng.timestamp(BASE_MICROS)),
        acknowledged_at: Some(rng.timestamp(BASE_MICROS + 600 * MICROS_PER_SECOND)),
        ..random_ticket(&mut rng, 40)
    };
    let mut second = vec![moved.clone()];
    second.extend((41..65).map(|index| random_ticket(&mut rng, index)));
    record(&mut writer, &second).await;

    let after = assert_matches_oracle(&mut reader, &mut conn, "replica B after tickets recorded through A", &by_severity).await;
    assert_eq!(total_tickets(&after), 65, "replica B counts the tickets recorded through replica A");
    let high_before = tickets_in(&after, "high", Population::Incident);
    let low_before = tickets_in(&after, "low", Population::Incident);

    let moved_to_low = TicketSnapshot {
        version: 2,
        severity: "low".into(),
        ..moved.clone()
    };
    let response = record(&mut writer, &[moved_to_low]).await;
    assert_eq!(response.applied, 1, "version 2 of the moved ticket is applied");

    let after_move = assert_matches_oracle(&mut reader, &mut conn, "replica B after an update through A", &by_severity).await;
    assert_eq!(total_tickets(&after_move), 65, "an update adds no ticket");
    assert_eq!(tickets_in(&after_move, "high", Population::Incident), high_before - 1, "the moved ticket left high");
    assert_eq!(tickets_in(&after_move, "low", Population::Incident), low_before + 1, "the moved ticket joined low");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_commit_is_not_missed() {
    let mut harness = Harness::start().await;
    let mut rng = Rng::new(0x0D0C_4E75_0003);
    let by_team = grouped_by(GroupBy::Team);

    harness.record_random(&mut rng, 30).await;
    harness.assert_matches_oracle("before the open transaction", &by_team).await;

    // The open transaction writes first, so it has the older transaction id, and commits
    // last. Its row and the ticket recorded below are different tickets, so RecordEvents
    // does not wait for this transaction's row lock.
    let mut open = harness.db.superuser_conn().await;
    open.batch_execute("BEGIN").await.expect("begin the open transaction");
    let mut pending = DirectRow::new("pending-load");
    pending.occurred = Some(0);
    pending.detected = Some(90 * MICROS_PER_SECOND);
    insert_row(&mut open, &pending).await;

    let recorded = TicketSnapshot {
        team: "recorded-later".into(),
        resolution: String::new(),
        ..random_ticket(&mut rng, 30)
    };
    let response = record(&mut harness.client, &[recorded]).await;
    assert_eq!(response.applied, 1, "the ticket recorded after the open transaction began is applied");

    let while_open = harness.assert_matches_oracle("while the transaction is open", &by_team).await;
    assert_eq!(tickets_in(&while_open, "recorded-later", Population::Incident), 1, "the committed ticket counts");
    assert!(
        find(&while_open, "pending-load", Population::Incident).is_none(),
        "an uncommitted row must not count: {while_open:#?}"
    );

    open.batch_execute("COMMIT").await.expect("commit the open transaction");

    let committed = harness.assert_matches_oracle("after the late commit", &by_team).await;
    let pending_group = find(&committed, "pending-load", Population::Incident)
        .unwrap_or_else(|| panic!("the row committed after a later transaction must count: {committed:#?}"));
    assert_eq!(pending_group.tickets, 1);
    let ttd = pending_group.ttd.expect("ttd statistics");
    assert_eq!(ttd.count, 1, "the late row's TTD counts");
    // Occurred at 0, detected at 90 s.
    assert_eq!(ttd.max, 90.0, "the late row's TTD");
    assert_eq!(tickets_in(&committed, "recorded-later", Population::Incident), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_straight_to_the_table_are_counted() {
    let mut harness = Harness::start().await;
    let mut rng = Rng::new(0x0D0C_4E75_0004);
    let by_team = grouped_by(GroupBy::Team);

    harness.record_random(&mut rng, 30).await;
    harness.assert_matches_oracle("before the bulk load", &by_team).await;

    // TTD 60 s, 120 s and 180.5 s. The last row is also acknowledged 30 s and resolved
    // 3600 s after detection.
    let mut rows = Vec::new();
    for (occurred, detected) in [(0, 60), (100, 220), (1000, 1180)] {
        let mut row = DirectRow::new("bulk-load");
        row.occurred = Some(occurred * MICROS_PER_SECOND);
        row.detected = Some(detected * MICROS_PER_SECOND);
        rows.push(row);
    }
    rows[2].detected = Some(1180 * MICROS_PER_SECOND + 500_000);
    rows[2].acknowledged = Some(1210 * MICROS_PER_SECOND + 500_000);
    rows[2].last_resolved = Some(4780 * MICROS_PER_SECOND + 500_000);

    harness.conn.batch_execute("BEGIN").await.expect("begin the bulk load");
    for row in &rows {
        insert_row(&mut harness.conn, row).await;
    }
    harness.conn.batch_execute("COMMIT").await.expect("commit the bulk load");

    let groups = harness.assert_matches_oracle("after the bulk load", &by_team).await;
    let bulk = find(&groups, "bulk-load", Population::Incident)
        .unwrap_or_else(|| panic!("rows inserted with SQL must count: {groups:#?}"));
    assert_eq!(bulk.tickets, 3);

    let ttd = bulk.ttd.expect("ttd statistics");
    // Sorted sample 60, 120, 180.5 (n = 3). Median at rank ceil(1.5) = 2, p90 at ceil(2.7) = 3
    // and p95 at ceil(2.85) = 3.
    assert_eq!(ttd.count, 3);
    assert!((ttd.mean - 360.5 / 3.0).abs() <= MEAN_RELATIVE_TOLERANCE * 360.5 / 3.0, "ttd mean {}", ttd.mean);
    assert_eq!(ttd.median, 120.0);
    assert_eq!(ttd.p90, 180.5);
    assert_eq!(ttd.p95, 180.5);
    assert_eq!(ttd.max, 180.5);

    let tta = bulk.tta.expect("tta statistics");
    assert_eq!(tta.count, 1);
    assert_eq!(tta.max, 30.0);
    let ttr = bulk.ttr.expect("ttr statistics");
    assert_eq!(ttr.count, 1);
    assert_eq!(ttr.max, 3600.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_updated_straight_in_the_table_are_seen() {
    let mut harness = Harness::start().await;
    let mut rng = Rng::new(0x0D0C_4E75_0005);
    let by_team = grouped_by(GroupBy::Team);

    let tickets = harness.record_random(&mut rng, 30).await;
    harness.assert_matches_oracle("before the update", &by_team).await;

    // An operator moves one ticket to another team with a plain UPDATE that sets only the
    // columns it changes.
    let moved = Uuid::parse_str(&tickets[0].ticket_id).expect("a UUID");
    let updated = diesel::sql_query("UPDATE incidents SET team = 'reassigned', resolution = '' WHERE ticket_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(moved)
        .execute(&mut harness.conn)
        .await
        .expect("update a ticket with SQL");
    assert_eq!(updated, 1);

    let groups = harness.assert_matches_oracle("after an update with SQL", &by_team).await;
    assert_eq!(tickets_in(&groups, "reassigned", Population::Incident), 1, "the updated row counts in its new team");
    assert_eq!(total_tickets(&groups), 30, "an update adds no ticket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_deleted_straight_from_the_table_are_gone() {
    let mut harness = Harness::start().await;
    let mut rng = Rng::new(0x0D0C_4E75_0006);
    let by_team = grouped_by(GroupBy::Team);

    let tickets = harness.record_random(&mut rng, 30).await;
    harness.assert_matches_oracle("before the delete", &by_team).await;

    let deleted = Uuid::parse_str(&tickets[0].ticket_id).expect("a UUID");
    let removed = diesel::sql_query("DELETE FROM incidents WHERE ticket_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(deleted)
        .execute(&mut harness.conn)
        .await
        .expect("delete a ticket with SQL");
    assert_eq!(removed, 1);

    let groups = harness.assert_matches_oracle("after a delete with SQL", &by_team).await;
    assert_eq!(total_tickets(&groups), 29, "the deleted row no longer counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_table_is_reloaded() {
    let mut harness = Harness::start().await;
    let mut rng = Rng::new(0x0D0C_4E75_0007);
    let by_severity = grouped_by(GroupBy::Severity);

    harness.record_random(&mut rng, 20).await;
    harness.assert_matches_oracle("before the truncate", &by_severity).await;

    diesel::sql_query("TRUNCATE incidents").execute(&mut harness.conn).await.expect("truncate the projection");
    let groups = harness.assert_matches_oracle("right after the truncate", &by_severity).await;
    assert_eq!(total_tickets(&groups), 0, "nothing is left to count");

    harness.record_random(&mut rng, 5).await;
    let groups = harness.assert_matches_oracle("after new tickets", &by_severity).await;
    assert_eq!(total_tickets(&groups), 5, "only the tickets recorded after the truncate count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_ticket_id_replaces_old_row() {
    let mut harness = Harness::start().await;
    let mut rng = Rng::new(0x0D0C_4E75_0008);
    let by_team = grouped_by(GroupBy::Team);

    let tickets = harness.record_random(&mut rng, 10).await;
    harness.assert_matches_oracle("before the id change", &by_team).await;

    // Changing the primary key removes the old id, so only the new one may count.
    let old = Uuid::parse_str(&tickets[0].ticket_id).expect("a UUID");
    let updated = diesel::sql_query("UPDATE incidents SET ticket_id = $2, team = 'renumbered' WHERE ticket_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(old)
        .bind::<diesel::sql_types::Uuid, _>(Uuid::now_v7())
        .execute(&mut harness.conn)
        .await
        .expect("change a ticket id with SQL");
    assert_eq!(updated, 1);

    let groups = harness.assert_matches_oracle("after the id change", &by_team).await;
    assert_eq!(total_tickets(&groups), 10, "the old id no longer counts");
    assert_eq!(groups.iter().filter(|group| group.key == "renumbered").map(|group| group.tickets).sum::<i64>(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_rows_are_read_again() {
    let mut harness = Harness::start().await;
    let mut rng = Rng::new(0x0D0C_4E75_0009);
    let by_team = grouped_by(GroupBy::Team);

    harness.record_random(&mut rng, 20).await;
    harness.conn.batch_execute("CREATE TABLE incidents_backup AS SELECT * FROM incidents").await.expect("back up the projection");
    // Later writes and queries move the service's horizon past the backed-up rows' stamps.
    harness.record_random(&mut rng, 5).await;
    harness.assert_matches_oracle("after the backup", &by_team).await;

    harness.conn.batch_execute("DELETE FROM incidents WHERE ticket_id IN (SELECT ticket_id FROM incidents_backup)").await.expect("delete the backed-up rows");
    let groups = harness.assert_matches_oracle("after the delete", &by_team).await;
    assert_eq!(total_tickets(&groups), 5);

    // A restore copies every column, changed_by included, so only the insert trigger's
    // stamp makes the rows visible to the next refresh.
    harness.conn.batch_execute("INSERT INTO incidents SELECT * FROM incidents_backup").await.expect("restore the backed-up rows");
    let groups = harness.assert_matches_oracle("after the restore", &by_team).await;
    assert_eq!(total_tickets(&groups), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_instant_counts_as_unset() {
    let mut harness = Harness::start().await;
    let mut rng = Rng::new(0x0D0C_4E75_000A);
    harness.record_random(&mut rng, 20).await;
    let before = query(&mut harness.client, &grouped_by(GroupBy::Unspecified)).await;
    let contained: i64 = before.iter().map(|group| group.ttc.map_or(0, |ttc| ttc.count)).sum();
    assert!(contained > 0, "the random tickets include contained ones");

    let updated = harness
        .conn
        .batch_execute(
            "UPDATE incidents SET contained_at = 'infinity' \
             WHERE ticket_id = (SELECT ticket_id FROM incidents WHERE contained_at IS NOT NULL ORDER BY ticket_id LIMIT 1)",
        )
        .await;
    updated.expect("set one containment to infinity");

    // The refresh reads the row instead of failing, and no duration is measured to infinity.
    let after = query(&mut harness.client, &grouped_by(GroupBy::Unspecified)).await;
    let contained_after: i64 = after.iter().map(|group| group.ttc.map_or(0, |ttc| ttc.count)).sum();
    assert_eq!(contained_after, contained - 1);
    assert_eq!(total_tickets(&after), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_refresh_still_completes() {
    let mut harness = Harness::start().await;
    let mut rng = Rng::new(0x0D0C_4E75_000B);
    harness.record_random(&mut rng, 5).await;
    query(&mut harness.client, &grouped_by(GroupBy::Unspecified)).await;

    // A bulk load large enough that reading it takes longer than the deadline below.
    harness
        .conn
        .batch_execute(
            "INSERT INTO incidents (ticket_id, ticket_key, severity, category, status, resolution, team, \
             detection_source, imported, reopen_count, created_at, version) \
             SELECT gen_random_uuid(), 'BULK-' || i, 'low', 'malware', 'new', '', 'bulk', 'siem', false, 0, now(), 1 \
             FROM generate_series(1, 300000) AS i",
        )
        .await
        .expect("bulk-load rows");

    // Each call gives up after 100 ms. Were the refresh part of the call, every call would
    // start it again and none would finish.
    let mut answered = None;
    let mut abandoned = 0;
    for _ in 0..200 {
        let mut request = tonic::Request::new(grouped_by(GroupBy::Unspecified));
        request.set_timeout(Duration::from_millis(100));
        match harness.client.get_response_metrics(request).await {
            Ok(response) => {
                answered = Some(response.into_inner().groups);
                break;
            }
            Err(_) => abandoned += 1,
        }
    }
    println!("{abandoned} calls gave up before the refresh of the bulk load finished");
    let groups = answered.expect("a call answers once the abandoned refresh has finished");
    assert_eq!(total_tickets(&groups), 300_005);
}
