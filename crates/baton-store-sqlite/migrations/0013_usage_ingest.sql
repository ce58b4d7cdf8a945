-- Baton schema v13: usage reported by outside tools (`POST /api/usage/ingest`, SPEC §9). One row
-- per record; a record is stored once per (source, idempotency key), so a client's retry after a
-- lost reply adds nothing. Costs are NULL when unpriced (`priced_by = 'none'`), never 0.
CREATE TABLE usage_records (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    category TEXT NOT NULL,
    model TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    units REAL NOT NULL DEFAULT 0,
    unit_kind TEXT,
    cost_usd REAL,
    priced_by TEXT NOT NULL,
    idempotency_key TEXT,
    task_id INTEGER,
    repo TEXT,
    at INTEGER NOT NULL,
    principal TEXT NOT NULL
);
-- NULL keys are distinct: records without a key are never deduplicated.
CREATE UNIQUE INDEX usage_records_key ON usage_records (source, idempotency_key);
-- Budget spend: a repository's records today, every repository's records today, a task's records.
CREATE INDEX usage_records_repo_at ON usage_records (repo, at);
CREATE INDEX usage_records_at ON usage_records (at) WHERE repo IS NOT NULL;
CREATE INDEX usage_records_task ON usage_records (task_id) WHERE task_id IS NOT NULL;
