//! `baton bench pipeline`: N tickets carried through the whole default pipeline by the engine,
//! in process and built as `baton serve` builds it (`open_engine`), against a real local git
//! repository — `sh -c` agents (or the script agent), every human gate off, trivial test/deploy/health commands — so what
//! is measured is Baton's orchestration around the unavoidable git and process work. With
//! `--baseline`, `bench/baseline.sh` does that same work with the same parallelism and no
//! orchestration, and the figures are set side by side (docs/bench.md).

// A benchmark measures wall time and waits in real time: it reads the system clock on purpose.
#![allow(clippy::disallowed_methods)]

use crate::cli::{EXIT_ERROR, EXIT_OK};
use crate::output;
use anyhow::{Context, bail, ensure};
use baton_domain::{GateSpec, Hold, Pipeline};
use baton_engine::{Engine, Input, NewTaskRequest};
use baton_store::{TaskFilter, TaskRecord};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the bench looks at the task counts while many tickets are still under way.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// How often it looks once the last few are: the end of the run is then known within a few
/// milliseconds, as the baseline's own clock knows its end, and not up to a whole poll late.
const SETTLE_POLL_CLOSE: Duration = Duration::from_millis(5);
/// Events read per page when counting a task's timeline.
const EVENTS_PAGE: u32 = 500;
/// The baseline script, embedded so the bench runs the committed one from any directory.
const BASELINE_SCRIPT: &str = include_str!("../../../../bench/baseline.sh");

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// Tickets to carry from analysis to done.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub tickets: u32,
    /// What the repository's `test` command costs: 0 runs `true`, more runs `sleep` that long.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=600_000))]
    pub test_sleep_ms: u32,
    /// Jobs at once (`limits.running_max`, and `running_per_repo_max` of the one repository);
    /// the baseline runs as many tickets at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub parallel: u32,
    /// The merge queue's starting speculation depth (`limits.merge_queue_depth`: changes tested
    /// at once, each on top of the ones ahead); default: the configuration's default (3).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub depth: Option<u32>,
    /// The repository's `merge_batch`: up to this many queued changes tested as one and landed as
    /// one commit (1: every change tested on its own).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub batch: u32,
    /// Measure the merge queue alone: every ticket waits for its deploy confirmation until all of
    /// them do, then all are confirmed at once and the merges are timed from there (the baseline
    /// then does every ticket's stages first and the merges one after another: the serial floor).
    #[arg(long)]
    pub queue: bool,
    /// Also run `bench/baseline.sh` with the same tickets, parallelism and test cost, and report
    /// Baton/baseline ratios.
    #[arg(long)]
    pub baseline: bool,
    /// Run the baseline with `--minimal`: without the git reads behind Baton's reports (the
    /// per-stage diff stat, the hand-off's commits, diff stat and documents) and moving main by
    /// `update-ref`, leaving its checkout behind.
    #[arg(long, requires = "baseline")]
    pub minimal_baseline: bool,
    /// Run the baseline with `--sandbox`: each of its agent stages confined as Baton's default
    /// sandbox confines an agent (bubblewrap), so the ratio leaves the sandbox's own cost out.
    #[arg(long, requires = "baseline", conflicts_with = "unsandboxed")]
    pub sandboxed_baseline: bool,
    /// Run Baton's agents without its sandbox (`[sandbox] mode = "off"`), as the plain baseline
    /// runs its stages: the same process work on both sides without bubblewrap.
    #[arg(long)]
    pub unsandboxed: bool,
    /// Measure this many times, Baton and (with `--baseline`) the baseline alternately, each run
    /// in a fresh directory; the figures shown are the run with the median wall-time ratio (on a
    /// shared machine one run's load says little), and every run's pair is listed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// Stop waiting after this long: the figures of the tickets settled by then are printed and
    /// the run fails (exit 1).
    #[arg(long, default_value_t = 1_800, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_secs: u64,
    /// Keep the data directory, the repository and the baseline's files here instead of a
    /// temporary directory removed at the end; it must not exist yet.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The agent every stage runs: `shell` (the `command` adapter running `sh -c`, the same
    /// process the baseline starts for a stage) or `script` (Baton's own script agent, `baton
    /// agent-script`, as the end-to-end tests use it).
    #[arg(long, value_enum, default_value_t = BenchAgent::Shell)]
    pub agent: BenchAgent,
}

