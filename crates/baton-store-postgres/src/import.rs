//! Copies an SQLite store (`baton.db`) into an empty PostgreSQL database (`baton db migrate`):
//! every table, ids kept, in one PostgreSQL transaction, then each identity sequence moved past
//! the largest id, then a verification of every table read back from PostgreSQL.
//!
//! The source is opened read-only and read inside one read transaction, so the copy is one
//! consistent snapshot even if a command writes to the file meanwhile; the file is never changed.
//! The target is opened with [`PgStore::connect`] (which creates the schema), its tables are
//! locked against writers for the copy, and a target that already holds rows is refused: the copy
//! keeps the source's ids, and merging two histories would collide on them.

use crate::{PgStore, is_postgres_url, redact_url};
use baton_store::{StoreError, StoreResult};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{Connection, Postgres, QueryBuilder, Row, SqliteConnection, Transaction};
use std::path::Path;
use std::str::FromStr;

/// The SQLite schema version whose tables the PostgreSQL schema mirrors (its `0001_init.sql`;
/// version 11's `instances` — heartbeats, `0002_instances.sql` — is not copied: the instances
/// of the new deployment write their own; version 12 only adds retention's indexes, which
/// PostgreSQL's migration 3 creates itself; version 17's `repo_freezes` is PostgreSQL's migration
/// 9; version 18's `task_proposals` is PostgreSQL's migration 10; version 19 only adds the
/// claim-order index, PostgreSQL's migration 11; version 20 only adds the merge queue's index by
/// head, PostgreSQL's migration 14). A source at another version has other columns: it is refused
/// rather than half copied.
pub const SQLITE_SCHEMA_VERSION: i64 = 20;

/// Rows per `INSERT` (and per read from SQLite): few round trips, and far below PostgreSQL's
/// 65535 bind parameters for the widest table.
const BATCH_ROWS: usize = 1000;

/// PostgreSQL's limit on bind parameters in one statement.
const BIND_PARAMETERS_MAX: usize = 65_535;

/// How long the copy waits for another session's lock on a target table before giving up.
const LOCK_TIMEOUT: &str = "10s";

/// How a column's values are read from SQLite and bound for PostgreSQL.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Real,
    Text,
}

/// One table to copy: its columns (the same names and order in both schemas) and the figures the
/// verification compares besides the row count.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// Whether `id` is an identity column in PostgreSQL (its sequence is set after the copy).
    identity: bool,
    /// (label, integer SQL expression over the table's rows, valid in both dialects).
    figures: &'static [(&'static str, &'static str)],
}

use Kind::{Int, Real, Text};

const ID_FIGURES: &[(&str, &str)] = &[("max id", "MAX(id)"), ("sum id", "SUM(id)")];

