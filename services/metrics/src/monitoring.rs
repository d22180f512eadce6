//! Prometheus metrics of the metrics service beyond the per-call ones.

use std::sync::Arc;

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use docket_server::prometheus::MetricsBuilder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Counters that RecordEvents updates.
#[derive(Clone, Debug, Default)]
pub struct ProjectionMetrics {
    pub applied: Counter,
    pub ignored: Counter,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

impl ProjectionMetrics {
    /// Registers the projection counters and the gauge of denials waiting for the audit
    /// service, read at each scrape.
    pub fn register(builder: &mut MetricsBuilder, pool: docket_db::Pool) -> Self {
        let metrics = ProjectionMetrics::default();
        let pending_denials = Gauge::<i64>::default();
        let registry = builder.registry();
        registry.register("docket_metrics_applied_events", "Events whose ticket snapshot updated the projection.", metrics.applied.clone());
        registry.register(
            "docket_metrics_ignored_events",
            "Events that changed nothing: seen before, older than the stored snapshot, or without a snapshot.",
            metrics.ignored.clone(),
        );
        registry.register(
            "docket_denial_outbox_pending_events",
            "Records of denied calls not yet appended to the audit ledger.",
            pending_denials.clone(),
        );
        builder.on_scrape(Arc::new(move || {
            let (pool, pending_denials) = (pool.clone(), pending_denials.clone());
            Box::pin(async move {
                let result = async {
                    let mut conn = pool.get().await.map_err(|error| error.to_string())?;
                    let row: CountRow = diesel::sql_query("SELECT count(*) AS count FROM denial_outbox")
                        .get_result(&mut conn)
                        .await
                        .map_err(|error| error.to_string())?;
                    Ok::<i64, String>(row.count)
                }
                .await;
                match result {
                    Ok(count) => {
                        pending_denials.set(count);
                    }
                    // The gauge keeps its last value, and the scrape still succeeds.
                    Err(error) => tracing::warn!(%error, "cannot count the denial outbox for the metrics"),
                }
            })
        }));
        metrics
    }
}
