-- Records of calls that the metrics service denied, waiting to be appended to the audit
-- ledger. A row is written when the call is denied and deleted once the audit service has
-- accepted it, so the table stays empty while audit is reachable.
CREATE TABLE denial_outbox (
    -- UUIDv7 of the audit event; its time order is the delivery order.
    event_id    uuid        PRIMARY KEY,
    -- The docket.events.v1.Event, protobuf-encoded, exactly as it is sent.
    event       bytea       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- Failed delivery attempts so far, for operators looking at a growing backlog.
    attempts    integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0)
);
