//! Import of a VERIS file through `TicketService.ImportTickets`.
//!
//! A blocking thread reads and maps the file into batches while up to
//! [`ImportOptions::concurrency`] batches are in flight on one HTTP/2 connection. Every record
//! carries the SHA-256 of its line, and the server skips digests it has seen, so an import
//! that is run again, or retried after a failure, creates no duplicate tickets.

mod reader;
mod summary;

use std::path::Path;
use std::time::{Duration, Instant};

use docket_proto::ticket::v1::import_result::Outcome;
use docket_proto::ticket::v1::ticket_service_client::TicketServiceClient;
use docket_proto::ticket::v1::{ImportTicketsRequest, ImportTicketsResponse};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tonic::Code;
use tonic::codegen::{Body, Bytes, StdError};

pub use reader::Batch;
pub use summary::{FIRST_LINES_KEPT, Origin, RejectionGroup, Summary};
use summary::Tally;

use crate::error::Error;

/// Records per request that the server accepts at most.
pub const MAX_BATCH_SIZE: usize = 1000;

/// Attempts per batch when the server is unavailable or a call times out.
const MAX_ATTEMPTS: u32 = 4;

/// Wait before the first retry; each later retry waits twice as long.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Records per ImportTickets call, 1 to [`MAX_BATCH_SIZE`].
    pub batch_size: usize,
    /// ImportTickets calls in flight at once, at least 1.
    pub concurrency: usize,
    /// Draws a progress bar on standard error (hidden when it is not a terminal).
    pub show_progress: bool,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions {
            batch_size: 250,
            concurrency: 4,
            show_progress: false,
        }
    }
}

/// Outcome of one batch.
struct Sent {
    batch: Batch,
    response: Option<ImportTicketsResponse>,
}

/// Imports the VERIS JSON Lines file at `path` (plain, or gzip-compressed, detected by its
/// first bytes) and returns the counts.
///
/// Lines that cannot be mapped are counted as rejected with their reason and never sent.
/// A batch that fails with UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED or RESOURCE_EXHAUSTED is
/// retried up to three times. Any other failure stops the import with
/// [`Error::ImportBatch`], which carries the counts up to then.
pub async fn import_veris<T>(client: TicketServiceClient<T>, path: &Path, options: &ImportOptions) -> Result<Summary, Error>
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone + Send + 'static,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
    T::Future: Send,
{
    let started = Instant::now();
    let batch_size = options.batch_size.clamp(1, MAX_BATCH_SIZE);
    let concurrency = options.concurrency.max(1);

    let file = std::fs::File::open(path).map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    let file_size = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let progress = progress_bar(options.show_progress, file_size);

    let (sender, receiver) = mpsc::channel(concurrency * 2);
    let owned_path = path.to_owned();
    let reader = tokio::task::spawn_blocking(move || reader::read_batches(owned_path, file, batch_size, sender));

    let batches = futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|batch| (batch, receiver)) });
    let completed = batches
        .map(|batch| {
            let client = client.clone();
            async move { send(client, batch?).await }
        })
        .buffer_unordered(concurrency);
    let mut completed = std::pin::pin!(completed);

    let mut tally = Tally::default();
    while let Some(result) = completed.next().await {
        let sent = match result {
            Ok(sent) => sent,
            Err(Error::ImportBatch {
                first_line,
                last_line,
                status,
                ..
            }) => {
                progress.abandon();
                let summary = Box::new(tally.finish(started.elapsed()));
                return Err(Error::ImportBatch {
                    first_line,
                    last_line,
                    status,
                    summary,
                });
            }
            Err(error) => {
                progress.abandon();
                return Err(error);
            }
        };
        progress.inc(sent.batch.input_bytes);
        count(&mut tally, sent)?;
        progress.set_message(format!(
            "imported {}, already present {}, rejected {}",
            tally.imported,
            tally.already_present,
            tally.rejected()
        ));
    }

    progress.finish_and_clear();
    reader.await.expect("the VERIS reader thread panicked");
    Ok(tally.finish(started.elapsed()))
}

fn progress_bar(show: bool, file_size: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let progress = ProgressBar::new(file_size);
    let style = ProgressStyle::with_template("{spinner} {elapsed_precise} [{wide_bar}] {percent:>3}% {msg}")
        .expect("the progress template is valid")
        .progress_chars("=> ");
    progress.set_style(style);
    progress.enable_steady_tick(Duration::from_millis(200));
    progress
}

/// Sends one batch, retrying transient failures; a batch with nothing to send is passed through.
async fn send<T>(mut client: TicketServiceClient<T>, batch: Batch) -> Result<Sent, Error>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    if batch.records.is_empty() {
        return Ok(Sent { batch, response: None });
    }

    let request = ImportTicketsRequest {
        records: batch.records.clone(),
    };
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempt = 1;
    loop {
        match client.import_tickets(request.clone()).await {
            Ok(response) => {
                return Ok(Sent {
                    batch,
                    response: Some(response.into_inner()),
                });
            }
            Err(status) if is_transient(status.code()) && attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(status) => {
                return Err(Error::ImportBatch {
                    first_line: batch.record_lines.first().copied().unwrap_or_default(),
                    last_line: batch.record_lines.last().copied().unwrap_or_default(),
                    status,
                    summary: Box::default(),
                });
            }
        }
    }
}

/// Codes after which the same request may succeed; a repeat is harmless because the server
/// recognises records it has already imported.
fn is_transient(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted)
}

/// Adds one batch to the tally.
fn count(tally: &mut Tally, sent: Sent) -> Result<(), Error> {
    let Sent { batch, response } = sent;
    tally.lines += batch.lines;
    tally.already_present += batch.repeated_lines;
    tally.repeated_lines += batch.repeated_lines;
    for (line, reason) in batch.rejections {
        tally.reject(Origin::Local, reason, line);
    }

    let Some(response) = response else {
        return Ok(());
    };
    if response.results.len() != batch.records.len() {
        return Err(Error::ImportResultCount {
            sent: batch.records.len(),
            returned: response.results.len(),
        });
    }
    for (result, line) in response.results.into_iter().zip(batch.record_lines) {
        match Outcome::try_from(result.outcome) {
            Ok(Outcome::Imported) => tally.imported += 1,
            Ok(Outcome::AlreadyPresent) => tally.already_present += 1,
            Ok(Outcome::Rejected) => {
                let reason = if result.error.is_empty() { "rejected without a reason".to_owned() } else { without_record_index(&result.error) };
                tally.reject(Origin::Server, reason, line);
            }
            Ok(Outcome::Unspecified) | Err(_) => {
                tally.reject(Origin::Server, format!("the server returned no known outcome ({})", result.outcome), line);
            }
        }
    }
    Ok(())
}

/// Removes the `records[N].` prefixes that the server puts before field names, so the same
/// problem at different positions of a batch groups under one reason.
fn without_record_index(reason: &str) -> String {
    let mut text = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(start) = rest.find("records[") {
        text.push_str(&rest[..start]);
        let after = &rest[start + "records[".len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match after[digits..].strip_prefix("].") {
            Some(tail) if digits > 0 => rest = tail,
            _ => {
                text.push_str("records[");
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_index_is_removed_from_server_reasons() {
        assert_eq!(
            without_record_index("records[3].title: title is empty; records[3].tags[0]: too long"),
            "title: title is empty; tags[0]: too long"
        );
        assert_eq!(without_record_index("records[x]. kept"), "records[x]. kept");
        assert_eq!(without_record_index("no prefix"), "no prefix");
    }
}
