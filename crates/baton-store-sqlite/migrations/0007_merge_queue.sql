-- Baton schema v7: the per-repository merge queue (SPEC §6.3). One row per task waiting to land:
-- where it stands (`waiting`, `testing` on `base`, `green`/`red` with the tested `head`, `landing`
-- under the merge lease, `evicted` with its `reason`), its priority and when it entered (the
-- order: FIFO with priority and aging). The row goes with the transition that releases the task's
-- leases (done, rollback, block, cancel), in the same transaction.
CREATE TABLE merge_queue (
    task_id INTEGER PRIMARY KEY REFERENCES tasks (id),
    repo TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    entered_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    base TEXT,
    head TEXT,
    fails INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX merge_queue_repo ON merge_queue (repo, entered_at);
