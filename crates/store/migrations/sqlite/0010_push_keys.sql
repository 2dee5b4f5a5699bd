-- Private payloads: a device's key (`pushKey` on /me/subscribe), the stored
-- form of `PushKey` (`{"p256dh", "auth"}`, public values: the app keeps the
-- private key). A delivery row of its own copies it, as it copies the token.
ALTER TABLE devices ADD COLUMN push_key TEXT;
ALTER TABLE deliveries ADD COLUMN push_key TEXT;
