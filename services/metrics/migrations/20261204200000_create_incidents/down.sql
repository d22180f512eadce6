DROP TABLE applied_events;
DROP TABLE incidents;
