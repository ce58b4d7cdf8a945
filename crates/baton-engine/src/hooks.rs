//! Workspace hooks (SPEC §7, `[repos.hooks]`): a repository's own commands around a task's
//! worktree — `after_create` once the worktree exists (again after it was parked), `before_run`
//! and `after_run` around every agent run, `before_remove` before the worktree goes.
//!
//! Each hook is an argument vector run in the worktree through the command port, like the
//! repository's `test` command (under `baton shim`, in its own run directory, with a timeout and
//! an explicit environment: the minimal set plus the task's ids and the attempt's `BATON_PORT`).
//! A failing `after_create` or `before_run` fails the attempt with the hook's name and output
//! tail; `after_run` and `before_remove` only warn. Every run is on the task's timeline.

use crate::engine::Engine;
use crate::features::Feature;
use crate::settings::RepoSettings;
use baton_runner::CommandRequest;
use baton_store::{NewEvent, TaskRecord};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// One of a repository's workspace hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    AfterCreate,
    BeforeRun,
    AfterRun,
    BeforeRemove,
}

impl Hook {
    /// The hook's key under `[repos.hooks]`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::AfterCreate => "after_create",
            Hook::BeforeRun => "before_run",
            Hook::AfterRun => "after_run",
            Hook::BeforeRemove => "before_remove",
        }
    }

    /// The command configured for this hook on `repo`.
    pub fn argv(self, repo: &RepoSettings) -> Option<&[String]> {
        let hooks = &repo.hooks;
        let argv = match self {
            Hook::AfterCreate => &hooks.after_create,
            Hook::BeforeRun => &hooks.before_run,
            Hook::AfterRun => &hooks.after_run,
            Hook::BeforeRemove => &hooks.before_remove,
        };
        argv.as_deref().filter(|argv| !argv.is_empty())
    }

    /// Whether a failure fails the attempt (otherwise it is a warning and the work goes on).
    pub fn fails_attempt(self) -> bool {
        matches!(self, Hook::AfterCreate | Hook::BeforeRun)
    }
}

/// The variables that name a task to its hooks and agents: its ids, where it runs, and the
/// attempt's free port (none outside an attempt, e.g. when the worktree is removed).
pub fn task_env(task: &TaskRecord, stage: &str, worktree: &Path, port: Option<u16>) -> Vec<(String, String)> {
    let mut env = vec![
        ("BATON_TASK_ID".to_string(), task.id.0.to_string()),
        ("BATON_WORK_ITEM".to_string(), task.work_item_id.clone()),
        ("BATON_REPO".to_string(), task.repo.clone()),
        ("BATON_BRANCH".to_string(), task.branch.clone()),
        ("BATON_STAGE".to_string(), stage.to_string()),
        ("BATON_ATTEMPT".to_string(), task.state.attempt.to_string()),
        ("BATON_WORKTREE".to_string(), worktree.display().to_string()),
    ];
    if let Some(port) = port {
        env.push(("BATON_PORT".to_string(), port.to_string()));
    }
    env
}

/// Where and as whom a hook runs.
pub struct HookSite<'a> {
    pub task: &'a TaskRecord,
    pub repo: &'a RepoSettings,
    pub stage: &'a str,
    pub worktree: &'a Path,
    /// The directory under which each hook gets its own run directory (`hook-<name>`).
    pub runs_under: PathBuf,
    /// Recorded with the run (`job:<id>`, `task:<id>`).
    pub owner: String,
    /// The hook's whole environment (minimal set, pass-through, [`task_env`]).
    pub env: Vec<(String, String)>,
    /// Turns true when the job must stop.
    pub stop: watch::Receiver<bool>,
}

/// Runs `hook` at `site` when the repository has one and hooks are switched on for it.
/// `Err(reason)`: a hook that fails the attempt failed (its name and output tail in the reason).
pub async fn run(engine: &Engine, site: &HookSite<'_>, hook: Hook) -> Result<(), String> {
    let Some(argv) = hook.argv(site.repo) else {
        return Ok(());
    };
    if !engine.features().enabled(Feature::Hooks, &site.repo.name) {
        return Ok(());
    }
    let name = hook.name();
    let commands = engine.commands();
    let limits = &engine.settings().limits;
    let stop_grace = Duration::from_secs(limits.stop_grace_secs);
    let run_dir = site.runs_under.join(format!("hook-{name}"));
    let started_ms = engine.clock().now_ms();
    let ran = match commands.reset(&run_dir, stop_grace).await {
        Ok(()) => {
            let request = CommandRequest {
                argv: argv.to_vec(),
                cwd: site.worktree.to_path_buf(),
                env: site.env.clone(),
                timeout: Duration::from_secs(site.repo.hooks.timeout_secs),
                stop_grace,
                run_dir,
                owner: site.owner.clone(),
            };
            commands.run(&request, site.stop.clone()).await
        }
        Err(error) => Err(error),
    };
    let ms = (engine.clock().now_ms() - started_ms).max(0);
    let command = argv.join(" ");
    let (failure, exit_code) = match &ran {
        Ok(run) if run.output.exit.success() => (None, run.output.exit.code),
        Ok(run) => (
            Some(format!(
                "workspace hook `{name}` (`{command}`) {}; output tail:\n{}",
                run.output.exit.describe(),
                run.output.tail
            )),
            run.output.exit.code,
        ),
        Err(error) => (Some(format!("workspace hook `{name}` (`{command}`) could not run: {error}")), None),
    };
    let (kind, message) = match &failure {
        None => ("hook", format!("{name} hook passed in {ms} ms")),
        Some(reason) if hook.fails_attempt() => ("hook", first_line(reason).to_string()),
        Some(reason) => ("warning", format!("{} (ignored: the work goes on)", first_line(reason))),
    };
    let detail = serde_json::json!({
        "hook": name,
        "argv": argv,
        "exit": exit_code,
        "ok": failure.is_none(),
        "ms": ms,
        "tail": ran.as_ref().ok().filter(|_| failure.is_some()).map(|run| run.output.tail.clone()),
    });
    let event = NewEvent {
        task: site.task.id,
        at_ms: engine.clock().now_ms(),
        kind: kind.into(),
        stage: site.stage.to_string(),
        message,
        detail,
    };
    if let Err(error) = engine.store().append_event(event).await {
        tracing::warn!(task = %site.task.work_item_id, hook = name, "recording the hook run failed: {error}");
    }
    match failure {
        Some(reason) if hook.fails_attempt() => Err(reason),
        _ => Ok(()),
    }
}

/// Runs `before_remove` in the task's worktree before it is removed (or parked); a failure is a
/// warning on the timeline and the removal goes on.
pub async fn before_remove(engine: &Engine, task: &TaskRecord, repo: &RepoSettings, worktree: &Path) {
    if Hook::BeforeRemove.argv(repo).is_none() || !engine.vcs().exists(worktree) {
        return;
    }
    let (_stop_tx, stop) = watch::channel(false);
    let mut env = crate::executor::minimal_env(engine);
    env.extend(task_env(task, &task.state.stage, worktree, None));
    let site = HookSite {
        task,
        repo,
        stage: &task.state.stage,
        worktree,
        runs_under: engine.settings().runs_dir().join(&task.work_item_id),
        owner: format!("task:{}", task.id),
        env,
        stop,
    };
    let _ = run(engine, &site, Hook::BeforeRemove).await;
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}
