//! Engine settings: limits, repositories, agents and the pipeline, as read from `baton.toml`.

pub use crate::features::{Feature, FeatureScope, Features};
use baton_adapters::agent::PromptMode;
pub use baton_adapters::forge::MergeStyle;
use baton_domain::Pipeline;
use baton_runner::Remote;
pub use baton_runner::sandbox::{SandboxMode, SandboxNetwork};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Concurrency limits and timeouts (SPEC §13 `limits`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Jobs running at once across all repositories.
    pub running_max: u32,
    /// Jobs running at once in one repository.
    pub running_per_repo_max: u32,
    /// Wall-clock limit of one agent run.
    pub agent_timeout_secs: u64,
    /// An agent with no output for this long is stopped.
    pub stall_timeout_secs: u64,
    /// Time between SIGTERM and SIGKILL when stopping an agent.
    pub stop_grace_secs: u64,
    /// Wall-clock limit of repo commands (test, deploy, health) and gate commands.
    pub command_timeout_secs: u64,
    /// How often the claim loop looks for runnable jobs when not woken.
    pub poll_interval_ms: u64,
    /// Lifetime of the merge lease; renewed while the holder works.
    pub lease_ttl_secs: u64,
    /// Attempts of one stage before the task is blocked.
    pub retry_max: u32,
    /// Rollbacks of one task before it is blocked.
    pub rollback_max: u32,
    /// Base of the exponential retry backoff.
    pub retry_base_secs: u64,
    /// Delay before a deferred merge gate is tried again.
    pub merge_defer_secs: u64,
    /// Merge-gate deferrals before the task is blocked.
    pub merge_defer_max: u32,
    /// Changes of one repository's merge queue tested at once, each on top of the ones ahead
    /// (speculation): the starting depth, adapted as results come in.
    pub merge_queue_depth: u32,
    /// The deepest the speculation grows after green results.
    pub merge_queue_depth_max: u32,
    /// How often the reaper looks for orphaned jobs, stuck executors and dead lease holders (0 = off).
    pub reaper_interval_secs: u64,
    /// A job running longer than this is stopped and failed by the reaper (the backstop).
    pub job_backstop_secs: u64,
    /// How often the reconciler looks for tasks whose finished job was never applied (0 = off).
    pub reconciler_interval_secs: u64,
    /// A task idle this long with a finished but unapplied job is reconciled.
    pub reconcile_grace_secs: u64,
    /// How often a running `baton serve` records that it is alive (instances sharing a store).
    pub heartbeat_secs: u64,
    /// An instance silent this long is dead: another instance requeues its running jobs (their
    /// attempt starts again) and its late writes are refused.
    pub instance_grace_secs: u64,
    /// Longest task title, in characters.
    pub title_chars_max: usize,
    /// Largest task body, in bytes (files are read only this far).
    pub body_bytes_max: usize,
    /// Largest human answer, in bytes.
    pub answer_bytes_max: usize,
    /// Longest external ticket reference, in bytes.
    pub external_ref_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            running_max: 4,
            running_per_repo_max: 2,
            agent_timeout_secs: 3_600,
            stall_timeout_secs: 600,
            stop_grace_secs: 10,
            command_timeout_secs: 1_800,
            poll_interval_ms: 500,
            lease_ttl_secs: 3_600,
            retry_max: 3,
            rollback_max: 3,
            retry_base_secs: 10,
            merge_defer_secs: 5,
            merge_defer_max: 720,
            merge_queue_depth: 3,
            merge_queue_depth_max: 8,
            reaper_interval_secs: 5,
            job_backstop_secs: 4 * 3_600 + 1_800,
            reconciler_interval_secs: 10,
            reconcile_grace_secs: 30,
            heartbeat_secs: 2,
            instance_grace_secs: 30,
            title_chars_max: 200,
            body_bytes_max: 100_000,
            answer_bytes_max: 20_000,
            external_ref_bytes_max: 200,
        }
    }
}

