-- Baton schema v4: the outbox of durable effects. Every external effect of a decision (stop an
-- agent, remove a worktree, delete a branch, notify, tell the tracker) is written here in the same
-- transaction as the decision, then carried out by a worker until it is acknowledged. Effects are
-- idempotent, so a crash between doing one and acknowledging it only repeats it harmlessly.
-- A claimed effect is invisible to other workers until `claimed_until`.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    available_at INTEGER NOT NULL,
    claimed_until INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    done_at INTEGER
);
CREATE INDEX outbox_due ON outbox (done_at, available_at);
-- How an agent run that never reported its end was closed (`lost`: the agent died with Baton and
-- left no exit record).
CREATE INDEX agent_runs_open ON agent_runs (ended_at);
