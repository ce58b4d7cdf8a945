-- Baton schema v19: the queued jobs in claim order (rank, later stages first, then
-- `available_at`, then id). A claim walks this index from its start and stops after a window of
-- candidates a few times the batch, instead of reading and sorting every job available now; a
-- job deferred to later is stepped over where it lies (the common backlog is the jobs waiting
-- for a slot, which this reads only as far as one claim needs).
CREATE INDEX jobs_claim ON jobs (rank DESC, available_at, id) WHERE status = 'queued';
