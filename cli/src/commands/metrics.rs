//! `docket metrics ...`

use docket_proto::metrics::v1::{DurationStats, GetResponseMetricsRequest, GroupBy};

use super::{Context, Outcome, rpc_error};
use crate::args::{MetricsCommand, ResponseArgs};
use crate::error::Error;
use crate::output::{self, json};

pub async fn run(context: &Context, command: MetricsCommand) -> Result<Outcome, Error> {
    match command {
        MetricsCommand::Response(args) => response(context, args).await,
    }
}

async fn response(context: &Context, args: ResponseArgs) -> Result<Outcome, Error> {
    let request = GetResponseMetricsRequest {
        start: args.from.map(output::to_timestamp),
        end: args.to.map(output::to_timestamp),
        severities: args.severities,
        categories: args.categories,
        teams: args.teams,
        sources: args.sources,
        group_by: args.group_by.map(GroupBy::from).unwrap_or(GroupBy::Unspecified) as i32,
        imported: args.imported,
    };
    let mut client = context.metrics_client().await?;
    let response = client
        .get_response_metrics(request)
        .await
        .map_err(rpc_error("GetResponseMetrics"))?
        .into_inner();

    if context.global.json {
        output::print_json(&json::response_metrics(&response))?;
        return Ok(Outcome::Success);
    }
    let mut table = output::table(["GROUP", "POPULATION", "TICKETS", "TTD", "TTA", "TTC", "TTR"]);
    for group in &response.groups {
        table.add_row([
            group.key.clone(),
            output::population_name(group.population),
            group.tickets.to_string(),
            stats_cell(group.ttd.as_ref()),
            stats_cell(group.tta.as_ref()),
            stats_cell(group.ttc.as_ref()),
            stats_cell(group.ttr.as_ref()),
        ]);
    }
    output::print(table)?;
    output::print("Each cell: count, mean, median, p90, p95, max (nearest-rank percentiles).")?;
    Ok(Outcome::Success)
}

/// Formats one metric's statistics one per line, or a dash when no ticket has the metric.
fn stats_cell(stats: Option<&DurationStats>) -> String {
    match stats {
        Some(stats) if stats.count > 0 => format!(
            "count {}\nmean {}\nmedian {}\np90 {}\np95 {}\nmax {}",
            stats.count,
            output::human_duration(stats.mean),
            output::human_duration(stats.median),
            output::human_duration(stats.p90),
            output::human_duration(stats.p95),
            output::human_duration(stats.max),
        ),
        _ => "-".to_owned(),
    }
}
