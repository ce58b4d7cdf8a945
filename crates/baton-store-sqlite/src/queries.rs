//! The SQL text of the SQLite store's hot queries — those an idle or busy Baton runs often, or
//! whose cost would otherwise grow with the stored backlog — written so SQLite answers each from
//! an index. [`hot_queries`] lists every one (each filter shape of the dynamic ones) for the test
//! that runs `EXPLAIN QUERY PLAN` over them.
//!
//! The rule behind the shapes: no `($n IS NULL OR column = $n)` on an indexed column (the `OR`
//! hides the index from the planner), so optional filters build their `WHERE` from the terms
//! present, and a term a partial index is defined on is written exactly as in its definition.

use baton_store::{SpendFilter, TaskFilter};

/// Live tasks, exactly as the partial index `tasks_live` says it.
pub(crate) const LIVE: &str = "stage NOT IN ('done', 'cancelled')";

pub(crate) const TASK_BY_WORK_ITEM: &str = "SELECT * FROM tasks WHERE work_item_id = $1 ORDER BY id DESC LIMIT 1";

/// One task's timeline after an event id (`events_task (task_id, id)`).
pub(crate) const EVENTS_OF_TASK: &str = "SELECT * FROM events WHERE task_id = $1 AND id > $2 ORDER BY id LIMIT +$3";

/// Every task's timeline after an event id (the primary key).
pub(crate) const EVENTS_ALL: &str = "SELECT * FROM events WHERE id > $1 ORDER BY id LIMIT +$2";

pub(crate) const AGENT_RUNS_OF_TASK: &str = "SELECT * FROM agent_runs WHERE task_id = $1 ORDER BY id";

pub(crate) const JOBS_OF_TASK: &str = "SELECT * FROM jobs WHERE task_id = $1 ORDER BY id";

pub(crate) const JOBS_WITH_STATUS: &str = "SELECT * FROM jobs WHERE status = $1 ORDER BY id";

