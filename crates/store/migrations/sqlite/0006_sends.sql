-- The fan-out's output: a push's deliveries as planned, one row per push (per
-- 256 deliveries), not one per delivery. `deliveries` is a JSON array of
-- objects (client_id, device_type, device_id, token, environment, locale,
-- badge, status, reason, mode, route_reason, variant); status is `queued`
-- (to send) or `skipped` (no device, routed away). A worker leases the whole
-- row; each outcome adds its index to `settled`. A first-attempt success
-- costs nothing more: only an outcome that needs its own row (a retry
-- waiting for its time, a failure, a prune, a skip) gets one in `deliveries`,
-- with `send_id` and `send_index` pointing back at its planned entry.
CREATE TABLE sends (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    push_id            TEXT    NOT NULL,
    app_id             TEXT    NOT NULL,
    experiment_id      TEXT,
    deliveries         TEXT    NOT NULL,
    queued             INTEGER NOT NULL,            -- entries with status queued
    settled            TEXT    NOT NULL DEFAULT '[]', -- JSON array: indexes with an outcome
    pending            INTEGER NOT NULL,            -- queued entries without an outcome
    next_attempt_at_ms INTEGER NOT NULL,
    leased_until_ms    INTEGER,
    updated_at_ms      INTEGER NOT NULL             -- last outcome (or the fan-out)
);
CREATE INDEX sends_due ON sends (next_attempt_at_ms) WHERE pending > 0;
CREATE INDEX sends_push ON sends (push_id);
CREATE INDEX sends_experiment ON sends (app_id, experiment_id) WHERE experiment_id IS NOT NULL;

ALTER TABLE deliveries ADD COLUMN send_id INTEGER;
ALTER TABLE deliveries ADD COLUMN send_index INTEGER;
CREATE UNIQUE INDEX deliveries_send ON deliveries (send_id, send_index) WHERE send_id IS NOT NULL;

-- Every delivery where it stands: a planned entry without a row of its own is
-- skipped (as planned), delivered (settled) or queued; a row wins over its entry.
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
       json_extract(e.value, '$.variant') AS variant
FROM sends s, json_each(s.deliveries) e
WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.send_id = s.id AND d.send_index = e.key)
UNION ALL
SELECT push_id, app_id, experiment_id, send_id, send_index, client_id, device_type, device_id, status, reason,
       attempts, next_attempt_at_ms, updated_at_ms, mode, route_reason, variant
FROM deliveries;
