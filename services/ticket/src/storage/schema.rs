//! Diesel table definitions, written by hand to match the migrations.

diesel::table! {
    tickets (id) {
        id -> Uuid,
        key -> Text,
        title -> Text,
        description -> Text,
        severity -> Nullable<Text>,
        category -> Text,
        status -> Text,
        resolution -> Nullable<Text>,
        assignee -> Text,
        team -> Text,
        reporter -> Text,
        detection_source -> Text,
        detection_method -> Text,
        indicators -> Jsonb,
        assets -> Jsonb,
        tags -> Array<Text>,
        imported -> Bool,
        import_source -> Nullable<Text>,
        import_digest -> Nullable<Text>,
        request_id -> Nullable<Text>,
        request_digest -> Nullable<Text>,
        reopen_count -> Int4,
        version -> Int8,
        occurred_at -> Nullable<Timestamptz>,
        detected_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        acknowledged_at -> Nullable<Timestamptz>,
        contained_at -> Nullable<Timestamptz>,
        eradicated_at -> Nullable<Timestamptz>,
        recovered_at -> Nullable<Timestamptz>,
        resolved_at -> Nullable<Timestamptz>,
        last_resolved_at -> Nullable<Timestamptz>,
        closed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    ticket_comments (id) {
        id -> Uuid,
        ticket_id -> Uuid,
        author -> Text,
        body -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ticket_history (ticket_id, version) {
        ticket_id -> Uuid,
        version -> Int8,
        action -> Text,
        actor -> Text,
        at -> Timestamptz,
        changes -> Jsonb,
        note -> Text,
        event_id -> Uuid,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        event_id -> Uuid,
        ticket_id -> Uuid,
        ticket_version -> Int8,
        payload -> Bytea,
        created_at -> Timestamptz,
        audit_delivered_at -> Nullable<Timestamptz>,
        metrics_delivered_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        traceparent -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(tickets, ticket_comments, ticket_history, outbox);
