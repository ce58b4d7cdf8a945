-- Baton schema v10: jobs are claimed by rank — the enqueued stage's position in the pipeline,
-- later stages first — then `available_at`, then id, so work in progress finishes before new
-- work starts (depth-first) instead of every task's first stage running before any second one.
-- Jobs enqueued before this migration keep rank 0 and are claimed after ranked ones.
ALTER TABLE jobs ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;
-- The claim reads the jobs available now down `jobs_queue (status, available_at)` and sorts only
-- those by rank: jobs deferred to later (a backlog of them) are never visited.
