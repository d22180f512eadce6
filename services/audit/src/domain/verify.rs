//! Verification of the whole ledger from its stored bytes.
//!
//! Records are fed in seq order. Each one must have the next seq, and its stored
//! canonical bytes must hash to its stored leaf hash. Its chain hash must follow from the
//! previous record's. The seq inside the canonical bytes must equal the row's seq, and
//! the indexed columns must equal the canonical members. The head row must then point at
//! the last record. Checking stops at the first record that fails.

use super::canonical::{self, IndexedFields};
use super::chain::{self, Hash, Head};
use super::record::Record;

/// The head row as stored, which may have been tampered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHead {
    pub seq: i64,
    pub chain_hash: Vec<u8>,
}

/// Outcome of a verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub records_checked: i64,
    /// The first bad seq and what is wrong with it; `None` when the ledger is intact.
    pub failure: Option<Failure>,
    /// The last record that verified, or [`Head::EMPTY`] when none did.
    pub verified_head: Head,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub seq: i64,
    pub problem: String,
}

/// Checks records one at a time, so a ledger of any size is verified in constant memory.
#[derive(Debug)]
pub struct Verifier {
    verified_head: Head,
    /// Chain hash of the record before `verified_head`, used to recognize an inserted record.
    chain_hash_before_head: Hash,
    records_checked: i64,
    failure: Option<Failure>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier {
            verified_head: Head::EMPTY,
            chain_hash_before_head: chain::GENESIS,
            records_checked: 0,
            failure: None,
        }
    }

    /// Returns whether a bad record was found. Records checked after that are ignored.
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Checks the next record in seq order.
    pub fn check(&mut self, record: &Record) {
        if self.failed() {
            return;
        }
        self.records_checked += 1;
        match self.check_record(record) {
            Ok(chain_hash) => {
                self.chain_hash_before_head = self.verified_head.chain_hash;
                self.verified_head = Head {
                    seq: record.seq,
                    chain_hash,
                };
            }
            Err(failure) if self.skips_previous_record(record) => {
                // The previous record verified on its own but is not the one this record
                // was chained to, so it is the bad one.
                self.verified_head = Head {
                    seq: self.verified_head.seq - 1,
                    chain_hash: self.chain_hash_before_head,
                };
                self.failure = Some(Failure {
                    seq: failure.seq - 1,
                    problem: format!(
                        "inserted record: seq {} is chained to seq {}, so seq {} was added later",
                        failure.seq,
                        failure.seq - 2,
                        failure.seq - 1
                    ),
                });
            }
            Err(failure) => self.failure = Some(failure),
        }
    }

    /// Returns whether `record`, which failed, would chain correctly after the record
    /// before the previous one. That happens when a record was inserted before it and the
    /// later seqs renumbered.
    fn skips_previous_record(&self, record: &Record) -> bool {
        if self.verified_head.seq < 1 || record.seq != self.verified_head.seq + 1 {
            return false;
        }
        let leaf = chain::leaf_hash(&record.canonical);
        record.leaf_hash == leaf && record.chain_hash == chain::chain_hash(&self.chain_hash_before_head, &leaf)
    }

    fn check_record(&self, record: &Record) -> Result<Hash, Failure> {
        let expected_seq = self.verified_head.seq + 1;
        let fail = |problem: String| Failure {
            seq: expected_seq,
            problem,
        };

        if record.seq > expected_seq {
            return Err(fail(format!(
                "sequence gap: expected seq {expected_seq}, found seq {}",
                record.seq
            )));
        }
        if record.seq < expected_seq {
            return Err(fail(format!(
                "unexpected record with seq {} before seq {expected_seq}",
                record.seq
            )));
        }

        let leaf = chain::leaf_hash(&record.canonical);
        if record.leaf_hash != leaf {
            return Err(fail(
                "leaf hash mismatch: the canonical bytes do not hash to the stored leaf hash".into(),
            ));
        }
        let chain_hash = chain::chain_hash(&self.verified_head.chain_hash, &leaf);
        if record.chain_hash != chain_hash {
            return Err(fail(
                "chain hash mismatch: the stored chain hash does not follow from the previous record".into(),
            ));
        }

        let fields = canonical::decode_indexed_fields(&record.canonical)
            .map_err(|error| fail(format!("canonical bytes are not a ledger record: {error}")))?;
        if fields.seq != record.seq {
            return Err(fail(format!(
                "canonical seq mismatch: the canonical bytes say seq {}",
                fields.seq
            )));
        }
        if let Some(column) = mismatched_column(record, &fields) {
            return Err(fail(format!("column {column} does not match the canonical bytes")));
        }
        Ok(chain_hash)
    }

    /// Compares the head row with the last verified record and returns the report.
    pub fn finish(self, head: Option<StoredHead>) -> Report {
        let failure = self
            .failure
            .or_else(|| head_failure(&self.verified_head, head.as_ref()));
        Report {
            records_checked: self.records_checked,
            failure,
            verified_head: self.verified_head,
        }
    }
}

