-- Baton schema v12: a claim in one round trip. The claim used to be six (begin, the claim lock,
-- the candidate query, the job update, the task version update, commit), and the claim lock was
-- held across four of them, so every instance's claims queued behind network round trips. The
-- function runs the same statements inside the server: it takes the advisory claim lock `p_lock`
-- (held to the end of the calling transaction), then picks the candidates. Each statement of a
-- VOLATILE PL/pgSQL function takes a fresh snapshot under READ COMMITTED, so the running jobs the
-- candidate query counts include every claim committed before the lock was granted: the limits
-- stay exact across instances.
--
-- Candidates: a queued job available at `p_now` that is its task's current job; whose task waits
-- for no dependency not done (unless its repository is in `p_deps`); which, in a serial repository
-- (`p_serial`), as a first-stage job is behind no earlier unfinished task of its repository and
-- its repository is not frozen. They are walked in claim order (`jobs_claim`: rank, later stages
-- first, then `available_at`, then id): one job takes the first that passes; a batch reads a
-- window of `p_window` that pass and whose repository is below its limit, numbers each
-- repository's candidates and keeps them while the repository's running count plus their number
-- stays within `p_per_repo_max`, and the whole batch within `p_running_max` minus what runs.
-- The claimed jobs come back in no particular order; the caller sorts them in claim order.
CREATE FUNCTION baton_claim_jobs(
    p_lock BIGINT, p_now BIGINT, p_running_max BIGINT, p_per_repo_max BIGINT, p_limit BIGINT,
    p_deps TEXT[], p_serial TEXT[], p_window BIGINT, p_owner TEXT)
RETURNS SETOF jobs LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    picked BIGINT[];
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    IF p_limit <= 0 THEN
        RETURN;
    END IF;
    WITH running AS (SELECT repo, COUNT(*) AS n FROM jobs WHERE status = 'running' GROUP BY repo),
    firsts AS (
        SELECT j.id, j.repo, j.rank, j.available_at
        FROM jobs j JOIN tasks t ON t.id = j.task_id LEFT JOIN running r ON r.repo = j.repo
        WHERE j.status = 'queued' AND j.available_at <= p_now AND COALESCE(r.n, 0) < p_per_repo_max
          AND t.current_job = j.id
          AND (j.repo = ANY(p_deps) OR NOT EXISTS (
                SELECT 1 FROM task_dependencies d JOIN tasks dt ON dt.id = d.depends_on
                WHERE d.task_id = j.task_id AND dt.stage <> 'done'))
          AND NOT (j.rank <= 1 AND j.repo = ANY(p_serial) AND (EXISTS (
                SELECT 1 FROM tasks e
                WHERE e.repo = j.repo AND e.id < j.task_id AND e.stage NOT IN ('done', 'cancelled'))
              OR EXISTS (SELECT 1 FROM repo_freezes f WHERE f.repo = j.repo AND f.unfrozen_at IS NULL)))
        ORDER BY j.rank DESC, j.available_at, j.id
        LIMIT CASE WHEN p_limit = 1 THEN 1 ELSE p_window END),
    candidates AS (
        SELECT w.*, ROW_NUMBER() OVER (PARTITION BY w.repo ORDER BY w.rank DESC, w.available_at, w.id) AS k
        FROM firsts w),
    chosen AS (
        SELECT c.id FROM candidates c LEFT JOIN running r ON r.repo = c.repo
        WHERE COALESCE(r.n, 0) + c.k <= p_per_repo_max
        ORDER BY c.rank DESC, c.available_at, c.id
        LIMIT GREATEST(0, LEAST(p_limit, p_running_max - (SELECT COALESCE(SUM(n), 0) FROM running))))
    SELECT array_agg(id) INTO picked FROM chosen;
    IF picked IS NULL THEN
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