/// The agent process of `baton bench pipeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchAgent {
    /// `sh -c` writing the stage's file.
    Shell,
    /// `baton agent-script` with the bench's script.
    Script,
}

/// What the scenario measured.
#[derive(Debug, serde::Serialize)]
pub struct PipelineFigures {
    scenario: &'static str,
    tickets: usize,
    parallel: u32,
    test_sleep_ms: u32,
    /// `--depth` as given (the merge queue's starting speculation depth).
    depth: Option<u32>,
    /// `--batch` (the repository's `merge_batch`).
    batch: u32,
    /// `--queue`: the merges were timed from the moment every ticket was confirmed at once.
    queue: bool,
    /// `--minimal-baseline`: the baseline left out the git reads behind Baton's reports.
    minimal_baseline: bool,
    /// `--sandboxed-baseline`: the baseline's agent stages ran under bubblewrap, as Baton's do.
    sandboxed_baseline: bool,
    /// `--unsandboxed`: Baton's agents ran without its sandbox.
    unsandboxed: bool,
    /// Whether Baton's agents ran under its sandbox (`bwrap`): its default where bubblewrap works.
    sandboxed: bool,
    /// `--agent`: the process every agent stage ran.
    agent: BenchAgent,
    /// Tickets that reached `done`, and the rest (blocked, cancelled, or still under way at the
    /// timeout).
    tickets_done: usize,
    tickets_not_done: usize,
    /// Whether `--timeout-secs` ran out before every ticket settled (the figures are partial).
    timed_out: bool,
    /// From filing the first ticket until every ticket was settled (or the timeout).
    wall_s: f64,
    /// Processor time (user + system) of Baton and every process it waited for (git, agents,
    /// commands) over that time.
    cpu_s: f64,
    /// `merged` timeline events, and the merge phase from the first to the last of them.
    merges: usize,
    merge_phase_s: f64,
    /// Merges after the first over the merge phase (the baseline's definition too).
    merges_per_s: f64,
    /// Rows in the jobs and the events tables, per ticket.
    jobs_per_ticket: f64,
    events_per_ticket: f64,
    /// The SQLite database with its write-ahead log, at the end.
    db_bytes: u64,
    /// `bench/baseline.sh` with the same tickets, parallelism and test cost (`--baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<Baseline>,
    /// Baton's figure divided by the baseline's (`--baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<Ratio>,
    /// Where the files were kept (`--dir`), if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Every run of `--runs`, in order (only when more than one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    runs: Vec<RunPair>,
}

/// One run of `--runs`: Baton's and the baseline's times.
#[derive(Debug, Clone, serde::Serialize)]
struct RunPair {
    wall_s: f64,
    cpu_s: f64,
    baseline_s: Option<f64>,
    baseline_cpu_s: Option<f64>,
    wall_ratio: Option<f64>,
}

/// The one JSON line `bench/baseline.sh` prints, and the processor time the bench measured.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Baseline {
    tickets: usize,
    seconds: f64,
    merges_per_s: f64,
    #[serde(default)]
    cpu_s: f64,
}

/// Processor seconds (user + system) used so far by this process and by the children it has
/// waited for (and theirs).
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let seconds = |who| {
        getrusage(who).map_or(0.0, |u| {
            let (user, system) = (u.user_time(), u.system_time());
            user.tv_sec() as f64 + user.tv_usec() as f64 / 1e6 + system.tv_sec() as f64 + system.tv_usec() as f64 / 1e6
        })
    };
    seconds(UsageWho::RUSAGE_SELF) + seconds(UsageWho::RUSAGE_CHILDREN)
}

/// Baton/baseline: above 1 for the wall time means Baton is slower; below 1 for merges per
/// second means Baton merges more slowly.
#[derive(Debug, serde::Serialize)]
struct Ratio {
    /// `null` when Baton timed out: its wall time is then only a lower bound.
    wall: Option<f64>,
    merges_per_s: f64,
}

