//! The VERIS mapping on real VCDB records from data/vcdb, with every expected timestamp
//! worked out by hand. Unit lengths: a month is 30.4375 days and a year 365.25 days.

use std::collections::HashSet;
use std::io::Read;
use std::sync::OnceLock;

use chrono::{DateTime, SecondsFormat};
use docket_cli::veris::{self, MapError};
use docket_proto::ticket::v1::{Category, ImportRecord, Resolution, Severity, Status};
use sha2::{Digest, Sha256};

/// Returns every line of the shipped VCDB file without line terminators, read once per test binary.
fn vcdb_lines() -> &'static [Vec<u8>] {
    static LINES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    LINES.get_or_init(read_vcdb_lines)
}

fn read_vcdb_lines() -> Vec<Vec<u8>> {
    let path = docket_tests::data_path("vcdb/vcdb-veris.jsonl.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(file).read_to_end(&mut text).expect("the VCDB file decompresses");
    text.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()).map(<[u8]>::to_vec).collect()
}

/// Returns the line whose `plus.master_id` is `master_id`.
fn record_line(master_id: &str) -> Vec<u8> {
    let needle = format!("\"master_id\":\"{master_id}\"");
    vcdb_lines()
        .iter()
        .find(|line| std::str::from_utf8(line).unwrap().contains(&needle))
        .cloned()
        .unwrap_or_else(|| panic!("no VCDB record has master_id {master_id}"))
}

fn map(master_id: &str) -> ImportRecord {
    let line = record_line(master_id);
    veris::map_line(&line).unwrap_or_else(|error| panic!("record {master_id} does not map: {error}"))
}

