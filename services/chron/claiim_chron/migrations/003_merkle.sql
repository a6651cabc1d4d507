-- Chron as a Merkle log (RFC 6962): every row is a leaf with a dense index and its leaf hash,
-- SHA-256(0x00 || event); complete subtrees above the leaves are stored once; checkpoints are
-- signed outside the database (the key never comes here) and stored for reference.
ALTER TABLE chron_events ADD COLUMN leaf_index bigint;
ALTER TABLE chron_events ADD COLUMN leaf_hash bytea;

-- Rows stored before this migration become the first leaves, in the order they were stored.
ALTER TABLE chron_events DISABLE TRIGGER chron_events_append_only;
UPDATE chron_events e SET leaf_index = r.n - 1, leaf_hash = sha256('\x00'::bytea || e.event)
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM chron_events) r WHERE e.id = r.id;
ALTER TABLE chron_events ENABLE TRIGGER chron_events_append_only;

ALTER TABLE chron_events ALTER COLUMN leaf_index SET NOT NULL, ALTER COLUMN leaf_hash SET NOT NULL;
CREATE UNIQUE INDEX chron_events_leaf ON chron_events (leaf_index);

-- Complete subtrees of level >= 1: node (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level).
CREATE TABLE chron_tree (
    level  smallint NOT NULL,
    idx    bigint   NOT NULL,
    hash   bytea    NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE chron_checkpoints (
    size       bigint      PRIMARY KEY,
    root       bytea       NOT NULL,
    note       text        NOT NULL,
    signed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER chron_tree_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON chron_tree
    FOR EACH STATEMENT EXECUTE FUNCTION chron_reject_change();
CREATE TRIGGER chron_checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON chron_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION chron_reject_change();
