//! Prometheus metrics of the metrics service beyond the per-call ones.

use docket_server::prometheus::MetricsBuilder;
use prometheus_client::metrics::counter::Counter;

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
