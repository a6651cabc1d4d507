-- The W3C trace id of a decision whose agent sent trace context (claiim_core/tracecontext.py);
-- NULL for control events, untraced decisions and every row stored before this column existed
-- (their events carry none). `claiim chron list --trace-id` finds a trace's decisions by this
-- partial index, which costs nothing when an untraced decision is stored.
ALTER TABLE chron_events ADD COLUMN trace_id text;
CREATE INDEX chron_events_org_trace ON chron_events (org, trace_id, leaf_index) WHERE trace_id IS NOT NULL;