/// The gates every claim candidate passes, after `j` (the job) and `t` (its task): it is its
/// task's current job; its task waits for no dependency not done (unless its repository is in
/// `$D`); and in a serial repository (`$S`) a first-stage job is behind no earlier unfinished task
/// and its repository is not frozen (`repo_freezes_open`).
macro_rules! claim_gates {
    ($deps:literal, $serial:literal) => {
        concat!(
            "t.current_job = j.id
       AND (j.repo IN (SELECT value FROM json_each(",
            $deps,
            ")) OR NOT EXISTS (
             SELECT 1 FROM task_dependencies d JOIN tasks dt ON dt.id = d.depends_on
             WHERE d.task_id = j.task_id AND dt.stage <> 'done'))
       AND NOT (j.rank <= 1 AND j.repo IN (SELECT value FROM json_each(",
            $serial,
            ")) AND (EXISTS (
             SELECT 1 FROM tasks e INDEXED BY tasks_live_repo
             WHERE e.repo = j.repo AND e.id < j.task_id AND e.stage NOT IN ('done', 'cancelled'))
           OR EXISTS (SELECT 1 FROM repo_freezes f WHERE f.repo = j.repo AND f.unfrozen_at IS NULL)))"
        )
    };
}

/// The next runnable job under the limits: highest rank (the later pipeline stage) first, then the
/// oldest `available_at`, then id — the order of `jobs_claim`, walked from its start until the
/// first job that passes (a job deferred to later, or of a repository at its limit, is stepped
/// over). The running jobs are counted once per claim, by repository.
pub(crate) const CLAIM_JOB: &str = concat!(
    "WITH running AS (SELECT repo, COUNT(*) AS n FROM jobs WHERE status = 'running' GROUP BY repo)
     SELECT j.id FROM jobs j INDEXED BY jobs_claim JOIN tasks t ON t.id = j.task_id
       LEFT JOIN running r ON r.repo = j.repo
     WHERE j.status = 'queued' AND j.available_at <= $1
       AND (SELECT COALESCE(SUM(n), 0) FROM running) < $2
       AND COALESCE(r.n, 0) < $3
       AND ",
    claim_gates!("$4", "$5"),
    "
     ORDER BY j.rank DESC, j.available_at, j.id LIMIT 1"
);

/// Up to `$4` runnable jobs at once, best first, each within the limits as if claimed in turn.
/// The candidates are the first `$7` jobs down `jobs_claim` that pass the gates (`$5`, `$6`, so a
/// waiting job takes no slot) and whose repository is below its limit — a window a few times the
/// batch, not every available job; then a repository's candidates are numbered in claim order and
/// kept while its running count plus their number stays within `$3`, and the whole batch within
/// `$2` minus what already runs. A window whose repositories fill up early yields fewer jobs than
/// asked, never none while one is claimable; the claim loop asks again.
pub(crate) const CLAIM_BATCH: &str = concat!(
    "WITH running AS (SELECT repo, COUNT(*) AS n FROM jobs WHERE status = 'running' GROUP BY repo),
     firsts AS (
       SELECT j.id, j.repo, j.rank, j.available_at
       FROM jobs j INDEXED BY jobs_claim JOIN tasks t ON t.id = j.task_id
         LEFT JOIN running r ON r.repo = j.repo
       WHERE j.status = 'queued' AND j.available_at <= $1 AND COALESCE(r.n, 0) < $3
         AND ",
    claim_gates!("$5", "$6"),
    "
       ORDER BY j.rank DESC, j.available_at, j.id LIMIT +$7),
     candidates AS (
       SELECT w.*, ROW_NUMBER() OVER (PARTITION BY w.repo ORDER BY w.rank DESC, w.available_at, w.id) AS k
       FROM firsts w)
     SELECT c.id FROM candidates c LEFT JOIN running r ON r.repo = c.repo
     WHERE COALESCE(r.n, 0) + c.k <= $3
     ORDER BY c.rank DESC, c.available_at, c.id
     LIMIT max(0, min($4, $2 - (SELECT COALESCE(SUM(n), 0) FROM running)))"
);

/// Candidates a batch claim reads for a batch of `limit`: enough that repositories filling up
/// inside the window rarely cut a batch short.
pub(crate) fn claim_window(limit: u32) -> i64 {
    i64::from(limit).saturating_mul(4).max(32)
}

/// What one task depends on, with each dependency's work item and stage (primary key walk).
pub(crate) const DEPENDENCIES_OF_TASK: &str = "SELECT d.task_id, d.depends_on, t.work_item_id AS depends_on_work_item,
       t.stage AS depends_on_stage, d.created_at, d.created_by
     FROM task_dependencies d JOIN tasks t ON t.id = d.depends_on
     WHERE d.task_id = $1 ORDER BY d.depends_on";

/// Every dependency of a live task: walks `tasks_live`, then the primary key of
/// `task_dependencies` (`CROSS JOIN` keeps that order: the dependencies of ended tasks, which grow
/// with the history, are never read).
pub(crate) const LIVE_DEPENDENCIES: &str = "SELECT d.task_id, d.depends_on, t.work_item_id AS depends_on_work_item,
       t.stage AS depends_on_stage, d.created_at, d.created_by
     FROM tasks w CROSS JOIN task_dependencies d ON d.task_id = w.id
       JOIN tasks t ON t.id = d.depends_on
     WHERE w.stage NOT IN ('done', 'cancelled') ORDER BY d.task_id, d.depends_on";

/// Due, unacknowledged outbox rows (`outbox_due (done_at, available_at)`).
pub(crate) const CLAIM_EFFECTS: &str = "UPDATE outbox SET claimed_until = $1 + $2, attempts = attempts + 1
     WHERE id IN (SELECT id FROM outbox
                  WHERE done_at IS NULL AND available_at <= $1 AND claimed_until <= $1
                    AND ($4 IS NULL OR task_id = $4)
                  ORDER BY id LIMIT +$3)
     RETURNING *";

/// Tasks by (stage, hold), read from the tally the triggers of migration 8 keep: a few rows,
/// whatever the backlog.
pub(crate) const TASK_COUNTS: &str = "SELECT stage, hold, n FROM task_tally WHERE n > 0 ORDER BY stage, hold";

/// Tasks whose hold ends by itself and is due (`tasks_due`, partial on `due_at_ms`).
pub(crate) const DUE_HOLDS: &str =
    "SELECT id FROM tasks WHERE due_at_ms IS NOT NULL AND due_at_ms <= $1 ORDER BY due_at_ms, id LIMIT +$2";

/// The earliest due time (one step down `tasks_due`).
pub(crate) const NEXT_DUE: &str = "SELECT MIN(due_at_ms) FROM tasks WHERE due_at_ms IS NOT NULL";

/// The earliest `available_at` of a queued job, from `jobs_queue`.
pub(crate) const NEXT_JOB_AT: &str = "SELECT MIN(available_at) FROM jobs WHERE status = 'queued'";

/// Live tasks holding for nothing whose current job ended in `[$1, $2)` and which last changed
/// before `$2` (the reconciler's candidates): walks the jobs that ended in the window
/// (`jobs_finished`), never the history.
pub(crate) const UNAPPLIED_TASKS: &str = "SELECT t.* FROM jobs j INDEXED BY jobs_finished
     JOIN tasks t ON t.id = j.task_id
     WHERE j.finished_at IS NOT NULL AND j.finished_at >= $1 AND j.finished_at < $2
       AND j.status NOT IN ('queued', 'running') AND t.current_job = j.id
       AND t.hold = '' AND t.stage NOT IN ('done', 'cancelled') AND t.updated_at < $2
     ORDER BY j.finished_at, j.id LIMIT +$3";

/// Open jobs by status, from the tally the triggers of migration 8 keep.
pub(crate) const JOB_COUNTS: &str = "SELECT status, n FROM job_tally WHERE status IN ('queued', 'running')";

/// The health check's one-row read of the tasks table.
pub(crate) const NEWEST_TASK: &str = "SELECT MAX(id) FROM tasks";

pub(crate) const PENDING_DELIVERIES: &str =
    "SELECT * FROM webhook_deliveries WHERE processed_at IS NULL ORDER BY id LIMIT +$1";

pub(crate) const OPEN_AGENT_RUNS: &str = "SELECT * FROM agent_runs WHERE ended_at IS NULL ORDER BY id";

/// An event that is not part of its task's summary, exactly as the partial index `events_prunable`
/// says it: the SQL of `baton_store::retention::event_is_summary`, negated (`IS`, never `=`, so a
/// missing key is false rather than NULL).
pub(crate) const NOT_SUMMARY: &str = "NOT (kind IN ('created', 'gate') OR (json_type(detail, '$.from') IS 'text' AND json_type(detail, '$.to') IS 'text'))";

/// One batch of old events of ended tasks outside their summary (`baton_store::retention`):
/// walks `events_prunable` oldest first, looking each task up by its key.
pub(crate) fn prune_events_sql() -> String {
    format!(
        "DELETE FROM events WHERE id IN (SELECT id FROM events INDEXED BY events_prunable
          WHERE at < $1 AND {NOT_SUMMARY}
            AND EXISTS (SELECT 1 FROM tasks t WHERE t.id = events.task_id AND t.stage IN ('done', 'cancelled'))
          ORDER BY at LIMIT +$2)"
    )
}

