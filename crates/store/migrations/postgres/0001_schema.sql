-- pushgate on PostgreSQL: the same model as the SQLite store (see its
-- migrations for what each table is for), in one step.

CREATE TABLE devices (
    app_id        TEXT   NOT NULL,
    device_type   TEXT   NOT NULL,
    device_id     TEXT   NOT NULL,
    client_id     TEXT   NOT NULL,
    token_kind    TEXT   NOT NULL,
    token         TEXT   NOT NULL,
    environment   TEXT,
    locale        TEXT,
    timezone      TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, device_type, device_id)
);
CREATE UNIQUE INDEX devices_token ON devices (app_id, token_kind, token);
CREATE INDEX devices_client ON devices (app_id, client_id);

CREATE TABLE api_keys (
    digest        BYTEA  NOT NULL PRIMARY KEY,
    app_id        TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE pushes (
    push_id       TEXT   NOT NULL PRIMARY KEY,
    app_id        TEXT   NOT NULL,
    kind          TEXT   NOT NULL,
    request       TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    deadline_ms   BIGINT NOT NULL,
    experiment    TEXT
);
CREATE INDEX pushes_created ON pushes (created_at_ms);

CREATE TABLE callbacks (
    app_id        TEXT   NOT NULL,
    message_id    TEXT   NOT NULL,
    to_client     TEXT   NOT NULL,
    push_id       TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, message_id, to_client)
);
CREATE INDEX callbacks_created ON callbacks (created_at_ms);

CREATE TABLE journal (
    seq     BIGSERIAL PRIMARY KEY,
    push_id TEXT NOT NULL,
    plan    TEXT NOT NULL
);

CREATE TABLE sends (
    id                 BIGSERIAL PRIMARY KEY,
    push_id            TEXT    NOT NULL,
    app_id             TEXT    NOT NULL,
    experiment_id      TEXT,
    deliveries         JSONB   NOT NULL,
    queued             INTEGER NOT NULL,
    settled            JSONB   NOT NULL DEFAULT '[]',
    pending            INTEGER NOT NULL,
    next_attempt_at_ms BIGINT  NOT NULL,
    leased_until_ms    BIGINT,
    updated_at_ms      BIGINT  NOT NULL
);
CREATE INDEX sends_due ON sends (next_attempt_at_ms) WHERE pending > 0;
CREATE INDEX sends_push ON sends (push_id);
CREATE INDEX sends_experiment ON sends (app_id, experiment_id) WHERE experiment_id IS NOT NULL;

CREATE TABLE deliveries (
    id                 BIGSERIAL PRIMARY KEY,
    push_id            TEXT    NOT NULL,
    app_id             TEXT    NOT NULL,
    client_id          TEXT    NOT NULL,
    device_type        TEXT,
    device_id          TEXT,
    token              TEXT,
    environment        TEXT,
    locale             TEXT,
    badge              BIGINT,
    status             TEXT    NOT NULL,
    reason             TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT,
    leased_until_ms    BIGINT,
    updated_at_ms      BIGINT  NOT NULL,
    mode               TEXT,
    route_reason       TEXT,
    experiment_id      TEXT,
    variant            TEXT,
    send_id            BIGINT,
    send_index         INTEGER
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at_ms) WHERE status IN ('queued', 'retrying');
CREATE INDEX deliveries_push ON deliveries (push_id, id);
CREATE UNIQUE INDEX deliveries_send ON deliveries (send_id, send_index) WHERE send_id IS NOT NULL;
CREATE INDEX deliveries_experiment ON deliveries (app_id, experiment_id) WHERE experiment_id IS NOT NULL;

CREATE TABLE room_unreads (
    app_id        TEXT   NOT NULL,
    client_id     TEXT   NOT NULL,
    room          TEXT   NOT NULL,
    unread        BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, client_id, room)
);

CREATE TABLE badge_sources (
    app_id        TEXT   NOT NULL,
    client_id     TEXT   NOT NULL,
    source        TEXT   NOT NULL,
    count         BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, client_id, source)
);

CREATE TABLE room_prefs (
    app_id         TEXT    NOT NULL,
    client_id      TEXT    NOT NULL,
    room           TEXT    NOT NULL,
    muted          BOOLEAN NOT NULL,
    muted_until_ms BIGINT,
    updated_at_ms  BIGINT  NOT NULL,
    PRIMARY KEY (app_id, client_id, room)
);

CREATE TABLE presence (
    app_id          TEXT   NOT NULL,
    client_id       TEXT   NOT NULL,
    online_until_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, client_id)
);

CREATE TABLE client_prefs (
    app_id        TEXT    NOT NULL,
    client_id     TEXT    NOT NULL,
    push_enabled  BOOLEAN NOT NULL,
    quiet_start   TEXT,
    quiet_end     TEXT,
    timezone      TEXT,
    locale        TEXT,
    updated_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (app_id, client_id)
);

CREATE TABLE experiments (
    app_id        TEXT   NOT NULL,
    experiment_id TEXT   NOT NULL,
    definition    TEXT   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, experiment_id)
);

CREATE TABLE opens (
    app_id       TEXT   NOT NULL,
    push_id      TEXT   NOT NULL,
    client_id    TEXT   NOT NULL,
    opened_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, push_id, client_id)
);

-- Every delivery where it stands (as the SQLite view of the same name).
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
       e.value ->> 'variant' AS variant
FROM sends s CROSS JOIN LATERAL jsonb_array_elements(s.deliveries) WITH ORDINALITY AS e (value, n)
WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.send_id = s.id AND d.send_index = e.n - 1)
UNION ALL
SELECT push_id, app_id, experiment_id, send_id, send_index, client_id, device_type, device_id, status, reason,
       attempts, next_attempt_at_ms, updated_at_ms, mode, route_reason, variant
FROM deliveries;
