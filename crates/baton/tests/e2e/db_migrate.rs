//! `baton db migrate --to postgres://…` end to end: a real SQLite file written by real `baton`
//! commands, a fresh database in the PostgreSQL cluster named by `BATON_TEST_DATABASE_URL`, the
//! real binary, and the copy read back through `PgStore`.

use crate::support::{Env, baton_exe};
use baton_store::{Store, TaskFilter, TaskKey};
use baton_store_postgres::PgStore;
use baton_store_sqlite::SqliteStore;
use serde_json::Value;
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The cluster's URL (any database the test role may connect to and create databases from).
fn cluster_url() -> String {
    std::env::var("BATON_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "BATON_TEST_DATABASE_URL is not set: the `db migrate` tests need a PostgreSQL cluster they may create \
             databases in (e.g. postgres://postgres@127.0.0.1:5432/postgres); `cargo xtask test` starts one and sets it"
        )
    })
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').expect("a URL with a database path");
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// The URL of a new, empty database created for this test.
async fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let cluster = cluster_url();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("baton_migrate_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let mut admin = sqlx::PgConnection::connect(&cluster).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    with_database(&cluster, &name)
}

/// Runs `baton --config <config> <args>` on the SQLite store (no `BATON_DATABASE_URL` inherited).
fn baton(config: &Path, args: &[&str]) -> Output {
    Command::new(baton_exe())
        .arg("--config")
        .arg(config)
        .env_remove("BATON_CONFIG")
        .env_remove("BATON_DATABASE_URL")
        .args(args)
        .output()
        .expect("baton runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A finished `baton demo --yes` (three tasks through the whole pipeline) plus a named API token.
struct Demo {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Demo {
    fn run() -> Demo {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo");
        let out = Command::new(baton_exe())
            .args(["demo", "--yes", "--dir"])
            .arg(&dir)
            .env_remove("BATON_CONFIG")
            .env_remove("BATON_DATABASE_URL")
            .output()
            .unwrap();
        assert!(out.status.success(), "demo failed: {}\n{}", text(&out.stdout), text(&out.stderr));
        let demo = Demo { _tmp: tmp, dir };
        let out = baton(&demo.config(), &["token", "create", "ci", "--scope", "read"]);
        assert!(out.status.success(), "token create: {}", text(&out.stderr));
        demo
    }

    fn config(&self) -> PathBuf {
        self.dir.join("baton.toml")
    }

    fn database(&self) -> PathBuf {
        self.dir.join("data").join("baton.db")
    }
}

/// Every record the store gives back, as JSON, for a whole-value comparison of both stores.
async fn records(store: &dyn Store) -> Value {
    let tasks = store.list_tasks(&TaskFilter::default()).await.unwrap();
    let mut jobs = Vec::new();
    let mut runs = Vec::new();
    for task in &tasks {
        jobs.extend(store.jobs_for_task(task.id).await.unwrap());
        runs.extend(store.agent_runs(task.id).await.unwrap());
    }
    serde_json::json!({
        "tasks": tasks,
        "events": store.events(None, 0, 100_000).await.unwrap(),
        "jobs": jobs,
        "agent_runs": runs,
        "api_tokens": store.api_tokens().await.unwrap(),
    })
}

// After a demo on SQLite, the migrate exits 0 with every table verified, leaves the SQLite file
// byte for byte as it was, and PostgreSQL holds the same tasks (ids, work-item ids, stages,
// versions, state), events (ids, kinds, messages), jobs, agent runs with their costs and API
// tokens; a task created afterwards on PostgreSQL gets the next id, work-item number and event id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_the_demo_store_and_new_rows_continue_its_numbering() {
    let demo = Demo::run();
    let target = fresh_database().await;
    // An ingested usage record rides along (the demo itself reports none).
    {
        use baton_store::Store;
        let store = baton_store_sqlite::SqliteStore::open(&demo.database()).await.unwrap();
        let record = baton_store::NewUsageRecord {
            source: "transcriber".into(),
            category: "audio".into(),
            model: None,
            input_tokens: 0,
            output_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            units: 12.5,
            unit_kind: Some("audio_minute".into()),
            cost_usd: Some(0.075),
            priced_by: "table".into(),
            idempotency_key: Some("t-1".into()),
            task: None,
            repo: Some("demo".into()),
            at_ms: 1_700_000_000_000,
            principal: "api:transcriber".into(),
        };
        assert!(store.insert_usage_record(record).await.unwrap().created);
        drop(store);
        // Fold the write-ahead log into the file, so the byte comparison below sees a settled file.
        use sqlx::Connection;
        let url = format!("sqlite://{}", demo.database().display());
        let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();
    }
    let before = std::fs::read(demo.database()).unwrap();

    let out = baton(&demo.config(), &["--json", "db", "migrate", "--to", &target]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "migrate failed: {}\n{stderr}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints the report");
    assert_eq!(report["ok"], true, "{report:#}");
    let tables = report["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 20, "{report:#}");
    let usage = tables.iter().find(|t| t["table"] == "usage_records").unwrap();
    assert_eq!(usage["postgres_rows"], 1, "{usage}");
    for table in tables {
        assert_eq!(table["ok"], true, "{table}");
        assert_eq!(table["sqlite_rows"], table["postgres_rows"], "{table}");
    }
    let events = tables.iter().find(|t| t["table"] == "events").unwrap();
    let event_rows = events["postgres_rows"].as_u64().unwrap();
    assert!(event_rows > 0, "{report:#}");
    // Off a terminal: one progress line per table, each complete.
    assert!(stderr.lines().any(|l| l.starts_with("events") && l.ends_with(&format!("{event_rows}/{event_rows}"))));
    assert!(stderr.contains("BATON_DATABASE_URL"), "the next step is printed: {stderr}");
    assert_eq!(std::fs::read(demo.database()).unwrap(), before, "the SQLite file changed");

    let sqlite = SqliteStore::open(&demo.database()).await.unwrap();
    let postgres = PgStore::connect(&target).await.unwrap();
    let (expected, copied) = (records(&sqlite).await, records(&postgres).await);
    assert_eq!(expected["tasks"].as_array().unwrap().len(), 3);
    let runs = expected["agent_runs"].as_array().unwrap();
    assert!(runs.iter().any(|r| r["cost_usd"].as_f64().is_some_and(|c| c > 0.0)), "the demo's runs have costs");
    assert!(expected["api_tokens"].as_array().unwrap().iter().any(|t| t["name"] == "ci"));
    for part in ["tasks", "events", "jobs", "agent_runs", "api_tokens"] {
        assert_eq!(copied[part], expected[part], "{part} differ after the copy");
    }

    let max_task = expected["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).max().unwrap();
    let max_event = expected["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).max().unwrap();
    let out = Command::new(baton_exe())
        .arg("--config")
        .arg(demo.config())
        .env_remove("BATON_CONFIG")
        .env("BATON_DATABASE_URL", &target)
        .args(["task", "add", "--repo", "demo", "--title", "After the move"])
        .output()
        .unwrap();
    assert!(out.status.success(), "task add on PostgreSQL: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "DEMO-004", "the work-item counter was carried");
    let task = postgres.task(&TaskKey::WorkItem("DEMO-004".into())).await.unwrap().unwrap();
    assert_eq!(task.id.0, max_task + 1, "the tasks sequence was moved past the copied ids");
    let timeline = postgres.events(Some(task.id), 0, 100).await.unwrap();
    assert!(!timeline.is_empty());
    assert!(timeline.iter().all(|e| e.id > max_event), "the events sequence was moved past the copied ids");
}

// A backlog larger than one batch (2,500 seeded tasks with their jobs, events, agent runs and
// effects: thousands of rows per table) is copied whole across several INSERTs: every table
// verified, and PostgreSQL counts the tasks by stage and hold, and the jobs by status, as SQLite
// does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_a_backlog_larger_than_one_batch() {
    let env = Env::new("", "");
    env.add_task("One");
    let sqlite = SqliteStore::open(&env.root.join("data").join("baton.db")).await.unwrap();
    sqlite.bench_seed(2_500, 1_800_000_000_000).await.unwrap();
    let target = fresh_database().await;

    let out = env.run(&["--json", "db", "migrate", "--to", &target]);
    assert!(out.status.success(), "migrate failed: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    let rows = |table: &str| {
        let entry = report["tables"].as_array().unwrap().iter().find(|t| t["table"] == table).unwrap();
        entry["postgres_rows"].as_u64().unwrap()
    };
    assert_eq!(rows("tasks"), 2_501);
    assert!(rows("events") > 10_000 && rows("jobs") > 7_500 && rows("agent_runs") >= 5_000, "{report:#}");

    let postgres = PgStore::connect(&target).await.unwrap();
    let mut expected = sqlite.task_counts().await.unwrap();
    let mut copied = postgres.task_counts().await.unwrap();
    let key = |c: &baton_store::TaskCount| serde_json::to_string(c).unwrap();
    expected.sort_by_key(key);
    copied.sort_by_key(key);
    assert_eq!(copied, expected);
    assert_eq!(postgres.job_counts().await.unwrap(), sqlite.job_counts().await.unwrap());
}

// A second migrate into a database that already holds the copy is refused, naming the count,
// and changes nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_migrate_into_the_same_database_is_refused() {
    let env = Env::new("", "");
    env.add_task("One");
    env.add_task("Two");
    let target = fresh_database().await;
    let first = env.run(&["db", "migrate", "--to", &target]);
    assert!(first.status.success(), "first migrate: {}", text(&first.stderr));
    let stdout = text(&first.stdout);
    assert!(stdout.contains("tasks") && stdout.contains("ok"), "the verification table is printed: {stdout}");

    let second = env.run(&["db", "migrate", "--to", &target]);
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already holds 2 tasks; migrate into an empty database"), "{stderr}");
    let postgres = PgStore::connect(&target).await.unwrap();
    assert_eq!(postgres.list_tasks(&TaskFilter::default()).await.unwrap().len(), 2);
}

// While a `baton serve` holds the data directory's serve.lock, the migrate is refused (saying to
// stop it) before it touches the target: the database stays without even a schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_refused_while_baton_serve_holds_the_data_dir() {
    let env = Env::new("", "");
    env.add_task("One");
    let target = fresh_database().await;
    let log_path = env.root.join("serve-1.log");
    let mut server = env.serve(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log_path).unwrap_or_default().contains("listening on") {
        assert!(server.child.try_wait().unwrap().is_none(), "serve exited early");
        assert!(Instant::now() < deadline, "serve never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = env.run(&["db", "migrate", "--to", &target]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let data_dir = env.root.join("data");
    assert!(
        stderr.contains(&format!("a `baton serve` is running on {}; stop it first", data_dir.display())),
        "{stderr}"
    );
    server.kill9();
    let mut connection = sqlx::PgConnection::connect(&target).await.unwrap();
    let schema: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('tasks')::text").fetch_one(&mut connection).await.unwrap();
    assert_eq!(schema, None, "the target was touched");
}

// Bad input is refused with a message that says what to do and never prints a password: a URL
// that is not postgres:// (exit 2, naming --to with an example), a server that cannot be reached
// (the URL masked), and a data directory without baton.db (naming the path).
#[test]
fn migrate_rejects_bad_input_and_never_prints_a_password() {
    let env = Env::new("", "");
    let secret = "s3cret-Pw";

    let out = env.run(&["db", "migrate", "--to", &format!("mysql://baton:{secret}@db.example.com/baton")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`--to`") && stderr.contains("postgres://"), "{stderr}");

    // No SQLite file yet: nothing has run in this environment.
    let out = env.run(&["db", "migrate", "--to", &format!("postgres://baton:{secret}@127.0.0.1:1/baton")]);
    let missing = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{missing}");
    let db = env.root.join("data").join("baton.db");
    assert!(missing.contains(&format!("no SQLite database at {}", db.display())), "{missing}");

    env.add_task("One");
    let out = env.run(&["db", "migrate", "--to", &format!("postgres://baton:{secret}@127.0.0.1:1/baton")]);
    let unreachable = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{unreachable}");
    assert!(unreachable.contains("cannot connect to postgres://baton:***@127.0.0.1:1/baton"), "{unreachable}");

    for output in [&stderr, &missing, &unreachable] {
        assert!(!output.contains(secret), "a password was printed: {output}");
    }
}
