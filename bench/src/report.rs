//! The results of one run: the header with the machine and PostgreSQL settings, the table
//! on stdout and the JSON document.

use chrono::{DateTime, Utc};
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use crate::Plan;
use crate::cluster::Context;
use crate::machine::{Machine, PostgresSettings};
use crate::steps::audit::AuditResults;
use crate::steps::auth_cost::AuthCostResults;
use crate::steps::import::ImportResults;
use crate::steps::metrics::MetricsResults;
use crate::steps::tickets::TicketResults;

#[derive(Debug, Serialize)]
pub struct Results {
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub machine: Machine,
    pub postgres: PostgresSettings,
    pub plan: Plan,
    pub tickets: Option<TicketResults>,
    pub metrics: Option<MetricsResults>,
    pub audit: Option<AuditResults>,
    pub import: Option<ImportResults>,
    pub auth_cost: Option<AuthCostResults>,
    /// The rows of the printed table.
    pub table: Vec<Row>,
    /// Steps that failed, with their errors.
    pub failures: Vec<String>,
}

/// One line of the summary table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub step: &'static str,
    pub measurement: String,
    pub docket: String,
    /// The raw limit measured side by side, where the step has one.
    pub limit: String,
    pub ratio: Option<f64>,
    pub target: String,
    /// Whether the target is met; `None` for rows without a target.
    pub met: Option<bool>,
}

pub fn print_header(machine: &Machine, postgres: &PostgresSettings, plan: &Plan, context: &Context) {
    println!("docket-bench, {} run {}", plan.mode, context.run_id);
    println!(
        "machine: {} cores, {}, {} GiB, kernel {}, load average {:.2} at start",
        machine.cores, machine.cpu_model, machine.memory_gib, machine.kernel, machine.load_average_at_start
    );
    let settings: Vec<String> = postgres.settings.iter().map(|(name, value)| format!("{name}={value}")).collect();
    println!("postgres: {} at {}, {}", postgres.version, postgres.server, settings.join(", "));
    println!("binaries: {}", context.bin_dir.display());
}

