CREATE TABLE IF NOT EXISTS secrets (
    name         TEXT NOT NULL,
    version      BIGINT NOT NULL,
    dek_id       TEXT NOT NULL REFERENCES data_keys(id),
    sealed_value BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
