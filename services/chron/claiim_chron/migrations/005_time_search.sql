-- Time windows of a search (claiim_chron/search.py): ordered by (occurred_at, leaf_index) within
-- an org, so that a window far back in the log is one range of this index and a page of it a walk
-- that stops after `limit` rows. It replaces the index on occurred_at alone (one index, not two,
-- to maintain on every insert); a search across every org (the operator's) with a time window
-- walks the leaf index instead.
CREATE INDEX chron_events_org_time ON chron_events (org, occurred_at, leaf_index);
DROP INDEX chron_events_occurred;
