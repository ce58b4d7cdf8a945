-- Instances hear of each other's changes at once (LISTEN/NOTIFY on `baton_changes`; the engine's
-- polling stays as the fallback): a job queued (another instance may claim it now), and a running
-- job cancelled or requeued (STOP applied elsewhere, or a take-over: the instance that runs its
-- agent must stop it). Notifications are sent at commit and deduplicated per transaction.
CREATE FUNCTION baton_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('baton_changes', 'queued');
    RETURN NULL;
END;
$$;

CREATE FUNCTION baton_notify_taken() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('baton_changes', 'stopped');
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_queued AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION baton_notify_queued();

CREATE TRIGGER jobs_taken AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status IN ('cancelled', 'queued'))
    EXECUTE FUNCTION baton_notify_taken();
