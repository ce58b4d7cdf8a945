//! SQLite's "database is locked" (SQLITE_BUSY, from a real second connection holding the write
//! lock) becomes `StoreError::Busy`, which the HTTP API answers with 503 and `Retry-After`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_store::StoreError;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::time::Duration;

#[tokio::test]
async fn a_held_write_lock_is_store_busy() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("busy.db"))
        .create_if_missing(true)
        .busy_timeout(Duration::ZERO);
    let mut holder = options.connect().await.unwrap();
    sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut holder).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();
    let mut other = options.connect().await.unwrap();
    let error = sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.expect_err("the lock is held");
    let store_error = StoreError::from(error);
    assert!(matches!(store_error, StoreError::Busy(_)), "{store_error:?}");
    assert!(store_error.to_string().contains("database is busy"), "{store_error}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();

    // Any other database error stays `Database`.
    let error = sqlx::query("SELECT * FROM no_such_table").execute(&mut other).await.expect_err("no table");
    assert!(matches!(StoreError::from(error), StoreError::Database(_)));
}
