//! `docket import veris` end to end. The first lines of the shipped VCDB file go through the
//! real ticket service and the outbox relay delivers the events. The metrics and audit
//! services must then agree with figures computed here straight from the raw JSON.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use docket_cli::import::{ImportOptions, Summary, import_veris};
use docket_proto::audit::v1::VerifyLedgerRequest;
use docket_proto::metrics::v1::{GetResponseMetricsRequest, GetResponseMetricsResponse, GroupBy};
use docket_tests::{Suite, eventually};
use serde_json::Value;

/// Lines taken from the start of the VCDB file.
const SLICE_LINES: usize = 1500;

/// Time the relay gets to deliver every import event.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Reads the first `SLICE_LINES` lines of data/vcdb/vcdb-veris.jsonl.gz without terminators.
fn slice_lines() -> Vec<Vec<u8>> {
    let path = docket_tests::data_path("vcdb/vcdb-veris.jsonl.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(file).read_to_end(&mut text).expect("the VCDB file decompresses");
    text.split(|byte| *byte == b'\n').take(SLICE_LINES).map(<[u8]>::to_vec).collect()
}

/// Writes the lines to `name` in `dir`, gzip-compressed when the name ends in `.gz`.
fn write_slice(dir: &Path, name: &str, lines: &[Vec<u8>]) -> PathBuf {
    let mut text = Vec::new();
    for line in lines {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    let path = dir.join(name);
    let file = std::fs::File::create(&path).expect("create the slice file");
    if name.ends_with(".gz") {
        let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        encoder.write_all(&text).expect("write the slice");
        encoder.finish().expect("finish the gzip stream");
    } else {
        let mut file = file;
        file.write_all(&text).expect("write the slice");
    }
    path
}

/// Seconds in one VERIS unit; a month is 365.25 / 12 days and a year 365.25 days.
fn unit_seconds(unit: &str) -> Option<f64> {
    let day = 86_400.0;
    match unit {
        "Seconds" => Some(1.0),
        "Minutes" => Some(60.0),
        "Hours" => Some(3_600.0),
        "Days" => Some(day),
        "Weeks" => Some(7.0 * day),
        "Months" => Some(365.25 / 12.0 * day),
        "Years" => Some(365.25 * day),
        _ => None,
    }
}

/// Length in seconds of `timeline.<name>` when it has a numeric value and a time unit.
fn span(record: &Value, name: &str) -> Option<f64> {
    let entry = &record["timeline"][name];
    let seconds_per_unit = unit_seconds(entry["unit"].as_str()?)?;
    Some(entry["value"].as_f64()? * seconds_per_unit)
}

/// Time to detect is compromise (when known) plus discovery, because both are measured
/// forward from the incident's start; time to contain is the containment span.
fn expected_ttd(record: &Value) -> Option<f64> {
    let discovery = span(record, "discovery")?;
    Some(span(record, "compromise").unwrap_or(0.0) + discovery)
}

fn expected_ttc(record: &Value) -> Option<f64> {
    expected_ttd(record)?;
    span(record, "containment")
}

/// Returns the category name that docs/import.md gives for a record's actions. The table is
/// written out again here, so a slip in either copy shows up.
fn expected_category(record: &Value) -> &'static str {
    let precedence = [
        "malware",
        "denial_of_service",
        "phishing",
        "unauthorized_access",
        "insider_misuse",
        "policy_violation",
        "physical_theft_or_loss",
        "human_error",
        "other",
    ];
    let mut suggested = HashSet::new();
    if let Some(actions) = record["action"].as_object() {
        for (kind, detail) in actions {
            let varieties: Vec<&str> = detail["variety"].as_array().map(|list| list.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let varieties = if varieties.is_empty() { vec![""] } else { varieties };
            for variety in varieties {
                let category = match kind.as_str() {
                    "malware" => "malware",
                    "hacking" if variety == "DoS" => "denial_of_service",
                    "hacking" => "unauthorized_access",
                    "social" if variety == "Bribery" => "insider_misuse",
                    "social" if variety == "Extortion" => "other",
                    "social" => "phishing",
                    "misuse" if variety.starts_with("Unapproved") || ["Email misuse", "Net misuse", "Illicit content"].contains(&variety) => {
                        "policy_violation"
                    }
                    "misuse" => "insider_misuse",
                    "physical" => "physical_theft_or_loss",
                    "error" if variety == "Loss" => "physical_theft_or_loss",
                    "error" => "human_error",
                    _ => "other",
                };
                suggested.insert(category);
            }
        }
    }
    precedence.into_iter().find(|category| suggested.contains(category)).unwrap_or("other")
}

/// Returns whether the record's derived detection or containment lies after `now`. The ticket
/// service rejects timestamps in the future, and some VERIS estimates reach past today.
/// The incident's time of day is ignored here: it moves the instants by less than a day,
/// which matters only for a record that ends within a day of `now`.
fn ends_in_future(record: &Value, now: DateTime<Utc>) -> bool {
    let incident = &record["timeline"]["incident"];
    let part = |name: &str, default: u64| incident[name].as_u64().unwrap_or(default) as u32;
    let date = NaiveDate::from_ymd_opt(part("year", 0) as i32, part("month", 1), part("day", 1)).expect("slice dates are valid");
    let occurred = date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    let Some(ttd) = expected_ttd(record) else {
        return false;
    };
    let last = ttd + expected_ttc(record).unwrap_or(0.0);
    occurred + chrono::TimeDelta::milliseconds((last * 1000.0) as i64) > now
}

/// Line numbers (from 1) of the distinct lines that the service must reject as ending in the future.
fn future_lines(lines: &[Vec<u8>]) -> BTreeSet<u64> {
    let now = Utc::now();
    let mut seen = HashSet::new();
    let mut future = BTreeSet::new();
    for (index, line) in lines.iter().enumerate() {
        if !seen.insert(line.clone()) {
            continue;
        }
        let record: Value = serde_json::from_slice(line).expect("VCDB lines are JSON");
        if ends_in_future(&record, now) {
            future.insert(index as u64 + 1);
        }
    }
    future
}

/// Line numbers of every rejection in a summary; each group keeps its first few.
fn rejected_lines(summary: &Summary) -> BTreeSet<u64> {
    summary.rejections.iter().flat_map(|group| group.first_lines.iter().copied()).collect()
}

/// Count and mean of a sample.
#[derive(Clone, Debug, Default)]
struct Sample {
    count: i64,
    sum: f64,
}

impl Sample {
    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
    }

    fn mean(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum / self.count as f64 }
    }
}