pub async fn run(args: PipelineArgs, json: bool) -> anyhow::Result<u8> {
    let (dir, keep) = super::work_dir(args.dir.as_deref(), "pipeline", "")?;
    let mut all = Vec::new();
    for run in 1..=args.runs {
        let run_dir = if args.runs == 1 { dir.clone() } else { dir.join(format!("run-{run}")) };
        if let Err(error) = std::fs::create_dir_all(&run_dir) {
            bail!("creating {}: {error}", run_dir.display());
        }
        let result = measure(&args, &run_dir).await;
        if !keep && args.runs > 1 {
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        match result {
            Ok(figures) => all.push(figures),
            Err(error) => {
                if !keep {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(error);
            }
        }
    }
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let pairs: Vec<RunPair> = all
        .iter()
        .map(|f| RunPair {
            wall_s: f.wall_s,
            cpu_s: f.cpu_s,
            baseline_s: f.baseline.as_ref().map(|b| b.seconds),
            baseline_cpu_s: f.baseline.as_ref().map(|b| b.cpu_s),
            wall_ratio: f.ratio.as_ref().and_then(|r| r.wall),
        })
        .collect();
    // The run with the median wall ratio (or wall time, without a baseline) stands for them all.
    let key = |f: &PipelineFigures| f.ratio.as_ref().and_then(|r| r.wall).unwrap_or(f.wall_s);
    all.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let mut figures = all.swap_remove(all.len() / 2);
    if pairs.len() > 1 {
        figures.runs = pairs;
    }
    if keep {
        figures.data_dir = Some(dir);
    }
    if json {
        output::print_json(&figures);
    } else {
        print_text(&figures);
    }
    // The figures are printed either way; a ticket short of done fails the run.
    Ok(if figures.tickets_not_done == 0 { EXIT_OK } else { EXIT_ERROR })
}

async fn measure(args: &PipelineArgs, dir: &Path) -> anyhow::Result<PipelineFigures> {
    let project = dir.join("project");
    create_repo(&project).await?;
    std::fs::write(dir.join("script.toml"), SCRIPT).context("writing the agents' script")?;
    let mut config = load_config(args, dir)?;
    config.engine.pipeline = pipeline_without_human_gates(args.queue);
    let engine = crate::cli::open_engine(&config).await?;

    let cpu_before = cpu_seconds();
    let started = Instant::now();
    // The tickets reach a running engine, as they reach `baton serve`: the first is worked on
    // while the rest are filed.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let engine_loop = tokio::spawn(engine.clone().run(stop_rx));
    let ids = match file_tickets(&engine, args.tickets).await {
        Ok(ids) => ids,
        Err(error) => {
            let _ = stop_tx.send(true);
            let _ = engine_loop.await;
            return Err(error);
        }
    };
    let timeout = Duration::from_secs(args.timeout_secs);
    let settled = wait_settled(&engine, ids.len(), args.parallel as usize, args.queue, started, timeout).await;
    let wall = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    let _ = stop_tx.send(true);
    let _ = engine_loop.await;
    let timed_out = !settled?;

    let mut figures = count(&engine, &ids, wall).await?;
    figures.cpu_s = cpu;
    figures.timed_out = timed_out;
    if timed_out {
        eprintln!(
            "bench pipeline: timed out after {} s with {} of {} tickets done; the figures below cover what settled",
            args.timeout_secs, figures.tickets_done, figures.tickets
        );
    }
    figures.parallel = args.parallel;
    figures.test_sleep_ms = args.test_sleep_ms;
    figures.depth = args.depth;
    figures.queue = args.queue;
    figures.minimal_baseline = args.minimal_baseline;
    figures.sandboxed_baseline = args.sandboxed_baseline;
    figures.unsandboxed = args.unsandboxed;
    figures.sandboxed = engine
        .sandbox()
        .is_some_and(|s| matches!(s.confinement(None), baton_engine::sandbox::Confinement::Sandboxed { .. }));
    figures.agent = args.agent;
    figures.batch = args.batch;
    figures.db_bytes = ["baton.db", "baton.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(config.engine.data_dir.join(name)).ok())
        .map(|meta| meta.len())
        .sum();
    if args.baseline {
        let baseline = run_baseline(args, dir, timeout).await?;
        figures.ratio = Some(Ratio {
            wall: (!figures.timed_out).then(|| figures.wall_s / baseline.seconds.max(1e-9)),
            merges_per_s: figures.merges_per_s / baseline.merges_per_s.max(1e-9),
        });
        figures.baseline = Some(baseline);
    }
    Ok(figures)
}

/// The default pipeline with every human gate removed: no approval gate on any stage and no
/// confirmation before any actor, wherever those sit — except, with `keep_confirm` (`--queue`),
/// the deploy confirmation before the merge queue, which holds every ticket until all are ready.
fn pipeline_without_human_gates(keep_confirm: bool) -> Pipeline {
    let mut pipeline = Pipeline::default_pipeline();
    for stage in &mut pipeline.stages {
        stage.gates.retain(|gate| !matches!(gate, GateSpec::HumanApproval));
        stage.confirm_before &= keep_confirm && stage.is_merge_gate();
    }
    pipeline
}

/// A real repository with one commit on `main`.
async fn create_repo(project: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(project.join("tickets")).with_context(|| format!("creating {}", project.display()))?;
    std::fs::write(project.join("README.md"), "The repository of `baton bench pipeline`.\n")?;
    std::fs::write(project.join("tickets/.keep"), "")?;
    let git = baton_runner::Git::new(project);
    git.run(&["init", "-q", "-b", "main"]).await?;
    git.commit_all("Initial commit").await?;
    Ok(())
}

/// The configuration `baton serve` would read, through the same loader and no environment (no
/// `BATON_*` override of the caller's shell changes what is measured). Retries and merge-gate
/// deferrals are as short as the settings allow, and deferrals never run out.
fn load_config(args: &PipelineArgs, dir: &Path) -> anyhow::Result<baton::config::Config> {
    let path = |p: PathBuf| toml::Value::String(p.display().to_string());
    let test = match args.test_sleep_ms {
        0 => "[\"true\"]".to_string(),
        ms => format!("[\"sleep\", \"{}.{:03}\"]", ms / 1000, ms % 1000),
    };
    let text = format!(
        "[server]\ndata_dir = {data}\n\n\
         [limits]\nrunning_max = {p}\nrunning_per_repo_max = {p}\nretry_base_secs = 1\nmerge_defer_secs = 1\n\
         merge_defer_max = {defer_max}\npoll_interval_ms = 100\n{depth}\n\
         [[repos]]\nname = \"bench\"\npath = {project}\ndefault_branch = \"main\"\nprefix = \"BENCH\"\n\
         test = {test}\ndeploy = [\"true\"]\nhealth = [\"true\"]\nmerge_batch = {batch}\n\n\
         {sandbox}{agent}",
        data = path(dir.join("data")),
        p = args.parallel,
        batch = args.batch,
        depth = args
            .depth
            .map(|d| format!("merge_queue_depth = {d}\nmerge_queue_depth_max = {}", d.max(8)))
            .unwrap_or_default(),
        // Every ticket may wait for every other one at the merge gate, a second per deferral.
        defer_max = 1_000 + 10 * args.tickets,
        project = path(dir.join("project")),
        sandbox = if args.unsandboxed { "[sandbox]\nmode = \"off\"\n\n" } else { "" },
        agent = match args.agent {
            BenchAgent::Script =>
                format!("[agents.default]\nadapter = \"script\"\nscript = {}\n", path(dir.join("script.toml"))),
            BenchAgent::Shell => format!(
                "[agents.default]\nadapter = \"command\"\ncommand = [\"sh\", \"-c\", {}]\n",
                toml::Value::String(SHELL_AGENT.to_string())
            ),
        },
    );
    baton::config::load_str(&text, &[], dir, crate::cli::baton_exe()).map_err(|issues| {
        let all: Vec<String> = issues.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the benchmark's configuration: {}", all.join("; "))
    })
}

/// What the shell agent does, by stage: the same files as [`SCRIPT`], each written by one `sh`,
/// as the baseline's stages are.
const SHELL_AGENT: &str = r#"d="docs/baton/$BATON_WORK_ITEM"
case "$BATON_STAGE" in
  analysis) mkdir -p "$d" && printf '# %s\n' "$BATON_WORK_ITEM" > "$d/01-analysis.md" ;;
  architecture) mkdir -p "$d" && printf '# %s\n' "$BATON_WORK_ITEM" > "$d/02-architecture.md" ;;
  development) printf '%s\n' "$BATON_TASK_TITLE" > "tickets/$BATON_WORK_ITEM.txt" ;;
  review) mkdir -p "$d" && printf -- '---\nverdict: approve\n---\n' > "$d/04-review.md" ;;
  testing) mkdir -p "$d" && printf -- '---\nverdict: pass\n---\n' > "$d/05-test-report.md" ;;
  *) echo "no work for stage $BATON_STAGE" >&2; exit 1 ;;
