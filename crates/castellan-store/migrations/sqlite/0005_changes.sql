-- The change feed: every write to a table replicas cache (clients, signing keys, CAs) records the
-- kind and id of the row it touched, with a sequence number, in the same transaction (triggers, so no
-- writer can forget it). A replica reads only the changes after the last one it saw.
-- AUTOINCREMENT: a number is never given twice, and (SQLite writers being serialized) the numbers a
-- reader sees are contiguous, so a gap means the feed was pruned past the reader.
CREATE TABLE IF NOT EXISTS changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_at ON changes (at);
CREATE TRIGGER IF NOT EXISTS clients_inserted AFTER INSERT ON clients BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', NEW.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS clients_updated AFTER UPDATE ON clients BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', NEW.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS clients_deleted AFTER DELETE ON clients BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('client', OLD.client_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS signing_keys_inserted AFTER INSERT ON signing_keys BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('key', NEW.kid, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS signing_keys_updated AFTER UPDATE ON signing_keys BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('key', NEW.kid, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS signing_keys_deleted AFTER DELETE ON signing_keys BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('key', OLD.kid, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS cas_inserted AFTER INSERT ON cas BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('ca', NEW.id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS cas_updated AFTER UPDATE ON cas BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('ca', NEW.id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS cas_deleted AFTER DELETE ON cas BEGIN
    INSERT INTO changes (kind, id, at) VALUES ('ca', OLD.id, CAST(strftime('%s', 'now') AS INTEGER));
END;
