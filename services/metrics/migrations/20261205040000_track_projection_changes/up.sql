-- The service answers response-time queries from a copy of this table that it keeps in
-- memory. Every row records the transaction that last wrote it, so the copy can be brought
-- up to date by reading only the rows written since its previous refresh; see
-- docs/metrics.md, "How a query is answered".
ALTER TABLE incidents ADD COLUMN changed_by xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX incidents_changed_by_idx ON incidents (changed_by);

-- Every insert and update stamps the row, whoever makes it, and even when the statement
-- names changed_by, as a copy of rows restored from a backup does. An update that changes
-- the ticket id removes the old id, so it is recorded as a deletion.
CREATE FUNCTION incidents_stamp_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_by := pg_current_xact_id();
    IF TG_OP = 'UPDATE' THEN
        IF NEW.ticket_id <> OLD.ticket_id THEN
            INSERT INTO incident_deletions (ticket_id) VALUES (OLD.ticket_id);
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER incidents_stamp_change BEFORE INSERT OR UPDATE ON incidents
    FOR EACH ROW EXECUTE FUNCTION incidents_stamp_change();

-- The service never deletes projection rows, but an operator may. Each deleted ticket id
-- is kept with the deleting transaction, and a TRUNCATE leaves one row without a ticket
-- id, so the copy can drop the same rows.
CREATE TABLE incident_deletions (
    ticket_id  uuid,
    changed_by xid8        NOT NULL DEFAULT pg_current_xact_id(),
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incident_deletions_changed_by_idx ON incident_deletions (changed_by);

CREATE FUNCTION incidents_record_deletion() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO incident_deletions (ticket_id) VALUES (NULL);
    ELSE
        INSERT INTO incident_deletions (ticket_id) SELECT ticket_id FROM old_rows;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER incidents_record_delete AFTER DELETE ON incidents
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION incidents_record_deletion();
CREATE TRIGGER incidents_record_truncate AFTER TRUNCATE ON incidents
    FOR EACH STATEMENT EXECUTE FUNCTION incidents_record_deletion();

-- The queries no longer run in SQL, so the per-combination counts and the indexes on the
-- end instants only slowed the writes down.
DROP TRIGGER incident_counts_truncate ON incidents;
DROP TRIGGER incident_counts_delete ON incidents;
DROP TRIGGER incident_counts_update ON incidents;
DROP TRIGGER incident_counts_insert ON incidents;
DROP FUNCTION incident_counts_after_statement();
DROP TABLE incident_counts;
DROP INDEX incidents_detected_at_idx;
DROP INDEX incidents_acknowledged_at_idx;
DROP INDEX incidents_contained_at_idx;
DROP INDEX incidents_last_resolved_at_idx;
