//! Baton's SQLite store (the embedded default): WAL, one writer, every write transaction
//! `BEGIN IMMEDIATE`, so a transaction runs alone and the store's guards are plain reads. What a
//! ticket runs goes through the `inline` module's connections on the calling thread; the rest
//! through sqlx connections, each on a thread of its own. Every connection is held for the
//! store's life.

use async_trait::async_trait;
use baton_domain::ids::branch_name;
use baton_domain::{JobId, TaskId, TaskState, WorkItemId};
use baton_store::metrics::{Histogram, HistogramBounds, MERGE_GATE, MetricCounts, OpenJob, TokenTotals};
use baton_store::rows::{
    EXTEND_LEASE, GRANT_LEASE, HOLD_OF_TASK, LEASE_BY_NAME, NEXT_LEASE_TOKEN, UPDATE_QUEUE_ENTRY, WORK_ITEM_WALK_MAX,
    parked_hold, state_columns,
};
use baton_store::*;
use rusqlite::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection as _, Row};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod inline;
use inline::Finish;
mod queries;
mod seed;

#[doc(hidden)]
pub use queries::hot_queries;
use queries::*;

/// Versioned migrations, applied in order at open; never edit an applied one.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_budgets.sql")),
    (3, include_str!("../migrations/0003_adoption.sql")),
    (4, include_str!("../migrations/0004_outbox.sql")),
    (5, include_str!("../migrations/0005_principals.sql")),
    (6, include_str!("../migrations/0006_webhooks.sql")),
    (7, include_str!("../migrations/0007_merge_queue.sql")),
    (8, include_str!("../migrations/0008_idle.sql")),
    (9, include_str!("../migrations/0009_queue_batch.sql")),
    (10, include_str!("../migrations/0010_job_rank.sql")),
    (11, include_str!("../migrations/0011_instances.sql")),
    (12, include_str!("../migrations/0012_retention.sql")),
    (13, include_str!("../migrations/0013_usage_ingest.sql")),
    (14, include_str!("../migrations/0014_coverage.sql")),
    (15, include_str!("../migrations/0015_lessons.sql")),
    (16, include_str!("../migrations/0016_dependencies.sql")),
    (17, include_str!("../migrations/0017_freeze.sql")),
    (18, include_str!("../migrations/0018_retro.sql")),
    (19, include_str!("../migrations/0019_claim_order.sql")),
    (20, include_str!("../migrations/0020_queue_head.sql")),
];

/// The newest schema version this Baton knows (versions may be merged out of order, so not the
/// number of migrations).
fn newest_known() -> i64 {
    MIGRATIONS.iter().map(|(version, _)| *version).max().unwrap_or(0)
}

/// How many sqlx reader connections a store holds (the inline side has its own).
const READERS: usize = 4;

/// The reader connections of a [`SqliteStore`].
struct Readers {
    connections: Vec<tokio::sync::Mutex<SqliteConnection>>,
    /// One permit per connection not in use: a read waits for whichever connection frees first.
    free: tokio::sync::Semaphore,
}

/// A reader connection in use, and the permit that says so (the connection is let go first).
struct Reader<'a> {
    connection: tokio::sync::MutexGuard<'a, SqliteConnection>,
    _permit: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl std::ops::Deref for Reader<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.connection
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.connection
    }
}

/// Moves the write-ahead log into the database file off the writer's path. SQLite's own
/// automatic checkpoint runs inside the commit that crosses its threshold, on the one writer
/// connection: that commit then waits while the log is copied back and both files are flushed to
/// disk (`fsync` twice), and every job waiting for the writer waits with it. Here commits never
/// checkpoint (`wal_autocheckpoint = 0`); every [`CHECKPOINT_EVERY`] writes a passive checkpoint
/// runs as a task of its own on a connection of its own, copying what no reader still needs while
/// writers go on appending. A log only starts over when a write finds it completely copied, which
/// steady writes never let a concurrent checkpoint reach: once the log passes
/// [`LOG_RESTART_BYTES`], the checkpoint finishes holding the writer (only the frames appended
/// since it began are left to copy), and the next write starts the log over.
struct Checkpointer {
    connection: tokio::sync::Mutex<SqliteConnection>,
    writes: AtomicU64,
    writer: Arc<tokio::sync::Mutex<SqliteConnection>>,
    log: PathBuf,
}

/// Writes between two checkpoints: about what SQLite's default threshold of 1,000 log pages holds
/// at Baton's few pages a write.
const CHECKPOINT_EVERY: u64 = 300;

/// The log's size past which a checkpoint finishes holding the writer, so that the log starts over.
const LOG_RESTART_BYTES: u64 = 4 << 20;

impl Checkpointer {
    /// Counts a write; every [`CHECKPOINT_EVERY`]th starts a checkpoint unless one still runs.
    fn wrote(self: &Arc<Self>) {
        if !(self.writes.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(CHECKPOINT_EVERY) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            let Ok(mut connection) = this.connection.try_lock() else { return };
            // A checkpoint that fails (the file busy, say) is the next one's work.
            let _ = sqlx::query(CHECKPOINT).execute(&mut *connection).await;
            if std::fs::metadata(&this.log).is_ok_and(|log| log.len() > LOG_RESTART_BYTES) {
                let _writes_wait = this.writer.lock().await;
                let _ = sqlx::query(CHECKPOINT).execute(&mut *connection).await;
            }
        });
    }
}

const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    /// The one writer connection, held for the store's life rather than checked out of a pool:
    /// a checkout costs a round trip to the connection's thread (a ping) and its return a spawned
    /// task and another, all while the only writer is held.
    writer: Arc<tokio::sync::Mutex<SqliteConnection>>,
    /// Reader connections, held like the writer (a pool's checkout and return cost a round trip
    /// each); a read takes whichever is free first.
    readers: Arc<Readers>,
    checkpointer: Arc<Checkpointer>,
    file: Arc<FileWatch>,
    /// The hot paths' own connections, used on the calling thread (see [`inline`]).
    inline: Arc<inline::Inline>,
}

/// The database file as opened: its path and identity (device, inode). Once the path is found
/// gone or naming another file, `lost` keeps why, and every write fails with [`StoreError::Lost`]:
/// SQLite would otherwise keep writing into an unlinked inode that no restart ever sees.
#[derive(Debug)]
struct FileWatch {
    path: PathBuf,
    identity: Option<(u64, u64)>,
    lost: Mutex<Option<String>>,
}

impl FileWatch {
    fn open(path: &Path) -> Self {
        FileWatch { path: path.to_path_buf(), identity: file_identity(path).ok(), lost: Mutex::new(None) }
    }

    fn lost(&self) -> Option<String> {
        self.lost.lock().map(|l| l.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Compares the path's identity with the one at open; remembers a loss for good.
    fn check(&self) -> HealthCheck {
        if let Some(why) = self.lost() {
            return HealthCheck::failed("database_file", why, true);
        }
        let Some(opened) = self.identity else {
            return HealthCheck::ok("database_file", "no file identity recorded at open; not checked");
        };
        let path = self.path.display();
        let why = match file_identity(&self.path) {
            Ok(now) if now == opened => return HealthCheck::ok("database_file", format!("{path} is the file opened")),
            Ok(_) => format!(
                "the database file {path} was replaced by a different file while Baton ran; \
                 writes since then went to the old file; restart Baton to use the new one"
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => format!(
                "the database file {path} was deleted while Baton ran; \
                 Baton stopped writing to it; restore it from a backup or restart on a fresh database"
            ),
            Err(error) => return HealthCheck::failed("database_file", format!("cannot stat {path}: {error}"), false),
        };
        if let Ok(mut lost) = self.lost.lock() {
            lost.get_or_insert(why.clone());
        }
        HealthCheck::failed("database_file", why, true)
    }
}

fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Commits never checkpoint: the checkpointer does, on its own connection.
            .pragma("wal_autocheckpoint", "0");
        // One writer: SQLite has one write lock, and IMMEDIATE transactions on one connection never hit SQLITE_BUSY upgrades.
        let writer = connect(SqlitePoolOptions::new().max_connections(1), &options).await?;
        migrate(&writer).await?;
        let writer = Arc::new(tokio::sync::Mutex::new(writer.acquire().await?.detach()));
        let pool =
            connect(SqlitePoolOptions::new().max_connections(READERS as u32), &options.clone().read_only(true)).await?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(tokio::sync::Mutex::new(pool.acquire().await?.detach()));
        }
        let readers = Arc::new(Readers { connections: readers, free: tokio::sync::Semaphore::new(READERS) });
        let checkpointer = connect(SqlitePoolOptions::new().max_connections(1), &options).await?;
        let mut log = path.as_os_str().to_owned();
        log.push("-wal");
        let checkpointer = Arc::new(Checkpointer {
            connection: tokio::sync::Mutex::new(checkpointer.acquire().await?.detach()),
            writes: AtomicU64::new(0),
            writer: Arc::clone(&writer),
            log: PathBuf::from(log),
        });
        let inline = Arc::new(inline::Inline::open(path)?);
        Ok(SqliteStore { writer, readers, checkpointer, file: Arc::new(FileWatch::open(path)), inline })
    }

