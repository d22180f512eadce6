//! gRPC adapter of the metrics service: decodes requests, calls the domain, the storage
//! and the in-memory projection, and maps errors to status codes.

use docket_proto::metrics::v1 as proto;
use docket_proto::metrics::v1::metrics_service_server::MetricsService;
use docket_server::Caller;
use tonic::{Request, Response, Status};

use std::sync::Arc;

use crate::domain::query::{DurationStats, GroupReport, Population};
use crate::domain::{events, query};
use crate::mirror::Mirror;
use crate::storage;

pub struct MetricsApi {
    pool: docket_db::Pool,
    mirror: Arc<Mirror>,
    counters: crate::monitoring::ProjectionMetrics,
}

impl MetricsApi {
    pub fn new(pool: docket_db::Pool, mirror: Arc<Mirror>, counters: crate::monitoring::ProjectionMetrics) -> Self {
        Self { pool, mirror, counters }
    }
}

#[tonic::async_trait]
impl MetricsService for MetricsApi {
    #[tracing::instrument(name = "metrics.record_events", skip_all, fields(caller, events))]
    async fn record_events(
        &self,
        request: Request<proto::RecordEventsRequest>,
    ) -> Result<Response<proto::RecordEventsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("caller", caller.subject.as_str());
        span.record("events", request.events.len());

        let batch = events::parse_events(&request.events)?;
        let outcome = storage::projection::record_events(&self.pool, &batch).await?;
        self.counters.applied.inc_by(outcome.applied as u64);
        self.counters.ignored.inc_by(outcome.ignored as u64);
        tracing::debug!(applied = outcome.applied, ignored = outcome.ignored, "recorded events");

        Ok(Response::new(proto::RecordEventsResponse {
            applied: count_to_i32(outcome.applied),
            ignored: count_to_i32(outcome.ignored),
        }))
    }

    #[tracing::instrument(name = "metrics.get_response_metrics", skip_all, fields(caller))]
    async fn get_response_metrics(
        &self,
        request: Request<proto::GetResponseMetricsRequest>,
    ) -> Result<Response<proto::GetResponseMetricsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        tracing::Span::current().record("caller", caller.subject.as_str());

        let metrics_query = query::parse_query(request.get_ref())?;
        let (counts, results) = self.mirror.query(&self.pool, &metrics_query).await?;
        let groups = query::assemble(counts, results).into_iter().map(group_to_proto).collect();

        Ok(Response::new(proto::GetResponseMetricsResponse { groups }))
    }
}

/// Converts a batch count, which validation caps at 1000 events.
fn count_to_i32(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

fn group_to_proto(report: GroupReport) -> proto::MetricsGroup {
    proto::MetricsGroup {
        key: report.key,
        population: population_to_proto(report.population) as i32,
        tickets: report.tickets,
        ttd: Some(stats_to_proto(report.ttd)),
        tta: Some(stats_to_proto(report.tta)),
        ttc: Some(stats_to_proto(report.ttc)),
        ttr: Some(stats_to_proto(report.ttr)),
    }
}

fn population_to_proto(population: Population) -> proto::Population {
    match population {
        Population::Incident => proto::Population::Incident,
        Population::FalsePositive => proto::Population::FalsePositive,
        Population::Benign => proto::Population::Benign,
        Population::Duplicate => proto::Population::Duplicate,
    }
}

fn stats_to_proto(stats: DurationStats) -> proto::DurationStats {
    proto::DurationStats {
        count: stats.count,
        mean: stats.mean,
        median: stats.median,
        p90: stats.p90,
        p95: stats.p95,
        max: stats.max,
    }
}
