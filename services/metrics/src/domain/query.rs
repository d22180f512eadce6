//! The response-time query: its validated form and the assembly of its response.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use docket_proto::metrics::v1 as proto;
use uuid::Uuid;

use super::names::{self, Category, Severity};
use super::time;
use crate::error::{Error, FieldViolation};

/// Field that splits the tickets into groups; `All` puts every ticket in one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    All,
    Severity,
    Category,
    Team,
    Source,
    Resolution,
}

/// Population of a ticket, from its resolution. Declaration order is the order groups
/// are returned in, and matches the protobuf enum numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Population {
    /// Resolved as true positive, or not resolved.
    Incident,
    FalsePositive,
    Benign,
    Duplicate,
}

/// One of the four response-time metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Time to detect: occurred_at to detected_at.
    Ttd,
    /// Time to acknowledge: detected_at, else created_at, to acknowledged_at.
    Tta,
    /// Time to contain: detected_at, else created_at, to contained_at.
    Ttc,
    /// Time to resolve: detected_at, else created_at, to the latest resolution.
    Ttr,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::Ttd, Metric::Tta, Metric::Ttc, Metric::Ttr];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Ttd => "ttd",
            Metric::Tta => "tta",
            Metric::Ttc => "ttc",
            Metric::Ttr => "ttr",
        }
    }
}

/// Half-open interval [start, end) of end-event instants, where an unset bound is open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// Filters of a query. Each list contains group keys of its field (so `unrated` selects
/// tickets without a severity and `none` tickets without a team), and an empty list
/// selects every ticket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    pub severities: Vec<String>,
    pub categories: Vec<String>,
    pub teams: Vec<String>,
    pub sources: Vec<String>,
    pub imported: Option<bool>,
}

/// A validated GetResponseMetrics request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsQuery {
    pub window: Window,
    pub filters: Filters,
    pub group_by: GroupBy,
}

/// Validates a GetResponseMetrics request, collecting every invalid field.
pub fn parse_query(request: &proto::GetResponseMetricsRequest) -> Result<MetricsQuery, Error> {
    let mut violations = Vec::new();

    let start = parse_bound("start", request.start.as_ref(), &mut violations);
    let end = parse_bound("end", request.end.as_ref(), &mut violations);
    if let (Some(start), Some(end)) = (start, end)
        && start >= end
    {
        violations.push(FieldViolation::new(
            "end",
            format!("the window is empty because end {end} is not after start {start}; set end later than start"),
        ));
    }

    let severities = parse_enum_filter("severities", &request.severities, Severity::NAMES, names::UNRATED, &mut violations);
    let categories = parse_enum_filter("categories", &request.categories, Category::NAMES, names::NONE, &mut violations);
    let teams = parse_text_filter("teams", &request.teams, &mut violations);
    let sources = parse_text_filter("sources", &request.sources, &mut violations);

    let group_by = match proto::GroupBy::try_from(request.group_by) {
        Ok(proto::GroupBy::Unspecified) => GroupBy::All,
        Ok(proto::GroupBy::Severity) => GroupBy::Severity,
        Ok(proto::GroupBy::Category) => GroupBy::Category,
        Ok(proto::GroupBy::Team) => GroupBy::Team,
        Ok(proto::GroupBy::Source) => GroupBy::Source,
        Ok(proto::GroupBy::Resolution) => GroupBy::Resolution,
        Err(_) => {
            violations.push(FieldViolation::new(
                "group_by",
                format!("{} is not a GroupBy value; use 0 to 5 (unspecified, severity, category, team, source, resolution)", request.group_by),
            ));
            GroupBy::All
        }
    };

    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }
    Ok(MetricsQuery {
        window: Window { start, end },
        filters: Filters {
            severities,
            categories,
            teams,
            sources,
            imported: request.imported,
        },
        group_by,
    })
}

fn parse_bound(field: &str, timestamp: Option<&prost_types::Timestamp>, violations: &mut Vec<FieldViolation>) -> Option<DateTime<Utc>> {
    let timestamp = timestamp?;
    let instant = time::from_proto(timestamp);
    if instant.is_none() {
        violations.push(FieldViolation::new(field, time::invalid_description(timestamp)));
    }
    instant
}

fn parse_enum_filter(
    field: &str,
    values: &[String],
    allowed: &[&str],
    unset_key: &str,
    violations: &mut Vec<FieldViolation>,
) -> Vec<String> {
    for (index, value) in values.iter().enumerate() {
        if value != unset_key && !allowed.contains(&value.as_str()) {
            violations.push(FieldViolation::new(
                format!("{field}[{index}]"),
                format!("{value:?} is not allowed; use one of {}, or {unset_key} for tickets without a value", names::list(allowed)),
            ));
        }
    }
    values.to_vec()
}

fn parse_text_filter(field: &str, values: &[String], violations: &mut Vec<FieldViolation>) -> Vec<String> {
    for (index, value) in values.iter().enumerate() {
        if value.is_empty() {
            violations.push(FieldViolation::new(
                format!("{field}[{index}]"),
                format!("the value is empty; name a value, or use {} for tickets without one", names::NONE),
            ));
        }
    }
    values.to_vec()
}

/// Count, mean, median, p90, p95 and max of one metric in one group, in seconds. An
/// empty sample has every figure 0.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DurationStats {
    pub count: i64,
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
    pub p95: f64,
    pub max: f64,
}

/// Number of tickets in one group and population, as storage counts them.
#[derive(Clone, Debug, PartialEq)]
pub struct TicketCount {
    pub key: String,
    pub population: Population,
    pub tickets: i64,
}

