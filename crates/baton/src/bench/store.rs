//! `baton bench store`: the store's claim and advance rates on SQLite and, with `--database-url`,
//! on PostgreSQL in the same run — claims per second from one worker and from several at once,
//! one job per transaction and batched (`Store::claim_jobs`), and the latency of a create and an
//! advance. PostgreSQL is measured in a database the bench creates on that server and drops.

use crate::cli::EXIT_OK;
use crate::output;
use anyhow::Context;
use baton_domain::TaskState;
use baton_engine::{Clock, SystemClock};
use baton_store::{Advance, Claim, JobFinish, JobStatus, NewEvent, NewTask, Store, Transition};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// A PostgreSQL server to measure beside SQLite (`postgres://user:password@host/db`; the user
    /// must be allowed to create databases: the bench creates its own and drops it at the end).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Jobs claimed in each measurement.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub jobs: u32,
    /// Claimers at once in the concurrent measurements, each on its own connection.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Jobs per transaction in the batched measurement.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch: u32,
}

/// The figures of one backend.
#[derive(Debug, serde::Serialize)]
struct BackendFigures {
    backend: String,
    create_p50_ms: f64,
    claims_per_s_single: f64,
    claims_per_s_workers: f64,
    claims_per_s_batched: f64,
    advance_p50_ms: f64,
    advance_p95_ms: f64,
    workers: u32,
    batch: u32,
}