/// A repository Baton works on (SPEC §2). Commands are argument vectors, never shell strings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSettings {
    pub name: String,
    /// A local checkout; for a `url` repository, Baton's own clone under the data dir (set by
    /// the configuration loader, not by the file).
    #[serde(default)]
    pub path: PathBuf,
    /// A remote repository (`https://…`, `ssh://…`, or a bare repository's path) instead of `path`.
    #[serde(default)]
    pub url: Option<String>,
    /// Push task branches to the remote (default: true for a `url` repository).
    #[serde(default)]
    pub push: Option<bool>,
    /// When Baton deletes a task branch on the remote.
    #[serde(default)]
    pub delete_remote_branch: DeleteRemoteBranch,
    /// Name of the environment variable holding the remote's access token.
    #[serde(default)]
    pub credentials_env: Option<String>,
    #[serde(default = "default_branch")]
    pub default_branch: String,
    pub prefix: String,
    #[serde(default)]
    pub test: Option<Vec<String>>,
    #[serde(default)]
    pub deploy: Option<Vec<String>>,
    #[serde(default)]
    pub health: Option<Vec<String>>,
    /// The coverage gate's command (SPEC §5.1): prints a line-coverage percentage, or names a
    /// report file (coverage JSON, lcov) holding it. Run on the merge gate's re-tested tree.
    #[serde(default)]
    pub coverage: Option<Vec<String>>,
    /// How coverage is judged: against `coverage_min`, the baseline, or both.
    #[serde(default)]
    pub coverage_mode: baton_domain::coverage::CoverageMode,
    /// The absolute floor in percent (0: none).
    #[serde(default)]
    pub coverage_min: f64,
    /// Points below the baseline still accepted (against flapping).
    #[serde(default = "default_coverage_epsilon")]
    pub coverage_epsilon: f64,
    /// A coverage command that fails or prints no figure passes with a warning (true) or fails
    /// the change (false).
    #[serde(default = "default_true")]
    pub coverage_fail_open: bool,
    /// The security gate's command (`cargo audit`, gitleaks …): a non-zero exit is a finding.
    #[serde(default)]
    pub security: Option<Vec<String>>,
    /// Batches in the merge queue (opt-in): up to this many queued changes are tested as one
    /// combined head and land as one commit; a red batch is split in halves until the culprit is
    /// found (docs/merge-queue.md). 1 (the default) tests every change on its own.
    #[serde(default = "default_merge_batch")]
    pub merge_batch: u32,
    /// The post-deploy monitor window (SPEC §3): after a deploy passes its health check, `health`
    /// runs every `monitor_interval_secs` for this long and the task is `done` when it closes
    /// green. 0 (the default): no window, the one `deploy_status` check decides.
    #[serde(default)]
    pub monitor_window_secs: u64,
    /// Seconds between the monitor's health checks.
    #[serde(default = "default_monitor_interval_secs")]
    pub monitor_interval_secs: u64,
    /// Consecutive failed checks that make the deploy DEGRADED (freeze, incident, revert).
    #[serde(default = "default_monitor_failures")]
    pub monitor_failures: u32,
    /// On DEGRADED, revert the task's commit through the merge gate and deploy (the one change
    /// that lands in a frozen repository).
    #[serde(default)]
    pub revert_on_degraded: bool,
    /// Whether a revert still waits for a human's deploy confirmation (default: it does not).
    #[serde(default)]
    pub revert_confirm: bool,
    /// The serial gate (SPEC §6.4, opt-in): a task's first stage is not claimed while an earlier
    /// unfinished task of the repository exists, so tasks run one after another in id order, each
    /// branched from the default branch its predecessor merged into.
    #[serde(default)]
    pub serial: bool,
    /// Workspace hooks (`[repos.hooks]`): commands run in the task's worktree around its life.
    #[serde(default)]
    pub hooks: RepoHooks,
    /// The repository's own pipeline (`pipeline = "<name>"`, one of `[pipelines.<name>]`, read by
    /// the configuration loader); `None`: the global `[pipeline]`.
    #[serde(skip)]
    pub pipeline: Option<NamedPipeline>,
    /// The hosted forge of the repository (`forge`, `forge_repo`, … in the file, read by the
    /// configuration loader; default: local).
    #[serde(skip)]
    pub forge: RepoForge,
}

/// A pipeline of `[pipelines.<name>]` as a repository uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedPipeline {
    pub name: String,
    pub pipeline: Pipeline,
}

