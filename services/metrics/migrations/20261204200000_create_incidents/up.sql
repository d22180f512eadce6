-- Projection of the ticket service's events: one row per ticket, holding the fields the
-- response-time queries group, filter and measure by. Enum fields store the lowercase
-- names of the ticket enums, and '' stands for an unset value.
CREATE TABLE incidents (
    ticket_id        uuid        PRIMARY KEY,
    ticket_key       text        NOT NULL,
    severity         text        NOT NULL,
    category         text        NOT NULL,
    status           text        NOT NULL,
    resolution       text        NOT NULL,
    team             text        NOT NULL,
    detection_source text        NOT NULL,
    imported         boolean     NOT NULL,
    reopen_count     integer     NOT NULL CHECK (reopen_count >= 0),
    created_at       timestamptz NOT NULL,
    occurred_at      timestamptz,
    detected_at      timestamptz,
    acknowledged_at  timestamptz,
    contained_at     timestamptz,
    resolved_at      timestamptz,
    last_resolved_at timestamptz,
    closed_at        timestamptz,
    -- Ticket version of the snapshot stored here; an event carrying a version at or
    -- below it changes nothing.
    version          bigint      NOT NULL CHECK (version >= 1),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Each metric's window applies to its end timestamp, so each end timestamp gets an
-- index for range scans over a large projection.
CREATE INDEX incidents_detected_at_idx ON incidents (detected_at) WHERE detected_at IS NOT NULL;
CREATE INDEX incidents_acknowledged_at_idx ON incidents (acknowledged_at) WHERE acknowledged_at IS NOT NULL;
CREATE INDEX incidents_contained_at_idx ON incidents (contained_at) WHERE contained_at IS NOT NULL;
CREATE INDEX incidents_last_resolved_at_idx ON incidents (last_resolved_at) WHERE last_resolved_at IS NOT NULL;

-- Ids of the events already handled, whether or not they changed the projection, so a
-- redelivered event is recognised by its id alone.
-- NOTE: no job deletes old rows yet, so the table grows by one row per ticket event.
CREATE TABLE applied_events (
    event_id   uuid        PRIMARY KEY,
    ticket_id  uuid        NOT NULL,
    version    bigint      NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX applied_events_ticket_id_idx ON applied_events (ticket_id, version);
