-- Baton schema v3: the agent process's start time (defeats pid reuse when re-adopting after a
-- restart), and tombstoned external refs so a cancelled ticket can start again from scratch.
ALTER TABLE jobs ADD COLUMN proc_start INTEGER;
ALTER TABLE tasks ADD COLUMN tombstoned_ref TEXT;
CREATE UNIQUE INDEX tasks_external_ref ON tasks (external_ref) WHERE external_ref IS NOT NULL;
