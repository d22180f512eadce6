//! Diesel descriptions of the tables created by the migrations.

diesel::table! {
    ledger (seq) {
        seq -> Int8,
        event_id -> Uuid,
        action -> Text,
        resource_type -> Text,
        resource_id -> Text,
        resource_key -> Text,
        actor -> Text,
        relayed_by -> Text,
        occurred_at -> Timestamptz,
        recorded_at -> Timestamptz,
        canonical -> Bytea,
        leaf_hash -> Bytea,
        chain_hash -> Bytea,
    }
}

diesel::table! {
    ledger_head (id) {
        id -> Int2,
        seq -> Int8,
        chain_hash -> Bytea,
    }
}