/// Every table of the store, parents before children (the foreign keys of `jobs`, `agent_runs`,
/// `events`, `outbox`, `idempotency` and `merge_queue` name `tasks` or `jobs`). SQLite's
/// `task_tally`/`job_tally` have no PostgreSQL counterpart (counts are aggregates there), and
/// each side keeps its own `schema_migrations`.
const TABLES: &[Table] = &[
    Table {
        name: "tasks",
        columns: &[
            ("id", Int),
            ("repo", Text),
            ("work_item_id", Text),
            ("title", Text),
            ("body", Text),
            ("branch", Text),
            ("external_ref", Text),
            ("tombstoned_ref", Text),
            ("stage", Text),
            ("hold", Text),
            ("state", Text),
            ("current_job", Int),
            ("version", Int),
            ("created_at", Int),
            ("updated_at", Int),
            ("due_at_ms", Int),
        ],
        identity: true,
        figures: &[("max id", "MAX(id)"), ("sum id", "SUM(id)"), ("sum version", "SUM(version)")],
    },
    Table {
        name: "jobs",
        columns: &[
            ("id", Int),
            ("task_id", Int),
            ("repo", Text),
            ("stage", Text),
            ("attempt", Int),
            ("status", Text),
            ("available_at", Int),
            ("rank", Int),
            ("owner", Text),
            ("pid", Int),
            ("pgid", Int),
            ("proc_start", Int),
            ("created_at", Int),
            ("started_at", Int),
            ("finished_at", Int),
            ("result", Text),
        ],
        identity: true,
        figures: ID_FIGURES,
    },
    Table {
        name: "agent_runs",
        columns: &[
            ("id", Int),
            ("job_id", Int),
            ("task_id", Int),
            ("stage", Text),
            ("adapter", Text),
            ("model", Text),
            ("pid", Int),
            ("started_at", Int),
            ("ended_at", Int),
            ("exit_code", Int),
            ("status", Text),
            ("error", Text),
            ("session_id", Text),
            ("turns", Int),
            ("input_tokens", Int),
            ("output_tokens", Int),
            ("cache_read_tokens", Int),
            ("cache_write_tokens", Int),
            ("reasoning_tokens", Int),
            ("cost_usd", Real),
            ("log_path", Text),
        ],
        identity: true,
        figures: &[
            ("max id", "MAX(id)"),
            ("sum id", "SUM(id)"),
            ("tokens", "SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens + reasoning_tokens)"),
            ("micro-USD", "ROUND(SUM(cost_usd) * 1000000)"),
        ],
    },
    Table {
        name: "events",
        columns: &[
            ("id", Int),
            ("task_id", Int),
            ("at", Int),
            ("kind", Text),
            ("stage", Text),
            ("message", Text),
            ("detail", Text),
        ],
        identity: true,
        figures: &[("max id", "MAX(id)"), ("sum id", "SUM(id)"), ("message chars", "SUM(LENGTH(message))")],
    },
    Table {
        name: "leases",
        columns: &[("name", Text), ("holder", Text), ("token", Int), ("acquired_at", Int), ("expires_at", Int)],
        identity: false,
        figures: &[("sum token", "SUM(token)")],
    },
    Table {
        name: "lease_tokens",
        columns: &[("name", Text), ("last_token", Int)],
        identity: false,
        figures: &[("sum last_token", "SUM(last_token)")],
    },
    Table {
        name: "work_item_counters",
        columns: &[("repo", Text), ("prefix", Text), ("next_number", Int)],
        identity: false,
        figures: &[("sum next_number", "SUM(next_number)")],
    },
    Table {
        name: "inbox",
        columns: &[
            ("id", Int),
            ("dedup_key", Text),
            ("task_id", Int),
            ("kind", Text),
            ("payload", Text),
            ("received_at", Int),
            ("outcome", Text),
        ],
        identity: true,
        figures: ID_FIGURES,
    },
    Table {
        name: "usage_records",
        columns: &[
            ("id", Int),
            ("source", Text),
            ("category", Text),
            ("model", Text),
            ("input_tokens", Int),
            ("output_tokens", Int),
            ("cache_read_tokens", Int),
            ("cache_write_tokens", Int),
            ("units", Real),
            ("unit_kind", Text),
            ("cost_usd", Real),
            ("priced_by", Text),
            ("idempotency_key", Text),
            ("task_id", Int),
            ("repo", Text),
            ("at", Int),
            ("principal", Text),
        ],
        identity: true,
        figures: &[("max id", "MAX(id)"), ("sum id", "SUM(id)"), ("micro-USD", "ROUND(SUM(cost_usd) * 1000000)")],
    },
    Table {
        name: "budget_caps",
        columns: &[("scope", Text), ("cap_usd", Real), ("updated_at", Int)],
        identity: false,
        figures: &[("micro-USD", "ROUND(SUM(cap_usd) * 1000000)")],
    },
    Table {
        name: "coverage_baselines",
        columns: &[("repo", Text), ("pct", Real), ("updated_at", Int), ("set_by", Text), ("reason", Text)],
        identity: false,
        figures: &[("milli-percent", "ROUND(SUM(pct) * 1000)")],
    },
    Table {
        name: "repo_freezes",
        columns: &[
            ("id", Int),
            ("repo", Text),
            ("task_id", Int),
            ("incident_task_id", Int),
            ("revert_task_id", Int),
            ("frozen_by", Text),
            ("reason", Text),
            ("frozen_at", Int),
            ("unfrozen_by", Text),
            ("unfrozen_at", Int),
        ],
        identity: true,
        figures: ID_FIGURES,
    },
    Table {
        name: "task_dependencies",
        columns: &[("task_id", Int), ("depends_on", Int), ("created_at", Int), ("created_by", Text)],
        identity: false,
        figures: &[("sum task_id", "SUM(task_id)"), ("sum depends_on", "SUM(depends_on)")],
    },
    Table {
        name: "lessons",
        columns: &[
            ("id", Int),
            ("slug", Text),
            ("title", Text),
            ("body", Text),
            ("source", Text),
            ("repo", Text),
            ("stage", Text),
            ("tags", Text),
            ("task", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("hits", Int),
            ("last_hit_at", Int),
            ("status", Text),
        ],
        identity: true,
        figures: &[("max id", "MAX(id)"), ("sum id", "SUM(id)"), ("sum hits", "SUM(hits)")],
    },
    Table {
        name: "task_proposals",
        columns: &[
            ("id", Int),
            ("from_task_id", Int),
            ("repo", Text),
            ("title", Text),
            ("body", Text),
            ("status", Text),
            ("created_at", Int),
            ("decided_at", Int),
            ("decided_by", Text),
            ("created_task_id", Int),
        ],
        identity: true,
        figures: ID_FIGURES,
    },
    Table {
        name: "outbox",
        columns: &[
            ("id", Int),
            ("task_id", Int),
            ("kind", Text),
            ("payload", Text),
            ("created_at", Int),
            ("available_at", Int),
            ("claimed_until", Int),
            ("attempts", Int),
            ("last_error", Text),
            ("done_at", Int),
        ],
        identity: true,
        figures: ID_FIGURES,
    },
    Table {
        name: "api_tokens",
        columns: &[
            ("name", Text),
            ("token_hash", Text),
            ("scope", Text),
            ("created_by", Text),
            ("created_at", Int),
            ("revoked_at", Int),
        ],
        identity: false,
        figures: &[("name chars", "SUM(LENGTH(name))")],
    },
    Table {
        name: "idempotency",
        columns: &[
            ("key", Text),
            ("request_hash", Text),
            ("started_at", Int),
            ("task_id", Int),
            ("status", Int),
            ("response", Text),
            ("finished_at", Int),
        ],
        identity: false,
        figures: &[("key chars", "SUM(LENGTH(key))")],
    },
    Table {
        name: "webhook_deliveries",
        columns: &[
            ("id", Int),
            ("source", Text),
            ("delivery_id", Text),
            ("event", Text),
            ("received_at", Int),
            ("payload", Text),
            ("processed_at", Int),
            ("parsed", Text),
            ("error", Text),
        ],
        identity: true,
        figures: ID_FIGURES,
    },
    Table {
        name: "merge_queue",
        columns: &[
            ("task_id", Int),
            ("repo", Text),
            ("priority", Int),
            ("entered_at", Int),
            ("state", Text),
            ("base", Text),
            ("head", Text),
            ("fails", Int),
            ("reason", Text),
            ("updated_at", Int),
            ("batch", Int),
            ("split", Int),
        ],
        identity: false,
        figures: &[("sum task_id", "SUM(task_id)")],
    },
];

/// The names of the tables copied, in copy order.
pub fn table_names() -> Vec<&'static str> {
    TABLES.iter().map(|t| t.name).collect()
}