fn rfc3339(timestamp: Option<&prost_types::Timestamp>) -> Option<String> {
    let timestamp = timestamp?;
    let instant = DateTime::from_timestamp(timestamp.seconds, timestamp.nanos as u32).expect("timestamp in range");
    Some(instant.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn assert_times(record: &ImportRecord, occurred: &str, detected: Option<&str>, contained: Option<&str>) {
    assert_eq!(rfc3339(record.occurred_at.as_ref()).as_deref(), Some(occurred), "occurred_at of {}", record.source_id);
    assert_eq!(rfc3339(record.detected_at.as_ref()).as_deref(), detected, "detected_at of {}", record.source_id);
    assert_eq!(rfc3339(record.contained_at.as_ref()).as_deref(), contained, "contained_at of {}", record.source_id);
}

#[test]
fn compromise_in_days_and_discovery_in_months() {
    // incident 2015-03-27; compromise 9 Days; discovery 3 Months.
    // 9 d + 3 × 30.4375 d = 100.3125 d = 100 d 7 h 30 m.
    // 2015-03-27 + 100 d: +4 → 03-31, +30 → 04-30, +31 → 05-31, +30 → 06-30, +5 → 07-05.
    let record = map("04f7e09d-93a3-4da1-9de9-85bd835ea01c");
    assert_times(&record, "2015-03-27T00:00:00Z", Some("2015-07-05T07:30:00Z"), None);
    assert_eq!(record.severity, Severity::Medium as i32, "Painful is medium");
    assert_eq!(record.detection_source, "internal");
}

#[test]
fn compromise_discovery_and_containment_without_day() {
    // incident 2017-09 (no day → 2017-09-01); compromise 1 Day + discovery 1 Day → 09-03;
    // containment 1 Day → 09-04.
    let record = map("67d16a57-890b-436e-89db-71c466392c41");
    assert_times(&record, "2017-09-01T00:00:00Z", Some("2017-09-03T00:00:00Z"), Some("2017-09-04T00:00:00Z"));
    assert_eq!(record.category, Category::HumanError as i32);
    assert_eq!(record.severity, Severity::Unspecified as i32, "no impact rating");
    assert_eq!(record.detection_source, "external");
}

#[test]
fn discovery_in_fractional_years_without_month() {
    // incident 2013 (no month or day → 2013-01-01); discovery 2.3 Years.
    // 2.3 × 365.25 d = 840.075 d = 840 d 1 h 48 m.
    // 2013-01-01 + 365 d → 2014-01-01, + 365 d → 2015-01-01 (730 d), + 110 d → 2015-04-21
    // (31 in January, 28 in February, 31 in March, 20 in April).
    let record = map("09286F8E-9859-4E28-A87D-4C12A0821ABF");
    assert_times(&record, "2013-01-01T00:00:00Z", Some("2015-04-21T01:48:00Z"), None);
    assert_eq!(record.category, Category::InsiderMisuse as i32);
}

#[test]
fn discovery_in_fractional_months_with_containment_unit_only() {
    // incident 2015-01-15; compromise NA; discovery 1.25 Months.
    // 1.25 × 30.4375 d = 38.046875 d = 38 d 1 h 7 m 30 s; 2015-01-15 + 38 d = 2015-02-22.
    // Containment gives the unit Days but no value, so contained_at stays unset.
    let record = map("18004172-9555-4137-B4D4-EC7F35212534");
    assert_times(&record, "2015-01-15T00:00:00Z", Some("2015-02-22T01:07:30Z"), None);
}

#[test]
fn unknown_compromise_and_containment_units() {
    // incident 2018-05-19; compromise Unknown adds nothing; discovery 1 Month = 30.4375 d
    // = 30 d 10 h 30 m → 2018-06-18T10:30; containment Unknown → unset.
    let record = map("00fd327e-6929-4b23-9c52-763bdee14080");
    assert_times(&record, "2018-05-19T00:00:00Z", Some("2018-06-18T10:30:00Z"), None);
    assert_eq!(record.category, Category::Malware as i32, "malware wins over hacking");
}

#[test]
fn monthly_spans_cross_leap_day() {
    // incident 2012-02 (→ 2012-02-01); compromise 7 Months + discovery 5 Months = 12 × 30.4375 d
    // = 365.25 d = 365 d 6 h. 2012-02-01 + 366 d is 2013-02-01 (2012-02-29 lies between),
    // so + 365 d is 2013-01-31.
    let record = map("1B0D36AE-C0E4-4486-9095-1FB4D13BCCF0");
    assert_times(&record, "2012-02-01T00:00:00Z", Some("2013-01-31T06:00:00Z"), None);
    assert_eq!(record.category, Category::UnauthorizedAccess as i32);
}

#[test]
fn compromise_in_years() {
    // incident 2017-08-09; compromise 6 Years = 2191.5 d; discovery 1 Day → 2192.5 d.
    // 2017-08-09 + 6 × 365 d + 1 d (2020-02-29 lies between) = 2023-08-09 after 2191 d, so
    // 2192 d is 2023-08-10, and half a day more is 12:00.
    let record = map("d57e04fb-3f76-4e1f-951e-8052cec3a0c0");
    assert_times(&record, "2017-08-09T00:00:00Z", Some("2023-08-10T12:00:00Z"), None);
}

#[test]
fn time_of_day_in_the_record() {
    // incident 2022-07-23 at "09:30:00 AM" (read as UTC); discovery 10.5 Hours → 20:00.
    let record = map("5f195e58-caac-4314-9c35-91e75d8669a3");
    assert_times(&record, "2022-07-23T09:30:00Z", Some("2022-07-23T20:00:00Z"), None);
    assert_eq!(record.category, Category::PhysicalTheftOrLoss as i32);
    assert_eq!(record.severity, Severity::Informational as i32, "Insignificant is informational");
}

#[test]
fn containment_without_discovery_stays_unset() {
    // incident 2014 (→ 2014-01-01); discovery Months without value, so neither detection
    // nor containment (4 Years after detection) is determined.
    let record = map("33fc392c-85a9-46c2-846e-b2c1a3c928e3");
    assert_times(&record, "2014-01-01T00:00:00Z", None, None);
}

#[test]
fn near_miss_maps_to_true_positive() {
    // incident 2018-06-03; containment 1 Day but no discovery, so it stays unset.
    let record = map("21dbdfb0-aada-431e-9c3d-8f8e80818cc0");
    assert_times(&record, "2018-06-03T00:00:00Z", None, None);
    assert_eq!(record.resolution, Resolution::TruePositive as i32);
    assert!(record.tags.iter().any(|tag| tag == "near-miss"), "tags {:?}", record.tags);
}

#[test]
fn containment_after_discovery_without_day() {
    // incident 2017-07 (→ 2017-07-01); discovery 2 Days → 07-03; containment 2 Days → 07-05.
    let record = map("004a9681-f5bb-4c26-9972-97969fcdf2b0");
    assert_times(&record, "2017-07-01T00:00:00Z", Some("2017-07-03T00:00:00Z"), Some("2017-07-05T00:00:00Z"));
}

#[test]
fn leap_day_in_a_common_year_is_rejected() {
    let line = record_line("e521f1e6-ee27-44b2-853b-2896db7c349f");
    let error = veris::map_line(&line).unwrap_err();
    assert_eq!(
        error,
        MapError::InvalidDate {
            year: 2022,
            month: 2,
            day: 29
        }
    );
}

#[test]
fn record_identity_and_fixed_fields() {
    let line = record_line("04f7e09d-93a3-4da1-9de9-85bd835ea01c");
    let record = veris::map_line(&line).unwrap();
    assert_eq!(record.digest, hex::encode(Sha256::digest(&line)));
    assert_eq!(record.source, "veris");
    assert_eq!(record.source_id, "04f7e09d-93a3-4da1-9de9-85bd835ea01c");
    assert_eq!(record.status, Status::Closed as i32);
    assert_eq!(record.resolution, Resolution::TruePositive as i32);
    assert!(!record.title.is_empty());
    assert!(record.title.chars().count() <= veris::TITLE_MAX_CHARS);
    assert!(record.reason.contains("VERIS"), "reason {:?}", record.reason);
    assert_eq!(record.resolved_at, None, "VERIS records no resolution time");
    assert_eq!(record.closed_at, None, "VERIS records no closing time");
}

#[test]
fn whole_file_maps_except_two_impossible_dates() {
    let lines = vcdb_lines();
    assert_eq!(lines.len(), 9414);

    let mut rejected = Vec::new();
    let mut digests = HashSet::new();
    for (index, line) in lines.iter().enumerate() {
        match veris::map_line(line) {
            Ok(record) => {
                digests.insert(record.digest);
            }
            Err(error) => rejected.push((index + 1, error)),
        }
    }

    // 2022-02-29 and 2018-02-29 do not exist.
    let rejected_lines: Vec<usize> = rejected.iter().map(|(line, _)| *line).collect();
    assert_eq!(rejected_lines, [9177, 9308], "rejections {rejected:?}");
    // Two records of the file are byte-identical to earlier lines.
    assert_eq!(digests.len(), 9410);
}