/// Statistics of one metric in one group and population, as storage computes them.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    pub key: String,
    pub population: Population,
    pub stats: DurationStats,
}

/// Statistics of one metric over every group, plus the tickets whose duration was
/// negative, which are counted but deserve a look.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricResult {
    pub rows: Vec<MetricRow>,
    pub negative_count: i64,
    /// A sample of the tickets with a negative duration, for the warning.
    pub negative_ticket_ids: Vec<Uuid>,
}

/// Figures of one group and population in the response.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupReport {
    pub key: String,
    pub population: Population,
    pub tickets: i64,
    pub ttd: DurationStats,
    pub tta: DurationStats,
    pub ttc: DurationStats,
    pub ttr: DurationStats,
}

/// Joins the ticket counts and the four metric results into one report per group and
/// population, ordered by key and then population.
///
/// Every group that has a metric row also has a ticket count, because the metric
/// populations are subsets of the counted tickets. A group with tickets but no row for
/// a metric gets an empty sample for that metric.
pub fn assemble(counts: Vec<TicketCount>, results: [(Metric, MetricResult); 4]) -> Vec<GroupReport> {
    let mut groups: BTreeMap<(String, Population), GroupReport> = BTreeMap::new();
    for count in counts {
        groups.insert(
            (count.key.clone(), count.population),
            GroupReport {
                key: count.key,
                population: count.population,
                tickets: count.tickets,
                ttd: DurationStats::default(),
                tta: DurationStats::default(),
                ttc: DurationStats::default(),
                ttr: DurationStats::default(),
            },
        );
    }

    for (metric, result) in results {
        if result.negative_count > 0 {
            let sample: Vec<String> = result.negative_ticket_ids.iter().map(Uuid::to_string).collect();
            tracing::warn!(
                metric = metric.as_str(),
                count = result.negative_count,
                ticket_ids = %sample.join(","),
                "negative durations included in metric; the end timestamp precedes the start"
            );
        }
        for row in result.rows {
            let report = groups.entry((row.key.clone(), row.population)).or_insert_with(|| {
                tracing::warn!(metric = metric.as_str(), key = %row.key, "metric group without a ticket count");
                GroupReport {
                    key: row.key.clone(),
                    population: row.population,
                    tickets: 0,
                    ttd: DurationStats::default(),
                    tta: DurationStats::default(),
                    ttc: DurationStats::default(),
                    ttr: DurationStats::default(),
                }
            });
            let slot = match metric {
                Metric::Ttd => &mut report.ttd,
                Metric::Tta => &mut report.tta,
                Metric::Ttc => &mut report.ttc,
                Metric::Ttr => &mut report.ttr,
            };
            *slot = row.stats;
        }
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> proto::GetResponseMetricsRequest {
        proto::GetResponseMetricsRequest::default()
    }

    fn violated_fields(error: Error) -> Vec<String> {
        match error {
            Error::InvalidArgument(violations) => violations.into_iter().map(|violation| violation.field).collect(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn empty_request_is_ungrouped_and_unfiltered() {
        let query = parse_query(&request()).unwrap();
        assert_eq!(query.group_by, GroupBy::All);
        assert_eq!(query.filters, Filters::default());
        assert_eq!(query.window, Window::default());
    }

    #[test]
    fn unknown_severity_is_named_by_index() {
        let mut bad = request();
        bad.severities = vec!["high".into(), "urgent".into()];
        assert_eq!(violated_fields(parse_query(&bad).unwrap_err()), ["severities[1]"]);
    }

    #[test]
    fn unset_keys_are_accepted_as_filters() {
        let mut query = request();
        query.severities = vec!["unrated".into()];
        query.categories = vec!["none".into()];
        query.teams = vec!["none".into()];
        assert!(parse_query(&query).is_ok());
    }

    #[test]
    fn empty_window_is_rejected() {
        let mut bad = request();
        bad.start = Some(prost_types::Timestamp { seconds: 100, nanos: 0 });
        bad.end = Some(prost_types::Timestamp { seconds: 100, nanos: 0 });
        assert_eq!(violated_fields(parse_query(&bad).unwrap_err()), ["end"]);
    }

    #[test]
    fn unknown_group_by_is_rejected() {
        let mut bad = request();
        bad.group_by = 9;
        assert_eq!(violated_fields(parse_query(&bad).unwrap_err()), ["group_by"]);
    }

    #[test]
    fn assemble_orders_by_key_then_population() {
        let counts = vec![
            TicketCount { key: "low".into(), population: Population::Incident, tickets: 1 },
            TicketCount { key: "high".into(), population: Population::Benign, tickets: 2 },
            TicketCount { key: "high".into(), population: Population::Incident, tickets: 3 },
        ];
        let ttd = MetricResult {
            rows: vec![MetricRow {
                key: "high".into(),
                population: Population::Incident,
                stats: DurationStats { count: 1, mean: 5.0, median: 5.0, p90: 5.0, p95: 5.0, max: 5.0 },
            }],
            ..Default::default()
        };
        let results = [
            (Metric::Ttd, ttd),
            (Metric::Tta, MetricResult::default()),
            (Metric::Ttc, MetricResult::default()),
            (Metric::Ttr, MetricResult::default()),
        ];
        let reports = assemble(counts, results);
        let order: Vec<(&str, Population)> = reports.iter().map(|report| (report.key.as_str(), report.population)).collect();
        assert_eq!(order, [("high", Population::Incident), ("high", Population::Benign), ("low", Population::Incident)]);
        assert_eq!(reports[0].ttd.count, 1);
        assert_eq!(reports[1].ttd, DurationStats::default());
    }
}
