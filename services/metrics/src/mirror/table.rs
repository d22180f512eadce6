//! The in-memory copy of `incidents` and the response-time statistics computed from it.
//!
//! A row keeps only what the statistics use: five group keys as small ids, two flags and
//! six instants in microseconds, about 70 bytes per ticket. Rows sit in blocks of
//! [`BLOCK_ROWS`], and each block records, per metric, the earliest and latest end
//! instant of its rows, so a windowed query skips the blocks that cannot hold a sample.
//! New rows are appended in creation order, which keeps a block's end instants close
//! together. Ticket counts per combination of keys are kept as rows change, because
//! `tickets` ignores the window and would otherwise need every row read.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use diesel::data_types::PgTimestamp;
use uuid::Uuid;

use super::stats;
use crate::domain::query::{DurationStats, Filters, GroupBy, Metric, MetricResult, MetricRow, MetricsQuery, Population, TicketCount};
use crate::storage::changes::IncidentRow;

/// Rows per block of the end-instant summaries.
const BLOCK_ROWS: usize = 1024;

/// Tickets named in the warning about negative durations, per metric and query.
const NEGATIVE_SAMPLE_SIZE: usize = 20;

/// An instant that is not set.
const UNSET: i64 = i64::MIN;

/// Fields a query groups and filters by, in the order of [`Keys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyField {
    Severity,
    Category,
    Team,
    Source,
    Resolution,
}

impl KeyField {
    const ALL: [KeyField; 5] = [KeyField::Severity, KeyField::Category, KeyField::Team, KeyField::Source, KeyField::Resolution];

    fn index(self) -> usize {
        self as usize
    }

    /// Group key of a ticket without a value in this field.
    fn unset_key(self) -> &'static str {
        match self {
            KeyField::Severity => "unrated",
            _ => "none",
        }
    }
}

/// Group-key ids of one ticket, indexed by [`KeyField::index`].
type Keys = [u32; 5];

/// Ids of group keys, per field, in the order the keys were first seen. Keys are only
/// ever added, so an id keeps its meaning for the life of the process.
#[derive(Clone, Debug, Default)]
pub struct KeyDictionary {
    names: [Vec<String>; 5],
    ids: [HashMap<String, u32>; 5],
}

impl KeyDictionary {
    fn id(&mut self, field: KeyField, value: &str) -> u32 {
        let key = if value.is_empty() { field.unset_key() } else { value };
        let index = field.index();
        if let Some(&id) = self.ids[index].get(key) {
            return id;
        }
        let id = u32::try_from(self.names[index].len()).expect("fewer than 2^32 distinct keys");
        self.names[index].push(key.to_owned());
        self.ids[index].insert(key.to_owned(), id);
        id
    }

    /// Number of keys of each field so far.
    pub fn counts(&self) -> [usize; 5] {
        [0, 1, 2, 3, 4].map(|index| self.names[index].len())
    }

    /// Copies of the keys of each field added after the first `counts` ones.
    pub fn names_after(&self, counts: [usize; 5]) -> [Vec<String>; 5] {
        [0, 1, 2, 3, 4].map(|index| self.names[index][counts[index]..].to_vec())
    }

    /// Makes the compact form of a row read from the database.
    pub fn compact(&mut self, incident: &IncidentRow) -> (Uuid, Row) {
        let micros = |instant: Option<PgTimestamp>| instant.map_or(UNSET, unix_micros);
        let row = Row {
            keys: [
                self.id(KeyField::Severity, &incident.severity),
                self.id(KeyField::Category, &incident.category),
                self.id(KeyField::Team, &incident.team),
                self.id(KeyField::Source, &incident.detection_source),
                self.id(KeyField::Resolution, &incident.resolution),
            ],
            imported: incident.imported,
            resolved: matches!(incident.status.as_str(), "resolved" | "closed"),
            created: unix_micros(incident.created_at),
            occurred: micros(incident.occurred_at),
            detected: micros(incident.detected_at),
            acknowledged: micros(incident.acknowledged_at),
            contained: micros(incident.contained_at),
            last_resolved: micros(incident.last_resolved_at),
        };
        (incident.ticket_id, row)
    }
}

