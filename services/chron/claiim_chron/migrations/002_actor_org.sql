-- Who caused a control event, and per-org reads (every query is scoped to one org).
ALTER TABLE chron_events ADD COLUMN actor text NOT NULL DEFAULT '';
CREATE INDEX chron_events_org ON chron_events (org, id);
