//! Baton's PostgreSQL store: several `baton serve` instances, on several machines, share one
//! database with the guarantees of the SQLite store (SPEC §15).
//!
//! Transactions run at READ COMMITTED. Where SQLite's single writer made a read-then-write safe,
//! this store takes a lock instead, each held until its transaction ends:
//!
//! - **claims** take one advisory lock (`CLAIM_LOCK`), so the running counts a claim checks
//!   cannot change under it: the global and per-repository limits hold across instances. A claim
//!   is one call of the `baton_claim_jobs` function (migrations 12 and 13): lock, candidate walk and
//!   updates run in the server, so the lock is held for no network round trip;
//! - **leases** take an advisory lock per lease name, then read, compare and write;
//! - **work-item ids** lock their `(repo, prefix)` counter row by upserting it first;
//! - **events** take the events lock (`EVENTS_LOCK`) just before their insert, so ids are handed
//!   out in commit order and a reader paging by id never skips a row that commits late;
//! - **compare-and-sets** (task version, job status, queue state) are `UPDATE ... WHERE`, which
//!   PostgreSQL re-checks against the newest row version after waiting for a concurrent writer.
//!
//! Errors keep their kind ([`StoreError::Busy`] for a serialization failure, deadlock or lock
//! timeout, [`StoreError::Unavailable`] for a lost server, [`StoreError::Conflict`] for a unique
//! violation); every timestamp comes from the engine's clock (only `schema_migrations` records
//! the server's time).

pub mod import;

use baton_domain::ids::branch_name;
use baton_domain::{JobId, TaskId, WorkItemId};
use baton_store::metrics::{Histogram, HistogramBounds, MERGE_GATE, MetricCounts, OpenJob, TokenTotals};
use baton_store::rows::{
    EXTEND_LEASE, GRANT_LEASE, HOLD_OF_TASK, LEASE_BY_NAME, NEXT_LEASE_TOKEN, WORK_ITEM_WALK_MAX, parked_hold,
    state_columns, update_queue_entry,
};
use baton_store::*;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// Versioned migrations, applied in order at connect under [`MIGRATE_LOCK`]; never edit an
/// applied one.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_instances.sql")),
    (3, include_str!("../migrations/0003_retention.sql")),
    (4, include_str!("../migrations/0004_usage_ingest.sql")),
    (5, include_str!("../migrations/0005_notify.sql")),
    (6, include_str!("../migrations/0006_coverage.sql")),
    (7, include_str!("../migrations/0007_lessons.sql")),
    (8, include_str!("../migrations/0008_dependencies.sql")),
    (9, include_str!("../migrations/0009_freeze.sql")),
    (10, include_str!("../migrations/0010_retro.sql")),
    (11, include_str!("../migrations/0011_claim_order.sql")),
    (12, include_str!("../migrations/0012_claim_function.sql")),
    (13, include_str!("../migrations/0013_claim_walk.sql")),
    (14, include_str!("../migrations/0014_queue_head.sql")),
];

/// Advisory lock keys (one namespace for Baton: the high bits spell "BATN").
const MIGRATE_LOCK: i64 = 0x4241_544E_0000_0001;
/// The lock every claim holds to its commit (public so a test can hold it from another session).
pub const CLAIM_LOCK: i64 = 0x4241_544E_0000_0002;
const EVENTS_LOCK: i64 = 0x4241_544E_0000_0003;

/// Connections per instance unless the URL's caller says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// How long the server lets one of Baton's sessions sit idle inside an open transaction before it
/// ends the session (`idle_in_transaction_session_timeout`). Baton's transactions never wait on
/// anything but the database, so only a process that stopped mid-transaction (a `SIGSTOP`, a
/// suspended machine) trips it — and without it, whatever that transaction locked (the claim
/// lock, a lease name, the events lock) would stay locked for every other instance until that
/// process ran again. Below the default `instance_grace_secs` (30 s), so the instance judged
/// dead holds nothing the survivors need.
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "15s";

fn newest_known() -> i64 {
    MIGRATIONS.iter().map(|(version, _)| *version).max().unwrap_or(0)
}

/// PostgreSQL-backed [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The URL with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((credentials, host)) = rest.rsplit_once('@') else { return url.to_string() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// The password in `url`, if it has one (a secret to mask in messages).
pub fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let credentials = rest.rsplit_once('@')?.0;
    let password = credentials.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_string())
}

/// Checks that `url` parses as a PostgreSQL connection URL, without connecting; the error says
/// what is wrong (with the password masked).
pub fn check_url(url: &str) -> Result<(), String> {
    PgConnectOptions::from_str(url)
        .map(|_| ())
        .map_err(|e| format!("`{}` is not a valid PostgreSQL URL: {e}", redact_url(url)))
}

