-- Sign-in for people. Apps that sign people in are clients with redirect URIs and grant types.
-- None of these tables is cached by replicas (each is read by its key on every request that needs
-- it, so a session ended or a refresh family revoked on one replica is ended on all at once), and
-- so none of them is in the change feed; client_apps is, as its client's.
-- How an app signs people in, one row per client that does, read with the client by its id. A
-- table of its own (not columns) so the migration stays idempotent on SQLite; its writes are in the
-- change feed as the client's.
CREATE TABLE IF NOT EXISTS client_apps (
    client_id                 TEXT PRIMARY KEY REFERENCES clients(client_id) ON DELETE CASCADE,
    redirect_uris             TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    grant_types               TEXT NOT NULL,
    public_client             INTEGER NOT NULL,
    require_mfa               INTEGER NOT NULL,
    user_claims               TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS client_apps_inserted AFTER INSERT ON client_apps BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', NEW.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS client_apps_updated AFTER UPDATE ON client_apps BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', NEW.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS client_apps_deleted AFTER DELETE ON client_apps BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', OLD.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TABLE IF NOT EXISTS users (
    user_id       TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    email         TEXT,
    password_hash TEXT,
    groups        TEXT NOT NULL DEFAULT '',
    claims        TEXT NOT NULL DEFAULT '{}',
    disabled_at   INTEGER,
    totp_dek_id   TEXT,
    totp_sealed   BLOB,
    totp_required INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS recovery_codes (
    code_hash BLOB PRIMARY KEY,
    user_id   TEXT NOT NULL,
    used_at   INTEGER
);
CREATE INDEX IF NOT EXISTS recovery_codes_user ON recovery_codes (user_id);
-- A session: the cookie's value is kept only as its SHA-256 (secret_hash); sid is its public id
-- (the ID token's sid claim).
CREATE TABLE IF NOT EXISTS sessions (
    sid          TEXT PRIMARY KEY,
    secret_hash  BLOB NOT NULL UNIQUE,
    user_id      TEXT NOT NULL,
    auth_time    INTEGER NOT NULL,
    amr          TEXT NOT NULL,
    pending_mfa  INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    ended_at     INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS auth_codes (
    code_hash      BLOB PRIMARY KEY,
    client_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    sid            TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope          TEXT NOT NULL,
    nonce          TEXT,
    auth_time      INTEGER NOT NULL,
    amr            TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    grant_id       TEXT
);
CREATE INDEX IF NOT EXISTS auth_codes_expires ON auth_codes (expires_at);
-- A grant: what one code exchange started (the refresh token family). Revoking it revokes every
-- refresh token of the family and makes its access tokens inactive at introspection.
CREATE TABLE IF NOT EXISTS grants (
    grant_id   TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    sid        TEXT NOT NULL,
    scope      TEXT NOT NULL,
    auth_time  INTEGER NOT NULL,
    amr        TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_why TEXT
);
CREATE INDEX IF NOT EXISTS grants_user ON grants (user_id);
CREATE INDEX IF NOT EXISTS grants_sid ON grants (sid);
CREATE INDEX IF NOT EXISTS grants_expires ON grants (expires_at);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    grant_id   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX IF NOT EXISTS refresh_tokens_grant ON refresh_tokens (grant_id);
-- Failed sign-ins per account and per source address, in fixed windows (see core signin::throttle).
CREATE TABLE IF NOT EXISTS signin_failures (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures     INTEGER NOT NULL
);