/// Where the copy stands: `copied` of `total` rows of `table` (reported at the start of each
/// table and after each batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub table: &'static str,
    pub copied: u64,
    pub total: u64,
}

/// One figure of the verification, as read from each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    pub name: &'static str,
    pub sqlite: String,
    pub postgres: String,
}

/// One table's verification: its row count on each side and its content figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    pub sqlite_rows: u64,
    pub postgres_rows: u64,
    pub figures: Vec<Figure>,
}

impl TableReport {
    /// Whether PostgreSQL holds what SQLite held: the same count and the same figures.
    pub fn matches(&self) -> bool {
        self.sqlite_rows == self.postgres_rows && self.figures.iter().all(|f| f.sqlite == f.postgres)
    }
}

/// What was copied, table by table, with the verification read back from PostgreSQL after the
/// commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub tables: Vec<TableReport>,
}

impl ImportReport {
    /// The tables whose copy does not match the source (empty when the copy is exact).
    pub fn mismatches(&self) -> Vec<&'static str> {
        self.tables.iter().filter(|t| !t.matches()).map(|t| t.table).collect()
    }

    /// Rows copied in all.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.postgres_rows).sum()
    }
}

/// Copies the SQLite store at `source` into the empty PostgreSQL database at `target_url` (see
/// the module docs), reporting each table's progress, and returns the verification. The caller
/// makes sure no `baton serve` writes to `source` meanwhile (the serve lock).
pub async fn import_sqlite(
    source: &Path,
    target_url: &str,
    progress: &mut dyn FnMut(&Progress),
) -> StoreResult<ImportReport> {
    if !is_postgres_url(target_url) {
        return Err(StoreError::Database(format!(
            "{} is not a PostgreSQL URL (postgres://USER:PASSWORD@HOST:5432/DATABASE)",
            redact_url(target_url)
        )));
    }
    if !source.is_file() {
        return Err(StoreError::NotFound(format!("no SQLite database at {}", source.display())));
    }
    reach(target_url).await?;
    let target = PgStore::connect(target_url).await?;
    let mut sqlite = open_source(source).await?;
    check_source_schema(&mut sqlite, source).await?;

    let mut tx = target.pool().begin().await?;
    lock_target(&mut tx).await?;
    refuse_non_empty(&mut tx, target_url).await?;
    // One read transaction: every table comes from the same snapshot of the file.
    let mut snapshot = sqlite.begin().await?;
    let mut expected = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        expected.push(sqlite_figures(&mut snapshot, table).await?);
    }
    for (table, (total, _)) in TABLES.iter().zip(&expected) {
        copy_table(&mut snapshot, &mut tx, table, *total, progress).await?;
    }
    // The snapshot only read: ending it changes nothing in the file.
    snapshot.rollback().await?;
    sqlite.close().await?;
    set_sequences(&mut tx).await?;
    tx.commit().await?;

    let mut tables = Vec::with_capacity(TABLES.len());
    for (table, (sqlite_rows, sqlite_figures)) in TABLES.iter().zip(expected) {
        let (postgres_rows, postgres_figures) = postgres_figures(&target, table).await?;
        let figures = sqlite_figures
            .into_iter()
            .zip(postgres_figures)
            .map(|((name, sqlite), (_, postgres))| Figure { name, sqlite, postgres })
            .collect();
        tables.push(TableReport { table: table.name, sqlite_rows, postgres_rows, figures });
    }
    target.pool().close().await;
    Ok(ImportReport { tables })
}

