//! Listing records: filters, page size and the opaque page token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::canonical::{self, to_canonical_bytes};
use super::event::{TimestampInput, check_timestamp, truncate_to_micros};
use super::record::Record;
use super::{Violations, quote};

/// Page size used when the request sets none.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Largest page size a request may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Budget for the encoded records of one page, in bytes. A page stops early when the
/// next record would exceed it, so a response stays below the 4 MiB that gRPC clients
/// accept by default even when records carry large changes.
pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024;

/// Estimate of the bytes one record adds to a response besides its canonical bytes:
/// two hashes, the copied columns and protobuf framing.
const RECORD_OVERHEAD_BYTES: usize = 512;

/// Format version of page tokens, so a future format can reject old tokens clearly.
const TOKEN_VERSION: u8 = 1;

/// Bytes of the filter digest kept in a page token.
const TOKEN_DIGEST_LEN: usize = 16;

const RESTART_HINT: &str = "restart the listing without a page token";

/// A ListRecords request as decoded from the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListInput {
    pub page_size: i32,
    pub page_token: String,
    pub resource: String,
    pub actor: String,
    pub action: String,
    pub occurred_after: Option<TimestampInput>,
    pub occurred_before: Option<TimestampInput>,
}

/// Filters of a listing. Empty request fields mean no filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// Matches the resource id or the resource key.
    pub resource: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Inclusive lower bound on occurred_at, truncated to microseconds.
    pub occurred_after: Option<DateTime<Utc>>,
    /// Exclusive upper bound on occurred_at, truncated to microseconds.
    pub occurred_before: Option<DateTime<Utc>>,
}

/// A validated listing request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub filters: Filters,
    /// Records with a seq above this one are listed; 0 on the first page.
    pub after_seq: i64,
    pub page_size: usize,
}

/// One page of records and the token for the next page, `None` on the last page.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<Record>,
    pub next_page_token: Option<String>,
}

/// Validates a listing request and decodes its page token.
pub fn parse_list(input: ListInput) -> Result<ListQuery, Violations> {
    let mut violations = Violations::default();

    let page_size = match usize::try_from(input.page_size) {
        Ok(0) => DEFAULT_PAGE_SIZE,
        Ok(size) if size <= MAX_PAGE_SIZE => size,
        _ => {
            violations.push(
                "page_size",
                format!(
                    "is {}; send 1 to {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}",
                    input.page_size
                ),
            );
            0
        }
    };

    let occurred_after = input
        .occurred_after
        .and_then(|at| check_timestamp("occurred_after", at, &mut violations))
        .map(truncate_to_micros);
    let occurred_before = input
        .occurred_before
        .and_then(|at| check_timestamp("occurred_before", at, &mut violations))
        .map(truncate_to_micros);
    if let (Some(after), Some(before)) = (occurred_after, occurred_before)
        && after >= before
    {
        violations.push(
            "occurred_before",
            format!(
                "{} is not later than occurred_after {}; send a range [occurred_after, occurred_before) that is not empty",
                canonical::format_timestamp(before),
                canonical::format_timestamp(after)
            ),
        );
    }

    let filters = Filters {
        resource: non_empty(input.resource),
        actor: non_empty(input.actor),
        action: non_empty(input.action),
        occurred_after,
        occurred_before,
    };

    let after_seq = if input.page_token.is_empty() {
        0
    } else {
        match decode_token(&input.page_token, &filters) {
            Ok(seq) => seq,
            Err(reason) => {
                violations.push(
                    "page_token",
                    format!("{} {reason}; {RESTART_HINT}", quote(&input.page_token)),
                );
                0
            }
        }
    };

    violations.into_result()?;
    Ok(ListQuery {
        filters,
        after_seq,
        page_size,
    })
}

/// Builds the page from rows fetched in seq order after `query.after_seq`. The caller
/// fetches up to `page_size + 1` rows, so that one more row than fits shows that another
/// page exists.
pub fn build_page(query: &ListQuery, rows: Vec<Record>) -> Page {
    let fetched = rows.len();
    let mut records = Vec::with_capacity(fetched.min(query.page_size));
    let mut bytes = 0;
    for record in rows.into_iter().take(query.page_size) {
        let size = record.canonical.len() + RECORD_OVERHEAD_BYTES;
        // A page always contains at least one record, whatever its size.
        if !records.is_empty() && bytes + size > MAX_PAGE_BYTES {
            break;
        }
        bytes += size;
        records.push(record);
    }

    let more = records.len() < fetched;
    let next_page_token = match records.last() {
        Some(last) if more => Some(encode_token(last.seq, &query.filters)),
        _ => None,
    };
    Page {
        records,
        next_page_token,
    }
}

/// Encodes the last listed seq with a digest of the filters, so a token replayed with
/// other filters is detected instead of silently skipping records.
fn encode_token(last_seq: i64, filters: &Filters) -> String {
    let mut bytes = Vec::with_capacity(1 + 8 + TOKEN_DIGEST_LEN);
    bytes.push(TOKEN_VERSION);
    bytes.extend_from_slice(&last_seq.to_be_bytes());
    bytes.extend_from_slice(&filter_digest(filters));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a page token, or returns the reason it is unusable.
fn decode_token(token: &str, filters: &Filters) -> Result<i64, &'static str> {
    const NOT_A_TOKEN: &str = "is not a page token from ListRecords";
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| NOT_A_TOKEN)?;
    if bytes.len() != 1 + 8 + TOKEN_DIGEST_LEN || bytes[0] != TOKEN_VERSION {
        return Err(NOT_A_TOKEN);
    }
    let seq_bytes: [u8; 8] = bytes[1..9].try_into().map_err(|_| NOT_A_TOKEN)?;
    let seq = i64::from_be_bytes(seq_bytes);
    if seq < 1 {
        return Err(NOT_A_TOKEN);
    }
    if bytes[9..] != filter_digest(filters) {
        return Err("was issued for different filters");
    }
    Ok(seq)
}

