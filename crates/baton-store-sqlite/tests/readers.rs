//! The store's held reader connections: more reads at once than there are connections all
//! complete, each taking a connection as one frees up, on a real SQLite file; the same for the
//! reads that run inline, on the calling thread, from more threads than it has connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_domain::TaskState;
use baton_store::{NewTask, Store, TaskFilter, TaskKey, Transition};
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

#[test]
fn inline_reads_from_more_threads_than_connections_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (store, task) = runtime().block_on(async {
        let store = SqliteStore::open(&dir.path().join("baton.db")).await.unwrap();
        let new = NewTask {
            repo: "r".into(),
            prefix: "R".into(),
            title: "read from many threads".into(),
            body: String::new(),
            external_ref: None,
            state: TaskState::new("analysis"),
            idempotency_key: None,
            depends_on: Vec::new(),
        };
        let task = store.create_task(new, Transition::default(), 1).await.unwrap();
        (store, task)
    });
    let found = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let runtime = runtime();
                    (0..500)
                        .filter(|_| {
                            runtime
                                .block_on(store.task(&TaskKey::Id(task.id)))
                                .unwrap()
                                .is_some_and(|t| t.id == task.id)
                        })
                        .count()
                })
            })
            .collect();
        readers.into_iter().map(|reader| reader.join().unwrap()).sum::<usize>()
    });
    assert_eq!(found, 8 * 500);
}