pub async fn run(args: StoreArgs, json: bool) -> anyhow::Result<u8> {
    let dir = std::env::temp_dir().join(format!("baton-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut figures = Vec::new();
    let sqlite = async {
        let store: Arc<dyn Store> = Arc::new(baton_store_sqlite::SqliteStore::open(&dir.join("bench.db")).await?);
        measure("sqlite", store, &args).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    figures.push(sqlite?);
    if let Some(url) = &args.database_url {
        figures.push(on_postgres(url, &args).await?);
    }
    if json {
        output::print_json(&figures);
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = figures
        .iter()
        .map(|f| {
            vec![
                f.backend.clone(),
                format!("{:.0}", f.claims_per_s_single),
                format!("{:.0}", f.claims_per_s_workers),
                format!("{:.0}", f.claims_per_s_batched),
                format!("{:.2}", f.advance_p50_ms),
                format!("{:.2}", f.advance_p95_ms),
                format!("{:.2}", f.create_p50_ms),
            ]
        })
        .collect();
    let workers = format!("CLAIMS/S {}W", args.workers);
    let batched = format!("CLAIMS/S {}W×{}", args.workers, args.batch);
    output::table(
        &["BACKEND", "CLAIMS/S 1W", &workers, &batched, "ADVANCE P50 ms", "ADVANCE P95 ms", "CREATE P50 ms"],
        &rows,
    );
    Ok(EXIT_OK)
}

/// Creates a database on the server of `url`, measures there, drops it.
async fn on_postgres(url: &str, args: &StoreArgs) -> anyhow::Result<BackendFigures> {
    use sqlx::Connection;
    let shown = baton_store_postgres::redact_url(url);
    let database = format!("baton_bench_{}", std::process::id());
    let mut admin =
        sqlx::PgConnection::connect(url).await.with_context(|| format!("connecting to {shown} (--database-url)"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating the bench database on {shown} (the user needs CREATEDB)"))?;
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    let bench_url = match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    };
    let result = async {
        let store = baton_store_postgres::PgStore::connect_with(&bench_url, args.workers + 2).await?;
        let pool = store.pool().clone();
        let figures = measure("postgres", Arc::new(store), args).await;
        pool.close().await;
        figures
    }
    .await;
    let dropped = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
        .execute(&mut admin)
        .await;
    if let Err(error) = dropped {
        eprintln!("bench: could not drop the database {database}: {error}");
    }
    result
}

async fn measure(backend: &str, store: Arc<dyn Store>, args: &StoreArgs) -> anyhow::Result<BackendFigures> {
    let progress = output::progress(&format!("bench store ({backend})"), 4);
    let clock = SystemClock;
    let claim = |owner: &str| Claim {
        owner: owner.into(),
        now_ms: clock.now_ms(),
        running_max: 1_000_000,
        running_per_repo_max: 1_000_000,
        ..Claim::default()
    };

    // One worker, one claim per transaction; then an advance of every claimed job.
    progress.step("creating tasks");
    let creates = seed(&*store, args.jobs, "single").await?;
    progress.step("claims, one worker");
    let started = Instant::now();
    let mut claimed = Vec::new();
    while let Some(job) = store.claim_job(&claim("w0")).await? {
        claimed.push(job);
    }
    let single = claimed.len() as f64 / started.elapsed().as_secs_f64();
    let mut advances = Vec::with_capacity(claimed.len());
    for job in &claimed {
        let task = store.task(&baton_store::TaskKey::Id(job.task_id)).await?.context("the claimed job's task")?;
        let advance = Advance {
            task: job.task_id,
            expected_version: task.version,
            next: TaskState { stage: "architecture".into(), ..task.state.clone() },
            finish_job: Some(JobFinish {
                job: job.id,
                status: JobStatus::Done,
                result: serde_json::json!({}),
                claimed_by: None,
            }),
            event: NewEvent {
                task: job.task_id,
                at_ms: clock.now_ms(),
                kind: "job_finished".into(),
                stage: "architecture".into(),
                message: "bench".into(),
                detail: serde_json::Value::Null,
            },
            transition: Transition::default(),
            inbox: None,
            effects: Vec::new(),
            now_ms: clock.now_ms(),
        };
        let at = Instant::now();
        store.advance(advance).await?;
        advances.push(at.elapsed());
    }

    // Several workers at once, one claim per transaction, then `batch` per transaction.
    progress.step("claims, several workers");
    seed(&*store, args.jobs, "workers").await?;
    let workers = concurrent(&store, args.workers, 1).await?;
    close_running(&*store).await?;
    progress.step("claims, batched");
    seed(&*store, args.jobs, "batched").await?;
    let batched = concurrent(&store, args.workers, args.batch).await?;
    close_running(&*store).await?;
    progress.finish("measured");
    let at = |samples: &mut Vec<Duration>, q: usize| {
        samples.sort();
        samples.get(samples.len().saturating_sub(1) * q / 100).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let mut creates = creates;
    Ok(BackendFigures {
        backend: backend.to_string(),
        create_p50_ms: at(&mut creates, 50),
        claims_per_s_single: single,
        claims_per_s_workers: workers,
        claims_per_s_batched: batched,
        advance_p50_ms: at(&mut advances, 50),
        advance_p95_ms: at(&mut advances, 95),
        workers: args.workers,
        batch: args.batch,
    })
}

/// `n` tasks, each with its first job queued; returns each create's latency.
async fn seed(store: &dyn Store, n: u32, round: &str) -> anyhow::Result<Vec<Duration>> {
    let clock = SystemClock;
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n {
        let new = NewTask {
            repo: format!("bench{}", i % 4),
            prefix: "B".into(),
            title: format!("{round} {i}"),
            body: String::new(),
            external_ref: None,
            idempotency_key: None,
            depends_on: Vec::new(),
            state: TaskState::new("analysis"),
        };
        let first = Transition { enqueue: Some(("analysis".into(), 0)), ..Transition::default() };
        let at = Instant::now();
        store.create_task(new, first, clock.now_ms()).await?;
        samples.push(at.elapsed());
    }
    Ok(samples)
}

/// `workers` claimers at once until nothing is left, `batch` jobs per transaction: claims/s.
async fn concurrent(store: &Arc<dyn Store>, workers: u32, batch: u32) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let clock = SystemClock;
            let claim = Claim {
                owner: format!("w{w}"),
                now_ms: clock.now_ms(),
                running_max: 1_000_000,
                running_per_repo_max: 1_000_000,
                ..Claim::default()
            };
            let mut n = 0usize;
            loop {
                let got = store.claim_jobs(&claim, batch).await?;
                if got.is_empty() {
                    return Ok::<usize, baton_store::StoreError>(n);
                }
                n += got.len();
            }
        }));
    }
    let mut total = 0;
    for handle in handles {
        total += handle.await.context("a claimer panicked")??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Ends every running job, so the next measurement's running counts start from zero.
async fn close_running(store: &dyn Store) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    for job in store.jobs_with_status(JobStatus::Running).await? {
        store.close_job(job.id, JobStatus::Done, serde_json::json!({}), now).await?;
    }
    Ok(())
}