/// Workspace hooks of a repository (SPEC §7): argument vectors run in the task's worktree through
/// the command runner (a shell only when the user writes one, `["sh", "-c", "…"]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepoHooks {
    /// After the worktree is created (and re-created after being parked); a failure fails the attempt.
    pub after_create: Option<Vec<String>>,
    /// Before every agent run; a failure fails the attempt.
    pub before_run: Option<Vec<String>>,
    /// After every agent run; a failure is a warning.
    pub after_run: Option<Vec<String>>,
    /// Before the worktree is removed; a failure is a warning and the removal goes on.
    pub before_remove: Option<Vec<String>>,
    /// Wall-clock limit of each hook run.
    pub timeout_secs: u64,
}

/// The default wall-clock limit of a workspace hook.
pub const HOOK_TIMEOUT_SECS_DEFAULT: u64 = 120;

impl Default for RepoHooks {
    fn default() -> Self {
        RepoHooks {
            after_create: None,
            before_run: None,
            after_run: None,
            before_remove: None,
            timeout_secs: HOOK_TIMEOUT_SECS_DEFAULT,
        }
    }
}

/// Which forge holds a repository.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForgeKind {
    /// The repository itself (or a plain git remote): no pull requests, no CI.
    #[default]
    Local,
    GitHub,
    /// Gitea or Forgejo.
    Gitea,
}

/// Whether the `ci_green` gate requires the forge to report checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CiPolicy {
    /// No checks reported for the head: wait for them (a hosted repository's default).
    #[default]
    Required,
    /// No checks reported for the head: pass (a repository without CI).
    Optional,
}

/// A repository's forge settings (`forge`, `forge_repo`, `forge_api_url`, `forge_token_env`,
/// `merge_style`, `ci`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoForge {
    pub kind: ForgeKind,
    /// `owner/name` on the forge.
    pub repo: Option<String>,
    /// The API base URL (GitHub: `https://api.github.com`; Gitea: `https://host/api/v1`).
    pub api_url: Option<String>,
    /// The variable holding the API token.
    pub token_env: Option<String>,
    pub merge_style: MergeStyle,
    pub ci: CiPolicy,
}

impl RepoForge {
    /// Whether the repository is on GitHub or Gitea/Forgejo (pull requests, CI).
    pub fn is_hosted(&self) -> bool {
        self.kind != ForgeKind::Local
    }
}

/// When the remote task branch of a `url` repository is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteRemoteBranch {
    /// After the task's head was merged into the default branch.
    AfterMerge,
    /// On STOP (the task is cancelled) and after the merge.
    #[default]
    OnStopAndAfterMerge,
    /// Never: remote task branches stay for humans to delete.
    Never,
}

fn default_merge_batch() -> u32 {
    1
}

fn default_monitor_interval_secs() -> u64 {
    30
}

fn default_monitor_failures() -> u32 {
    3
}

/// The longest post-deploy monitor window (`monitor_window_secs`): a week.
pub const MONITOR_WINDOW_SECS_MAX: u64 = 7 * 24 * 3600;

/// The largest merge-queue batch (`merge_batch`).
pub const MERGE_BATCH_MAX: u32 = 32;

impl RepoSettings {
    /// The remote of a `url` repository (Baton works in its clone at `path`).
    pub fn remote(&self) -> Option<Remote> {
        self.url.as_ref().map(|url| Remote { url: url.clone(), credentials_env: self.credentials_env.clone() })
    }

    /// Whether task branches are pushed to the remote.
    pub fn pushes(&self) -> bool {
        self.url.is_some() && self.push.unwrap_or(true)
    }

    /// The ref new worktrees branch from and the merge gate rebases onto: `origin/<default>` in
    /// Baton's clone of a remote, else the local default branch.
    pub fn default_ref(&self) -> String {
        match self.url {
            Some(_) => format!("refs/remotes/origin/{}", self.default_branch),
            None => format!("refs/heads/{}", self.default_branch),
        }
    }

    /// Whether the remote task branch goes when the task is stopped (`stop`) or merged.
    pub fn deletes_remote_branch(&self, stop: bool) -> bool {
        match self.delete_remote_branch {
            DeleteRemoteBranch::Never => false,
            DeleteRemoteBranch::AfterMerge => !stop,
            DeleteRemoteBranch::OnStopAndAfterMerge => true,
        }
    }
}

