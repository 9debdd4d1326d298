-- The newest TOTP time step each user's second factor accepted: a code is accepted once, and no
-- code of an earlier step after it (RFC 6238 §5.2), on every replica. A table of its own (not a
-- column of users) so the migration stays idempotent on SQLite.
CREATE TABLE IF NOT EXISTS totp_steps (
    user_id   TEXT PRIMARY KEY REFERENCES users(user_id) ON DELETE CASCADE,
    last_step BIGINT NOT NULL
);
