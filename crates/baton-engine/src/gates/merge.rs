//! The merge gate (SPEC §6.3): the change's side of the repository's merge queue. A first run puts
//! the change in the queue and parks the task (no job, no slot, no events while it waits). When
//! the queue wakes it to be tested on a base — the default head, or the tested head of the change
//! ahead — the gate rebases the task branch onto that base, squashes it to one commit, re-runs
//! `test` on that tree (a failure is tried once more: a pass then is a flake, not a culprit) and
//! records the result. It passes only under the repository's merge lease, with the worktree at
//! the tested head sitting right on the default branch's current head: deploy then lands exactly
//! that commit. The lease is taken for landing only, never while a human is awaited.

use super::GateContext;
use super::command::run_repo_command;
use baton_domain::{GateVerdict, Verdict};
use baton_store::{LeaseOutcome, NewEvent, QueueChange, QueueEntry, QueueExpect, QueueState, task_holder};

const GATE: &str = "mergeable";

/// Times the gate re-reads its queue entry after the queue moved it while it worked.
const ROUNDS_MAX: usize = 4;

/// The name of a repository's merge lease.
pub fn merge_lease_name(repo: &str) -> String {
    format!("merge:{repo}")
}

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

fn verdict(kind: Verdict, reason: impl Into<String>) -> GateVerdict {
    GateVerdict::new(GATE, kind, reason)
}

fn queued(reason: impl Into<String>) -> GateVerdict {
    verdict(Verdict::Queued, reason)
}

pub async fn check(ctx: &GateContext<'_>) -> GateVerdict {
    let store = ctx.store;
    for _ in 0..ROUNDS_MAX {
        let entry = match store.queue_entry(ctx.task.id).await {
            Ok(entry) => entry,
            Err(error) => return verdict(Verdict::Error, format!("cannot read the merge queue: {error}")),
        };
        let Some(entry) = entry else {
            return match store.queue_enter(ctx.task.id, &ctx.repo.name, 0, ctx.clock.now_ms()).await {
                Ok(_) => {
                    ctx.queues.kick(&ctx.repo.name);
                    queued(format!("entered the merge queue of {}", ctx.repo.name))
                }
                Err(error) => verdict(Verdict::Error, format!("cannot enter the merge queue: {error}")),
            };
        };
        let next = match entry.state {
            QueueState::Evicted => {
                let why = entry.reason.clone().unwrap_or_else(|| "its re-test failed".to_string());
                return verdict(Verdict::Fail, why);
            }
            QueueState::Landing => return landing(ctx, &entry).await,
            QueueState::Testing => test_round(ctx, &entry).await,
            QueueState::Waiting => return queued(format!("waiting in the merge queue of {}", ctx.repo.name)),
            QueueState::Green => {
                return queued(format!(
                    "green on top of {}; waits for the changes ahead to land",
                    short(entry.base.as_deref().unwrap_or(""))
                ));
            }
            QueueState::Red => {
                return queued(format!(
                    "red on top of the changes ahead of it; judged when they are green: {}",
                    entry.reason.as_deref().unwrap_or("")
                ));
            }
        };
        match next {
            Round::Done(v) => return v,
            Round::Again => continue,
        }
    }
    queued("the merge queue moved this change while it was tested; it waits for its next turn")
}

enum Round {
    Done(GateVerdict),
    /// The entry changed under the gate (a new base): read it again.
    Again,
}

