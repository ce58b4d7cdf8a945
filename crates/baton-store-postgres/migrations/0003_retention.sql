-- Baton schema v3 on PostgreSQL (SQLite's v12): retention (`Store::prune`, `[retention]` in
-- baton.toml) deletes old history in small batches; these indexes let each batch find its rows
-- without reading the history.
-- Events that are not part of their task's summary (baton_store::retention::event_is_summary:
-- the `created` event, gate verdicts and stage transitions stay), by time. The predicate is
-- written exactly as the prune query writes it.
CREATE INDEX events_prunable ON events (at)
 WHERE NOT (kind IN ('created', 'gate')
            OR (jsonb_typeof(detail::jsonb -> 'from') IS NOT DISTINCT FROM 'string'
                AND jsonb_typeof(detail::jsonb -> 'to') IS NOT DISTINCT FROM 'string'));
-- Whether a job has an agent run (such a job is kept); also what a job's delete checks for the
-- foreign key `agent_runs.job_id`.
CREATE INDEX agent_runs_job ON agent_runs (job_id);
-- Acknowledged outbox rows and processed deliveries by when (the existing indexes hold only the
-- pending ones), and inbox rows by arrival.
CREATE INDEX outbox_done ON outbox (done_at) WHERE done_at IS NOT NULL;
CREATE INDEX webhook_deliveries_processed ON webhook_deliveries (processed_at) WHERE processed_at IS NOT NULL;
CREATE INDEX inbox_received ON inbox (received_at);
