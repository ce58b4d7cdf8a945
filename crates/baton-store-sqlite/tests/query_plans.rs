//! Every hot query of the SQLite store (`baton_store_sqlite::hot_queries`) is answered from an
//! index: `EXPLAIN QUERY PLAN` shows no full scan of a table that grows with the backlog, so an
//! idle or busy Baton costs the same with 100 tasks or 100 000. Dropping an index turns it red.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_store_sqlite::{SqliteStore, hot_queries};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Row, SqliteConnection};

/// Tables that stay small whatever the backlog (a scan of one is fine).
/// `running` is the claim's per-repository count of running jobs: one row per repository; `w` and
/// `c` (with its window's `(subquery-N)`) are the batched claim's candidates, at most a few times
/// the batch, read down `jobs_claim` (the plan must show that walk: the claims require it).
/// `json_each` is a claim's list of repositories (the dependency and serial gates' exemptions).
const SMALL_TABLES: &[&str] = &[
    "c",
    "w",
    "json_each",
    "leases",
    "lease_tokens",
    "schema_migrations",
    "budget_caps",
    "api_tokens",
    "task_tally",
    "job_tally",
    "instances",
    "running",
];

/// Queries a rowid range would also answer without a full scan, but in time that grows with the
/// history: each must walk the index named.
const REQUIRED_INDEX: &[(&str, &str)] = &[
    ("events(task)", "events_task"),
    ("task(work_item)", "tasks_work_item_id"),
    ("due_holds", "tasks_due"),
    ("next_due_ms", "tasks_due"),
    ("next_job_at_ms", "jobs_queue"),
    ("unapplied_tasks", "jobs_finished"),
    ("claim_job", "jobs_claim"),
    ("claim_jobs", "jobs_claim"),
    ("claim_job", "tasks_live_repo"),
    ("claim_jobs", "tasks_live_repo"),
    ("live_dependencies", "tasks_live"),
    ("list_tasks_page(active=true, repo=false, stage=false, hold=false)", "tasks_live"),
    ("list_tasks_page(active=false, repo=true, stage=false, hold=false)", "tasks_repo"),
    ("list_tasks_page(active=true, repo=true, stage=false, hold=false)", "tasks_repo"),
    ("list_tasks_page(active=false, repo=false, stage=true, hold=false)", "tasks_stage"),
    ("list_tasks_page(active=true, repo=false, stage=true, hold=false)", "tasks_stage"),
    ("list_tasks_page(active=false, repo=false, stage=false, hold=true)", "tasks_hold"),
    ("list_tasks_page(active=true, repo=false, stage=false, hold=true)", "tasks_hold"),
    ("prune(events)", "events_prunable"),
    ("prune(jobs)", "jobs_finished"),
    ("prune(jobs)", "agent_runs_job"),
    ("prune(outbox)", "outbox_due"),
    ("prune(deliveries)", "webhook_deliveries_pending"),
    ("prune(inbox)", "inbox_received"),
    ("queue_entries_with_head", "merge_queue_head"),
];

/// A fresh, fully migrated database and a raw connection to it.
async fn migrated() -> (tempfile::TempDir, SqliteConnection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.db");
    drop(SqliteStore::open(&path).await.unwrap());
    let connection = SqliteConnectOptions::new().filename(&path).connect().await.unwrap();
    (dir, connection)
}

/// What is wrong with the plan of hot query `name`: full scans of a large table, or the index it
/// must walk missing from the plan. Returns them with the plan.
async fn violations(connection: &mut SqliteConnection, name: &str, sql: &str) -> (Vec<String>, Vec<String>) {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
        .fetch_all(&mut *connection)
        .await
        .unwrap_or_else(|error| panic!("EXPLAIN failed for {sql}: {error}"));
    let plan: Vec<String> = rows.iter().map(|row| row.get::<String, _>("detail")).collect();
    let scans = plan
        .iter()
        .filter(|line| {
            let Some(rest) = line.strip_prefix("SCAN ") else { return false };
            let table = rest.split_whitespace().next().unwrap_or_default();
            !rest.contains("USING INDEX")
                && !rest.contains("USING COVERING INDEX")
                && !SMALL_TABLES.contains(&table)
                && !table.starts_with("(subquery-")
                && table != "CONSTANT"
        })
        .cloned();
    let mut problems: Vec<String> = scans.collect();
    for (_, index) in REQUIRED_INDEX.iter().filter(|(query, _)| *query == name) {
        let walks =
            |line: &String| line.split_whitespace().collect::<Vec<_>>().windows(2).any(|w| w == ["INDEX", index]);
        if !plan.iter().any(walks) {
            problems.push(format!("does not use {index}"));
        }
    }
    (problems, plan)
}

#[tokio::test]
async fn every_hot_query_is_answered_from_an_index() {
    let (_dir, mut connection) = migrated().await;
    let mut failures = Vec::new();
    for (name, sql) in hot_queries() {
        let (scans, plan) = violations(&mut connection, &name, &sql).await;
        if !scans.is_empty() {
            failures.push(format!("{name}: {scans:?}\n  sql: {sql}\n  plan: {plan:?}"));
        }
    }
    assert!(failures.is_empty(), "hot queries scanning a large table:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn dropping_an_index_is_caught() {
    // The check above is only worth something if a missing index makes it fail.
    let (_dir, mut connection) = migrated().await;
    for index in
        ["tasks_due", "events_task", "jobs_task", "tasks_hold", "agent_runs_task", "tasks_live", "agent_runs_job"]
    {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {index}"))).execute(&mut connection).await.unwrap();
    }
    let scanned: Vec<String> = {
        let mut scanned = Vec::new();
        for (name, sql) in hot_queries() {
            if !violations(&mut connection, &name, &sql).await.0.is_empty() {
                scanned.push(name);
            }
        }
        scanned
    };
    for expected in [
        "due_holds",
        "next_due_ms",
        "events(task)",
        "jobs_for_task",
        "agent_runs(task)",
        "spend_usd(task)",
        "prune(jobs)",
    ] {
        assert!(scanned.iter().any(|n| n == expected), "{expected} not caught; caught: {scanned:?}");
    }
    assert!(
        scanned.iter().any(|n| n.starts_with("list_tasks_page(active=false, repo=false, stage=false, hold=true)")),
        "the hold filter not caught; caught: {scanned:?}"
    );
}

#[tokio::test]
async fn the_bench_seed_writes_a_readable_backlog() {
    // The seeded rows decode like real ones and spread over stages, holds and due times.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("seed.db")).await.unwrap();
    store.bench_seed(200, 1_000_000).await.unwrap();
    store.bench_seed(40, 1_000_000).await.unwrap();
    use baton_store::{Store, TaskFilter};
    let all = store.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(all.len(), 240);
    let counts = store.task_counts().await.unwrap();
    assert!(counts.iter().any(|c| c.stage == "done") && counts.iter().any(|c| c.hold == "paused_quota"), "{counts:?}");
    assert_eq!(store.next_due_ms().await.unwrap(), Some(1_000_000 + 86_400_000));
    let task = &all[0];
    assert_eq!(store.events(Some(task.id), 0, 100).await.unwrap().len(), 6);
    assert_eq!(store.agent_runs(task.id).await.unwrap().len(), 2);
    assert!(store.jobs_for_task(task.id).await.unwrap().len() >= 3);
    assert!(store.unapplied_tasks(0, i64::MAX, 10).await.unwrap().is_empty(), "every live job is queued");
}