/// Microseconds from 2000-01-01, PostgreSQL's epoch, to the Unix epoch.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Converts a PostgreSQL instant to microseconds since the Unix epoch. `infinity` and
/// `-infinity` become [`UNSET`], because no duration can be measured from them, and the
/// far ends of PostgreSQL's range saturate instead of overflowing.
fn unix_micros(instant: PgTimestamp) -> i64 {
    match instant.0 {
        i64::MAX | i64::MIN => UNSET,
        micros => micros.saturating_add(POSTGRES_EPOCH_MICROS),
    }
}

/// One ticket in compact form. Instants are microseconds since the Unix epoch, or
/// [`UNSET`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    keys: Keys,
    imported: bool,
    /// Status `resolved` or `closed`, the condition of the TTR population.
    resolved: bool,
    created: i64,
    occurred: i64,
    detected: i64,
    acknowledged: i64,
    contained: i64,
    last_resolved: i64,
}

impl Row {
    /// End and start instants of `metric` when the ticket is in its population, with the
    /// definitions of docs/metrics.md.
    fn span(&self, metric: Metric) -> Option<(i64, i64)> {
        let detected_else_created = if self.detected == UNSET { self.created } else { self.detected };
        let (end, start) = match metric {
            Metric::Ttd => (self.detected, self.occurred),
            Metric::Tta => (self.acknowledged, detected_else_created),
            Metric::Ttc => (self.contained, detected_else_created),
            Metric::Ttr if self.resolved => (self.last_resolved, detected_else_created),
            Metric::Ttr => return None,
        };
        (end != UNSET && start != UNSET).then_some((end, start))
    }
}

/// Earliest and latest end instant of one metric within a block. A block's range only
/// widens when a row changes, so it may be wider than its rows but never narrower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EndRange {
    earliest: i64,
    latest: i64,
}

impl EndRange {
    const EMPTY: EndRange = EndRange { earliest: i64::MAX, latest: i64::MIN };

    fn widen(&mut self, end: i64) {
        self.earliest = self.earliest.min(end);
        self.latest = self.latest.max(end);
    }
}

/// Ticket-count bucket: the group keys and the imported flag.
type CountKey = (Keys, bool);

/// The in-memory copy of the projection.
#[derive(Debug, Default)]
pub struct Table {
    slots: HashMap<Uuid, u32>,
    ids: Vec<Uuid>,
    rows: Vec<Row>,
    /// Per block of [`BLOCK_ROWS`] rows, the end-instant range of each metric in the
    /// order of [`Metric::ALL`].
    blocks: Vec<[EndRange; 4]>,
    counts: HashMap<CountKey, i64>,
    /// Group keys per field, a copy of the dictionary's names as of the latest apply.
    names: [Vec<String>; 5],
}

impl Table {
    /// Number of tickets held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Stores one refresh: drops the deleted tickets, then replaces a known ticket's row
    /// in place and appends the new tickets in creation order. `added_names` are the keys
    /// the dictionary that made the rows gained since the previous apply.
    pub fn apply(&mut self, deleted: &[Uuid], mut changed: Vec<(Uuid, Row)>, added_names: [Vec<String>; 5]) {
        for (names, added) in self.names.iter_mut().zip(added_names) {
            names.extend(added);
        }
        for ticket_id in deleted {
            self.remove(ticket_id);
        }
        for &(ticket_id, row) in &changed {
            if let Some(&slot) = self.slots.get(&ticket_id) {
                self.replace(slot as usize, row);
            }
        }
        // Filtering in place keeps a first load of many rows from needing a second buffer.
        changed.retain(|(ticket_id, _)| !self.slots.contains_key(ticket_id));
        changed.sort_by_key(|(ticket_id, row)| (row.created, *ticket_id));
        for (ticket_id, row) in changed {
            self.append(ticket_id, row);
        }
    }

    fn replace(&mut self, slot: usize, row: Row) {
        let old = std::mem::replace(&mut self.rows[slot], row);
        self.count(&old, -1);
        self.count(&row, 1);
        self.widen(slot, &row);
    }

    fn append(&mut self, ticket_id: Uuid, row: Row) {
        let slot = self.rows.len();
        self.slots.insert(ticket_id, u32::try_from(slot).expect("fewer than 2^32 tickets"));
        self.ids.push(ticket_id);
        self.rows.push(row);
        if slot.is_multiple_of(BLOCK_ROWS) {
            self.blocks.push([EndRange::EMPTY; 4]);
        }
        self.count(&row, 1);
        self.widen(slot, &row);
    }

