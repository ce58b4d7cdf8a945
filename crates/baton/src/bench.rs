//! `baton bench`: measures Baton's own costs next to the unavoidable work it orchestrates — a pure
//! decision, a store transition (claim + advance, one commit each), a supervised process spawn
//! through `baton shim` (bare, and inside the bubblewrap agent sandbox), and a git call — so the overhead per stage transition can be read in context.

// A benchmark measures wall time: it reads the system clock on purpose.
#![allow(clippy::disallowed_methods)]

use crate::cli::EXIT_OK;
use crate::output;
use anyhow::Context;
use baton_domain::{Event, GateVerdict, JobOutcome, Pipeline, TaskState, Verdict, decide};
use baton_engine::{Clock, SystemClock};
use baton_store::{Advance, Claim, JobFinish, JobStatus, NewEvent, NewTask, SqliteStore, Store, Transition};
use std::path::Path;
use std::time::{Duration, Instant};

/// One measured operation: how many times, and the per-operation latency percentiles.
#[derive(Debug, serde::Serialize)]
struct Figure {
    what: &'static str,
    runs: usize,
    mean_us: f64,
    p50_us: f64,
    p95_us: f64,
}

fn figure(what: &'static str, mut samples: Vec<Duration>) -> Figure {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let n = samples.len().max(1);
    let mean = samples.iter().map(|d| us(*d)).sum::<f64>() / n as f64;
    let at = |q: usize| samples.get((samples.len().saturating_sub(1)) * q / 100).map_or(0.0, |d| us(*d));
    Figure { what, runs: samples.len(), mean_us: mean, p50_us: at(50), p95_us: at(95) }
}