/// Builds the change on the entry's base (unless the worktree already is that build) and tests it.
async fn test_round(ctx: &GateContext<'_>, entry: &QueueEntry) -> Round {
    let Some(base) = entry.base.clone() else {
        return Round::Done(queued("waiting for a base in the merge queue"));
    };
    let default = &ctx.repo.default_branch;
    let head = match built(ctx, entry, &base).await {
        Some(head) => head,
        None => match build(ctx, entry, &base).await {
            Ok(head) => head,
            Err(done) => return done,
        },
    };
    let mut fails = entry.fails;
    loop {
        let Some(argv) = ctx.repo.test.clone() else {
            return record_green(ctx, &base, &head, fails, None).await;
        };
        match run_repo_command(ctx, "merge-retest", &argv).await {
            Ok(out) if out.exit.success() => {
                let flake = (fails > 0).then(|| argv.join(" "));
                return record_green(ctx, &base, &head, fails, flake).await;
            }
            Ok(out) => {
                let on = if Some(base.as_str()) == current_main(ctx).await.as_deref() {
                    format!("{default} ({})", short(&base))
                } else {
                    format!("{} (the changes ahead of it in the merge queue)", short(&base))
                };
                let reason = format!("re-test on top of {on} {}; output tail:\n{}", out.exit.describe(), out.tail);
                fails += 1;
                if fails < 2 {
                    // Tried once more on the same tree: a pass then is a flake, not a culprit.
                    let change = QueueChange {
                        state: QueueState::Testing,
                        base: Some(base.clone()),
                        head: Some(head.clone()),
                        fails,
                        reason: Some(reason),
                    };
                    let expect = QueueExpect { state: QueueState::Testing, base: Some(base.clone()) };
                    match ctx.store.queue_update(ctx.task.id, &expect, &change, ctx.clock.now_ms()).await {
                        Ok(true) => continue,
                        Ok(false) => return Round::Again,
                        Err(error) => {
                            return Round::Done(verdict(Verdict::Error, format!("cannot record the re-test: {error}")));
                        }
                    }
                }
                return record_red(ctx, &base, &head, fails, reason).await;
            }
            Err(error) => {
                return Round::Done(verdict(Verdict::Error, format!("re-test could not run: {error}")));
            }
        }
    }
}

/// The worktree's head when it already is this entry's build on `base` (a job restarted after
/// the build, or the flake retry).
async fn built(ctx: &GateContext<'_>, entry: &QueueEntry, base: &str) -> Option<String> {
    let recorded = entry.head.as_deref()?;
    let head = ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD")).await?;
    let parent = ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD^")).await?;
    (head == recorded && parent == base).then_some(head)
}

/// Rebases the task branch onto `base`, squashes it to one commit and records the head, so the
/// change behind it can build on it while this one is tested.
async fn build(ctx: &GateContext<'_>, entry: &QueueEntry, base: &str) -> Result<String, Round> {
    let default = &ctx.repo.default_branch;
    // A `url` repository: the default head comes from the remote.
    if let Some(remote) = ctx.repo.remote()
        && let Err(error) = ctx.timed(ctx.vcs.sync_remote(&ctx.repo.path, &remote, default)).await
    {
        return Err(Round::Done(verdict(Verdict::Error, format!("cannot fetch the remote: {error}"))));
    }
    if let Err(error) = ctx.timed(ctx.vcs.rebase(ctx.worktree, base)).await {
        let reason = format!("rebase onto {} conflicts: {error}", short(base));
        if baton_runner::is_infrastructure(&reason) {
            return Err(Round::Done(verdict(Verdict::Error, reason)));
        }
        return Err(record_red(ctx, base, "", 2, reason).await);
    }
    match ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD")).await {
        Some(head) if head == base => {
            let reason = format!("the branch has no changes relative to {default}");
            return Err(record_red(ctx, base, "", 2, reason).await);
        }
        Some(_) => {}
        None => return Err(Round::Done(verdict(Verdict::Error, "the worktree has no HEAD"))),
    }
    // One commit per task on the default branch, so every commit there is a re-tested head.
    let title: String = ctx.task.title.chars().filter(|c| !c.is_control()).take(120).collect();
    let message = format!("{}: {title}\n\nMerged by Baton from {}.", ctx.task.work_item_id, ctx.task.branch);
    if let Err(error) = ctx.timed(ctx.vcs.squash(ctx.worktree, base, &message)).await {
        return Err(Round::Done(verdict(Verdict::Error, format!("squashing onto {} failed: {error}", short(base)))));
    }
    let Some(head) = ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD")).await else {
        return Err(Round::Done(verdict(Verdict::Error, "the worktree has no HEAD after squashing")));
    };
    let expect = QueueExpect { state: QueueState::Testing, base: Some(base.to_string()) };
    let change = QueueChange {
        state: QueueState::Testing,
        base: Some(base.to_string()),
        head: Some(head.clone()),
        fails: entry.fails,
        reason: entry.reason.clone(),
    };
    match ctx.store.queue_update(ctx.task.id, &expect, &change, ctx.clock.now_ms()).await {
        Ok(true) => {
            ctx.queues.kick(&ctx.repo.name);
            Ok(head)
        }
        Ok(false) => Err(Round::Again),
        Err(error) => Err(Round::Done(verdict(Verdict::Error, format!("cannot record the build: {error}")))),
    }
}

