-- Instances sharing the store (SPEC §15): each `baton serve` heartbeats here; a job's `owner` is
-- its instance's id, and an instance silent past the grace period loses its jobs to another.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