/// Names the first indexed column whose value differs from the canonical member it copies.
fn mismatched_column(record: &Record, fields: &IndexedFields) -> Option<&'static str> {
    let pairs = [
        ("event_id", record.event_id.hyphenated().to_string(), &fields.event_id),
        ("action", record.action.clone(), &fields.action),
        ("resource_type", record.resource_type.clone(), &fields.resource.kind),
        ("resource_id", record.resource_id.clone(), &fields.resource.id),
        ("resource_key", record.resource_key.clone(), &fields.resource.key),
        ("actor", record.actor.clone(), &fields.actor.subject),
        ("relayed_by", record.relayed_by.clone(), &fields.actor.relayed_by),
        (
            "occurred_at",
            canonical::format_timestamp(record.occurred_at),
            &fields.occurred_at,
        ),
        (
            "recorded_at",
            canonical::format_timestamp(record.recorded_at),
            &fields.recorded_at,
        ),
    ];
    pairs
        .into_iter()
        .find(|(_, column, member)| column != *member)
        .map(|(name, _, _)| name)
}

/// Checks that the head row points at the last record. A head ahead of the records means
/// records were removed from the end; a head behind them means records were added past it.
fn head_failure(last: &Head, head: Option<&StoredHead>) -> Option<Failure> {
    let Some(head) = head else {
        return Some(Failure {
            seq: last.seq + 1,
            problem: "head row is missing".into(),
        });
    };
    let problem = format!(
        "head row does not match the last record: the head row is at seq {}, the last record is seq {}",
        head.seq, last.seq
    );
    if head.seq > last.seq {
        return Some(Failure {
            seq: last.seq + 1,
            problem,
        });
    }
    if head.seq < last.seq {
        return Some(Failure {
            seq: head.seq + 1,
            problem,
        });
    }
    if head.chain_hash != last.chain_hash {
        return Some(Failure {
            seq: last.seq.max(1),
            problem: format!(
                "head row does not match the last record: its chain hash differs at seq {}",
                last.seq
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use uuid::Uuid;

    use super::*;
    use crate::domain::chain::GENESIS;
    use crate::domain::event::{Actor, ActorKind, Event, Resource};
    use crate::domain::record::plan_append;

    fn records(count: u128) -> Vec<Record> {
        let events: Vec<Event> = (1..=count)
            .map(|id| Event {
                event_id: Uuid::from_u128(id),
                action: "ticket.updated".into(),
                resource: Resource {
                    kind: "ticket".into(),
                    id: "t-1".into(),
                    key: "INC-1".into(),
                },
                resource_version: id as i64,
                actor: Actor {
                    subject: "alice".into(),
                    kind: ActorKind::Human,
                    relayed_by: "docket-ticket".into(),
                },
                occurred_at: "2024-01-02T03:04:05Z".parse().unwrap(),
                source_service: "docket-ticket".into(),
                trace_id: String::new(),
                changes: vec![],
                reason: String::new(),
            })
            .collect();
        let now = "2024-01-02T03:04:06Z".parse().unwrap();
        plan_append(Head::EMPTY, now, &events, &HashSet::new()).records
    }

    fn head_of(records: &[Record]) -> StoredHead {
        let last = records.last().unwrap();
        StoredHead {
            seq: last.seq,
            chain_hash: last.chain_hash.clone(),
        }
    }

    fn verify(records: &[Record], head: Option<StoredHead>) -> Report {
        let mut verifier = Verifier::new();
        for record in records {
            verifier.check(record);
        }
        verifier.finish(head)
    }

    fn failure(report: &Report) -> (i64, String) {
        let failure = report.failure.clone().expect("verification reports a failure");
        (failure.seq, failure.problem)
    }

    #[test]
    fn intact_chain_verifies() {
        let records = records(5);
        let report = verify(&records, Some(head_of(&records)));
        assert_eq!(report.failure, None);
        assert_eq!(report.records_checked, 5);
        assert_eq!(report.verified_head.seq, 5);
    }

    #[test]
    fn empty_ledger_verifies() {
        let report = verify(
            &[],
            Some(StoredHead {
                seq: 0,
                chain_hash: GENESIS.to_vec(),
            }),
        );
        assert_eq!(report.failure, None);
    }

    #[test]
    fn changed_byte_is_leaf_mismatch_at_its_seq() {
        let mut records = records(5);
        let head = head_of(&records);
        records[2].canonical[10] ^= 1;
        let (seq, problem) = failure(&verify(&records, Some(head)));
        assert_eq!(seq, 3);
        assert!(problem.starts_with("leaf hash mismatch"), "{problem}");
    }

    #[test]
    fn removed_record_is_gap_at_its_seq() {
        let mut records = records(5);
        let head = head_of(&records);
        records.remove(1);
        let (seq, problem) = failure(&verify(&records, Some(head)));
        assert_eq!(seq, 2);
        assert_eq!(problem, "sequence gap: expected seq 2, found seq 3");
    }

    #[test]
    fn swapped_contents_fail_at_lower_seq() {
        let mut records = records(5);
        let head = head_of(&records);
        let (low, high) = (records[1].clone(), records[3].clone());
        records[1] = Record { seq: 2, ..high };
        records[3] = Record { seq: 4, ..low };
        let (seq, problem) = failure(&verify(&records, Some(head)));
        assert_eq!(seq, 2);
        assert!(problem.starts_with("chain hash mismatch"), "{problem}");
    }

    #[test]
    fn renumbered_record_is_canonical_seq_mismatch() {
        // A forger who recomputes both hashes but cannot change the seq inside the bytes
        // without changing the leaf hash as well.
        let mut records = records(3);
        let forged_chain = chain::chain_hash(&chain::GENESIS, &chain::leaf_hash(&records[1].canonical));
        records.remove(0);
        records[0].seq = 1;
        records[0].chain_hash = forged_chain.to_vec();
        records[1].seq = 2;
        let (seq, problem) = failure(&verify(&records, None));
        assert_eq!(seq, 1);
        assert_eq!(problem, "canonical seq mismatch: the canonical bytes say seq 2");
    }

    #[test]
    fn inserted_record_with_valid_hashes_is_named() {
        // A forger inserts a record at seq 2 with correct hashes and renumbers the rest.
        let mut forged = records(4).remove(3);
        let mut ledger = records(3);
        let head = head_of(&ledger);
        forged.seq = 2;
        forged.canonical = String::from_utf8(forged.canonical)
            .unwrap()
            .replace(r#""seq":4"#, r#""seq":2"#)
            .into_bytes();
        let leaf = chain::leaf_hash(&forged.canonical);
        forged.leaf_hash = leaf.to_vec();
        forged.chain_hash = chain::chain_hash(&ledger[0].chain_hash.clone().try_into().unwrap(), &leaf).to_vec();
        ledger[1].seq = 3;
        ledger[2].seq = 4;
        ledger.insert(1, forged);
        let report = verify(&ledger, Some(head));
        let (seq, problem) = failure(&report);
        assert_eq!(seq, 2);
        assert_eq!(
            problem,
            "inserted record: seq 3 is chained to seq 1, so seq 2 was added later"
        );
        assert_eq!(report.verified_head.seq, 1);
    }

    #[test]
    fn changed_column_is_named() {
        let mut records = records(3);
        let head = head_of(&records);
        records[1].actor = "mallory".into();
        let (seq, problem) = failure(&verify(&records, Some(head)));
        assert_eq!(seq, 2);
        assert_eq!(problem, "column actor does not match the canonical bytes");
    }

    #[test]
    fn head_ahead_of_records_names_first_missing_seq() {
        let mut records = records(5);
        let head = head_of(&records);
        records.pop();
        let (seq, problem) = failure(&verify(&records, Some(head)));
        assert_eq!(seq, 5);
        assert!(
            problem.starts_with("head row does not match the last record"),
            "{problem}"
        );
    }

    #[test]
    fn head_behind_records_names_first_record_past_head() {
        let records = records(5);
        let head = head_of(&records[..3]);
        let (seq, _) = failure(&verify(&records, Some(head)));
        assert_eq!(seq, 4);
    }

    #[test]
    fn missing_head_row_is_reported() {
        let records = records(2);
        let (seq, problem) = failure(&verify(&records, None));
        assert_eq!(seq, 3);
        assert_eq!(problem, "head row is missing");
    }

    #[test]
    fn records_after_failure_are_not_checked() {
        let mut records = records(5);
        records[0].canonical.push(b' ');
        let report = verify(&records, None);
        assert_eq!(report.records_checked, 1);
        assert_eq!(report.verified_head, Head::EMPTY);
    }
}
