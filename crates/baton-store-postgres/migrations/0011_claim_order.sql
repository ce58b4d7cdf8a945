-- Baton schema v11: the queued jobs in claim order (rank, later stages first, then
-- `available_at`, then id). A claim walks this index from its start and stops after a window of
-- candidates a few times the batch, instead of reading and sorting every job available now.
CREATE INDEX jobs_claim ON jobs (rank DESC, available_at, id) WHERE status = 'queued';