/// Connects once, so that a server that cannot be reached says why at once (the pool behind
/// [`PgStore::connect`] retries until its timeout and then reports only that).
async fn reach(target_url: &str) -> StoreResult<()> {
    let options = PgConnectOptions::from_str(target_url)
        .map_err(|e| StoreError::Database(format!("the database URL {} is not valid: {e}", redact_url(target_url))))?;
    let connection = sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to {}: {e}", redact_url(target_url))))?;
    connection.close().await?;
    Ok(())
}

/// Opens the source read-only: the copy never changes the file it reads.
async fn open_source(source: &Path) -> StoreResult<SqliteConnection> {
    let options =
        SqliteConnectOptions::new().filename(source).read_only(true).busy_timeout(std::time::Duration::from_secs(10));
    SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", source.display())))
}

/// Refuses a source that is not a Baton store at [`SQLITE_SCHEMA_VERSION`].
async fn check_source_schema(sqlite: &mut SqliteConnection, source: &Path) -> StoreResult<()> {
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&mut *sqlite)
        .await
        .map_err(|e| StoreError::Database(format!("{} is not a Baton database: {e}", source.display())))?;
    match version {
        Some(SQLITE_SCHEMA_VERSION) => Ok(()),
        Some(v) if v < SQLITE_SCHEMA_VERSION => Err(StoreError::Database(format!(
            "{} has schema version {v}; run any command of this Baton on it once (e.g. `baton status`) to bring \
             it to version {SQLITE_SCHEMA_VERSION}, then migrate",
            source.display()
        ))),
        Some(v) => Err(StoreError::Database(format!(
            "{} has schema version {v}, newer than this Baton copies ({SQLITE_SCHEMA_VERSION}); upgrade Baton",
            source.display()
        ))),
        None => Err(StoreError::Database(format!("{} has no schema version: not a Baton database", source.display()))),
    }
}

/// Locks every target table against writers until the copy commits: a `baton serve` started on
/// the target meanwhile waits instead of writing rows whose ids the copy is about to take.
async fn lock_target(tx: &mut Transaction<'static, Postgres>) -> StoreResult<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))).execute(&mut **tx).await?;
    let names = table_names().join(", ");
    sqlx::query(sqlx::AssertSqlSafe(format!("LOCK TABLE {names} IN EXCLUSIVE MODE"))).execute(&mut **tx).await?;
    Ok(())
}