async fn current_main(ctx: &GateContext<'_>) -> Option<String> {
    ctx.timed(ctx.vcs.rev(&ctx.repo.path, &ctx.repo.default_ref())).await
}

async fn record_green(ctx: &GateContext<'_>, base: &str, head: &str, fails: u32, flake: Option<String>) -> Round {
    let expect = QueueExpect { state: QueueState::Testing, base: Some(base.to_string()) };
    let change = QueueChange {
        state: QueueState::Green,
        base: Some(base.to_string()),
        head: Some(head.to_string()),
        fails,
        reason: None,
    };
    match ctx.store.queue_update(ctx.task.id, &expect, &change, ctx.clock.now_ms()).await {
        Ok(true) => {}
        Ok(false) => return Round::Again,
        Err(error) => return Round::Done(verdict(Verdict::Error, format!("cannot record the re-test: {error}"))),
    }
    ctx.queues.record(&ctx.repo.name, true);
    if let Some(command) = flake {
        let _ = ctx
            .store
            .append_event(NewEvent {
                task: ctx.task.id,
                at_ms: ctx.clock.now_ms(),
                kind: "flake".into(),
                stage: ctx.stage.name.clone(),
                message: format!(
                    "`{command}` failed, then passed on the same tree {}: counted as a flake, not a culprit",
                    short(head)
                ),
                detail: serde_json::json!({ "command": command, "head": head, "base": base }),
            })
            .await;
    }
    // On the default head with the lease free: land now, without a round trip through the queue.
    if current_main(ctx).await.as_deref() == Some(base) {
        let lease = merge_lease_name(&ctx.repo.name);
        let ttl_ms = ctx.limits.lease_ttl_secs as i64 * 1000;
        let holder = task_holder(ctx.task.id);
        if let Ok(LeaseOutcome::Acquired { .. }) =
            ctx.store.acquire_lease(&lease, &holder, ttl_ms, ctx.clock.now_ms()).await
        {
            let expect = QueueExpect { state: QueueState::Green, base: Some(base.to_string()) };
            let change = QueueChange { state: QueueState::Landing, ..change };
            match ctx.store.queue_update(ctx.task.id, &expect, &change, ctx.clock.now_ms()).await {
                Ok(true) => return Round::Done(pass(ctx, base, head)),
                _ => {
                    let _ = ctx.store.release_lease(&lease, &holder).await;
                }
            }
        }
    }
    ctx.queues.kick(&ctx.repo.name);
    Round::Done(queued(format!("green on top of {}; waits for its turn to land", short(base))))
}

