//! Conversion between the protobuf messages and the domain values.

use chrono::{DateTime, Utc};
use docket_proto::ticket::v1 as pb;

use crate::domain::import::ImportInput;
use crate::domain::page::ListInput;
use crate::domain::ticket::{CreateInput, PatchInput};
use crate::domain::{self, Comment, RawAsset, RawIndicator, Ticket, Violations};
use crate::events::timestamp;
use crate::storage::HistoryEntry;

/// Reads an optional protobuf timestamp, recording a violation for one out of range.
pub fn instant(
    field: &str,
    value: Option<prost_types::Timestamp>,
    violations: &mut Violations,
) -> Option<DateTime<Utc>> {
    let value = value?;
    let nanos = u32::try_from(value.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000);
    match nanos.and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos)) {
        Some(at) => Some(domain::truncate_micros(at)),
        None => {
            violations.add(
                field,
                format!(
                    "{field} ({}s, {}ns) is not a valid timestamp",
                    value.seconds, value.nanos
                ),
            );
            None
        }
    }
}

fn indicators(values: Vec<pb::Indicator>) -> Vec<RawIndicator> {
    values
        .into_iter()
        .map(|value| RawIndicator {
            kind: value.r#type,
            value: value.value,
        })
        .collect()
}

fn assets(values: Vec<pb::Asset>) -> Vec<RawAsset> {
    values
        .into_iter()
        .map(|value| RawAsset {
            kind: value.kind,
            name: value.name,
            compromise: value.compromise,
        })
        .collect()
}

pub fn create_input(request: pb::CreateTicketRequest) -> Result<CreateInput, Violations> {
    let mut violations = Violations::default();
    let occurred_at = instant("occurred_at", request.occurred_at, &mut violations);
    let detected_at = instant("detected_at", request.detected_at, &mut violations);
    violations.into_result(CreateInput {
        request_id: request.request_id,
        title: request.title,
        description: request.description,
        severity: request.severity,
        category: request.category,
        assignee: request.assignee,
        team: request.team,
        reporter: request.reporter,
        detection_source: request.detection_source,
        detection_method: request.detection_method,
        indicators: indicators(request.indicators),
        assets: assets(request.assets),
        tags: request.tags,
        occurred_at,
        detected_at,
    })
}

pub fn patch_input(
    patch: Option<pb::TicketPatch>,
    mask: Option<prost_types::FieldMask>,
) -> Result<PatchInput, Violations> {
    let patch = patch.unwrap_or_default();
    let mut violations = Violations::default();
    let occurred_at = instant("patch.occurred_at", patch.occurred_at, &mut violations);
    let detected_at = instant("patch.detected_at", patch.detected_at, &mut violations);
    violations.into_result(PatchInput {
        paths: mask.map(|mask| mask.paths).unwrap_or_default(),
        title: patch.title,
        description: patch.description,
        severity: patch.severity,
        category: patch.category,
        assignee: patch.assignee,
        team: patch.team,
        detection_source: patch.detection_source,
        detection_method: patch.detection_method,
        indicators: indicators(patch.indicators),
        assets: assets(patch.assets),
        tags: patch.tags,
        occurred_at,
        detected_at,
    })
}

pub fn list_input(request: pb::ListTicketsRequest) -> Result<ListInput, Violations> {
    let mut violations = Violations::default();
    let created_after = instant("created_after", request.created_after, &mut violations);
    let created_before = instant("created_before", request.created_before, &mut violations);
    let updated_after = instant("updated_after", request.updated_after, &mut violations);
    let updated_before = instant("updated_before", request.updated_before, &mut violations);
    violations.into_result(ListInput {
        page_size: request.page_size,
        page_token: request.page_token,
        statuses: request.statuses,
        severities: request.severities,
        categories: request.categories,
        assignee: request.assignee,
        team: request.team,
        created_after,
        created_before,
        updated_after,
        updated_before,
    })
}