#[derive(Clone, Debug, Default)]
struct Expected {
    tickets: i64,
    ttd: Sample,
    ttc: Sample,
}

/// Expected figures per category (and under `all`) for the distinct lines of the slice that
/// are not in `skipped`.
fn expected_figures(lines: &[Vec<u8>], skipped: &BTreeSet<u64>) -> BTreeMap<String, Expected> {
    let mut seen = HashSet::new();
    let mut figures: BTreeMap<String, Expected> = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        if !seen.insert(line.clone()) || skipped.contains(&(index as u64 + 1)) {
            continue;
        }
        let record: Value = serde_json::from_slice(line).expect("VCDB lines are JSON");
        for key in ["all".to_owned(), expected_category(&record).to_owned()] {
            let entry = figures.entry(key).or_default();
            entry.tickets += 1;
            if let Some(ttd) = expected_ttd(&record) {
                entry.ttd.add(ttd);
            }
            if let Some(ttc) = expected_ttc(&record) {
                entry.ttc.add(ttc);
            }
        }
    }
    figures
}

async fn import(suite: &Suite, path: &Path) -> Summary {
    let client = docket_tests::ticket_client(suite.ticket.addr).await;
    import_veris(client, path, &ImportOptions::default())
        .await
        .unwrap_or_else(|error| panic!("import of {} failed: {error}", path.display()))
}

async fn response_metrics(suite: &Suite, group_by: GroupBy) -> GetResponseMetricsResponse {
    let mut client = docket_tests::metrics_client(suite.metrics.addr).await;
    let request = GetResponseMetricsRequest {
        group_by: group_by as i32,
        ..GetResponseMetricsRequest::default()
    };
    client.get_response_metrics(request).await.expect("GetResponseMetrics succeeds").into_inner()
}

/// Waits until the metrics projection counts `tickets` tickets.
async fn wait_for_metrics(suite: &Suite, tickets: i64) {
    let delivered = eventually(DELIVERY_TIMEOUT, || async move {
        let response = response_metrics(suite, GroupBy::Unspecified).await;
        let total: i64 = response.groups.iter().map(|group| group.tickets).sum();
        (total == tickets).then_some(())
    })
    .await;
    assert!(delivered.is_some(), "the metrics service never counted {tickets} tickets");
}

fn assert_close(actual: f64, expected: f64, label: &str) {
    let tolerance = 1e-6 * expected.abs().max(1.0);
    assert!((actual - expected).abs() <= tolerance, "{label}: got {actual}, expected {expected}");
}

