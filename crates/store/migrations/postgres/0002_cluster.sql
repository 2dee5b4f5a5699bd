-- What the nodes sharing this database agree on besides the queue.

-- A provider's rate limit as one budget for every node: the sends granted in
-- the current one-second window (`window_s`, Unix seconds) of each budget
-- (`key`: app and provider). `last_grant` is what the last taker got: an
-- upsert's RETURNING sees only the new row, so the grant is kept beside it.
CREATE TABLE send_budgets (
    key        TEXT   NOT NULL PRIMARY KEY,
    window_s   BIGINT NOT NULL,
    used       BIGINT NOT NULL,
    last_grant BIGINT NOT NULL
);

-- An app's provider paused for every node after it refused the app's
-- credentials or configuration; the row goes when a probe is accepted.
CREATE TABLE provider_pauses (
    app_id      TEXT   NOT NULL,
    provider    TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    until_ms    BIGINT NOT NULL,
    interval_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, provider)
);
