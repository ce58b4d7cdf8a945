//! Command gates: `tests_passed` (repo `test`), `deploy_status` (repo `health`), and `command`.

use crate::executor::JobContext;
use baton_domain::{GateVerdict, Verdict};
use baton_runner::{CommandOutput, CommandSpec, RunError, run_command};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A command configured on the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoCommand {
    Test,
    Deploy,
    Health,
}

impl RepoCommand {
    pub fn name(self) -> &'static str {
        match self {
            RepoCommand::Test => "test",
            RepoCommand::Deploy => "deploy",
            RepoCommand::Health => "health",
        }
    }

    pub fn argv(self, ctx: &JobContext<'_>) -> Option<Vec<String>> {
        match self {
            RepoCommand::Test => ctx.repo.test.clone(),
            RepoCommand::Deploy => ctx.repo.deploy.clone(),
            RepoCommand::Health => ctx.repo.health.clone(),
        }
    }
}

/// Runs `argv` in the worktree with a minimal environment; the time counts as external work.
pub async fn run_repo_command(ctx: &JobContext<'_>, name: &str, argv: &[String]) -> Result<CommandOutput, RunError> {
    let mut env = ctx.engine.minimal_env();
    env.push(("BATON_WORK_ITEM".into(), ctx.task.work_item_id.clone()));
    env.push(("BATON_REPO".into(), ctx.task.repo.clone()));
    env.push(("BATON_BRANCH".into(), ctx.task.branch.clone()));
    let spec = CommandSpec {
        argv: argv.to_vec(),
        cwd: ctx.worktree.to_path_buf(),
        env,
        timeout: Duration::from_secs(ctx.engine.settings.limits.command_timeout_secs),
        log: ctx.run_dir.join(format!("{name}.log")),
    };
    let output = run_command(&spec).await;
    if let Ok(out) = &output {
        ctx.external_ms.fetch_add(out.exit.duration_ms, Ordering::Relaxed);
    }
    output
}

pub async fn check(ctx: &JobContext<'_>, gate: &str, command: RepoCommand) -> GateVerdict {
    match command.argv(ctx) {
        Some(argv) => check_argv(ctx, gate, &argv).await,
        None => GateVerdict::new(
            gate,
            Verdict::Pass,
            format!("no `{}` command configured for {}", command.name(), ctx.repo.name),
        ),
    }
}

pub async fn check_argv(ctx: &JobContext<'_>, gate: &str, argv: &[String]) -> GateVerdict {
    match run_repo_command(ctx, gate, argv).await {
        Ok(out) if out.exit.success() => GateVerdict::new(gate, Verdict::Pass, format!("`{}` passed", argv.join(" "))),
        Ok(out) => GateVerdict::new(
            gate,
            Verdict::Fail,
            format!("`{}` {}; output tail:\n{}", argv.join(" "), out.exit.describe(), out.tail),
        ),
        Err(error) => GateVerdict::new(gate, Verdict::Error, error.to_string()),
    }
}
