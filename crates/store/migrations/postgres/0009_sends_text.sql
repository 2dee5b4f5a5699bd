-- A send's planned entries stored as the text pushgate writes and reads (a JSON array), no longer as JSONB: the
-- fan-out inserted them parsed into JSONB (~6.5 µs an entry, its insert's largest cost, issue 30) and every claim
-- turned them back into text for pushgate to parse again. The few statements that read one entry in SQL (an
-- outcome's own row, this view) parse their send's text.
DROP VIEW delivery_states;
ALTER TABLE sends ALTER COLUMN deliveries TYPE TEXT USING deliveries::TEXT;

CREATE VIEW delivery_states AS
SELECT s.push_id, s.app_id, s.experiment_id, s.id AS send_id, (e.n - 1)::INTEGER AS send_index,
       e.value ->> 'client_id' AS client_id, e.value ->> 'device_type' AS device_type,
       e.value ->> 'device_id' AS device_id,
       CASE WHEN e.value ->> 'status' = 'skipped' THEN 'skipped'
            WHEN s.settled @> to_jsonb(e.n - 1) THEN 'delivered'
            ELSE 'queued' END AS status,
       e.value ->> 'reason' AS reason,
       CASE WHEN e.value ->> 'status' = 'queued' AND s.settled @> to_jsonb(e.n - 1) THEN 1 ELSE 0 END AS attempts,
       CASE WHEN e.value ->> 'status' = 'queued' AND NOT s.settled @> to_jsonb(e.n - 1)
            THEN s.next_attempt_at_ms END AS next_attempt_at_ms,
       s.updated_at_ms, e.value ->> 'mode' AS mode, e.value ->> 'route_reason' AS route_reason,
       e.value ->> 'variant' AS variant, NULL::TEXT AS carried_by
FROM sends s CROSS JOIN LATERAL jsonb_array_elements(s.deliveries::JSONB) WITH ORDINALITY AS e (value, n)
WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.send_id = s.id AND d.send_index = e.n - 1)
UNION ALL
SELECT push_id, app_id, experiment_id, send_id, send_index, client_id, device_type, device_id, status, reason,
       attempts, next_attempt_at_ms, updated_at_ms, mode, route_reason, variant, carried_by
FROM deliveries;
