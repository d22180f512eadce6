//! Prometheus metrics of the ticket service beyond the per-call ones: the outbox backlog,
//! read at each scrape, and the relay's deliveries and retries.

use std::sync::Arc;

use docket_server::prometheus::MetricsBuilder;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::AtomicU64;

use crate::storage::outbox::{self, Sink};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OldestLabels {
    sink: &'static str,
    event_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    sink: &'static str,
}

impl SinkLabel {
    pub fn of(sink: Sink) -> Self {
        Self { sink: sink.name() }
    }
}

/// Counters that the delivery loops update.
#[derive(Clone, Debug, Default)]
pub struct RelayMetrics {
    pub delivered: Family<SinkLabel, Counter>,
    pub failed_attempts: Family<SinkLabel, Counter>,
    pub given_up: Family<SinkLabel, Counter>,
}

impl RelayMetrics {
    /// Registers the relay counters and the outbox backlog gauges of `pool`.
    pub fn register(builder: &mut MetricsBuilder, pool: docket_db::Pool) -> Self {
        let metrics = RelayMetrics::default();
        let pending = Family::<SinkLabel, Gauge>::default();
        let oldest = Family::<SinkLabel, Gauge<f64, AtomicU64>>::default();
        let oldest_attempts = Family::<OldestLabels, Gauge>::default();
        let registry = builder.registry();
        registry.register("docket_relay_delivered_events", "Outbox events delivered, by sink", metrics.delivered.clone());
        registry.register(
            "docket_relay_failed_attempts",
            "Delivery attempts that failed and will be retried, by sink",
            metrics.failed_attempts.clone(),
        );
        registry.register(
            "docket_relay_given_up_events",
            "Outbox events the relay stopped retrying, by sink. The relay retries every event until it is delivered, so this stays 0; alert if it ever rises",
            metrics.given_up.clone(),
        );
        registry.register("docket_outbox_pending_events", "Outbox events not yet delivered, by sink", pending.clone());
        registry.register(
            "docket_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered outbox event in seconds, by sink; 0 when none is pending",
            oldest.clone(),
        );
        registry.register(
            "docket_outbox_oldest_pending_attempts",
            "Failed delivery attempts of the oldest undelivered outbox event, labelled with its event id; absent when none is pending",
            oldest_attempts.clone(),
        );
        for sink in [Sink::Audit, Sink::Metrics] {
            // Each family lists both sinks from the first scrape, including the zeros.
            metrics.delivered.get_or_create(&SinkLabel::of(sink)).inc_by(0);
            metrics.failed_attempts.get_or_create(&SinkLabel::of(sink)).inc_by(0);
            metrics.given_up.get_or_create(&SinkLabel::of(sink)).inc_by(0);
        }
        builder.on_scrape(Arc::new(move || {
            let (pool, pending, oldest, oldest_attempts) = (pool.clone(), pending.clone(), oldest.clone(), oldest_attempts.clone());
            Box::pin(async move {
                let mut measured = Vec::new();
                for sink in [Sink::Audit, Sink::Metrics] {
                    match outbox::backlog(&pool, sink).await {
                        Ok(backlog) => measured.push((sink, backlog)),
                        // The gauges keep their last values, and the scrape still succeeds.
                        Err(error) => tracing::warn!(sink = sink.name(), %error, "cannot measure the outbox backlog"),
                    }
                }
                // Only the current oldest event of each sink keeps a series, so event ids do
                // not pile up as label values.
                oldest_attempts.clear();
                for (sink, backlog) in measured {
                    pending.get_or_create(&SinkLabel::of(sink)).set(backlog.pending);
                    oldest.get_or_create(&SinkLabel::of(sink)).set(backlog.oldest_age_seconds);
                    if let Some(event_id) = backlog.oldest_event_id {
                        let labels = OldestLabels { sink: sink.name(), event_id };
                        oldest_attempts.get_or_create(&labels).set(i64::from(backlog.oldest_attempts));
                    }
                }
            })
        }));
        metrics
    }
}
