-- Issue 21. Replicas record a heartbeat: when they last refreshed, how often they do, and the key
-- ring they serve (the JWKS fingerprint and its kids), so an emergency rotation can wait until every
-- live replica publishes the new key before it signs. Not cached by replicas (no change feed); read by
-- `seen_at_ms` (indexed) and written by replica id.
CREATE TABLE IF NOT EXISTS replica_heartbeats (
    replica_id  TEXT PRIMARY KEY,
    seen_at_ms  INTEGER NOT NULL,
    every_ms    INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    kids        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS replica_heartbeats_seen ON replica_heartbeats (seen_at_ms);
-- The certificate names a client may ask for (space-separated `dns:`, `ip:`, `uri:` patterns), one
-- row per client that has any, read with the client by its id. A table of its own (not a column) so
-- the migration stays idempotent on SQLite; its writes are in the change feed as the client's.
CREATE TABLE IF NOT EXISTS client_cert_names (
    client_id TEXT PRIMARY KEY REFERENCES clients(client_id) ON DELETE CASCADE,
    patterns  TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS client_cert_names_inserted AFTER INSERT ON client_cert_names BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', NEW.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS client_cert_names_updated AFTER UPDATE ON client_cert_names BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', NEW.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS client_cert_names_deleted AFTER DELETE ON client_cert_names BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', OLD.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