async fn record_red(ctx: &GateContext<'_>, base: &str, head: &str, fails: u32, reason: String) -> Round {
    let expect = QueueExpect { state: QueueState::Testing, base: Some(base.to_string()) };
    let head = (!head.is_empty()).then(|| head.to_string());
    let change =
        QueueChange { state: QueueState::Red, base: Some(base.to_string()), head, fails, reason: Some(reason.clone()) };
    match ctx.store.queue_update(ctx.task.id, &expect, &change, ctx.clock.now_ms()).await {
        Ok(true) => {}
        Ok(false) => return Round::Again,
        Err(error) => return Round::Done(verdict(Verdict::Error, format!("cannot record the re-test: {error}"))),
    }
    // Tested on the default head itself: nothing ahead can be blamed.
    if current_main(ctx).await.as_deref() == Some(base) {
        let expect = QueueExpect { state: QueueState::Red, base: Some(base.to_string()) };
        let evicted = QueueChange { state: QueueState::Evicted, ..change };
        if let Ok(true) = ctx.store.queue_update(ctx.task.id, &expect, &evicted, ctx.clock.now_ms()).await {
            ctx.queues.record(&ctx.repo.name, false);
            ctx.queues.kick(&ctx.repo.name);
            return Round::Done(verdict(Verdict::Fail, reason));
        }
    }
    ctx.queues.kick(&ctx.repo.name);
    Round::Done(queued("red on top of the changes ahead of it; judged when they are green"))
}

/// The queue woke the task to land: pass if the lease is the task's, the worktree is the tested
/// head and the default branch is still its base; otherwise back into the queue.
async fn landing(ctx: &GateContext<'_>, entry: &QueueEntry) -> GateVerdict {
    let (Some(base), Some(head)) = (entry.base.clone(), entry.head.clone()) else {
        return requeue(ctx, entry, "the landing change has no tested head").await;
    };
    let lease = merge_lease_name(&ctx.repo.name);
    let ttl_ms = ctx.limits.lease_ttl_secs as i64 * 1000;
    match ctx.store.acquire_lease(&lease, &task_holder(ctx.task.id), ttl_ms, ctx.clock.now_ms()).await {
        Ok(LeaseOutcome::Acquired { .. }) => {}
        Ok(LeaseOutcome::Busy { holder }) => {
            return requeue(ctx, entry, &format!("the merge lease is held by {holder}")).await;
        }
        Err(error) => return verdict(Verdict::Error, format!("cannot take the merge lease: {error}")),
    }
    if let Some(remote) = ctx.repo.remote()
        && let Err(error) = ctx.timed(ctx.vcs.sync_remote(&ctx.repo.path, &remote, &ctx.repo.default_branch)).await
    {
        return verdict(Verdict::Error, format!("cannot fetch the remote: {error}"));
    }
    if current_main(ctx).await.as_deref() != Some(base.as_str()) {
        return requeue(ctx, entry, &format!("{} moved since the change was tested", ctx.repo.default_branch)).await;
    }
    let worktree_head = ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD")).await;
    if worktree_head.as_deref() != Some(head.as_str()) {
        return requeue(ctx, entry, "the worktree is not at the tested head").await;
    }
    pass(ctx, &base, &head)
}

fn pass(ctx: &GateContext<'_>, base: &str, head: &str) -> GateVerdict {
    let mut v = verdict(
        Verdict::Pass,
        format!(
            "rebased onto {} {}, squashed to {} and re-tested; landing under the merge lease",
            ctx.repo.default_branch,
            short(base),
            short(head)
        ),
    );
    v.evidence = Some(head.to_string());
    v
}

/// Gives the lease back and puts the change back to `waiting` (it is tested again on the train).
async fn requeue(ctx: &GateContext<'_>, entry: &QueueEntry, why: &str) -> GateVerdict {
    let expect = QueueExpect { state: entry.state, base: entry.base.clone() };
    let change = QueueChange { state: QueueState::Waiting, base: None, head: None, fails: 0, reason: None };
    let _ = ctx.store.queue_update(ctx.task.id, &expect, &change, ctx.clock.now_ms()).await;
    let _ = ctx.store.release_lease(&merge_lease_name(&ctx.repo.name), &task_holder(ctx.task.id)).await;
    ctx.queues.kick(&ctx.repo.name);
    queued(format!("back in the merge queue: {why}"))
}
