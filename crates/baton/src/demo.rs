//! `baton demo`: builds a small real project (Python, real unit tests), files three tickets and
//! carries them through the whole default pipeline with the `script` agent — one straight through,
//! one that fails review once and is fixed, one whose analysis ends with questions that the demo
//! answers. Human gates are approved automatically only with `--yes`, and the demo says so.
//!
//! With `--agent claude|codex` every agent stage is run by the real CLI instead, against an
//! in-process `baton mock-llm` whose script (`demo/mock-<agent>.toml`) makes the CLI write the same
//! artifacts and code with its own tools; the tickets reach the same ends.
//!
//! The web dashboard is served while the demo runs (its URL is the first line printed, on
//! 127.0.0.1:8377 when free, else a free port); `--serve` keeps it and the engine up afterwards.

use crate::cli::{EXIT_DEMO_SHORT, EXIT_OK, EXIT_USAGE, load_config, open_engine};
use crate::output::{self, duration_ms, tokens};
use anyhow::Context;
use baton_domain::Hold;
use baton_engine::{Engine, Input, NewTaskRequest};
use baton_runner::Git;
use baton_store::{TaskFilter, TaskKey, TaskRecord};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The demo gives up after this long (it normally takes well under a minute).
const DEMO_TIMEOUT_SECS: u64 = 900;
const PROGRESS_POLL_MS: u64 = 150;

const PROJECT_FILES: &[(&str, &str)] = &[
    ("mathkit/__init__.py", include_str!("../demo/project/mathkit/__init__.py")),
    ("mathkit/core.py", include_str!("../demo/project/mathkit/core.py")),
    ("tests/__init__.py", include_str!("../demo/project/tests/__init__.py")),
    ("tests/test_core.py", include_str!("../demo/project/tests/test_core.py")),
    ("scripts/deploy.sh", include_str!("../demo/project/scripts/deploy.sh")),
    ("scripts/health.sh", include_str!("../demo/project/scripts/health.sh")),
    ("README.md", include_str!("../demo/project/README.md")),
    (".gitignore", include_str!("../demo/project/.gitignore")),
];
const SCRIPT: &str = include_str!("../demo/script.toml");
const MOCK_CLAUDE: &str = include_str!("../demo/mock-claude.toml");
const MOCK_CODEX: &str = include_str!("../demo/mock-codex.toml");

/// The three tickets: (title, body).
pub const TICKETS: &[(&str, &str)] = &[
    ("Add a multiply function", "mathkit needs multiply(a, b) with tests."),
    ("Add a safe divide function", "divide(a, b); dividing by zero must fail with a clear error, not a crash."),
    ("Add a power function", "power(base, exponent) with tests."),
];
/// What the demo answers when an analysis ends with questions.
const DEMO_ANSWER: &str = "Yes: accept negative exponents and return a float.";

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn demo_config(dir: &Path, agents: &str) -> String {
    let deployed = dir.join("deployed").display().to_string();
    format!(
        "# Written by `baton demo`: the sample project, its agents and fast retry settings.\n\
         [server]\ndata_dir = \"data\"\n\n\
         [limits]\nrunning_max = 4\nrunning_per_repo_max = 3\nretry_base_secs = 1\nmerge_defer_secs = 1\n\
         poll_interval_ms = 100\nstop_grace_secs = 2\nagent_timeout_secs = 300\nstall_timeout_secs = 120\n\
         command_timeout_secs = 300\n\n\
         [[repos]]\nname = \"demo\"\npath = \"project\"\ndefault_branch = \"main\"\nprefix = \"DEMO\"\n\
         test = [\"python3\", \"-m\", \"unittest\", \"-q\"]\n\
         deploy = [\"sh\", \"scripts/deploy.sh\", {d}]\nhealth = [\"sh\", \"scripts/health.sh\", {d}]\n\n\
         {agents}",
        d = toml_string(&deployed)
    )
}

/// `[agents.default]` for the script agent.
fn script_agents() -> String {
    "[agents.default]\nadapter = \"script\"\nscript = \"script.toml\"\n".to_string()
}

/// `[agents.default]` for a real CLI pointed at the demo's mock model server.
fn cli_agents(cli: &RealCli, program: &Path, base_url: &str) -> String {
    let tools = if cli.name == "claude" { "allowed_tools = [\"Bash\"]\n" } else { "" };
    format!(
        "# The real {name} CLI against a scripted model server that lives only while `baton demo` runs;\n\
         # to run these agents again, start `baton mock-llm --script {script} --listen {addr}`.\n\
         [agents.default]\nadapter = \"{name}\"\nprogram = {program}\nmodel = \"{model}\"\nbase_url = {url}\n{tools}",
        name = cli.name,
        script = cli.script_file,
        addr = base_url.trim_start_matches("http://"),
        program = toml_string(&program.display().to_string()),
        model = cli.model,
        url = toml_string(base_url),
    )
}

