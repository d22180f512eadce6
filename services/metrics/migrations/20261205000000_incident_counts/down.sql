DROP TRIGGER incident_counts_truncate ON incidents;
DROP TRIGGER incident_counts_delete ON incidents;
DROP TRIGGER incident_counts_update ON incidents;
DROP TRIGGER incident_counts_insert ON incidents;
DROP FUNCTION incident_counts_after_statement();
DROP TABLE incident_counts;
