//! The command line: clap definitions and dispatch to the command modules.

use anyhow::Context;
use baton::config::{self, Config, LoadMode};
use baton_engine::{Engine, Sandbox};
use baton_store_sqlite::SqliteStore;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

/// Baton: carries tickets to production through a pipeline of AI coding agents.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: embedded defaults; also BATON_CONFIG).
    #[arg(long, global = true, env = "BATON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented baton.toml to start from.
    Init {
        /// Directory to write baton.toml into.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Run the engine and the HTTP API until interrupted.
    Serve,
    /// Create a sample project and carry three tickets through the whole pipeline.
    Demo {
        /// Directory for the demo (default: a new directory under the system temp dir, kept).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Approve the two human gates automatically (the demo says when it does).
        #[arg(long)]
        yes: bool,
        /// Who runs the agent stages: the built-in script agent, or the real `claude` or `codex`
        /// CLI against an in-process `baton mock-llm` (the CLI must be installed).
        #[arg(long, value_enum, default_value_t = crate::demo::DemoAgent::Script)]
        agent: crate::demo::DemoAgent,
        /// Keep serving the dashboard (and running the engine) after the demo ends, until Ctrl-C.
        #[arg(long)]
        serve: bool,
    },
    /// Serve a scripted model API (Anthropic, OpenAI Responses, Gemini) for the real agent CLIs.
    MockLlm {
        /// The script of conversations and turns (format: docs/mock-llm.md).
        #[arg(long, value_name = "FILE")]
        script: PathBuf,
        /// Address to listen on; port 0 picks a free one (printed as the first stdout line).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Create, inspect and act on tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Print a task's hand-off: what changed, gates with proof, cost, human decisions, open
    /// limitations and the next prompt (Markdown; `--html` for the self-contained page).
    Handoff {
        /// Work-item id (DEMO-001) or numeric id.
        id: String,
        /// Print the HTML page instead of Markdown.
        #[arg(long)]
        html: bool,
    },
    /// Tasks by stage, running jobs, merge queues, held leases, instances, frozen repositories and waiting tasks.
    Status,
    /// Tokens and cost of agent runs and ingested usage, grouped, with unit economics.
    Usage {
        /// Group by task, stage, adapter, model, repo, day, category, source or unit_kind.
        #[arg(long, default_value = "task")]
        by: String,
    },
    /// Measure Baton's own costs (decide, store transactions, process spawn, git); scenarios:
    /// `webhooks`, `pipeline` (tickets end to end vs a shell baseline), `idle`, `store` (claims/s).
    Bench(crate::bench::BenchArgs),
    /// Budget caps set at runtime (they override [budgets] in baton.toml).
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Coverage baselines: show them, or set one by hand (up or down, with a reason).
    #[command(subcommand)]
    Coverage(CoverageCommand),
    /// The lessons journal: list, add, show and edit what earlier runs learned; accept or reject
    /// the lessons a retro proposed.
    #[command(subcommand)]
    Lessons(LessonsCommand),
    /// Next tasks a retro proposed: list them, accept one (it becomes a task) or reject it.
    #[command(subcommand)]
    Proposals(ProposalsCommand),
    /// Repository freezes: list the frozen repositories, unfreeze one.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Named API tokens with a scope (read, act, admin, ingest); stored only as digests.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The database: move the SQLite store into PostgreSQL.
    #[command(subcommand)]
    Db(DbCommand),
    /// Run a script agent step (Baton starts this itself for the `script` adapter).
    #[command(hide = true)]
    AgentScript {
        #[arg(long)]
        script: PathBuf,
    },
    /// Supervise one process and record its launch and exit (Baton starts every agent and repo
    /// command through this).
    #[command(hide = true)]
    Shim {
        #[arg(long)]
        exit_file: PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Set a cap in USD: one of --task, --repo (per UTC day) or --global (per UTC day).
    Set {
        #[arg(long, group = "scope")]
        task: Option<String>,
        #[arg(long, group = "scope")]
        repo: Option<String>,
        #[arg(long, group = "scope")]
        global: bool,
        /// The cap in USD; `none` removes the cap for that scope.
        #[arg(long)]
        usd: String,
    },
    /// Show the caps in force and what was spent under each.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum CoverageCommand {
    /// Every repository's coverage baseline, who set it and why.
    Show,
    /// The baseline override.
    #[command(subcommand)]
    Baseline(CoverageBaselineCommand),
}

#[derive(Debug, Subcommand)]
pub enum CoverageBaselineCommand {
    /// Set REPO's coverage baseline to PCT percent (merges then ratchet it up from there).
    Set {
        repo: String,
        pct: String,
        /// Why the baseline is set by hand (recorded with it).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// The frozen repositories (a DEGRADED deploy, or a deploy whose outcome is unknown, froze them), why and since when.
    Frozen,
    /// Unfreeze NAME: merges and deploys resume there (recorded with who did it).
    Unfreeze { name: String },
}

#[derive(Debug, Subcommand)]
pub enum LessonsCommand {
    /// The lessons, newest first; with --repo or --stage only those that apply there.
    List {
        #[arg(long)]
        repo: Option<String>,
        #[arg(long)]
        stage: Option<String>,
    },
    /// Record a lesson by hand (source `human`); it reaches the prompts of its repository and stage.
    Add {
        #[arg(long)]
        title: String,
        #[arg(long)]
        body: String,
        /// Only for this repository (default: every one).
        #[arg(long)]
        repo: Option<String>,
        /// Only for this stage's prompts (default: every stage).
        #[arg(long)]
        stage: Option<String>,
        /// A tag; repeat for more.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// One lesson in full, with its hit count.
    Show { id: i64 },
    /// Change a lesson's text, scope or tags; `--repo ""` or `--stage ""` makes it apply everywhere.
    Edit {
        id: i64,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        body: Option<String>,
        #[arg(long)]
        repo: Option<String>,
        #[arg(long)]
        stage: Option<String>,
        /// Replaces the tags; repeat for more.
        #[arg(long = "tag")]
        tags: Option<Vec<String>>,
    },
    /// Accept a lesson a retro proposed: it reaches the prompts it applies to from now on.
    Accept { id: i64 },
    /// Reject a lesson a retro proposed: it stays in the journal, never in a prompt.
    Reject { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum ProposalsCommand {
    /// The next tasks retros proposed, oldest first; --status proposed|accepted|rejected.
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Accept a proposal: its task is created in the proposal's repository (once).
    Accept { id: i64 },
    /// Reject a proposal: no task is created.
    Reject { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once): `read` reads, `act` also creates tasks and decides
    /// human gates, `admin` is everything; `ingest` may only report usage (`POST /api/usage/ingest`).
    Create {
        /// The token's name, shown as `api:<name>` on every input made with it.
        name: String,
        #[arg(long, default_value = "act")]
        scope: String,
    },
    /// List tokens (names, scopes, who created them, revoked or live); never the tokens.
    List,
    /// Revoke a token: requests with it are refused at once.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy the SQLite store of the data directory into an empty PostgreSQL database (every table,
    /// ids kept, one transaction), verify the copy table by table, and say how to switch over.
    /// Refused while a `baton serve` runs on the data directory; the SQLite file is not changed.
    Migrate {
        /// The target database, e.g. postgres://baton:PASSWORD@db.example.com:5432/baton.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and list every problem with its key and a fix.
    Check {
        /// Also call each configured service once (git remotes, forge APIs, trackers): token,
        /// repository or project, webhook secret.
        #[arg(long)]
        online: bool,
    },
}

#[derive(Debug, Args)]
pub struct InputArgs {
    /// Task id or work-item id (e.g. DEMO-001).
    pub id: String,
    /// Dedup key: a replay with the same key changes nothing.
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// File a ticket; prints its work-item id.
    Add {
        #[arg(long)]
        repo: String,
        #[arg(long)]
        title: String,
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        #[arg(long, value_name = "FILE")]
        body_file: Option<PathBuf>,
        /// The ticket's id in its tracker (e.g. `plane:ORCH-12`); one active task per ref.
        #[arg(long, value_name = "REF")]
        external_ref: Option<String>,
        /// Tasks this one waits for (ids or work-item ids, comma-separated): none of its jobs
        /// runs until each is done.
        #[arg(long, value_name = "ID", value_delimiter = ',')]
        depends_on: Vec<String>,
    },
    /// Declare that a task waits for others to be done (refused when it would close a cycle).
    Depend {
        /// Task id or work-item id.
        id: String,
        /// The tasks it waits for (comma-separated).
        #[arg(long, value_name = "ID", value_delimiter = ',', required = true)]
        on: Vec<String>,
    },
    /// Withdraw dependencies declared with `depend` (a task blocked for them stays blocked
    /// until `baton task retry`).
    Undepend {
        id: String,
        #[arg(long, value_name = "ID", value_delimiter = ',', required = true)]
        on: Vec<String>,
    },
    /// List tasks (active ones unless --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Show a task with its timeline, jobs and agent runs.
    Show { id: String },
    /// Approve the analysis (human gate #1).
    Approve(InputArgs),
    /// Answer the agent's questions; relaunches the stage.
    Answer {
        #[command(flatten)]
        input: InputArgs,
        #[arg(long)]
        text: String,
    },
    /// Confirm the deploy (human gate #2).
    ConfirmDeploy(InputArgs),
    /// Retry a blocked task from its current stage.
    Retry(InputArgs),
    /// Resume a task paused by a budget cap (after raising it) or by a provider quota.
    Resume(InputArgs),
    /// Set the merge-queue priority of a change waiting in its repository's merge queue (higher
    /// lands sooner; one point is worth ten minutes of waiting, so nothing starves).
    Priority {
        /// Task id or work-item id (e.g. DEMO-001).
        id: String,
        /// The priority (default 0; negative goes later).
        #[arg(allow_hyphen_values = true)]
        priority: i64,
    },
    /// STOP: kill the agent, cancel the jobs, remove the worktree and branch; the task ends
    /// `cancelled` (during a running deploy the STOP waits; once merged, it arrives too late).
    Stop(InputArgs),
}

/// Exit codes (see main.rs).
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_SUPPRESSED: u8 = 4;
pub const EXIT_DEMO_SHORT: u8 = 5;

/// The process environment as pairs (config loading takes it explicitly to stay testable).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars().collect()
}

pub fn baton_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("baton"))
}

/// Loads the configuration for `serve`-like commands (every secret needed), printing every issue
/// on failure.
pub fn load_config(path: Option<&std::path::Path>) -> Result<Config, u8> {
    load_config_for(path, LoadMode::Serve)
}

/// Loads the configuration for a command that needs only the secrets `mode` requires.
pub fn load_config_for(path: Option<&std::path::Path>, mode: LoadMode) -> Result<Config, u8> {
    match config::load_for(path, &process_env(), baton_exe(), mode) {
        Ok(config) => Ok(config),
        Err(issues) => {
            eprintln!("error: the configuration has {} problem(s):", issues.len());
            for issue in &issues {
                eprintln!("  {issue}");
            }
            Err(EXIT_USAGE)
        }
    }
}

/// Opens the store: the PostgreSQL database of `server.database_url` when set, else the SQLite
/// file in the data directory (created owner-only).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn baton_store::Store>> {
    let data_dir = &config.engine.data_dir;
    create_private_dir(data_dir)?;
    make_private(&data_dir.join("api-token"), 0o600);
    if let Some(url) = &config.server.database_url {
        let store = baton_store_postgres::PgStore::connect(url)
            .await
            .with_context(|| format!("opening the database {}", baton_store_postgres::redact_url(url)))?;
        return Ok(Arc::new(store));
    }
    let db = data_dir.join("baton.db");
    if !db.exists() {
        // An empty file is a new database to SQLite; creating it here gives it (and the WAL and
        // shared-memory files SQLite derives from it) owner-only permissions from the start.
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&db);
    }
    let store = SqliteStore::open(&db).await.with_context(|| format!("opening the database {}", db.display()))?;
    for name in ["baton.db", "baton.db-wal", "baton.db-shm"] {
        make_private(&data_dir.join(name), 0o600);
    }
    Ok(Arc::new(store))
}

/// Opens the store and builds the engine.
pub async fn open_engine(config: &Config) -> anyhow::Result<Arc<Engine>> {
    let store = open_store(config).await?;
    let sandbox = Arc::new(Sandbox::new(config.sandbox.clone()));
    let engine = Engine::builder(config.engine.clone(), store)
        .owner(config.server.instance())
        .host(config.server.host.clone().unwrap_or_else(baton_engine::engine::local_host))
        .secrets(config.server.api_token.iter().cloned())
        .secrets(
            [&config.webhooks.github, &config.webhooks.gitea, &config.webhooks.plane].into_iter().flatten().cloned(),
        )
        .secrets(config.server.secret_env.iter().filter_map(|name| std::env::var(name).ok()))
        .forge(forges(&config.engine)?)
        .sandbox(sandbox)
        .retention(config.retention)
        .features(config.features.clone())
        .usage(config.usage.clone())
        .retro(config.retro.clone())
        .write_handoffs();
    // Tickets become tasks, and task status is mirrored onto them, once a tracker is configured.
    let engine = if config.trackers.is_empty() {
        engine
    } else {
        let (set, pollers) = crate::trackers::build(&config.trackers)?;
        let rules = config.trackers.iter().map(|t| t.rule.clone()).collect();
        engine
            .secrets(config.trackers.iter().map(|t| t.token.clone()))
            .tracker(Arc::new(set))
            .pollers(pollers)
            .webhook_sink(Arc::new(baton_engine::intake::IntakeSink::new(rules)))
    };
    let engine = with_notifiers(engine, config)?.build();
    crate::logging::set_redactor(engine.redactor().clone());
    Ok(engine)
}

/// `[telegram]` (alerts, the live card per task, its buttons) and `[[notifiers]]` (signed
/// webhooks) beside the log notifier.
fn with_notifiers(engine: baton_engine::EngineBuilder, config: &Config) -> anyhow::Result<baton_engine::EngineBuilder> {
    use baton_adapters::notifier::{LogNotifier, Notifier};
    use baton_engine::telegram::{LiveUpdates, PressMode};
    let mut notifiers: Vec<Arc<dyn Notifier>> = vec![Arc::new(LogNotifier)];
    let mut engine = engine;
    for n in &config.notifiers {
        notifiers.push(Arc::new(baton_forges::WebhookNotifier::new(&n.name, &n.url, &n.secret)?));
        engine = engine.secrets([n.secret.clone()]);
    }
    if let Some(t) = &config.telegram {
        let client =
            baton_forges::TelegramClient::new(baton_forges::TelegramConfig::new(&t.api_url, &t.bot_token, &t.chat_id))?;
        let telegram = Arc::new(baton_forges::Telegram::new(client));
        notifiers.push(telegram.clone());
        let mode = if t.mode == config::TelegramMode::Poll { PressMode::Poll } else { PressMode::Webhook };
        engine = engine
            .secrets([t.bot_token.clone()].into_iter().chain(t.webhook_secret.clone()))
            .live_updates(LiveUpdates::new(telegram, t.allowed_user_ids.clone(), mode));
    }
    if notifiers.len() == 1 {
        return Ok(engine);
    }
    Ok(engine.notifier(Arc::new(baton_forges::NotifierSet::new(notifiers))))
}

/// The forge of every repository: GitHub or Gitea/Forgejo where configured, else the local one.
fn forges(settings: &baton_engine::EngineSettings) -> anyhow::Result<Arc<dyn baton_adapters::forge::Forge>> {
    use baton_adapters::forge::{ForgeSet, LocalForge};
    use baton_forges::HostedForge;
    let mut set = ForgeSet::new(Arc::new(LocalForge));
    for repo in settings.repos.iter() {
        let Some(api) = crate::online::forge_api(repo)? else { continue };
        set = set.with(repo.name.clone(), Arc::new(HostedForge::new(api)));
    }
    Ok(Arc::new(set))
}

/// Creates the data directory readable by its owner only (0700); an existing looser one is
/// tightened, with a warning, since it holds the database, tokens and run logs.
fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    make_private(dir, 0o700);
    Ok(())
}

/// Sets `path`'s mode to `mode` when it is looser (group or others may read it), with a warning.
fn make_private(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else { return };
    let current = meta.permissions().mode() & 0o777;
    if current & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        Ok(()) => tracing::warn!(
            "{} was readable by other users (mode {current:o}); set it to {mode:o}: it holds Baton's \
             database, tokens or run logs",
            path.display()
        ),
        Err(error) => tracing::warn!(
            "{} is readable by other users (mode {current:o}) and cannot be tightened ({error}); \
             run `chmod {mode:o} {}`",
            path.display(),
            path.display()
        ),
    }
}

