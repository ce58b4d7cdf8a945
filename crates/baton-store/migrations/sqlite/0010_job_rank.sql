-- Baton schema v10: jobs are claimed by rank — the enqueued stage's position in the pipeline,
-- later stages first — then `available_at`, then id, so work in progress finishes before new
-- work starts (depth-first) instead of every task's first stage running before any second one.
-- Jobs enqueued before this migration keep rank 0 and are claimed after ranked ones.
ALTER TABLE jobs ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;
-- The claim walks the queued jobs in claim order and stops at the first runnable one.
-- `jobs_queue (status, available_at)` stays: `jobs_with_status` and the running counts use it.
CREATE INDEX jobs_claim ON jobs (status, rank DESC, available_at, id);