esac
"#;

/// What the script agents do: the artifacts every gate asks for, and one distinct file per ticket
/// from the developer, so no two merges conflict.
const SCRIPT: &str = r##"# Written by `baton bench pipeline`: the smallest work that passes every gate.
[[task]]
match = "*"
[[task.step]]
stage = "analysis"
actions = [{ write = { path = "docs/baton/{work_item}/01-analysis.md", content = "# {work_item}\n" } }]
[[task.step]]
stage = "architecture"
actions = [{ write = { path = "docs/baton/{work_item}/02-architecture.md", content = "# {work_item}\n" } }]
[[task.step]]
stage = "development"
actions = [{ write = { path = "tickets/{work_item}.txt", content = "{title}\n" } }]
[[task.step]]
stage = "review"
actions = [{ write = { path = "docs/baton/{work_item}/04-review.md", content = "---\nverdict: approve\n---\n" } }]
[[task.step]]
stage = "testing"
actions = [{ write = { path = "docs/baton/{work_item}/05-test-report.md", content = "---\nverdict: pass\n---\n" } }]
"##;

async fn file_tickets(engine: &Arc<Engine>, tickets: u32) -> anyhow::Result<Vec<baton_domain::TaskId>> {
    let mut ids = Vec::with_capacity(tickets as usize);
    for n in 1..=tickets {
        let task = engine
            .create_task(NewTaskRequest {
                repo: "bench".into(),
                title: format!("Bench ticket {n}"),
                body: "Add this ticket's file under tickets/.".into(),
                external_ref: None,
            })
            .await?;
        ids.push(task.id);
    }
    Ok(ids)
}

