//! Events that carry each committed ticket change to the audit and metrics services.

use chrono::{DateTime, Utc};
use docket_proto::events::v1::{Actor, ActorKind, Event, FieldChange, Resource, TicketSnapshot};
use uuid::Uuid;

use crate::domain::{self, Ticket};

/// Name of this service in events and in outgoing calls.
pub const SOURCE_SERVICE: &str = "docket-ticket";

pub const ACTION_CREATED: &str = "ticket.created";
pub const ACTION_UPDATED: &str = "ticket.updated";
pub const ACTION_TRANSITIONED: &str = "ticket.transitioned";
pub const ACTION_COMMENTED: &str = "ticket.commented";
pub const ACTION_IMPORTED: &str = "ticket.imported";
pub const ACTION_ACCESS_DENIED: &str = "ticket.access_denied";

/// A call that was denied to an authenticated caller, recorded for the audit ledger.
pub struct DenialRecord<'a> {
    pub event_id: Uuid,
    /// The ticket the call named, when the denial came after loading it. Otherwise the
    /// event's resource is the RPC itself.
    pub ticket: Option<(Uuid, &'a str)>,
    /// The gRPC method path, such as /docket.ticket.v1.TicketService/ImportTickets.
    pub rpc: &'a str,
    pub actor: &'a str,
    pub actor_kind: ActorKind,
    pub reason: &'a str,
    pub at: DateTime<Utc>,
}

/// Builds the event of a denied call. It has version 0, no changes and no snapshot, because
/// the call changed nothing, so the metrics projection ignores it.
pub fn build_denial_event(record: &DenialRecord<'_>) -> Event {
    let resource = match record.ticket {
        Some((id, key)) => Resource { r#type: "ticket".to_owned(), id: id.to_string(), key: key.to_owned() },
        None => Resource { r#type: "rpc".to_owned(), id: record.rpc.to_owned(), key: String::new() },
    };
    Event {
        event_id: record.event_id.to_string(),
        action: ACTION_ACCESS_DENIED.to_owned(),
        resource: Some(resource),
        resource_version: 0,
        actor: Some(Actor {
            subject: record.actor.to_owned(),
            kind: record.actor_kind as i32,
            relayed_by: String::new(),
        }),
        occurred_at: Some(timestamp(record.at)),
        source_service: SOURCE_SERVICE.to_owned(),
        trace_id: docket_telemetry::current_trace_id().unwrap_or_default(),
        changes: Vec::new(),
        reason: record.reason.to_owned(),
        ticket: None,
    }
}

/// Everything an event states about one change.
pub struct ChangeRecord<'a> {
    pub event_id: Uuid,
    pub action: &'static str,
    pub ticket: &'a Ticket,
    pub changes: &'a [domain::FieldChange],
    pub actor: &'a str,
    pub reason: &'a str,
    pub at: DateTime<Utc>,
}

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// Builds the event for a change. `relayed_by` stays empty until the relay sends it.
pub fn build_event(record: &ChangeRecord<'_>) -> Event {
    Event {
        event_id: record.event_id.to_string(),
        action: record.action.to_owned(),
        resource: Some(Resource {
            r#type: "ticket".to_owned(),
            id: record.ticket.id.to_string(),
            key: record.ticket.key.clone(),
        }),
        resource_version: record.ticket.version,
        actor: Some(Actor {
            subject: record.actor.to_owned(),
            kind: ActorKind::Human as i32,
            relayed_by: String::new(),
        }),
        occurred_at: Some(timestamp(record.at)),
        source_service: SOURCE_SERVICE.to_owned(),
        trace_id: docket_telemetry::current_trace_id().unwrap_or_default(),
        changes: record
            .changes
            .iter()
            .map(|change| FieldChange {
                field: change.field.clone(),
                old_value: change.old_value.clone(),
                new_value: change.new_value.clone(),
            })
            .collect(),
        reason: record.reason.to_owned(),
        ticket: Some(snapshot(record.ticket)),
    }
}

/// Builds the snapshot of the ticket fields that the metrics projection needs, with
/// lowercase enum names.
pub fn snapshot(ticket: &Ticket) -> TicketSnapshot {
    TicketSnapshot {
        ticket_id: ticket.id.to_string(),
        key: ticket.key.clone(),
        version: ticket.version,
        severity: ticket
            .severity
            .map(|value| value.as_str().to_owned())
            .unwrap_or_default(),
        category: ticket.category.as_str().to_owned(),
        status: ticket.status.as_str().to_owned(),
        resolution: ticket
            .resolution
            .map(|value| value.as_str().to_owned())
            .unwrap_or_default(),
        team: ticket.team.clone(),
        detection_source: ticket.detection_source.clone(),
        imported: ticket.imported,
        reopen_count: ticket.reopen_count,
        created_at: Some(timestamp(ticket.created_at)),
        occurred_at: ticket.occurred_at.map(timestamp),
        detected_at: ticket.detected_at.map(timestamp),
        acknowledged_at: ticket.acknowledged_at.map(timestamp),
        contained_at: ticket.contained_at.map(timestamp),
        resolved_at: ticket.resolved_at.map(timestamp),
        last_resolved_at: ticket.last_resolved_at.map(timestamp),
        closed_at: ticket.closed_at.map(timestamp),
    }
}
