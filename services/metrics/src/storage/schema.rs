//! Diesel schema of the metrics database, written by hand to match migrations/.
//!
//! The `incidents` table has 20 columns, more than the 16 diesel supports without its
//! `32-column-tables` feature, so it is queried with SQL text in `projection.rs` and
//! `metrics.rs` instead of being declared here.

diesel::table! {
    applied_events (event_id) {
        event_id -> Uuid,
        ticket_id -> Uuid,
        version -> Int8,
        applied_at -> Timestamptz,
    }
}

diesel::table! {
    denial_outbox (event_id) {
        event_id -> Uuid,
        event -> Bytea,
        recorded_at -> Timestamptz,
        attempts -> Int4,
    }
}