/// Waits until every ticket is done, cancelled or blocked (true) or `timeout` ran out (false); a
/// ticket waiting for a human (there are no human gates) fails the bench at once. With `queue`,
/// the tickets waiting for their deploy confirmation are all confirmed once every ticket waits.
/// It looks every [`SETTLE_POLL`], and every [`SETTLE_POLL_CLOSE`] once no more than `parallel`
/// tickets are left.
async fn wait_settled(
    engine: &Arc<Engine>,
    tickets: usize,
    parallel: usize,
    queue: bool,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let progress = output::progress("bench pipeline", tickets as u64);
    let mut confirmed = !queue;
    loop {
        if !confirmed {
            let counts = engine.store().task_counts().await?;
            let waiting: u64 = counts.iter().filter(|c| c.hold == "awaiting_confirm").map(|c| c.tasks).sum();
            if waiting as usize >= tickets {
                progress.step("every ticket is ready: confirming all deploys at once");
                let held =
                    engine.store().list_tasks(&TaskFilter { active_only: true, ..TaskFilter::default() }).await?;
                for task in held.iter().filter(|t| t.state.hold == Hold::AwaitingConfirm) {
                    engine.submit(&baton_store::TaskKey::Id(task.id), Input::ConfirmDeploy, "bench", None).await?;
                }
                confirmed = true;
            }
        }
        let counts = engine.store().task_counts().await?;
        let mut settled = 0;
        let mut done = 0;
        for count in &counts {
            let terminal =
                count.stage == baton_domain::pipeline::DONE || count.stage == baton_domain::pipeline::CANCELLED;
            if terminal || count.hold == "blocked" {
                settled += count.tasks as usize;
            }
            if count.stage == baton_domain::pipeline::DONE {
                done += count.tasks as usize;
            }
            let human = ["awaiting_approval", "awaiting_confirm", "needs_input"].contains(&count.hold.as_str());
            if human && !(queue && count.hold == "awaiting_confirm") {
                progress.clear();
                bail!(
                    "{} ticket(s) at {} wait for a human ({}): the bench turns every human gate off",
                    count.tasks,
                    count.stage,
                    count.hold
                );
            }
        }
        progress.set(done as u64, "tickets done");
        if settled >= tickets {
            progress.finish("settled");
            return Ok(true);
        }
        if started.elapsed() > timeout {
            progress.clear();
            return Ok(false);
        }
        let close = tickets.saturating_sub(settled) <= parallel.max(1);
        tokio::time::sleep(if close { SETTLE_POLL_CLOSE } else { SETTLE_POLL }).await;
    }
}