    /// A free reader connection, once one is (whichever frees first).
    async fn reader(&self) -> Reader<'_> {
        let readers = &*self.readers;
        // A permit means a connection is free: each reader lets its connection go before its
        // permit. (The semaphore is never closed; were it, reads would still take turns.)
        let permit = readers.free.acquire().await.ok();
        let free = readers.connections.iter().find_map(|c| c.try_lock().ok());
        let connection = match free {
            Some(connection) => connection,
            None => readers.connections[0].lock().await,
        };
        Reader { connection, _permit: permit }
    }

    /// The writer connection, once the transactions ahead are done: a write of one statement runs
    /// on it as its own transaction (one round trip to the connection's thread where
    /// `BEGIN IMMEDIATE … COMMIT` takes three, a busy write lock waited for the same way); more
    /// statements go in [`Connection::begin_with`]`("BEGIN IMMEDIATE")` on it.
    async fn writer(&self) -> StoreResult<tokio::sync::MutexGuard<'_, SqliteConnection>> {
        if let Some(why) = self.file.lost() {
            return Err(StoreError::Lost(why));
        }
        self.checkpointer.wrote();
        Ok(self.writer.lock().await)
    }

    /// The schema version and a one-row read of the tasks table, on a reader connection.
    async fn query_checks(&self) -> Vec<HealthCheck> {
        let mut checks = Vec::new();
        let newest: Result<Option<i64>, StoreError> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut *self.reader().await)
            .await
            .map_err(Into::into);
        let known = newest_known();
        checks.push(match newest {
            Ok(Some(version)) if version == known => HealthCheck::ok("schema", format!("schema version {version}")),
            Ok(version) => {
                HealthCheck::failed("schema", format!("schema version {version:?}, this Baton expects {known}"), false)
            }
            Err(error) => HealthCheck::failed("schema", format!("reading the schema version failed: {error}"), false),
        });
        let newest_task: Result<Option<i64>, StoreError> =
            sqlx::query_scalar(NEWEST_TASK).fetch_one(&mut *self.reader().await).await.map_err(Into::into);
        checks.push(match newest_task {
            Ok(_) => HealthCheck::ok("tasks", "the tasks table answers"),
            Err(error) => HealthCheck::failed("tasks", format!("reading the tasks table failed: {error}"), false),
        });
        checks
    }
}

/// Tries to connect for this long while another process holds the file's lock.
const OPEN_BUSY_MS: u64 = 10_000;
const OPEN_RETRY_MS: u64 = 50;

/// Connects a pool. SQLite's busy timeout does not cover a connection's first statements while
/// another process creates the same file and switches it to WAL (two Batons started at once on a
/// fresh data directory): that answers "database is locked" at once, so connecting is retried
/// for as long as the busy timeout would wait.
async fn connect(pool: SqlitePoolOptions, options: &SqliteConnectOptions) -> StoreResult<SqlitePool> {
    let mut waited_ms = 0;
    loop {
        match pool.clone().connect_with(options.clone()).await {
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("5") && waited_ms < OPEN_BUSY_MS => {
                // Before any clock exists (the store is opened first); never in a simulation.
                #[allow(clippy::disallowed_methods)]
                tokio::time::sleep(Duration::from_millis(OPEN_RETRY_MS)).await;
                waited_ms += OPEN_RETRY_MS;
            }
            result => return Ok(result?),
        }
    }
}

async fn migrate(pool: &SqlitePool) -> StoreResult<()> {
    // Up to date already (the common case): a read, so opening the store never waits for the write
    // lock of another Baton (a frozen `baton serve` must not hang `baton status`).
    let applied: Option<Vec<i64>> =
        sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(pool).await.ok();
    if let Some(applied) = applied
        && MIGRATIONS.iter().all(|(version, _)| applied.contains(version))
    {
        return match applied.iter().max() {
            Some(newest) if *newest > newest_known() => Err(StoreError::Database(format!(
                "the database has schema version {newest}, newer than this Baton knows ({}); upgrade Baton",
                newest_known()
            ))),
            _ => Ok(()),
        };
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
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
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, strftime('%s','now') * 1000)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

baton_store::row_decoders!(SqliteRow);

const QUEUE_COLUMNS: &str = "q.task_id, t.work_item_id, q.repo, q.priority, q.entered_at, q.state, q.base, q.head, \
     q.fails, q.reason, q.updated_at, q.batch, q.split FROM merge_queue q JOIN tasks t ON t.id = q.task_id";

/// The entries of a repository (`$1`) whose tested head is `$2`, down `merge_queue_head`.
pub(crate) fn queue_with_head_sql() -> String {
    format!("SELECT {QUEUE_COLUMNS} WHERE q.repo = $1 AND q.head = $2 ORDER BY q.entered_at, q.task_id")
}

fn insert_event(connection: &Connection, event: &NewEvent) -> StoreResult<i64> {
    inline::insert(
        connection,
        "INSERT INTO events (task_id, at, kind, stage, message, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&event.task.0, &event.at_ms, &event.kind, &event.stage, &event.message, &event.detail.to_string()],
    )
}

fn insert_inbox(
    connection: &Connection,
    task: TaskId,
    entry: &InboxEntry,
    outcome: &str,
    now_ms: i64,
) -> StoreResult<()> {
    let inserted = inline::execute(
        connection,
        "INSERT INTO inbox (dedup_key, task_id, kind, payload, received_at, outcome) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (dedup_key) DO NOTHING",
        &[&entry.dedup_key, &task.0, &entry.kind, &entry.payload.to_string(), &now_ms, &outcome],
    )?;
    if inserted == 0 {
        return Err(StoreError::Duplicate(entry.dedup_key.clone()));
    }
    Ok(())
}

/// Applies the store-side effects of a transition inside the caller's transaction; returns the
/// enqueued job. The caller has written the task row with `next`, its `current_job` included.
fn apply_transition(
    connection: &Connection,
    task: TaskId,
    repo: &str,
    next: &TaskState,
    transition: &Transition,
    now_ms: i64,
    parked: bool,
) -> StoreResult<Option<JobId>> {
    if transition.cancel_jobs {
        inline::execute(
            connection,
            "UPDATE jobs SET status = 'cancelled', finished_at = $2 WHERE task_id = $1 AND status IN ('queued', 'running')",
            &[&task.0, &now_ms],
        )?;
    }
    if transition.release_leases {
        inline::execute(connection, "DELETE FROM leases WHERE holder = $1", &[&task_holder(task)])?;
        // Leaving the merge queue goes with releasing the lease (done, rollback, block, cancel).
        let left = inline::query_row(
            connection,
            "DELETE FROM merge_queue WHERE task_id = $1 RETURNING state, batch",
            &[&task.0],
            |row| Ok((row.try_get::<String, _>(0)?, row.try_get::<Option<i64>, _>(1)?)),
        )?;
        if let Some((state, batch)) = left {
            refuse_leaving_landing_batch(task, &state, batch.map(TaskId), parked, next)?;
        }
    }
    if next.hold == baton_domain::Hold::MergeQueue {
        // Parking in the merge queue and the queue entry commit together: a merge gate whose job
        // was stopped or taken over meanwhile never leaves an entry behind.
        inline::execute(
            connection,
            "INSERT INTO merge_queue (task_id, repo, priority, entered_at, state, updated_at)
             VALUES ($1, $2, 0, $3, 'waiting', $3) ON CONFLICT (task_id) DO NOTHING",
            &[&task.0, &repo, &now_ms],
        )?;
    }
    let mut enqueued = None;
    if let Some((stage, delay_ms)) = &transition.enqueue {
        let job = inline::insert(
            connection,
            "INSERT INTO jobs (task_id, repo, stage, attempt, status, available_at, created_at, rank)
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7)",
            &[&task.0, &repo, stage, &i64::from(next.attempt), &(now_ms + delay_ms), &now_ms, &transition.rank],
        )?;
        enqueued = Some(JobId(job));
    }
    // The active job is the one just enqueued, else the one the decision kept (a deferred STOP
    // keeps the running job), else none: the caller's write of the task row set the latter.
    if let Some(job) = enqueued {
        inline::execute(connection, "UPDATE tasks SET current_job = $2 WHERE id = $1", &[&task.0, &job.0])?;
    }
    Ok(enqueued)
}

