//! `baton bench idle`: what an idle `baton serve` costs over a large stored backlog. Seeds N tasks
//! (most live, spread over stages and holds, with jobs, timeline events and agent runs) in a fresh
//! data directory, starts the real binary on it (127.0.0.1, a free port), lets it settle, then
//! samples its CPU (utime + stime from `/proc/<pid>/stat`) and resident memory (VmRSS) while it is
//! left alone, and finally the latency of `GET /api/status` and `GET /api/tasks?limit=100`.

// A benchmark measures wall time and starts the binary under test: it reads the system clock and
// spawns a process on purpose.
#![allow(clippy::disallowed_methods)]

use crate::cli::EXIT_OK;
use crate::output;
use anyhow::{Context, bail, ensure};
use baton_store::Store;
use baton_store_sqlite::SqliteStore;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Linux's `USER_HZ`: the unit of `/proc/<pid>/stat` CPU times on every mainstream architecture.
const CLK_TCK: f64 = 100.0;
/// How long the server is left alone before sampling (start-up work done).
const SETTLE: Duration = Duration::from_secs(5);
/// How long the idle server is sampled.
const SAMPLE: Duration = Duration::from_secs(20);
/// Requests per measured route, one after another.
const REQUESTS: usize = 200;
/// How long `baton serve` may take to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    /// Tasks to seed (most live, spread over stages and holds).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=2_000_000))]
    pub tasks: u32,
    /// Keep the data directory here instead of a temporary one removed at the end; it must not
    /// exist yet.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
