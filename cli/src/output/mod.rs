//! Rendering of responses as tables for people or JSON for programs.

pub mod json;

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use docket_proto::metrics::v1::Population;
use docket_proto::ticket::v1::{AssetKind, Category, CompromiseStatus, IndicatorType, Resolution, Severity, Status};

use crate::error::Error;

/// Returns a table with the project's look and the given header.
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic).set_header(header);
    table
}

/// Writes `text` and a newline to standard output.
pub fn print(text: impl std::fmt::Display) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    Ok(())
}

/// Writes `value` as pretty JSON to standard output.
pub fn print_json(value: &serde_json::Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).expect("a JSON value always serializes");
    print(text)
}

/// Formats a count with its noun, for example `1 ticket` or `3 tickets`.
pub fn count(count: usize, noun: &str) -> String {
    if count == 1 { format!("1 {noun}") } else { format!("{count} {noun}s") }
}

/// Formats a protobuf timestamp as RFC 3339 in UTC with the precision it has; empty when unset.
pub fn timestamp(value: Option<&prost_types::Timestamp>) -> String {
    value.and_then(instant).map(|instant| instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)).unwrap_or_default()
}

pub fn instant(value: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(value.seconds, u32::try_from(value.nanos).ok()?)
}

pub fn to_timestamp(instant: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.timestamp(),
        nanos: instant.timestamp_subsec_nanos() as i32,
    }
}

/// Formats a duration in seconds with its two largest units, for example `3d 4h`, `5h 12m`,
/// `42s` or `350ms`.
pub fn human_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return seconds.to_string();
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    let seconds = seconds.abs();
    if seconds < 1.0 {
        let millis = (seconds * 1000.0).round() as u64;
        return if millis == 0 { "0s".to_owned() } else { format!("{sign}{millis}ms") };
    }

    let total = seconds.round() as u64;
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut parts = Vec::new();
    let mut rest = total;
    for (name, length) in units {
        let amount = rest / length;
        rest %= length;
        if amount > 0 || !parts.is_empty() {
            parts.push((amount, name));
        }
        if parts.len() == 2 {
            break;
        }
    }
    let text: Vec<String> = parts.iter().filter(|(amount, _)| *amount > 0).map(|(amount, name)| format!("{amount}{name}")).collect();
    format!("{sign}{}", text.join(" "))
}

/// Turns a protobuf enum name such as `SEVERITY_HIGH` into the lowercase name `high`.
fn lowercase_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_ascii_lowercase()
}

pub fn severity_name(value: i32) -> String {
    match Severity::try_from(value) {
        Ok(Severity::Unspecified) => "unrated".to_owned(),
        Ok(severity) => lowercase_name(severity.as_str_name(), "SEVERITY_"),
        Err(_) => format!("unknown ({value})"),
    }
}

pub fn category_name(value: i32) -> String {
    match Category::try_from(value) {
        Ok(Category::Unspecified) => String::new(),
        Ok(category) => lowercase_name(category.as_str_name(), "CATEGORY_"),
        Err(_) => format!("unknown ({value})"),
    }
}

pub fn status_name(value: i32) -> String {
    match Status::try_from(value) {
        Ok(Status::Unspecified) => String::new(),
        Ok(status) => lowercase_name(status.as_str_name(), "STATUS_"),
        Err(_) => format!("unknown ({value})"),
    }
}

pub fn resolution_name(value: i32) -> String {
    match Resolution::try_from(value) {
        Ok(Resolution::Unspecified) => String::new(),
        Ok(resolution) => lowercase_name(resolution.as_str_name(), "RESOLUTION_"),
        Err(_) => format!("unknown ({value})"),
    }
}

pub fn indicator_type_name(value: i32) -> String {
    match IndicatorType::try_from(value) {
        Ok(kind) => lowercase_name(kind.as_str_name(), "INDICATOR_TYPE_"),
        Err(_) => format!("unknown ({value})"),
    }
}

pub fn asset_kind_name(value: i32) -> String {
    match AssetKind::try_from(value) {
        Ok(kind) => lowercase_name(kind.as_str_name(), "ASSET_KIND_"),
        Err(_) => format!("unknown ({value})"),
    }
}

pub fn compromise_name(value: i32) -> String {
    match CompromiseStatus::try_from(value) {
        Ok(CompromiseStatus::Unspecified) => String::new(),
        Ok(status) => lowercase_name(status.as_str_name(), "COMPROMISE_STATUS_"),
        Err(_) => format!("unknown ({value})"),
    }
}

pub fn population_name(value: i32) -> String {
    match Population::try_from(value) {
        Ok(population) => lowercase_name(population.as_str_name(), "POPULATION_"),
        Err(_) => format!("unknown ({value})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_two_largest_units() {
        let cases = [
            (0.0, "0s"),
            (0.35, "350ms"),
            (42.0, "42s"),
            (90.0, "1m 30s"),
            (3_600.0, "1h"),
            (3_661.0, "1h 1m"),
            (273_600.0, "3d 4h"),
            (86_400.0 * 400.0 + 59.0, "400d"),
            (86_460.0, "1d"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(seconds), expected, "{seconds} s");
        }
    }

    #[test]
    fn enum_names_are_lowercase() {
        assert_eq!(severity_name(Severity::High as i32), "high");
        assert_eq!(severity_name(0), "unrated");
        assert_eq!(category_name(Category::UnauthorizedAccess as i32), "unauthorized_access");
        assert_eq!(status_name(Status::Closed as i32), "closed");
        assert_eq!(resolution_name(Resolution::FalsePositive as i32), "false_positive");
        assert_eq!(population_name(Population::FalsePositive as i32), "false_positive");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let value = prost_types::Timestamp {
            seconds: 1_270_771_200,
            nanos: 5_000,
        };
        assert_eq!(timestamp(Some(&value)), "2010-04-09T00:00:00.000005Z");
        assert_eq!(timestamp(None), "");
    }
}
