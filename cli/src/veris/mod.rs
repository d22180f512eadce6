//! Mapping of VERIS incident records to Docket import records.
//!
//! VERIS (Vocabulary for Event Recording and Incident Sharing, <https://verisframework.org>)
//! is the schema of the VERIS Community Database. Each line of a VERIS JSON Lines file is
//! one incident and becomes one [`ImportRecord`] with status `closed`. The functions here
//! are pure: they read bytes and return values, so the importer and the tests share them.

mod classify;
mod timeline;

use chrono::{DateTime, Utc};
use docket_proto::ticket::v1::{ImportRecord, Status};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use classify::{TITLE_MAX_CHARS, category, detection_source, resolution, severity, tags, title};
pub use timeline::{Timeline, parse_time_of_day, timeline};

/// Value of `ImportRecord.source` for VERIS records.
pub const SOURCE: &str = "veris";

/// Reason a line could not be mapped to an import record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("the line is a JSON {0}, not a VERIS record object")]
    NotAnObject(&'static str),
    #[error("timeline.incident.year is missing; VERIS requires the year the incident began")]
    MissingYear,
    #[error("{field} is {value}; expected {expected}")]
    Invalid {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("timeline.incident gives {year:04}-{month:02}-{day:02}, which is not a calendar date")]
    InvalidDate { year: u32, month: u32, day: u32 },
    #[error("timeline.incident.time is {value:?}; expected a UTC time of day such as \"04:05:00 PM\" or \"16:05\"")]
    InvalidTime { value: String },
    #[error("{field} puts the timestamp outside the supported range")]
    OutOfRange { field: &'static str },
    #[error("security_incident is missing; expected one of Confirmed, Suspected, Near miss, False positive")]
    MissingSecurityIncident,
}

impl MapError {
    fn invalid(field: &'static str, value: &Value, expected: &'static str) -> MapError {
        let mut value = value.to_string();
        if value.chars().count() > 60 {
            value = format!("{}…", value.chars().take(60).collect::<String>());
        }
        MapError::Invalid { field, value, expected }
    }
}

/// Returns the SHA-256 of `line` as 64 lowercase hex digits: the de-duplication key.
pub fn digest(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// Maps one VERIS record to an import record.
///
/// `line` contains the record's exact bytes without the line terminator. Its SHA-256 becomes
/// the digest, so the server recognises the same line when it is imported again. Timestamps the
/// record does not determine (see [`timeline()`]) stay unset, and so do the acknowledgement,
/// resolution and closing times, which VERIS does not record.
pub fn map_line(line: &[u8]) -> Result<ImportRecord, MapError> {
    let document: Value = serde_json::from_slice(line).map_err(|error| MapError::InvalidJson(error.to_string()))?;
    let record = match &document {
        Value::Object(record) => record,
        other => return Err(MapError::NotAnObject(json_type(other))),
    };

    let timeline = timeline(record)?;
    let resolution = resolution(record)?;
    let source_id = source_id(record);
    let summary = record.get("summary").and_then(Value::as_str).unwrap_or_default();
    let digest = digest(line);
    let title_id = if source_id.is_empty() { &digest[..12] } else { source_id.as_str() };

    Ok(ImportRecord {
        source: SOURCE.to_owned(),
        title: title(summary, title_id),
        description: summary.to_owned(),
        severity: severity(record) as i32,
        category: category(record) as i32,
        status: Status::Closed as i32,
        resolution: resolution as i32,
        detection_source: detection_source(record).to_owned(),
        tags: tags(record),
        indicators: Vec::new(),
        assets: Vec::new(),
        reason: reason(record),
        occurred_at: Some(timestamp(timeline.occurred_at)),
        detected_at: timeline.detected_at.map(timestamp),
        acknowledged_at: None,
        contained_at: timeline.contained_at.map(timestamp),
        resolved_at: None,
        closed_at: None,
        digest,
        source_id,
    })
}

/// Returns `plus.master_id`, else `incident_id`, else an empty string. `incident_id` alone is
/// not unique in VCDB, which is why the master id comes first.
fn source_id(record: &Map<String, Value>) -> String {
    let master_id = record.get("plus").and_then(|plus| plus.get("master_id")).and_then(Value::as_str);
    let incident_id = record.get("incident_id").and_then(Value::as_str);
    master_id
        .filter(|id| !id.trim().is_empty())
        .or(incident_id)
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// Explains the back-dated timestamps, for the audit trail.
fn reason(record: &Map<String, Value>) -> String {
    let collection = record.get("source_id").and_then(Value::as_str).unwrap_or("unnamed source");
    format!("imported from VERIS ({collection}); timestamps from the VERIS timeline")
}

fn timestamp(instant: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.timestamp(),
        nanos: instant.timestamp_subsec_micros() as i32 * 1000,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docket_proto::ticket::v1::{Category, Resolution, Severity};

    const RECORD: &str = r#"{"action":{"misuse":{"variety":["Privilege abuse"]}},"discovery_method":{"internal":{"variety":["Reported by employee"]}},"impact":{"overall_rating":"Painful"},"incident_id":"INC-A","plus":{"master_id":"MASTER-A"},"security_incident":"Confirmed","source_id":"vcdb","summary":"A clerk misused access. It was found.","timeline":{"incident":{"day":9,"month":4,"year":2010},"discovery":{"unit":"Days","value":3}},"victim":{"country":["US"]}}"#;

    #[test]
    fn record_maps_every_field() {
        let record = map_line(RECORD.as_bytes()).unwrap();
        assert_eq!(record.source, "veris");
        assert_eq!(record.source_id, "MASTER-A");
        assert_eq!(record.digest, digest(RECORD.as_bytes()));
        assert_eq!(record.title, "A clerk misused access");
        assert_eq!(record.description, "A clerk misused access. It was found.");
        assert_eq!(record.severity, Severity::Medium as i32);
        assert_eq!(record.category, Category::InsiderMisuse as i32);
        assert_eq!(record.status, Status::Closed as i32);
        assert_eq!(record.resolution, Resolution::TruePositive as i32);
        assert_eq!(record.detection_source, "internal");
        assert_eq!(record.tags, ["veris", "action:misuse", "country:us"]);
        assert_eq!(record.reason, "imported from VERIS (vcdb); timestamps from the VERIS timeline");
        // 2010-04-09 + 3 days.
        assert_eq!(record.occurred_at.map(|t| t.seconds), Some(1_270_771_200));
        assert_eq!(record.detected_at.map(|t| t.seconds), Some(1_270_771_200 + 3 * 86_400));
        assert_eq!(record.contained_at, None);
        assert_eq!(record.resolved_at, None);
        assert_eq!(record.closed_at, None);
    }

    #[test]
    fn digest_is_sha256_of_the_line() {
        assert_eq!(digest(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn false_positive_maps_to_false_positive() {
        let line = RECORD.replace("\"Confirmed\"", "\"False positive\"");
        let record = map_line(line.as_bytes()).unwrap();
        assert_eq!(record.resolution, Resolution::FalsePositive as i32);
    }

    #[test]
    fn incident_id_is_used_without_master_id() {
        let line = RECORD.replace(r#""plus":{"master_id":"MASTER-A"},"#, "");
        let record = map_line(line.as_bytes()).unwrap();
        assert_eq!(record.source_id, "INC-A");
    }

    #[test]
    fn invalid_json_is_rejected() {
        let error = map_line(b"{\"action\":").unwrap_err();
        assert!(matches!(error, MapError::InvalidJson(_)), "{error:?}");
    }

    #[test]
    fn array_line_is_rejected() {
        assert_eq!(map_line(b"[1,2]").unwrap_err(), MapError::NotAnObject("array"));
    }

    #[test]
    fn record_without_timeline_is_rejected() {
        let error = map_line(br#"{"security_incident":"Confirmed"}"#).unwrap_err();
        assert_eq!(error, MapError::MissingYear);
    }
}
