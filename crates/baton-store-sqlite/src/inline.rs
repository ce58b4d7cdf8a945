//! The SQLite store's hot paths, run inline: connections of their own (rusqlite) used on the
//! calling thread, so a store method costs no hand-off at all. sqlx's SQLite driver runs every
//! connection on a thread of its own and each statement is a round trip to it, a wake-up of that
//! thread and one back: about 70 µs of processor time for a one-row read whose SQLite work is a
//! few µs, and a transaction of five statements takes seven trips while it holds the one writer.
//!
//! What a ticket runs goes here (task and job reads, the claim, the advance, events, agent runs,
//! the merge queue, leases, the outbox, …); the rest (administration, usage, migrations, pruning)
//! stays on the sqlx connections. Both write under the store's one writer lock: an inline write
//! takes the sqlx writer's guard first ([`Held`]), so writes never contend inside the process, and
//! the checkpointer and the file check see every write.
//!
//! A statement runs on the thread that calls: a read is microseconds; a write waits for SQLite's
//! lock only while another process holds it (the busy timeout, as on the sqlx connections).

use baton_store::{StoreError, StoreResult};
use rusqlite::types::FromSql;
use rusqlite::{Connection, OpenFlags, RowIndex, ToSql, TransactionBehavior};
use std::borrow::Cow;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Reader connections of the inline side: a read holds one for microseconds, on one of the
/// runtime's few threads.
const READERS: usize = 3;

/// Prepared statements kept per connection (the hot paths use a few dozen).
const STATEMENT_CACHE: usize = 64;

/// The store's writer lock, held: what every inline write is given to show no other write runs.
pub(crate) type Held<'a> = tokio::sync::MutexGuard<'a, sqlx::sqlite::SqliteConnection>;

/// How a transaction that answered ends.
pub(crate) enum Finish {
    Commit,
    RollBack,
}

/// The inline connections of a store: one writer, a few readers.
pub(crate) struct Inline {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Inline {
    /// Opens the connections on the file the sqlx side has opened and migrated (WAL already on).
    pub(crate) fn open(path: &Path) -> StoreResult<Self> {
        let writer = connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        // Commits never checkpoint (the store's checkpointer does); the setting is per connection.
        writer
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")
            .map_err(error)?;
        let readers = (0..READERS)
            .map(|_| connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map(Mutex::new))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Inline { writer: Mutex::new(writer), readers, next: AtomicUsize::new(0) })
    }

    /// Runs `read` on a free reader connection (or waits for one, a few µs at most).
    pub(crate) fn read<T>(&self, read: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let free = (0..self.readers.len()).find_map(|i| self.readers[(start + i) % self.readers.len()].try_lock().ok());
        let connection = match free {
            Some(connection) => connection,
            None => lock(&self.readers[start % self.readers.len()]),
        };
        read(&connection)
    }

    /// Runs `write` as one `BEGIN IMMEDIATE` transaction: committed when it answers `Ok`, rolled
    /// back when it answers `Err`.
    pub(crate) fn transaction<T>(
        &self,
        held: &Held<'_>,
        write: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.transaction_deciding(held, |tx| write(tx).map(|answer| (answer, Finish::Commit)))
    }

    /// [`Inline::transaction`] where `write` also says whether its changes are kept.
    pub(crate) fn transaction_deciding<T>(
        &self,
        _held: &Held<'_>,
        write: impl FnOnce(&Connection) -> StoreResult<(T, Finish)>,
    ) -> StoreResult<T> {
        let mut connection = lock(&self.writer);
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(error)?;
        let (answer, finish) = write(&tx)?;
        match finish {
            Finish::Commit => tx.commit(),
            Finish::RollBack => tx.rollback(),
        }
        .map_err(error)?;
        Ok(answer)
    }