/// Refuses a target that already holds rows (read under the locks, so it stays empty).
async fn refuse_non_empty(tx: &mut Transaction<'static, Postgres>, target_url: &str) -> StoreResult<()> {
    let tasks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks").fetch_one(&mut **tx).await?;
    if tasks > 0 {
        return Err(StoreError::Database(format!(
            "the database {} already holds {tasks} tasks; migrate into an empty database",
            redact_url(target_url)
        )));
    }
    for table in TABLES {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", table.name);
        let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut **tx).await?;
        if any {
            return Err(StoreError::Database(format!(
                "the database {} already holds rows in {}; migrate into an empty database",
                redact_url(target_url),
                table.name
            )));
        }
    }
    Ok(())
}

/// The row count and the figures of `table`: one query, the same SQL on either side.
fn figures_sql(table: &Table) -> String {
    let aggregates: Vec<String> = std::iter::once("COUNT(*)")
        .chain(table.figures.iter().map(|(_, sql)| *sql))
        .map(|sql| format!("CAST(COALESCE({sql}, 0) AS BIGINT)"))
        .collect();
    format!("SELECT {} FROM {}", aggregates.join(", "), table.name)
}

/// Reads the answer of [`figures_sql`]: the row count, then each figure by name.
fn read_figures<R: Row>(table: &Table, row: &R) -> Result<Counted, sqlx::Error>
where
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let count: i64 = row.try_get(0)?;
    let mut figures = Vec::with_capacity(table.figures.len());
    for (i, (name, _)) in table.figures.iter().enumerate() {
        let value: i64 = row.try_get(i + 1)?;
        figures.push((*name, value.to_string()));
    }
    Ok((u64::try_from(count).unwrap_or(0), figures))
}

/// A table's row count and its named figures.
type Counted = (u64, Vec<(&'static str, String)>);

async fn sqlite_figures(sqlite: &mut SqliteConnection, table: &Table) -> StoreResult<Counted> {
    let row = sqlx::query(sqlx::AssertSqlSafe(figures_sql(table)))
        .fetch_one(&mut *sqlite)
        .await
        .map_err(|e| source_error(table, e))?;
    read_figures(table, &row).map_err(|e| source_error(table, e))
}

async fn postgres_figures(target: &PgStore, table: &Table) -> StoreResult<Counted> {
    let row = sqlx::query(sqlx::AssertSqlSafe(figures_sql(table))).fetch_one(target.pool()).await?;
    Ok(read_figures(table, &row)?)
}

/// A failure reading `table` from the source, named.
fn source_error(table: &Table, error: sqlx::Error) -> StoreError {
    StoreError::Database(format!("reading {} from SQLite: {error}", table.name))
}

/// A column value on its way from SQLite to PostgreSQL.
enum Value {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

/// Copies `table` in batches of [`BATCH_ROWS`], paging the source by rowid (every table is a
/// rowid table; `INTEGER PRIMARY KEY` ids are the rowid itself, so they come in id order).
async fn copy_table(
    sqlite: &mut SqliteConnection,
    tx: &mut Transaction<'static, Postgres>,
    table: &Table,
    total: u64,
    progress: &mut dyn FnMut(&Progress),
) -> StoreResult<()> {
    debug_assert!(table.columns.len() * BATCH_ROWS < BIND_PARAMETERS_MAX, "a batch of {} fits", table.name);
    let columns: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let select = format!(
        "SELECT rowid, {} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT {BATCH_ROWS}",
        columns.join(", "),
        table.name
    );
    let insert = format!("INSERT INTO {} ({}) ", table.name, columns.join(", "));
    let mut copied = 0u64;
    let mut after = i64::MIN;
    progress(&Progress { table: table.name, copied, total });
    // Bounded by the source's rows: each pass moves `after` past at least one row or ends.
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
            .bind(after)
            .fetch_all(&mut *sqlite)
            .await
            .map_err(|e| source_error(table, e))?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0).map_err(|e| source_error(table, e))?;
        let batch = rows.iter().map(|row| decode_row(table, row)).collect::<StoreResult<Vec<_>>>()?;
        let mut builder = QueryBuilder::<Postgres>::new(insert.as_str());
        builder.push_values(batch, |mut tuple, values| {
            for value in values {
                match value {
                    Value::Int(v) => tuple.push_bind(v),
                    Value::Real(v) => tuple.push_bind(v),
                    Value::Text(v) => tuple.push_bind(v),
                };
            }
        });
        builder
            .build()
            .execute(&mut **tx)
            .await
            .map_err(|e| StoreError::Database(format!("writing {} into PostgreSQL: {e}", table.name)))?;
        copied += rows.len() as u64;
        progress(&Progress { table: table.name, copied, total });
        if rows.len() < BATCH_ROWS {
            break;
        }
    }
    Ok(())
}

/// One source row's values, column by column (column 0 is the rowid).
fn decode_row(table: &Table, row: &SqliteRow) -> StoreResult<Vec<Value>> {
    let corrupt = |column: &str, e: sqlx::Error| StoreError::Corrupt(format!("{}.{column} in SQLite: {e}", table.name));
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (column, kind))| match kind {
            Int => row.try_get(i + 1).map(Value::Int).map_err(|e| corrupt(column, e)),
            Real => row.try_get(i + 1).map(Value::Real).map_err(|e| corrupt(column, e)),
            Text => row.try_get(i + 1).map(Value::Text).map_err(|e| corrupt(column, e)),
        })
        .collect()
}

