-- The approval a record belongs to: a PENDING decision (its own chron id), the grant, refusal or
-- expiry recorded by the control service, and the ALLOW or DENY that ended it
-- (claiim_core/approvals.py). NULL for every other record. `claiim chron list --approval ID` finds
-- an approval's records by this partial index.
ALTER TABLE chron_events ADD COLUMN approval_id text;
CREATE INDEX chron_events_org_approval ON chron_events (org, approval_id, leaf_index) WHERE approval_id IS NOT NULL;
