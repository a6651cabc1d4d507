-- Chron's log: one row per decision or control event, append-only.
CREATE TABLE chron_events (
    id           bigserial PRIMARY KEY,
    chron_id     text        NOT NULL UNIQUE,
    kind         text        NOT NULL CHECK (kind IN ('decision', 'control')),
    stream       text        NOT NULL,
    stream_seq   bigint      NOT NULL,
    subject      text        NOT NULL,
    org          text        NOT NULL,
    agent_id     text        NOT NULL,
    outcome      text        NOT NULL,
    action       text        NOT NULL,
    target       text        NOT NULL,
    anchor       text        NOT NULL,
    policy       text        NOT NULL,
    skill        text        NOT NULL,
    reason       text        NOT NULL,
    rule         text        NOT NULL,
    gate         text        NOT NULL,
    control_seq  bigint      NOT NULL,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    event        bytea       NOT NULL,
    UNIQUE (stream, stream_seq)
);
CREATE INDEX chron_events_agent ON chron_events (agent_id, id);
CREATE INDEX chron_events_occurred ON chron_events (occurred_at);

-- Messages that could not be decoded: kept, never dropped, and reported.
CREATE TABLE chron_parked (
    id          bigserial PRIMARY KEY,
    stream      text        NOT NULL,
    stream_seq  bigint      NOT NULL,
    subject     text        NOT NULL,
    data        bytea       NOT NULL,
    error       text        NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, stream_seq)
);

CREATE FUNCTION chron_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'chron is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- Statement-level, so that even a statement touching no row is refused.
CREATE TRIGGER chron_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON chron_events
    FOR EACH STATEMENT EXECUTE FUNCTION chron_reject_change();
CREATE TRIGGER chron_parked_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON chron_parked
    FOR EACH STATEMENT EXECUTE FUNCTION chron_reject_change();
