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
-- Tasks by stage and hold kind together (`?stage=&hold=`).
CREATE INDEX tasks_stage_hold ON tasks (stage, hold);
-- The reconciler's candidates: jobs that ended since its last look (then their tasks), so an idle
-- pass reads nothing of the history.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- A work item is looked up by its id alone (`Store::task(TaskKey::WorkItem)`); ids are unique
-- per repository, so this index is not unique (two repositories may share a prefix).
CREATE INDEX tasks_work_item_id ON tasks (work_item_id);

-- Tallies kept by triggers in the same transaction as every change of a task's stage or hold and
-- of a job's status, so `/api/status` reads a handful of rows instead of counting the backlog.
CREATE TABLE task_tally (
    stage TEXT NOT NULL,
    hold TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (stage, hold)
) WITHOUT ROWID;
INSERT INTO task_tally (stage, hold, n) SELECT stage, hold, COUNT(*) FROM tasks GROUP BY stage, hold;
CREATE TRIGGER task_tally_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_tally (stage, hold, n) VALUES (NEW.stage, NEW.hold, 1)
        ON CONFLICT (stage, hold) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER task_tally_update AFTER UPDATE OF stage, hold ON tasks
    WHEN OLD.stage IS NOT NEW.stage OR OLD.hold IS NOT NEW.hold BEGIN
    UPDATE task_tally SET n = n - 1 WHERE stage = OLD.stage AND hold = OLD.hold;
    INSERT INTO task_tally (stage, hold, n) VALUES (NEW.stage, NEW.hold, 1)
        ON CONFLICT (stage, hold) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER task_tally_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_tally SET n = n - 1 WHERE stage = OLD.stage AND hold = OLD.hold;
END;

CREATE TABLE job_tally (
    status TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO job_tally (status, n) SELECT status, COUNT(*) FROM jobs GROUP BY status;
CREATE TRIGGER job_tally_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO job_tally (status, n) VALUES (NEW.status, 1) ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER job_tally_update AFTER UPDATE OF status ON jobs WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE job_tally SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO job_tally (status, n) VALUES (NEW.status, 1) ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER job_tally_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_tally SET n = n - 1 WHERE status = OLD.status;
END;
