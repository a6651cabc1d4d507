-- An operator's acknowledgement of a parked message (one that did not decode, was not authentic
-- or replayed a stored one). The message stays parked and visible; once acknowledged it no longer
-- makes Chron report itself not ready. Append-only like every Chron table.
CREATE TABLE chron_parked_acks (
    parked_id  bigint      PRIMARY KEY,
    acked_by   text        NOT NULL,
    reason     text        NOT NULL,
    acked_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER chron_parked_acks_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON chron_parked_acks
    FOR EACH STATEMENT EXECUTE FUNCTION chron_reject_change();
