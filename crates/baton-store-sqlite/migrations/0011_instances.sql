-- Instances sharing the store (SPEC §15): each `baton serve` heartbeats here; a job's `owner` is
-- its instance's id. With SQLite there is one instance, but the table keeps the same contract.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
