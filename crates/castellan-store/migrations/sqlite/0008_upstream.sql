-- Sign-in through upstream identity providers (`[[identity_provider]]`). Neither table is cached by
-- replicas: each row is read by its key on the request that needs it, so a sign-in started on one
-- replica finishes on any other.
-- An upstream sign-in under way: started when the person clicks "Continue with <provider>", used
-- once when the provider sends the browser back. The `state` sent upstream is kept only as its
-- SHA-256; the row lives minutes.
CREATE TABLE IF NOT EXISTS upstream_logins (
    state_hash    BLOB PRIMARY KEY,
    provider      TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    request       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
-- Who an upstream subject is here: (provider, the upstream ID token's `sub`) to a user, so the
-- user's id (the `sub` of Castellan's tokens) stays the same at every sign-in.
CREATE TABLE IF NOT EXISTS upstream_links (
    provider   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX IF NOT EXISTS upstream_links_user ON upstream_links (user_id);
