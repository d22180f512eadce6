-- Seeds the metrics projection with $1 tickets created over the last 1095 days (three
-- years) in creation order, as a live projection fills up. The shape is an estimate of a
-- security operations centre's mix: 97 % resolved or closed, and 55 % of those true
-- positives. Acknowledgement comes within 4 h, containment within 2 days and resolution
-- within 10 days, with most tickets near the fast end. random() draws after the setseed() call run before it,
-- so every run seeds the same data.
INSERT INTO incidents (ticket_id, ticket_key, severity, category, status, resolution, team,
    detection_source, imported, reopen_count, created_at, occurred_at, detected_at,
    acknowledged_at, contained_at, resolved_at, last_resolved_at, closed_at, version, updated_at)
SELECT ticket_id, 'INC-' || i, severity, category, status, resolution, team, source, imported, 0,
       created_at, occurred_at, detected_at, acknowledged_at,
       CASE WHEN stage >= 3 THEN acknowledged_at + contain_after END,
       CASE WHEN stage >= 4 THEN acknowledged_at + contain_after + resolve_after END,
       CASE WHEN stage >= 4 THEN acknowledged_at + contain_after + resolve_after END,
       CASE WHEN status = 'closed' THEN acknowledged_at + contain_after + resolve_after + interval '1 day' END,
       5, now()
FROM (
    SELECT i, ticket_id, severity, category, team, source, imported, created_at, detected_at, stage,
           CASE WHEN stage >= 2 THEN detected_at + ack_after END AS acknowledged_at,
           CASE WHEN has_occurred THEN detected_at - occurred_before END AS occurred_at,
           contain_after, resolve_after,
           CASE stage WHEN 1 THEN 'new' WHEN 2 THEN 'investigating' WHEN 3 THEN 'contained'
                ELSE CASE WHEN r_status < 0.8 THEN 'closed' ELSE 'resolved' END END AS status,
           CASE WHEN stage < 4 THEN ''
                WHEN r_resolution < 0.55 THEN 'true_positive'
                WHEN r_resolution < 0.85 THEN 'false_positive'
                WHEN r_resolution < 0.95 THEN 'benign' ELSE 'duplicate' END AS resolution
    FROM (
        SELECT i,
               md5('ticket' || i)::uuid AS ticket_id,
               CASE WHEN r1 < 0.05 THEN 'critical' WHEN r1 < 0.20 THEN 'high' WHEN r1 < 0.55 THEN 'medium'
                    WHEN r1 < 0.90 THEN 'low' WHEN r1 < 0.97 THEN 'informational' ELSE '' END AS severity,
               (ARRAY['malware', 'phishing', 'unauthorized_access', 'data_exfiltration', 'denial_of_service',
                      'insider_misuse', 'human_error', 'physical_theft_or_loss', 'policy_violation',
                      'vulnerability', 'other'])[1 + floor(r2 * 11)::int] AS category,
               (ARRAY['soc-tier1', 'soc-tier2', 'incident-response', 'cloud', 'identity'])[1 + floor(r3 * 5)::int] AS team,
               (ARRAY['edr', 'siem', 'email-gateway', 'user-report', 'ids', 'threat-intel'])[1 + floor(r4 * 6)::int] AS source,
               r5 < 0.1 AS imported,
               now() - interval '1095 days' * (1 - (i - r6) / $1::float8) AS created_at,
               now() - interval '1095 days' * (1 - (i - r6) / $1::float8) - r7 * interval '10 minutes' AS detected_at,
               CASE WHEN r8 < 0.01 THEN 1 WHEN r8 < 0.02 THEN 2 WHEN r8 < 0.03 THEN 3 ELSE 4 END AS stage,
               r9 < 0.8 AS has_occurred,
               r10 * r10 * r10 * interval '30 days' AS occurred_before,
               r11 * r11 * interval '4 hours' AS ack_after,
               r12 * r12 * interval '48 hours' AS contain_after,
               r13 * interval '10 days' AS resolve_after,
               r14 AS r_status, r15 AS r_resolution
        FROM (SELECT i, random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5,
                     random() AS r6, random() AS r7, random() AS r8, random() AS r9, random() AS r10,
                     random() AS r11, random() AS r12, random() AS r13, random() AS r14, random() AS r15
              FROM generate_series(1, $1::bigint) AS i) AS draws
    ) AS base
) AS shaped
