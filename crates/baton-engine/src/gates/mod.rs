//! Gates (SPEC §5): deterministic checks that decide whether a stage may be left.
//! Each returns a [`GateVerdict`] with a reason a human (and the next agent) can act on.

mod artifact;
mod command;
mod merge;
mod verdict;

pub use artifact::artifact_relative_path;
pub use command::{RepoCommand, run_repo_command};
pub use merge::merge_lease_name;
pub use verdict::front_matter;

use crate::executor::JobContext;
use baton_domain::{GateSpec, GateVerdict, Verdict};

/// Evaluates one gate of the current stage. `human_approval` is decided by `decide`, not here.
pub async fn evaluate(ctx: &JobContext<'_>, gate: &GateSpec) -> Option<GateVerdict> {
    let verdict = match gate {
        GateSpec::HumanApproval => return None,
        GateSpec::Artifact => artifact::check(ctx),
        GateSpec::Verdict { key, pass } => verdict::check(ctx, key, pass),
        GateSpec::TestsPassed => command::check(ctx, "tests_passed", RepoCommand::Test).await,
        GateSpec::DeployStatus => command::check(ctx, "deploy_status", RepoCommand::Health).await,
        GateSpec::Command { name, argv } => command::check_argv(ctx, name, argv).await,
        GateSpec::Mergeable => merge::check(ctx).await,
    };
    Some(verdict)
}

/// Evaluates the gates of a stage in order, stopping at the first that does not pass.
pub async fn evaluate_all(ctx: &JobContext<'_>, gates: &[GateSpec]) -> Vec<GateVerdict> {
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