fn filter_digest(filters: &Filters) -> [u8; TOKEN_DIGEST_LEN] {
    let described = json!({
        "resource": filters.resource,
        "actor": filters.actor,
        "action": filters.action,
        "occurred_after": filters.occurred_after.map(canonical::format_timestamp),
        "occurred_before": filters.occurred_before.map(canonical::format_timestamp),
    });
    let digest = Sha256::digest(to_canonical_bytes(&described));
    let mut truncated = [0; TOKEN_DIGEST_LEN];
    truncated.copy_from_slice(&digest[..TOKEN_DIGEST_LEN]);
    truncated
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn record(seq: i64, canonical_len: usize) -> Record {
        let at = "2024-01-02T03:04:05Z".parse().unwrap();
        Record {
            seq,
            event_id: Uuid::from_u128(seq as u128),
            action: "ticket.created".into(),
            resource_type: "ticket".into(),
            resource_id: "t-1".into(),
            resource_key: String::new(),
            actor: "alice".into(),
            relayed_by: String::new(),
            occurred_at: at,
            recorded_at: at,
            canonical: vec![b' '; canonical_len],
            leaf_hash: vec![0; 32],
            chain_hash: vec![0; 32],
        }
    }

    fn fields(result: Result<ListQuery, Violations>) -> Vec<String> {
        result.unwrap_err().reported().iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn zero_page_size_means_default() {
        let query = parse_list(ListInput::default()).unwrap();
        assert_eq!(query.page_size, DEFAULT_PAGE_SIZE);
    }

    #[test]
    fn page_size_over_max_is_rejected() {
        let input = ListInput {
            page_size: 1001,
            ..ListInput::default()
        };
        assert_eq!(fields(parse_list(input)), ["page_size"]);
    }

    #[test]
    fn negative_page_size_is_rejected() {
        let input = ListInput {
            page_size: -1,
            ..ListInput::default()
        };
        assert_eq!(fields(parse_list(input)), ["page_size"]);
    }

    #[test]
    fn token_round_trips_with_same_filters() {
        let input = ListInput {
            page_size: 2,
            actor: "alice".into(),
            ..ListInput::default()
        };
        let query = parse_list(input.clone()).unwrap();
        let page = build_page(&query, vec![record(1, 10), record(2, 10), record(3, 10)]);
        let next = parse_list(ListInput {
            page_token: page.next_page_token.unwrap(),
            ..input
        })
        .unwrap();
        assert_eq!(next.after_seq, 2);
    }

    #[test]
    fn token_with_other_filters_is_rejected() {
        let query = parse_list(ListInput {
            actor: "alice".into(),
            ..ListInput::default()
        })
        .unwrap();
        let token = encode_token(7, &query.filters);
        let result = parse_list(ListInput {
            actor: "bob".into(),
            page_token: token,
            ..ListInput::default()
        });
        let violations = result.unwrap_err();
        assert!(
            violations.reported()[0].description.contains(RESTART_HINT),
            "{violations}"
        );
    }

    #[test]
    fn garbage_token_is_rejected() {
        let input = ListInput {
            page_token: "not a token!".into(),
            ..ListInput::default()
        };
        assert_eq!(fields(parse_list(input)), ["page_token"]);
    }

    #[test]
    fn empty_time_range_is_rejected() {
        let at = "2024-01-02T03:04:05Z".parse().unwrap();
        let input = ListInput {
            occurred_after: Some(TimestampInput::At(at)),
            occurred_before: Some(TimestampInput::At(at)),
            ..ListInput::default()
        };
        assert_eq!(fields(parse_list(input)), ["occurred_before"]);
    }

    #[test]
    fn time_bounds_truncate_to_micros() {
        let at: DateTime<Utc> = "2024-01-02T03:04:05.000000500Z".parse().unwrap();
        let input = ListInput {
            occurred_after: Some(TimestampInput::At(at)),
            ..ListInput::default()
        };
        let query = parse_list(input).unwrap();
        // Stored occurred_at values were truncated the same way, so an event sent with
        // this exact time is still inside [occurred_after, ...).
        let expected: DateTime<Utc> = "2024-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(query.filters.occurred_after, Some(expected));
    }

    #[test]
    fn last_page_has_no_token() {
        let query = parse_list(ListInput {
            page_size: 3,
            ..ListInput::default()
        })
        .unwrap();
        let page = build_page(&query, vec![record(1, 10), record(2, 10)]);
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.next_page_token, None);
    }

    #[test]
    fn large_records_end_page_early() {
        let query = parse_list(ListInput {
            page_size: 10,
            ..ListInput::default()
        })
        .unwrap();
        let big = MAX_PAGE_BYTES / 2;
        let page = build_page(&query, vec![record(1, big), record(2, big), record(3, 10)]);
        assert_eq!(page.records.len(), 1);
        let next = decode_token(page.next_page_token.as_deref().unwrap(), &query.filters).unwrap();
        assert_eq!(next, 1);
    }

    #[test]
    fn oversized_single_record_still_fills_page() {
        let query = parse_list(ListInput::default()).unwrap();
        let page = build_page(&query, vec![record(1, MAX_PAGE_BYTES * 2)]);
        assert_eq!(page.records.len(), 1);
    }
}
