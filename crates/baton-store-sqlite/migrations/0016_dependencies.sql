-- Baton schema v16: task dependencies and the serial gate (SPEC §6.4). A row says `task_id` waits
-- for `depends_on` to be done: the claim skips every job of `task_id` while a dependency is not
-- done (looked up by the primary key, the dependency by its id). `task_dependencies_on` answers
-- "who waits for this task". `tasks_live_repo` answers the serial gate's question "is there an
-- earlier unfinished task in this repository" with one step down an index.
CREATE TABLE task_dependencies (
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    depends_on INTEGER NOT NULL REFERENCES tasks (id),
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (task_id, depends_on),
    CHECK (task_id <> depends_on)
);
CREATE INDEX task_dependencies_on ON task_dependencies (depends_on);
CREATE INDEX tasks_live_repo ON tasks (repo, id) WHERE stage NOT IN ('done', 'cancelled');
