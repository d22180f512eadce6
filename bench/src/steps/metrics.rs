//! Step 4: GetResponseMetrics over a projection seeded with many tickets, for the whole
//! history and for the last 30 days, both grouped by severity.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use diesel::sql_types::BigInt;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use docket_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use docket_proto::metrics::v1::{GetResponseMetricsRequest, GroupBy};
use docket_tests::AuthChannel;
use serde::Serialize;

use crate::Plan;
use crate::cluster::{Context, Memory, ServiceProcess};
use crate::load;

#[derive(Clone, Debug, Serialize)]
pub struct QuerySummary {
    pub calls: u64,
    /// The unmeasured first call.
    pub first_call_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Groups in the last response, one per severity key and population.
    pub groups: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricsResults {
    pub tickets: u64,
    /// Time to insert the tickets and analyze the table.
    pub seed_seconds: f64,
    pub whole_history: QuerySummary,
    pub last_30_days: QuerySummary,
    /// Memory of the metrics service after the queries, with the projection copied into
    /// it.
    pub memory: Memory,
}

pub async fn run(context: &Context, plan: &Plan) -> anyhow::Result<MetricsResults> {
    let label = "metrics_scale";
    let service = ServiceProcess::start(context, "metrics", label, context.database(label), &crate::cluster::metrics_args(None)).await?;
    let outcome = run_with(&service, plan).await;
    service.stop_and_drop().await?;
    outcome
}

async fn run_with(service: &ServiceProcess, plan: &Plan) -> anyhow::Result<MetricsResults> {
    eprintln!("metrics: seeding {} tickets", plan.metrics_tickets);
    let started = Instant::now();
    let mut conn = service.database.connect().await?;
    conn.batch_execute("SELECT setseed(0.42)").await?;
    diesel::sql_query(include_str!("../sql/seed_incidents.sql"))
        .bind::<BigInt, _>(plan.metrics_tickets as i64)
        .execute(&mut conn)
        .await
        .context("seed the incidents table")?;
    // Autovacuum would do the same soon after a bulk load; running it now keeps it from
    // starting in the middle of the measurement.
    conn.batch_execute("VACUUM ANALYZE incidents").await.context("vacuum the incidents table")?;
    let seed_seconds = started.elapsed().as_secs_f64();

    let mut client = docket_tests::metrics_client(service.addr).await;
    let whole = GetResponseMetricsRequest {
        group_by: GroupBy::Severity as i32,
        ..Default::default()
    };
    let now = chrono::Utc::now();
    let month_ago = now - chrono::Duration::days(30);
    let recent = GetResponseMetricsRequest {
        start: Some(prost_types::Timestamp {
            seconds: month_ago.timestamp(),
            nanos: 0,
        }),
        group_by: GroupBy::Severity as i32,
        ..Default::default()
    };
    eprintln!("metrics: whole history for {} s", plan.query_seconds);
    let whole_history = repeat(&mut client, &whole, plan).await?;
    eprintln!("metrics: last 30 days for {} s", plan.query_seconds);
    let last_30_days = repeat(&mut client, &recent, plan).await?;
    Ok(MetricsResults {
        tickets: plan.metrics_tickets,
        seed_seconds,
        whole_history,
        last_30_days,
        memory: service.memory()?,
    })
}

/// Minimum number of calls of one query, however long they take, so p99 has some support.
const MIN_CALLS: u64 = 10;

/// Calls `request` one after another for the plan's query time (at least [`MIN_CALLS`]
/// times), after one call that warms the caches. For the first query, that call also
/// loads the seeded rows into the service's memory.
async fn repeat(client: &mut MetricsServiceClient<AuthChannel>, request: &GetResponseMetricsRequest, plan: &Plan) -> anyhow::Result<QuerySummary> {
    let started = Instant::now();
    client.get_response_metrics(request.clone()).await.context("GetResponseMetrics")?;
    let first_call_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut histogram = load::latency_histogram();
    let deadline = Instant::now() + Duration::from_secs(plan.query_seconds);
    let mut groups = 0;
    while histogram.len() < MIN_CALLS || Instant::now() < deadline {
        let started = Instant::now();
        let response = client.get_response_metrics(request.clone()).await.context("GetResponseMetrics")?;
        load::record(&mut histogram, started.elapsed());
        groups = response.into_inner().groups.len();
    }
    Ok(QuerySummary {
        calls: histogram.len(),
        first_call_ms,
        p50_ms: load::millis(histogram.value_at_quantile(0.5)),
        p99_ms: load::millis(histogram.value_at_quantile(0.99)),
        max_ms: load::millis(histogram.max()),
        groups,
    })
}
