-- Issue 18: a client's token policy, one row per client that has one, read with the client (so its
-- writes are in the change feed as the client's, like client_apps): the audiences it may ask for
-- besides its default one (token requests, the signing API, token exchange), the bounds of the
-- signing API (maximum lifetime, extra claim names, a `sub` pattern, the `typ`), and the audiences
-- of the tokens it may exchange (RFC 8693).
CREATE TABLE IF NOT EXISTS client_policies (
    client_id         TEXT PRIMARY KEY REFERENCES clients(client_id) ON DELETE CASCADE,
    audiences         TEXT NOT NULL,
    sign_max_ttl_secs BIGINT NOT NULL,
    sign_claims       TEXT NOT NULL,
    sign_sub          TEXT NOT NULL,
    sign_typ          TEXT NOT NULL,
    exchange_from     TEXT NOT NULL
);
DROP TRIGGER IF EXISTS client_policies_changes ON client_policies;
CREATE TRIGGER client_policies_changes AFTER INSERT OR UPDATE OR DELETE ON client_policies
    FOR EACH ROW EXECUTE FUNCTION castellan_record_change('client', 'client_id');
