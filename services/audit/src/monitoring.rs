//! Prometheus metrics of the audit service beyond the per-call ones.

use docket_server::prometheus::MetricsBuilder;
use prometheus_client::metrics::counter::Counter;

/// Counters that AppendEvents updates.
#[derive(Clone, Debug, Default)]
pub struct AuditMetrics {
    pub appended: Counter,
    pub already_present: Counter,
}

impl AuditMetrics {
    /// Registers the append counters and the ledger head gauge, read at each scrape.
    pub fn register(builder: &mut MetricsBuilder, pool: docket_db::Pool) -> Self {
        let metrics = AuditMetrics::default();
        let registry = builder.registry();
        registry.register("docket_audit_appended_events", "Events appended to the ledger", metrics.appended.clone());
        registry.register(
            "docket_audit_already_present_events",
            "Events received again and skipped because the ledger already had their id",
            metrics.already_present.clone(),
        );
        builder.register_query_gauge(
            "docket_audit_ledger_head_seq",
            "Sequence number of the newest ledger record",
            pool,
            "SELECT seq AS value FROM ledger_head WHERE id = 1",
        );
        metrics
    }
}