/// Binds a [`TaskFilter`]'s values in the order [`list_tasks_sql`] writes their terms.
fn bind_task_filter<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    filter: &TaskFilter,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for value in [&filter.repo, &filter.stage, &filter.hold].into_iter().flatten() {
        query = query.bind(value.clone());
    }
    query
}

/// Reads a histogram over the values `v` of `values` (a subquery) with one aggregate query.
async fn histogram(reader: &mut SqliteConnection, values: &str, bounds_ms: &[i64]) -> StoreResult<Histogram> {
    // The bounds are integers, written into the query text (nothing outside can reach them).
    let mut columns: Vec<String> = bounds_ms
        .iter()
        .enumerate()
        .map(|(i, b)| format!("COALESCE(SUM(CASE WHEN v <= {b} THEN 1 ELSE 0 END), 0) AS b{i}"))
        .collect();
    columns.push("COUNT(v) AS n".into());
    columns.push("COALESCE(SUM(v), 0) AS s".into());
    let sql = format!("SELECT {} FROM ({values})", columns.join(", "));
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(reader).await?;
    let mut histogram = Histogram::new(bounds_ms);
    for (i, bucket) in histogram.buckets.iter_mut().enumerate() {
        *bucket = row.try_get::<i64, _>(format!("b{i}").as_str())? as u64;
    }
    histogram.count = row.try_get::<i64, _>("n")? as u64;
    histogram.sum_ms = row.try_get("s")?;
    Ok(histogram)
}

/// Rows of (text, text, count).
async fn triples(reader: &mut SqliteConnection, sql: String) -> StoreResult<Vec<(String, String, u64)>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(reader).await?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get::<i64, _>(2)? as u64))).collect()
}

/// The stage part of a state display in SQL (`review (awaiting approval)` → `review`).
fn sql_stage(column: &str) -> String {
    format!("CASE WHEN instr({column}, ' (') > 0 THEN substr({column}, 1, instr({column}, ' (') - 1) ELSE {column} END")
}

/// A row of [`DEPENDENCIES_OF_TASK`] or [`LIVE_DEPENDENCIES`].
/// Up to `limit` claims inside the caller's transaction with one query, one update of the jobs
/// and one of their tasks (ids passed as a JSON array); best first.
fn claim_batch(connection: &Connection, claim: &Claim, limit: u32) -> StoreResult<Vec<JobRecord>> {
    let ids: Vec<i64> = inline::query_all(
        connection,
        CLAIM_BATCH,
        &[
            &claim.now_ms,
            &i64::from(claim.running_max),
            &i64::from(claim.running_per_repo_max),
            &i64::from(limit),
            &serde_json::to_string(&claim.dependency_free_repos)?,
            &serde_json::to_string(&claim.serial_repos)?,
            &claim_window(limit),
        ],
        |row| row.try_get(0),
    )?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut claimed = inline::query_all(
        connection,
        "UPDATE jobs SET status = 'running', owner = $2, started_at = $3, pid = NULL, pgid = NULL, proc_start = NULL
         WHERE id IN (SELECT value FROM json_each($1)) AND status = 'queued' RETURNING *",
        &[&serde_json::to_string(&ids)?, &claim.owner, &claim.now_ms],
        inline::decode::job,
    )?;
    let tasks = serde_json::to_string(&claimed.iter().map(|j| j.task_id.0).collect::<Vec<_>>())?;
    inline::execute(
        connection,
        "UPDATE tasks SET version = version + 1 WHERE id IN (SELECT value FROM json_each($1))",
        &[&tasks],
    )?;
    claimed.sort_by_key(|j| ids.iter().position(|id| *id == j.id.0));
    Ok(claimed)
}

/// One claim inside the caller's transaction: the next runnable job under the limits, marked
/// running, and its task's version moved (a decision read before the claim must decide again).
fn claim_one(connection: &Connection, claim: &Claim) -> StoreResult<Option<JobRecord>> {
    let candidate: Option<i64> = inline::scalar(
        connection,
        CLAIM_JOB,
        &[
            &claim.now_ms,
            &i64::from(claim.running_max),
            &i64::from(claim.running_per_repo_max),
            &serde_json::to_string(&claim.dependency_free_repos)?,
            &serde_json::to_string(&claim.serial_repos)?,
        ],
    )?;
    let Some(id) = candidate else {
        return Ok(None);
    };
    let job = inline::query_row(
        connection,
        "UPDATE jobs SET status = 'running', owner = $2, started_at = $3, pid = NULL, pgid = NULL, proc_start = NULL
         WHERE id = $1 AND status = 'queued' RETURNING *",
        &[&id, &claim.owner, &claim.now_ms],
        inline::decode::job,
    )?
    .ok_or_else(|| StoreError::Database(format!("job {id} left the queue inside its claim")))?;
    inline::execute(connection, "UPDATE tasks SET version = version + 1 WHERE id = $1", &[&job.task_id.0])?;
    Ok(Some(job))
}

/// A new task with its first transition, inside the caller's transaction (`Store::create_task`).
fn create_task_in(tx: &Connection, new: &NewTask, first: &Transition, now_ms: i64) -> StoreResult<TaskRecord> {
    let task_by_id = |id: i64| -> StoreResult<TaskRecord> {
        inline::query_row(tx, "SELECT * FROM tasks WHERE id = $1", &[&id], inline::decode::task)?
            .ok_or_else(|| StoreError::NotFound(format!("task {id}")))
    };
    if let Some(external) = &new.external_ref {
        let active: Option<i64> = inline::scalar(tx, "SELECT id FROM tasks WHERE external_ref = $1", &[external])?;
        if let Some(active) = active {
            return Err(StoreError::Exists(Box::new(task_by_id(active)?)));
        }
    }
    let start: Option<i64> = inline::scalar(
        tx,
        "SELECT next_number FROM work_item_counters WHERE repo = $1 AND prefix = $2",
        &[&new.repo, &new.prefix],
    )?;
    let mut number = start.unwrap_or(1).max(1) as u32;
    let mut walked = 0;
    let work_item = loop {
        let candidate = WorkItemId::new(&new.prefix, number);
        let taken: Option<i64> = inline::scalar(
            tx,
            "SELECT id FROM tasks WHERE repo = $1 AND work_item_id = $2",
            &[&new.repo, &candidate.as_str()],
        )?;
        if taken.is_none() {
            break candidate;
        }
        walked += 1;
        if walked > WORK_ITEM_WALK_MAX {
            return Err(StoreError::Conflict(format!("no free work-item id for {} after {walked}", new.prefix)));
        }
        number += 1;
    };
    inline::execute(
        tx,
        "INSERT INTO work_item_counters (repo, prefix, next_number) VALUES ($1, $2, $3)
         ON CONFLICT (repo, prefix) DO UPDATE SET next_number = excluded.next_number",
        &[&new.repo, &new.prefix, &(i64::from(number) + 1)],
    )?;
    let branch = branch_name(&work_item, &new.title);
    let columns = state_columns(&new.state)?;
    let id = TaskId(inline::insert(
        tx,
        "INSERT INTO tasks (repo, work_item_id, title, body, branch, external_ref, stage, hold, state, version, created_at, updated_at, due_at_ms, current_job)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10, $11, $12)",
        &[
            &new.repo,
            &work_item.as_str(),
            &new.title,
            &new.body,
            &branch,
            &new.external_ref,
            &new.state.stage,
            &columns.hold,
            &columns.json,
            &now_ms,
            &columns.due_at_ms,
            &new.state.job.map(|j| j.0),
        ],
    )?);
    insert_event(
        tx,
        &NewEvent {
            task: id,
            at_ms: now_ms,
            kind: "created".into(),
            stage: new.state.stage.clone(),
            message: format!("{work_item} created: {}", new.title),
            detail: serde_json::json!({ "branch": branch }),
        },
    )?;
    apply_transition(tx, id, &new.repo, &new.state, first, now_ms, false)?;
    for on in &new.depends_on {
        let added = inline::execute(
            tx,
            "INSERT INTO task_dependencies (task_id, depends_on, created_at, created_by)
             SELECT $1, id, $3, $4 FROM tasks WHERE id = $2 ON CONFLICT (task_id, depends_on) DO NOTHING",
            &[&id.0, &on.0, &now_ms, &DEPENDS_AT_CREATE],
        )?;
        if added == 0 && inline::scalar::<i64>(tx, "SELECT id FROM tasks WHERE id = $1", &[&on.0])?.is_none() {
            return Err(StoreError::NotFound(format!("task {on}")));
        }
    }
    if let Some(key) = &new.idempotency_key {
        // A key names one task: a second creation under it (two tries of one effect at once)
        // rolls back and answers with the task the first one made.
        let named = inline::execute(
            tx,
            "UPDATE idempotency SET task_id = $1 WHERE key = $2 AND task_id IS NULL",
            &[&id.0, key],
        )?;
        if named == 0 {
            let first: Option<Option<i64>> =
                inline::scalar(tx, "SELECT task_id FROM idempotency WHERE key = $1", &[key])?;
            if let Some(Some(first)) = first {
                return Err(StoreError::Exists(Box::new(task_by_id(first)?)));
            }
        }
    }
    task_by_id(id.0)
}

