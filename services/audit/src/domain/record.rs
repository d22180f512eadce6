//! Ledger records and how a batch of events becomes new records.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::canonical;
use super::chain::{self, Head};
use super::event::Event;

/// One ledger record. The hashes are byte vectors rather than [`chain::Hash`] because a
/// record read back from the database may have been tampered with to any length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: i64,
    pub event_id: Uuid,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub resource_key: String,
    pub actor: String,
    pub relayed_by: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub canonical: Vec<u8>,
    pub leaf_hash: Vec<u8>,
    pub chain_hash: Vec<u8>,
}

/// Records to insert for one batch, and the head after them.
#[derive(Debug)]
pub struct AppendPlan {
    pub records: Vec<Record>,
    /// Events skipped because their id is already recorded or came earlier in the batch.
    pub already_present: usize,
    pub head: Head,
}

/// Turns `events` into records that continue the chain after `head`. Events whose id is
/// in `recorded` are skipped, and so is every repeat of an id within the batch: the
/// first occurrence is recorded and later ones are counted as already present, even
/// when their content differs.
pub fn plan_append(head: Head, recorded_at: DateTime<Utc>, events: &[Event], recorded: &HashSet<Uuid>) -> AppendPlan {
    let mut seen: HashSet<Uuid> = HashSet::with_capacity(events.len());
    let mut records = Vec::with_capacity(events.len());
    let mut already_present = 0;
    let mut head = head;

    for event in events {
        if recorded.contains(&event.event_id) || !seen.insert(event.event_id) {
            already_present += 1;
            continue;
        }
        let seq = head.seq + 1;
        let canonical = canonical::encode(seq, event, recorded_at);
        let leaf_hash = chain::leaf_hash(&canonical);
        let chain_hash = chain::chain_hash(&head.chain_hash, &leaf_hash);
        records.push(Record {
            seq,
            event_id: event.event_id,
            action: event.action.clone(),
            resource_type: event.resource.kind.clone(),
            resource_id: event.resource.id.clone(),
            resource_key: event.resource.key.clone(),
            actor: event.actor.subject.clone(),
            relayed_by: event.actor.relayed_by.clone(),
            occurred_at: event.occurred_at,
            recorded_at,
            canonical,
            leaf_hash: leaf_hash.to_vec(),
            chain_hash: chain_hash.to_vec(),
        });
        head = Head { seq, chain_hash };
    }

    AppendPlan {
        records,
        already_present,
        head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Actor, ActorKind, Resource};

    fn event(id: u128) -> Event {
        Event {
            event_id: Uuid::from_u128(id),
            action: "ticket.created".into(),
            resource: Resource {
                kind: "ticket".into(),
                id: "t-1".into(),
                key: String::new(),
            },
            resource_version: 1,
            actor: Actor {
                subject: "alice".into(),
                kind: ActorKind::Human,
                relayed_by: String::new(),
            },
            occurred_at: "2024-01-02T03:04:05Z".parse().unwrap(),
            source_service: "docket-ticket".into(),
            trace_id: String::new(),
            changes: vec![],
            reason: String::new(),
        }
    }

    fn now() -> DateTime<Utc> {
        "2024-01-02T03:04:06Z".parse().unwrap()
    }

    #[test]
    fn records_continue_after_head() {
        let head = Head {
            seq: 41,
            chain_hash: [7; 32],
        };
        let plan = plan_append(head, now(), &[event(1), event(2)], &HashSet::new());
        let seqs: Vec<i64> = plan.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [42, 43]);
        assert_eq!(plan.head.seq, 43);
    }

    #[test]
    fn each_chain_hash_links_to_previous() {
        let plan = plan_append(Head::EMPTY, now(), &[event(1), event(2), event(3)], &HashSet::new());
        let mut previous = chain::GENESIS;
        for record in &plan.records {
            let leaf = chain::leaf_hash(&record.canonical);
            assert_eq!(record.leaf_hash, leaf.to_vec(), "leaf hash of seq {}", record.seq);
            let expected = chain::chain_hash(&previous, &leaf);
            assert_eq!(record.chain_hash, expected.to_vec(), "chain hash of seq {}", record.seq);
            previous = expected;
        }
        assert_eq!(plan.head.chain_hash, previous);
    }

    #[test]
    fn canonical_seq_matches_record_seq() {
        let plan = plan_append(Head::EMPTY, now(), &[event(1), event(2)], &HashSet::new());
        for record in &plan.records {
            let fields = canonical::decode_indexed_fields(&record.canonical).unwrap();
            assert_eq!(fields.seq, record.seq);
        }
    }

    #[test]
    fn recorded_ids_are_skipped() {
        let recorded = HashSet::from([Uuid::from_u128(2)]);
        let plan = plan_append(Head::EMPTY, now(), &[event(1), event(2), event(3)], &recorded);
        let ids: Vec<Uuid> = plan.records.iter().map(|r| r.event_id).collect();
        assert_eq!(ids, [Uuid::from_u128(1), Uuid::from_u128(3)]);
        assert_eq!(plan.already_present, 1);
    }

    #[test]
    fn repeated_ids_in_batch_are_recorded_once() {
        let mut repeat = event(1);
        repeat.action = "ticket.updated".into();
        let plan = plan_append(Head::EMPTY, now(), &[event(1), repeat, event(2)], &HashSet::new());
        assert_eq!(plan.records.len(), 2);
        assert_eq!(plan.records[0].action, "ticket.created");
        assert_eq!(plan.already_present, 1);
    }

    #[test]
    fn all_present_keeps_head() {
        let head = Head {
            seq: 9,
            chain_hash: [3; 32],
        };
        let recorded = HashSet::from([Uuid::from_u128(1)]);
        let plan = plan_append(head, now(), &[event(1)], &recorded);
        assert!(plan.records.is_empty());
        assert_eq!(plan.head, head);
    }
}
