-- Coalescing: per app, client and room, the window the room's last alert
-- opened. A message that comes in it is held (its deliveries are rows with
-- status `held`, not due); a newer held message supersedes it (its rows
-- become `coalesced`, `carried_by` the newer push); when the window ends the
-- latest held message's rows are queued with a `summary` (the count and the
-- senders) and a new window opens. A read of the room ends the window.
CREATE TABLE coalescing (
    app_id          TEXT    NOT NULL,
    client_id       TEXT    NOT NULL,
    room            TEXT    NOT NULL,
    window_until_ms INTEGER NOT NULL,             -- messages before this are held
    window_ms       INTEGER NOT NULL,             -- the app's window, for the next one
    held_push_id    TEXT,                         -- the latest held message, if any
    messages        INTEGER NOT NULL DEFAULT 0,   -- messages since the run of windows began (see plan.rs)
    senders         TEXT    NOT NULL DEFAULT '[]', -- JSON: nicknames of the window's messages, latest first
    PRIMARY KEY (app_id, client_id, room)
) WITHOUT ROWID;
CREATE INDEX coalescing_due ON coalescing (window_until_ms) WHERE held_push_id IS NOT NULL;

ALTER TABLE deliveries ADD COLUMN carried_by TEXT; -- coalesced: the push whose alert carried it
ALTER TABLE deliveries ADD COLUMN summary TEXT;    -- a window's alert: {"count", "senders"}
CREATE INDEX deliveries_held ON deliveries (push_id, client_id) WHERE status = 'held';


DROP VIEW delivery_states;
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
FROM sends s, json_each(s.deliveries) e
WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.send_id = s.id AND d.send_index = e.key)
UNION ALL
SELECT push_id, app_id, experiment_id, send_id, send_index, client_id, device_type, device_id, status, reason,
       attempts, next_attempt_at_ms, updated_at_ms, mode, route_reason, variant, carried_by
FROM deliveries;
