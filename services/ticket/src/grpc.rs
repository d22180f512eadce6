//! gRPC adapter of the ticket service: decodes requests, takes the caller from the
//! request, calls the domain and the store, and maps errors to status codes.

use docket_proto::ticket::v1 as pb;
use docket_proto::ticket::v1::ticket_service_server::TicketService;
use docket_auth::{Denied, Principal, PrincipalKind, Rpc, TicketChange, TicketChangeKind, authorize_ticket_change};
use docket_proto::events::v1::ActorKind;
use docket_server::auth::DenialRecorder;
use futures::future::BoxFuture;
use docket_server::Caller;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use uuid::Uuid;

use crate::Error;
use crate::convert;
use crate::domain::import::{MAX_RECORDS, validate_import};
use crate::domain::lifecycle::{TransitionError, check_note, transition};
use crate::domain::page::{self, decode_token, encode_token, history_digest};
use crate::domain::ticket::{
    apply_patch, check_mask, parse_etag, validate_comment, validate_create,
};
use crate::domain::{self, Comment, Resolution, Status as TicketStatus, TicketRef, Violations};
use crate::events::{self, DenialRecord};
use crate::storage::{ImportOutcome, Mutation, Store};

pub struct TicketApi {
    store: Store,
}

impl TicketApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn invalid(field: &str, description: String) -> Error {
    let mut violations = Violations::default();
    violations.add(field, description);
    Error::Invalid(violations)
}

fn optional_etag(text: &str) -> Result<Option<i64>, Error> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(parse_etag("etag", text)?))
}

/// Applies the ticket-level rules of `docket_auth` to a change of `current`. It runs inside
/// the store's transaction, before anything is written, so a denied change writes nothing.
fn check_change(caller: &Caller, current: &crate::domain::ticket::Ticket, kind: TicketChangeKind<'_>) -> Result<(), Error> {
    let current_assignee = Some(current.assignee.as_str()).filter(|name| !name.is_empty());
    authorize_ticket_change(caller.principal(), TicketChange { kind, current_assignee }).map_err(|denied| Error::TicketDenied {
        ticket_id: current.id,
        key: current.key.clone(),
        denied,
    })
}

/// Writes the audit event of a denied call. A failure is logged and not returned, because
/// the caller gets PERMISSION_DENIED either way.
async fn record_denial(store: &Store, principal: &Principal, path: &str, ticket: Option<(Uuid, &str)>, denied: &Denied) {
    let rpc: &str = match Rpc::from_path(path) {
        Some(known) => known.method(),
        None => path,
    };
    let reason = format!("{rpc} denied: {denied}");
    let actor_kind = match principal.kind {
        PrincipalKind::Human => ActorKind::Human,
        PrincipalKind::Service => ActorKind::Service,
    };
    let record = DenialRecord {
        event_id: Uuid::now_v7(),
        ticket,
        rpc: path,
        actor: &principal.subject,
        actor_kind,
        reason: &reason,
        at: domain::now(),
    };
    if let Err(error) = store.record_denial(&record).await {
        tracing::error!(%error, subject = %principal.subject, rpc, event_id = %record.event_id, "failed to record a denied call");
    }
}

/// Records the calls that the auth layer denies, as `ticket.access_denied` outbox events.
pub struct DenialLog {
    store: Store,
}

impl DenialLog {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl DenialRecorder for DenialLog {
    fn record<'a>(&'a self, principal: &'a Principal, path: &'a str, denied: &'a Denied) -> BoxFuture<'a, ()> {
        Box::pin(record_denial(&self.store, principal, path, None, denied))
    }
}

impl TicketApi {
    /// Records a ticket-level denial in `result`, then returns `result` unchanged.
    async fn audit_denial<T>(&self, caller: &Caller, rpc: Rpc, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(Error::TicketDenied { ticket_id, key, denied }) = &result {
            record_denial(&self.store, caller.principal(), rpc.path(), Some((*ticket_id, key)), denied).await;
        }
        result
    }
}

/// Returns the kind of a transition that the ticket-level rules restrict: closing, or
/// reopening a resolved or closed ticket. Other transitions need only the RPC permission.
fn transition_kind(from: TicketStatus, to: TicketStatus) -> Option<TicketChangeKind<'static>> {
    if to == TicketStatus::Closed {
        return Some(TicketChangeKind::Close);
    }
    if matches!(from, TicketStatus::Resolved | TicketStatus::Closed) && to != TicketStatus::Resolved {
        return Some(TicketChangeKind::Reopen);
    }
    None
}

#[tonic::async_trait]
impl TicketService for TicketApi {
    async fn create_ticket(
        &self,
        request: Request<pb::CreateTicketRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        let span = tracing::info_span!("ticket.create_ticket");
        async move {
            let caller = Caller::from_request(&request)?;
            let input = convert::create_input(request.into_inner()).map_err(Error::from)?;
            let new =
                validate_create(input, &caller.subject, domain::now()).map_err(Error::from)?;
            let ticket = self.store.create(new, &caller.subject).await?;
            Ok(Response::new(convert::ticket(ticket, &[])))
        }
        .instrument(span)
        .await
    }