/// One transition of a task, inside the caller's transaction (`Store::advance`).
fn advance_in(tx: &Connection, advance: &Advance) -> StoreResult<Option<JobId>> {
    if let Some(entry) = &advance.inbox {
        insert_inbox(tx, advance.task, entry, "applied", advance.now_ms)?;
    }
    // Parked in the merge queue before this transition (read only for one that leaves it).
    let hold: Option<String> = match advance.transition.release_leases {
        true => inline::scalar(tx, HOLD_OF_TASK, &[&advance.task.0])?,
        false => None,
    };
    let parked = parked_hold(hold.as_deref());
    let columns = state_columns(&advance.next)?;
    // The task's repository comes back with the update: the transition's rows name it.
    let repo: Option<String> = inline::scalar(
        tx,
        "UPDATE tasks SET stage = $3, hold = $4, state = $5, version = version + 1, updated_at = $6, due_at_ms = $7,
             current_job = $8
         WHERE id = $1 AND version = $2 RETURNING repo",
        &[
            &advance.task.0,
            &advance.expected_version,
            &advance.next.stage,
            &columns.hold,
            &columns.json,
            &advance.now_ms,
            &columns.due_at_ms,
            &advance.next.job.map(|j| j.0),
        ],
    )?;
    let Some(repo) = repo else {
        return Err(StoreError::Conflict(format!(
            "task {} is no longer at version {}",
            advance.task, advance.expected_version
        )));
    };
    if let Some(finish) = &advance.finish_job {
        let flipped = inline::execute(
            tx,
            "UPDATE jobs SET status = $2, finished_at = $3, result = $4
             WHERE id = $1 AND task_id = $5 AND status = 'running'
               AND ($6 IS NULL OR owner IS NULL OR owner = $6)",
            &[
                &finish.job.0,
                &finish.status.as_str(),
                &advance.now_ms,
                &finish.result.to_string(),
                &advance.task.0,
                &finish.claimed_by.as_deref(),
            ],
        )?;
        if flipped != 1 {
            return Err(StoreError::Conflict(format!("job {} is no longer running under this claim", finish.job)));
        }
    }
    if advance.next.stage == baton_domain::pipeline::CANCELLED {
        // Tombstone the natural key: the same ticket may start again from scratch.
        inline::execute(
            tx,
            "UPDATE tasks SET tombstoned_ref = external_ref, external_ref = NULL WHERE id = $1 AND external_ref IS NOT NULL",
            &[&advance.task.0],
        )?;
    }
    insert_event(tx, &advance.event)?;
    let enqueued =
        apply_transition(tx, advance.task, &repo, &advance.next, &advance.transition, advance.now_ms, parked)?;
    for effect in &advance.effects {
        inline::execute(
            tx,
            "INSERT INTO outbox (task_id, kind, payload, created_at, available_at) VALUES ($1, $2, $3, $4, $4)",
            &[&advance.task.0, &effect.kind, &effect.payload.to_string(), &advance.now_ms],
        )?;
    }
    Ok(enqueued)
}

#[async_trait]
impl Store for SqliteStore {
    async fn open_jobs(&self) -> StoreResult<Vec<OpenJob>> {
        let rows = sqlx::query(
            "SELECT j.*, t.work_item_id AS work_item_id, t.state AS task_state FROM jobs j JOIN tasks t ON t.id = j.task_id
             WHERE j.status IN ('queued', 'running') ORDER BY j.available_at, j.id",
        )
        .fetch_all(&mut *self.reader().await)
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
        self.inline.read(|connection| {
            inline::query_all(connection, TASK_COUNTS, &[], |row| {
                Ok(TaskCount {
                    stage: row.try_get("stage")?,
                    hold: row.try_get("hold")?,
                    tasks: row.try_get::<i64, _>("n")?.max(0) as u64,
                })
            })
        })
    }