    /// Drops a ticket by moving the last row into its slot.
    fn remove(&mut self, ticket_id: &Uuid) {
        let Some(slot) = self.slots.remove(ticket_id) else {
            return;
        };
        let slot = slot as usize;
        let row = self.rows.swap_remove(slot);
        self.ids.swap_remove(slot);
        self.count(&row, -1);
        if slot < self.rows.len() {
            let moved = self.rows[slot];
            self.slots.insert(self.ids[slot], slot as u32);
            self.widen(slot, &moved);
        }
        if self.rows.len().is_multiple_of(BLOCK_ROWS) {
            self.blocks.pop();
        }
    }

    fn count(&mut self, row: &Row, change: i64) {
        let key = (row.keys, row.imported);
        let tickets = self.counts.entry(key).or_default();
        *tickets += change;
        if *tickets == 0 {
            self.counts.remove(&key);
        }
    }

    fn widen(&mut self, slot: usize, row: &Row) {
        let block = &mut self.blocks[slot / BLOCK_ROWS];
        for (range, metric) in block.iter_mut().zip(Metric::ALL) {
            if let Some((end, _)) = row.span(metric) {
                range.widen(end);
            }
        }
    }

    /// Ticket counts and the four metrics' statistics per group and population, for the
    /// `assemble` step of the query module.
    pub fn compute(&self, query: &MetricsQuery) -> (Vec<TicketCount>, [(Metric, MetricResult); 4]) {
        let plan = Plan::new(self, query);
        (self.ticket_counts(&plan), self.metric_results(&plan))
    }

    fn ticket_counts(&self, plan: &Plan) -> Vec<TicketCount> {
        let mut totals: BTreeMap<(u32, Population), i64> = BTreeMap::new();
        for ((keys, imported), tickets) in &self.counts {
            if plan.selects(keys, *imported) {
                *totals.entry((plan.group(keys), plan.population(keys))).or_default() += tickets;
            }
        }
        totals
            .into_iter()
            .map(|((group, population), tickets)| TicketCount {
                key: plan.group_name(self, group),
                population,
                tickets,
            })
            .collect()
    }

    fn metric_results(&self, plan: &Plan) -> [(Metric, MetricResult); 4] {
        // Samples per group and population, indexed by group × 4 + population.
        let mut samples: Vec<[Vec<i64>; 4]> = vec![Default::default(); plan.group_count * 4];
        let mut negatives: [NegativeSample; 4] = Default::default();

        for (block_index, block) in self.blocks.iter().enumerate() {
            let mut in_window = [false; 4];
            for (overlaps, range) in in_window.iter_mut().zip(block) {
                *overlaps = range.earliest <= range.latest && range.latest >= plan.window_start && range.earliest < plan.window_end;
            }
            if !in_window.contains(&true) {
                continue;
            }
            let first = block_index * BLOCK_ROWS;
            let last = (first + BLOCK_ROWS).min(self.rows.len());
            for slot in first..last {
                let row = &self.rows[slot];
                if !plan.selects(&row.keys, row.imported) {
                    continue;
                }
                let index = plan.group(&row.keys) as usize * 4 + plan.population(&row.keys) as usize;
                for (position, metric) in Metric::ALL.into_iter().enumerate() {
                    if !in_window[position] {
                        continue;
                    }
                    let Some((end, start)) = row.span(metric) else { continue };
                    if end < plan.window_start || end >= plan.window_end {
                        continue;
                    }
                    // Instants near the ends of PostgreSQL's range could overflow.
                    let duration = end.saturating_sub(start);
                    if duration < 0 {
                        negatives[position].add(self.ids[slot]);
                    }
                    samples[index][position].push(duration);
                }
            }
        }

        let mut results = Metric::ALL.map(|metric| (metric, MetricResult::default()));
        for (index, group_samples) in samples.iter_mut().enumerate() {
            let group = (index / 4) as u32;
            let population = POPULATIONS[index % 4];
            for (position, values) in group_samples.iter_mut().enumerate() {
                // A group without a sample for this metric gets no row; `assemble` gives
                // it an empty one when the group has tickets.
                if values.is_empty() {
                    continue;
                }
                let stats: DurationStats = stats::describe(values);
                results[position].1.rows.push(MetricRow {
                    key: plan.group_name(self, group),
                    population,
                    stats,
                });
            }
        }
        for ((_, result), negative) in results.iter_mut().zip(negatives) {
            result.negative_count = negative.count;
            result.negative_ticket_ids = negative.into_sorted_ids();
        }
        results
    }
}

