CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS data_keys (
    id         TEXT PRIMARY KEY,
    wrapped    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    dek_id      TEXT NOT NULL REFERENCES data_keys(id),
    sealed_key  BYTEA NOT NULL,
    activate_at BIGINT NOT NULL,
    remove_at   BIGINT,
    revoked_at  BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS clients (
    client_id      TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    secret_hash    BYTEA NOT NULL,
    scopes         TEXT NOT NULL,
    audience       TEXT,
    token_ttl_secs BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
