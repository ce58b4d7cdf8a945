//! `baton bench`: measures Baton's own costs next to the unavoidable work it orchestrates — a pure
//! decision, a store transition (claim + advance, one commit each), a supervised process spawn
//! through the embedded shim and through `baton shim` (bare, and inside the bubblewrap agent
//! sandbox), and a git call — so the overhead per stage transition can be read in context.
//! `baton bench webhooks`: the webhook receiver as `baton serve` runs it (same composition root,
//! same accept loop, a real SQLite file, the engine loop draining the inbox meanwhile), fed signed
//! GitHub `issues` deliveries and a share of redeliveries over loopback TCP: webhook-to-202
//! latency, deliveries per second, and a check that each delivery was stored exactly once.
//! `baton bench pipeline` (`pipeline.rs`): tickets carried end to end by the in-process engine
//! against a real git repository, next to `bench/baseline.sh` doing the same git and process work
//! without orchestration.
//! `baton bench idle`: an idle `baton serve` over a large seeded backlog (`bench/idle.rs`).
//! `baton bench store`: claims per second and advance latency on SQLite and PostgreSQL
//! (`bench/store.rs`).

// A benchmark measures wall time: it reads the system clock on purpose.
#![allow(clippy::disallowed_methods)]

mod pipeline;

use crate::cli::EXIT_OK;
use crate::output;
use anyhow::Context;
use baton_domain::{Event, GateVerdict, JobOutcome, Pipeline, TaskState, Verdict, decide};
use baton_engine::{Clock, SystemClock};
use baton_store::{Advance, Claim, JobFinish, JobStatus, NewEvent, NewTask, Store, Transition};
use baton_store_sqlite::SqliteStore;
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

/// `baton bench [SCENARIO]`: without a scenario, the core figures.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Option<Scenario>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Scenario {
    /// Signed GitHub `issues` deliveries (and redeliveries) against `POST /webhooks/github` on
    /// 127.0.0.1: webhook-to-202 latency, deliveries per second, each stored once.
    Webhooks(WebhookArgs),
    /// Tickets carried through the whole pipeline by the in-process engine (`sh -c` or script agents, human
    /// gates off, a real git repository): wall time, merges per second, jobs and events per
    /// ticket, database size; `--baseline` runs `bench/baseline.sh` for comparison.
    Pipeline(pipeline::PipelineArgs),
    /// An idle `baton serve` (the real binary, 127.0.0.1) over a seeded backlog of `--tasks`
    /// tasks: CPU % of one core and RSS while idle, `/api/status` and `/api/tasks` latency.
    Idle(idle::IdleArgs),
    /// The store's claims per second (one worker; several at once; batched) and advance latency,
    /// on SQLite and, with `--database-url`, on PostgreSQL in the same run.
    Store(store::StoreArgs),
}

mod idle;
mod store;

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// Distinct deliveries to send (each with its own delivery id).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub deliveries: u32,
    /// Redeliveries of an earlier delivery id, as a percentage of `--deliveries` (answered 202
    /// duplicate; nothing stored).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub replay_percent: u32,
    /// Senders at once, each opening one connection per delivery as GitHub does.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Keep the data directory (its `baton.db` holds the inbox) here instead of a temporary one
    /// removed at the end; it must not exist yet.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

pub async fn run(args: BenchArgs, json: bool) -> anyhow::Result<u8> {
    match args.scenario {
        None => run_core(json).await,
        Some(Scenario::Webhooks(args)) => webhooks::run(args, json).await,
        Some(Scenario::Pipeline(args)) => pipeline::run(args, json).await,
        Some(Scenario::Idle(args)) => idle::run(args, json).await,
        Some(Scenario::Store(args)) => store::run(args, json).await,
    }
}

