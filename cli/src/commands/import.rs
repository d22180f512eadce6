//! `docket import ...`

use super::{Context, Outcome};
use crate::args::ImportCommand;
use crate::error::Error;
use crate::import::{ImportOptions, Origin, Summary, import_veris};
use crate::output;

pub async fn run(context: &Context, command: ImportCommand) -> Result<Outcome, Error> {
    let ImportCommand::Veris {
        file,
        batch_size,
        concurrency,
    } = command;
    let options = ImportOptions {
        batch_size: batch_size as usize,
        concurrency: concurrency as usize,
        show_progress: true,
    };
    let client = context.ticket_client().await?;
    let summary = import_veris(client, &file, &options).await?;

    if context.global.json {
        let value = serde_json::to_value(&summary).expect("a summary always serializes");
        output::print_json(&value)?;
    } else {
        output::print(summary_text(&summary))?;
    }
    Ok(Outcome::Success)
}

/// Formats the closing summary of an import for people.
pub fn summary_text(summary: &Summary) -> String {
    let mut text = format!(
        "read {} records in {:.1} s\nimported:        {}\nalready present: {}",
        summary.lines,
        summary.elapsed.as_secs_f64(),
        summary.imported,
        summary.already_present
    );
    if summary.repeated_lines > 0 {
        text.push_str(&format!(" (of which {} repeat an earlier line of the file)", summary.repeated_lines));
    }
    text.push_str(&format!("\nrejected:        {}", summary.rejected));
    for group in &summary.rejections {
        let origin = match group.origin {
            Origin::Local => "not sent",
            Origin::Server => "by the server",
        };
        let lines: Vec<String> = group.first_lines.iter().map(u64::to_string).collect();
        let more = if group.count as usize > group.first_lines.len() { ", ..." } else { "" };
        let noun = if group.count == 1 { "line" } else { "lines" };
        text.push_str(&format!(
            "\n  {} × {} ({origin}; {noun} {}{more})",
            group.count,
            group.reason,
            lines.join(", ")
        ));
    }
    text
}
