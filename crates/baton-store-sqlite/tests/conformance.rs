//! The store conformance suite (`baton_store::conformance`) on a fresh SQLite file per test.

#![allow(clippy::unwrap_used)]

use baton_store::Store;
use baton_store::conformance::Harness;
use baton_store_sqlite::SqliteStore;
use std::path::PathBuf;
use std::sync::Arc;

/// A database file in its own temporary directory (deleted with the directory).
struct Sqlite {
    path: PathBuf,
}

#[async_trait::async_trait]
impl Harness for Sqlite {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.path).await.unwrap())
    }

    async fn set_work_item_counter(&self, repo: &str, prefix: &str, next: i64) {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&self.path);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let updated = sqlx::query("UPDATE work_item_counters SET next_number = $3 WHERE repo = $1 AND prefix = $2")
            .bind(repo)
            .bind(prefix)
            .bind(next)
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(updated.rows_affected(), 1, "no counter for ({repo}, {prefix})");
        pool.close().await;
    }
}

async fn fresh() -> (tempfile::TempDir, Sqlite, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let harness = Sqlite { path: dir.path().join("baton.db") };
    let store = harness.open().await;
    (dir, harness, store)
}

baton_store::conformance_tests!(fresh);
