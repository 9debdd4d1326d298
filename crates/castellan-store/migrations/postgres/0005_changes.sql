-- The change feed: every write to a table replicas cache (clients, signing keys, CAs) records the
-- kind and id of the row it touched, with a sequence number, in the same transaction (triggers, so no
-- writer can forget it), and wakes the replicas with NOTIFY (delivered at commit).
-- The number comes from one counter row updated in the writing transaction: its row lock is held until
-- commit, so numbers become visible in commit order and without gaps (a rolled-back write gives its
-- number back). A reader that saw N has seen every change up to N; a gap means the feed was pruned.
CREATE TABLE IF NOT EXISTS change_seq (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO change_seq (id, seq) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS changes (
    seq  BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_at ON changes (at);
CREATE OR REPLACE FUNCTION castellan_record_change() RETURNS trigger AS $$
DECLARE
    n BIGINT;
    row_id TEXT;
BEGIN
    UPDATE change_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq INTO n;
    IF TG_OP = 'DELETE' THEN
        row_id := to_jsonb(OLD) ->> TG_ARGV[1];
    ELSE
        row_id := to_jsonb(NEW) ->> TG_ARGV[1];
    END IF;
    INSERT INTO changes (seq, kind, id, at)
        VALUES (n, TG_ARGV[0], row_id, EXTRACT(EPOCH FROM now())::BIGINT);
    PERFORM pg_notify('castellan_changes', n::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS clients_changes ON clients;
CREATE TRIGGER clients_changes AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION castellan_record_change('client', 'client_id');
DROP TRIGGER IF EXISTS signing_keys_changes ON signing_keys;
CREATE TRIGGER signing_keys_changes AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION castellan_record_change('key', 'kid');
DROP TRIGGER IF EXISTS cas_changes ON cas;
CREATE TRIGGER cas_changes AFTER INSERT OR UPDATE OR DELETE ON cas
    FOR EACH ROW EXECUTE FUNCTION castellan_record_change('ca', 'id');