/// One batch of finished jobs before the cutoff that are not their task's current job and have no
/// agent run: walks `jobs_finished`, with `agent_runs_job` for the runs.
pub(crate) const PRUNE_JOBS: &str = "DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs j INDEXED BY jobs_finished
      JOIN tasks t ON t.id = j.task_id
      WHERE j.finished_at IS NOT NULL AND j.finished_at < $1 AND j.status NOT IN ('queued', 'running')
        AND t.current_job IS NOT j.id
        AND NOT EXISTS (SELECT 1 FROM agent_runs r WHERE r.job_id = j.id)
      ORDER BY j.finished_at LIMIT +$2)";

/// One batch of outbox rows acknowledged before the cutoff (`outbox_due (done_at, …)`).
pub(crate) const PRUNE_OUTBOX: &str = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
      WHERE done_at IS NOT NULL AND done_at < $1 ORDER BY done_at LIMIT +$2)";

/// One batch of webhook deliveries processed before the cutoff
/// (`webhook_deliveries_pending (processed_at, id)`).
pub(crate) const PRUNE_DELIVERIES: &str =
    "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries
      WHERE processed_at IS NOT NULL AND processed_at < $1 ORDER BY processed_at LIMIT +$2)";

/// One batch of inbox rows received before the cutoff of ended tasks or of no task
/// (`inbox_received`).
pub(crate) const PRUNE_INBOX: &str = "DELETE FROM inbox WHERE id IN (SELECT i.id FROM inbox i INDEXED BY inbox_received
      LEFT JOIN tasks t ON t.id = i.task_id
      WHERE i.received_at < $1 AND (i.task_id IS NULL OR t.stage IN ('done', 'cancelled'))
      ORDER BY i.received_at LIMIT +$2)";

/// Tasks matching `filter`, newest first; with `paged`, only ids below a bound and at most a
/// limit (bound in that order after the filter's values: repo, stage, hold). Each filter is an
/// index walk in id order: `tasks_repo`, `tasks_stage`, `tasks_hold`, `tasks_live`.
pub(crate) fn list_tasks_sql(filter: &TaskFilter, paged: bool) -> String {
    let mut terms: Vec<&str> = Vec::new();
    if filter.active_only {
        terms.push(LIVE);
    }
    if filter.repo.is_some() {
        terms.push("repo = ?");
    }
    if filter.stage.is_some() {
        terms.push("stage = ?");
    }
    if filter.hold.is_some() {
        terms.push("hold = ?");
    }
    if paged {
        terms.push("id < ?");
    }
    let mut sql = String::from("SELECT * FROM tasks");
    if !terms.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&terms.join(" AND "));
    }
    sql.push_str(" ORDER BY id DESC");
    if paged {
        sql.push_str(" LIMIT +?");
    }
    sql
}