/// Connects once to `url` and reports the server's version, without migrating anything
/// (`baton config check --online`).
pub async fn probe(url: &str) -> StoreResult<String> {
    use sqlx::Connection;
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Database(format!("the database URL {} is not valid: {e}", redact_url(url))))?;
    let mut connection = sqlx::PgConnection::connect_with(&options).await?;
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&mut connection).await?;
    let schema: Option<i64> = sqlx::query_scalar(
        "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN NULL
                ELSE (SELECT MAX(version) FROM schema_migrations) END",
    )
    .fetch_one(&mut connection)
    .await?;
    connection.close().await?;
    Ok(match schema {
        Some(v) => format!("PostgreSQL {version}, Baton schema version {v}"),
        None => format!("PostgreSQL {version}, no Baton schema yet (created at the first start)"),
    })
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`) with
    /// [`DEFAULT_MAX_CONNECTIONS`] and runs pending migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// [`PgStore::connect`] with a pool of at most `max_connections`.
    pub async fn connect_with(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("the database URL {} is not valid: {e}", redact_url(url))))?
            .application_name("baton")
            .options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT)]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Unavailable(why) | StoreError::Database(why) => {
                    StoreError::Unavailable(format!("cannot connect to {}: {why}", redact_url(url)))
                }
                other => other,
            })?;
        migrate(&pool).await?;
        Ok(PgStore { pool })
    }

    /// The pool, for tests and tools that read below the trait.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

async fn migrate(pool: &PgPool) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    // One migrator at a time: several instances may start at once.
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATE_LOCK).execute(&mut *tx).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(&mut *tx).await?;
    if let Some(newest) = applied.iter().max()
        && *newest > newest_known()
    {
        return Err(StoreError::Database(format!(
            "the database has schema version {newest}, newer than this Baton knows ({}); upgrade Baton",
            newest_known()
        )));
    }
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql)).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, applied_at)
             VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)",
        )
        .bind(version)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

baton_store::row_decoders!(PgRow);

/// The channel the triggers of `0005_notify.sql` notify on.
const CHANGES_CHANNEL: &str = "baton_changes";

/// [`Store::change_feed`] over LISTEN: its own connection, re-established by sqlx on the next
/// call after a loss (notifications sent meanwhile are missed; the engine polls as well).
struct PgChangeFeed {
    listener: sqlx::postgres::PgListener,
}

#[async_trait::async_trait]
impl ChangeFeed for PgChangeFeed {
    async fn next(&mut self) -> StoreResult<Change> {
        let notification = self.listener.recv().await?;
        Ok(match notification.payload() {
            "queued" => Change::Queued,
            "stopped" => Change::Stopped,
            _ => Change::Other,
        })
    }
}

const QUEUE_COLUMNS: &str = "q.task_id, t.work_item_id, q.repo, q.priority, q.entered_at, q.state, q.base, q.head, \
     q.fails, q.reason, q.updated_at, q.batch, q.split FROM merge_queue q JOIN tasks t ON t.id = q.task_id";

/// Live tasks, as the partial index `tasks_live` says it.
const LIVE: &str = "stage NOT IN ('done', 'cancelled')";

/// One batch of old events of ended tasks outside their summary: the SQL of
/// `baton_store::retention::event_prunable`. The summary test is written exactly as the partial
/// index `events_prunable` says it (`IS NOT DISTINCT FROM`: a missing key is false, not NULL).
const PRUNE_EVENTS: &str = "DELETE FROM events WHERE id IN (SELECT id FROM events
      WHERE at < $1
        AND NOT (kind IN ('created', 'gate')
                 OR (jsonb_typeof(detail::jsonb -> 'from') IS NOT DISTINCT FROM 'string'
                     AND jsonb_typeof(detail::jsonb -> 'to') IS NOT DISTINCT FROM 'string'))
        AND EXISTS (SELECT 1 FROM tasks t WHERE t.id = events.task_id AND t.stage IN ('done', 'cancelled'))
      ORDER BY at LIMIT $2)";

/// One batch of finished jobs before the cutoff that are not their task's current job and have no
/// agent run (`baton_store::retention::job_prunable`).
const PRUNE_JOBS: &str = "DELETE FROM jobs WHERE id IN (SELECT j.id FROM jobs j JOIN tasks t ON t.id = j.task_id
      WHERE j.finished_at IS NOT NULL AND j.finished_at < $1 AND j.status NOT IN ('queued', 'running')
        AND t.current_job IS DISTINCT FROM j.id
        AND NOT EXISTS (SELECT 1 FROM agent_runs r WHERE r.job_id = j.id)
      ORDER BY j.finished_at LIMIT $2)";

/// One batch of outbox rows acknowledged before the cutoff (`outbox_done`).
const PRUNE_OUTBOX: &str = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
      WHERE done_at IS NOT NULL AND done_at < $1 ORDER BY done_at LIMIT $2)";

/// One batch of webhook deliveries processed before the cutoff (`webhook_deliveries_processed`).
const PRUNE_DELIVERIES: &str = "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries
      WHERE processed_at IS NOT NULL AND processed_at < $1 ORDER BY processed_at LIMIT $2)";

/// One batch of inbox rows received before the cutoff of ended tasks or of no task
/// (`inbox_received`).
const PRUNE_INBOX: &str =
    "DELETE FROM inbox WHERE id IN (SELECT i.id FROM inbox i LEFT JOIN tasks t ON t.id = i.task_id
      WHERE i.received_at < $1 AND (i.task_id IS NULL OR t.stage IN ('done', 'cancelled'))
      ORDER BY i.received_at LIMIT $2)";

/// Candidates a batch claim reads for a batch of `limit` (as SQLite's).
fn claim_window(limit: u32) -> i64 {
    i64::from(limit).saturating_mul(4).max(32)
}

/// The columns of a [`DependencyRecord`]: the row, with the dependency's work item and stage.
const DEPENDENCY_COLUMNS: &str = "SELECT d.task_id, d.depends_on, t.work_item_id AS depends_on_work_item,
       t.stage AS depends_on_stage, d.created_at, d.created_by";

const CLAIM_EFFECTS: &str = "UPDATE outbox SET claimed_until = $1 + $2, attempts = attempts + 1
     WHERE id IN (SELECT id FROM outbox
                  WHERE done_at IS NULL AND available_at <= $1 AND claimed_until <= $1
                    AND ($4::bigint IS NULL OR task_id = $4)
                  ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
     RETURNING *";

const UNAPPLIED_TASKS: &str = "SELECT t.* FROM jobs j JOIN tasks t ON t.id = j.task_id
     WHERE j.finished_at IS NOT NULL AND j.finished_at >= $1 AND j.finished_at < $2
       AND j.status NOT IN ('queued', 'running') AND t.current_job = j.id
       AND t.hold = '' AND t.stage NOT IN ('done', 'cancelled') AND t.updated_at < $2
     ORDER BY j.finished_at, j.id LIMIT $3";

/// Tasks matching `filter`, newest first; with `paged`, only ids below a bound and at most a
/// limit (bound in that order after the filter's values: repo, stage, hold).
fn list_tasks_sql(filter: &TaskFilter, paged: bool) -> String {
    let mut terms: Vec<String> = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if filter.active_only {
        terms.push(LIVE.to_string());
    }
    if filter.repo.is_some() {
        terms.push(format!("repo = ${}", next()));
    }
    if filter.stage.is_some() {
        terms.push(format!("stage = ${}", next()));
    }
    if filter.hold.is_some() {
        terms.push(format!("hold = ${}", next()));
    }
    let (below, limit) = if paged { (next(), next()) } else { (0, 0) };
    if paged {
        terms.push(format!("id < ${below}"));
    }
    let mut sql = String::from("SELECT * FROM tasks");
    if !terms.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&terms.join(" AND "));
    }
    sql.push_str(" ORDER BY id DESC");
    if paged {
        sql.push_str(&format!(" LIMIT ${limit}"));
    }
    sql
}

fn bind_task_filter<'q>(
    mut query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    filter: &TaskFilter,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    for value in [&filter.repo, &filter.stage, &filter.hold].into_iter().flatten() {
        query = query.bind(value.clone());
    }
    query
}

/// Priced spend of agent runs under `filter` (bound in order: task, repo, since).
fn spend_sql(filter: &SpendFilter) -> String {
    let mut terms: Vec<String> = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if filter.task.is_some() {
        terms.push(format!("r.task_id = ${}", next()));
    }
    if filter.repo.is_some() {
        terms.push(format!("t.repo = ${}", next()));
    }
    if filter.since_ms.is_some() {
        terms.push(format!("r.started_at >= ${}", next()));
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

/// Appends a timeline event. Takes [`EVENTS_LOCK`] first and keeps it to the end of the
/// transaction, so event ids commit in order; call it as late in a transaction as possible.
async fn insert_event(tx: &mut Transaction<'static, Postgres>, event: &NewEvent) -> StoreResult<i64> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(EVENTS_LOCK).execute(&mut **tx).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO events (task_id, at, kind, stage, message, detail) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(event.task.0)
    .bind(event.at_ms)
    .bind(&event.kind)
    .bind(&event.stage)
    .bind(&event.message)
    .bind(event.detail.to_string())
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

async fn insert_inbox(
    tx: &mut Transaction<'static, Postgres>,
    task: TaskId,
    entry: &InboxEntry,
    outcome: &str,
    now_ms: i64,
) -> StoreResult<()> {
    let result = sqlx::query(
        "INSERT INTO inbox (dedup_key, task_id, kind, payload, received_at, outcome) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(&entry.dedup_key)
    .bind(task.0)
    .bind(&entry.kind)
    .bind(entry.payload.to_string())
    .bind(now_ms)
    .bind(outcome)
    .execute(&mut **tx)
    .await?;
    if result.rows_affected() == 0 {
        return Err(StoreError::Duplicate(entry.dedup_key.clone()));
    }
    Ok(())
}

/// Applies the store-side effects of a transition inside `tx`; returns the enqueued job. The
/// caller has written the task row with `next`, its `current_job` included.
async fn apply_transition(
    tx: &mut Transaction<'static, Postgres>,
    task: TaskId,
    repo: &str,
    next: &baton_domain::TaskState,
    transition: &Transition,
    now_ms: i64,
    parked: bool,
) -> StoreResult<Option<JobId>> {
    if transition.cancel_jobs {
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', finished_at = $2 WHERE task_id = $1 AND status IN ('queued', 'running')",
        )
        .bind(task.0)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    }
    if transition.release_leases {
        sqlx::query("DELETE FROM leases WHERE holder = $1").bind(task_holder(task)).execute(&mut **tx).await?;
        // Leaving the merge queue goes with releasing the lease (done, rollback, block, cancel).
        let left: Option<(String, Option<i64>)> =
            sqlx::query_as("DELETE FROM merge_queue WHERE task_id = $1 RETURNING state, batch")
                .bind(task.0)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some((state, batch)) = left {
            refuse_leaving_landing_batch(task, &state, batch.map(TaskId), parked, next)?;
        }
    }
    if next.hold == baton_domain::Hold::MergeQueue {
        // Parking in the merge queue and the queue entry commit together: a merge gate whose job
        // was stopped or taken over meanwhile never leaves an entry behind.
        sqlx::query(
            "INSERT INTO merge_queue (task_id, repo, priority, entered_at, state, updated_at)
             VALUES ($1, $2, 0, $3, 'waiting', $3) ON CONFLICT (task_id) DO NOTHING",
        )
        .bind(task.0)
        .bind(repo)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    }
    let mut enqueued = None;
    if let Some((stage, delay_ms)) = &transition.enqueue {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (task_id, repo, stage, attempt, status, available_at, created_at, rank)
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7) RETURNING id",
        )
        .bind(task.0)
        .bind(repo)
        .bind(stage)
        .bind(i64::from(next.attempt))
        .bind(now_ms + delay_ms)
        .bind(now_ms)
        .bind(transition.rank)
        .fetch_one(&mut **tx)
        .await?;
        enqueued = Some(JobId(id));
    }
    // The active job is the one just enqueued, else the one the decision kept: the caller's
    // write of the task row set the latter.
    if let Some(job) = enqueued {
        sqlx::query("UPDATE tasks SET current_job = $2 WHERE id = $1")
            .bind(task.0)
            .bind(job.0)
            .execute(&mut **tx)
            .await?;
    }
    Ok(enqueued)
}

/// Reads a histogram over the values `v` of `values` (a subquery) with one aggregate query.
async fn histogram(pool: &PgPool, values: &str, bounds_ms: &[i64]) -> StoreResult<Histogram> {
    let mut columns: Vec<String> =
        bounds_ms.iter().enumerate().map(|(i, b)| format!("COUNT(*) FILTER (WHERE v <= {b}) AS b{i}")).collect();
    columns.push("COUNT(v) AS n".into());
    columns.push("COALESCE(SUM(v), 0)::bigint AS s".into());
    let sql = format!("SELECT {} FROM ({values}) AS h", columns.join(", "));
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await?;
    let mut histogram = Histogram::new(bounds_ms);
    for (i, bucket) in histogram.buckets.iter_mut().enumerate() {
        *bucket = row.try_get::<i64, _>(format!("b{i}").as_str())? as u64;
    }
    histogram.count = row.try_get::<i64, _>("n")? as u64;
    histogram.sum_ms = row.try_get("s")?;
    Ok(histogram)
}

async fn triples(pool: &PgPool, sql: String) -> StoreResult<Vec<(String, String, u64)>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get::<i64, _>(2)? as u64))).collect()
}

/// The stage part of a state display (`review (awaiting approval)` → `review`).
fn sql_stage(column: &str) -> String {
    format!(
        "CASE WHEN strpos({column}, ' (') > 0 THEN substr({column}, 1, strpos({column}, ' (') - 1) ELSE {column} END"
    )
}

/// Whether `error` is a unique violation (someone else inserted the row first).
fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|db| db.code()).is_some_and(|code| code == "23505")
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn open_jobs(&self) -> StoreResult<Vec<OpenJob>> {
        let rows = sqlx::query(
            "SELECT j.*, t.work_item_id AS work_item_id, t.state AS task_state FROM jobs j JOIN tasks t ON t.id = j.task_id
             WHERE j.status IN ('queued', 'running') ORDER BY j.available_at, j.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let state: serde_json::Value = serde_json::from_str(&row.try_get::<String, _>("task_state")?)?;
                Ok(OpenJob {
                    job: job_from_row(row)?,
                    work_item_id: row.try_get("work_item_id")?,
                    cancel_requested: state.get("cancel_requested").and_then(|v| v.as_str()).map(str::to_string),
                })
            })
            .collect()
    }

    async fn task_counts(&self) -> StoreResult<Vec<TaskCount>> {
        let rows =
            sqlx::query("SELECT stage, hold, COUNT(*) AS n FROM tasks GROUP BY stage, hold ORDER BY stage, hold")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(TaskCount {
                    stage: row.try_get("stage")?,
                    hold: row.try_get("hold")?,
                    tasks: row.try_get::<i64, _>("n")?.max(0) as u64,
                })
            })
            .collect()
    }

    async fn metric_counts(&self, bounds: &HistogramBounds) -> StoreResult<MetricCounts> {
        let pool = &self.pool;
        let stages = sqlx::query("SELECT stage, COUNT(*) AS n FROM tasks GROUP BY stage ORDER BY stage")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("stage")?, row.try_get::<i64, _>("n")? as u64)))
            .collect::<StoreResult<Vec<(String, u64)>>>()?;
        let stage_transitions = triples(
            pool,
            format!(
                "SELECT f, t, COUNT(*) FROM (SELECT {} AS f, {} AS t FROM (
                   SELECT d ->> 'from' AS fr, d ->> 'to' AS tt FROM (SELECT detail::jsonb AS d FROM events) AS e
                   WHERE jsonb_typeof(d -> 'from') = 'string' AND jsonb_typeof(d -> 'to') = 'string') AS x) AS y
                 WHERE f <> t GROUP BY f, t ORDER BY f, t",
                sql_stage("fr"),
                sql_stage("tt")
            ),
        )
        .await?;
        let gate_verdicts = triples(
            pool,
            "SELECT d ->> 'gate' AS g, d ->> 'verdict' AS v, COUNT(*) FROM
               (SELECT detail::jsonb AS d FROM events WHERE kind = 'gate') AS e
             WHERE jsonb_typeof(d -> 'gate') = 'string' AND jsonb_typeof(d -> 'verdict') = 'string'
             GROUP BY g, v ORDER BY g, v"
                .into(),
        )
        .await?;
        let agent_runs = triples(
            pool,
            "SELECT adapter, COALESCE(status, 'running') AS s, COUNT(*) FROM agent_runs GROUP BY adapter, s ORDER BY adapter, s"
                .into(),
        )
        .await?;
        let totals = sqlx::query(
            "SELECT COALESCE(SUM(input_tokens), 0)::bigint AS i, COALESCE(SUM(output_tokens), 0)::bigint AS o,
               COALESCE(SUM(cache_read_tokens), 0)::bigint AS cr, COALESCE(SUM(cache_write_tokens), 0)::bigint AS cw,
               COALESCE(SUM(reasoning_tokens), 0)::bigint AS r, COALESCE(SUM(cost_usd), 0.0)::float8 AS c FROM agent_runs",
        )
        .fetch_one(pool)
        .await?;
        let count = |name: &str| -> StoreResult<u64> { Ok(totals.try_get::<i64, _>(name)? as u64) };
        let tokens = TokenTotals {
            input: count("i")?,
            output: count("o")?,
            cache_read: count("cr")?,
            cache_write: count("cw")?,
            reasoning: count("r")?,
        };
        let job_latency = histogram(
            pool,
            "SELECT GREATEST(finished_at - GREATEST(available_at, created_at), 0) AS v FROM jobs WHERE finished_at IS NOT NULL",
            &bounds.job_latency_ms,
        )
        .await?;
        let merge_wait = histogram(
            pool,
            &format!(
                "SELECT pass - first AS v FROM (
                   SELECT MIN(at) AS first, MIN(CASE WHEN d ->> 'verdict' = 'pass' THEN at END) AS pass
                   FROM (SELECT task_id, at, detail::jsonb AS d FROM events WHERE kind = 'gate') AS e
                   WHERE d ->> 'gate' = '{MERGE_GATE}'
                     AND jsonb_typeof(d -> 'gate') = 'string' AND jsonb_typeof(d -> 'verdict') = 'string'
                   GROUP BY task_id) AS w WHERE pass IS NOT NULL"
            ),
            &bounds.merge_wait_ms,
        )
        .await?;
        Ok(MetricCounts {
            tasks_by_stage: stages,
            stage_transitions,
            gate_verdicts,
            agent_runs,
            tokens,
            cost_usd: totals.try_get("c")?,
            job_latency,
            merge_wait,
        })
    }

    async fn health(&self) -> Vec<HealthCheck> {
        let mut checks = Vec::new();
        let newest: Result<Option<i64>, StoreError> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&self.pool)
            .await
            .map_err(Into::into);
        let known = newest_known();
        checks.push(match newest {
            Ok(Some(version)) if version == known => HealthCheck::ok("schema", format!("schema version {version}")),
            Ok(version) => {
                HealthCheck::failed("schema", format!("schema version {version:?}, this Baton expects {known}"), false)
            }
            Err(error) => HealthCheck::failed("database", format!("the database does not answer: {error}"), false),
        });
        let newest_task: Result<Option<i64>, StoreError> =
            sqlx::query_scalar("SELECT MAX(id) FROM tasks").fetch_one(&self.pool).await.map_err(Into::into);
        checks.push(match newest_task {
            Ok(_) => HealthCheck::ok("tasks", "the tasks table answers"),
            Err(error) => HealthCheck::failed("tasks", format!("reading the tasks table failed: {error}"), false),
        });
        checks
    }

    async fn create_task(&self, new: NewTask, first: Transition, now_ms: i64) -> StoreResult<TaskRecord> {
        // A concurrent create of the same ticket loses on the unique index; the retry then finds
        // the winner's task and answers `Exists`.
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_create_task(&new, &first, now_ms).await {
                Err(Attempt::Unique(_)) if tries < 3 => continue,
                Err(Attempt::Unique(error)) => return Err(StoreError::from(error)),
                Err(Attempt::Store(error)) => return Err(error),
                Ok(record) => return Ok(record),
            }
        }
    }

    async fn raise_work_item_counter(&self, repo: &str, prefix: &str, next: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO work_item_counters (repo, prefix, next_number) VALUES ($1, $2, $3)
             ON CONFLICT (repo, prefix) DO UPDATE
             SET next_number = GREATEST(work_item_counters.next_number, EXCLUDED.next_number)",
        )
        .bind(repo)
        .bind(prefix)
        .bind(next)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn task(&self, key: &TaskKey) -> StoreResult<Option<TaskRecord>> {
        let row = match key {
            TaskKey::Id(id) => {
                sqlx::query("SELECT * FROM tasks WHERE id = $1").bind(id.0).fetch_optional(&self.pool).await?
            }
            TaskKey::WorkItem(w) => {
                sqlx::query("SELECT * FROM tasks WHERE work_item_id = $1 ORDER BY id DESC LIMIT 1")
                    .bind(w)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.as_ref().map(task_from_row).transpose()
    }

    async fn task_by_external_ref(&self, external_ref: &str) -> StoreResult<Option<TaskRecord>> {
        let row = sqlx::query("SELECT * FROM tasks WHERE external_ref = $1")
            .bind(external_ref)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn live_task_by_external_ref(&self, external_ref: &str) -> StoreResult<Option<TaskRecord>> {
        let row = sqlx::query("SELECT * FROM tasks WHERE external_ref = $1 AND stage NOT IN ('done', 'cancelled')")
            .bind(external_ref)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        let sql = list_tasks_sql(filter, false);
        let rows = bind_task_filter(sqlx::query(sqlx::AssertSqlSafe(sql)), filter).fetch_all(&self.pool).await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn list_tasks_page(
        &self,
        filter: &TaskFilter,
        before: Option<TaskId>,
        limit: u32,
    ) -> StoreResult<Vec<TaskRecord>> {
        let sql = list_tasks_sql(filter, true);
        let rows = bind_task_filter(sqlx::query(sqlx::AssertSqlSafe(sql)), filter)
            .bind(before.map_or(i64::MAX, |id| id.0))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn advance(&self, advance: Advance) -> StoreResult<Option<JobId>> {
        let mut tx = self.begin().await?;
        if let Some(entry) = &advance.inbox {
            insert_inbox(&mut tx, advance.task, entry, "applied", advance.now_ms).await?;
        }
        // Parked in the merge queue before this transition (read only for one that leaves it).
        let hold: Option<String> = match advance.transition.release_leases {
            true => sqlx::query_scalar(HOLD_OF_TASK).bind(advance.task.0).fetch_optional(&mut *tx).await?,
            false => None,
        };
        let parked = parked_hold(hold.as_deref());
        let columns = state_columns(&advance.next)?;
        let repo: Option<String> = sqlx::query_scalar(
            "UPDATE tasks SET stage = $3, hold = $4, state = $5, version = version + 1, updated_at = $6, due_at_ms = $7,
                 current_job = $8
             WHERE id = $1 AND version = $2 RETURNING repo",
        )
        .bind(advance.task.0)
        .bind(advance.expected_version)
        .bind(&advance.next.stage)
        .bind(columns.hold)
        .bind(columns.json)
        .bind(advance.now_ms)
        .bind(columns.due_at_ms)
        .bind(advance.next.job.map(|j| j.0))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(repo) = repo else {
            return Err(StoreError::Conflict(format!(
                "task {} is no longer at version {}",
                advance.task, advance.expected_version
            )));
        };
        if let Some(finish) = &advance.finish_job {
            let flipped = sqlx::query(
                "UPDATE jobs SET status = $2, finished_at = $3, result = $4
                 WHERE id = $1 AND task_id = $5 AND status = 'running'
                   AND ($6::text IS NULL OR owner IS NULL OR owner = $6)",
            )
            .bind(finish.job.0)
            .bind(finish.status.as_str())
            .bind(advance.now_ms)
            .bind(finish.result.to_string())
            .bind(advance.task.0)
            .bind(finish.claimed_by.as_deref())
            .execute(&mut *tx)
            .await?;
            if flipped.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!("job {} is no longer running under this claim", finish.job)));
            }
        }
        if advance.next.stage == baton_domain::pipeline::CANCELLED {
            sqlx::query(
                "UPDATE tasks SET tombstoned_ref = external_ref, external_ref = NULL WHERE id = $1 AND external_ref IS NOT NULL",
            )
            .bind(advance.task.0)
            .execute(&mut *tx)
            .await?;
        }
        let enqueued =
            apply_transition(&mut tx, advance.task, &repo, &advance.next, &advance.transition, advance.now_ms, parked)
                .await?;
        for effect in &advance.effects {
            sqlx::query(
                "INSERT INTO outbox (task_id, kind, payload, created_at, available_at) VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(advance.task.0)
            .bind(&effect.kind)
            .bind(effect.payload.to_string())
            .bind(advance.now_ms)
            .execute(&mut *tx)
            .await?;
        }
        insert_event(&mut tx, &advance.event).await?;
        tx.commit().await?;
        Ok(enqueued)
    }

    async fn record_suppressed(&self, task: TaskId, inbox: Option<InboxEntry>, event: NewEvent) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if let Some(entry) = &inbox {
            insert_inbox(&mut tx, task, entry, "suppressed", event.at_ms).await?;
        }
        insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim_job(&self, claim: &Claim) -> StoreResult<Option<JobRecord>> {
        Ok(self.claim_jobs(claim, 1).await?.pop())
    }

    async fn claim_jobs(&self, claim: &Claim, limit: u32) -> StoreResult<Vec<JobRecord>> {
        // One round trip: `baton_claim_jobs` (migrations 12, 13) takes the claim lock, picks the
        // candidates and claims them in the server, in the statement's own transaction.
        let rows = sqlx::query("SELECT * FROM baton_claim_jobs($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(CLAIM_LOCK)
            .bind(claim.now_ms)
            .bind(i64::from(claim.running_max))
            .bind(i64::from(claim.running_per_repo_max))
            .bind(i64::from(limit))
            .bind(&claim.dependency_free_repos)
            .bind(&claim.serial_repos)
            .bind(claim_window(limit))
            .bind(&claim.owner)
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = rows.iter().map(job_from_row).collect::<StoreResult<Vec<_>>>()?;
        // Best first: the claim order.
        claimed.sort_by_key(|j| (std::cmp::Reverse(j.rank), j.available_at_ms, j.id.0));
        Ok(claimed)
    }

    async fn job(&self, id: JobId) -> StoreResult<Option<JobRecord>> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1").bind(id.0).fetch_optional(&self.pool).await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn jobs_with_status(&self, status: JobStatus) -> StoreResult<Vec<JobRecord>> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE status = $1 ORDER BY id")
            .bind(status.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn add_dependency(
        &self,
        task: TaskId,
        depends_on: TaskId,
        created_by: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        if task == depends_on {
            return Err(StoreError::Conflict(format!("task {task} cannot depend on itself")));
        }
        let mut tx = self.begin().await?;
        for id in [task, depends_on] {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT id FROM tasks WHERE id = $1").bind(id.0).fetch_optional(&mut *tx).await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("task {id}")));
            }
        }
        let result = sqlx::query(
            "INSERT INTO task_dependencies (task_id, depends_on, created_at, created_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (task_id, depends_on) DO NOTHING",
        )
        .bind(task.0)
        .bind(depends_on.0)
        .bind(now_ms)
        .bind(created_by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(result.rows_affected() == 1)
    }

    async fn remove_dependency(&self, task: TaskId, depends_on: TaskId) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM task_dependencies WHERE task_id = $1 AND depends_on = $2")
            .bind(task.0)
            .bind(depends_on.0)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn dependencies(&self, task: TaskId) -> StoreResult<Vec<DependencyRecord>> {
        let sql = format!(
            "{DEPENDENCY_COLUMNS} FROM task_dependencies d JOIN tasks t ON t.id = d.depends_on
             WHERE d.task_id = $1 ORDER BY d.depends_on"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(task.0).fetch_all(&self.pool).await?;
        rows.iter().map(dependency_from_row).collect()
    }

    async fn live_dependencies(&self) -> StoreResult<Vec<DependencyRecord>> {
        let sql = format!(
            "{DEPENDENCY_COLUMNS} FROM tasks w JOIN task_dependencies d ON d.task_id = w.id
               JOIN tasks t ON t.id = d.depends_on
             WHERE w.stage NOT IN ('done', 'cancelled') ORDER BY d.task_id, d.depends_on"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(dependency_from_row).collect()
    }

    async fn jobs_for_task(&self, task: TaskId) -> StoreResult<Vec<JobRecord>> {
        let rows =
            sqlx::query("SELECT * FROM jobs WHERE task_id = $1 ORDER BY id").bind(task.0).fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn set_job_process(&self, job: JobId, pid: Option<u32>, pgid: Option<u32>) -> StoreResult<()> {
        sqlx::query("UPDATE jobs SET pid = $2, pgid = $3 WHERE id = $1")
            .bind(job.0)
            .bind(pid.map(i64::from))
            .bind(pgid.map(i64::from))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_job_proc_start(&self, job: JobId, start_ticks: u64) -> StoreResult<()> {
        sqlx::query("UPDATE jobs SET proc_start = $2 WHERE id = $1")
            .bind(job.0)
            .bind(start_ticks as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_launch(
        &self,
        job: JobId,
        claimed_by: &str,
        run: i64,
        pid: u32,
        pgid: u32,
        start_ticks: Option<u64>,
    ) -> StoreResult<bool> {
        // The run's pid whatever happened; the job's process only under the launching claim (the
        // row's WHERE is re-checked on the row's newest version at READ COMMITTED).
        sqlx::query("UPDATE agent_runs SET pid = $2 WHERE id = $1")
            .bind(run)
            .bind(i64::from(pid))
            .execute(&self.pool)
            .await?;
        let recorded = sqlx::query(
            "UPDATE jobs SET pid = $2, pgid = $3, proc_start = COALESCE($4, proc_start) \
             WHERE id = $1 AND status = 'running' AND (owner IS NULL OR owner = $5)",
        )
        .bind(job.0)
        .bind(i64::from(pid))
        .bind(i64::from(pgid))
        .bind(start_ticks.map(|t| t as i64))
        .bind(claimed_by)
        .execute(&self.pool)
        .await?;
        Ok(recorded.rows_affected() == 1)
    }

    async fn adopt_job(&self, job: JobId, claimed_by: Option<&str>, owner: &str) -> StoreResult<bool> {
        // At READ COMMITTED the WHERE is checked again on the row's newest version: of two
        // instances adopting the same read, one wins.
        let adopted = sqlx::query(
            "UPDATE jobs SET owner = $3 WHERE id = $1 AND status = 'running' AND owner IS NOT DISTINCT FROM $2",
        )
        .bind(job.0)
        .bind(claimed_by)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(adopted.rows_affected() == 1)
    }

    async fn renew_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // The acquirers' lock: a holder renewing a lease that has just expired must not race an
        // acquirer that read it expired and is about to write its own grant over it.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('baton-lease:' || $1, 0))")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let result = sqlx::query("UPDATE leases SET expires_at = $3 WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .bind(now_ms + ttl_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(result.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn release_lease_if_unmoved(&self, name: &str, task: TaskId, version: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // The task row locked first: a claim or advance of it (each moves its version) waits for
        // this release, or has committed and is read here.
        let current: Option<i64> = sqlx::query_scalar("SELECT version FROM tasks WHERE id = $1 FOR SHARE")
            .bind(task.0)
            .fetch_optional(&mut *tx)
            .await?;
        if current != Some(version) {
            return Ok(false);
        }
        let result = sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(task_holder(task))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(result.rows_affected() == 1)
    }

    async fn close_job(
        &self,
        job: JobId,
        status: JobStatus,
        result: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let closed = sqlx::query(
            "UPDATE jobs SET status = $2, result = $3, finished_at = $4
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(job.0)
        .bind(status.as_str())
        .bind(result.to_string())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(closed.rows_affected() == 1)
    }

    async fn close_claimed_job(
        &self,
        job: JobId,
        claimed_by: &str,
        status: JobStatus,
        result: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let closed = sqlx::query(
            "UPDATE jobs SET status = $2, result = $3, finished_at = $4
             WHERE id = $1 AND status = 'running' AND (owner IS NULL OR owner = $5)",
        )
        .bind(job.0)
        .bind(status.as_str())
        .bind(result.to_string())
        .bind(now_ms)
        .bind(claimed_by)
        .execute(&self.pool)
        .await?;
        Ok(closed.rows_affected() == 1)
    }

    async fn requeue_job(&self, job: JobId, claimed_by: Option<&str>, available_at_ms: i64) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE jobs SET status = 'queued', owner = NULL, pid = NULL, pgid = NULL, proc_start = NULL, available_at = $2
             WHERE id = $1 AND status = 'running' AND owner IS NOT DISTINCT FROM $3",
        )
        .bind(job.0)
        .bind(available_at_ms)
        .bind(claimed_by)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn take_over_job(&self, job: JobId, owner: &str, available_at_ms: i64, event: NewEvent) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let result = sqlx::query(
            "UPDATE jobs SET status = 'queued', owner = NULL, pid = NULL, pgid = NULL, proc_start = NULL, available_at = $2
             WHERE id = $1 AND status = 'running' AND owner = $3",
        )
        .bind(job.0)
        .bind(available_at_ms)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_agent_run(&self, run: NewAgentRun) -> StoreResult<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO agent_runs (job_id, task_id, stage, adapter, model, pid, started_at, log_path)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(run.job.0)
        .bind(run.task.0)
        .bind(&run.stage)
        .bind(&run.adapter)
        .bind(&run.model)
        .bind(run.pid.map(i64::from))
        .bind(run.started_at_ms)
        .bind(&run.log_path)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn set_agent_run_pid(&self, id: i64, pid: u32) -> StoreResult<()> {
        sqlx::query("UPDATE agent_runs SET pid = $2 WHERE id = $1")
            .bind(id)
            .bind(i64::from(pid))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn finish_agent_run(&self, id: i64, finish: AgentRunFinish) -> StoreResult<()> {
        let report = &finish.report;
        let (status, error) = finish.status_and_error();
        sqlx::query(
            "UPDATE agent_runs SET ended_at = $2, exit_code = $3, status = $4, error = $5, session_id = $6, turns = $7,
               input_tokens = $8, output_tokens = $9, cache_read_tokens = $10, cache_write_tokens = $11,
               reasoning_tokens = $12, cost_usd = $13, model = COALESCE($14, model)
             WHERE id = $1",
        )
        .bind(id)
        .bind(finish.ended_at_ms)
        .bind(finish.exit_code.map(i64::from))
        .bind(status)
        .bind(error)
        .bind(&report.session_id)
        .bind(report.turns.map(i64::from))
        .bind(report.usage.input_tokens as i64)
        .bind(report.usage.output_tokens as i64)
        .bind(report.usage.cache_read_tokens as i64)
        .bind(report.usage.cache_write_tokens as i64)
        .bind(report.usage.reasoning_tokens as i64)
        .bind(report.cost_usd)
        .bind(&report.model)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn agent_runs(&self, task: TaskId) -> StoreResult<Vec<AgentRunRecord>> {
        let rows = sqlx::query("SELECT * FROM agent_runs WHERE task_id = $1 ORDER BY id")
            .bind(task.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(agent_run_from_row).collect()
    }

    async fn count_agent_runs(&self, task: TaskId, stage: &str) -> StoreResult<u32> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agent_runs WHERE task_id = $1 AND stage = $2")
            .bind(task.0)
            .bind(stage)
            .fetch_one(&self.pool)
            .await?;
        Ok(count as u32)
    }

    async fn append_event(&self, event: NewEvent) -> StoreResult<i64> {
        let mut tx = self.begin().await?;
        let id = insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn events(&self, task: Option<TaskId>, after_id: i64, limit: u32) -> StoreResult<Vec<EventRecord>> {
        let query = match task {
            Some(task) => sqlx::query("SELECT * FROM events WHERE task_id = $1 AND id > $2 ORDER BY id LIMIT $3")
                .bind(task.0)
                .bind(after_id),
            None => sqlx::query("SELECT * FROM events WHERE id > $1 ORDER BY id LIMIT $2").bind(after_id),
        };
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> StoreResult<LeaseOutcome> {
        let mut tx = self.begin().await?;
        let outcome = acquire_lease_in(&mut tx, name, holder, ttl_ms, now_ms).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn acquire_lease_for_job(
        &self,
        name: &str,
        task: TaskId,
        job: JobId,
        ttl_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Option<LeaseOutcome>> {
        let mut tx = self.begin().await?;
        // The task row locked first (as every lease operation fenced on a task takes it): an
        // advance of the task waits for this grant, or has committed and is read here.
        if active_job_for_share(&mut tx, task).await?.flatten() != Some(job.0) {
            return Ok(None);
        }
        let outcome = acquire_lease_in(&mut tx, name, &task_holder(task), ttl_ms, now_ms).await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }

    async fn lease(&self, name: &str) -> StoreResult<Option<LeaseRecord>> {
        let row = sqlx::query(LEASE_BY_NAME).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn leases(&self) -> StoreResult<Vec<LeaseRecord>> {
        let rows = sqlx::query("SELECT * FROM leases ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(lease_from_row).collect()
    }

    async fn inbox_seen(&self, dedup_key: &str) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM inbox WHERE dedup_key = $1")
            .bind(dedup_key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn set_budget_cap(&self, scope: &str, cap_usd: Option<f64>, now_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO budget_caps (scope, cap_usd, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (scope) DO UPDATE SET cap_usd = excluded.cap_usd, updated_at = excluded.updated_at",
        )
        .bind(scope)
        .bind(cap_usd)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn budget_caps(&self) -> StoreResult<Vec<(String, Option<f64>)>> {
        let rows = sqlx::query("SELECT scope, cap_usd FROM budget_caps ORDER BY scope").fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((row.try_get("scope")?, row.try_get("cap_usd")?))).collect()
    }

    async fn freeze_repo(&self, freeze: &NewFreeze, now_ms: i64) -> StoreResult<(RepoFreeze, bool)> {
        let mut tx = self.begin().await?;
        // The partial unique index keeps one open freeze per repository: a second is not inserted.
        let inserted = sqlx::query(
            "INSERT INTO repo_freezes (repo, task_id, frozen_by, reason, frozen_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(&freeze.repo)
        .bind(freeze.task.map(|t| t.0))
        .bind(&freeze.frozen_by)
        .bind(&freeze.reason)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query(
            "SELECT id, repo, task_id, incident_task_id, revert_task_id, frozen_by, reason, frozen_at, unfrozen_by, unfrozen_at
             FROM repo_freezes WHERE repo = $1 AND unfrozen_at IS NULL",
        )
            .bind(&freeze.repo)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((freeze_row(&row)?, inserted))
    }

    async fn link_freeze(&self, id: i64, incident: Option<TaskId>, revert: Option<TaskId>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE repo_freezes SET incident_task_id = COALESCE(incident_task_id, $2),
               revert_task_id = COALESCE(revert_task_id, $3) WHERE id = $1",
        )
        .bind(id)
        .bind(incident.map(|t| t.0))
        .bind(revert.map(|t| t.0))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn unfreeze_repo(&self, repo: &str, by: &str, now_ms: i64) -> StoreResult<Option<RepoFreeze>> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "UPDATE repo_freezes SET unfrozen_by = $2, unfrozen_at = $3 WHERE repo = $1 AND unfrozen_at IS NULL
             RETURNING id, repo, task_id, incident_task_id, revert_task_id, frozen_by, reason, frozen_at, unfrozen_by, unfrozen_at",
        )
        .bind(repo)
        .bind(by)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(|row| freeze_row(&row)).transpose()
    }

    async fn repo_freezes(&self) -> StoreResult<Vec<RepoFreeze>> {
        let rows =
            sqlx::query(
                "SELECT id, repo, task_id, incident_task_id, revert_task_id, frozen_by, reason, frozen_at, unfrozen_by, unfrozen_at
                 FROM repo_freezes WHERE unfrozen_at IS NULL ORDER BY repo",
            )
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(freeze_row).collect()
    }

    async fn coverage_baseline(&self, repo: &str) -> StoreResult<Option<CoverageBaseline>> {
        let row = sqlx::query("SELECT repo, pct, updated_at, set_by, reason FROM coverage_baselines WHERE repo = $1")
            .bind(repo)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| coverage_row(&row)).transpose()
    }

    async fn coverage_baselines(&self) -> StoreResult<Vec<CoverageBaseline>> {
        let rows = sqlx::query("SELECT repo, pct, updated_at, set_by, reason FROM coverage_baselines ORDER BY repo")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(coverage_row).collect()
    }

    async fn raise_coverage_baseline(
        &self,
        repo: &str,
        pct: f64,
        set_by: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        // One statement: the compare-and-set is the upsert's WHERE, re-checked on the stored row.
        let done = sqlx::query(
            "INSERT INTO coverage_baselines (repo, pct, updated_at, set_by, reason) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (repo) DO UPDATE SET pct = excluded.pct, updated_at = excluded.updated_at,
               set_by = excluded.set_by, reason = excluded.reason
             WHERE coverage_baselines.pct < excluded.pct",
        )
        .bind(repo)
        .bind(pct)
        .bind(now_ms)
        .bind(set_by)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_coverage_baseline(
        &self,
        repo: &str,
        pct: f64,
        set_by: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO coverage_baselines (repo, pct, updated_at, set_by, reason) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (repo) DO UPDATE SET pct = excluded.pct, updated_at = excluded.updated_at,
               set_by = excluded.set_by, reason = excluded.reason",
        )
        .bind(repo)
        .bind(pct)
        .bind(now_ms)
        .bind(set_by)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_lesson(
        &self,
        lesson: &NewLesson,
        dedup_window_ms: i64,
        now_ms: i64,
    ) -> StoreResult<(LessonRecord, LessonWrite)> {
        let tags = lesson_tags_json(&lesson.tags);
        let mut tx = self.begin().await?;
        let created = sqlx::query(
            "INSERT INTO lessons (slug, title, body, source, repo, stage, tags, task, created_at, updated_at, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) ON CONFLICT (slug) DO NOTHING",
        )
        .bind(&lesson.slug)
        .bind(&lesson.title)
        .bind(&lesson.body)
        .bind(&lesson.source)
        .bind(&lesson.repo)
        .bind(&lesson.stage)
        .bind(&tags)
        .bind(&lesson.task)
        .bind(now_ms)
        .bind(lesson.status())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let write = if created {
            LessonWrite::Created
        } else {
            let updated_at: i64 = sqlx::query_scalar("SELECT updated_at FROM lessons WHERE slug = $1 FOR UPDATE")
                .bind(&lesson.slug)
                .fetch_one(&mut *tx)
                .await?;
            if now_ms - updated_at < dedup_window_ms {
                sqlx::query("UPDATE lessons SET updated_at = GREATEST(updated_at, $1) WHERE slug = $2")
                    .bind(now_ms)
                    .bind(&lesson.slug)
                    .execute(&mut *tx)
                    .await?;
                LessonWrite::Duplicate
            } else {
                sqlx::query(
                    "UPDATE lessons SET title = $1, body = $2, repo = $3, stage = $4, tags = $5, task = $6,
                       updated_at = $7 WHERE slug = $8",
                )
                .bind(&lesson.title)
                .bind(&lesson.body)
                .bind(&lesson.repo)
                .bind(&lesson.stage)
                .bind(&tags)
                .bind(&lesson.task)
                .bind(now_ms)
                .bind(&lesson.slug)
                .execute(&mut *tx)
                .await?;
                LessonWrite::Refreshed
            }
        };
        let row = sqlx::query("SELECT * FROM lessons WHERE slug = $1").bind(&lesson.slug).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok((lesson_row(&row)?, write))
    }

    async fn lesson(&self, id: i64) -> StoreResult<Option<LessonRecord>> {
        let row = sqlx::query("SELECT * FROM lessons WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|row| lesson_row(&row)).transpose()
    }

    async fn lessons(&self, filter: &LessonFilter) -> StoreResult<Vec<LessonRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM lessons WHERE ($1::TEXT IS NULL OR repo IS NULL OR repo = $1)
               AND ($2::TEXT IS NULL OR stage IS NULL OR stage = $2) AND ($3::TEXT IS NULL OR status = $3)
             ORDER BY updated_at DESC, id DESC",
        )
        .bind(&filter.repo)
        .bind(&filter.stage)
        .bind(&filter.status)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lesson_row).collect()
    }

    async fn update_lesson(&self, id: i64, patch: &LessonPatch, now_ms: i64) -> StoreResult<LessonRecord> {
        let mut tx = self.begin().await?;
        let row =
            sqlx::query("SELECT * FROM lessons WHERE id = $1 FOR UPDATE").bind(id).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("lesson {id}")));
        };
        let mut lesson = lesson_row(&row)?;
        patch.apply(&mut lesson, now_ms);
        sqlx::query(
            "UPDATE lessons SET title = $1, body = $2, repo = $3, stage = $4, tags = $5, updated_at = $6, status = $7
             WHERE id = $8",
        )
        .bind(&lesson.title)
        .bind(&lesson.body)
        .bind(&lesson.repo)
        .bind(&lesson.stage)
        .bind(lesson_tags_json(&lesson.tags))
        .bind(lesson.updated_at_ms)
        .bind(&lesson.status)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(lesson)
    }

    async fn hit_lessons(&self, ids: &[i64], now_ms: i64) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for id in ids {
            sqlx::query("UPDATE lessons SET hits = hits + 1, last_hit_at = $1 WHERE id = $2")
                .bind(now_ms)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn propose_task(&self, proposal: &NewTaskProposal, now_ms: i64) -> StoreResult<(TaskProposalRecord, bool)> {
        let mut tx = self.begin().await?;
        let created = sqlx::query(
            "INSERT INTO task_proposals (from_task_id, repo, title, body, status, created_at)
             VALUES ($1, $2, $3, $4, 'proposed', $5) ON CONFLICT (from_task_id, title) DO NOTHING",
        )
        .bind(proposal.from_task.0)
        .bind(&proposal.repo)
        .bind(&proposal.title)
        .bind(&proposal.body)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query("SELECT * FROM task_proposals WHERE from_task_id = $1 AND title = $2")
            .bind(proposal.from_task.0)
            .bind(&proposal.title)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((proposal_row(&row)?, created))
    }

    async fn task_proposal(&self, id: i64) -> StoreResult<Option<TaskProposalRecord>> {
        let row = sqlx::query("SELECT * FROM task_proposals WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|row| proposal_row(&row)).transpose()
    }

    async fn task_proposals(&self, filter: &ProposalFilter) -> StoreResult<Vec<TaskProposalRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM task_proposals WHERE ($1::TEXT IS NULL OR status = $1)
               AND ($2::BIGINT IS NULL OR from_task_id = $2) ORDER BY id",
        )
        .bind(&filter.status)
        .bind(filter.from_task.map(|t| t.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(proposal_row).collect()
    }

    async fn decide_task_proposal(
        &self,
        id: i64,
        status: &str,
        by: &str,
        now_ms: i64,
    ) -> StoreResult<TaskProposalRecord> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT * FROM task_proposals WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("task proposal {id}")));
        };
        let mut proposal = proposal_row(&row)?;
        proposal_decision(&mut proposal, status, by, now_ms)?;
        let changed = sqlx::query(
            "UPDATE task_proposals SET status = $1, decided_at = $2, decided_by = $3
             WHERE id = $4 AND status = $5 AND created_task_id IS NULL",
        )
        .bind(&proposal.status)
        .bind(proposal.decided_at_ms)
        .bind(&proposal.decided_by)
        .bind(id)
        .bind(row.try_get::<String, _>("status")?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(StoreError::Conflict(format!("task proposal {id} was decided meanwhile")));
        }
        tx.commit().await?;
        Ok(proposal)
    }

    async fn link_task_proposal(&self, id: i64, task: TaskId) -> StoreResult<TaskProposalRecord> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE task_proposals SET created_task_id = $1
             WHERE id = $2 AND status = 'accepted' AND created_task_id IS NULL",
        )
        .bind(task.0)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let row = sqlx::query("SELECT * FROM task_proposals WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("task proposal {id}")));
        };
        if changed != 1 {
            return Err(StoreError::Conflict(format!("task proposal {id} is not accepted or already has its task")));
        }
        tx.commit().await?;
        proposal_row(&row)
    }

    async fn spend_usd(&self, filter: &SpendFilter) -> StoreResult<f64> {
        let mut query = sqlx::query_scalar::<_, Option<f64>>(sqlx::AssertSqlSafe(spend_sql(filter)));
        if let Some(task) = filter.task {
            query = query.bind(task.0);
        }
        if let Some(repo) = &filter.repo {
            query = query.bind(repo.clone());
        }
        if let Some(since) = filter.since_ms {
            query = query.bind(since);
        }
        let spent = query.fetch_one(&self.pool).await?;
        let ingested_sql = baton_store::rows::ingested_spend_sql(filter, {
            let mut n = 0;
            move || {
                n += 1;
                format!("${n}")
            }
        });
        let mut ingested = sqlx::query_scalar::<_, Option<f64>>(sqlx::AssertSqlSafe(ingested_sql));
        if let Some(task) = filter.task {
            ingested = ingested.bind(task.0);
        }
        if let Some(repo) = &filter.repo {
            ingested = ingested.bind(repo.clone());
        }
        if let Some(since) = filter.since_ms {
            ingested = ingested.bind(since);
        }
        let ingested = ingested.fetch_one(&self.pool).await?;
        Ok(spent.unwrap_or(0.0) + ingested.unwrap_or(0.0))
    }

    async fn record_once(&self, key: &str, kind: &str, now_ms: i64) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO inbox (dedup_key, task_id, kind, payload, received_at, outcome) VALUES ($1, NULL, $2, '{}', $3, 'once')
             ON CONFLICT (dedup_key) DO NOTHING",
        )
        .bind(key)
        .bind(kind)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn usage(&self, group: UsageGroup) -> StoreResult<Vec<UsageRow>> {
        let key = match group {
            UsageGroup::Task => "t.repo || '/' || t.work_item_id",
            UsageGroup::Stage => "r.stage",
            UsageGroup::Adapter => "r.adapter",
            UsageGroup::Model => "COALESCE(r.model, '(unknown)')",
            UsageGroup::Repo => "t.repo",
            UsageGroup::Day => "to_char(to_timestamp(r.started_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        };
        let sql = format!(
            "SELECT {key} AS key, COUNT(*) AS runs, COUNT(DISTINCT r.task_id) AS tasks, SUM(r.input_tokens)::bigint AS input_tokens,
               SUM(r.output_tokens)::bigint AS output_tokens, SUM(r.cache_read_tokens)::bigint AS cache_read_tokens,
               SUM(r.cache_write_tokens)::bigint AS cache_write_tokens, COALESCE(SUM(r.cost_usd), 0.0)::float8 AS cost_usd,
               COUNT(*) FILTER (WHERE r.cost_usd IS NULL) AS unpriced_runs
             FROM agent_runs r JOIN tasks t ON t.id = r.task_id GROUP BY 1 ORDER BY 1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let u = |c: &str| -> StoreResult<u64> { Ok(row.try_get::<Option<i64>, _>(c)?.unwrap_or(0) as u64) };
                Ok(UsageRow {
                    key: row.try_get("key")?,
                    runs: u("runs")?,
                    tasks: u("tasks")?,
                    input_tokens: u("input_tokens")?,
                    output_tokens: u("output_tokens")?,
                    cache_read_tokens: u("cache_read_tokens")?,
                    cache_write_tokens: u("cache_write_tokens")?,
                    cost_usd: row.try_get("cost_usd")?,
                    unpriced_runs: u("unpriced_runs")?,
                })
            })
            .collect()
    }

    async fn insert_usage_record(&self, record: NewUsageRecord) -> StoreResult<UsageInsert> {
        let id: Option<i64> = sqlx::query_scalar(baton_store::rows::INSERT_USAGE_RECORD)
            .bind(&record.source)
            .bind(&record.category)
            .bind(&record.model)
            .bind(record.input_tokens as i64)
            .bind(record.output_tokens as i64)
            .bind(record.cache_read_tokens as i64)
            .bind(record.cache_write_tokens as i64)
            .bind(record.units)
            .bind(&record.unit_kind)
            .bind(record.cost_usd)
            .bind(&record.priced_by)
            .bind(&record.idempotency_key)
            .bind(record.task.map(|t| t.0))
            .bind(&record.repo)
            .bind(record.at_ms)
            .bind(&record.principal)
            .fetch_optional(&self.pool)
            .await?;
        let insert = match (id, &record.idempotency_key) {
            (Some(id), _) => UsageInsert { record: UsageRecord { id, record }, created: true },
            (None, Some(key)) => {
                let row = sqlx::query(baton_store::rows::USAGE_RECORD_BY_KEY)
                    .bind(&record.source)
                    .bind(key)
                    .fetch_one(&self.pool)
                    .await?;
                UsageInsert { record: usage_record_from_row(&row)?, created: false }
            }
            (None, None) => return Err(StoreError::Database("a usage record without a key was not stored".into())),
        };

        Ok(insert)
    }

    async fn usage_record_totals(&self) -> StoreResult<Vec<UsageRecordTotals>> {
        let sql = baton_store::rows::usage_totals_sql(
            "to_char(to_timestamp(r.at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            "::bigint",
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        let mut totals = rows.iter().map(usage_totals_from_row).collect::<StoreResult<Vec<_>>>()?;
        UsageRecordTotals::sort(&mut totals);
        Ok(totals)
    }

    async fn done_task_spend(&self) -> StoreResult<DoneTaskSpend> {
        let row = sqlx::query(baton_store::rows::DONE_TASK_SPEND).fetch_one(&self.pool).await?;
        Ok(DoneTaskSpend {
            tasks: row.try_get::<i64, _>("tasks")?.max(0) as u64,
            agent_cost_usd: row.try_get::<Option<f64>, _>("agent")?.unwrap_or(0.0),
            ingested_cost_usd: row.try_get::<Option<f64>, _>("ingested")?.unwrap_or(0.0),
        })
    }

    async fn claim_effects(&self, claim: &EffectClaim) -> StoreResult<Vec<EffectRecord>> {
        let rows = sqlx::query(CLAIM_EFFECTS)
            .bind(claim.now_ms)
            .bind(claim.claim_ms)
            .bind(i64::from(claim.limit))
            .bind(claim.task.map(|t| t.0))
            .fetch_all(&self.pool)
            .await?;
        let mut effects = rows.iter().map(effect_from_row).collect::<StoreResult<Vec<_>>>()?;
        effects.sort_by_key(|e| e.id);
        Ok(effects)
    }

    async fn complete_effect(&self, id: i64, now_ms: i64) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE outbox SET done_at = $2 WHERE id = $1 AND done_at IS NULL")
            .bind(id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn fail_effect(&self, id: i64, error: &str, retry_at_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox SET last_error = $2, available_at = $3, claimed_until = 0 WHERE id = $1 AND done_at IS NULL",
        )
        .bind(id)
        .bind(error)
        .bind(retry_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn effects(&self, task: Option<TaskId>, pending_only: bool) -> StoreResult<Vec<EffectRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE ($1::bigint IS NULL OR task_id = $1) AND (NOT $2 OR done_at IS NULL) ORDER BY id",
        )
        .bind(task.map(|t| t.0))
        .bind(pending_only)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(effect_from_row).collect()
    }

    async fn open_agent_runs(&self) -> StoreResult<Vec<AgentRunRecord>> {
        let rows =
            sqlx::query("SELECT * FROM agent_runs WHERE ended_at IS NULL ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter().map(agent_run_from_row).collect()
    }

    async fn close_agent_run(&self, id: i64, status: &str, error: &str, now_ms: i64) -> StoreResult<bool> {
        let closed = sqlx::query(
            "UPDATE agent_runs SET ended_at = $2, status = $3, error = $4 WHERE id = $1 AND ended_at IS NULL",
        )
        .bind(id)
        .bind(now_ms)
        .bind(status)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(closed.rows_affected() == 1)
    }

    async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
        scope: &str,
        created_by: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        let result = sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, scope, created_by, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(token_hash)
        .bind(scope)
        .bind(created_by)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("a token named `{name}` exists already")));
        }
        Ok(())
    }

    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn api_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_api_token(&self, name: &str, now_ms: i64) -> StoreResult<bool> {
        let result = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
            .bind(now_ms)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn record_delivery(&self, delivery: NewDelivery) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO webhook_deliveries (source, delivery_id, event, received_at, payload)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, delivery_id) DO NOTHING",
        )
        .bind(&delivery.source)
        .bind(&delivery.delivery_id)
        .bind(&delivery.event)
        .bind(delivery.received_at_ms)
        .bind(&delivery.payload)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn pending_deliveries(&self, limit: u32) -> StoreResult<Vec<DeliveryRecord>> {
        let rows = sqlx::query("SELECT * FROM webhook_deliveries WHERE processed_at IS NULL ORDER BY id LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn mark_delivery(
        &self,
        id: i64,
        processed_at_ms: i64,
        parsed: Option<&str>,
        error: Option<&str>,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE webhook_deliveries SET processed_at = $1, parsed = $2, error = $3
             WHERE id = $4 AND processed_at IS NULL",
        )
        .bind(processed_at_ms)
        .bind(parsed)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn deliveries(&self, source: Option<&str>) -> StoreResult<Vec<DeliveryRecord>> {
        let rows = sqlx::query("SELECT * FROM webhook_deliveries WHERE $1::text IS NULL OR source = $1 ORDER BY id")
            .bind(source)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn begin_idempotent(
        &self,
        key: &str,
        request_hash: &str,
        now_ms: i64,
        stale_ms: i64,
    ) -> StoreResult<IdempotencyBegin> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency (key, request_hash, started_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(request_hash)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            tx.commit().await?;
            return Ok(IdempotencyBegin::Started);
        }
        let row =
            sqlx::query("SELECT * FROM idempotency WHERE key = $1 FOR UPDATE").bind(key).fetch_one(&mut *tx).await?;
        let stored_hash: String = row.try_get("request_hash")?;
        if stored_hash != request_hash {
            return Ok(IdempotencyBegin::Mismatch);
        }
        if let (Some(status), Some(body)) =
            (row.try_get::<Option<i64>, _>("status")?, row.try_get::<Option<String>, _>("response")?)
        {
            return Ok(IdempotencyBegin::Replay { status: u16::try_from(status).unwrap_or(500), body });
        }
        let started: i64 = row.try_get("started_at")?;
        if now_ms - started < stale_ms {
            return Ok(IdempotencyBegin::InProgress);
        }
        sqlx::query("UPDATE idempotency SET started_at = $1 WHERE key = $2")
            .bind(now_ms)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let task = row.try_get::<Option<i64>, _>("task_id")?.map(TaskId);
        Ok(IdempotencyBegin::Resumed { task })
    }

    async fn finish_idempotent(&self, key: &str, status: u16, body: &str, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE idempotency SET status = $1, response = $2, finished_at = $3 WHERE key = $4")
            .bind(i64::from(status))
            .bind(body)
            .bind(now_ms)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn abandon_idempotent(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency WHERE key = $1 AND status IS NULL AND task_id IS NULL")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn queue_enter(&self, task: TaskId, repo: &str, priority: i64, now_ms: i64) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO merge_queue (task_id, repo, priority, entered_at, state, updated_at)
             VALUES ($1, $2, $3, $4, 'waiting', $4) ON CONFLICT (task_id) DO NOTHING",
        )
        .bind(task.0)
        .bind(repo)
        .bind(priority)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn queue_entry(&self, task: TaskId) -> StoreResult<Option<QueueEntry>> {
        let sql = format!("SELECT {QUEUE_COLUMNS} WHERE q.task_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(task.0).fetch_optional(&self.pool).await?;
        row.as_ref().map(queue_from_row).transpose()
    }

    async fn queue_entries(&self, repo: Option<&str>) -> StoreResult<Vec<QueueEntry>> {
        let rows = match repo {
            Some(repo) => {
                let sql = format!("SELECT {QUEUE_COLUMNS} WHERE q.repo = $1 ORDER BY q.entered_at, q.task_id");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(repo).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {QUEUE_COLUMNS} ORDER BY q.repo, q.entered_at, q.task_id");
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(queue_from_row).collect()
    }

    async fn queue_entries_with_head(&self, repo: &str, head: &str) -> StoreResult<Vec<QueueEntry>> {
        let sql = format!("SELECT {QUEUE_COLUMNS} WHERE q.repo = $1 AND q.head = $2 ORDER BY q.entered_at, q.task_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(repo).bind(head).fetch_all(&self.pool).await?;
        rows.iter().map(queue_from_row).collect()
    }

    async fn queue_update(
        &self,
        task: TaskId,
        expect: &QueueExpect,
        change: &QueueChange,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let mut conn = self.pool.acquire().await?;
        update_queue_entry_in(&mut conn, task, expect, change, now_ms).await
    }

    async fn queue_land(&self, landing: &QueueLanding, now_ms: i64) -> StoreResult<Option<LeaseOutcome>> {
        let QueueLanding { task, job, expect, change, lease: name, ttl_ms } = landing;
        let (task, job, ttl_ms) = (*task, *job, *ttl_ms);
        let mut tx = self.begin().await?;
        // The locks in an advance's order: the task row (`FOR SHARE`: an advance that releases
        // the task's leases and removes its entry waits, or has committed and is seen), the lease,
        // then the entry's row. Nothing commits unless both the grant and the entry's move do.
        match (active_job_for_share(&mut tx, task).await?, job) {
            (None, _) => return Ok(None),
            (Some(active), Some(job)) if active != Some(job.0) => return Ok(None),
            _ => {}
        }
        let outcome = acquire_lease_in(&mut tx, name, &task_holder(task), ttl_ms, now_ms).await?;
        if matches!(outcome, LeaseOutcome::Busy { .. }) {
            return Ok(Some(outcome));
        }
        if !update_queue_entry_in(&mut tx, task, expect, change, now_ms).await? {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(outcome))
    }

    async fn set_queue_priority(&self, task: TaskId, priority: i64) -> StoreResult<bool> {
        let result = sqlx::query("UPDATE merge_queue SET priority = $2 WHERE task_id = $1")
            .bind(task.0)
            .bind(priority)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn due_holds(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<TaskId>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE due_at_ms IS NOT NULL AND due_at_ms <= $1 ORDER BY due_at_ms, id LIMIT $2",
        )
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(TaskId).collect())
    }

    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MIN(due_at_ms) FROM tasks WHERE due_at_ms IS NOT NULL")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn next_job_at_ms(&self) -> StoreResult<Option<i64>> {
        // `jobs_queue` is (available_at) over queued jobs only.
        Ok(sqlx::query_scalar("SELECT MIN(available_at) FROM jobs WHERE status = 'queued'")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn unapplied_tasks(&self, since_ms: i64, before_ms: i64, limit: u32) -> StoreResult<Vec<TaskRecord>> {
        let rows = sqlx::query(UNAPPLIED_TASKS)
            .bind(since_ms)
            .bind(before_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn job_counts(&self) -> StoreResult<JobCounts> {
        let mut counts = JobCounts::default();
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running') GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        for row in rows {
            let n = row.try_get::<i64, _>("n")?.max(0) as u64;
            match row.try_get::<String, _>("status")?.as_str() {
                "queued" => counts.queued = n,
                "running" => counts.running = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    async fn change_feed(&self) -> StoreResult<Option<Box<dyn ChangeFeed>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Some(Box::new(PgChangeFeed { listener })))
    }

    async fn heartbeat(&self, beat: &InstanceRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO instances (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
               started_at = excluded.started_at,
               heartbeat_at = CASE WHEN excluded.heartbeat_at > instances.heartbeat_at
                                   THEN excluded.heartbeat_at ELSE instances.heartbeat_at END",
        )
        .bind(&beat.id)
        .bind(&beat.host)
        .bind(i64::from(beat.pid))
        .bind(beat.started_at_ms)
        .bind(beat.heartbeat_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn instances(&self) -> StoreResult<Vec<InstanceRecord>> {
        let rows = sqlx::query("SELECT * FROM instances ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(InstanceRecord {
                    id: row.try_get("id")?,
                    host: row.try_get("host")?,
                    pid: row.try_get::<i64, _>("pid")?.clamp(0, i64::from(u32::MAX)) as u32,
                    started_at_ms: row.try_get("started_at")?,
                    heartbeat_at_ms: row.try_get("heartbeat_at")?,
                })
            })
            .collect()
    }

    async fn prune(&self, before_ms: i64, limit: u32) -> StoreResult<PruneCounts> {
        // Each kind in its own statement (its own short transaction): no lock is held for the
        // whole pass, and a concurrent writer waits at most for one batch.
        let mut counts = [0u64; 5];
        for (count, sql) in
            counts.iter_mut().zip([PRUNE_EVENTS, PRUNE_JOBS, PRUNE_OUTBOX, PRUNE_DELIVERIES, PRUNE_INBOX])
        {
            *count = sqlx::query(sql).bind(before_ms).bind(i64::from(limit)).execute(&self.pool).await?.rows_affected();
        }
        let [events, jobs, outbox, deliveries, inbox] = counts;
        Ok(PruneCounts { events, jobs, outbox, deliveries, inbox })
    }
}

/// How one try of a create ended: a unique violation is retried once the winner committed.
enum Attempt {
    Unique(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Attempt {
    fn from(error: sqlx::Error) -> Self {
        if is_unique_violation(&error) { Attempt::Unique(error) } else { Attempt::Store(error.into()) }
    }
}

impl From<StoreError> for Attempt {
    fn from(error: StoreError) -> Self {
        Attempt::Store(error)
    }
}

impl PgStore {
    async fn try_create_task(&self, new: &NewTask, first: &Transition, now_ms: i64) -> Result<TaskRecord, Attempt> {
        let mut tx = self.begin().await?;
        if let Some(external) = &new.external_ref {
            let row = sqlx::query("SELECT * FROM tasks WHERE external_ref = $1")
                .bind(external)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = row {
                return Err(Attempt::Store(StoreError::Exists(Box::new(task_from_row(&row)?))));
            }
        }
        // Upserting the counter row first locks it: creates in one (repo, prefix) take turns, and
        // each sees the tasks its predecessors committed.
        let start: i64 = sqlx::query_scalar(
            "INSERT INTO work_item_counters (repo, prefix, next_number) VALUES ($1, $2, 1)
             ON CONFLICT (repo, prefix) DO UPDATE SET next_number = work_item_counters.next_number
             RETURNING next_number",
        )
        .bind(&new.repo)
        .bind(&new.prefix)
        .fetch_one(&mut *tx)
        .await?;
        let mut number = start.max(1) as u32;
        let mut walked = 0;
        let work_item = loop {
            let candidate = WorkItemId::new(&new.prefix, number);
            let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM tasks WHERE repo = $1 AND work_item_id = $2")
                .bind(&new.repo)
                .bind(candidate.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_none() {
                break candidate;
            }
            walked += 1;
            if walked > WORK_ITEM_WALK_MAX {
                return Err(Attempt::Store(StoreError::Conflict(format!(
                    "no free work-item id for {} after {walked}",
                    new.prefix
                ))));
            }
            number += 1;
        };
        sqlx::query("UPDATE work_item_counters SET next_number = $3 WHERE repo = $1 AND prefix = $2")
            .bind(&new.repo)
            .bind(&new.prefix)
            .bind(i64::from(number) + 1)
            .execute(&mut *tx)
            .await?;
        let branch = branch_name(&work_item, &new.title);
        let columns = state_columns(&new.state)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tasks (repo, work_item_id, title, body, branch, external_ref, stage, hold, state, version, created_at, updated_at, due_at_ms, current_job)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10, $11, $12) RETURNING id",
        )
        .bind(&new.repo)
        .bind(work_item.as_str())
        .bind(&new.title)
        .bind(&new.body)
        .bind(&branch)
        .bind(&new.external_ref)
        .bind(&new.state.stage)
        .bind(columns.hold)
        .bind(columns.json)
        .bind(now_ms)
        .bind(columns.due_at_ms)
        .bind(new.state.job.map(|j| j.0))
        .fetch_one(&mut *tx)
        .await?;
        let id = TaskId(id);
        apply_transition(&mut tx, id, &new.repo, &new.state, first, now_ms, false).await?;
        for on in &new.depends_on {
            let added = sqlx::query(
                "INSERT INTO task_dependencies (task_id, depends_on, created_at, created_by)
                 SELECT $1, id, $3, $4 FROM tasks WHERE id = $2 ON CONFLICT (task_id, depends_on) DO NOTHING",
            )
            .bind(id.0)
            .bind(on.0)
            .bind(now_ms)
            .bind(DEPENDS_AT_CREATE)
            .execute(&mut *tx)
            .await?;
            if added.rows_affected() == 0 {
                let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM tasks WHERE id = $1")
                    .bind(on.0)
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    return Err(Attempt::Store(StoreError::NotFound(format!("task {on}"))));
                }
            }
        }
        if let Some(key) = &new.idempotency_key {
            // A key names one task: a second creation under it (two tries of one effect at once)
            // rolls back and answers with the task the first one made. At READ COMMITTED the
            // second UPDATE waits for the first's row lock and re-reads `task_id` after it commits.
            let named = sqlx::query("UPDATE idempotency SET task_id = $1 WHERE key = $2 AND task_id IS NULL")
                .bind(id.0)
                .bind(key)
                .execute(&mut *tx)
                .await?;
            if named.rows_affected() == 0 {
                let first: Option<Option<i64>> = sqlx::query_scalar("SELECT task_id FROM idempotency WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(Some(first)) = first {
                    let row = sqlx::query("SELECT * FROM tasks WHERE id = $1").bind(first).fetch_one(&mut *tx).await?;
                    return Err(Attempt::Store(StoreError::Exists(Box::new(task_from_row(&row)?))));
                }
            }
        }
        insert_event(
            &mut tx,
            &NewEvent {
                task: id,
                at_ms: now_ms,
                kind: "created".into(),
                stage: new.state.stage.clone(),
                message: format!("{work_item} created: {}", new.title),
                detail: serde_json::json!({ "branch": branch }),
            },
        )
        .await?;
        let row = sqlx::query("SELECT * FROM tasks WHERE id = $1").bind(id.0).fetch_one(&mut *tx).await?;
        let record = task_from_row(&row)?;
        tx.commit().await?;
        Ok(record)
    }
}

/// The task row locked `FOR SHARE` (first, as every lease operation fenced on a task takes it:
/// an advance of the task waits, or has committed and is read here) and its active job: `None`
/// for no such task, `Some(None)` for a task running no job.
async fn active_job_for_share(tx: &mut sqlx::PgConnection, task: TaskId) -> StoreResult<Option<Option<i64>>> {
    Ok(sqlx::query_scalar("SELECT current_job FROM tasks WHERE id = $1 FOR SHARE")
        .bind(task.0)
        .fetch_optional(&mut *tx)
        .await?)
}

/// The merge queue entry's compare-and-set (`Store::queue_update`) on the caller's connection:
/// `change` applied only while the entry is in `expect`'s state on `expect`'s base.
async fn update_queue_entry_in(
    conn: &mut sqlx::PgConnection,
    task: TaskId,
    expect: &QueueExpect,
    change: &QueueChange,
    now_ms: i64,
) -> StoreResult<bool> {
    let result = update_queue_entry(task, expect, change, now_ms).execute(&mut *conn).await?;
    Ok(result.rows_affected() == 1)
}

/// Takes or renews `name` for `holder` inside the caller's transaction, under the lease name's
/// advisory lock: one acquirer of a lease at a time, across instances.
async fn acquire_lease_in(
    tx: &mut sqlx::PgConnection,
    name: &str,
    holder: &str,
    ttl_ms: i64,
    now_ms: i64,
) -> StoreResult<LeaseOutcome> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('baton-lease:' || $1, 0))")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let current = sqlx::query(LEASE_BY_NAME).bind(name).fetch_optional(&mut *tx).await?;
    if let Some(row) = current.as_ref() {
        let lease = lease_from_row(row)?;
        if lease.holder == holder {
            sqlx::query(EXTEND_LEASE).bind(name).bind(now_ms + ttl_ms).execute(&mut *tx).await?;
            return Ok(LeaseOutcome::Acquired { token: lease.token });
        }
        if lease.expires_at_ms > now_ms {
            return Ok(LeaseOutcome::Busy { holder: lease.holder });
        }
    }
    let token: i64 = sqlx::query_scalar(NEXT_LEASE_TOKEN).bind(name).fetch_one(&mut *tx).await?;
    sqlx::query(GRANT_LEASE)
        .bind(name)
        .bind(holder)
        .bind(token)
        .bind(now_ms)
        .bind(now_ms + ttl_ms)
        .execute(&mut *tx)
        .await?;
    Ok(LeaseOutcome::Acquired { token })
}
