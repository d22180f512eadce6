-- The relay claims the oldest pending rows of a sink in id order. Without an index on the
-- pending rows' ids, PostgreSQL walks the primary key from the first row ever written and
-- skips every delivered one, which took about 100 ms per claim once 200,000 rows had been
-- delivered and capped the relay below 500 events per second.
CREATE INDEX outbox_audit_pending_id ON outbox (id) WHERE audit_delivered_at IS NULL;
CREATE INDEX outbox_metrics_pending_id ON outbox (id) WHERE metrics_delivered_at IS NULL;
