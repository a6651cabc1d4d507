-- Search (`claiim chron list`, a web UI's search page): every list query is of one org, newest
-- first by leaf index, paged by a leaf-index cursor (see claiim_chron/search.py). Each filter
-- gets an index that starts with org, then holds the filtered column and ends with leaf_index,
-- so that a page is a walk down one index from the cursor that stops after `limit` rows, at the
-- same cost on the first page as on the last, however long the log grows.
CREATE INDEX chron_events_org_leaf ON chron_events (org, leaf_index);
CREATE INDEX chron_events_org_agent ON chron_events (org, agent_id, leaf_index);
CREATE INDEX chron_events_org_anchor ON chron_events (org, anchor, leaf_index);
-- text_pattern_ops compares byte by byte, so that a prefix (action LIKE 'deploy:%') is a range of
-- this index whatever the database's collation; exact actions use it too.
CREATE INDEX chron_events_org_action ON chron_events (org, action text_pattern_ops, leaf_index);
-- Control events and denials are few among decisions: walking all of an org's rows to find them
-- would read every allowed decision in between. Partial indexes hold only them, so that they
-- cost nothing when an allowed decision is stored.
CREATE INDEX chron_events_org_control ON chron_events (org, leaf_index) WHERE kind = 'control';
CREATE INDEX chron_events_org_deny ON chron_events (org, leaf_index) WHERE outcome = 'DENY';

-- Superseded by the indexes above; no other query of Chron (store, verify, rebuild) uses them.
-- chron_events_occurred (occurred_at) stays: it serves time windows far from the newest rows.
DROP INDEX chron_events_org;
DROP INDEX chron_events_agent;