fn rate(summary: &crate::load::LoadSummary) -> String {
    let mut text = format!("{:.0}/s, p50 {:.1} ms, p99 {:.1} ms", summary.per_second, summary.p50_ms, summary.p99_ms);
    if summary.errors > 0 {
        text.push_str(&format!(", {} errors", summary.errors));
    }
    text
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio_row(step: &'static str, measurement: String, side: &crate::steps::tickets::SideBySide, target: Option<f64>) -> Row {
    Row {
        step,
        measurement,
        docket: rate(&side.docket),
        limit: rate(&side.raw),
        ratio: Some(side.ratio),
        target: target.map(|minimum| format!("ratio >= {minimum}")).unwrap_or_default(),
        met: target.map(|minimum| side.ratio >= minimum && side.docket.errors == 0),
    }
}

fn plain_row(step: &'static str, measurement: impl Into<String>, docket: String, target: &str, met: Option<bool>) -> Row {
    Row {
        step,
        measurement: measurement.into(),
        docket,
        limit: String::new(),
        ratio: None,
        target: target.to_owned(),
        met,
    }
}

/// Builds the summary rows of every step that ran.
pub fn rows(results: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Some(tickets) = &results.tickets {
        for side in &tickets.create {
            let target = (side.clients == 64).then_some(0.8);
            rows.push(ratio_row("1", format!("CreateTicket, {} clients", side.clients), side, target));
        }
        for side in &tickets.get {
            rows.push(ratio_row("2", format!("GetTicket, {} clients", side.clients), side, Some(0.5)));
        }
        let propagation = &tickets.propagation;
        rows.push(plain_row(
            "3",
            "outbox backlog left by steps 1 and 2",
            format!(
                "{} events delivered in {:.1} s ({:.0} events/s to the slower receiver)",
                propagation.backlog_events,
                propagation.backlog_seconds,
                propagation.backlog_events as f64 / propagation.backlog_seconds.max(0.001)
            ),
            "",
            None,
        ));
        let measurement = format!("propagation at {:.0} creates/s", propagation.achieved_per_second);
        rows.push(plain_row(
            "3",
            format!("{measurement}, to the ledger"),
            format!("p50 {:.1} ms, p99 {:.1} ms", propagation.ledger_p50_ms, propagation.ledger_p99_ms),
            "p99 < 250 ms",
            Some(propagation.ledger_p99_ms < 250.0 && propagation.failed_creates == 0),
        ));
        rows.push(plain_row(
            "3",
            format!("{measurement}, to the projection"),
            format!("p50 {:.1} ms, p99 {:.1} ms", propagation.metrics_p50_ms, propagation.metrics_p99_ms),
            "p99 < 250 ms",
            Some(propagation.metrics_p99_ms < 250.0 && propagation.failed_creates == 0),
        ));
    }
    if let Some(metrics) = &results.metrics {
        for (label, summary, limit_ms) in [
            ("whole history", &metrics.whole_history, 250.0),
            ("last 30 days", &metrics.last_30_days, 20.0),
        ] {
            rows.push(plain_row(
                "4",
                format!("GetResponseMetrics, {} tickets, {label}, by severity", metrics.tickets),
                format!("p50 {:.1} ms, p99 {:.1} ms ({} calls)", summary.p50_ms, summary.p99_ms, summary.calls),
                &format!("p99 < {limit_ms} ms"),
                Some(summary.p99_ms < limit_ms),
            ));
        }
        rows.push(plain_row(
            "4",
            format!("first GetResponseMetrics after seeding {} tickets", metrics.tickets),
            format!("{:.0} ms, which includes loading them into memory", metrics.whole_history.first_call_ms),
            "",
            None,
        ));
        rows.push(plain_row(
            "4",
            format!("docket-metrics resident memory, {} tickets held", metrics.tickets),
            format!("{:.1} MiB, peak {:.1} MiB", mib(metrics.memory.rss_kib), mib(metrics.memory.peak_kib)),
            "",
            None,
        ));
    }
    if let Some(audit) = &results.audit {
        rows.push(plain_row(
            "5",
            format!("AppendEvents, batches of {}, {} clients", crate::steps::audit::BATCH_SIZE, audit.append.clients),
            format!("{:.0} events/s, p99 {:.1} ms per batch", audit.append_events_per_second, audit.append.p99_ms),
            ">= 2000 events/s",
            Some(audit.append_events_per_second >= 2000.0 && audit.append.errors == 0),
        ));
        let slowest = audit.verify_seconds.iter().copied().fold(0.0, f64::max);
        let runs: Vec<String> = audit.verify_seconds.iter().map(|seconds| format!("{seconds:.1}")).collect();
        rows.push(plain_row(
            "5",
            format!("VerifyLedger, {} records", audit.ledger_records),
            format!("{} s", runs.join(", ")),
            "< 10 s",
            Some(slowest < 10.0 && audit.verify_intact),
        ));
    }
    if let Some(import) = &results.import {
        rows.push(plain_row(
            "6",
            format!("VERIS import, {} tickets", import.tickets),
            format!("{:.1} s (ledger caught up at {:.1} s)", import.import_seconds, import.until_ledger_seconds),
            "< 30 s",
            Some(import.import_seconds < 30.0),
        ));
    }
    if let Some(tickets) = &results.tickets {
        for memory in &tickets.memory {
            rows.push(plain_row(
                "7",
                format!("{} resident memory, idle", memory.service),
                format!("{:.1} MiB", mib(memory.idle.rss_kib)),
                "< 50 MiB",
                Some(mib(memory.idle.rss_kib) < 50.0),
            ));
            rows.push(plain_row(
                "7",
                format!("{} peak resident memory, create load", memory.service),
                format!("{:.1} MiB", mib(memory.peak_under_load.peak_kib)),
                "< 200 MiB",
                Some(mib(memory.peak_under_load.peak_kib) < 200.0),
            ));
        }
    }
    if let Some(cost) = &results.auth_cost {
        for (label, latency, mean, p50) in [
            ("repeated token", &cost.repeated_token, cost.repeated_token_cost_mean_us, cost.repeated_token_cost_p50_us),
            ("new token each call", &cost.new_token, cost.new_token_cost_mean_us, cost.new_token_cost_p50_us),
        ] {
            rows.push(Row {
                step: "8",
                measurement: format!("authentication + tracing per call, {label}, {} calls", cost.iterations),
                docket: format!("+{mean:.1} us mean, +{p50:.1} us p50"),
                limit: format!("bare {:.1} us, layered {:.1} us mean", cost.bare.mean, latency.mean),
                ratio: None,
                target: "< 50 us".to_owned(),
                met: Some(mean < 50.0),
            });
        }
        let floor = &cost.signature_check;
        rows.push(Row {
            step: "8",
            measurement: "Ed25519 signature check alone, per new token".to_owned(),
            docket: format!("{:.1} us mean, {:.1} us p50", floor.mean, floor.p50),
            limit: format!("new token costs {:.1} us beyond it", cost.new_token_cost_mean_us - floor.mean),
            ratio: None,
            target: String::new(),
            met: None,
        });
    }
    rows
}

pub fn print_table(results: &Results) {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::ASCII_MARKDOWN);
    table.set_content_arrangement(ContentArrangement::Disabled);
    table.set_header(["step", "measurement", "Docket", "raw limit", "ratio", "target", "met"]);
    for row in &results.table {
        table.add_row([
            row.step.to_owned(),
            row.measurement.clone(),
            row.docket.clone(),
            row.limit.clone(),
            row.ratio.map(|ratio| format!("{ratio:.2}")).unwrap_or_default(),
            row.target.clone(),
            match row.met {
                Some(true) => "yes".to_owned(),
                Some(false) => "NO".to_owned(),
                None => String::new(),
            },
        ]);
    }
    println!("{table}");
}