/// The figures read back from the store: outcomes, merges, jobs and events per ticket.
async fn count(engine: &Arc<Engine>, ids: &[baton_domain::TaskId], wall: Duration) -> anyhow::Result<PipelineFigures> {
    let store = engine.store();
    let tasks: Vec<TaskRecord> = store.list_tasks(&TaskFilter::default()).await?;
    let tickets_done = tasks.iter().filter(|t| t.state.stage == baton_domain::pipeline::DONE).count();
    let (mut jobs, mut events, mut merged_at_ms) = (0usize, 0usize, Vec::new());
    for id in ids {
        jobs += store.jobs_for_task(*id).await?.len();
        let mut after = 0;
        loop {
            let page = store.events(Some(*id), after, EVENTS_PAGE).await?;
            events += page.len();
            merged_at_ms.extend(page.iter().filter(|e| e.kind == "merged").map(|e| e.at_ms));
            match page.last() {
                Some(last) if page.len() == EVENTS_PAGE as usize => after = last.id,
                _ => break,
            }
        }
    }
    merged_at_ms.sort_unstable();
    let merge_phase_s = match (merged_at_ms.first(), merged_at_ms.last()) {
        (Some(first), Some(last)) => (last - first) as f64 / 1e3,
        _ => 0.0,
    };
    let merges = merged_at_ms.len();
    let merges_per_s = if merges > 1 && merge_phase_s > 0.0 {
        (merges - 1) as f64 / merge_phase_s
    } else {
        merges as f64 / wall.as_secs_f64().max(1e-9)
    };
    let n = ids.len().max(1) as f64;
    let problems: Vec<String> = tasks
        .iter()
        .filter(|t| t.state.stage != baton_domain::pipeline::DONE)
        .take(3)
        .map(|t| match &t.state.hold {
            Hold::Blocked { reason } => format!("{} blocked at {}: {reason}", t.work_item_id, t.state.stage),
            _ => format!("{} is at {}", t.work_item_id, t.state.display()),
        })
        .collect();
    if !problems.is_empty() {
        eprintln!("bench pipeline: {} ticket(s) not done, e.g. {}", ids.len() - tickets_done, problems.join("; "));
    }
    Ok(PipelineFigures {
        scenario: "pipeline",
        tickets: ids.len(),
        parallel: 0,
        test_sleep_ms: 0,
        depth: None,
        queue: false,
        minimal_baseline: false,
        sandboxed_baseline: false,
        unsandboxed: false,
        sandboxed: false,
        agent: BenchAgent::Shell,
        batch: 1,
        tickets_done,
        tickets_not_done: ids.len() - tickets_done,
        timed_out: false,
        wall_s: wall.as_secs_f64(),
        merges,
        merge_phase_s,
        merges_per_s,
        jobs_per_ticket: jobs as f64 / n,
        events_per_ticket: events as f64 / n,
        db_bytes: 0,
        cpu_s: 0.0,
        runs: Vec::new(),
        baseline: None,
        ratio: None,
        data_dir: None,
    })
}

/// Runs the committed `bench/baseline.sh` as a child process (through the runner, like every
/// spawn) with the bench's own knobs, and parses its one JSON line.
async fn run_baseline(args: &PipelineArgs, dir: &Path, timeout: Duration) -> anyhow::Result<Baseline> {
    let script = dir.join("baseline.sh");
    std::fs::write(&script, BASELINE_SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let (stdout, stderr) = (dir.join("baseline.out"), dir.join("baseline.err"));
    let env = ["PATH", "HOME", "TMPDIR"]
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|value| (name.to_string(), value)))
        .collect();
    let spec = baton_runner::ProcessSpec {
        program: "bash".into(),
        args: vec![
            script.display().to_string(),
            "--tickets".into(),
            args.tickets.to_string(),
            "--parallel".into(),
            args.parallel.to_string(),
            "--test-sleep-ms".into(),
            args.test_sleep_ms.to_string(),
            "--dir".into(),
            dir.join("baseline").display().to_string(),
        ]
        .into_iter()
        .chain(args.queue.then(|| "--queue".to_string()))
        .chain(args.minimal_baseline.then(|| "--minimal".to_string()))
        .chain(args.sandboxed_baseline.then(|| "--sandbox".to_string()))
        .collect(),
        cwd: dir.to_path_buf(),
        env,
        stdin: None,
        stdout: stdout.clone(),
        stderr: stderr.clone(),
    };
    let progress = output::progress("bench pipeline", 1);
    progress.step("baseline: bench/baseline.sh");
    let cpu_before = cpu_seconds();
    let mut child = baton_runner::process::spawn(&spec).context("starting bash bench/baseline.sh")?;
    let limits = baton_runner::RunLimits { timeout, stall_timeout: timeout, stop_grace: Duration::from_secs(2) };
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let exit = child.wait(limits, stop).await;
    let cpu = cpu_seconds() - cpu_before;
    progress.clear();
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    let err = std::fs::read_to_string(&stderr).unwrap_or_default();
    ensure!(exit.success(), "bench/baseline.sh {}: {}", exit.describe(), err.trim());
    let line = out.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    let mut baseline: Baseline =
        serde_json::from_str(line).with_context(|| format!("bench/baseline.sh printed no JSON figures line: {out}"))?;
    baseline.cpu_s = cpu;
    Ok(baseline)
}

