//! Reading a VERIS JSON Lines file, plain or gzip-compressed, into batches of mapped records.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use docket_proto::ticket::v1::ImportRecord;
use flate2::bufread::MultiGzDecoder;
use tokio::sync::mpsc;

use crate::error::Error;
use crate::veris;

/// The first two bytes of every gzip member (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Consecutive lines of the input, mapped and ready to send.
#[derive(Debug, Default)]
pub struct Batch {
    /// Records to send, with the line number of each at the same index.
    pub records: Vec<ImportRecord>,
    pub record_lines: Vec<u64>,
    /// Lines that could not be mapped, with the reason.
    pub rejections: Vec<(u64, String)>,
    /// Lines whose bytes repeat an earlier line of the same file; they are not sent again.
    pub repeated_lines: u64,
    /// Non-blank lines in this batch.
    pub lines: u64,
    /// Bytes of the input file consumed for this batch (compressed bytes for a gzip file).
    pub input_bytes: u64,
}

/// A `Read` that counts the bytes it has returned, so progress can be shown in file bytes
/// even when the reader above it decompresses.
struct CountingReader {
    inner: File,
    count: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.count.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

/// Reads `file` line by line, maps each line with [`veris::map_line`] and sends a batch
/// whenever `batch_size` records are ready. Blank lines are skipped. Runs on a blocking
/// thread and stops early when the receiver is dropped.
pub fn read_batches(path: PathBuf, file: File, batch_size: usize, sender: mpsc::Sender<Result<Batch, Error>>) {
    let count = Arc::new(AtomicU64::new(0));
    let mut counted = BufReader::new(CountingReader {
        inner: file,
        count: Arc::clone(&count),
    });

    let is_gzip = match counted.fill_buf() {
        Ok(start) => start.starts_with(&GZIP_MAGIC),
        Err(source) => {
            let _ = sender.blocking_send(Err(Error::Read { path, line: 1, source }));
            return;
        }
    };
    let mut reader: Box<dyn BufRead + Send> = if is_gzip {
        Box::new(BufReader::new(MultiGzDecoder::new(counted)))
    } else {
        Box::new(counted)
    };

    // Digests of the lines mapped so far, to recognise a line repeated within the file.
    let mut seen: HashSet<String> = HashSet::new();
    let mut batch = Batch::default();
    let mut bytes_sent = 0_u64;
    let mut line = Vec::new();
    let mut line_number = 0_u64;

    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => line_number += 1,
            Err(source) => {
                let line = line_number + 1;
                let _ = sender.blocking_send(Err(Error::Read { path, line, source }));
                return;
            }
        }

        let content = without_terminator(&line);
        if content.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        batch.lines += 1;

        match veris::map_line(content) {
            Ok(record) => {
                if seen.insert(record.digest.clone()) {
                    batch.records.push(record);
                    batch.record_lines.push(line_number);
                } else {
                    batch.repeated_lines += 1;
                }
            }
            Err(error) => batch.rejections.push((line_number, error.to_string())),
        }

        // Lines that map to nothing still end a batch now and then, so progress moves.
        if batch.records.len() >= batch_size || batch.lines >= 4 * batch_size as u64 {
            let consumed = count.load(Ordering::Relaxed);
            batch.input_bytes = consumed - bytes_sent;
            bytes_sent = consumed;
            if sender.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                return;
            }
        }
    }

    batch.input_bytes = count.load(Ordering::Relaxed) - bytes_sent;
    let _ = sender.blocking_send(Ok(batch));
}

/// Strips a trailing `\n` or `\r\n`: the terminator is not part of the record, so a file
/// converted between LF and CRLF keeps its digests.
fn without_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const RECORD: &str = r#"{"security_incident":"Confirmed","timeline":{"incident":{"year":2014}}}"#;

    /// Runs the reader over `bytes` and returns every batch it sends.
    fn read_all(bytes: &[u8], batch_size: usize) -> Vec<Result<Batch, Error>> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        let (sender, mut receiver) = mpsc::channel(64);
        read_batches(file.path().to_owned(), file.reopen().unwrap(), batch_size, sender);
        let mut batches = Vec::new();
        while let Some(batch) = receiver.blocking_recv() {
            batches.push(batch);
        }
        batches
    }

    fn sample_file() -> Vec<u8> {
        let other = RECORD.replace("2014", "2015");
        format!("{RECORD}\n\n{{not json\r\n{RECORD}\n{other}").into_bytes()
    }

    #[test]
    fn plain_file_batches_records_rejections_and_repeats() {
        let bytes = sample_file();
        let batches: Vec<Batch> = read_all(&bytes, 1).into_iter().map(Result::unwrap).collect();

        let lines: Vec<u64> = batches.iter().flat_map(|batch| batch.record_lines.clone()).collect();
        assert_eq!(lines, [1, 5]);
        let rejections: Vec<u64> = batches.iter().flat_map(|batch| batch.rejections.iter().map(|(line, _)| *line)).collect();
        assert_eq!(rejections, [3]);
        assert_eq!(batches.iter().map(|batch| batch.repeated_lines).sum::<u64>(), 1);
        assert_eq!(batches.iter().map(|batch| batch.lines).sum::<u64>(), 4, "the blank line is skipped");
        assert_eq!(batches.iter().map(|batch| batch.input_bytes).sum::<u64>(), bytes.len() as u64);
    }

    #[test]
    fn gzip_file_gives_the_same_digests() {
        let bytes = sample_file();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&bytes).unwrap();
        let compressed = encoder.finish().unwrap();

        let digests = |batches: Vec<Result<Batch, Error>>| -> Vec<String> {
            batches.into_iter().flat_map(|batch| batch.unwrap().records).map(|record| record.digest).collect()
        };
        let plain = digests(read_all(&bytes, 10));
        let gzip = digests(read_all(&compressed, 10));
        assert_eq!(plain.len(), 2);
        assert_eq!(plain, gzip);
        assert_eq!(plain[0], veris::digest(RECORD.as_bytes()));
    }

    #[test]
    fn corrupt_gzip_is_a_read_error() {
        let mut bytes = GZIP_MAGIC.to_vec();
        bytes.extend_from_slice(b"this is not deflate data");
        let batches = read_all(&bytes, 10);
        assert!(matches!(batches.last(), Some(Err(Error::Read { line: 1, .. }))), "{batches:?}");
    }

    #[test]
    fn terminators_are_stripped() {
        assert_eq!(without_terminator(b"{}\n"), b"{}");
        assert_eq!(without_terminator(b"{}\r\n"), b"{}");
        assert_eq!(without_terminator(b"{}"), b"{}");
    }
}
