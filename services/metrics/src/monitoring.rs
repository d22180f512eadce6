//! Prometheus metrics of the metrics service beyond the per-call ones.

use docket_server::prometheus::MetricsBuilder;
use prometheus_client::metrics::counter::Counter;

use crate::mirror::MirrorMetrics;

/// Counters that RecordEvents updates.
#[derive(Clone, Debug, Default)]
pub struct ProjectionMetrics {
    pub applied: Counter,
    pub ignored: Counter,
}

impl ProjectionMetrics {
    /// Registers the projection counters and the gauge of denials waiting for the audit
    /// service, read at each scrape.
    pub fn register(builder: &mut MetricsBuilder, pool: docket_db::Pool) -> Self {
        let metrics = ProjectionMetrics::default();
        let registry = builder.registry();
        registry.register("docket_metrics_applied_events", "Events whose ticket snapshot updated the projection", metrics.applied.clone());
        registry.register(
            "docket_metrics_ignored_events",
            "Events that changed nothing: seen before, older than the stored snapshot, or without a snapshot",
            metrics.ignored.clone(),
        );
        builder.register_query_gauge(
            "docket_denial_outbox_pending_events",
            "Records of denied calls not yet appended to the audit ledger",
            pool,
            "SELECT count(*) AS value FROM denial_outbox",
        );
        metrics
    }
}

/// Registers the gauge and counters of the in-memory copy of the projection.
pub fn register_mirror(builder: &mut MetricsBuilder) -> MirrorMetrics {
    let metrics = MirrorMetrics::default();
    let registry = builder.registry();
    registry.register("docket_metrics_memory_tickets", "Tickets held in the in-memory copy of the projection", metrics.tickets.clone());
    registry.register(
        "docket_metrics_memory_rows_read",
        "Projection rows read from the database to bring the in-memory copy up to date",
        metrics.rows_read.clone(),
    );
    registry.register("docket_metrics_memory_refreshes", "Refreshes of the in-memory copy of the projection", metrics.refreshes.clone());
    metrics
}