/// Populations in the order of their numbers in [`Population`].
const POPULATIONS: [Population; 4] = [Population::Incident, Population::FalsePositive, Population::Benign, Population::Duplicate];

/// Population of a resolution group key.
fn population_of(resolution: &str) -> Population {
    match resolution {
        "false_positive" => Population::FalsePositive,
        "benign" => Population::Benign,
        "duplicate" => Population::Duplicate,
        _ => Population::Incident,
    }
}

/// Negative durations of one metric: how many, and the smallest ticket ids among them.
#[derive(Debug, Default)]
struct NegativeSample {
    count: i64,
    /// Max-heap of at most [`NEGATIVE_SAMPLE_SIZE`] ids, so the largest is dropped first.
    smallest: BinaryHeap<Uuid>,
}

impl NegativeSample {
    fn add(&mut self, ticket_id: Uuid) {
        self.count += 1;
        if self.smallest.len() < NEGATIVE_SAMPLE_SIZE {
            self.smallest.push(ticket_id);
        } else if self.smallest.peek().is_some_and(|largest| ticket_id < *largest) {
            self.smallest.pop();
            self.smallest.push(ticket_id);
        }
    }

    fn into_sorted_ids(self) -> Vec<Uuid> {
        self.smallest.into_sorted_vec()
    }
}

/// A query translated to key ids: which keys each filter admits, which field groups, and
/// the window in microseconds.
struct Plan {
    /// Per field, whether each key id passes the filter; `None` when the field has none.
    admitted: [Option<Vec<bool>>; 5],
    imported: Option<bool>,
    group_by: Option<KeyField>,
    group_count: usize,
    /// Population of each resolution key id.
    populations: Vec<Population>,
    window_start: i64,
    window_end: i64,
}

impl Plan {
    fn new(table: &Table, query: &MetricsQuery) -> Plan {
        let filters: &Filters = &query.filters;
        let lists: [&Vec<String>; 5] = [&filters.severities, &filters.categories, &filters.teams, &filters.sources, &EMPTY_LIST];
        let admitted = KeyField::ALL.map(|field| {
            let list = lists[field.index()];
            (!list.is_empty()).then(|| {
                let values: HashSet<&str> = list.iter().map(String::as_str).collect();
                table.names[field.index()].iter().map(|name| values.contains(name.as_str())).collect()
            })
        });
        let group_by = match query.group_by {
            GroupBy::All => None,
            GroupBy::Severity => Some(KeyField::Severity),
            GroupBy::Category => Some(KeyField::Category),
            GroupBy::Team => Some(KeyField::Team),
            GroupBy::Source => Some(KeyField::Source),
            GroupBy::Resolution => Some(KeyField::Resolution),
        };
        let group_count = group_by.map_or(1, |field| table.names[field.index()].len().max(1));
        // Stored instants are whole microseconds, so rounding a bound up to the next one
        // keeps exactly the instants at or after it.
        let micros = |instant: Option<chrono::DateTime<chrono::Utc>>| {
            instant.map(|instant| instant.timestamp_micros() + i64::from(instant.timestamp_subsec_nanos() % 1000 != 0))
        };
        Plan {
            admitted,
            imported: filters.imported,
            group_by,
            group_count,
            populations: table.names[KeyField::Resolution.index()].iter().map(|name| population_of(name)).collect(),
            window_start: micros(query.window.start).unwrap_or(i64::MIN),
            window_end: micros(query.window.end).unwrap_or(i64::MAX),
        }
    }

    fn selects(&self, keys: &Keys, imported: bool) -> bool {
        self.imported.is_none_or(|expected| expected == imported)
            && self
                .admitted
                .iter()
                .zip(keys)
                .all(|(admitted, &key)| admitted.as_ref().is_none_or(|admitted| admitted[key as usize]))
    }

    fn group(&self, keys: &Keys) -> u32 {
        self.group_by.map_or(0, |field| keys[field.index()])
    }

