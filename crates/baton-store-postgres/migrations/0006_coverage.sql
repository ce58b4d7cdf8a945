-- Baton PostgreSQL schema 6: each repository's coverage baseline (SPEC §5.1). Merges raise it by
-- compare-and-set (`… WHERE pct < excluded.pct`), never lower it; an authenticated override sets
-- it either way. One row per repository.
CREATE TABLE coverage_baselines (
    repo TEXT PRIMARY KEY,
    pct DOUBLE PRECISION NOT NULL,
    updated_at BIGINT NOT NULL,
    set_by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
