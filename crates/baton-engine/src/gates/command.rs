//! Command gates: `tests_passed` (repo `test`), `deploy_status` (repo `health`), and `command`.
//! Every command runs under `baton shim` in its own run directory; a check is idempotent, so a
//! leftover of an interrupted run is stopped and set aside, and the check runs afresh.

use super::GateContext;
use baton_domain::{GateVerdict, Verdict};
use baton_runner::{CommandOutput, CommandRequest, RunError};
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

    pub fn argv(self, ctx: &GateContext<'_>) -> Option<Vec<String>> {
        match self {
            RepoCommand::Test => ctx.repo.test.clone(),
            RepoCommand::Deploy => ctx.repo.deploy.clone(),
            RepoCommand::Health => ctx.repo.health.clone(),
        }
    }
}

/// The request for `argv` in the worktree with the repository-command environment.
pub(crate) fn request(ctx: &GateContext<'_>, argv: &[String], run_dir: std::path::PathBuf) -> CommandRequest {
    CommandRequest {
        argv: argv.to_vec(),
        cwd: ctx.worktree.to_path_buf(),
        env: ctx.env.to_vec(),
        timeout: Duration::from_secs(ctx.limits.command_timeout_secs),
        stop_grace: Duration::from_secs(ctx.limits.stop_grace_secs),
        run_dir,
        owner: format!("job:{}", ctx.job.id),
    }
}

/// Runs `argv` in the worktree as a fresh check named `name`; its time counts as external work.
pub async fn run_repo_command(ctx: &GateContext<'_>, name: &str, argv: &[String]) -> Result<CommandOutput, RunError> {
    let run_dir = ctx.run_dir.join(format!("cmd-{name}"));
    ctx.commands.reset(&run_dir, Duration::from_secs(ctx.limits.stop_grace_secs)).await?;
    let request = request(ctx, argv, run_dir);
    let run = ctx.timed(ctx.commands.run(&request, ctx.stop.clone())).await?;
    Ok(run.output)
}

pub async fn check(ctx: &GateContext<'_>, gate: &str, command: RepoCommand) -> GateVerdict {
    match command.argv(ctx) {
        Some(argv) => check_argv(ctx, gate, &argv).await,
        None => GateVerdict::new(
            gate,
            Verdict::Pass,
            format!("no `{}` command configured for {}", command.name(), ctx.repo.name),
        ),
    }
}

pub async fn check_argv(ctx: &GateContext<'_>, gate: &str, argv: &[String]) -> GateVerdict {
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
