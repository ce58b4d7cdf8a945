-- Baton schema v1: tasks, jobs, agent runs, events (the task timeline), leases,
-- work-item counters and the input inbox. Times are integer unix milliseconds.
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    repo TEXT NOT NULL,
    work_item_id TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    branch TEXT NOT NULL,
    external_ref TEXT,
    stage TEXT NOT NULL,
    hold TEXT NOT NULL,
    state TEXT NOT NULL,
    current_job INTEGER,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX tasks_work_item ON tasks (repo, work_item_id);
CREATE INDEX tasks_stage ON tasks (stage);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    repo TEXT NOT NULL,
    stage TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    available_at INTEGER NOT NULL,
    owner TEXT,
    pid INTEGER,
    pgid INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    result TEXT
);
CREATE INDEX jobs_queue ON jobs (status, available_at);
CREATE INDEX jobs_task ON jobs (task_id);

CREATE TABLE agent_runs (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    stage TEXT NOT NULL,
    adapter TEXT NOT NULL,
    model TEXT,
    pid INTEGER,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    exit_code INTEGER,
    status TEXT,
    error TEXT,
    session_id TEXT,
    turns INTEGER,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,
    log_path TEXT NOT NULL
);
CREATE INDEX agent_runs_task ON agent_runs (task_id, stage);

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks (id),
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    stage TEXT NOT NULL,
    message TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX events_task ON events (task_id, id);

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE lease_tokens (
    name TEXT PRIMARY KEY,
    last_token INTEGER NOT NULL
);

CREATE TABLE work_item_counters (
    repo TEXT NOT NULL,
    prefix TEXT NOT NULL,
    next_number INTEGER NOT NULL,
    PRIMARY KEY (repo, prefix)
);

CREATE TABLE inbox (
    id INTEGER PRIMARY KEY,
    dedup_key TEXT NOT NULL UNIQUE,
    task_id INTEGER,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    outcome TEXT NOT NULL
);
