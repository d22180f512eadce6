//! gRPC adapter of the audit service: decodes requests, calls the domain and storage,
//! and encodes responses.

use chrono::{DateTime, SubsecRound, Utc};
use docket_auth::{Denied, Principal, PrincipalKind, Rpc};
use docket_proto::audit::v1::audit_service_server::AuditService;
use docket_proto::audit::v1::{
    AppendEventsRequest, AppendEventsResponse, ListRecordsRequest, ListRecordsResponse, Record as RecordMessage,
    VerifyLedgerRequest, VerifyLedgerResponse,
};
use docket_proto::events::v1::Event as EventMessage;
use docket_server::Caller;
use docket_server::auth::DenialRecorder;
use futures::future::BoxFuture;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::Error;
use crate::domain::event::{Actor, ActorKind, ChangeInput, Event, EventInput, Resource, TimestampInput, validate_batch};
use crate::domain::listing::{ListInput, build_page, parse_list};
use crate::domain::record::Record;
use crate::storage;

pub struct AuditApi {
    pool: docket_db::Pool,
    counters: crate::monitoring::AuditMetrics,
}

impl AuditApi {
    pub fn new(pool: docket_db::Pool, counters: crate::monitoring::AuditMetrics) -> Self {
        Self { pool, counters }
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn append_events(
        &self,
        request: Request<AppendEventsRequest>,
    ) -> Result<Response<AppendEventsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let span = tracing::info_span!("audit.append_events", caller = %caller.subject);
        async {
            let inputs = request.into_inner().events.into_iter().map(event_input).collect();
            let events = validate_batch(inputs).map_err(Error::from)?;
            let appended = storage::ledger::append(&self.pool, &events).await?;
            self.counters.appended.inc_by(appended.appended as u64);
            self.counters.already_present.inc_by(appended.already_present as u64);
            tracing::info!(
                received = events.len(),
                appended = appended.appended,
                already_present = appended.already_present,
                head_seq = appended.head_seq,
                "appended events"
            );
            Ok(Response::new(AppendEventsResponse {
                appended: count(appended.appended),
                already_present: count(appended.already_present),
                head_seq: appended.head_seq,
            }))
        }
        .instrument(span)
        .await
    }

    async fn list_records(
        &self,
        request: Request<ListRecordsRequest>,
    ) -> Result<Response<ListRecordsResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let span = tracing::info_span!("audit.list_records", caller = %caller.subject);
        async {
            let query = parse_list(list_input(request.into_inner())).map_err(Error::from)?;
            let rows = storage::ledger::list(&self.pool, &query).await?;
            let page = build_page(&query, rows);
            Ok(Response::new(ListRecordsResponse {
                records: page.records.into_iter().map(record_message).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
            }))
        }
        .instrument(span)
        .await
    }

    async fn verify_ledger(
        &self,
        request: Request<VerifyLedgerRequest>,
    ) -> Result<Response<VerifyLedgerResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        let span = tracing::info_span!("audit.verify_ledger", caller = %caller.subject);
        async {
            let report = storage::ledger::verify(&self.pool).await?;
            let (first_bad_seq, problem) = match &report.failure {
                None => {
                    tracing::info!(records_checked = report.records_checked, "ledger verified intact");
                    (0, String::new())
                }
                Some(failure) => {
                    tracing::warn!(
                        records_checked = report.records_checked,
                        first_bad_seq = failure.seq,
                        problem = %failure.problem,
                        "ledger verification found a bad record"
                    );
                    (failure.seq, failure.problem.clone())
                }
            };
            Ok(Response::new(VerifyLedgerResponse {
                intact: report.failure.is_none(),
                records_checked: report.records_checked,
                first_bad_seq,
                problem,
                head_seq: report.verified_head.seq,
                head_hash: report.verified_head.chain_hash.to_vec(),
            }))
        }
        .instrument(span)
        .await
    }
}

