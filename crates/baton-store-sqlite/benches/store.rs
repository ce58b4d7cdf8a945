//! Criterion benches of the SQLite store's hot paths over a seeded backlog (10 000 tasks from
//! `SqliteStore::bench_seed`): claim + advance, a page of `list_tasks_page`, `task_counts`, one
//! task by id, one task's timeline (`events`) and `spend_usd`. `cargo bench -p baton-store-sqlite`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_domain::{TaskId, TaskState};
use baton_store::{
    Advance, Claim, JobFinish, JobStatus, NewEvent, NewTask, SpendFilter, Store, TaskFilter, Transition,
};
use baton_store_sqlite::SqliteStore;
use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::atomic::{AtomicI64, Ordering};

/// Tasks in the seeded backlog.
const BACKLOG_TASKS: u32 = 10_000;
const NOW_MS: i64 = 1_800_000_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

/// A store holding the seeded backlog, in a directory kept alive with it.
fn seeded(rt: &tokio::runtime::Runtime) -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        let store = SqliteStore::open(&dir.path().join("bench.db")).await.unwrap();
        store.bench_seed(BACKLOG_TASKS, NOW_MS).await.unwrap();
        store
    });
    (dir, store)
}

fn reads(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, store) = seeded(&rt);
    let task = TaskId(i64::from(BACKLOG_TASKS) / 2);
    let mut group = c.benchmark_group("store_10k_tasks");
    group.bench_function("list_tasks_page(active, 100)", |b| {
        let filter = TaskFilter { active_only: true, ..TaskFilter::default() };
        b.to_async(&rt).iter(|| async { store.list_tasks_page(&filter, None, 100).await.unwrap() })
    });
    group.bench_function("list_tasks_page(hold, 100)", |b| {
        let filter = TaskFilter { hold: Some("awaiting_approval".into()), ..TaskFilter::default() };
        b.to_async(&rt).iter(|| async { store.list_tasks_page(&filter, None, 100).await.unwrap() })
    });
    group.bench_function("task_counts", |b| b.to_async(&rt).iter(|| async { store.task_counts().await.unwrap() }));
    group.bench_function("task(id)", |b| {
        b.to_async(&rt).iter(|| async { store.task(&baton_store::TaskKey::Id(task)).await.unwrap() })
    });
    group.bench_function("events(task)", |b| {
        b.to_async(&rt).iter(|| async { store.events(Some(task), 0, 100).await.unwrap() })
    });
    group.bench_function("spend_usd(since today)", |b| {
        let filter = SpendFilter { since_ms: Some(NOW_MS - 86_400_000), ..SpendFilter::default() };
        b.to_async(&rt).iter(|| async { store.spend_usd(&filter).await.unwrap() })
    });
    group.bench_function("spend_usd(task)", |b| {
        let filter = SpendFilter { task: Some(task), ..SpendFilter::default() };
        b.to_async(&rt).iter(|| async { store.spend_usd(&filter).await.unwrap() })
    });
    group.bench_function("due_holds + next_due_ms", |b| {
        b.to_async(&rt).iter(|| async {
            store.due_holds(NOW_MS, 100).await.unwrap();
            store.next_due_ms().await.unwrap()
        })
    });
    group.finish();
}

/// One claim and the advance that finishes the claimed job and enqueues the next: two commits.
fn claim_and_advance(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, store) = seeded(&rt);
    let clock = AtomicI64::new(NOW_MS);
    let task = rt.block_on(async {
        let new = NewTask {
            repo: "bench".into(),
            prefix: "B".into(),
            title: "claimed over and over".into(),
            body: String::new(),
            external_ref: None,
            state: TaskState::new("analysis"),
            idempotency_key: None,
            depends_on: Vec::new(),
        };
        let first = Transition { enqueue: Some(("analysis".into(), 0)), ..Transition::default() };
        store.create_task(new, first, NOW_MS).await.unwrap()
    });
    c.bench_function("store_10k_tasks/claim+advance", |b| {
        b.to_async(&rt).iter(|| async {
            let now_ms = clock.fetch_add(1, Ordering::SeqCst);
            let claim =
                Claim { owner: "bench".into(), now_ms, running_max: 4, running_per_repo_max: 4, ..Claim::default() };
            let job = store.claim_job(&claim).await.unwrap().expect("the bench task's job is runnable");
            let current = store.task(&baton_store::TaskKey::Id(task.id)).await.unwrap().unwrap();
            let advance = Advance {
                task: task.id,
                expected_version: current.version,
                next: TaskState { job: Some(job.id), ..TaskState::new("analysis") },
                finish_job: Some(JobFinish {
                    job: job.id,
                    status: JobStatus::Done,
                    result: serde_json::json!({}),
                    claimed_by: None,
                }),
                event: NewEvent {
                    task: task.id,
                    at_ms: now_ms,
                    kind: "advanced".into(),
                    stage: "analysis".into(),
                    message: "again".into(),
                    detail: serde_json::json!({}),
                },
                transition: Transition { enqueue: Some(("analysis".into(), 0)), ..Transition::default() },
                inbox: None,
                effects: Vec::new(),
                now_ms,
            };
            store.advance(advance).await.unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = reads, claim_and_advance
}
criterion_main!(benches);
