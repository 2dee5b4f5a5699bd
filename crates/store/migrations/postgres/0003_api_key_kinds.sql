-- Keys an operator creates (`pushgate keys create`) beside the one pushgate
-- generates for an app without any; revoking deletes the row.
ALTER TABLE api_keys ADD COLUMN kind TEXT NOT NULL DEFAULT 'generated';
