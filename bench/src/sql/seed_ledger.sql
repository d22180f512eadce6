-- Appends $1 records to an empty ledger in one statement: canonical JSON of a status
-- change, its leaf hash and the running chain hash. The keys are written in sorted order.
-- json_build_object puts spaces around separators, so the bytes are valid JSON but not in
-- the service's canonical form. Verification does not check that form, because it hashes
-- the stored bytes and parses them only to compare the indexed columns.
INSERT INTO ledger (seq, event_id, action, resource_type, resource_id, resource_key, actor, relayed_by,
                    occurred_at, recorded_at, canonical, leaf_hash, chain_hash)
SELECT seq, event_id, 'ticket.transitioned', 'ticket', resource_id, resource_key, 'alice', 'docket-ticket',
       at, at, canonical, leaf_hash,
       pg_temp.chain(leaf_hash) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
FROM (
    SELECT seq, event_id, resource_id, resource_key, at, canonical, sha256('\x00'::bytea || canonical) AS leaf_hash
    FROM (
        SELECT seq, event_id, resource_id, resource_key, at,
               convert_to(json_build_object(
                   'action', 'ticket.transitioned',
                   'actor', json_build_object('kind', 'human', 'relayed_by', 'docket-ticket', 'subject', 'alice'),
                   'changes', json_build_array(json_build_object('field', 'status', 'new', 'contained', 'old', 'investigating')),
                   'event_id', event_id::text,
                   'occurred_at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   'reason', '',
                   'recorded_at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   'resource', json_build_object('id', resource_id, 'key', resource_key, 'type', 'ticket'),
                   'resource_version', 3,
                   'seq', seq,
                   'source_service', 'docket-ticket',
                   'trace_id', md5(seq::text))::text, 'UTF8') AS canonical
        FROM (
            SELECT seq, md5('event' || seq)::uuid AS event_id,
                   md5('ticket' || (seq % 250000))::uuid::text AS resource_id,
                   'INC-' || (seq % 250000) AS resource_key,
                   timestamptz '2024-01-01 00:00:00+00' + seq * interval '90 seconds' AS at
            FROM generate_series(1, $1::bigint) AS seq
        ) AS ids
    ) AS records
) AS hashed
