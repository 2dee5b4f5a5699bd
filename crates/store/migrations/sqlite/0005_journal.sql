-- Accepted pushes whose recipients are not handled yet. The accept stores a
-- push with one row here (what its recipients need: the clients, the badge
-- plan, the routing plan, the variants); the fan-out handles journaled pushes
-- in accept order (unread counters, routing, one delivery per device) and
-- deletes their rows in the same transaction, so a crash at any moment
-- leaves each push either journaled or fanned out, never half of either.
CREATE TABLE journal (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    push_id TEXT    NOT NULL,
    plan    TEXT    NOT NULL
);
