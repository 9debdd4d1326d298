CREATE TABLE IF NOT EXISTS secrets (
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    dek_id       TEXT NOT NULL REFERENCES data_keys(id),
    sealed_value BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
