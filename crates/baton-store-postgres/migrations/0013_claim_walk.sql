-- Baton schema v13: a batch claim reads only the candidates it takes. Version 12 read a window of
-- `p_window` candidates (four times the batch) in one query, joined to their tasks, numbered them
-- per repository and kept the first `p_limit`: for a batch of 32 it read and joined 128. This
-- version walks the same candidates in the same claim order (`jobs_claim`: rank, later stages
-- first, then `available_at`, then id) through a cursor and stops as soon as the batch is full,
-- counting each repository's running jobs as it takes them. The limits are the same: the global
-- `p_running_max` minus what runs, `p_per_repo_max` per repository; a candidate whose repository
-- was already full when the claim began is passed over without counting, and the walk still ends
-- after `p_window` candidates of repositories with room (a backlog in a full repository costs
-- one index step per job, as before). The claim lock, the task version bump and the job update
-- are unchanged.
CREATE OR REPLACE FUNCTION baton_claim_jobs(
    p_lock BIGINT, p_now BIGINT, p_running_max BIGINT, p_per_repo_max BIGINT, p_limit BIGINT,
    p_deps TEXT[], p_serial TEXT[], p_window BIGINT, p_owner TEXT)
RETURNS SETOF jobs LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    picked BIGINT[] := '{}';
    repos TEXT[];
    counts BIGINT[];
    full_at_start TEXT[];
    room BIGINT;
    walked BIGINT := 0;
    slot INT;
    candidate RECORD;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    IF p_limit <= 0 THEN
        RETURN;
    END IF;
    SELECT COALESCE(array_agg(r.repo), '{}'), COALESCE(array_agg(r.n), '{}'),
           COALESCE(array_agg(r.repo) FILTER (WHERE r.n >= p_per_repo_max), '{}')
      INTO repos, counts, full_at_start
      FROM (SELECT repo, COUNT(*) AS n FROM jobs WHERE status = 'running' GROUP BY repo) r;
    room := LEAST(p_limit, p_running_max - COALESCE((SELECT SUM(n) FROM unnest(counts) n), 0));
    IF room <= 0 THEN
        RETURN;
    END IF;
    FOR candidate IN
        SELECT j.id, j.repo
        FROM jobs j JOIN tasks t ON t.id = j.task_id
        WHERE j.status = 'queued' AND j.available_at <= p_now AND NOT (j.repo = ANY(full_at_start))
          AND t.current_job = j.id
          AND (j.repo = ANY(p_deps) OR NOT EXISTS (
                SELECT 1 FROM task_dependencies d JOIN tasks dt ON dt.id = d.depends_on
                WHERE d.task_id = j.task_id AND dt.stage <> 'done'))
          AND NOT (j.rank <= 1 AND j.repo = ANY(p_serial) AND (EXISTS (
                SELECT 1 FROM tasks e
                WHERE e.repo = j.repo AND e.id < j.task_id AND e.stage NOT IN ('done', 'cancelled'))
              OR EXISTS (SELECT 1 FROM repo_freezes f WHERE f.repo = j.repo AND f.unfrozen_at IS NULL)))
        ORDER BY j.rank DESC, j.available_at, j.id
    LOOP
        walked := walked + 1;
        slot := array_position(repos, candidate.repo);
        IF slot IS NULL THEN
            repos := repos || candidate.repo;
            counts := counts || 0::BIGINT;
            slot := array_length(repos, 1);
        END IF;
        IF counts[slot] < p_per_repo_max THEN
            counts[slot] := counts[slot] + 1;
            picked := picked || candidate.id;
            EXIT WHEN array_length(picked, 1) >= room;
        END IF;
        -- One job asks for the first candidate only (as version 12's window of one).
        EXIT WHEN walked >= CASE WHEN p_limit = 1 THEN 1 ELSE p_window END;
    END LOOP;
    IF array_length(picked, 1) IS NULL THEN
        RETURN;
    END IF;
    -- A claim changes what the task is doing: decisions read before it lose their compare-and-set.
    UPDATE tasks SET version = version + 1
     WHERE id IN (SELECT task_id FROM jobs WHERE id = ANY(picked) AND status = 'queued');
    RETURN QUERY
        UPDATE jobs SET status = 'running', owner = p_owner, started_at = p_now,
                        pid = NULL, pgid = NULL, proc_start = NULL
         WHERE id = ANY(picked) AND status = 'queued'
        RETURNING *;
END
$fn$;