    fn population(&self, keys: &Keys) -> Population {
        self.populations[keys[KeyField::Resolution.index()] as usize]
    }

    fn group_name(&self, table: &Table, group: u32) -> String {
        match self.group_by {
            None => "all".to_owned(),
            Some(field) => table.names[field.index()][group as usize].clone(),
        }
    }
}

static EMPTY_LIST: Vec<String> = Vec::new();

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::domain::query::Window;

    fn at(seconds: i64) -> Option<DateTime<Utc>> {
        Some(Utc.timestamp_opt(1_767_225_600 + seconds, 0).unwrap())
    }

    /// Returns the instant `seconds` after 2026-01-01 as PostgreSQL stores it.
    fn stamp(seconds: i64) -> Option<PgTimestamp> {
        Some(PgTimestamp((1_767_225_600 + seconds) * 1_000_000 - POSTGRES_EPOCH_MICROS))
    }

    fn incident(severity: &str) -> IncidentRow {
        IncidentRow {
            ticket_id: Uuid::now_v7(),
            severity: severity.to_owned(),
            category: "malware".to_owned(),
            status: "new".to_owned(),
            resolution: String::new(),
            team: String::new(),
            detection_source: "edr".to_owned(),
            imported: false,
            created_at: stamp(0).unwrap(),
            occurred_at: None,
            detected_at: None,
            acknowledged_at: None,
            contained_at: None,
            last_resolved_at: None,
        }
    }

    fn detected(severity: &str, occurred: i64, detected: i64) -> IncidentRow {
        IncidentRow {
            occurred_at: stamp(occurred),
            detected_at: stamp(detected),
            ..incident(severity)
        }
    }

    fn table_of(incidents: &[IncidentRow]) -> (Table, KeyDictionary) {
        let mut dictionary = KeyDictionary::default();
        let mut table = Table::default();
        let rows = incidents.iter().map(|incident| dictionary.compact(incident)).collect();
        table.apply(&[], rows, dictionary.names_after([0; 5]));
        (table, dictionary)
    }

    fn query(group_by: GroupBy) -> MetricsQuery {
        MetricsQuery {
            window: Window::default(),
            filters: Filters::default(),
            group_by,
        }
    }

    fn ttd(results: &[(Metric, MetricResult); 4]) -> &MetricResult {
        &results[0].1
    }

    #[test]
    fn groups_and_counts_follow_the_keys() {
        let (table, _) = table_of(&[detected("high", 0, 60), detected("high", 0, 120), detected("", 0, 30), incident("low")]);
        let (counts, results) = table.compute(&query(GroupBy::Severity));
        let counted: Vec<(&str, i64)> = counts.iter().map(|count| (count.key.as_str(), count.tickets)).collect();
        assert_eq!(counted, [("high", 2), ("unrated", 1), ("low", 1)]);
        let high = ttd(&results).rows.iter().find(|row| row.key == "high").unwrap();
        assert_eq!((high.stats.count, high.stats.median, high.stats.max), (2, 60.0, 120.0));
        assert!(ttd(&results).rows.iter().all(|row| row.key != "low"), "an undetected ticket has no TTD");
    }

    #[test]
    fn replaced_row_changes_group_and_window() {
        let first = detected("high", 0, 60);
        let (mut table, mut dictionary) = table_of(std::slice::from_ref(&first));
        let moved = IncidentRow {
            severity: "low".to_owned(),
            detected_at: stamp(5_000_000),
            ..first.clone()
        };
        let known = dictionary.counts();
        let change = vec![dictionary.compact(&moved)];
        table.apply(&[], change, dictionary.names_after(known));
        assert_eq!(table.len(), 1);

        let (counts, results) = table.compute(&query(GroupBy::Severity));
        assert_eq!(counts.iter().map(|count| count.key.as_str()).collect::<Vec<_>>(), ["low"]);
        assert_eq!(ttd(&results).rows[0].stats.max, 5_000_000.0);

        // The old end instant lies in this window, the new one does not.
        let early = MetricsQuery {
            window: Window { start: at(0), end: at(1000) },
            ..query(GroupBy::All)
        };
        assert!(ttd(&table.compute(&early).1).rows.is_empty());
    }

    #[test]
    fn windows_skip_blocks_but_not_rows() {
        // Three blocks and a bit, detections one minute apart.
        let incidents: Vec<IncidentRow> = (0..(3 * BLOCK_ROWS as i64 + 10))
            .map(|minute| IncidentRow {
                created_at: stamp(minute * 60).unwrap(),
                ..detected("medium", minute * 60 - 30, minute * 60)
            })
            .collect();
        let (table, _) = table_of(&incidents);
        let window = MetricsQuery {
            window: Window { start: at(1000 * 60), end: at(2100 * 60) },
            ..query(GroupBy::All)
        };
        let (_, results) = table.compute(&window);
        assert_eq!(ttd(&results).rows[0].stats.count, 1100);
    }

    #[test]
    fn deleted_rows_leave_counts_and_samples() {
        let incidents: Vec<IncidentRow> = (0..(BLOCK_ROWS as i64 + 1)).map(|second| detected("low", 0, second + 1)).collect();
        let (mut table, _) = table_of(&incidents);
        let deleted = [incidents[0].ticket_id, incidents[BLOCK_ROWS].ticket_id, Uuid::now_v7()];
        table.apply(&deleted, Vec::new(), Default::default());

        assert_eq!(table.len(), BLOCK_ROWS - 1);
        assert_eq!(table.blocks.len(), 1);
        let (counts, results) = table.compute(&query(GroupBy::All));
        assert_eq!(counts[0].tickets, BLOCK_ROWS as i64 - 1);
        // Detections at 1 s to 1025 s, of which the first and the last are deleted.
        assert_eq!(ttd(&results).rows[0].stats.max, BLOCK_ROWS as f64);
        // The row moved into the freed slot is still found by its id.
        let moved = incidents[BLOCK_ROWS - 1].ticket_id;
        table.apply(&[moved], Vec::new(), Default::default());
        assert_eq!(table.len(), BLOCK_ROWS - 2);
        assert_eq!(ttd(&table.compute(&query(GroupBy::All)).1).rows[0].stats.max, BLOCK_ROWS as f64 - 1.0);
    }

    #[test]
    fn filters_admit_group_keys_including_unset() {
        let (table, _) = table_of(&[detected("high", 0, 60), detected("", 0, 30)]);
        let unrated = MetricsQuery {
            filters: Filters { severities: vec!["unrated".to_owned()], ..Filters::default() },
            ..query(GroupBy::All)
        };
        let (counts, results) = table.compute(&unrated);
        assert_eq!(counts[0].tickets, 1);
        assert_eq!(ttd(&results).rows[0].stats.max, 30.0);

        let unknown = MetricsQuery {
            filters: Filters { teams: vec!["red".to_owned()], ..Filters::default() },
            ..query(GroupBy::All)
        };
        let (counts, results) = table.compute(&unknown);
        assert!(counts.is_empty());
        assert!(ttd(&results).rows.is_empty());
    }

    #[test]
    fn negative_sample_keeps_the_smallest_ids_in_order() {
        let incidents: Vec<IncidentRow> = (0..30).map(|_| detected("low", 100, 40)).collect();
        let (table, _) = table_of(&incidents);
        let (_, results) = table.compute(&query(GroupBy::All));
        let mut expected: Vec<Uuid> = incidents.iter().map(|incident| incident.ticket_id).collect();
        expected.sort();
        expected.truncate(NEGATIVE_SAMPLE_SIZE);
        assert_eq!(ttd(&results).negative_count, 30);
        assert_eq!(ttd(&results).negative_ticket_ids, expected);
    }

    #[test]
    fn resolution_and_status_select_ttr() {
        let resolved = IncidentRow {
            status: "closed".to_owned(),
            resolution: "false_positive".to_owned(),
            last_resolved_at: stamp(600),
            ..incident("high")
        };
        let reopened = IncidentRow {
            status: "investigating".to_owned(),
            resolution: "false_positive".to_owned(),
            last_resolved_at: stamp(900),
            ..incident("high")
        };
        let (table, _) = table_of(&[resolved, reopened]);
        let (counts, results) = table.compute(&query(GroupBy::All));
        assert_eq!((counts[0].population, counts[0].tickets), (Population::FalsePositive, 2));
        let ttr = &results[3].1.rows;
        assert_eq!((ttr[0].population, ttr[0].stats.count, ttr[0].stats.max), (Population::FalsePositive, 1, 600.0));
    }
}