/// Compares one response with the expected figures, summed over populations per key.
fn assert_matches(response: &GetResponseMetricsResponse, expected: &BTreeMap<String, Expected>, keys: &[String]) {
    let mut actual: BTreeMap<String, (i64, Sample, Sample)> = BTreeMap::new();
    for group in &response.groups {
        let entry = actual.entry(group.key.clone()).or_default();
        entry.0 += group.tickets;
        for (stats, sample) in [(&group.ttd, &mut entry.1), (&group.ttc, &mut entry.2)] {
            if let Some(stats) = stats {
                sample.count += stats.count;
                sample.sum += stats.mean * stats.count as f64;
            }
        }
    }

    let actual_keys: Vec<&String> = actual.keys().collect();
    let expected_keys: Vec<&String> = keys.iter().collect();
    assert_eq!(actual_keys, expected_keys, "group keys");
    for key in keys {
        let (tickets, ttd, ttc) = &actual[key];
        let want = &expected[key];
        assert_eq!(*tickets, want.tickets, "tickets in {key}");
        assert_eq!(ttd.count, want.ttd.count, "TTD count in {key}");
        assert_close(ttd.mean(), want.ttd.mean(), &format!("TTD mean in {key}"));
        assert_eq!(ttc.count, want.ttc.count, "TTC count in {key}");
        assert_close(ttc.mean(), want.ttc.mean(), &format!("TTC mean in {key}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_import_finds_every_record_present() {
    let suite = Suite::start().await;
    let lines = slice_lines();
    let distinct = lines.iter().collect::<HashSet<_>>().len() as u64;
    let dir = tempfile::tempdir().expect("temporary directory");

    let future = future_lines(&lines);
    let rejected = future.len() as u64;

    let first = import(&suite, &write_slice(dir.path(), "slice.jsonl.gz", &lines)).await;
    assert_eq!(first.lines, SLICE_LINES as u64);
    assert_eq!(first.rejected, rejected, "rejections {:?}", first.rejections);
    assert_eq!(rejected_lines(&first), future, "rejected lines");
    assert_eq!(first.imported, distinct - rejected);
    assert_eq!(first.repeated_lines, SLICE_LINES as u64 - distinct);
    assert_eq!(first.already_present, SLICE_LINES as u64 - distinct);

    // The same lines uncompressed: the digests cover the line bytes, not the file format.
    let second = import(&suite, &write_slice(dir.path(), "slice.jsonl", &lines)).await;
    assert_eq!(second.imported, 0);
    assert_eq!(second.rejected, rejected, "rejections {:?}", second.rejections);
    assert_eq!(second.already_present, SLICE_LINES as u64 - rejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_slice_matches_metrics_and_audit() {
    let suite = Suite::start().await;
    let lines = slice_lines();
    let future = future_lines(&lines);
    let expected = expected_figures(&lines, &future);
    let dir = tempfile::tempdir().expect("temporary directory");

    let summary = import(&suite, &write_slice(dir.path(), "slice.jsonl.gz", &lines)).await;
    assert_eq!(rejected_lines(&summary), future, "rejected lines");
    let imported = summary.imported as i64;
    assert_eq!(imported, expected["all"].tickets, "imported tickets");

    wait_for_metrics(&suite, imported).await;

    let overall = response_metrics(&suite, GroupBy::Unspecified).await;
    assert_matches(&overall, &expected, &["all".to_owned()]);

    let by_category = response_metrics(&suite, GroupBy::Category).await;
    let categories: Vec<String> = expected.keys().filter(|key| *key != "all").cloned().collect();
    assert_matches(&by_category, &expected, &categories);

    let mut audit = docket_tests::audit_client(suite.audit.addr).await;
    let recorded = eventually(DELIVERY_TIMEOUT, || {
        let mut audit = audit.clone();
        async move {
            let verification = audit.verify_ledger(VerifyLedgerRequest {}).await.ok()?.into_inner();
            (verification.records_checked >= imported).then_some(verification)
        }
    })
    .await;
    let verification = recorded.expect("the audit ledger never reached one record per imported ticket");
    assert!(verification.intact, "ledger problem at seq {}: {}", verification.first_bad_seq, verification.problem);
    assert_eq!(verification.records_checked, imported, "one ledger record per imported ticket");

    let again = audit.verify_ledger(VerifyLedgerRequest {}).await.expect("VerifyLedger succeeds").into_inner();
    assert_eq!(again.head_seq, imported);
}