struct IdleFigures {
    scenario: &'static str,
    tasks: u32,
    seed_secs: f64,
    settle_secs: f64,
    sample_secs: f64,
    /// CPU time of the idle server over the sample, as a percentage of one core.
    idle_cpu_percent: f64,
    rss_mb: f64,
    status_p50_ms: f64,
    status_p95_ms: f64,
    tasks_p50_ms: f64,
    tasks_p95_ms: f64,
    /// The targets, each met or not.
    targets: Vec<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
struct Target {
    what: &'static str,
    /// `<` or `≤`.
    bound: &'static str,
    limit: f64,
    value: f64,
    met: bool,
}

pub async fn run(args: IdleArgs, json: bool) -> anyhow::Result<u8> {
    let (dir, keep) = super::work_dir(args.dir.as_deref(), "idle", "")?;
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

fn print_text(f: &IdleFigures) {
    println!(
        "idle `baton serve` over {} seeded tasks (seeded in {:.1} s; settled {:.0} s, sampled {:.0} s)",
        f.tasks, f.seed_secs, f.settle_secs, f.sample_secs
    );
    let rows: Vec<Vec<String>> = [
        ("idle CPU, % of one core", f.idle_cpu_percent),
        ("RSS, MB", f.rss_mb),
        ("GET /api/status p50, ms", f.status_p50_ms),
        ("GET /api/status p95, ms", f.status_p95_ms),
        ("GET /api/tasks?limit=100 p50, ms", f.tasks_p50_ms),
        ("GET /api/tasks?limit=100 p95, ms", f.tasks_p95_ms),
    ]
    .iter()
    .map(|(what, value)| {
        let target = f.targets.iter().find(|t| what.starts_with(t.what));
        vec![
            what.to_string(),
            format!("{value:.2}"),
            target
                .map_or("-".into(), |t| format!("{} {} ({})", t.bound, t.limit, if t.met { "met" } else { "MISSED" })),
        ]
    })
    .collect();
    output::table(&["MEASURE", "VALUE", "TARGET"], &rows);
    if let Some(dir) = &f.data_dir {
        println!("data directory kept: {}", dir.display());
    }
}

async fn measure(args: &IdleArgs, dir: &Path) -> anyhow::Result<IdleFigures> {
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let seeding = Instant::now();
    let store = SqliteStore::open(&data_dir.join("baton.db")).await.context("opening the benchmark database")?;
    store.bench_seed(args.tasks, now_ms).await.context("seeding the backlog")?;
    let token = baton_engine::access::new_token()?;
    store
        .create_api_token("bench", &baton_engine::access::token_digest(&token), "read", "cli:bench", now_ms)
        .await
        .context("creating the benchmark's read token")?;
    drop(store);
    let seed_secs = seeding.elapsed().as_secs_f64();

    let address = free_address()?;
    let config = dir.join("baton.toml");
    let text = format!(
        "[server]\ndata_dir = {}\nlisten = \"{address}\"\nread_requires_token = true\n",
        toml::Value::String(data_dir.display().to_string())
    );
    std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
    let log = std::fs::File::create(dir.join("serve.log")).context("creating the server log")?;
    let mut server = std::process::Command::new(crate::cli::baton_exe())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env_remove("BATON_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting `baton serve`")?;
    let outcome = sample(&mut server, address, &token, dir).await;
    let _ = server.kill();
    let _ = server.wait();
    let (idle_cpu_percent, rss_mb, status, tasks) = outcome?;
    let targets = vec![
        Target { what: "idle CPU", bound: "<", limit: 0.5, value: idle_cpu_percent, met: idle_cpu_percent < 0.5 },
        Target { what: "RSS", bound: "≤", limit: 40.0, value: rss_mb, met: rss_mb <= 40.0 },
        Target { what: "GET /api/status p50", bound: "≤", limit: 5.0, value: status.0, met: status.0 <= 5.0 },
        Target { what: "GET /api/tasks?limit=100 p50", bound: "≤", limit: 5.0, value: tasks.0, met: tasks.0 <= 5.0 },
    ];
    Ok(IdleFigures {
        scenario: "idle",
        tasks: args.tasks,
        seed_secs,
        settle_secs: SETTLE.as_secs_f64(),
        sample_secs: SAMPLE.as_secs_f64(),
        idle_cpu_percent,
        rss_mb,
        status_p50_ms: status.0,
        status_p95_ms: status.1,
        tasks_p50_ms: tasks.0,
        tasks_p95_ms: tasks.1,
        targets,
        data_dir: None,
    })
}

type Percentiles = (f64, f64);

/// Waits for the server, lets it settle, samples CPU and RSS while idle, then the latencies.
async fn sample(
    server: &mut std::process::Child,
    address: SocketAddr,
    token: &str,
    dir: &Path,
) -> anyhow::Result<(f64, f64, Percentiles, Percentiles)> {
    let pid = server.id();
    let started = Instant::now();
    loop {
        if let Some(status) = server.try_wait()? {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            bail!("`baton serve` exited ({status}) before answering:\n{log}");
        }
        if get(address, "/health", token).await.is_ok_and(|(status, _)| status == 200) {
            break;
        }
        ensure!(started.elapsed() < START_TIMEOUT, "`baton serve` did not answer /health within {START_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let (ticks_before, at_before) = (cpu_ticks(pid)?, Instant::now());
    tokio::time::sleep(SAMPLE).await;
    let (ticks_after, at_after) = (cpu_ticks(pid)?, Instant::now());
    let rss_mb = rss_kb(pid)? as f64 / 1024.0;
    let cpu_secs = (ticks_after - ticks_before) as f64 / CLK_TCK;
    let idle_cpu_percent = cpu_secs / (at_after - at_before).as_secs_f64() * 100.0;
    let status = latencies(address, "/api/status", token).await?;
    let tasks = latencies(address, "/api/tasks?limit=100&active=true", token).await?;
    Ok((idle_cpu_percent, rss_mb, status, tasks))
}

/// p50 and p95 in milliseconds of `REQUESTS` sequential GETs of `path` (each must answer 200).
async fn latencies(address: SocketAddr, path: &str, token: &str) -> anyhow::Result<Percentiles> {
    let mut samples = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let started = Instant::now();
        let (status, body) = get(address, path, token).await?;
        samples.push(started.elapsed());
        ensure!(status == 200, "GET {path}: {status}: {body}");
    }
    samples.sort();
    let at = |q: usize| samples[(samples.len() - 1) * q / 100].as_secs_f64() * 1e3;
    Ok((at(50), at(95)))
}

/// One HTTP/1.1 GET on a fresh connection: the status and the body.
async fn get(address: SocketAddr, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { bail!("GET {path}: a truncated answer") };
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no status")?;
    Ok((status, body.to_string()))
}

/// A free loopback address (bound, then released for the server to take).
fn free_address() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading the server's /proc stat")?;
    // Fields are counted after the command name's closing parenthesis (it may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(") ").context("a /proc stat line")?.1.split(' ').collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).context("a /proc stat field");
    Ok(field(11)? + field(12)?)
}

/// VmRSS of `pid`, in KiB.
fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the server's /proc status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc status")
}
