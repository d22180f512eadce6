//! The outbox relay: one delivery loop per sink, started with the server and stopped
//! with it. Each loop sends pending events in order per ticket and retries a failed
//! batch with capped exponential backoff and jitter; no event is ever dropped.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use docket_proto::audit::v1::AppendEventsRequest;
use docket_proto::audit::v1::audit_service_client::AuditServiceClient;
use docket_proto::events::v1::Event;
use docket_proto::metrics::v1::RecordEventsRequest;
use docket_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use prost::Message;
use tokio::sync::{Notify, watch};
use tonic::transport::Channel;
use tracing::Instrument;

use docket_server::outgoing::ServiceCredentials;

use crate::events::SOURCE_SERVICE;
use crate::monitoring::{RelayMetrics, SinkLabel};
use crate::storage::outbox::{Delivery, PendingEvent, Sink, deliver_batch};

/// Wakes the delivery loops right after a local commit, so an event does not wait for
/// the next poll.
#[derive(Debug, Default)]
pub struct Wake {
    audit: Notify,
    metrics: Notify,
}

impl Wake {
    pub fn notify(&self) {
        // notify_one stores a permit when the loop is busy, so the wake-up is not lost.
        self.audit.notify_one();
        self.metrics.notify_one();
    }

    fn for_sink(&self, sink: Sink) -> &Notify {
        match sink {
            Sink::Audit => &self.audit,
            Sink::Metrics => &self.metrics,
        }
    }
}

/// Settings of the delivery loops.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    pub batch_size: i64,
    pub poll_interval: Duration,
    /// Pause after a batch smaller than `batch_size`, which means the outbox was empty.
    /// Each delivery costs a commit in this database and one in the receiver's, so under
    /// load fewer, larger batches leave more of the disk and the CPU to the creates.
    pub linger: Duration,
    pub max_backoff: Duration,
}

/// Faults that the crash tests inject between sending a batch and marking it delivered.
/// They exist only in builds with the `fault-injection` feature, which the tests crate
/// enables, and are chosen at start by DOCKET_FAULT_RELAY: `duplicate-send` sends every
/// batch twice, `exit-after-send` ends the process with code 86 right after the first
/// successful send.
mod fault {
    #[cfg(feature = "fault-injection")]
    fn chosen() -> &'static str {
        static CHOSEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        CHOSEN.get_or_init(|| {
            let chosen = std::env::var("DOCKET_FAULT_RELAY").unwrap_or_default();
            if !chosen.is_empty() {
                tracing::warn!(fault = %chosen, "relay fault injection is on; never run such a build in production");
            }
            chosen
        })
    }

    pub fn duplicate_sends() -> bool {
        #[cfg(feature = "fault-injection")]
        return chosen() == "duplicate-send";
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    pub fn exit_after_send() {
        #[cfg(feature = "fault-injection")]
        if chosen() == "exit-after-send" {
            tracing::warn!("exiting after a send, before the batch is marked delivered");
            std::process::exit(86);
        }
    }
}

/// Smallest delay after a failed delivery.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Client of one sink.
#[derive(Clone)]
enum SinkClient {
    Audit(AuditServiceClient<Channel>),
    Metrics(MetricsServiceClient<Channel>),
}

impl SinkClient {
    async fn send(mut self, events: Vec<Event>, credentials: &ServiceCredentials) -> Result<(), String> {
        let mint_failed = |error: docket_auth::MintError| format!("cannot mint the service token: {error}");
        let result = match &mut self {
            SinkClient::Audit(client) => {
                let request = docket_server::outgoing::request(AppendEventsRequest { events }, credentials).map_err(mint_failed)?;
                client.append_events(request).await.map(|_| ())
            }
            SinkClient::Metrics(client) => {
                let request = docket_server::outgoing::request(RecordEventsRequest { events }, credentials).map_err(mint_failed)?;
                client.record_events(request).await.map(|_| ())
            }
        };
        result.map_err(|status| format!("{:?}: {}", status.code(), status.message()))
    }
}

/// Opens the span of one delivery. It continues the trace of the batch's first event, and
/// links the traces of the others, because one call carries events of several requests.
fn delivery_span(sink: Sink, pending: &[PendingEvent]) -> tracing::Span {
    let span = tracing::info_span!(
        "relay.deliver",
        otel.name = %format_args!("ticket.relay.{}", sink.name()),
        otel.kind = "client",
        sink = sink.name(),
        events = pending.len(),
    );
    docket_telemetry::continue_stored_traces(&span, pending.iter().filter_map(|row| row.traceparent.as_deref()));
    span
}