    async fn metric_counts(&self, bounds: &HistogramBounds) -> StoreResult<MetricCounts> {
        let mut reader = self.reader().await;
        let stages = sqlx::query("SELECT stage, COUNT(*) AS n FROM tasks GROUP BY stage ORDER BY stage")
            .fetch_all(&mut *reader)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("stage")?, row.try_get::<i64, _>("n")? as u64)))
            .collect::<StoreResult<Vec<(String, u64)>>>()?;
        let stage_transitions = triples(
            &mut reader,
            format!(
                "SELECT f, t, COUNT(*) FROM (SELECT {} AS f, {} AS t FROM (
                   SELECT json_extract(detail, '$.from') AS fr, json_extract(detail, '$.to') AS tt FROM events
                   WHERE json_type(detail, '$.from') = 'text' AND json_type(detail, '$.to') = 'text'))
                 WHERE f <> t GROUP BY f, t ORDER BY f, t",
                sql_stage("fr"),
                sql_stage("tt")
            ),
        )
        .await?;
        let gate_verdicts = triples(
            &mut reader,
            "SELECT json_extract(detail, '$.gate') AS g, json_extract(detail, '$.verdict') AS v, COUNT(*) FROM events
             WHERE kind = 'gate' AND json_type(detail, '$.gate') = 'text' AND json_type(detail, '$.verdict') = 'text'
             GROUP BY g, v ORDER BY g, v"
                .into(),
        )
        .await?;
        let agent_runs = triples(&mut reader,
            "SELECT adapter, COALESCE(status, 'running') AS s, COUNT(*) FROM agent_runs GROUP BY adapter, s ORDER BY adapter, s"
                .into(),
        )
        .await?;
        let totals = sqlx::query(
            "SELECT COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(output_tokens), 0) AS o,
               COALESCE(SUM(cache_read_tokens), 0) AS cr, COALESCE(SUM(cache_write_tokens), 0) AS cw,
               COALESCE(SUM(reasoning_tokens), 0) AS r, COALESCE(SUM(cost_usd), 0.0) AS c FROM agent_runs",
        )
        .fetch_one(&mut *reader)
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
            &mut reader,
            "SELECT max(finished_at - max(available_at, created_at), 0) AS v FROM jobs WHERE finished_at IS NOT NULL",
            &bounds.job_latency_ms,
        )
        .await?;
        let merge_wait = histogram(&mut reader,
            &format!(
                "SELECT pass - first AS v FROM (
                   SELECT MIN(at) AS first, MIN(CASE WHEN json_extract(detail, '$.verdict') = 'pass' THEN at END) AS pass
                   FROM events WHERE kind = 'gate' AND json_extract(detail, '$.gate') = '{MERGE_GATE}'
                     AND json_type(detail, '$.gate') = 'text' AND json_type(detail, '$.verdict') = 'text'
                   GROUP BY task_id) WHERE pass IS NOT NULL"
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
        let file = self.file.check();
        if !file.ok && file.fatal {
            // Reading a file that is not the one opened would only mislead.
            return vec![file];
        }
        let mut checks = vec![file];
        checks.extend(self.query_checks().await);
        checks
    }

    async fn create_task(&self, new: NewTask, first: Transition, now_ms: i64) -> StoreResult<TaskRecord> {
        let writer = self.writer().await?;
        self.inline.transaction(&writer, |tx| create_task_in(tx, &new, &first, now_ms))
    }

    async fn raise_work_item_counter(&self, repo: &str, prefix: &str, next: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO work_item_counters (repo, prefix, next_number) VALUES ($1, $2, $3)
             ON CONFLICT (repo, prefix) DO UPDATE SET next_number = max(next_number, excluded.next_number)",
        )
        .bind(repo)
        .bind(prefix)
        .bind(next)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    async fn task(&self, key: &TaskKey) -> StoreResult<Option<TaskRecord>> {
        self.inline.read(|connection| match key {
            TaskKey::Id(id) => {
                inline::query_row(connection, "SELECT * FROM tasks WHERE id = $1", &[&id.0], inline::decode::task)
            }
            TaskKey::WorkItem(w) => {
                inline::query_row(connection, TASK_BY_WORK_ITEM, &[&w.as_str()], inline::decode::task)
            }
        })
    }

    async fn task_by_external_ref(&self, external_ref: &str) -> StoreResult<Option<TaskRecord>> {
        let row = sqlx::query("SELECT * FROM tasks WHERE external_ref = $1")
            .bind(external_ref)
            .fetch_optional(&mut *self.reader().await)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn live_task_by_external_ref(&self, external_ref: &str) -> StoreResult<Option<TaskRecord>> {
        let row = sqlx::query("SELECT * FROM tasks WHERE external_ref = $1 AND stage NOT IN ('done', 'cancelled')")
            .bind(external_ref)
            .fetch_optional(&mut *self.reader().await)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        let sql = list_tasks_sql(filter, false);
        let rows = bind_task_filter(sqlx::query(sqlx::AssertSqlSafe(sql)), filter)
            .fetch_all(&mut *self.reader().await)
            .await?;
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
            .fetch_all(&mut *self.reader().await)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn advance(&self, advance: Advance) -> StoreResult<Option<JobId>> {
        let writer = self.writer().await?;
        self.inline.transaction(&writer, |tx| advance_in(tx, &advance))
    }

    async fn record_suppressed(&self, task: TaskId, inbox: Option<InboxEntry>, event: NewEvent) -> StoreResult<()> {
        let writer = self.writer().await?;
        self.inline.transaction(&writer, |tx| {
            if let Some(entry) = &inbox {
                insert_inbox(tx, task, entry, "suppressed", event.at_ms)?;
            }
            insert_event(tx, &event)?;
            Ok(())
        })
    }

    async fn claim_job(&self, claim: &Claim) -> StoreResult<Option<JobRecord>> {
        Ok(self.claim_jobs(claim, 1).await?.pop())
    }

    async fn claim_jobs(&self, claim: &Claim, limit: u32) -> StoreResult<Vec<JobRecord>> {
        let writer = self.writer().await?;
        self.inline.transaction(&writer, |tx| match limit {
            0 => Ok(Vec::new()),
            1 => Ok(claim_one(tx, claim)?.into_iter().collect()),
            _ => claim_batch(tx, claim, limit),
        })
    }

    async fn job(&self, id: JobId) -> StoreResult<Option<JobRecord>> {
        self.inline.read(|connection| {
            inline::query_row(connection, "SELECT * FROM jobs WHERE id = $1", &[&id.0], inline::decode::job)
        })
    }

    async fn jobs_with_status(&self, status: JobStatus) -> StoreResult<Vec<JobRecord>> {
        self.inline.read(|connection| {
            inline::query_all(connection, JOBS_WITH_STATUS, &[&status.as_str()], inline::decode::job)
        })
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
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
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
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn dependencies(&self, task: TaskId) -> StoreResult<Vec<DependencyRecord>> {
        self.inline.read(|connection| {
            inline::query_all(connection, DEPENDENCIES_OF_TASK, &[&task.0], inline::decode::dependency)
        })
    }

    async fn live_dependencies(&self) -> StoreResult<Vec<DependencyRecord>> {
        self.inline.read(|connection| inline::query_all(connection, LIVE_DEPENDENCIES, &[], inline::decode::dependency))
    }

    async fn jobs_for_task(&self, task: TaskId) -> StoreResult<Vec<JobRecord>> {
        self.inline.read(|connection| inline::query_all(connection, JOBS_OF_TASK, &[&task.0], inline::decode::job))
    }

    async fn set_job_process(&self, job: JobId, pid: Option<u32>, pgid: Option<u32>) -> StoreResult<()> {
        let writer = self.writer().await?;
        self.inline.write(&writer, |connection| {
            inline::execute(
                connection,
                "UPDATE jobs SET pid = $2, pgid = $3 WHERE id = $1",
                &[&job.0, &pid.map(i64::from), &pgid.map(i64::from)],
            )
        })?;
        Ok(())
    }

    async fn set_job_proc_start(&self, job: JobId, start_ticks: u64) -> StoreResult<()> {
        sqlx::query("UPDATE jobs SET proc_start = $2 WHERE id = $1")
            .bind(job.0)
            .bind(start_ticks as i64)
            .execute(&mut *self.writer().await?)
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
        // Two statements on the writer, taken once (each one its own transaction): the run's pid
        // whatever happened, the job's process only under the launching claim.
        let writer = self.writer().await?;
        self.inline.write(&writer, |connection| {
            inline::execute(connection, "UPDATE agent_runs SET pid = $2 WHERE id = $1", &[&run, &i64::from(pid)])?;
            let recorded = inline::execute(
                connection,
                "UPDATE jobs SET pid = $2, pgid = $3, proc_start = COALESCE($4, proc_start) \
                 WHERE id = $1 AND status = 'running' AND (owner IS NULL OR owner = $5)",
                &[&job.0, &i64::from(pid), &i64::from(pgid), &start_ticks.map(|t| t as i64), &claimed_by],
            )?;
            Ok(recorded == 1)
        })
    }

    async fn adopt_job(&self, job: JobId, claimed_by: Option<&str>, owner: &str) -> StoreResult<bool> {
        let adopted = sqlx::query("UPDATE jobs SET owner = $3 WHERE id = $1 AND status = 'running' AND owner IS $2")
            .bind(job.0)
            .bind(claimed_by)
            .bind(owner)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(adopted.rows_affected() == 1)
    }

    async fn renew_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> StoreResult<bool> {
        let writer = self.writer().await?;
        let renewed = self.inline.write(&writer, |connection| {
            inline::execute(
                connection,
                "UPDATE leases SET expires_at = $3 WHERE name = $1 AND holder = $2",
                &[&name, &holder, &(now_ms + ttl_ms)],
            )
        })?;
        Ok(renewed == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<bool> {
        let writer = self.writer().await?;
        let released = self.inline.write(&writer, |connection| {
            inline::execute(connection, "DELETE FROM leases WHERE name = $1 AND holder = $2", &[&name, &holder])
        })?;
        Ok(released == 1)
    }

    async fn release_lease_if_unmoved(&self, name: &str, task: TaskId, version: i64) -> StoreResult<bool> {
        // One statement on the one writer: no claim or advance commits between check and delete.
        let writer = self.writer().await?;
        let released = self.inline.write(&writer, |connection| {
            inline::execute(
                connection,
                "DELETE FROM leases WHERE name = $1 AND holder = $2
                 AND EXISTS (SELECT 1 FROM tasks WHERE id = $3 AND version = $4)",
                &[&name, &task_holder(task), &task.0, &version],
            )
        })?;
        Ok(released == 1)
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
        .execute(&mut *self.writer().await?)
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
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(closed.rows_affected() == 1)
    }

    async fn requeue_job(&self, job: JobId, claimed_by: Option<&str>, available_at_ms: i64) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE jobs SET status = 'queued', owner = NULL, pid = NULL, pgid = NULL, proc_start = NULL, available_at = $2
             WHERE id = $1 AND status = 'running' AND owner IS $3",
        )
        .bind(job.0)
        .bind(available_at_ms)
        .bind(claimed_by)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn take_over_job(&self, job: JobId, owner: &str, available_at_ms: i64, event: NewEvent) -> StoreResult<bool> {
        let writer = self.writer().await?;
        self.inline.transaction(&writer, |tx| {
            let requeued = inline::execute(
                tx,
                "UPDATE jobs SET status = 'queued', owner = NULL, pid = NULL, pgid = NULL, proc_start = NULL, available_at = $2
                 WHERE id = $1 AND status = 'running' AND owner = $3",
                &[&job.0, &available_at_ms, &owner],
            )?;
            if requeued != 1 {
                return Ok(false);
            }
            insert_event(tx, &event)?;
            Ok(true)
        })
    }

    async fn insert_agent_run(&self, run: NewAgentRun) -> StoreResult<i64> {
        let writer = self.writer().await?;
        self.inline.write(&writer, |connection| {
            inline::insert(
                connection,
                "INSERT INTO agent_runs (job_id, task_id, stage, adapter, model, pid, started_at, log_path)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &run.job.0,
                    &run.task.0,
                    &run.stage,
                    &run.adapter,
                    &run.model,
                    &run.pid.map(i64::from),
                    &run.started_at_ms,
                    &run.log_path,
                ],
            )
        })
    }

    async fn set_agent_run_pid(&self, id: i64, pid: u32) -> StoreResult<()> {
        let writer = self.writer().await?;
        self.inline.write(&writer, |connection| {
            inline::execute(connection, "UPDATE agent_runs SET pid = $2 WHERE id = $1", &[&id, &i64::from(pid)])
        })?;
        Ok(())
    }

    async fn finish_agent_run(&self, id: i64, finish: AgentRunFinish) -> StoreResult<()> {
        let report = &finish.report;
        let (status, error) = finish.status_and_error();
        let writer = self.writer().await?;
        self.inline.write(&writer, |connection| {
            inline::execute(
                connection,
                "UPDATE agent_runs SET ended_at = $2, exit_code = $3, status = $4, error = $5, session_id = $6, turns = $7,
                   input_tokens = $8, output_tokens = $9, cache_read_tokens = $10, cache_write_tokens = $11,
                   reasoning_tokens = $12, cost_usd = $13, model = COALESCE($14, model)
                 WHERE id = $1",
                &[
                    &id,
                    &finish.ended_at_ms,
                    &finish.exit_code.map(i64::from),
                    &status,
                    &error,
                    &report.session_id,
                    &report.turns.map(i64::from),
                    &(report.usage.input_tokens as i64),
                    &(report.usage.output_tokens as i64),
                    &(report.usage.cache_read_tokens as i64),
                    &(report.usage.cache_write_tokens as i64),
                    &(report.usage.reasoning_tokens as i64),
                    &report.cost_usd,
                    &report.model,
                ],
            )
        })?;
        Ok(())
    }

    async fn agent_runs(&self, task: TaskId) -> StoreResult<Vec<AgentRunRecord>> {
        self.inline
            .read(|connection| inline::query_all(connection, AGENT_RUNS_OF_TASK, &[&task.0], inline::decode::agent_run))
    }

    async fn count_agent_runs(&self, task: TaskId, stage: &str) -> StoreResult<u32> {
        let count: Option<i64> = self.inline.read(|connection| {
            inline::scalar(
                connection,
                "SELECT COUNT(*) FROM agent_runs WHERE task_id = $1 AND stage = $2",
                &[&task.0, &stage],
            )
        })?;
        Ok(count.unwrap_or(0) as u32)
    }

    async fn append_event(&self, event: NewEvent) -> StoreResult<i64> {
        let writer = self.writer().await?;
        self.inline.write(&writer, |connection| insert_event(connection, &event))
    }

    async fn events(&self, task: Option<TaskId>, after_id: i64, limit: u32) -> StoreResult<Vec<EventRecord>> {
        let limit = i64::from(limit);
        self.inline.read(|connection| match task {
            Some(task) => {
                inline::query_all(connection, EVENTS_OF_TASK, &[&task.0, &after_id, &limit], inline::decode::event)
            }
            None => inline::query_all(connection, EVENTS_ALL, &[&after_id, &limit], inline::decode::event),
        })
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> StoreResult<LeaseOutcome> {
        let writer = self.writer().await?;
        self.inline.transaction(&writer, |tx| acquire_lease_in(tx, name, holder, ttl_ms, now_ms))
    }

    async fn acquire_lease_for_job(
        &self,
        name: &str,
        task: TaskId,
        job: JobId,
        ttl_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Option<LeaseOutcome>> {
        let writer = self.writer().await?;
        // One transaction on the one writer: no advance of the task commits between the check
        // of its active job and the grant.
        self.inline.transaction(&writer, |tx| {
            if !runs_job_in(tx, task, job)? {
                return Ok(None);
            }
            acquire_lease_in(tx, name, &task_holder(task), ttl_ms, now_ms).map(Some)
        })
    }

    async fn lease(&self, name: &str) -> StoreResult<Option<LeaseRecord>> {
        self.inline.read(|connection| inline::query_row(connection, LEASE_BY_NAME, &[&name], inline::decode::lease))
    }

    async fn leases(&self) -> StoreResult<Vec<LeaseRecord>> {
        self.inline.read(|connection| {
            inline::query_all(connection, "SELECT * FROM leases ORDER BY name", &[], inline::decode::lease)
        })
    }

    async fn inbox_seen(&self, dedup_key: &str) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM inbox WHERE dedup_key = $1")
            .bind(dedup_key)
            .fetch_optional(&mut *self.reader().await)
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
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    async fn budget_caps(&self) -> StoreResult<Vec<(String, Option<f64>)>> {
        self.inline.read(|connection| {
            inline::query_all(connection, "SELECT scope, cap_usd FROM budget_caps ORDER BY scope", &[], |row| {
                Ok((row.try_get("scope")?, row.try_get("cap_usd")?))
            })
        })
    }

    async fn freeze_repo(&self, freeze: &NewFreeze, now_ms: i64) -> StoreResult<(RepoFreeze, bool)> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
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
        sqlx::query(
            "UPDATE repo_freezes SET incident_task_id = COALESCE(incident_task_id, $2),
               revert_task_id = COALESCE(revert_task_id, $3) WHERE id = $1",
        )
        .bind(id)
        .bind(incident.map(|t| t.0))
        .bind(revert.map(|t| t.0))
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    async fn unfreeze_repo(&self, repo: &str, by: &str, now_ms: i64) -> StoreResult<Option<RepoFreeze>> {
        let row = sqlx::query(
            "UPDATE repo_freezes SET unfrozen_by = $2, unfrozen_at = $3 WHERE repo = $1 AND unfrozen_at IS NULL
             RETURNING id, repo, task_id, incident_task_id, revert_task_id, frozen_by, reason, frozen_at, unfrozen_by, unfrozen_at",
        )
        .bind(repo)
        .bind(by)
        .bind(now_ms)
        .fetch_optional(&mut *self.writer().await?)
        .await?;
        row.map(|row| freeze_row(&row)).transpose()
    }

    async fn repo_freezes(&self) -> StoreResult<Vec<RepoFreeze>> {
        self.inline.read(|connection| {
            inline::query_all(
                connection,
                "SELECT id, repo, task_id, incident_task_id, revert_task_id, frozen_by, reason, frozen_at, unfrozen_by, unfrozen_at
                 FROM repo_freezes WHERE unfrozen_at IS NULL ORDER BY repo",
                &[],
                inline::decode::freeze,
            )
        })
    }

    async fn coverage_baseline(&self, repo: &str) -> StoreResult<Option<CoverageBaseline>> {
        let row = sqlx::query("SELECT repo, pct, updated_at, set_by, reason FROM coverage_baselines WHERE repo = $1")
            .bind(repo)
            .fetch_optional(&mut *self.reader().await)
            .await?;
        row.map(|row| coverage_row(&row)).transpose()
    }

    async fn coverage_baselines(&self) -> StoreResult<Vec<CoverageBaseline>> {
        let rows = sqlx::query("SELECT repo, pct, updated_at, set_by, reason FROM coverage_baselines ORDER BY repo")
            .fetch_all(&mut *self.reader().await)
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
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
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
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
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
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
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
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_lesson(
        &self,
        lesson: &NewLesson,
        dedup_window_ms: i64,
        now_ms: i64,
    ) -> StoreResult<(LessonRecord, LessonWrite)> {
        let tags = lesson_tags_json(&lesson.tags);
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
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
            let updated_at: i64 = sqlx::query_scalar("SELECT updated_at FROM lessons WHERE slug = $1")
                .bind(&lesson.slug)
                .fetch_one(&mut *tx)
                .await?;
            if now_ms - updated_at < dedup_window_ms {
                sqlx::query("UPDATE lessons SET updated_at = MAX(updated_at, $1) WHERE slug = $2")
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
        let row = sqlx::query("SELECT * FROM lessons WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.reader().await)
            .await?;
        row.map(|row| lesson_row(&row)).transpose()
    }

    async fn lessons(&self, filter: &LessonFilter) -> StoreResult<Vec<LessonRecord>> {
        self.inline.read(|connection| {
            inline::query_all(
                connection,
                "SELECT * FROM lessons WHERE ($1 IS NULL OR repo IS NULL OR repo = $1)
                   AND ($2 IS NULL OR stage IS NULL OR stage = $2) AND ($3 IS NULL OR status = $3)
                 ORDER BY updated_at DESC, id DESC",
                &[&filter.repo, &filter.stage, &filter.status],
                inline::decode::lesson,
            )
        })
    }

    async fn update_lesson(&self, id: i64, patch: &LessonPatch, now_ms: i64) -> StoreResult<LessonRecord> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT * FROM lessons WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
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
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
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
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
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
        let row = sqlx::query("SELECT * FROM task_proposals WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.reader().await)
            .await?;
        row.map(|row| proposal_row(&row)).transpose()
    }

    async fn task_proposals(&self, filter: &ProposalFilter) -> StoreResult<Vec<TaskProposalRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM task_proposals WHERE ($1 IS NULL OR status = $1)
               AND ($2 IS NULL OR from_task_id = $2) ORDER BY id",
        )
        .bind(&filter.status)
        .bind(filter.from_task.map(|t| t.0))
        .fetch_all(&mut *self.reader().await)
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
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT * FROM task_proposals WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
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
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
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
        let spent = query.fetch_one(&mut *self.reader().await).await?;
        let ingested_sql = baton_store::rows::ingested_spend_sql(filter, || "?".to_string());
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
        let ingested = ingested.fetch_one(&mut *self.reader().await).await?;
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
        .execute(&mut *self.writer().await?)
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
            UsageGroup::Day => "strftime('%Y-%m-%d', r.started_at / 1000, 'unixepoch')",
        };
        let sql = format!(
            "SELECT {key} AS key, COUNT(*) AS runs, COUNT(DISTINCT r.task_id) AS tasks, SUM(r.input_tokens) AS input_tokens, SUM(r.output_tokens) AS output_tokens,
               SUM(r.cache_read_tokens) AS cache_read_tokens, SUM(r.cache_write_tokens) AS cache_write_tokens,
               COALESCE(SUM(r.cost_usd), 0.0) AS cost_usd, SUM(CASE WHEN r.cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced_runs
             FROM agent_runs r JOIN tasks t ON t.id = r.task_id GROUP BY 1 ORDER BY 1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *self.reader().await).await?;
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
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
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
            .fetch_optional(&mut *tx)
            .await?;
        let insert = match (id, &record.idempotency_key) {
            (Some(id), _) => UsageInsert { record: UsageRecord { id, record }, created: true },
            (None, Some(key)) => {
                let row = sqlx::query(baton_store::rows::USAGE_RECORD_BY_KEY)
                    .bind(&record.source)
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                UsageInsert { record: usage_record_from_row(&row)?, created: false }
            }
            (None, None) => return Err(StoreError::Database("a usage record without a key was not stored".into())),
        };
        tx.commit().await?;
        Ok(insert)
    }

    async fn usage_record_totals(&self) -> StoreResult<Vec<UsageRecordTotals>> {
        let sql = baton_store::rows::usage_totals_sql("strftime('%Y-%m-%d', r.at / 1000, 'unixepoch')", "");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *self.reader().await).await?;
        let mut totals = rows.iter().map(usage_totals_from_row).collect::<StoreResult<Vec<_>>>()?;
        UsageRecordTotals::sort(&mut totals);
        Ok(totals)
    }

    async fn done_task_spend(&self) -> StoreResult<DoneTaskSpend> {
        let row = sqlx::query(baton_store::rows::DONE_TASK_SPEND).fetch_one(&mut *self.reader().await).await?;
        Ok(DoneTaskSpend {
            tasks: row.try_get::<i64, _>("tasks")?.max(0) as u64,
            agent_cost_usd: row.try_get::<Option<f64>, _>("agent")?.unwrap_or(0.0),
            ingested_cost_usd: row.try_get::<Option<f64>, _>("ingested")?.unwrap_or(0.0),
        })
    }

    async fn claim_effects(&self, claim: &EffectClaim) -> StoreResult<Vec<EffectRecord>> {
        let writer = self.writer().await?;
        let mut effects = self.inline.write(&writer, |connection| {
            inline::query_all(
                connection,
                CLAIM_EFFECTS,
                &[&claim.now_ms, &claim.claim_ms, &i64::from(claim.limit), &claim.task.map(|t| t.0)],
                inline::decode::effect,
            )
        })?;
        effects.sort_by_key(|e| e.id);
        Ok(effects)
    }

    async fn complete_effect(&self, id: i64, now_ms: i64) -> StoreResult<bool> {
        let writer = self.writer().await?;
        let done = self.inline.write(&writer, |connection| {
            inline::execute(
                connection,
                "UPDATE outbox SET done_at = $2 WHERE id = $1 AND done_at IS NULL",
                &[&id, &now_ms],
            )
        })?;
        Ok(done == 1)
    }

    async fn fail_effect(&self, id: i64, error: &str, retry_at_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox SET last_error = $2, available_at = $3, claimed_until = 0 WHERE id = $1 AND done_at IS NULL",
        )
        .bind(id)
        .bind(error)
        .bind(retry_at_ms)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    async fn effects(&self, task: Option<TaskId>, pending_only: bool) -> StoreResult<Vec<EffectRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE ($1 IS NULL OR task_id = $1) AND ($2 = 0 OR done_at IS NULL) ORDER BY id",
        )
        .bind(task.map(|t| t.0))
        .bind(i64::from(pending_only))
        .fetch_all(&mut *self.reader().await)
        .await?;
        rows.iter().map(effect_from_row).collect()
    }

    async fn open_agent_runs(&self) -> StoreResult<Vec<AgentRunRecord>> {
        let rows = sqlx::query(OPEN_AGENT_RUNS).fetch_all(&mut *self.reader().await).await?;
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
        .execute(&mut *self.writer().await?)
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
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let result = sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, scope, created_by, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(token_hash)
        .bind(scope)
        .bind(created_by)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("a token named `{name}` exists already")));
        }
        Ok(())
    }

    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(token_hash)
            .fetch_optional(&mut *self.reader().await)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn api_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY name").fetch_all(&mut *self.reader().await).await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_api_token(&self, name: &str, now_ms: i64) -> StoreResult<bool> {
        let result = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
            .bind(now_ms)
            .bind(name)
            .execute(&mut *self.writer().await?)
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
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn pending_deliveries(&self, limit: u32) -> StoreResult<Vec<DeliveryRecord>> {
        let rows = sqlx::query(PENDING_DELIVERIES).bind(i64::from(limit)).fetch_all(&mut *self.reader().await).await?;
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
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn deliveries(&self, source: Option<&str>) -> StoreResult<Vec<DeliveryRecord>> {
        let rows = sqlx::query("SELECT * FROM webhook_deliveries WHERE $1 IS NULL OR source = $1 ORDER BY id")
            .bind(source)
            .fetch_all(&mut *self.reader().await)
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
        let mut writer = self.writer().await?;
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT * FROM idempotency WHERE key = $1").bind(key).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            sqlx::query("INSERT INTO idempotency (key, request_hash, started_at) VALUES ($1, $2, $3)")
                .bind(key)
                .bind(request_hash)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(IdempotencyBegin::Started);
        };
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
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(())
    }

    async fn abandon_idempotent(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency WHERE key = $1 AND status IS NULL AND task_id IS NULL")
            .bind(key)
            .execute(&mut *self.writer().await?)
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
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn queue_entry(&self, task: TaskId) -> StoreResult<Option<QueueEntry>> {
        let sql = format!("SELECT {QUEUE_COLUMNS} WHERE q.task_id = $1");
        self.inline.read(|connection| inline::query_row(connection, &sql, &[&task.0], inline::decode::queue))
    }

    async fn queue_entries(&self, repo: Option<&str>) -> StoreResult<Vec<QueueEntry>> {
        self.inline.read(|connection| match repo {
            Some(repo) => {
                let sql = format!("SELECT {QUEUE_COLUMNS} WHERE q.repo = $1 ORDER BY q.entered_at, q.task_id");
                inline::query_all(connection, &sql, &[&repo], inline::decode::queue)
            }
            None => {
                let sql = format!("SELECT {QUEUE_COLUMNS} ORDER BY q.repo, q.entered_at, q.task_id");
                inline::query_all(connection, &sql, &[], inline::decode::queue)
            }
        })
    }

    async fn queue_entries_with_head(&self, repo: &str, head: &str) -> StoreResult<Vec<QueueEntry>> {
        self.inline.read(|connection| {
            inline::query_all(connection, &queue_with_head_sql(), &[&repo, &head], inline::decode::queue)
        })
    }

    async fn queue_update(
        &self,
        task: TaskId,
        expect: &QueueExpect,
        change: &QueueChange,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let writer = self.writer().await?;
        self.inline.write(&writer, |connection| update_queue_entry_in(connection, task, expect, change, now_ms))
    }

    async fn queue_land(&self, landing: &QueueLanding, now_ms: i64) -> StoreResult<Option<LeaseOutcome>> {
        let QueueLanding { task, job, expect, change, lease: name, ttl_ms } = landing;
        let (task, job, ttl_ms) = (*task, *job, *ttl_ms);
        let writer = self.writer().await?;
        // One transaction on the one writer: the grant and the entry's move commit together, or
        // neither does.
        self.inline.transaction_deciding(&writer, |tx| {
            if let Some(job) = job
                && !runs_job_in(tx, task, job)?
            {
                return Ok((None, Finish::RollBack));
            }
            let outcome = acquire_lease_in(tx, name, &task_holder(task), ttl_ms, now_ms)?;
            if matches!(outcome, LeaseOutcome::Busy { .. }) {
                return Ok((Some(outcome), Finish::RollBack));
            }
            if !update_queue_entry_in(tx, task, expect, change, now_ms)? {
                return Ok((None, Finish::RollBack));
            }
            Ok((Some(outcome), Finish::Commit))
        })
    }

    async fn set_queue_priority(&self, task: TaskId, priority: i64) -> StoreResult<bool> {
        let result = sqlx::query("UPDATE merge_queue SET priority = $2 WHERE task_id = $1")
            .bind(task.0)
            .bind(priority)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn due_holds(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<TaskId>> {
        let ids: Vec<i64> = sqlx::query_scalar(DUE_HOLDS)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.reader().await)
            .await?;
        Ok(ids.into_iter().map(TaskId).collect())
    }

    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(NEXT_DUE).fetch_one(&mut *self.reader().await).await?)
    }

    async fn next_job_at_ms(&self) -> StoreResult<Option<i64>> {
        Ok(self.inline.read(|connection| inline::scalar::<Option<i64>>(connection, NEXT_JOB_AT, &[]))?.flatten())
    }

    async fn unapplied_tasks(&self, since_ms: i64, before_ms: i64, limit: u32) -> StoreResult<Vec<TaskRecord>> {
        let rows = sqlx::query(UNAPPLIED_TASKS)
            .bind(since_ms)
            .bind(before_ms)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.reader().await)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn job_counts(&self) -> StoreResult<JobCounts> {
        let mut counts = JobCounts::default();
        for row in sqlx::query(JOB_COUNTS).fetch_all(&mut *self.reader().await).await? {
            let n = row.try_get::<i64, _>("n")?.max(0) as u64;
            match row.try_get::<String, _>("status")?.as_str() {
                "queued" => counts.queued = n,
                "running" => counts.running = n,
                _ => {}
            }
        }
        Ok(counts)
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
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    async fn instances(&self) -> StoreResult<Vec<InstanceRecord>> {
        let rows = sqlx::query("SELECT * FROM instances ORDER BY id").fetch_all(&mut *self.reader().await).await?;
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
        // Each kind in its own short transaction: the write lock is never held for the whole pass.
        let events = self.prune_batch(&prune_events_sql(), before_ms, limit).await?;
        Ok(PruneCounts {
            events,
            jobs: self.prune_batch(PRUNE_JOBS, before_ms, limit).await?,
            outbox: self.prune_batch(PRUNE_OUTBOX, before_ms, limit).await?,
            deliveries: self.prune_batch(PRUNE_DELIVERIES, before_ms, limit).await?,
            inbox: self.prune_batch(PRUNE_INBOX, before_ms, limit).await?,
        })
    }

    async fn change_feed(&self) -> StoreResult<Option<Box<dyn ChangeFeed>>> {
        // One server per file; a CLI command writing to the same file is heard of by the
        // server's polling.
        Ok(None)
    }
}

