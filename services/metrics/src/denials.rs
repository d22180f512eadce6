//! Audit records of denied calls. The auth layer denies a call before any handler runs,
//! and the recorder here stores an audit event for it in the metrics database. A forwarder
//! appends the stored events to the audit ledger and retries until the audit service
//! accepts them, so a denial is on the record even while audit is down.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{SubsecRound, Utc};
use docket_auth::{Denied, Principal, PrincipalKind, Rpc};
use docket_proto::audit::v1::AppendEventsRequest;
use docket_proto::audit::v1::audit_service_client::AuditServiceClient;
use docket_proto::events::v1::{Actor, ActorKind, Event, Resource};
use docket_server::auth::DenialRecorder;
use docket_server::outgoing::ServiceCredentials;
use futures::future::BoxFuture;
use prost::Message;
use tokio::sync::{Notify, watch};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::storage::denials;

/// Action of the audit event written for a call that the metrics service denied.
pub const ACTION_ACCESS_DENIED: &str = "metrics.access_denied";

/// Denials sent to the audit service in one AppendEvents call.
const BATCH_SIZE: i64 = 100;

/// How often the forwarder looks for stored denials when no new denial woke it. A denial
/// that a previous process stored before it stopped is found at the latest after this.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Stores an audit event for each call the auth layer denies, then wakes the forwarder.
pub struct DenialOutbox {
    pool: docket_db::Pool,
    wake: Arc<Notify>,
}

impl DenialOutbox {
    pub fn new(pool: docket_db::Pool, wake: Arc<Notify>) -> Self {
        Self { pool, wake }
    }

    async fn store(&self, principal: &Principal, path: &str, denied: &Denied) {
        let event = denial_event(principal, path, denied);
        let event_id = Uuid::parse_str(&event.event_id).unwrap_or_default();
        // A failure is logged and not returned, because the caller gets PERMISSION_DENIED
        // either way.
        match denials::insert(&self.pool, event_id, &event.encode_to_vec()).await {
            Ok(()) => self.wake.notify_one(),
            Err(error) => {
                tracing::error!(%error, subject = %principal.subject, rpc = path, %event_id, "failed to record a denied call");
            }
        }
    }
}

impl DenialRecorder for DenialOutbox {
    fn record<'a>(&'a self, principal: &'a Principal, path: &'a str, denied: &'a Denied) -> BoxFuture<'a, ()> {
        Box::pin(self.store(principal, path, denied))
    }
}

/// Builds the audit event of one denied call: who called which RPC, and why it was denied.
fn denial_event(principal: &Principal, path: &str, denied: &Denied) -> Event {
    let rpc = Rpc::from_path(path).map_or(path, |known| known.method());
    let now = Utc::now().trunc_subsecs(6);
    Event {
        event_id: Uuid::now_v7().to_string(),
        action: ACTION_ACCESS_DENIED.to_owned(),
        resource: Some(Resource { r#type: "rpc".to_owned(), id: path.to_owned(), key: String::new() }),
        resource_version: 0,
        actor: Some(Actor {
            subject: principal.subject.clone(),
            kind: match principal.kind {
                PrincipalKind::Human => ActorKind::Human,
                PrincipalKind::Service => ActorKind::Service,
            } as i32,
            // The caller never reached the audit service; the metrics service carries the record.
            relayed_by: crate::SERVICE_SUBJECT.to_owned(),
        }),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        source_service: crate::SERVICE_SUBJECT.to_owned(),
        trace_id: docket_telemetry::current_trace_id().unwrap_or_default(),
        changes: Vec::new(),
        reason: format!("{rpc} denied: {denied}"),
        ticket: None,
    }
}

/// Appends stored denials to the audit ledger until `stop` turns true. A batch that
/// fails stays stored and is sent again after a capped, jittered exponential backoff.
pub async fn forward(
    pool: docket_db::Pool,
    audit: Channel,
    credentials: Arc<ServiceCredentials>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let backoff = ExponentialBuilder::new().with_min_delay(MIN_BACKOFF).with_max_delay(MAX_BACKOFF).with_jitter().without_max_times();
    let mut delays = backoff.build();
    let mut client = AuditServiceClient::new(audit);
    tracing::info!("denial forwarder started");

    while !*stop.borrow() {
        let pause = match forward_batch(&pool, &mut client, &credentials).await {
            Ok(0) => {
                delays = backoff.build();
                POLL_INTERVAL
            }
            Ok(count) => {
                delays = backoff.build();
                tracing::debug!(count, "appended denied calls to the audit ledger");
                continue;
            }
            Err(error) => {
                let pause = delays.next().unwrap_or(MAX_BACKOFF).min(MAX_BACKOFF);
                tracing::warn!(retry_in_ms = pause.as_millis() as u64, %error, "appending denied calls to the audit ledger failed, retrying");
                pause
            }
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
            changed = stop.changed() => {
                // A dropped sender means the service is gone, so the loop ends as on a stop.
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!("denial forwarder stopped");
}

/// Sends the oldest stored denials in one call and deletes them once audit accepted
/// them. Returns how many were delivered.
async fn forward_batch(
    pool: &docket_db::Pool,
    client: &mut AuditServiceClient<Channel>,
    credentials: &ServiceCredentials,
) -> Result<usize, String> {
    let pending = denials::oldest(pool, BATCH_SIZE).await.map_err(|error| format!("cannot read the denial outbox: {error}"))?;
    if pending.is_empty() {
        return Ok(0);
    }
    let event_ids: Vec<Uuid> = pending.iter().map(|row| row.event_id).collect();
    let mut events = Vec::with_capacity(pending.len());
    for row in &pending {
        let event = Event::decode(row.event.as_slice()).map_err(|error| format!("stored denial {} does not decode: {error}", row.event_id))?;
        events.push(event);
    }

    let request = docket_server::outgoing::request(AppendEventsRequest { events }, credentials)
        .map_err(|error| format!("cannot mint the service token: {error}"))?;
    if let Err(status) = client.append_events(request).await {
        let ids: Vec<String> = event_ids.iter().map(ToString::to_string).collect();
        if let Err(error) = denials::count_failure(pool, &event_ids).await {
            tracing::warn!(%error, "cannot count a failed denial delivery");
        }
        return Err(format!("audit rejected events {}: {:?}: {}", ids.join(","), status.code(), status.message()));
    }
    denials::delete(pool, &event_ids).await.map_err(|error| format!("delivered denials stay stored and will be sent again: {error}"))?;
    Ok(pending.len())
}
