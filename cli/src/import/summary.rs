//! Counts of an import run and the grouped reasons for rejected lines.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Line numbers kept per rejection reason in a [`Summary`].
pub const FIRST_LINES_KEPT: usize = 5;

/// Place of a rejection: before sending or at the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The line could not be mapped to an import record.
    Local,
    /// The ticket service rejected the record.
    Server,
}

/// Rejected lines that share one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectionGroup {
    pub origin: Origin,
    pub reason: String,
    pub count: u64,
    /// The smallest line numbers with this reason, at most [`FIRST_LINES_KEPT`].
    pub first_lines: Vec<u64>,
}

/// Result of one import run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Non-blank lines read.
    pub lines: u64,
    /// Records that became new tickets.
    pub imported: u64,
    /// Records imported before (recognised by digest), including `repeated_lines`.
    pub already_present: u64,
    /// Lines whose bytes repeat an earlier line of the same file, counted once above.
    pub repeated_lines: u64,
    /// Lines rejected locally or by the server.
    pub rejected: u64,
    /// Rejections grouped by reason, the most frequent first.
    pub rejections: Vec<RejectionGroup>,
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// Running counts while batches complete in any order.
#[derive(Debug, Default)]
pub struct Tally {
    pub lines: u64,
    pub imported: u64,
    pub already_present: u64,
    pub repeated_lines: u64,
    rejections: BTreeMap<(Origin, String), Vec<u64>>,
}

impl Tally {
    pub fn reject(&mut self, origin: Origin, reason: String, line: u64) {
        self.rejections.entry((origin, reason)).or_default().push(line);
    }

    pub fn rejected(&self) -> u64 {
        self.rejections.values().map(|lines| lines.len() as u64).sum()
    }

    pub fn finish(&self, elapsed: Duration) -> Summary {
        let mut rejections: Vec<RejectionGroup> = self
            .rejections
            .iter()
            .map(|((origin, reason), lines)| {
                let mut first_lines = lines.clone();
                first_lines.sort_unstable();
                first_lines.truncate(FIRST_LINES_KEPT);
                RejectionGroup {
                    origin: *origin,
                    reason: reason.clone(),
                    count: lines.len() as u64,
                    first_lines,
                }
            })
            .collect();
        rejections.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.first_lines.cmp(&b.first_lines)));

        Summary {
            lines: self.lines,
            imported: self.imported,
            already_present: self.already_present,
            repeated_lines: self.repeated_lines,
            rejected: self.rejected(),
            rejections,
            elapsed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_grouped_and_sorted() {
        let mut tally = Tally::default();
        for line in [9, 3, 7, 1, 5, 11] {
            tally.reject(Origin::Local, "bad date".into(), line);
        }
        tally.reject(Origin::Server, "title is empty".into(), 4);

        let summary = tally.finish(Duration::ZERO);
        assert_eq!(summary.rejected, 7);
        assert_eq!(summary.rejections[0].reason, "bad date");
        assert_eq!(summary.rejections[0].count, 6);
        assert_eq!(summary.rejections[0].first_lines, [1, 3, 5, 7, 9]);
        assert_eq!(summary.rejections[1].origin, Origin::Server);
    }
}
