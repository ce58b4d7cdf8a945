//! The merge gate (SPEC §6.3): under the repo's merge lease, rebase the task branch onto the current
//! default-branch head (always), squash it to one commit, and re-run `test` on the combined tree.
//! The lease stays held through deploy → done; a busy lease defers, never deadlocks.

use super::GateContext;
use super::command::run_repo_command;
use baton_domain::{GateVerdict, Verdict};
use baton_store::{JobStatus, LeaseOutcome, task_holder};

const GATE: &str = "mergeable";

/// The name of a repository's merge lease.
pub fn merge_lease_name(repo: &str) -> String {
    format!("merge:{repo}")
}

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

pub async fn check(ctx: &GateContext<'_>) -> GateVerdict {
    let lease = merge_lease_name(&ctx.repo.name);
    let ttl_ms = ctx.limits.lease_ttl_secs as i64 * 1000;
    // A re-run of this stage (a deferred `ci_green`) while the task still holds the lease.
    let held_before = ctx
        .store
        .lease(&lease)
        .await
        .ok()
        .flatten()
        .is_some_and(|l| l.holder == task_holder(ctx.task.id) && l.expires_at_ms > ctx.clock.now_ms());
    match ctx.store.acquire_lease(&lease, &task_holder(ctx.task.id), ttl_ms, ctx.clock.now_ms()).await {
        Ok(LeaseOutcome::Acquired { .. }) => {
            // The task may have been stopped between the claim and the lease: never hold the
            // repo's lease for a task that is no longer running this job.
            let current = ctx.store.task(&baton_store::TaskKey::Id(ctx.task.id)).await.ok().flatten();
            if !current.is_some_and(|t| t.state.job == Some(ctx.job.id) && !t.state.is_terminal()) {
                // Retried: a lease kept here would hold up the repository's merges until the reaper.
                for _ in 0..3 {
                    if ctx.store.release_lease(&lease, &task_holder(ctx.task.id)).await.is_ok() {
                        break;
                    }
                }
                return GateVerdict::new(GATE, Verdict::Error, "the task changed while the merge gate started");
            }
        }
        Ok(LeaseOutcome::Busy { holder }) => {
            return GateVerdict::new(
                GATE,
                Verdict::Defer,
                format!("merge lease of {} is held by {holder}", ctx.repo.name),
            );
        }
        Err(error) => return GateVerdict::new(GATE, Verdict::Error, format!("cannot take the merge lease: {error}")),
    }
    let default = &ctx.repo.default_branch;
    // A `url` repository: rebase onto the remote's default head as it is now.
    if let Some(remote) = ctx.repo.remote()
        && let Err(error) = ctx.timed(ctx.vcs.sync_remote(&ctx.repo.path, &remote, default)).await
    {
        return GateVerdict::new(GATE, Verdict::Error, format!("cannot fetch the remote: {error}"));
    }
    let Some(base) = ctx.timed(ctx.vcs.rev(&ctx.repo.path, &ctx.repo.default_ref())).await else {
        return GateVerdict::new(GATE, Verdict::Error, format!("default branch `{default}` not found"));
    };
    if held_before && let Some(head) = already_retested(ctx, &base).await {
        // Nothing moved since this task's own pass: rebasing and squashing again would make a new
        // commit (and restart the forge's CI) for the same tree.
        let mut verdict = GateVerdict::new(
            GATE,
            Verdict::Pass,
            format!("already rebased onto {default} {} and re-tested at {}", short(&base), short(&head)),
        );
        verdict.evidence = Some(head);
        return verdict;
    }
    if let Err(error) = ctx.timed(ctx.vcs.rebase(ctx.worktree, &base)).await {
        return GateVerdict::new(
            GATE,
            Verdict::Fail,
            format!("rebase onto {default} ({}) conflicts: {error}", short(&base)),
        );
    }
    match ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD")).await {
        Some(head) if head == base => {
            return GateVerdict::new(GATE, Verdict::Fail, format!("the branch has no changes relative to {default}"));
        }
        Some(_) => {}
        None => return GateVerdict::new(GATE, Verdict::Error, "the worktree has no HEAD"),
    }
    // One commit per task on the default branch, so every commit there is a retested head.
    let title: String = ctx.task.title.chars().filter(|c| !c.is_control()).take(120).collect();
    let message = format!("{}: {title}\n\nMerged by Baton from {}.", ctx.task.work_item_id, ctx.task.branch);
    if let Err(error) = ctx.timed(ctx.vcs.squash(ctx.worktree, &base, &message)).await {
        return GateVerdict::new(GATE, Verdict::Error, format!("squashing onto {default} failed: {error}"));
    }
    let head = ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD")).await.unwrap_or_default();
    if let Some(argv) = ctx.repo.test.clone() {
        match run_repo_command(ctx, "merge-retest", &argv).await {
            Ok(out) if out.exit.success() => {}
            Ok(out) => {
                return GateVerdict::new(
                    GATE,
                    Verdict::Fail,
                    format!(
                        "re-test on top of {default} ({}) {}; output tail:\n{}",
                        short(&base),
                        out.exit.describe(),
                        out.tail
                    ),
                );
            }
            Err(error) => return GateVerdict::new(GATE, Verdict::Error, format!("re-test could not run: {error}")),
        }
    }
    let mut verdict = GateVerdict::new(
        GATE,
        Verdict::Pass,
        format!("rebased onto {default} {}, squashed to {} and re-tested", short(&base), short(&head)),
    );
    verdict.evidence = Some(head);
    verdict
}

/// The worktree's head when it is the one this task's last passing merge gate re-tested and sits
/// right on `base` (the default branch's current head).
async fn already_retested(ctx: &GateContext<'_>, base: &str) -> Option<String> {
    let head = ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD")).await?;
    let parent = ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD^")).await?;
    if parent != base {
        return None;
    }
    let jobs = ctx.store.jobs_for_task(ctx.task.id).await.ok()?;
    let passed = jobs
        .iter()
        .rev()
        .filter(|j| j.status == JobStatus::Done)
        .find_map(|j| j.outcome().and_then(|o| o.retested_head().map(str::to_string)))?;
    (passed == head).then_some(head)
}
