//! The store's held reader connections: more reads at once than there are connections all
//! complete, each taking a connection as one frees up, on a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_store::{Store, TaskFilter};
use baton_store_sqlite::SqliteStore;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_reads_at_once_than_reader_connections_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("baton.db")).await.unwrap());
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let store = store.clone();
        reads.spawn(async move {
            let tasks = store.list_tasks(&TaskFilter::default()).await.unwrap();
            let counts = store.task_counts().await.unwrap();
            (tasks.len(), counts.len())
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(30), reads.join_all()).await.expect("every read completes");
    assert_eq!(all.len(), 64);
    assert!(all.iter().all(|&(tasks, counts)| tasks == 0 && counts == 0), "{all:?}");
}