    /// Runs `write` on the writer, each statement its own transaction.
    pub(crate) fn write<T>(
        &self,
        _held: &Held<'_>,
        write: impl FnOnce(&Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        write(&lock(&self.writer))
    }
}

fn connect(path: &Path, access: OpenFlags) -> StoreResult<Connection> {
    let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(path, flags).map_err(error)?;
    connection.busy_timeout(Duration::from_secs(10)).map_err(error)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(connection)
}

/// A connection's lock; one poisoned by a panic is still a connection (each method's statements
/// are a transaction of their own, rolled back when it was dropped unfinished).
fn lock(connection: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a rusqlite error means for the caller, as `StoreError::from(sqlx::Error)` says it for the
/// sqlx side: a lock held past the busy timeout is `Busy`, a value of the wrong type `Corrupt`.
pub(crate) fn error(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _)
            if matches!(failure.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            StoreError::Busy(error.to_string())
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(error.to_string()),
        _ => StoreError::Database(error.to_string()),
    }
}

/// The store's SQL with `$n` placeholders (sqlx's, shared with PostgreSQL) written `?n`: SQLite
/// binds `?n` to the n-th value, where `$n` is a name numbered by first appearance.
fn numbered(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    for (i, c) in sql.char_indices() {
        if c == '$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A row as the shared decoders (`baton_store::row_decoders!`) read it.
pub(crate) struct InlineRow<'a>(&'a rusqlite::Row<'a>);

impl InlineRow<'_> {
    pub(crate) fn try_get<T: FromSql, I: RowIndex>(&self, index: I) -> StoreResult<T> {
        self.0.get(index).map_err(error)
    }
}

/// When a statement to be logged started: read only while the log is on.
fn started() -> Option<Instant> {
    #[allow(clippy::disallowed_methods)] // a log line's duration; no answer of the store depends on it
    tracing::enabled!(target: LOG, tracing::Level::DEBUG).then(Instant::now)
}

/// Logs a statement run inline (`BATON_LOG=baton_store_sqlite::inline=debug`), as sqlx logs its
/// own under `sqlx::query`.
fn logged(sql: &str, started: Option<Instant>, rows: usize) {
    if let Some(started) = started {
        tracing::debug!(target: LOG, statement = sql, rows, elapsed = ?started.elapsed());
    }
}

/// The log target of the inline statements.
const LOG: &str = "baton_store_sqlite::inline";

/// The first row of `sql`, decoded.
pub(crate) fn query_row<T>(
    connection: &Connection,
    sql: &str,
    values: &[&dyn ToSql],
    decode: impl FnOnce(&InlineRow<'_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let started = started();
    let mut statement = connection.prepare_cached(&numbered(sql)).map_err(error)?;
    let mut rows = statement.query(values).map_err(error)?;
    let answer = match rows.next().map_err(error)? {
        Some(row) => decode(&InlineRow(row)).map(Some),
        None => Ok(None),
    };
    logged(sql, started, usize::from(matches!(answer, Ok(Some(_)))));
    answer
}

/// Every row of `sql`, decoded.
pub(crate) fn query_all<T>(
    connection: &Connection,
    sql: &str,
    values: &[&dyn ToSql],
    mut decode: impl FnMut(&InlineRow<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let started = started();
    let mut statement = connection.prepare_cached(&numbered(sql)).map_err(error)?;
    let mut rows = statement.query(values).map_err(error)?;
    let mut all = Vec::new();
    while let Some(row) = rows.next().map_err(error)? {
        all.push(decode(&InlineRow(row))?);
    }
    logged(sql, started, all.len());
    Ok(all)
}

/// The first column of the first row of `sql` (`None` for no row).
pub(crate) fn scalar<T: FromSql>(connection: &Connection, sql: &str, values: &[&dyn ToSql]) -> StoreResult<Option<T>> {
    query_row(connection, sql, values, |row| row.try_get(0))
}

/// Runs `sql`; the rows it changed.
pub(crate) fn execute(connection: &Connection, sql: &str, values: &[&dyn ToSql]) -> StoreResult<usize> {
    let started = started();
    let mut statement = connection.prepare_cached(&numbered(sql)).map_err(error)?;
    let changed = statement.execute(values).map_err(error)?;
    logged(sql, started, changed);
    Ok(changed)
}

/// Runs an `INSERT`; the new row's id.
pub(crate) fn insert(connection: &Connection, sql: &str, values: &[&dyn ToSql]) -> StoreResult<i64> {
    execute(connection, sql, values)?;
    Ok(connection.last_insert_rowid())
}

/// The shared row decoders over an inline row, those with an inline caller named for it.
pub(crate) mod decode {
    use super::InlineRow;
    use baton_store::*;

    mod all {
        #![allow(dead_code)]
        use super::*;
        use baton_domain::{JobId, TaskId};
        baton_store::row_decoders!(InlineRow<'_>);

        pub(crate) fn task(row: &InlineRow<'_>) -> StoreResult<TaskRecord> {
            task_from_row(row)
        }
        pub(crate) fn job(row: &InlineRow<'_>) -> StoreResult<JobRecord> {
            job_from_row(row)
        }
        pub(crate) fn event(row: &InlineRow<'_>) -> StoreResult<EventRecord> {
            event_from_row(row)
        }
        pub(crate) fn agent_run(row: &InlineRow<'_>) -> StoreResult<AgentRunRecord> {
            agent_run_from_row(row)
        }
        pub(crate) fn effect(row: &InlineRow<'_>) -> StoreResult<EffectRecord> {
            effect_from_row(row)
        }
        pub(crate) fn queue(row: &InlineRow<'_>) -> StoreResult<QueueEntry> {
            queue_from_row(row)
        }
        pub(crate) fn lease(row: &InlineRow<'_>) -> StoreResult<LeaseRecord> {
            lease_from_row(row)
        }
        pub(crate) fn dependency(row: &InlineRow<'_>) -> StoreResult<DependencyRecord> {
            dependency_from_row(row)
        }
        pub(crate) fn freeze(row: &InlineRow<'_>) -> StoreResult<RepoFreeze> {
            freeze_row(row)
        }
        pub(crate) fn lesson(row: &InlineRow<'_>) -> StoreResult<LessonRecord> {
            lesson_row(row)
        }
    }

    pub(crate) use all::{agent_run, dependency, effect, event, freeze, job, lease, lesson, queue, task};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_placeholders_leave_json_paths_and_text_alone() {
        assert_eq!(numbered("SELECT * FROM t WHERE a = $1 AND b = $12"), "SELECT * FROM t WHERE a = ?1 AND b = ?12");
        assert_eq!(numbered("json_type(detail, '$.from') = $2"), "json_type(detail, '$.from') = ?2");
        assert!(matches!(numbered("SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn values_bind_by_number_whatever_order_the_statement_names_them() {
        let connection = Connection::open_in_memory().unwrap();
        let got: Option<String> = scalar(&connection, "SELECT $2 || $1 || $2", &[&"a", &"b"]).unwrap();
        assert_eq!(got.as_deref(), Some("bab"));
    }

    #[test]
    fn a_write_lock_held_elsewhere_is_busy_and_a_wrong_type_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.db");
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("CREATE TABLE t (x INTEGER); BEGIN IMMEDIATE;").unwrap();
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        let busy = execute(&other, "INSERT INTO t (x) VALUES ($1)", &[&1]);
        assert!(matches!(busy, Err(StoreError::Busy(_))), "{busy:?}");
        holder.execute_batch("ROLLBACK").unwrap();
        assert_eq!(execute(&other, "INSERT INTO t (x) VALUES ($1)", &[&1]).unwrap(), 1);

        let wrong: StoreResult<Option<i64>> = scalar(&other, "SELECT 'text'", &[]);
        assert!(matches!(wrong, Err(StoreError::Corrupt(_))), "{wrong:?}");
        let missing = execute(&other, "SELECT * FROM no_such_table", &[]);
        assert!(matches!(missing, Err(StoreError::Database(_))), "{missing:?}");
    }
}
