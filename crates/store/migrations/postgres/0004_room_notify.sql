-- What a client wants from a room: every alert ('all'), only mentions
-- ('mentions') or none ('none', a mute; `muted` stays true exactly then, for
-- the badge totals). `muted_until_ms` ends any setting but 'all'.
ALTER TABLE room_prefs ADD COLUMN notify TEXT NOT NULL DEFAULT 'all';
UPDATE room_prefs SET notify = 'none' WHERE muted;
