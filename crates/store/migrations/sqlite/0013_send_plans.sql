-- A send's planned deliveries (the JSON array of up to 256 entries) in a table
-- of their own, written once by the fan-out and only read after. In `sends`
-- they made every outcome group and every lease rewrite the whole record, its
-- tens of kilobytes of overflow pages included (SQLite rewrites a row whole
-- when its size changes, as `settled` and `leased_until_ms` do): found by a
-- profile of pushgate-bench (issue 30). `sends` keeps the small, changing
-- state; `send_plans.id` is the send's id (drawn here, by AUTOINCREMENT, and
-- given to `sends`).
CREATE TABLE send_plans (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    deliveries TEXT    NOT NULL
);
INSERT INTO send_plans (id, deliveries) SELECT id, deliveries FROM sends;
-- Ids go on from the last one `sends` ever gave (a forgotten send's id is not
-- given again: `deliveries.send_id` names sends).
DELETE FROM sqlite_sequence WHERE name = 'send_plans';
INSERT INTO sqlite_sequence (name, seq) SELECT 'send_plans', seq FROM sqlite_sequence WHERE name = 'sends';

DROP VIEW delivery_states;
ALTER TABLE sends DROP COLUMN deliveries;
CREATE VIEW delivery_states AS
SELECT s.push_id, s.app_id, s.experiment_id, s.id AS send_id, e.key AS send_index,
       json_extract(e.value, '$.client_id') AS client_id,
       json_extract(e.value, '$.device_type') AS device_type,
       json_extract(e.value, '$.device_id') AS device_id,
       CASE WHEN json_extract(e.value, '$.status') = 'skipped' THEN 'skipped'
            WHEN EXISTS (SELECT 1 FROM json_each(s.settled) x WHERE x.value = e.key) THEN 'delivered'
            ELSE 'queued' END AS status,
       json_extract(e.value, '$.reason') AS reason,
       CASE WHEN json_extract(e.value, '$.status') = 'queued'
                 AND EXISTS (SELECT 1 FROM json_each(s.settled) x WHERE x.value = e.key) THEN 1
            ELSE 0 END AS attempts,
       CASE WHEN json_extract(e.value, '$.status') = 'queued'
                 AND NOT EXISTS (SELECT 1 FROM json_each(s.settled) x WHERE x.value = e.key)
            THEN s.next_attempt_at_ms END AS next_attempt_at_ms,
       s.updated_at_ms,
       json_extract(e.value, '$.mode') AS mode,
       json_extract(e.value, '$.route_reason') AS route_reason,
       json_extract(e.value, '$.variant') AS variant,
       NULL AS carried_by
FROM sends s JOIN send_plans p ON p.id = s.id, json_each(p.deliveries) e
WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.send_id = s.id AND d.send_index = e.key)
UNION ALL
SELECT push_id, app_id, experiment_id, send_id, send_index, client_id, device_type, device_id, status, reason,
       attempts, next_attempt_at_ms, updated_at_ms, mode, route_reason, variant, carried_by
FROM deliveries;
