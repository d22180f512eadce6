-- Restores the per-combination counts and the end-instant indexes as they were before.
CREATE TABLE incident_counts (
    severity         text    NOT NULL,
    category         text    NOT NULL,
    team             text    NOT NULL,
    detection_source text    NOT NULL,
    imported         boolean NOT NULL,
    resolution       text    NOT NULL,
    tickets          bigint  NOT NULL,
    PRIMARY KEY (severity, category, team, detection_source, imported, resolution)
);

INSERT INTO incident_counts (severity, category, team, detection_source, imported, resolution, tickets)
SELECT severity, category, team, detection_source, imported, resolution, count(*)
FROM incidents
GROUP BY severity, category, team, detection_source, imported, resolution;

-- Adds the per-combination changes of one statement. Rows are upserted in key order, so
-- two transactions that change the same combinations lock them in the same order.
CREATE FUNCTION incident_counts_after_statement() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO incident_counts AS counts (severity, category, team, detection_source, imported, resolution, tickets)
        SELECT severity, category, team, detection_source, imported, resolution, count(*)
        FROM new_rows
        GROUP BY severity, category, team, detection_source, imported, resolution
        ORDER BY severity, category, team, detection_source, imported, resolution
        ON CONFLICT (severity, category, team, detection_source, imported, resolution)
        DO UPDATE SET tickets = counts.tickets + EXCLUDED.tickets;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO incident_counts AS counts (severity, category, team, detection_source, imported, resolution, tickets)
        SELECT severity, category, team, detection_source, imported, resolution, sum(change)
        FROM (SELECT severity, category, team, detection_source, imported, resolution, 1 AS change FROM new_rows
              UNION ALL
              SELECT severity, category, team, detection_source, imported, resolution, -1 AS change FROM old_rows) AS changes
        GROUP BY severity, category, team, detection_source, imported, resolution
        HAVING sum(change) <> 0
        ORDER BY severity, category, team, detection_source, imported, resolution
        ON CONFLICT (severity, category, team, detection_source, imported, resolution)
        DO UPDATE SET tickets = counts.tickets + EXCLUDED.tickets;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE incident_counts AS counts SET tickets = counts.tickets - removed.tickets
        FROM (SELECT severity, category, team, detection_source, imported, resolution, count(*) AS tickets
              FROM old_rows
              GROUP BY severity, category, team, detection_source, imported, resolution) AS removed
        WHERE (counts.severity, counts.category, counts.team, counts.detection_source, counts.imported, counts.resolution)
            = (removed.severity, removed.category, removed.team, removed.detection_source, removed.imported, removed.resolution);
    ELSIF TG_OP = 'TRUNCATE' THEN
        DELETE FROM incident_counts;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER incident_counts_insert AFTER INSERT ON incidents
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION incident_counts_after_statement();
CREATE TRIGGER incident_counts_update AFTER UPDATE ON incidents
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION incident_counts_after_statement();
CREATE TRIGGER incident_counts_delete AFTER DELETE ON incidents
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION incident_counts_after_statement();
CREATE TRIGGER incident_counts_truncate AFTER TRUNCATE ON incidents
    FOR EACH STATEMENT EXECUTE FUNCTION incident_counts_after_statement();
CREATE INDEX incidents_detected_at_idx ON incidents (detected_at) WHERE detected_at IS NOT NULL;
CREATE INDEX incidents_acknowledged_at_idx ON incidents (acknowledged_at) WHERE acknowledged_at IS NOT NULL;
CREATE INDEX incidents_contained_at_idx ON incidents (contained_at) WHERE contained_at IS NOT NULL;
CREATE INDEX incidents_last_resolved_at_idx ON incidents (last_resolved_at) WHERE last_resolved_at IS NOT NULL;
DROP TRIGGER incidents_record_truncate ON incidents;
DROP TRIGGER incidents_record_delete ON incidents;
DROP FUNCTION incidents_record_deletion();
DROP TABLE incident_deletions;
DROP TRIGGER incidents_stamp_change ON incidents;
DROP FUNCTION incidents_stamp_change();
DROP INDEX incidents_changed_by_idx;
ALTER TABLE incidents DROP COLUMN changed_by;