fn default_branch() -> String {
    "main".to_string()
}

/// Which adapter an agent uses and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    Script,
    Command,
    Claude,
    Codex,
    Gemini,
}

impl AdapterKind {
    /// Every adapter, as written in `baton.toml`.
    pub const NAMES: &'static [&'static str] = &["script", "command", "claude", "codex", "gemini"];

    /// The adapter of a `baton.toml` name (`claude`, …); `None` for a name Baton does not know.
    pub fn parse(name: &str) -> Option<AdapterKind> {
        Some(match name {
            "script" => AdapterKind::Script,
            "command" => AdapterKind::Command,
            "claude" => AdapterKind::Claude,
            "codex" => AdapterKind::Codex,
            "gemini" => AdapterKind::Gemini,
            _ => return None,
        })
    }

    /// The CLI program run by default for the real-agent adapters.
    pub fn default_program(self) -> &'static str {
        match self {
            AdapterKind::Script => "baton",
            AdapterKind::Command => "",
            AdapterKind::Claude => "claude",
            AdapterKind::Codex => "codex",
            AdapterKind::Gemini => "gemini",
        }
    }
}

/// An agent definition; `[agents.<role>]`, with `[agents.default]` for roles not named.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    pub adapter: AdapterKind,
    /// `script`: the script file.
    #[serde(default)]
    pub script: Option<PathBuf>,
    /// `command`: the program and its arguments.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing)]
    pub prompt: PromptMode,
    #[serde(default)]
    pub model: Option<String>,
    /// claude/codex/gemini: the CLI binary (default: the adapter's name on PATH).
    #[serde(default)]
    pub program: Option<String>,
    /// claude/codex/gemini: the model API's base URL (e.g. `baton mock-llm` on loopback).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key; passed through to this agent only.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// claude: `--max-turns`.
    #[serde(default)]
    pub max_turns: Option<u32>,
    /// claude: `--permission-mode` (default acceptEdits); gemini: `--approval-mode` (default yolo).
    #[serde(default)]
    pub permission_mode: Option<String>,
    /// claude: `--allowedTools`.
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// codex: its own sandbox mode, `-s` (default workspace-write; danger-full-access when
    /// Baton's sandbox confines the run).
    #[serde(default)]
    pub sandbox: Option<String>,
    /// Baton's sandbox for this agent (`auto`, `required`, `off`); `None`: `[sandbox] mode`.
    #[serde(default)]
    pub sandbox_mode: Option<SandboxMode>,
    /// The network of this agent's sandbox (`open`, `none`); `None`: `[sandbox] network`.
    #[serde(default)]
    pub sandbox_network: Option<SandboxNetwork>,
    /// Stream progress and usage while running (claude stream-json, gemini stream-json).
    #[serde(default = "default_true")]
    pub streaming: bool,
    /// Extra arguments appended to the CLI's command line.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// claude/codex/gemini: how many times the CLI itself retries a failed model request (a 429,
    /// an overload) before Baton's quota handling decides (default 2).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// More environment variable names passed through to this agent.
    #[serde(default)]
    pub env: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// Baton's agent sandbox (`[sandbox]`): bubblewrap around every agent run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// `auto` (sandboxed when bubblewrap works, else a warning), `required` or `off`.
    pub mode: SandboxMode,
    /// `open` (the host network) or `none` (loopback only).
    pub network: SandboxNetwork,
    /// More paths agents may write (e.g. a shared build cache), absolute.
    pub writable: Vec<PathBuf>,
    /// More paths agents may read where the sandbox hides them (under /tmp), absolute.
    pub read_only: Vec<PathBuf>,
    /// Files agents see as empty: the configuration file Baton was started with (it may hold a
    /// token or a secret). Set by the loader, not by the file.
    #[serde(skip)]
    pub masked_files: Vec<PathBuf>,
}

