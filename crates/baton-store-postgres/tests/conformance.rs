//! The store conformance suite (`baton_store::conformance`) on PostgreSQL: a fresh database per
//! test in the cluster named by `BATON_TEST_DATABASE_URL` (`cargo xtask test` starts a throwaway
//! cluster on 127.0.0.1 and sets it).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use baton_store::Store;
use baton_store::conformance::Harness;
use baton_store_postgres::PgStore;
use sqlx::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// The cluster's URL (any database the test role may connect to and create databases from).
fn cluster_url() -> String {
    std::env::var("BATON_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "BATON_TEST_DATABASE_URL is not set: the PostgreSQL tests need a cluster they may create databases in \
             (e.g. postgres://postgres@127.0.0.1:5432/postgres); `cargo xtask test` starts one and sets it"
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

/// One empty database, created for this test.
struct Postgres {
    url: String,
}

#[async_trait::async_trait]
impl Harness for Postgres {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(PgStore::connect(&self.url).await.unwrap())
    }

    async fn set_work_item_counter(&self, repo: &str, prefix: &str, next: i64) {
        let mut connection = sqlx::PgConnection::connect(&self.url).await.unwrap();
        let updated = sqlx::query("UPDATE work_item_counters SET next_number = $3 WHERE repo = $1 AND prefix = $2")
            .bind(repo)
            .bind(prefix)
            .bind(next)
            .execute(&mut connection)
            .await
            .unwrap();
        assert_eq!(updated.rows_affected(), 1, "no counter for ({repo}, {prefix})");
        connection.close().await.unwrap();
    }
}

async fn fresh() -> ((), Postgres, Arc<dyn Store>) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let cluster = cluster_url();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("baton_test_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let mut admin = sqlx::PgConnection::connect(&cluster).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    let harness = Postgres { url: with_database(&cluster, &name) };
    let store = harness.open().await;
    ((), harness, store)
}

baton_store::conformance_tests!(fresh);

/// A claim is exact across instances only because it holds the claim lock while it counts and
/// claims: while another session (another instance's claim) holds it, a claim waits, and it
/// completes once the lock is released.
#[tokio::test]
async fn a_claim_waits_while_another_session_holds_the_claim_lock() {
    let (_, harness, store) = fresh().await;
    let mut other = sqlx::PgConnection::connect(&harness.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(baton_store_postgres::CLAIM_LOCK)
        .execute(&mut other)
        .await
        .unwrap();
    let claim = baton_store::Claim {
        owner: "instance-b".into(),
        running_max: 4,
        running_per_repo_max: 2,
        ..Default::default()
    };
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.claim_jobs(&claim, 8).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the claim finished while another session held the claim lock");
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(baton_store_postgres::CLAIM_LOCK)
        .execute(&mut other)
        .await
        .unwrap();
    let claimed = tokio::time::timeout(std::time::Duration::from_secs(30), waiting).await.unwrap().unwrap().unwrap();
    assert!(claimed.is_empty(), "nothing is queued, so nothing is claimed");
    other.close().await.unwrap();
}

/// A Baton process stopped inside a transaction must not keep its locks from every other
/// instance: its sessions carry `idle_in_transaction_session_timeout`, so the server ends such a
/// session (and its locks) after a while.
#[tokio::test]
async fn sessions_end_a_transaction_left_idle() {
    let (_, harness, _) = fresh().await;
    let store = PgStore::connect(&harness.url).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    let timeout: String =
        sqlx::query_scalar("SHOW idle_in_transaction_session_timeout").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(timeout, baton_store_postgres::IDLE_IN_TRANSACTION_TIMEOUT);
    tx.rollback().await.unwrap();
}