    async fn get_ticket(
        &self,
        request: Request<pb::GetTicketRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        let span = tracing::info_span!("ticket.get_ticket");
        async move {
            let target =
                TicketRef::parse("ticket", &request.get_ref().ticket).map_err(Error::from)?;
            let (ticket, comments) = self.store.get(&target).await?;
            Ok(Response::new(convert::ticket(ticket, &comments)))
        }
        .instrument(span)
        .await
    }

    async fn list_tickets(
        &self,
        request: Request<pb::ListTicketsRequest>,
    ) -> Result<Response<pb::ListTicketsResponse>, Status> {
        let span = tracing::info_span!("ticket.list_tickets");
        async move {
            let input = convert::list_input(request.into_inner()).map_err(Error::from)?;
            let query = page::validate_list(input).map_err(Error::from)?;
            let (tickets, more) = self.store.list(&query).await?;
            let next_page_token = match (more, tickets.last()) {
                (true, Some(last)) => query.next_token(last.id),
                _ => String::new(),
            };
            Ok(Response::new(pb::ListTicketsResponse {
                tickets: tickets
                    .into_iter()
                    .map(|ticket| convert::ticket(ticket, &[]))
                    .collect(),
                next_page_token,
            }))
        }
        .instrument(span)
        .await
    }

    async fn update_ticket(
        &self,
        request: Request<pb::UpdateTicketRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        let span = tracing::info_span!("ticket.update_ticket");
        async move {
            let caller = Caller::from_request(&request)?;
            let request = request.into_inner();
            let target = TicketRef::parse("ticket", &request.ticket).map_err(Error::from)?;
            if request.etag.trim().is_empty() {
                return Err(invalid(
                    "etag",
                    "etag is required; send the etag of the ticket as last read".to_owned(),
                )
                .into());
            }
            let expected = parse_etag("etag", &request.etag).map_err(Error::from)?;
            let input =
                convert::patch_input(request.patch, request.update_mask).map_err(Error::from)?;
            check_mask(&input.paths).map_err(Error::from)?;

            let changed = self
                .store
                .change(&target, Some(expected), &caller.subject, |current, now| {
                    let next = apply_patch(current, input, now)?;
                    if next.assignee != current.assignee {
                        let new_assignee = Some(next.assignee.as_str()).filter(|name| !name.is_empty());
                        check_change(&caller, current, TicketChangeKind::Reassign { new_assignee })?;
                    }
                    if domain::change::diff(Some(current), &next).is_empty() {
                        return Ok(None);
                    }
                    Ok(Some(Mutation {
                        ticket: next,
                        action: events::ACTION_UPDATED,
                        note: String::new(),
                        comment: None,
                    }))
                })
                .await;
            let (ticket, _) = self.audit_denial(&caller, Rpc::UpdateTicket, changed).await?;
            Ok(Response::new(convert::ticket(ticket, &[])))
        }
        .instrument(span)
        .await
    }

    async fn transition_ticket(
        &self,
        request: Request<pb::TransitionTicketRequest>,
    ) -> Result<Response<pb::Ticket>, Status> {
        let span = tracing::info_span!("ticket.transition_ticket");
        async move {
            let caller = Caller::from_request(&request)?;
            let request = request.into_inner();
            let target = TicketRef::parse("ticket", &request.ticket).map_err(Error::from)?;
            let to = match TicketStatus::from_code(request.to_status) {
                Ok(Some(status)) => status,
                _ => {
                    let description = format!(
                        "to_status {} is missing or unknown; use one of {}",
                        request.to_status,
                        TicketStatus::names()
                    );
                    return Err(invalid("to_status", description).into());
                }
            };
            let resolution = match Resolution::from_code(request.resolution) {
                Ok(resolution) => resolution,
                Err(code) => {
                    let description = format!(
                        "resolution {code} is unknown; use one of {}",
                        Resolution::names()
                    );
                    return Err(invalid("resolution", description).into());
                }
            };
            check_note(&request.note).map_err(Error::from)?;
            let expected = optional_etag(&request.etag)?;
            let note = request.note;

            let changed = self
                .store
                .change(&target, expected, &caller.subject, |current, now| {
                    if let Some(kind) = transition_kind(current.status, to) {
                        check_change(&caller, current, kind)?;
                    }
                    let next =
                        transition(current, to, resolution, now).map_err(|error| match error {
                            TransitionError::NotAllowed { from, to, allowed } => {
                                Error::NotAllowed {
                                    key: current.key.clone(),
                                    from,
                                    to,
                                    allowed,
                                }
                            }
                            TransitionError::Invalid(violations) => Error::Invalid(violations),
                        })?;
                    Ok(Some(Mutation {
                        ticket: next,
                        action: events::ACTION_TRANSITIONED,
                        note,
                        comment: None,
                    }))
                })
                .await;
            let (ticket, _) = self.audit_denial(&caller, Rpc::TransitionTicket, changed).await?;
            Ok(Response::new(convert::ticket(ticket, &[])))
        }
        .instrument(span)
        .await
    }

