-- Private payloads (see the SQLite migration of the same name).
ALTER TABLE devices ADD COLUMN push_key TEXT;
ALTER TABLE deliveries ADD COLUMN push_key TEXT;
