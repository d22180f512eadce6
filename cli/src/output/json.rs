//! JSON forms of the service responses for `--json`. Enums use their lowercase names,
//! timestamps are RFC 3339 in UTC (null when unset), hashes are lowercase hex and
//! durations are seconds.

use docket_proto::audit::v1::{Record, VerifyLedgerResponse};
use docket_proto::metrics::v1::{DurationStats, GetResponseMetricsResponse, MetricsGroup};
use docket_proto::ticket::v1::{Comment, Ticket};
use serde_json::{Value, json};

use super::{
    asset_kind_name, category_name, compromise_name, indicator_type_name, population_name, resolution_name, severity_name, status_name,
};

fn time(value: Option<&prost_types::Timestamp>) -> Value {
    match value {
        Some(_) => Value::String(super::timestamp(value)),
        None => Value::Null,
    }
}

pub fn ticket(ticket: &Ticket) -> Value {
    json!({
        "id": ticket.id,
        "key": ticket.key,
        "title": ticket.title,
        "description": ticket.description,
        "severity": severity_name(ticket.severity),
        "category": category_name(ticket.category),
        "status": status_name(ticket.status),
        "resolution": resolution_name(ticket.resolution),
        "assignee": ticket.assignee,
        "team": ticket.team,
        "reporter": ticket.reporter,
        "detection_source": ticket.detection_source,
        "detection_method": ticket.detection_method,
        "indicators": ticket.indicators.iter().map(|indicator| json!({
            "type": indicator_type_name(indicator.r#type),
            "value": indicator.value,
        })).collect::<Vec<_>>(),
        "assets": ticket.assets.iter().map(|asset| json!({
            "kind": asset_kind_name(asset.kind),
            "name": asset.name,
            "compromise": compromise_name(asset.compromise),
        })).collect::<Vec<_>>(),
        "tags": ticket.tags,
        "comments": ticket.comments.iter().map(comment).collect::<Vec<_>>(),
        "imported": ticket.imported,
        "import_source": ticket.import_source,
        "reopen_count": ticket.reopen_count,
        "version": ticket.version,
        "etag": ticket.etag,
        "occurred_at": time(ticket.occurred_at.as_ref()),
        "detected_at": time(ticket.detected_at.as_ref()),
        "created_at": time(ticket.created_at.as_ref()),
        "updated_at": time(ticket.updated_at.as_ref()),
        "acknowledged_at": time(ticket.acknowledged_at.as_ref()),
        "contained_at": time(ticket.contained_at.as_ref()),
        "eradicated_at": time(ticket.eradicated_at.as_ref()),
        "recovered_at": time(ticket.recovered_at.as_ref()),
        "resolved_at": time(ticket.resolved_at.as_ref()),
        "last_resolved_at": time(ticket.last_resolved_at.as_ref()),
        "closed_at": time(ticket.closed_at.as_ref()),
    })
}

pub fn comment(comment: &Comment) -> Value {
    json!({
        "id": comment.id,
        "ticket_id": comment.ticket_id,
        "author": comment.author,
        "body": comment.body,
        "created_at": time(comment.created_at.as_ref()),
    })
}

/// Converts a ledger record. `canonical` becomes the text of the hashed bytes (it is JSON), or
/// hex when those bytes are not UTF-8.
pub fn record(record: &Record) -> Value {
    let canonical = match std::str::from_utf8(&record.canonical) {
        Ok(text) => json!(text),
        Err(_) => json!({ "hex": hex::encode(&record.canonical) }),
    };
    json!({
        "seq": record.seq,
        "event_id": record.event_id,
        "action": record.action,
        "resource_id": record.resource_id,
        "actor": record.actor,
        "occurred_at": time(record.occurred_at.as_ref()),
        "recorded_at": time(record.recorded_at.as_ref()),
        "canonical": canonical,
        "leaf_hash": hex::encode(&record.leaf_hash),
        "chain_hash": hex::encode(&record.chain_hash),
    })
}

pub fn verification(response: &VerifyLedgerResponse) -> Value {
    json!({
        "intact": response.intact,
        "records_checked": response.records_checked,
        "first_bad_seq": response.first_bad_seq,
        "problem": response.problem,
        "head_seq": response.head_seq,
        "head_hash": hex::encode(&response.head_hash),
    })
}

pub fn response_metrics(response: &GetResponseMetricsResponse) -> Value {
    json!({ "groups": response.groups.iter().map(metrics_group).collect::<Vec<_>>() })
}

fn metrics_group(group: &MetricsGroup) -> Value {
    json!({
        "key": group.key,
        "population": population_name(group.population),
        "tickets": group.tickets,
        "ttd": stats(group.ttd.as_ref()),
        "tta": stats(group.tta.as_ref()),
        "ttc": stats(group.ttc.as_ref()),
        "ttr": stats(group.ttr.as_ref()),
    })
}

fn stats(stats: Option<&DurationStats>) -> Value {
    let Some(stats) = stats else {
        return Value::Null;
    };
    json!({
        "count": stats.count,
        "mean": stats.mean,
        "median": stats.median,
        "p90": stats.p90,
        "p95": stats.p95,
        "max": stats.max,
    })
}
