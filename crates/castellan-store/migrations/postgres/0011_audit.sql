-- The audit trail (issue 22): one hash chain per replica (replica_id, seq), written in batches by the
-- replica's audit writer; never holds a secret value, password, token or key bytes.
CREATE TABLE IF NOT EXISTS audit_events (
    replica_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    source     TEXT NOT NULL,
    action     TEXT NOT NULL,
    object     TEXT NOT NULL,
    result     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (replica_id, seq)
);
CREATE INDEX IF NOT EXISTS audit_events_at ON audit_events (at_ms);
-- Signed checkpoints: (replica, seq, hash) signed by the key ring's signing key as a compact JWS.
-- The oldest kept is where a pruned chain starts.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    replica_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    jws        TEXT NOT NULL,
    PRIMARY KEY (replica_id, seq)
);