/// Priced spend of agent runs under `filter` (bound in order: task, repo, since). The tasks
/// table is joined only for a repository.
pub(crate) fn spend_sql(filter: &SpendFilter) -> String {
    let mut terms: Vec<&str> = Vec::new();
    if filter.task.is_some() {
        terms.push("r.task_id = ?");
    }
    if filter.repo.is_some() {
        terms.push("t.repo = ?");
    }
    if filter.since_ms.is_some() {
        terms.push("r.started_at >= ?");
    }
    let mut sql = String::from("SELECT SUM(r.cost_usd) FROM agent_runs r");
    if filter.repo.is_some() {
        sql.push_str(" JOIN tasks t ON t.id = r.task_id");
    }
    if !terms.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&terms.join(" AND "));
    }
    sql
}

/// Every hot query as (name, SQL), each filter shape of the dynamic ones included: the
/// store test runs `EXPLAIN QUERY PLAN` on each and fails on a full scan of a large table.
#[doc(hidden)]
pub fn hot_queries() -> Vec<(String, String)> {
    let mut queries: Vec<(String, String)> = [
        ("task(work_item)", TASK_BY_WORK_ITEM),
        ("events(task)", EVENTS_OF_TASK),
        ("events(all)", EVENTS_ALL),
        ("agent_runs(task)", AGENT_RUNS_OF_TASK),
        ("jobs_for_task", JOBS_OF_TASK),
        ("jobs_with_status", JOBS_WITH_STATUS),
        ("claim_job", CLAIM_JOB),
        ("claim_jobs", CLAIM_BATCH),
        ("claim_effects", CLAIM_EFFECTS),
        ("dependencies", DEPENDENCIES_OF_TASK),
        ("live_dependencies", LIVE_DEPENDENCIES),
        ("task_counts", TASK_COUNTS),
        ("job_counts", JOB_COUNTS),
        ("due_holds", DUE_HOLDS),
        ("next_due_ms", NEXT_DUE),
        ("next_job_at_ms", NEXT_JOB_AT),
        ("unapplied_tasks", UNAPPLIED_TASKS),
        ("health(tasks)", NEWEST_TASK),
        ("pending_deliveries", PENDING_DELIVERIES),
        ("open_agent_runs", OPEN_AGENT_RUNS),
        ("prune(jobs)", PRUNE_JOBS),
        ("prune(outbox)", PRUNE_OUTBOX),
        ("prune(deliveries)", PRUNE_DELIVERIES),
        ("prune(inbox)", PRUNE_INBOX),
    ]
    .into_iter()
    .map(|(name, sql)| (name.to_string(), sql.to_string()))
    .collect();
    queries.push(("prune(events)".to_string(), prune_events_sql()));
    queries.push(("queue_entries_with_head".to_string(), crate::queue_with_head_sql()));
    for shape in 0..16u8 {
        let filter = TaskFilter {
            active_only: shape & 1 != 0,
            repo: (shape & 2 != 0).then(|| "r".to_string()),
            stage: (shape & 4 != 0).then(|| "s".to_string()),
            hold: (shape & 8 != 0).then(|| "h".to_string()),
        };
        let name = format!(
            "list_tasks_page(active={}, repo={}, stage={}, hold={})",
            filter.active_only,
            filter.repo.is_some(),
            filter.stage.is_some(),
            filter.hold.is_some()
        );
        queries.push((name, list_tasks_sql(&filter, true)));
    }
    let spends = [
        ("spend_usd(task)", SpendFilter { task: Some(baton_domain::TaskId(1)), ..SpendFilter::default() }),
        ("spend_usd(since)", SpendFilter { since_ms: Some(0), ..SpendFilter::default() }),
        ("spend_usd(repo)", SpendFilter { repo: Some("r".into()), ..SpendFilter::default() }),
        ("spend_usd(repo, since)", SpendFilter { repo: Some("r".into()), since_ms: Some(0), ..SpendFilter::default() }),
    ];
    for (name, filter) in spends {
        queries.push((name.to_string(), spend_sql(&filter)));
    }
    queries
}
