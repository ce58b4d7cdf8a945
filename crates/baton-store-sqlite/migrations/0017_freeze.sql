-- Baton schema v17: repository freezes (SPEC §6.4). A DEGRADED post-deploy check freezes its
-- repository: the merge queue lands and deploys nothing there (but a revert) until an
-- authenticated unfreeze. At most one open freeze per repository; closed ones are kept as history.
CREATE TABLE repo_freezes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    task_id INTEGER,
    incident_task_id INTEGER,
    revert_task_id INTEGER,
    frozen_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    frozen_at INTEGER NOT NULL,
    unfrozen_by TEXT,
    unfrozen_at INTEGER
);
CREATE UNIQUE INDEX repo_freezes_open ON repo_freezes (repo) WHERE unfrozen_at IS NULL;