async fn run_core(json: bool) -> anyhow::Result<u8> {
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
    let progress = output::progress("bench", 5);
    progress.step("decide");
    let mut figures = vec![bench_decide()];
    progress.step("store transactions");
    figures.extend(bench_store(dir).await?);
    progress.step("process spawn");
    let embedded = baton_runner::shim::embedded();
    if let Some(shim) = embedded {
        figures.push(bench_spawn(dir, Some(shim), None).await?);
    }
    figures.push(bench_spawn(dir, None, None).await?);
    progress.step("sandboxed spawn");
    progress.clear();
    // The sandbox's cost per agent spawn, where bubblewrap works.
    let bwrap = baton_runner::sandbox::find_bwrap(std::env::var("PATH").ok().as_deref());
    match bwrap.map(|b| baton_runner::sandbox::probe(&b, baton_runner::SandboxNetwork::Open).map(|_| b)) {
        Some(Ok(bwrap)) => figures.push(bench_spawn(dir, embedded, Some(&bwrap)).await?),
        Some(Err(why)) => eprintln!("no sandboxed spawn figure: {why}"),
        None => eprintln!("no sandboxed spawn figure: bubblewrap (`bwrap`) is not installed"),
    }
    progress.step("git");
    figures.push(bench_git(dir).await?);
    progress.finish("measured");
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
            depends_on: Vec::new(),
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
        ..Claim::default()
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

/// A supervised process running `true` through the shim — the embedded one at `embedded`, else
/// `baton shim` — waited to its end; with `sandbox`, wrapped in bubblewrap as an agent run is
/// (data directory hidden, worktree and the run directory's agent part writable).
async fn bench_spawn(dir: &Path, embedded: Option<&Path>, sandbox: Option<&Path>) -> anyhow::Result<Figure> {
    let exe = crate::cli::baton_exe();
    let data = dir.join("data");
    let (worktree, run_dir) = (data.join("worktrees/demo/BENCH-001"), data.join("runs/BENCH-001/run1"));
    std::fs::create_dir_all(&worktree)?;
    let agent_dir = baton_adapters::agent::agent_dir_of(&run_dir);
    std::fs::create_dir_all(&agent_dir)?;
    let policy = baton_runner::SandboxPolicy {
        hidden: vec![data.clone()],
        read_only: vec![exe.clone()],
        writable: vec![worktree.clone(), agent_dir],
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
            embedded.unwrap_or(&exe),
            &run_dir.join(format!("exit{n}.json")),
            &baton_domain::Redactor::default(),
        );
        let started = Instant::now();
        let mut child = baton_runner::process::spawn_as(&spec, embedded.map(|_| "baton-shim"))?;
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
    Ok(figure(
        match (embedded.is_some(), sandbox.is_some()) {
            (true, true) => "spawn agent via the embedded shim + bwrap sandbox",
            (true, false) => "spawn agent via the embedded shim",
            (false, true) => "spawn agent via baton shim + bwrap sandbox",
            (false, false) => "spawn agent via baton shim",
        },
        samples,
    ))
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

/// A benchmark's working directory, created and canonical: `--dir` (which must not exist yet,
/// `hint` says why; kept afterwards) or a new temporary one the caller removes (`false`).
fn work_dir(dir: Option<&Path>, scenario: &str, hint: &str) -> anyhow::Result<(std::path::PathBuf, bool)> {
    let (dir, keep) = match dir {
        Some(dir) => {
            anyhow::ensure!(!dir.exists(), "--dir {} already exists: name a new directory{hint}", dir.display());
            (dir.to_path_buf(), true)
        }
        None => (std::env::temp_dir().join(format!("baton-bench-{scenario}-{}", std::process::id())), false),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    Ok((dir, keep))
}

mod webhooks {
    //! The webhook scenario: `open_engine` and `serve_with` as `baton serve` calls them, then
    //! senders on loopback TCP with one connection per delivery.

    use super::WebhookArgs;
    use crate::cli::EXIT_OK;
    use crate::output;
    use anyhow::{Context, bail, ensure};
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The webhook secret of the benchmark's own server (loopback only, gone at the end).
    const SECRET: &str = "baton-bench-webhook-secret-9f86d081884c7d65";
    /// How long the engine loop may take to parse every stored delivery after the last answer.
    const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

    /// What the scenario measured.
    #[derive(Debug, serde::Serialize)]
    pub struct WebhookFigures {
        scenario: &'static str,
        /// Distinct deliveries sent.
        deliveries: usize,
        /// Redeliveries sent (an earlier delivery id again).
        replays: usize,
        concurrency: usize,
        body_bytes: usize,
        /// Answers `202 {"duplicate": false}` and `202 {"duplicate": true}`.
        accepted_new: usize,
        accepted_duplicate: usize,
        /// Rows in the inbox afterwards, and how many distinct delivery ids they hold.
        stored: usize,
        stored_distinct: usize,
        /// Webhook-to-202 over every request: connect, send, full answer read.
        p50_us: f64,
        p99_us: f64,
        max_us: f64,
        mean_us: f64,
        /// Redeliveries alone.
        replay_p50_us: f64,
        replay_p99_us: f64,
        /// Requests answered per second of wall time (deliveries and replays).
        requests_per_sec: f64,
        /// Distinct deliveries stored per second of wall time.
        deliveries_per_sec: f64,
        /// From the last answer until the engine loop had parsed every stored delivery.
        drain_ms: f64,
        /// Where the database was kept (`--dir`), if anywhere.
        #[serde(skip_serializing_if = "Option::is_none")]
        data_dir: Option<PathBuf>,
    }

    /// One request to make: a delivery id, and whether it repeats an earlier one.
    struct Send {
        delivery: String,
        number: u64,
        replay: bool,
    }

    /// One answer: how long it took and whether the server called it a duplicate.
    struct Answer {
        took: Duration,
        replay: bool,
        duplicate: bool,
    }

    pub async fn run(args: WebhookArgs, json: bool) -> anyhow::Result<u8> {
        let (dir, keep) = super::work_dir(args.dir.as_deref(), "webhooks", " (the benchmark needs an empty inbox)")?;
        let result = measure(&args, &dir).await;
        if !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let mut figures = result?;
        if keep {
            figures.data_dir = Some(dir.join("data"));
        }
        if json {
            output::print_json(&figures);
        } else {
            print_text(&figures);
        }
        Ok(EXIT_OK)
    }

    fn print_text(f: &WebhookFigures) {
        println!(
            "POST /webhooks/github on 127.0.0.1 (SQLite inbox, engine loop running): {} deliveries + {} replays \
             of {} bytes, {} sender(s), one connection each",
            f.deliveries, f.replays, f.body_bytes, f.concurrency
        );
        let rows = vec![
            vec![
                "webhook → 202, all requests".into(),
                format!("{:.0}", f.p50_us),
                format!("{:.0}", f.p99_us),
                format!("{:.0}", f.max_us),
            ],
            vec![
                "webhook → 202, replays only".into(),
                format!("{:.0}", f.replay_p50_us),
                format!("{:.0}", f.replay_p99_us),
                "-".into(),
            ],
        ];
        output::table(&["MEASURE", "P50 µs", "P99 µs", "MAX µs"], &rows);
        println!(
            "{:.0} deliveries/s ({:.0} requests/s); 202 new: {}, 202 duplicate: {}; stored: {} rows, {} distinct ids; \
             inbox parsed {:.0} ms after the last answer",
            f.deliveries_per_sec,
            f.requests_per_sec,
            f.accepted_new,
            f.accepted_duplicate,
            f.stored,
            f.stored_distinct,
            f.drain_ms
        );
        if let Some(dir) = &f.data_dir {
            println!("data directory kept: {}", dir.display());
        }
    }

    async fn measure(args: &WebhookArgs, dir: &Path) -> anyhow::Result<WebhookFigures> {
        let data_dir = dir.join("data");
        // The configuration `baton serve` would read, through the same loader; no environment, so
        // no `BATON_*` override of the caller's shell changes what is measured.
        let text = format!(
            "[server]\ndata_dir = {}\n\n[webhooks]\ngithub_secret = \"{SECRET}\"\n",
            toml::Value::String(data_dir.display().to_string())
        );
        let config = baton::config::load_str(&text, &[], dir, crate::cli::baton_exe()).map_err(|issues| {
            let all: Vec<String> = issues.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("the benchmark's configuration: {}", all.join("; "))
        })?;
        let engine = crate::cli::open_engine(&config).await?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let engine_loop = tokio::spawn(engine.clone().run(stop_rx.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding 127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let state = baton_http::AppState {
            engine: engine.clone(),
            api_token: None,
            read_requires_token: false,
            started_at_ms: 0,
            webhooks: config.webhooks.clone(),
            observability: baton_http::Observability::default(),
            dashboard: baton_http::Dashboard::default(),
        };
        let settings = baton_http::server::ServerSettings {
            max_connections: config.server.max_connections,
            header_timeout: Duration::from_secs(config.server.header_timeout_secs),
            idle_timeout: Duration::from_secs(config.server.idle_timeout_secs),
            ..Default::default()
        };
        let mut http_stop = stop_rx.clone();
        let server = tokio::spawn(baton_http::server::serve_with(listener, state, settings, async move {
            let _ = http_stop.changed().await;
        }));

        let outcome = drive(args, address).await;
        let drain = match &outcome {
            Ok(_) => wait_drained(&engine).await,
            Err(_) => Ok(Duration::ZERO),
        };
        let rows = engine.store().deliveries(Some("github")).await;
        let _ = stop_tx.send(true);
        let _ = engine_loop.await;
        let _ = server.await;
        let (answers, wall, body_bytes) = outcome?;
        let drain = drain?;
        let rows = rows?;

        let deliveries = args.deliveries as usize;
        let replays = answers.iter().filter(|a| a.replay).count();
        let accepted_duplicate = answers.iter().filter(|a| a.duplicate).count();
        let accepted_new = answers.len() - accepted_duplicate;
        let stored_distinct = rows.iter().map(|r| r.delivery_id.as_str()).collect::<HashSet<_>>().len();
        ensure!(
            accepted_new == deliveries && accepted_duplicate == replays,
            "expected {deliveries} new and {replays} duplicate answers, got {accepted_new} and {accepted_duplicate}"
        );
        ensure!(
            rows.len() == deliveries && stored_distinct == deliveries,
            "expected each of the {deliveries} deliveries stored once, found {} rows with {stored_distinct} distinct ids",
            rows.len()
        );
        let all: Vec<Duration> = answers.iter().map(|a| a.took).collect();
        let replayed: Vec<Duration> = answers.iter().filter(|a| a.replay).map(|a| a.took).collect();
        let (p50, p99, max, mean) = percentiles(all);
        let (replay_p50, replay_p99, _, _) = percentiles(replayed);
        let secs = wall.as_secs_f64().max(1e-9);
        Ok(WebhookFigures {
            scenario: "webhooks",
            deliveries,
            replays,
            concurrency: args.concurrency as usize,
            body_bytes,
            accepted_new,
            accepted_duplicate,
            stored: rows.len(),
            stored_distinct,
            p50_us: p50,
            p99_us: p99,
            max_us: max,
            mean_us: mean,
            replay_p50_us: replay_p50,
            replay_p99_us: replay_p99,
            requests_per_sec: answers.len() as f64 / secs,
            deliveries_per_sec: deliveries as f64 / secs,
            drain_ms: drain.as_secs_f64() * 1e3,
            data_dir: None,
        })
    }

    /// p50, p99, max and mean in microseconds (nearest rank); zeros for no samples.
    fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64, f64) {
        if samples.is_empty() {
            return (0.0, 0.0, 0.0, 0.0);
        }
        samples.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let rank = |q: f64| us(samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]);
        let mean = samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64;
        (rank(0.50), rank(0.99), us(samples[samples.len() - 1]), mean)
    }

    /// The requests in order: every `every`-th delivery is followed by a redelivery of one sent
    /// well before it (far enough back that concurrent senders have had it answered).
    fn plan(args: &WebhookArgs) -> Vec<Send> {
        let deliveries = args.deliveries as usize;
        let replays = deliveries * args.replay_percent as usize / 100;
        let run = std::process::id();
        let id = |i: usize| format!("bench-{run:x}-{i:08}");
        let mut sends = Vec::with_capacity(deliveries + replays);
        let every = deliveries.checked_div(replays).unwrap_or(usize::MAX);
        let mut replayed = 0;
        for i in 0..deliveries {
            sends.push(Send { delivery: id(i), number: i as u64 + 1, replay: false });
            if replayed < replays && (i + 1) % every == 0 {
                let earlier = i / 2;
                sends.push(Send { delivery: id(earlier), number: earlier as u64 + 1, replay: true });
                replayed += 1;
            }
        }
        sends
    }

    /// Sends the plan with `concurrency` senders; returns each answer, the wall time and the
    /// size of a body.
    async fn drive(args: &WebhookArgs, address: SocketAddr) -> anyhow::Result<(Vec<Answer>, Duration, usize)> {
        let sends = Arc::new(plan(args));
        let body_bytes = issue_body(1).len();
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut senders = Vec::new();
        for _ in 0..args.concurrency {
            let (sends, next) = (sends.clone(), next.clone());
            senders.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(send) = sends.get(n) else { break };
                    answers.push(deliver(address, send).await?);
                }
                anyhow::Ok(answers)
            }));
        }
        let mut answers = Vec::with_capacity(sends.len());
        for sender in senders {
            answers.extend(sender.await.context("a sender panicked")??);
        }
        Ok((answers, started.elapsed(), body_bytes))
    }

    /// One delivery as GitHub sends it: its own connection, signed body, read to the end.
    async fn deliver(address: SocketAddr, send: &Send) -> anyhow::Result<Answer> {
        let body = issue_body(send.number);
        let signature = baton_http::webhooks::sign(SECRET.as_bytes(), &body);
        let head = format!(
            "POST /webhooks/github HTTP/1.1\r\nHost: {address}\r\nUser-Agent: GitHub-Hookshot/bench\r\n\
             Content-Type: application/json\r\nX-GitHub-Event: issues\r\nX-GitHub-Delivery: {}\r\n\
             X-GitHub-Hook-ID: 1\r\nX-Hub-Signature-256: sha256={signature}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            send.delivery,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(&body);
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(address).await.context("connecting to the benchmark server")?;
        stream.set_nodelay(true)?;
        stream.write_all(&request).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&answer);
        let Some((status, json)) = text.split_once("\r\n\r\n") else {
            bail!("delivery {}: a truncated answer: {text}", send.delivery);
        };
        if !status.starts_with("HTTP/1.1 202 ") {
            bail!("delivery {}: expected 202 Accepted, got: {text}", send.delivery);
        }
        let json: serde_json::Value = serde_json::from_str(json)
            .with_context(|| format!("delivery {}: the answer body: {json}", send.delivery))?;
        let Some(duplicate) = json["duplicate"].as_bool() else {
            bail!("delivery {}: the answer has no `duplicate`: {json}", send.delivery);
        };
        if json["delivery_id"] != send.delivery.as_str() {
            bail!("delivery {}: the answer names another delivery: {json}", send.delivery);
        }
        Ok(Answer { took, replay: send.replay, duplicate })
    }

    /// A GitHub `issues` `labeled` delivery of issue `number`, shaped like the real one (the
    /// fields Baton reads, and the repository and user objects that make up most of its size).
    fn issue_body(number: u64) -> Vec<u8> {
        let user = |login: &str, id: u64| {
            serde_json::json!({
                "login": login, "id": id, "node_id": format!("U_kgDO{id:08}"), "type": "User",
                "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
                "html_url": format!("https://github.com/{login}"), "site_admin": false,
                "url": format!("https://api.github.com/users/{login}"),
            })
        };
        let label = |name: &str, id: u64, color: &str| {
            serde_json::json!({ "id": id, "node_id": format!("LA_kwDO{id:08}"), "name": name, "color": color,
                "default": false, "description": null,
                "url": format!("https://api.github.com/repos/acme/shop/labels/{name}") })
        };
        let issue_url = format!("https://api.github.com/repos/acme/shop/issues/{number}");
        let payload = serde_json::json!({
            "action": "labeled",
            "issue": {
                "url": issue_url,
                "repository_url": "https://api.github.com/repos/acme/shop",
                "labels_url": format!("{issue_url}/labels{{/name}}"),
                "comments_url": format!("{issue_url}/comments"),
                "events_url": format!("{issue_url}/events"),
                "html_url": format!("https://github.com/acme/shop/issues/{number}"),
                "id": 2_000_000_000u64 + number, "node_id": format!("I_kwDO{number:08}"), "number": number,
                "title": format!("Checkout shows the wrong total for order {number}"),
                "user": user("alice", 1001),
                "labels": [label("bug", 1, "d73a4a"), label("baton", 2, "0e8a16")],
                "state": "open", "locked": false, "assignee": null, "assignees": [], "milestone": null,
                "comments": 0, "created_at": "2026-01-05T10:00:00Z", "updated_at": "2026-01-05T10:00:05Z",
                "closed_at": null, "author_association": "MEMBER", "active_lock_reason": null,
                "body": "When a coupon and a gift card are both applied, the total on the checkout page \
                         is computed before the coupon. Steps: add any item, apply coupon SAVE10, pay \
                         part with a gift card. Expected: total minus 10%, then the gift card.",
                "reactions": { "url": format!("{issue_url}/reactions"), "total_count": 0 },
                "timeline_url": format!("{issue_url}/timeline"), "state_reason": null,
            },
            "label": label("baton", 2, "0e8a16"),
            "repository": {
                "id": 700_000_001u64, "node_id": "R_kgDOKshop", "name": "shop", "full_name": "acme/shop",
                "private": true, "owner": user("acme", 9001), "html_url": "https://github.com/acme/shop",
                "description": "The shop", "fork": false, "url": "https://api.github.com/repos/acme/shop",
                "created_at": "2025-03-01T09:00:00Z", "updated_at": "2026-01-05T09:00:00Z",
                "pushed_at": "2026-01-05T09:30:00Z", "git_url": "git://github.com/acme/shop.git",
                "ssh_url": "git@github.com:acme/shop.git", "clone_url": "https://github.com/acme/shop.git",
                "size": 5120, "stargazers_count": 0, "watchers_count": 0, "language": "Rust",
                "has_issues": true, "open_issues_count": 12, "visibility": "private", "forks": 0,
                "default_branch": "main",
            },
            "sender": user("alice", 1001),
        });
        serde_json::to_vec(&payload).unwrap_or_default()
    }

    /// Waits until the engine loop has parsed every stored delivery; returns how long it took.
    async fn wait_drained(engine: &baton_engine::Engine) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            if engine.store().pending_deliveries(1).await?.is_empty() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > DRAIN_TIMEOUT {
                bail!("the engine loop left deliveries unparsed {} s after the last answer", DRAIN_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
