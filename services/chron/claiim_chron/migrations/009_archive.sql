-- Segments of the log archived outside PostgreSQL and JetStream (claiim_chron/archive.py): leaves
-- [leaf_from, leaf_to), the subtree's root, the file's name and size, per stream the highest
-- sequence of a leaf or parked message up to the segment's end, and when its newest leaf occurred
-- (what the decision stream may lose, and when).
CREATE TABLE chron_archive (
    leaf_from   bigint      PRIMARY KEY,
    leaf_to     bigint      NOT NULL,
    root        bytea       NOT NULL,
    name        text        NOT NULL,
    bytes       bigint      NOT NULL,
    streams     jsonb       NOT NULL,
    newest      timestamptz NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    CHECK (leaf_to > leaf_from)
);

CREATE TRIGGER chron_archive_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON chron_archive
    FOR EACH STATEMENT EXECUTE FUNCTION chron_reject_change();