impl SqliteStore {
    /// Runs one prune `DELETE` (bound to the cutoff and the batch size) in its own transaction;
    /// returns the rows it deleted.
    async fn prune_batch(&self, sql: &str, before_ms: i64, limit: u32) -> StoreResult<u64> {
        let deleted = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .bind(before_ms)
            .bind(i64::from(limit))
            .execute(&mut *self.writer().await?)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}

/// Whether `job` is `task`'s active job, read in the caller's write transaction (a lease grant
/// fenced on the job).
fn runs_job_in(tx: &Connection, task: TaskId, job: JobId) -> StoreResult<bool> {
    let active: Option<i64> =
        inline::scalar(tx, "SELECT 1 FROM tasks WHERE id = $1 AND current_job = $2", &[&task.0, &job.0])?;
    Ok(active.is_some())
}

/// The merge queue entry's compare-and-set (`Store::queue_update`) on the caller's connection:
/// `change` applied only while the entry is in `expect`'s state on `expect`'s base. The values in
/// [`UPDATE_QUEUE_ENTRY`]'s order, as `baton_store::rows::update_queue_entry` binds them for sqlx.
fn update_queue_entry_in(
    connection: &Connection,
    task: TaskId,
    expect: &QueueExpect,
    change: &QueueChange,
    now_ms: i64,
) -> StoreResult<bool> {
    let updated = inline::execute(
        connection,
        UPDATE_QUEUE_ENTRY,
        &[
            &task.0,
            &expect.state.as_str(),
            &expect.base.as_deref(),
            &change.state.as_str(),
            &change.base.as_deref(),
            &change.head.as_deref(),
            &i64::from(change.fails),
            &change.reason.as_deref(),
            &now_ms,
            &change.batch.map(|b| b.0),
            &change.split.map(i64::from),
        ],
    )?;
    Ok(updated == 1)
}

/// Takes or renews `name` for `holder` inside the caller's write transaction.
fn acquire_lease_in(tx: &Connection, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> StoreResult<LeaseOutcome> {
    if let Some(lease) = inline::query_row(tx, LEASE_BY_NAME, &[&name], inline::decode::lease)? {
        if lease.holder == holder {
            inline::execute(tx, EXTEND_LEASE, &[&name, &(now_ms + ttl_ms)])?;
            return Ok(LeaseOutcome::Acquired { token: lease.token });
        }
        if lease.expires_at_ms > now_ms {
            return Ok(LeaseOutcome::Busy { holder: lease.holder });
        }
    }
    let token: i64 = inline::scalar(tx, NEXT_LEASE_TOKEN, &[&name])?
        .ok_or_else(|| StoreError::Database(format!("no fencing token for lease {name}")))?;
    inline::execute(tx, GRANT_LEASE, &[&name, &holder, &token, &now_ms, &(now_ms + ttl_ms)])?;
    Ok(LeaseOutcome::Acquired { token })
}