/// Columns of the CPU table for the PostgreSQL sessions of each database. The raw limit's
/// database contains the ticket service's tables, so it shares their column.
pub const TICKET_TABLES: &str = "PostgreSQL, ticket tables";
pub const AUDIT_TABLES: &str = "PostgreSQL, audit tables";
pub const METRICS_TABLES: &str = "PostgreSQL, metrics tables";

/// Parts of the CPU table, in column order.
const CPU_PARTS: [&str; 8] = [
    "docket-ticket",
    "docket-audit",
    "docket-metrics",
    TICKET_TABLES,
    AUDIT_TABLES,
    METRICS_TABLES,
    "load generator",
    "rest of the machine",
];

/// Prints where the CPU time of each load point went, in microseconds per call, so a
/// ratio below its target can be traced to the part that costs the most.
pub fn print_cpu_table(results: &Results) {
    let mut points: Vec<(&str, String, &str, &crate::load::LoadSummary)> = Vec::new();
    if let Some(tickets) = &results.tickets {
        for (step, name, sides) in [("1", "CreateTicket", &tickets.create), ("2", "GetTicket", &tickets.get)] {
            for side in sides {
                points.push((step, format!("{name}, {} clients", side.clients), "Docket", &side.docket));
                points.push((step, format!("{name}, {} clients", side.clients), "raw limit", &side.raw));
            }
        }
    }
    if let Some(audit) = &results.audit {
        points.push(("5", format!("AppendEvents, batches of {}", crate::steps::audit::BATCH_SIZE), "Docket", &audit.append));
    }
    if points.iter().all(|(_, _, _, summary)| summary.cpu.is_none()) {
        return;
    }

    let mut table = Table::new();
    table.load_preset(comfy_table::presets::ASCII_MARKDOWN);
    table.set_content_arrangement(ContentArrangement::Disabled);
    let mut header = vec!["step", "load point", "side", "cores busy"];
    header.extend(CPU_PARTS);
    header.push("total");
    table.set_header(header);
    for (step, point, side, summary) in points {
        let Some(cpu) = &summary.cpu else { continue };
        let mut row = vec![step.to_owned(), point, side.to_owned(), format!("{:.0} %", cpu.busy_percent)];
        for part in CPU_PARTS {
            row.push(
                cpu.shares
                    .iter()
                    .find(|share| share.part == part)
                    .map(|share| format!("{:.0}", share.micros_per_call))
                    .unwrap_or_default(),
            );
        }
        row.push(format!("{:.0}", cpu.total_micros_per_call));
        table.add_row(row);
    }
    println!("CPU time per call, in microseconds (all cores, from /proc):");
    println!("{table}");
}
