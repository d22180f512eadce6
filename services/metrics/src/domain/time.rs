//! Conversion of protobuf timestamps to the microsecond instants PostgreSQL stores.

use chrono::{DateTime, SubsecRound, Utc};

/// Converts a protobuf timestamp to a UTC instant truncated to microseconds, the
/// precision of `timestamptz`, so a stored value reads back unchanged. Returns `None`
/// for nanoseconds outside 0..1e9 or seconds outside chrono's range.
pub fn from_proto(timestamp: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(timestamp.nanos).ok().filter(|nanos| *nanos < 1_000_000_000)?;
    DateTime::from_timestamp(timestamp.seconds, nanos).map(|instant| instant.trunc_subsecs(6))
}

/// Describes why a timestamp is invalid, for a field violation.
pub fn invalid_description(timestamp: &prost_types::Timestamp) -> String {
    format!(
        "timestamp {}s {}ns is out of range; seconds must be a valid UTC instant and nanos within 0..=999999999",
        timestamp.seconds, timestamp.nanos
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_proto_truncates_to_microseconds() {
        let instant = from_proto(&prost_types::Timestamp { seconds: 10, nanos: 1_234_567 }).unwrap();
        assert_eq!(instant.timestamp_subsec_nanos(), 1_234_000);
    }

    #[test]
    fn from_proto_rejects_negative_nanos() {
        assert_eq!(from_proto(&prost_types::Timestamp { seconds: 10, nanos: -1 }), None);
    }
}
