-- Baton schema v8: an idle Baton costs the same whatever the size of its backlog.
-- The existing `hold` column already holds `Hold::label()` ('' for none): it is the hold kind the
-- filters and indexes below use. `due_at_ms` is when a hold ends by itself (a quota pause's
-- `resume_at_ms`), NULL otherwise; written with the task state, so the quota timer asks the
-- partial index `tasks_due` for what is due instead of reading every task.
ALTER TABLE tasks ADD COLUMN due_at_ms INTEGER;
UPDATE tasks SET due_at_ms = json_extract(state, '$.hold.resume_at_ms')
 WHERE hold = 'paused_quota' AND json_type(state, '$.hold.resume_at_ms') = 'integer';
CREATE INDEX tasks_due ON tasks (due_at_ms) WHERE due_at_ms IS NOT NULL;

-- Task listings page newest first by id under each filter: `tasks_stage (stage)` already walks
-- (stage, id); these do the same for the hold kind and the repository, and for live tasks.
CREATE INDEX tasks_hold ON tasks (hold);
CREATE INDEX tasks_repo ON tasks (repo);
CREATE INDEX tasks_live ON tasks (id) WHERE stage NOT IN ('done', 'cancelled');
-- The counts behind /api/status, read from an index instead of the table.
CREATE INDEX tasks_stage_hold ON tasks (stage, hold);
-- The reconciler's candidates (live, no hold): only those tasks' current jobs are looked at.
CREATE INDEX tasks_unapplied ON tasks (current_job) WHERE hold = '' AND stage NOT IN ('done', 'cancelled');
-- A work item is looked up by its id alone (`Store::task(TaskKey::WorkItem)`); ids are unique
-- per repository, so this index is not unique (two repositories may share a prefix).
CREATE INDEX tasks_work_item_id ON tasks (work_item_id);