/// What a task command needs of the secrets: reading needs none; an input may carry out its
/// effects at once (a tracker update, a branch deletion), so it needs the service tokens.
fn task_mode(command: &TaskCommand) -> LoadMode {
    match command {
        TaskCommand::List { .. } | TaskCommand::Show { .. } => LoadMode::Read,
        _ => LoadMode::Act,
    }
}

/// Runs the parsed command; returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    crate::output::quiet_broken_pipe();
    let json = cli.json;
    let config_path = cli.config.clone();
    let result = match cli.command {
        Command::Init { dir } => crate::serve::init(&dir).map(|_| EXIT_OK),
        Command::Serve => match load_config(config_path.as_deref()) {
            Ok(config) => crate::serve::serve(config).await,
            Err(code) => return code,
        },
        Command::Demo { dir, yes, agent, serve } => crate::demo::run(dir, yes, agent, serve, json).await,
        Command::MockLlm { script, listen } => crate::mock_llm_cmd::run(&script, listen).await,
        Command::AgentScript { script } => crate::task_cmd::agent_script(&script).await,
        Command::Shim { exit_file, command } => {
            return baton_runner::shim::exit_status(baton_runner::shim::run(exit_file, command).await);
        }
        Command::Config(ConfigCommand::Check { online }) => match load_config(config_path.as_deref()) {
            Ok(config) if online => {
                let checks = crate::online::check(&config).await;
                Ok(if crate::online::print(&checks, json) { EXIT_OK } else { EXIT_ERROR })
            }
            Ok(config) => {
                crate::output::config_ok(&config, json);
                Ok(EXIT_OK)
            }
            Err(code) => return code,
        },
        Command::Task(command) => match load_config_for(config_path.as_deref(), task_mode(&command)) {
            Ok(config) => crate::task_cmd::run(&config, command, json).await,
            Err(code) => return code,
        },
        Command::Token(command) => match load_config_for(config_path.as_deref(), LoadMode::Read) {
            Ok(config) => crate::token_cmd::run(&config, command, json).await,
            Err(code) => return code,
        },
        Command::Db(command) => match load_config_for(config_path.as_deref(), LoadMode::Read) {
            Ok(config) => crate::db_cmd::run(&config, command, json).await,
            Err(code) => return code,
        },
        Command::Handoff { id, html } => match load_config_for(config_path.as_deref(), LoadMode::Read) {
            Ok(config) => crate::task_cmd::handoff(&config, &id, html, json).await,
            Err(code) => return code,
        },
        Command::Status => match load_config_for(config_path.as_deref(), LoadMode::Read) {
            Ok(config) => crate::task_cmd::status(&config, json).await,
            Err(code) => return code,
        },
        Command::Bench(args) => crate::bench::run(args, json).await,
        Command::Budget(command) => match load_config_for(config_path.as_deref(), LoadMode::Read) {
            Ok(config) => crate::task_cmd::budget(&config, command, json).await,
            Err(code) => return code,
        },
        Command::Coverage(command) => match load_config_for(config_path.as_deref(), LoadMode::Read) {
            Ok(config) => crate::coverage_cmd::run(&config, command, json).await,
            Err(code) => return code,
        },
        Command::Lessons(command) => match load_config_for(config_path.as_deref(), LoadMode::Read) {
            Ok(config) => crate::lessons_cmd::run(&config, command, json).await,
            Err(code) => return code,
        },
        Command::Proposals(command) => {
            let mode = if matches!(command, ProposalsCommand::List { .. }) { LoadMode::Read } else { LoadMode::Act };
            match load_config_for(config_path.as_deref(), mode) {
                Ok(config) => crate::proposals_cmd::run(&config, command, json).await,
                Err(code) => return code,
            }
        }
        Command::Repo(command) => match load_config_for(config_path.as_deref(), LoadMode::Read) {
            Ok(config) => crate::repo_cmd::run(&config, command, json).await,
            Err(code) => return code,
        },
        Command::Usage { by } => match load_config_for(config_path.as_deref(), LoadMode::Read) {
            Ok(config) => crate::task_cmd::usage(&config, &by, json).await,
            Err(code) => return code,
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            EXIT_ERROR
        }
    }
}
