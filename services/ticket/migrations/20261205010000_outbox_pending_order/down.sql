DROP INDEX outbox_metrics_pending_id;
DROP INDEX outbox_audit_pending_id;
