-- Issue 18: a client's token policy, one row per client that has one, read with the client (so its
-- writes are in the change feed as the client's, like client_apps): the audiences it may ask for
-- besides its default one (token requests, the signing API, token exchange), the bounds of the
-- signing API (maximum lifetime, extra claim names, a `sub` pattern, the `typ`), and the audiences
-- of the tokens it may exchange (RFC 8693).
CREATE TABLE IF NOT EXISTS client_policies (
    client_id         TEXT PRIMARY KEY REFERENCES clients(client_id) ON DELETE CASCADE,
    audiences         TEXT NOT NULL,
    sign_max_ttl_secs INTEGER NOT NULL,
    sign_claims       TEXT NOT NULL,
    sign_sub          TEXT NOT NULL,
    sign_typ          TEXT NOT NULL,
    exchange_from     TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS client_policies_inserted AFTER INSERT ON client_policies BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', NEW.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS client_policies_updated AFTER UPDATE ON client_policies BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', NEW.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS client_policies_deleted AFTER DELETE ON client_policies BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', OLD.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
