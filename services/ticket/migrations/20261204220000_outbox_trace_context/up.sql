-- W3C traceparent of the request that made the change, so the relay continues its trace.
ALTER TABLE outbox ADD COLUMN traceparent text;
