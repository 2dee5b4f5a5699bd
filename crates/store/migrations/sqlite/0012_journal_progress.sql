-- A push with more recipients than one fan-out transaction takes (a big room)
-- is fanned out a piece at a time: `done` is how many of its recipients (in
-- the fan-out's stable order) are handled; the row goes with its last piece.
ALTER TABLE journal ADD COLUMN done INTEGER NOT NULL DEFAULT 0;
