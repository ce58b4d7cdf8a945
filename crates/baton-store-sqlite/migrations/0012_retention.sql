-- Baton schema v12: retention (`Store::prune`, `[retention]` in baton.toml) deletes old history in
-- small batches; these indexes let each batch find its rows without reading the history.
-- Events that are not part of their task's summary (baton_store::retention::event_is_summary:
-- the `created` event, gate verdicts and stage transitions stay), by time: the prune walks only
-- rows it may delete. The predicate is written exactly as the prune query writes it.
CREATE INDEX events_prunable ON events (at)
 WHERE NOT (kind IN ('created', 'gate') OR (json_type(detail, '$.from') IS 'text' AND json_type(detail, '$.to') IS 'text'));
-- Whether a job has an agent run (such a job is kept); also what a job's delete checks for the
-- foreign key `agent_runs.job_id`, which would otherwise read every run.
CREATE INDEX agent_runs_job ON agent_runs (job_id);
-- Inbox rows by arrival, oldest first.
CREATE INDEX inbox_received ON inbox (received_at);
