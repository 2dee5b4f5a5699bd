-- An accepted push: what was asked, stored before RC 0 is answered.
CREATE TABLE pushes (
    push_id       TEXT    NOT NULL PRIMARY KEY,
    app_id        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,  -- custom (push2clients)
    request       TEXT    NOT NULL,  -- the request payload, JSON
    created_at_ms INTEGER NOT NULL,
    deadline_ms   INTEGER NOT NULL   -- no attempt after this (expiry or the app's max age)
) WITHOUT ROWID;

-- One row per (push, device), or per (push, client) when the client has no device.
CREATE TABLE deliveries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    push_id            TEXT    NOT NULL REFERENCES pushes (push_id),
    app_id             TEXT    NOT NULL,
    client_id          TEXT    NOT NULL,
    device_type        TEXT,             -- NULL for a client without devices
    device_id          TEXT,
    token              TEXT,
    environment        TEXT,
    status             TEXT    NOT NULL, -- queued, retrying, delivered, failed, pruned, skipped
    reason             TEXT,             -- why it failed, was skipped, or is retrying
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER,          -- when a queued or retrying delivery is due
    leased_until_ms    INTEGER,          -- a worker holds it until then
    updated_at_ms      INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at_ms) WHERE status IN ('queued', 'retrying');
CREATE INDEX deliveries_push ON deliveries (push_id, id);