/// Spending caps (SPEC §9). Caps are in USD; `None` means no cap. Runtime overrides set with
/// `baton budget set` take precedence over these.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budgets {
    /// Total spend of one task.
    pub task_usd: Option<f64>,
    /// Spend of one repository per UTC day.
    pub repo_daily_usd: Option<f64>,
    /// Spend of all repositories per UTC day.
    pub global_daily_usd: Option<f64>,
    /// Fraction of a cap at which one warning alert is sent.
    pub warn_ratio: f64,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets { task_usd: None, repo_daily_usd: None, global_daily_usd: None, warn_ratio: 0.8 }
    }
}

/// History retention (`[retention]`): how long the old history of ended tasks is kept before the
/// engine's hourly pass prunes it ([`baton_store::Store::prune`], the rule in
/// `baton_store::retention`) and deletes the run logs of their agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Days of history kept; 0 keeps everything (nothing is pruned).
    pub days: u32,
    /// Rows of each kind one prune batch deletes at most (small batches keep the write lock short).
    pub batch: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { days: 90, batch: 500 }
    }
}

impl Retention {
    /// Keeps everything: what an engine built without `[retention]` does.
    pub const KEEP_ALL: Retention = Retention { days: 0, batch: 500 };

    /// The cutoff at `now_ms`: history older than this goes; `None` when everything is kept.
    pub fn cutoff_ms(&self, now_ms: i64) -> Option<i64> {
        (self.days > 0 && self.batch > 0).then(|| now_ms.saturating_sub(i64::from(self.days) * 86_400_000))
    }
}

/// Everything the engine needs.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub data_dir: PathBuf,
    pub limits: Limits,
    pub repos: Vec<RepoSettings>,
    pub agents: BTreeMap<String, AgentSettings>,
    pub pipeline: Pipeline,
    pub budgets: Budgets,
    /// Path of the running `baton` binary (the script agent and shim re-execute it).
    pub baton_exe: PathBuf,
    /// Environment variable names passed through to agents, beyond the minimal set.
    pub env_passthrough: Vec<String>,
}

impl EngineSettings {
    pub fn repo(&self, name: &str) -> Option<&RepoSettings> {
        self.repos.iter().find(|r| r.name == name)
    }

    /// The agent for `role`, falling back to `default`.
    pub fn agent_for(&self, role: &str) -> Option<&AgentSettings> {
        self.agents.get(role).or_else(|| self.agents.get("default"))
    }

    /// The pipeline with the configured retry, rollback and deferral limits applied.
    pub fn effective_pipeline(&self) -> Pipeline {
        self.with_limits(self.pipeline.clone())
    }

    /// The pipeline tasks of `repo` run through: the repository's named pipeline, else the global
    /// one, with the configured limits applied.
    pub fn effective_pipeline_for(&self, repo: &str) -> Pipeline {
        match self.repo(repo).and_then(|r| r.pipeline.as_ref()) {
            Some(named) => self.with_limits(named.pipeline.clone()),
            None => self.effective_pipeline(),
        }
    }

    /// The settings of the agent that runs `stage` (an agent stage): the stage's `agent` entry or
    /// its role's (then `[agents.default]`), with the stage's adapter and model laid over it.
    /// `None` when no entry serves it.
    pub fn agent_for_stage(&self, role: &str, stage: &baton_domain::StageSpec) -> Option<AgentSettings> {
        let overrides = &stage.overrides;
        let mut agent = match &overrides.agent {
            Some(name) => self.agents.get(name)?.clone(),
            None => self.agent_for(role)?.clone(),
        };
        if let Some(adapter) = overrides.adapter.as_deref().and_then(AdapterKind::parse) {
            agent.adapter = adapter;
        }
        if let Some(model) = &overrides.model {
            agent.model = Some(model.clone());
        }
        Some(agent)
    }

    fn with_limits(&self, mut pipeline: Pipeline) -> Pipeline {
        pipeline.retry_max = self.limits.retry_max;
        pipeline.rollback_max = self.limits.rollback_max;
        pipeline.retry_base_ms = self.limits.retry_base_secs * 1000;
        pipeline.defer_delay_ms = self.limits.merge_defer_secs * 1000;
        pipeline.defer_max = self.limits.merge_defer_max;
        pipeline
    }

    pub fn worktrees_dir(&self) -> PathBuf {
        self.data_dir.join("worktrees")
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.data_dir.join("runs")
    }
}

fn default_coverage_epsilon() -> f64 {
    0.1
}
