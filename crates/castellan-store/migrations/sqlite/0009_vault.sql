-- Issue 20. Client tokens of the Vault-shaped API: opaque random strings, kept only as their SHA-256,
-- bound to a client and the scopes it held at login. In the store (not in a replica's memory) so a
-- token logged in at one replica works, renews and is revoked at every replica. Expired rows are
-- removed at the next login (by `expires_at`, indexed).
CREATE TABLE IF NOT EXISTS vault_tokens (
    token_hash     BLOB PRIMARY KEY,
    accessor       TEXT NOT NULL UNIQUE,
    client_id      TEXT NOT NULL,
    scope          TEXT NOT NULL,
    auth_path      TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    ttl_secs       INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    max_expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS vault_tokens_expires ON vault_tokens (expires_at);