/// Moves each identity sequence past its table's largest id, so the next row PostgreSQL numbers
/// never collides with a copied one (an empty table keeps its sequence at the start).
async fn set_sequences(tx: &mut Transaction<'static, Postgres>) -> StoreResult<()> {
    for table in TABLES.iter().filter(|t| t.identity) {
        let name = table.name;
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence('{name}', 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) \
             FROM {name}"
        );
        let _: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A table whose count or any figure differs on the two sides is named as a mismatch.
    #[test]
    fn a_differing_count_or_figure_is_a_mismatch() {
        let figure =
            |sqlite: &str, postgres: &str| Figure { name: "max id", sqlite: sqlite.into(), postgres: postgres.into() };
        let report = ImportReport {
            tables: vec![
                TableReport { table: "tasks", sqlite_rows: 3, postgres_rows: 3, figures: vec![figure("3", "3")] },
                TableReport { table: "jobs", sqlite_rows: 5, postgres_rows: 4, figures: vec![figure("5", "5")] },
                TableReport { table: "events", sqlite_rows: 9, postgres_rows: 9, figures: vec![figure("9", "8")] },
            ],
        };
        assert_eq!(report.mismatches(), ["jobs", "events"]);
        assert_eq!(report.rows(), 16);
    }

    // Every table of the PostgreSQL schema is copied with every column, and a batch of the widest
    // table stays within the bind-parameter limit.
    #[test]
    fn every_table_and_column_of_the_schema_is_copied_within_the_parameter_limit() {
        let mut created: Vec<(&str, Vec<&str>)> = Vec::new();
        let mut in_table = false;
        for line in crate::MIGRATIONS.iter().flat_map(|(_, sql)| sql.lines()) {
            if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
                created.push((rest.split_whitespace().next().unwrap(), Vec::new()));
                in_table = true;
            } else if let Some(rest) = line.strip_prefix("ALTER TABLE ") {
                // `ALTER TABLE <table> ADD COLUMN <column> …`: a column a later migration added.
                let words: Vec<&str> = rest.split_whitespace().collect();
                if let [table, "ADD", "COLUMN", column, ..] = words[..]
                    && let Some((_, columns)) = created.iter_mut().find(|(t, _)| *t == table)
                {
                    columns.push(column);
                }
            } else if line.starts_with(')') {
                in_table = false;
            } else if in_table
                && let Some(column) = line.strip_prefix("    ").and_then(|l| l.split_whitespace().next())
                && !matches!(column, "UNIQUE" | "PRIMARY" | "CHECK")
                && let Some((_, columns)) = created.last_mut()
            {
                columns.push(column);
            }
        }
        // An instance's heartbeat row belongs to the server that wrote it: never copied.
        created.retain(|(table, _)| *table != "instances");
        created.sort();
        let mut copied: Vec<(&str, Vec<&str>)> =
            TABLES.iter().map(|t| (t.name, t.columns.iter().map(|(c, _)| *c).collect())).collect();
        copied.sort();
        assert_eq!(copied, created);
        for table in TABLES {
            assert!(table.columns.len() * BATCH_ROWS < BIND_PARAMETERS_MAX, "{}", table.name);
        }
    }
}
