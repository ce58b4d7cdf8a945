-- Baton schema v14: each repository's coverage baseline (SPEC §5.1). Merges raise it by
-- compare-and-set (`… WHERE pct < excluded.pct`), never lower it; an authenticated override sets
-- it either way. One row per repository.
CREATE TABLE coverage_baselines (
    repo TEXT PRIMARY KEY,
    pct REAL NOT NULL,
    updated_at INTEGER NOT NULL,
    set_by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