fn print_text(f: &PipelineFigures) {
    println!(
        "{} tickets through the default pipeline ({} agents, human gates off), {} at once, test {}",
        f.tickets,
        match f.agent {
            BenchAgent::Shell => "`sh -c`",
            BenchAgent::Script => "script",
        },
        f.parallel,
        if f.test_sleep_ms == 0 { "`true`".to_string() } else { format!("`sleep` {} ms", f.test_sleep_ms) }
    );
    let ratio = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
    let base = f.baseline.as_ref();
    let rows = vec![
        vec![
            "wall time (s)".into(),
            format!("{:.2}", f.wall_s),
            base.map_or("-".into(), |b| format!("{:.2}", b.seconds)),
            ratio(f.ratio.as_ref().and_then(|r| r.wall)),
        ],
        vec![
            "processor time (s)".into(),
            format!("{:.2}", f.cpu_s),
            base.map_or("-".into(), |b| format!("{:.2}", b.cpu_s)),
            match base {
                Some(b) if b.cpu_s > 0.0 => format!("{:.2}", f.cpu_s / b.cpu_s),
                _ => "-".into(),
            },
        ],
        vec![
            "merges per second".into(),
            format!("{:.3}", f.merges_per_s),
            base.map_or("-".into(), |b| format!("{:.3}", b.merges_per_s)),
            ratio(f.ratio.as_ref().map(|r| r.merges_per_s)),
        ],
    ];
    output::table(&["MEASURE", "BATON", "BASELINE", "BATON/BASELINE"], &rows);
    println!(
        "tickets done {} of {} · merges {} over {:.1} s · jobs/ticket {:.1} · events/ticket {:.1} · database {:.1} MiB",
        f.tickets_done,
        f.tickets,
        f.merges,
        f.merge_phase_s,
        f.jobs_per_ticket,
        f.events_per_ticket,
        f.db_bytes as f64 / (1024.0 * 1024.0)
    );
    if f.timed_out {
        println!("timed out: the figures cover the tickets settled by then");
    }
    if !f.runs.is_empty() {
        println!("{} runs (the figures above are the median run's):", f.runs.len());
        for (n, run) in f.runs.iter().enumerate() {
            let or_dash = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
            println!(
                "  run {}: Baton {:.2} s ({:.2} CPU-s), baseline {} s ({} CPU-s), wall ratio {}",
                n + 1,
                run.wall_s,
                run.cpu_s,
                or_dash(run.baseline_s),
                or_dash(run.baseline_cpu_s),
                or_dash(run.wall_ratio)
            );
        }
    }
    if f.minimal_baseline {
        println!("minimal baseline: no git reads for reports, main moved by update-ref (--minimal-baseline)");
    }
    if f.sandboxed_baseline {
        println!("sandboxed baseline: its agent stages ran under bubblewrap, as Baton's do (--sandboxed-baseline)");
    }
    if f.unsandboxed {
        println!("unsandboxed: Baton's agents ran without its sandbox, as the plain baseline's stages (--unsandboxed)");
    }
    if f.baseline.is_some() && f.sandboxed != f.sandboxed_baseline {
        println!(
            "not like for like: Baton's agents ran {} and the baseline's {}; --unsandboxed or --sandboxed-baseline compares the same process work",
            if f.sandboxed { "sandboxed" } else { "unsandboxed" },
            if f.sandboxed_baseline { "sandboxed" } else { "unsandboxed" },
        );
    }
    if f.queue {
        println!("merge queue alone: every ticket confirmed at once when all were ready (--queue)");
    }
    if f.batch > 1 {
        println!("merge queue: batches of up to {} changes (merge_batch)", f.batch);
    }
    if let Some(depth) = f.depth {
        println!("merge queue: starting speculation depth {depth}");
    }
    if let Some(dir) = &f.data_dir {
        println!("files kept: {}", dir.display());
    }
}
