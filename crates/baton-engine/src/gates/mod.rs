//! Gates (SPEC §5): deterministic checks that decide whether a stage may be left.
//! Each returns a [`GateVerdict`] with a reason a human (and the next agent) can act on.
//!
//! Gates see only a [`GateContext`]: the job, its task and stage, and the ports they may use.
//! They never reach the engine or the executor.

mod artifact;
mod ci;
mod command;
mod merge;
mod quality;
mod verdict;

pub use artifact::artifact_relative_path;
pub use ci::{FORGE_UNAVAILABLE, pull_request_spec, web_url};
pub(crate) use command::request as command_request;
pub use command::{RepoCommand, run_repo_command};
pub use merge::merge_lease_name;
pub use verdict::front_matter;

use crate::clock::Clock;
use crate::settings::{Limits, RepoSettings};
use baton_adapters::forge::Forge;
use baton_domain::{GateSpec, GateVerdict, Pipeline, StageSpec, Verdict};
use baton_runner::{CommandRunner, Vcs};
use baton_store::{JobRecord, Store, TaskRecord};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

/// What a gate (or the deploy step) may know and use about the job being run.
pub struct GateContext<'a> {
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    pub vcs: &'a dyn Vcs,
    pub commands: &'a dyn CommandRunner,
    /// The forge of the task's repository (pull requests, CI).
    pub forge: &'a dyn Forge,
    /// The effective pipeline (its artifact names go into the pull request).
    pub pipeline: &'a Pipeline,
    pub task: &'a TaskRecord,
    pub job: &'a JobRecord,
    pub repo: &'a RepoSettings,
    pub stage: &'a StageSpec,
    pub worktree: &'a Path,
    /// This job's run directory (commands get their own directories under it).
    pub run_dir: &'a Path,
    /// The environment of repository commands.
    pub env: &'a [(String, String)],
    pub limits: &'a Limits,
    /// Milliseconds spent in git and repo commands (not Baton's own overhead).
    pub external_ms: &'a AtomicU64,
    /// Turns true when the job must stop (STOP, reaper backstop).
    pub stop: watch::Receiver<bool>,
    /// The merge queues' scheduler hooks (ask for a pass, adapt the depth).
    pub queues: &'a crate::queue::MergeQueues,
    /// The kill switches (the merge gate's coverage and security checks ask them).
    pub features: &'a crate::features::Features,
}

impl GateContext<'_> {
    /// Runs `work` (git, a command), counting its time as external.
    pub async fn timed<T>(&self, work: impl Future<Output = T>) -> T {
        let started = self.clock.now_ms();
        let result = work.await;
        let spent = (self.clock.now_ms() - started).max(0) as u64;
        self.external_ms.fetch_add(spent, Ordering::Relaxed);
        result
    }
}

/// Whether a gate's reason says the machine or a service failed rather than the code: retried
/// without spending an attempt.
pub fn is_infrastructure(reason: &str) -> bool {
    baton_runner::is_infrastructure(reason) || reason.contains(FORGE_UNAVAILABLE)
}

/// Evaluates one gate of the current stage. `human_approval` is decided by `decide`, not here.
pub async fn evaluate(ctx: &GateContext<'_>, gate: &GateSpec) -> Option<GateVerdict> {
    let verdict = match gate {
        GateSpec::HumanApproval => return None,
        GateSpec::Artifact => artifact::check(ctx).await,
        GateSpec::Verdict { key, pass } => verdict::check(ctx, key, pass).await,
        GateSpec::TestsPassed => command::check(ctx, "tests_passed", RepoCommand::Test).await,
        GateSpec::DeployStatus => command::check(ctx, "deploy_status", RepoCommand::Health).await,
        GateSpec::Command { name, argv } => command::check_argv(ctx, name, argv).await,
        GateSpec::Mergeable => merge::check(ctx).await,
        GateSpec::CiGreen => ci::check(ctx).await,
    };
    Some(verdict)
}

/// Evaluates the gates of a stage in order, stopping at the first that does not pass.
pub async fn evaluate_all(ctx: &GateContext<'_>, gates: &[GateSpec]) -> Vec<GateVerdict> {
    let mut verdicts = Vec::new();
    for gate in gates {
        if let Some(verdict) = evaluate(ctx, gate).await {
            let passed = verdict.verdict == Verdict::Pass;
            verdicts.push(verdict);
            if !passed {
                break;
            }
        }
    }
    verdicts
}
