-- Ticket keys come from a sequence, so concurrent creates never share a key. A key
-- taken by a create that rolled back is skipped rather than reused.
CREATE SEQUENCE ticket_key_seq;

CREATE TABLE tickets (
    id uuid PRIMARY KEY,
    key text NOT NULL UNIQUE DEFAULT ('INC-' || nextval('ticket_key_seq')),
    title text NOT NULL,
    description text NOT NULL DEFAULT '',
    -- NULL is unrated, which only imported tickets may be.
    severity text,
    category text NOT NULL,
    status text NOT NULL,
    resolution text,
    assignee text NOT NULL DEFAULT '',
    team text NOT NULL DEFAULT '',
    reporter text NOT NULL DEFAULT '',
    detection_source text NOT NULL DEFAULT '',
    detection_method text NOT NULL DEFAULT '',
    -- Arrays of {"type", "value"} and {"kind", "name", "compromise"} in canonical form.
    indicators jsonb NOT NULL DEFAULT '[]',
    assets jsonb NOT NULL DEFAULT '[]',
    tags text[] NOT NULL DEFAULT '{}',
    imported boolean NOT NULL DEFAULT false,
    import_source text,
    import_digest text,
    -- CreateTicket idempotency: the client's request id and the SHA-256 of the content.
    request_id text UNIQUE,
    request_digest text,
    reopen_count integer NOT NULL DEFAULT 0,
    version bigint NOT NULL,
    occurred_at timestamptz,
    detected_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    acknowledged_at timestamptz,
    contained_at timestamptz,
    eradicated_at timestamptz,
    recovered_at timestamptz,
    resolved_at timestamptz,
    last_resolved_at timestamptz,
    closed_at timestamptz,
    CONSTRAINT tickets_version_positive CHECK (version > 0),
    CONSTRAINT tickets_import_key CHECK ((import_source IS NULL) = (import_digest IS NULL)),
    CONSTRAINT tickets_request_key CHECK ((request_id IS NULL) = (request_digest IS NULL))
);

CREATE UNIQUE INDEX tickets_import_source_digest ON tickets (import_source, import_digest);
CREATE INDEX tickets_status ON tickets (status, id);
CREATE INDEX tickets_team ON tickets (team, id);
CREATE INDEX tickets_assignee ON tickets (assignee, id);
CREATE INDEX tickets_created_at ON tickets (created_at);
CREATE INDEX tickets_updated_at ON tickets (updated_at);

-- The worklog is append-only: a comment, once written, is part of the record.
CREATE TABLE ticket_comments (
    id uuid PRIMARY KEY,
    ticket_id uuid NOT NULL REFERENCES tickets (id),
    author text NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX ticket_comments_ticket ON ticket_comments (ticket_id, created_at, id);

CREATE FUNCTION reject_comment_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ticket comments are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER ticket_comments_append_only
    BEFORE UPDATE OR DELETE ON ticket_comments
    FOR EACH ROW EXECUTE FUNCTION reject_comment_change();

CREATE TRIGGER ticket_comments_no_truncate
    BEFORE TRUNCATE ON ticket_comments
    FOR EACH STATEMENT EXECUTE FUNCTION reject_comment_change();

CREATE TABLE ticket_history (
    ticket_id uuid NOT NULL REFERENCES tickets (id),
    version bigint NOT NULL,
    action text NOT NULL,
    actor text NOT NULL,
    at timestamptz NOT NULL,
    -- Array of {"field", "old_value", "new_value"} with JSON text values.
    changes jsonb NOT NULL,
    note text NOT NULL DEFAULT '',
    event_id uuid NOT NULL UNIQUE,
    PRIMARY KEY (ticket_id, version)
);

-- Events waiting for delivery. Each sink has its own delivery time, so a sink that is
-- down delays only itself.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    ticket_id uuid NOT NULL,
    ticket_version bigint NOT NULL,
    -- Encoded docket.events.v1.Event.
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL,
    audit_delivered_at timestamptz,
    metrics_delivered_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);

CREATE INDEX outbox_audit_pending ON outbox (ticket_id, id) WHERE audit_delivered_at IS NULL;
CREATE INDEX outbox_metrics_pending ON outbox (ticket_id, id) WHERE metrics_delivered_at IS NULL;