/// Writes the project (a git repository), the agents' script files and baton.toml into `dir`.
async fn create_project(dir: &Path, agents: &str, scripts: &[(&str, &str)]) -> anyhow::Result<()> {
    let project = dir.join("project");
    for (path, content) in PROJECT_FILES {
        let target = project.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, content).with_context(|| format!("writing {}", target.display()))?;
    }
    let git = Git::new(&project);
    git.run(&["init", "-q", "-b", "main"]).await?;
    git.commit_all("Initial commit: mathkit with add()").await?;
    for (name, text) in scripts {
        std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"))?;
    }
    std::fs::write(dir.join("baton.toml"), demo_config(dir, agents)).context("writing baton.toml")?;
    Ok(())
}

/// A real agent CLI the demo can drive, and the mock script that plays its model.
#[derive(Debug)]
struct RealCli {
    name: &'static str,
    /// The pinned npm package (keep in step with `CLI_PACKAGES` in xtask/src/main.rs).
    package: &'static str,
    /// A model the CLI knows and the pricing table prices.
    model: &'static str,
    mock_script: &'static str,
    script_file: &'static str,
}

impl DemoAgent {
    fn real_cli(self) -> Option<RealCli> {
        match self {
            DemoAgent::Script => None,
            DemoAgent::Claude => Some(RealCli {
                name: "claude",
                package: "@anthropic-ai/claude-code@2.1.197",
                model: "claude-sonnet-4-5",
                mock_script: MOCK_CLAUDE,
                script_file: "mock-claude.toml",
            }),
            // Codex 0.169.0 offers its apply_patch tool only for models it has metadata for
            // (gpt-5.5 among the priced ones; gpt-5-codex gets exec_command alone).
            DemoAgent::Codex => Some(RealCli {
                name: "codex",
                package: "@openai/codex@0.169.0",
                model: "gpt-5.5",
                mock_script: MOCK_CODEX,
                script_file: "mock-codex.toml",
            }),
        }
    }
}

/// Where the pinned CLIs are installed: `$BATON_CLI_DIR`, default `$HOME/.cache/baton/clis`.
fn cli_dir() -> PathBuf {
    match std::env::var_os("BATON_CLI_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/baton/clis"),
    }
}

/// The CLI's executable: the pinned install under [`cli_dir`], else `name` on PATH.
fn locate_cli(name: &str) -> Option<PathBuf> {
    let pinned = cli_dir().join("node_modules/.bin").join(name);
    if pinned.is_file() {
        return Some(pinned);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

fn print_install_hint(cli: &RealCli) {
    eprintln!("error: `baton demo --agent {}` needs the {} CLI, which is not installed.", cli.name, cli.name);
    eprintln!("  install the pinned CLIs from a Baton checkout:  cargo xtask install-clis");
    eprintln!("  or with npm:  npm install --prefix \"$HOME/.cache/baton/clis\" {}", cli.package);
    eprintln!(
        "  (the demo looks in $BATON_CLI_DIR/node_modules/.bin, default {}, then on PATH)",
        cli_dir().join("node_modules/.bin").display()
    );
}

/// Writes the mock model server's request log (one line per request) for a look afterwards.
fn write_mock_log(dir: &Path, server: &baton_mock_llm::MockServer) -> anyhow::Result<()> {
    let lines: Vec<String> = server
        .state()
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} conversation={} turn={}",
                r.status,
                r.method,
                r.path,
                r.conversation.as_deref().unwrap_or("-"),
                r.turn.map_or("-".to_string(), |t| t.to_string())
            )
        })
        .collect();
    let path = dir.join("mock-llm.log");
    std::fs::write(&path, lines.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))
}

fn new_demo_dir() -> PathBuf {
    let stamp = baton_engine::Clock::now_ms(&baton_engine::SystemClock);
    std::env::temp_dir().join(format!("baton-demo-{stamp}"))
}

/// Who runs the demo's agent stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoAgent {
    /// Baton's built-in script agent (no CLI needed).
    Script,
    /// The real Claude Code CLI against an in-process `baton mock-llm`.
    Claude,
    /// The real Codex CLI against an in-process `baton mock-llm`.
    Codex,
}

