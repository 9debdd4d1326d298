-- The highest version ever given to each secret name. It survives `secret delete`, so a name deleted and
-- written again goes on from there: a version number never names two values, and a check-and-set
-- writer that read the deleted secret cannot take a version a newer writer holds.
CREATE TABLE IF NOT EXISTS secret_heads (
    name   TEXT PRIMARY KEY,
    latest BIGINT NOT NULL
);
INSERT INTO secret_heads (name, latest)
    SELECT name, MAX(version) FROM secrets WHERE true GROUP BY name
    ON CONFLICT (name) DO NOTHING;
