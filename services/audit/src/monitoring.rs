//! Prometheus metrics of the audit service beyond the per-call ones.

use std::sync::Arc;

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use docket_server::prometheus::MetricsBuilder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Counters that AppendEvents updates.
#[derive(Clone, Debug, Default)]
pub struct AuditMetrics {
    pub appended: Counter,
    pub already_present: Counter,
}

#[derive(QueryableByName)]
struct HeadRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

impl AuditMetrics {
    /// Registers the append counters and the ledger head gauge, read at each scrape.
    pub fn register(builder: &mut MetricsBuilder, pool: docket_db::Pool) -> Self {
        let metrics = AuditMetrics::default();
        let head = Gauge::<i64>::default();
        let registry = builder.registry();
        registry.register("docket_audit_appended_events", "Events appended to the ledger.", metrics.appended.clone());
        registry.register(
            "docket_audit_already_present_events",
            "Events received again and skipped because the ledger already had their id.",
            metrics.already_present.clone(),
        );
        registry.register("docket_audit_ledger_head_seq", "Sequence number of the newest ledger record.", head.clone());
        builder.on_scrape(Arc::new(move || {
            let (pool, head) = (pool.clone(), head.clone());
            Box::pin(async move {
                let result = async {
                    let mut conn = pool.get().await.map_err(|error| error.to_string())?;
                    let row: HeadRow = diesel::sql_query("SELECT seq FROM ledger_head WHERE id = 1")
                        .get_result(&mut conn)
                        .await
                        .map_err(|error| error.to_string())?;
                    Ok::<i64, String>(row.seq)
                }
                .await;
                match result {
                    Ok(seq) => {
                        head.set(seq);
                    }
                    // The gauge keeps its last value, and the scrape still succeeds.
                    Err(error) => tracing::warn!(%error, "cannot read the ledger head for the metrics"),
                }
            })
        }));
        metrics
    }
}