    async fn add_comment(
        &self,
        request: Request<pb::AddCommentRequest>,
    ) -> Result<Response<pb::Comment>, Status> {
        let span = tracing::info_span!("ticket.add_comment");
        async move {
            let caller = Caller::from_request(&request)?;
            let request = request.into_inner();
            let target = TicketRef::parse("ticket", &request.ticket).map_err(Error::from)?;
            validate_comment(&request.body).map_err(Error::from)?;
            let author = caller.subject.clone();
            let body = request.body;

            let (_, comment) = self
                .store
                .change(&target, None, &caller.subject, |current, now| {
                    let comment = Comment {
                        id: Uuid::now_v7(),
                        ticket_id: current.id,
                        author,
                        body,
                        created_at: now,
                    };
                    Ok(Some(Mutation {
                        ticket: current.clone(),
                        action: events::ACTION_COMMENTED,
                        note: String::new(),
                        comment: Some(comment),
                    }))
                })
                .await?;
            let comment = comment
                .ok_or_else(|| Error::Corrupt("a comment change returned no comment".to_owned()))?;
            Ok(Response::new(convert::comment(&comment)))
        }
        .instrument(span)
        .await
    }

    async fn list_ticket_history(
        &self,
        request: Request<pb::ListTicketHistoryRequest>,
    ) -> Result<Response<pb::ListTicketHistoryResponse>, Status> {
        let span = tracing::info_span!("ticket.list_ticket_history");
        async move {
            let request = request.into_inner();
            let target = TicketRef::parse("ticket", &request.ticket).map_err(Error::from)?;
            let mut violations = Violations::default();
            let limit = page::page_size("page_size", request.page_size, &mut violations);
            let digest = history_digest(&request.ticket);
            let mut after_version = 0;
            if !request.page_token.is_empty() {
                match decode_token("page_token", &request.page_token, &digest)
                    .map(|position| position.parse::<i64>())
                {
                    Ok(Ok(version)) => after_version = version,
                    Ok(Err(_)) => violations.add(
                        "page_token",
                        "page_token is invalid: not a token this service issued",
                    ),
                    Err(invalid) => violations.0.extend(invalid.0),
                }
            }
            violations.into_result(()).map_err(Error::from)?;

            let (_, entries, more) = self.store.history(&target, after_version, limit).await?;
            let next_page_token = match (more, entries.last()) {
                (true, Some(last)) => encode_token(&last.version.to_string(), &digest),
                _ => String::new(),
            };
            Ok(Response::new(pb::ListTicketHistoryResponse {
                entries: entries.into_iter().map(convert::history_entry).collect(),
                next_page_token,
            }))
        }
        .instrument(span)
        .await
    }

    async fn import_tickets(
        &self,
        request: Request<pb::ImportTicketsRequest>,
    ) -> Result<Response<pb::ImportTicketsResponse>, Status> {
        let span = tracing::info_span!("ticket.import_tickets");
        async move {
            use pb::import_result::Outcome;

            let caller = Caller::from_request(&request)?;
            let records = request.into_inner().records;
            if records.len() > MAX_RECORDS {
                let description = format!("{} records given; send at most {MAX_RECORDS} per call", records.len());
                return Err(invalid("records", description).into());
            }

            let mut results = Vec::with_capacity(records.len());
            for (index, record) in records.into_iter().enumerate() {
                let validated = convert::import_input(record).and_then(|input| validate_import(input, &caller.subject, domain::now()));
                let imported = match validated {
                    Ok(imported) => imported,
                    Err(violations) => {
                        let violations = violations.prefixed(&format!("records[{index}]"));
                        // Only the field paths are logged, because the descriptions quote request values.
                        let fields: Vec<&str> = violations.0.iter().map(|violation| violation.field.as_str()).collect();
                        tracing::info!(record = index, fields = %fields.join(","), "rejected import record");
                        let error = violations.to_string();
                        results.push(pb::ImportResult { outcome: Outcome::Rejected as i32, error, ..Default::default() });
                        continue;
                    }
                };
                let result = match self.store.import(imported, &caller.subject).await? {
                    ImportOutcome::Imported { id, key } => pb::ImportResult {
                        outcome: Outcome::Imported as i32,
                        ticket_id: id.to_string(),
                        key,
                        error: String::new(),
                    },
                    ImportOutcome::AlreadyPresent { id, key } => pb::ImportResult {
                        outcome: Outcome::AlreadyPresent as i32,
                        ticket_id: id.to_string(),
                        key,
                        error: String::new(),
                    },
                };
                results.push(result);
            }
            Ok(Response::new(pb::ImportTicketsResponse { results }))
        }
        .instrument(span)
        .await
    }
}
