CREATE TABLE IF NOT EXISTS cas (
    id                TEXT PRIMARY KEY,
    ca_cert_pem       TEXT NOT NULL,
    intermediates_pem TEXT NOT NULL,
    root_pem          TEXT NOT NULL,
    dek_id            TEXT NOT NULL REFERENCES data_keys(id),
    sealed_key        BYTEA NOT NULL,
    root_sealed_key   BYTEA,
    created_at        BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    serial            TEXT PRIMARY KEY,
    ca_id             TEXT NOT NULL REFERENCES cas(id),
    profile           TEXT NOT NULL,
    common_name       TEXT,
    sans              TEXT NOT NULL,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    cert_pem          TEXT NOT NULL,
    revoked_at        BIGINT,
    revocation_reason TEXT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_not_after ON certificates (not_after);
CREATE TABLE IF NOT EXISTS crls (
    ca_id       TEXT NOT NULL REFERENCES cas(id),
    crl_number  BIGINT NOT NULL,
    der         BYTEA NOT NULL,
    pem         TEXT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    PRIMARY KEY (ca_id, crl_number)
);
