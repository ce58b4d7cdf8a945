-- Baton schema v5: who may act, and exact idempotency.
-- API tokens are named and scoped; only a SHA-256 digest of each is stored, so the database
-- never holds a usable token. A revoked token keeps its row (its name stays in the timeline).
CREATE TABLE api_tokens (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
-- One row per `Idempotency-Key` a principal used on a route: the digest of the request it came
-- with, and once answered the response to replay. `task_id` is set by the same transaction that
-- creates a task, so a create is exactly-once even when the answer was lost.
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    task_id INTEGER REFERENCES tasks (id),
    status INTEGER,
    response TEXT,
    finished_at INTEGER
);
