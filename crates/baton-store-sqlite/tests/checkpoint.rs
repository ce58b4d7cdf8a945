//! The write-ahead log is checkpointed off the writer's path: commits never checkpoint, and a
//! checkpoint of its own runs every few hundred writes, so the database file takes the written
//! pages while the store stays open; on a real SQLite file.
// The checkpoints run as tasks of their own: a real pause lets the first test's last one finish.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use baton_domain::TaskState;
use baton_store::{NewTask, Store, Transition};
use baton_store_sqlite::SqliteStore;
use std::path::Path;
use std::time::Duration;

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Files `count` tasks with bodies of `body` bytes, one write each.
async fn file_tasks(store: &SqliteStore, from: i64, count: i64, body: usize) {
    for n in from..from + count {
        let task = NewTask {
            repo: "alpha".into(),
            prefix: "CP".into(),
            title: format!("Task {n}"),
            body: "x".repeat(body),
            external_ref: None,
            idempotency_key: None,
            depends_on: Vec::new(),
            state: TaskState::new("analysis"),
        };
        let enqueue = Transition { enqueue: Some(("analysis".into(), 0)), ..Transition::default() };
        store.create_task(task, enqueue, 1_000 + n).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_file_takes_the_logs_pages_while_the_store_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("baton.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let before = size(&db);
    file_tasks(&store, 0, 700, 2_000).await;
    // The checkpoints run as tasks of their own: give the last one a moment.
    let mut grown = size(&db);
    for _ in 0..100 {
        if grown > before + 1_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        grown = size(&db);
    }
    assert!(
        grown > before + 1_000_000,
        "700 tasks of 2 kB each reached the database file while it was open: {before} → {grown} bytes"
    );
    let wal = dir.path().join("baton.db-wal");
    assert!(size(&wal) > 0, "the log is in use");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_writes_start_the_log_over_instead_of_growing_it_without_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("baton.db");
    let wal = dir.path().join("baton.db-wal");
    let store = SqliteStore::open(&db).await.unwrap();
    // A write here appends about 23 pages to the log (the task, its event and job, their indexes):
    // about 95 MB a round, 570 MB over six rounds for a log that never starts over. A checkpoint
    // every 300 writes (about 28 MB) lets it start over. The writes never pause: a pause would
    // let a checkpoint copy the whole log with nobody writing, and the log would start over
    // without the checkpoint that finishes under the writer.
    let mut sizes = Vec::new();
    for round in 0..6 {
        file_tasks(&store, round * 1_000, 1_000, 8_000).await;
        sizes.push(size(&wal));
    }
    // The checkpoints run as tasks of their own, and on a loaded machine they lag behind the
    // writes: give the last ones a moment to copy the pages over.
    let mut data = size(&db);
    for _ in 0..200 {
        if data > 40_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        data = size(&db);
    }
    assert!(data > 40_000_000, "the tasks reached the database file: {data} bytes; the log: {sizes:?}");
    // A log that starts over is written again from its start: its file keeps its largest size,
    // a few checkpoints' worth (about 30 MB here, 50 MB seen while a loaded machine held the
    // checkpoints back), however many rounds are written. Without a restart it would hold every
    // round, well past this bound.
    let largest = sizes[5];
    assert!(largest < 150_000_000, "the log's file grew to {largest} bytes over six rounds: {sizes:?}");
}