fn event_input(message: EventMessage) -> EventInput {
    let resource = message.resource.unwrap_or_default();
    let actor = message.actor.unwrap_or_default();
    EventInput {
        event_id: message.event_id,
        action: message.action,
        resource_type: resource.r#type,
        resource_id: resource.id,
        resource_key: resource.key,
        resource_version: message.resource_version,
        actor_subject: actor.subject,
        actor_kind: actor.kind,
        relayed_by: actor.relayed_by,
        occurred_at: message.occurred_at.as_ref().map(timestamp_input),
        source_service: message.source_service,
        trace_id: message.trace_id,
        changes: message
            .changes
            .into_iter()
            .map(|change| ChangeInput {
                field: change.field,
                old_value: change.old_value,
                new_value: change.new_value,
            })
            .collect(),
        reason: message.reason,
    }
}

fn list_input(message: ListRecordsRequest) -> ListInput {
    ListInput {
        page_size: message.page_size,
        page_token: message.page_token,
        resource: message.resource,
        actor: message.actor,
        action: message.action,
        occurred_after: message.occurred_after.as_ref().map(timestamp_input),
        occurred_before: message.occurred_before.as_ref().map(timestamp_input),
    }
}

fn timestamp_input(timestamp: &prost_types::Timestamp) -> TimestampInput {
    u32::try_from(timestamp.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(timestamp.seconds, nanos))
        .map_or(TimestampInput::OutOfRange, TimestampInput::At)
}

fn timestamp_message(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).expect("sub-second nanos are below 1e9"),
    }
}

fn record_message(record: Record) -> RecordMessage {
    RecordMessage {
        seq: record.seq,
        event_id: record.event_id.hyphenated().to_string(),
        action: record.action,
        resource_id: record.resource_id,
        actor: record.actor,
        occurred_at: Some(timestamp_message(record.occurred_at)),
        recorded_at: Some(timestamp_message(record.recorded_at)),
        canonical: record.canonical,
        leaf_hash: record.leaf_hash,
        chain_hash: record.chain_hash,
    }
}

/// Converts a count bounded by the batch limit of 1000 to the wire type.
fn count(value: usize) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Action of the ledger record that the audit service writes for a call it denied.
pub const ACTION_ACCESS_DENIED: &str = "audit.access_denied";

/// Appends a record of each call the auth layer denies to the ledger itself, so an attempt
/// to read or write the audit API without the role is on the record.
pub struct DenialLedger {
    pool: docket_db::Pool,
}

impl DenialLedger {
    pub fn new(pool: docket_db::Pool) -> Self {
        Self { pool }
    }

    async fn append(&self, principal: &Principal, path: &str, denied: &Denied) {
        let rpc: &str = match Rpc::from_path(path) {
            Some(known) => known.method(),
            None => path,
        };
        let event = Event {
            event_id: uuid::Uuid::now_v7(),
            action: ACTION_ACCESS_DENIED.to_owned(),
            resource: Resource { kind: "rpc".to_owned(), id: path.to_owned(), key: String::new() },
            resource_version: 0,
            actor: Actor {
                subject: principal.subject.clone(),
                kind: match principal.kind {
                    PrincipalKind::Human => ActorKind::Human,
                    PrincipalKind::Service => ActorKind::Service,
                },
                relayed_by: String::new(),
            },
            occurred_at: Utc::now().trunc_subsecs(6),
            source_service: "docket-audit".to_owned(),
            trace_id: docket_telemetry::current_trace_id().unwrap_or_default(),
            changes: Vec::new(),
            reason: format!("{rpc} denied: {denied}"),
        };
        if let Err(error) = storage::ledger::append(&self.pool, std::slice::from_ref(&event)).await {
            tracing::error!(%error, subject = %principal.subject, rpc, event_id = %event.event_id, "failed to record a denied call");
        }
    }
}

impl DenialRecorder for DenialLedger {
    fn record<'a>(&'a self, principal: &'a Principal, path: &'a str, denied: &'a Denied) -> BoxFuture<'a, ()> {
        Box::pin(self.append(principal, path, denied))
    }
}
