-- IMKIT callbacks already accepted: the same message twice pushes once.
CREATE TABLE callbacks (
    app_id        TEXT    NOT NULL,
    message_id    TEXT    NOT NULL,  -- the message's _id
    to_client     TEXT    NOT NULL,  -- '' for v2; the recipient for v1 (one callback per recipient)
    push_id       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (app_id, message_id, to_client)
) WITHOUT ROWID;

-- Unread messages per client and room, counted from v2 callbacks.
CREATE TABLE room_unreads (
    app_id        TEXT    NOT NULL,
    client_id     TEXT    NOT NULL,
    room          TEXT    NOT NULL,
    unread        INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (app_id, client_id, room)
) WITHOUT ROWID;

-- Cross-domain badge counts per client (orders, events...), set by the app.
CREATE TABLE badge_sources (
    app_id        TEXT    NOT NULL,
    client_id     TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    count         INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (app_id, client_id, source)
) WITHOUT ROWID;

-- What each recipient's payload is built with: its badge when the push was
-- accepted, and its device's locale.
ALTER TABLE deliveries ADD COLUMN badge INTEGER;
ALTER TABLE deliveries ADD COLUMN locale TEXT;

-- Housekeeping forgets finished pushes and old callback ids by age.
CREATE INDEX pushes_created ON pushes (created_at_ms);
CREATE INDEX callbacks_created ON callbacks (created_at_ms);