pub fn import_input(record: pb::ImportRecord) -> Result<ImportInput, Violations> {
    let mut violations = Violations::default();
    let occurred_at = instant("occurred_at", record.occurred_at, &mut violations);
    let detected_at = instant("detected_at", record.detected_at, &mut violations);
    let acknowledged_at = instant("acknowledged_at", record.acknowledged_at, &mut violations);
    let contained_at = instant("contained_at", record.contained_at, &mut violations);
    let resolved_at = instant("resolved_at", record.resolved_at, &mut violations);
    let closed_at = instant("closed_at", record.closed_at, &mut violations);
    violations.into_result(ImportInput {
        source: record.source,
        digest: record.digest,
        source_id: record.source_id,
        title: record.title,
        description: record.description,
        severity: record.severity,
        category: record.category,
        status: record.status,
        resolution: record.resolution,
        detection_source: record.detection_source,
        tags: record.tags,
        indicators: indicators(record.indicators),
        assets: assets(record.assets),
        reason: record.reason,
        occurred_at,
        detected_at,
        acknowledged_at,
        contained_at,
        resolved_at,
        closed_at,
    })
}

pub fn comment(comment: &Comment) -> pb::Comment {
    pb::Comment {
        id: comment.id.to_string(),
        ticket_id: comment.ticket_id.to_string(),
        author: comment.author.clone(),
        body: comment.body.clone(),
        created_at: Some(timestamp(comment.created_at)),
    }
}

pub fn ticket(ticket: Ticket, comments: &[Comment]) -> pb::Ticket {
    pb::Ticket {
        id: ticket.id.to_string(),
        etag: ticket.etag(),
        key: ticket.key,
        title: ticket.title,
        description: ticket.description,
        severity: ticket.severity.map_or(0, |value| value.code()),
        category: ticket.category.code(),
        status: ticket.status.code(),
        resolution: ticket.resolution.map_or(0, |value| value.code()),
        assignee: ticket.assignee,
        team: ticket.team,
        reporter: ticket.reporter,
        detection_source: ticket.detection_source,
        detection_method: ticket.detection_method,
        indicators: ticket
            .indicators
            .iter()
            .map(|value| pb::Indicator {
                r#type: value.kind().code(),
                value: value.value().to_owned(),
            })
            .collect(),
        assets: ticket
            .assets
            .iter()
            .map(|value| pb::Asset {
                kind: value.kind.code(),
                name: value.name.clone(),
                compromise: value.compromise.code(),
            })
            .collect(),
        tags: ticket.tags,
        comments: comments.iter().map(comment).collect(),
        imported: ticket.imported,
        import_source: ticket.import_source.unwrap_or_default(),
        reopen_count: ticket.reopen_count,
        version: ticket.version,
        occurred_at: ticket.occurred_at.map(timestamp),
        detected_at: ticket.detected_at.map(timestamp),
        created_at: Some(timestamp(ticket.created_at)),
        updated_at: Some(timestamp(ticket.updated_at)),
        acknowledged_at: ticket.acknowledged_at.map(timestamp),
        contained_at: ticket.contained_at.map(timestamp),
        eradicated_at: ticket.eradicated_at.map(timestamp),
        recovered_at: ticket.recovered_at.map(timestamp),
        resolved_at: ticket.resolved_at.map(timestamp),
        last_resolved_at: ticket.last_resolved_at.map(timestamp),
        closed_at: ticket.closed_at.map(timestamp),
    }
}

pub fn history_entry(entry: HistoryEntry) -> pb::HistoryEntry {
    pb::HistoryEntry {
        ticket_id: entry.ticket_id.to_string(),
        version: entry.version,
        action: entry.action,
        actor: entry.actor,
        at: Some(timestamp(entry.at)),
        changes: entry
            .changes
            .into_iter()
            .map(|change| pb::FieldChange {
                field: change.field,
                old_value: change.old_value,
                new_value: change.new_value,
            })
            .collect(),
        note: entry.note,
        event_id: entry.event_id.to_string(),
    }
}