/// How the demo's agents are set up: baton.toml's agent section, the script file written beside
/// it, and (for a real CLI) the mock model server, which must live as long as the demo.
struct DemoAgents {
    section: String,
    script: (&'static str, &'static str),
    mock: Option<baton_mock_llm::MockServer>,
}

impl DemoAgents {
    fn script() -> DemoAgents {
        DemoAgents { section: script_agents(), script: ("script.toml", SCRIPT), mock: None }
    }

    /// Starts the in-process mock model server on a free loopback port for `cli` at `program`.
    async fn real(cli: &RealCli, program: &Path) -> anyhow::Result<DemoAgents> {
        let script = baton_mock_llm::Script::from_toml(cli.mock_script)
            .with_context(|| format!("the built-in {} is invalid", cli.script_file))?;
        let server = baton_mock_llm::start(script, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("starting the mock model server on 127.0.0.1")?;
        println!(
            "agents: the real {} CLI ({}, model {}) against baton mock-llm at {} \
             (a scripted model: no network, no API key)",
            cli.name,
            program.display(),
            cli.model,
            server.base_url()
        );
        Ok(DemoAgents {
            section: cli_agents(cli, program, &server.base_url()),
            script: (cli.script_file, cli.mock_script),
            mock: Some(server),
        })
    }
}

/// Runs the demo; with a real-CLI `agent` that is not installed, says how to install it (exit 2).
// The demo is a composition root: it starts the engine loop on the runtime and reports wall time.
#[allow(clippy::disallowed_methods)]
pub async fn run(dir: Option<PathBuf>, yes: bool, agent: DemoAgent, serve: bool, json: bool) -> anyhow::Result<u8> {
    let started = Instant::now();
    let listener = match tokio::net::TcpListener::bind(DASHBOARD_LISTEN).await {
        Ok(listener) => listener,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the demo's dashboard")?,
    };
    let url = format!("http://{}/", listener.local_addr().context("the dashboard's address")?);
    let keep = if serve { "; --serve keeps it up afterwards" } else { "" };
    // The URL comes first; with --json it goes to stderr so stdout stays one JSON document.
    if json {
        eprintln!("dashboard: {url} (live while the demo runs{keep})");
    } else {
        println!("dashboard: {url} (live while the demo runs{keep})");
    }
    let cli = match agent.real_cli() {
        None => None,
        Some(cli) => match locate_cli(cli.name) {
            Some(program) => Some((cli, program)),
            None => {
                print_install_hint(&cli);
                return Ok(EXIT_USAGE);
            }
        },
    };
    let dir = dir.unwrap_or_else(new_demo_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    if dir.join("project").exists() || dir.join("baton.toml").exists() {
        anyhow::bail!("{} already holds a demo; pass an empty or new directory with --dir", dir.display());
    }
    println!("Baton demo in {} (kept afterwards)", dir.display());
    let agents = match &cli {
        Some((cli, program)) => DemoAgents::real(cli, program).await?,
        None => DemoAgents::script(),
    };
    create_project(&dir, &agents.section, &[agents.script]).await?;
    let config_path = dir.join("baton.toml");
    let config = match load_config(Some(&config_path)) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let engine = open_engine(&config).await?;
    if yes {
        println!("--yes given: the demo approves each analysis and confirms each deploy itself, and says so below.");
    } else {
        println!("Without --yes the two human gates wait for you; the demo prints the commands to run.");
    }
    let mut ids = Vec::new();
    for (title, body) in TICKETS {
        let task = engine
            .create_task(NewTaskRequest {
                repo: "demo".into(),
                title: title.to_string(),
                body: body.to_string(),
                external_ref: None,
            })
            .await?;
        println!("filed {}: {title}", task.work_item_id);
        ids.push(task.id);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let engine_loop = tokio::spawn(engine.clone().run(stop_rx.clone()));
    let http = serve_dashboard(&engine, listener, stop_rx, json).await?;
    let finished = follow(&engine, &config_path, yes, started).await;
    if serve {
        if let Ok(finished) = &finished {
            summary(&engine, &dir, finished, started, json).await?;
        }
        let line = format!("the demo is over; the dashboard stays up at {url} until Ctrl-C");
        if json {
            eprintln!("{line}")
        } else {
            println!("\n{line}")
        }
        crate::serve::wait_for_signal().await;
    }
    let _ = stop_tx.send(true);
    let _ = engine_loop.await;
    let _ = http.await;
    if let Some(server) = &agents.mock {
        write_mock_log(&dir, server)?;
    }
    let finished = finished?;
    if !serve {
        summary(&engine, &dir, &finished, started, json).await?;
    }
    let all_done = finished.iter().all(|t| t.state.stage == baton_domain::pipeline::DONE);
    Ok(if all_done { EXIT_OK } else { EXIT_DEMO_SHORT })
}

/// Where the demo's dashboard listens when the port is free (else any free port on 127.0.0.1).
const DASHBOARD_LISTEN: &str = "127.0.0.1:8377";

/// Serves the dashboard on `listener` until `stop` flips, with an `act` token printed for logging
/// in (the demo's data dir is its own, so the token is too).
#[allow(clippy::disallowed_methods)] // the demo is a composition root: it starts the HTTP server
async fn serve_dashboard(
    engine: &Arc<Engine>,
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
    json: bool,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let token = engine.create_token("demo", baton_engine::Scope::Act, "cli:demo").await?;
    let line = format!("dashboard login token (act scope, this demo only): {token}");
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    let state = baton_http::AppState {
        engine: engine.clone(),
        api_token: None,
        read_requires_token: false,
        started_at_ms: engine.clock().now_ms(),
        webhooks: baton_http::WebhookSecrets::default(),
        dashboard: baton_http::Dashboard::new(baton_http::DashboardMode::On),
        observability: baton_http::Observability::default(),
    };
    Ok(tokio::spawn(baton_http::serve(listener, state, async move {
        let _ = stop.changed().await;
    })))
}

/// Prints every timeline event as it happens and plays the human where allowed; returns the tasks
/// once each is terminal or blocked.
// Watching the demo from outside the engine: real time, real sleeps between polls.
#[allow(clippy::disallowed_methods)]
async fn follow(
    engine: &Arc<Engine>,
    config_path: &Path,
    yes: bool,
    started: Instant,
) -> anyhow::Result<Vec<TaskRecord>> {
    let mut last_event = 0;
    let mut acted: HashSet<String> = HashSet::new();
    let deadline = started + Duration::from_secs(DEMO_TIMEOUT_SECS);
    let progress = crate::output::progress("demo", TICKETS.len() as u64);
    loop {
        let events = engine.store().events(None, last_event, 500).await?;
        let tasks = engine.store().list_tasks(&TaskFilter::default()).await?;
        progress.clear();
        for event in &events {
            last_event = event.id;
            let work_item = tasks.iter().find(|t| t.id == event.task_id).map_or("?", |t| t.work_item_id.as_str());
            println!(
                "[{:>6}] {work_item}  {:<14} {}",
                format!("{:.1}s", started.elapsed().as_secs_f64()),
                event.stage,
                event.message.lines().next().unwrap_or("")
            );
        }
        for task in &tasks {
            play_human(engine, task, config_path, yes, &mut acted).await?;
        }
        let settled = tasks.iter().all(|t| t.state.is_terminal() || matches!(t.state.hold, Hold::Blocked { .. }));
        let ended = tasks.iter().filter(|t| t.state.is_terminal()).count() as u64;
        progress.set(ended, "tickets carried to their end");
        if settled && events.is_empty() {
            return Ok(tasks);
        }
        if Instant::now() > deadline {
            anyhow::bail!("the demo did not settle within {DEMO_TIMEOUT_SECS} s");
        }
        tokio::time::sleep(Duration::from_millis(PROGRESS_POLL_MS)).await;
    }
}

async fn play_human(
    engine: &Arc<Engine>,
    task: &TaskRecord,
    config_path: &Path,
    yes: bool,
    acted: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let (input, command) = match &task.state.hold {
        Hold::AwaitingApproval => (Input::Approve, "approve"),
        Hold::AwaitingConfirm => (Input::ConfirmDeploy, "confirm-deploy"),
        Hold::NeedsInput { .. } => (Input::Answer { text: DEMO_ANSWER.into() }, "answer"),
        _ => return Ok(()),
    };
    // One action per (task, stage, kind, attempt): the dedup key makes a replay harmless anyway.
    let key =
        format!("demo:{}:{}:{command}:{}:{}", task.work_item_id, task.state.stage, task.state.attempt, task.version);
    if !acted.insert(format!("{}:{}:{command}:{}", task.work_item_id, task.state.stage, task.version)) {
        return Ok(());
    }
    match input {
        Input::Answer { .. } => {
            println!("         {}  the demo answers the questions: \"{DEMO_ANSWER}\"", task.work_item_id);
        }
        _ if yes => println!("         {}  auto-{command} because --yes was given", task.work_item_id),
        _ => {
            println!(
                "         {}  waits for you: baton --config {} task {command} {}",
                task.work_item_id,
                config_path.display(),
                task.work_item_id
            );
            return Ok(());
        }
    }
    engine.submit(&TaskKey::Id(task.id), input, "demo", Some(key)).await?;
    Ok(())
}

async fn summary(
    engine: &Arc<Engine>,
    dir: &Path,
    tasks: &[TaskRecord],
    started: Instant,
    json: bool,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut overheads = Vec::new();
    let mut report = Vec::new();
    for task in tasks.iter().rev() {
        let runs = engine.store().agent_runs(task.id).await?;
        let jobs = engine.store().jobs_for_task(task.id).await?;
        for job in &jobs {
            if let Some(ms) = job.result.as_ref().and_then(|r| r.get("overhead_ms")).and_then(|v| v.as_u64()) {
                overheads.push(ms);
            }
        }
        let tokens_total: u64 =
            runs.iter().map(|r| r.input_tokens + r.output_tokens + r.cache_read_tokens + r.cache_write_tokens).sum();
        let cost: f64 = runs.iter().filter_map(|r| r.cost_usd).sum();
        let duration = task.updated_at_ms - task.created_at_ms;
        rows.push(vec![
            task.work_item_id.clone(),
            task.state.display(),
            runs.len().to_string(),
            task.state.rollbacks.to_string(),
            duration_ms(duration),
            tokens(tokens_total),
            crate::output::money(cost),
        ]);
        report.push(serde_json::json!({
            "task": task.work_item_id, "title": task.title, "stage": task.state.display(), "agent_runs": runs.len(),
            "rollbacks": task.state.rollbacks, "duration_ms": duration, "tokens": tokens_total, "cost_usd": cost,
        }));
    }
    // Each task's hand-off (written by the outbox when the task ended; written now if that has
    // not happened yet) and what the lessons journal learned on the way.
    let mut handoffs = Vec::new();
    for task in tasks.iter().rev() {
        let (md, html) = baton_engine::handoff::paths(&engine.settings().data_dir, &task.work_item_id)?;
        if !md.exists()
            && let Err(error) = baton_engine::handoff::write(engine, task.id).await
        {
            tracing::warn!(task = %task.work_item_id, "writing the hand-off failed: {error}");
        }
        handoffs.push((task.work_item_id.clone(), md, html));
    }
    let learned = engine.lessons(&baton_store::LessonFilter::default()).await?.unwrap_or_default();
    let main_log = Git::new(dir.join("project")).run(&["log", "--oneline", "main"]).await?;
    overheads.sort_unstable();
    let mean = if overheads.is_empty() { 0 } else { overheads.iter().sum::<u64>() / overheads.len() as u64 };
    let p95 = overheads.get(overheads.len().saturating_sub(1) * 95 / 100).copied().unwrap_or(0);
    if json {
        output::print_json(&serde_json::json!({
            "dir": dir, "wall_ms": started.elapsed().as_millis() as u64, "tasks": report, "main": main_log.lines().collect::<Vec<_>>(),
            "overhead_ms_per_transition": { "mean": mean, "p95": p95, "jobs": overheads.len() },
            "handoffs": handoffs.iter().map(|(task, md, html)| serde_json::json!({ "task": task, "markdown": md, "html": html })).collect::<Vec<_>>(),
            "lessons": learned.iter().map(|l| serde_json::json!({ "id": l.id, "repo": l.repo, "stage": l.stage, "title": l.title, "task": l.task })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    println!();
    output::table(&["TASK", "FINAL STAGE", "AGENT RUNS", "ROLLBACKS", "DURATION", "TOKENS", "COST"], &rows);
    println!("\nmain of {}:", dir.join("project").display());
    for line in main_log.lines() {
        println!("  {line}");
    }
    println!("\nhand-offs (what changed, each gate's proof, cost, decisions, the next prompt):");
    for (task, md, html) in &handoffs {
        println!("  {task}  {}  ·  {}", md.display(), html.display());
    }
    match learned.first() {
        Some(lesson) => {
            let scope = [lesson.repo.as_deref(), lesson.stage.as_deref()].into_iter().flatten().collect::<Vec<_>>();
            let from = lesson.task.as_deref().map(|t| format!(" (from {t})")).unwrap_or_default();
            println!(
                "\nlearned: [{}] {}{from}; it goes into the next {} prompts (`baton lessons list`)",
                scope.join("/"),
                crate::output::safe(&lesson.title),
                lesson.stage.as_deref().unwrap_or("matching")
            );
        }
        None => println!("\nlearned: nothing this time (no gate failed)"),
    }
    println!(
        "\ndemo wall time {:.1}s · Baton's own overhead per stage transition: mean {mean} ms, p95 {p95} ms over {} jobs",
        started.elapsed().as_secs_f64(),
        overheads.len()
    );
    Ok(())
}
