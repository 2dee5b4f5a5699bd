-- Per client and room: muted rooms send no alert (a silent badge update at most).
CREATE TABLE room_prefs (
    app_id         TEXT    NOT NULL,
    client_id      TEXT    NOT NULL,
    room           TEXT    NOT NULL,
    muted          INTEGER NOT NULL,
    muted_until_ms INTEGER,           -- NULL: until unmuted
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (app_id, client_id, room)
) WITHOUT ROWID;

-- Clients that said they are online, until when.
CREATE TABLE presence (
    app_id          TEXT    NOT NULL,
    client_id       TEXT    NOT NULL,
    online_until_ms INTEGER NOT NULL,
    PRIMARY KEY (app_id, client_id)
) WITHOUT ROWID;

-- Per client: pushes on or off, quiet hours and their time zone, locale.
CREATE TABLE client_prefs (
    app_id        TEXT    NOT NULL,
    client_id     TEXT    NOT NULL,
    push_enabled  INTEGER NOT NULL,
    quiet_start   TEXT,              -- HH:MM
    quiet_end     TEXT,
    timezone      TEXT,
    locale        TEXT,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (app_id, client_id)
) WITHOUT ROWID;

-- A/B copy experiments, as PUT.
CREATE TABLE experiments (
    app_id        TEXT    NOT NULL,
    experiment_id TEXT    NOT NULL,
    definition    TEXT    NOT NULL,  -- JSON
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (app_id, experiment_id)
) WITHOUT ROWID;

-- Pushes a client opened (experiment conversions).
CREATE TABLE opens (
    app_id       TEXT    NOT NULL,
    push_id      TEXT    NOT NULL,
    client_id    TEXT    NOT NULL,
    opened_at_ms INTEGER NOT NULL,
    PRIMARY KEY (app_id, push_id, client_id)
) WITHOUT ROWID;

-- The experiment a push took part in, as it was then: {"id", "variants": [...]}.
ALTER TABLE pushes ADD COLUMN experiment TEXT;
-- How the recipient is reached (alert, quiet, silent) and why not as usual.
ALTER TABLE deliveries ADD COLUMN mode TEXT;
ALTER TABLE deliveries ADD COLUMN route_reason TEXT;
-- The experiment and variant the recipient got.
ALTER TABLE deliveries ADD COLUMN experiment_id TEXT;
ALTER TABLE deliveries ADD COLUMN variant TEXT;
CREATE INDEX deliveries_experiment ON deliveries (app_id, experiment_id) WHERE experiment_id IS NOT NULL;