pub async fn run(json: bool) -> anyhow::Result<u8> {
    let dir = std::env::temp_dir().join(format!("baton-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = measure(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let figures = result?;
    if json {
        output::print_json(&figures);
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = figures
        .iter()
        .map(|f| {
            vec![
                f.what.to_string(),
                f.runs.to_string(),
                format!("{:.1}", f.mean_us),
                format!("{:.1}", f.p50_us),
                format!("{:.1}", f.p95_us),
            ]
        })
        .collect();
    output::table(&["OPERATION", "RUNS", "MEAN µs", "P50 µs", "P95 µs"], &rows);
    Ok(EXIT_OK)
}

async fn measure(dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let mut figures = vec![bench_decide()];
    figures.extend(bench_store(dir).await?);
    figures.push(bench_spawn(dir, None).await?);
    // The sandbox's cost per agent spawn, where bubblewrap works.
    let bwrap = baton_runner::sandbox::find_bwrap(std::env::var("PATH").ok().as_deref());
    match bwrap.map(|b| baton_runner::sandbox::probe(&b, baton_runner::SandboxNetwork::Open).map(|_| b)) {
        Some(Ok(bwrap)) => figures.push(bench_spawn(dir, Some(&bwrap)).await?),
        Some(Err(why)) => eprintln!("no sandboxed spawn figure: {why}"),
        None => eprintln!("no sandboxed spawn figure: bubblewrap (`bwrap`) is not installed"),
    }
    figures.push(bench_git(dir).await?);
    Ok(figures)
}

/// `decide` on a passing review result (advance with one enqueue).
fn bench_decide() -> Figure {
    let pipeline = Pipeline::default_pipeline();
    let state = TaskState { job: Some(baton_domain::JobId(1)), ..TaskState::new("review") };
    let verdicts = vec![GateVerdict::new("verdict", Verdict::Pass, "verdict: approve")];
    let event = Event::JobFinished {
        job: baton_domain::JobId(1),
        stage: "review".into(),
        outcome: JobOutcome::Completed { verdicts },
    };
    let mut samples = Vec::with_capacity(20_000);
    for i in 0..20_000 {
        let started = Instant::now();
        std::hint::black_box(decide(&state, &event, &pipeline, i));
        samples.push(started.elapsed());
    }
    figure("decide (pure)", samples)
}

/// Claim and advance on a real SQLite file: each a `BEGIN IMMEDIATE` transaction and a commit.
async fn bench_store(dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let store = SqliteStore::open(&dir.join("bench.db")).await?;
    let clock = SystemClock;
    let tasks = 300;
    let mut created = Vec::new();
    let mut create_samples = Vec::new();
    for n in 0..tasks {
        let new = NewTask {
            repo: "bench".into(),
            prefix: "B".into(),
            title: format!("task {n}"),
            body: String::new(),
            external_ref: None,
            idempotency_key: None,
            state: TaskState::new("analysis"),
        };
        let first = Transition { enqueue: Some(("analysis".into(), 0)), ..Transition::default() };
        let started = Instant::now();
        created.push(store.create_task(new, first, clock.now_ms()).await?);
        create_samples.push(started.elapsed());
    }
    let mut claim_samples = Vec::new();
    let mut advance_samples = Vec::new();
    let claim = Claim {
        owner: "bench".into(),
        now_ms: clock.now_ms(),
        running_max: 1_000_000,
        running_per_repo_max: 1_000_000,
    };
    for task in &created {
        let started = Instant::now();
        let Some(job) = store.claim_job(&claim).await? else { break };
        claim_samples.push(started.elapsed());
        let next = TaskState { stage: "architecture".into(), ..task.state.clone() };
        // The claim bumped the task's version; an advance compares against the current one.
        let version = store.task(&baton_store::TaskKey::Id(job.task_id)).await?.map_or(task.version, |t| t.version);
        let advance = Advance {
            task: job.task_id,
            expected_version: version,
            next,
            finish_job: Some(JobFinish { job: job.id, status: JobStatus::Done, result: serde_json::json!({}) }),
            event: NewEvent {
                task: job.task_id,
                at_ms: clock.now_ms(),
                kind: "job_finished".into(),
                stage: "architecture".into(),
                message: "bench".into(),
                detail: serde_json::Value::Null,
            },
            transition: Transition { enqueue: Some(("architecture".into(), 0)), ..Transition::default() },
            inbox: None,
            effects: Vec::new(),
            now_ms: clock.now_ms(),
        };
        let started = Instant::now();
        store.advance(advance).await?;
        advance_samples.push(started.elapsed());
    }
    Ok(vec![
        figure("store: create task (1 txn)", create_samples),
        figure("store: claim job (1 txn)", claim_samples),
        figure("store: advance (1 txn)", advance_samples),
    ])
}

/// Spawns measured per figure.
const SPAWNS: usize = 200;

/// A supervised process through `baton shim` running `true`, waited to its end; with `sandbox`,
/// wrapped in bubblewrap as an agent run is (data directory hidden, worktree and run directory
/// writable).
async fn bench_spawn(dir: &Path, sandbox: Option<&Path>) -> anyhow::Result<Figure> {
    let exe = crate::cli::baton_exe();
    let data = dir.join("data");
    let (worktree, run_dir) = (data.join("worktrees/demo/BENCH-001"), data.join("runs/BENCH-001/run1"));
    std::fs::create_dir_all(&worktree)?;
    std::fs::create_dir_all(&run_dir)?;
    let policy = baton_runner::SandboxPolicy {
        hidden: vec![data.clone()],
        read_only: vec![exe.clone()],
        writable: vec![worktree.clone(), run_dir.clone()],
        protected: vec![run_dir.join(baton_runner::shim::LAUNCH_FILE)],
        ..baton_runner::SandboxPolicy::default()
    };
    let mut samples = Vec::new();
    for n in 0..SPAWNS {
        let spec = baton_runner::ProcessSpec {
            program: "true".into(),
            args: vec![],
            cwd: worktree.clone(),
            env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
            stdin: None,
            stdout: run_dir.join("spawn.out"),
            stderr: run_dir.join("spawn.err"),
        };
        let spec = match sandbox {
            Some(bwrap) => baton_runner::sandbox::wrap(spec, bwrap, &policy),
            None => spec,
        };
        let spec = baton_runner::shim::wrap(
            spec,
            &exe,
            &run_dir.join(format!("exit{n}.json")),
            &baton_domain::Redactor::default(),
        );
        let started = Instant::now();
        let mut child = baton_runner::process::spawn(&spec)?;
        let limits = baton_runner::RunLimits {
            timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(1),
        };
        let (_keep, stop) = tokio::sync::watch::channel(false);
        let exit = child.wait(limits, stop).await;
        anyhow::ensure!(exit.success(), "the benchmark's `true` {}", exit.describe());
        samples.push(started.elapsed());
    }
    Ok(match sandbox {
        Some(_) => figure("spawn agent via baton shim + bwrap sandbox", samples),
        None => figure("spawn agent via baton shim", samples),
    })
}

/// `git rev-parse HEAD` in a fresh repository.
async fn bench_git(dir: &Path) -> anyhow::Result<Figure> {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo)?;
    let git = baton_runner::Git::new(&repo);
    git.run(&["init", "-q", "-b", "main"]).await?;
    std::fs::write(repo.join("f"), "x")?;
    git.commit_all("init").await?;
    let mut samples = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        git.run(&["rev-parse", "HEAD"]).await?;
        samples.push(started.elapsed());
    }
    Ok(figure("git rev-parse", samples))
}