/// Decodes the stored events and marks them as carried by this service.
fn decode(pending: &[PendingEvent]) -> Result<Vec<Event>, String> {
    pending
        .iter()
        .map(|row| {
            let mut event = Event::decode(row.payload.as_slice()).map_err(|error| {
                format!("stored event {} does not decode: {error}", row.event_id)
            })?;
            if let Some(actor) = event.actor.as_mut() {
                actor.relayed_by = SOURCE_SERVICE.to_owned();
            }
            Ok(event)
        })
        .collect()
}

/// State shared by the delivery loops of both sinks.
#[derive(Clone)]
pub struct Relay {
    pub pool: docket_db::Pool,
    pub settings: RelaySettings,
    pub credentials: Arc<ServiceCredentials>,
    pub wake: Arc<Wake>,
    pub metrics: RelayMetrics,
}

/// Starts both delivery loops; they run until `stop` turns true.
pub fn spawn(relay: Relay, audit: Channel, metrics: Channel, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let sinks = [
        (Sink::Audit, SinkClient::Audit(AuditServiceClient::new(audit))),
        (Sink::Metrics, SinkClient::Metrics(MetricsServiceClient::new(metrics))),
    ];
    sinks.into_iter().map(|(sink, client)| tokio::spawn(run(relay.clone(), sink, client, stop.clone()))).collect()
}

async fn run(relay: Relay, sink: Sink, client: SinkClient, mut stop: watch::Receiver<bool>) {
    let Relay { pool, settings, credentials, wake, metrics: metrics_out } = relay;
    let label = SinkLabel::of(sink);
    let backoff = ExponentialBuilder::new()
        .with_min_delay(MIN_BACKOFF)
        .with_max_delay(settings.max_backoff)
        .with_jitter()
        .without_max_times();
    let mut delays = backoff.build();
    tracing::info!(sink = sink.name(), "outbox relay started");

    while !*stop.borrow() {
        let send_client = client.clone();
        let send_credentials = credentials.clone();
        let round = deliver_batch(&pool, sink, settings.batch_size, async move |pending| {
            let events = decode(&pending)?;
            let span = delivery_span(sink, &pending);
            let repeat = fault::duplicate_sends().then(|| events.clone());
            send_client.clone().send(events, &send_credentials).instrument(span.clone()).await?;
            if let Some(events) = repeat {
                send_client.send(events, &send_credentials).instrument(span).await?;
            }
            fault::exit_after_send();
            Ok(())
        })
        .await;

        let pause = match round {
            Ok(Delivery::Delivered(count)) => {
                delays = backoff.build();
                metrics_out.delivered.get_or_create(&label).inc_by(count as u64);
                tracing::debug!(sink = sink.name(), count, "delivered events");
                if (count as i64) < settings.batch_size && !settings.linger.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(settings.linger) => {}
                        changed = stop.changed() => {
                            if changed.is_err() {
                                break;
                            }
                        }
                    }
                }
                continue;
            }
            Ok(Delivery::Idle) => {
                delays = backoff.build();
                tokio::select! {
                    _ = wake.for_sink(sink).notified() => {}
                    _ = tokio::time::sleep(settings.poll_interval) => {}
                    changed = stop.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                }
                continue;
            }
            Ok(Delivery::Failed {
                event_ids,
                attempt,
                error,
            }) => {
                metrics_out.failed_attempts.get_or_create(&label).inc();
                let pause = next_delay(&mut delays, settings.max_backoff);
                let ids: Vec<String> = event_ids.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    sink = sink.name(),
                    event_ids = %ids.join(","),
                    attempt,
                    retry_in_ms = pause.as_millis() as u64,
                    %error,
                    "event delivery failed, retrying"
                );
                pause
            }
            Err(error) => {
                let pause = next_delay(&mut delays, settings.max_backoff);
                tracing::warn!(sink = sink.name(), retry_in_ms = pause.as_millis() as u64, %error, "outbox claim failed, retrying");
                pause
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = stop.changed() => {
                // A dropped sender means the service is gone, so the loop ends as on a stop.
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!(sink = sink.name(), "outbox relay stopped");
}

/// Next backoff delay; the jitter may add to the configured maximum, so it is capped again.
fn next_delay(delays: &mut impl Iterator<Item = Duration>, max: Duration) -> Duration {
    delays.next().unwrap_or(max).min(max)
}
