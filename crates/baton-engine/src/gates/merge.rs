//! The merge gate (SPEC §6.3): the change's side of the repository's merge queue. A first run parks
//! the task in the queue (the parking transition writes the entry; no job, no slot, no events while
//! it waits). When the queue wakes it to be tested on a base — the default head, or the tested head of the change
//! ahead — the gate rebases the task branch onto that base, squashes it to one commit, re-runs
//! `test` on that tree (a failure is tried once more: a pass then is a flake, not a culprit) and
//! records the result. It passes only under the repository's merge lease, with the worktree at
//! the tested head sitting right on the default branch's current head: deploy then lands exactly
//! that commit. The lease is taken for landing only, never while a human is awaited.

use super::GateContext;
use super::command::run_repo_command;
use super::quality::Quality;
use baton_domain::{GateVerdict, Verdict};
use baton_store::{
    LeaseOutcome, NewEvent, QueueChange, QueueEntry, QueueExpect, QueueLanding, QueueState, task_holder,
};

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
            // The transition that parks the task enters it (one transaction): a gate whose job
            // was stopped or taken over meanwhile leaves nothing in the queue.
            return queued(format!("entered the merge queue of {}", ctx.repo.name));
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
            QueueState::Built => {
                return queued(format!(
                    "built on top of {}; tested with the rest of its batch",
                    short(entry.base.as_deref().unwrap_or(""))
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

/// The change's part in the train.
enum Role {
    /// Tested on its own.
    Alone,
    /// A change of a batch other than its last: built, not tested alone.
    Member,
    /// The last change of a batch: squashes the whole batch onto its base and tests it.
    Tail(Batch),
}

/// A batch, as its last change builds it.
struct Batch {
    /// What the batch is built on (the first change's base).
    base: String,
    /// The batch's changes in train order: work item and title.
    changes: Vec<(String, String)>,
}

/// The batch that `entry` (its last change) ends.
async fn batch_of(ctx: &GateContext<'_>, entry: &QueueEntry) -> Result<Batch, GateVerdict> {
    let entries = ctx
        .store
        .queue_entries(Some(&ctx.repo.name))
        .await
        .map_err(|error| verdict(Verdict::Error, format!("cannot read the merge queue: {error}")))?;
    let batch: Vec<QueueEntry> =
        crate::queue::train_order(entries).into_iter().filter(|e| e.batch == Some(entry.task)).collect();
    let base = batch.first().and_then(|e| e.base.clone()).ok_or_else(|| queued("its batch has no base yet"))?;
    let mut changes = Vec::new();
    for e in &batch {
        let title = match ctx.store.task(&baton_store::TaskKey::Id(e.task)).await {
            Ok(Some(task)) => task.title.chars().filter(|c| !c.is_control()).take(120).collect(),
            _ => String::new(),
        };
        changes.push((e.work_item_id.clone(), title));
    }
    Ok(Batch { base, changes })
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
    let role = match entry.batch {
        None => Role::Alone,
        Some(tail) if tail != ctx.task.id => Role::Member,
        Some(_) => match batch_of(ctx, entry).await {
            Ok(batch) => Role::Tail(batch),
            Err(done) => return Round::Done(done),
        },
    };
    let alone = matches!(role, Role::Alone);
    let default = &ctx.repo.default_branch;
    let head = match built(ctx, entry, &base, &role).await {
        Some(head) => head,
        None => match build(ctx, entry, &base, &role).await {
            Ok(head) => head,
            Err(done) => return done,
        },
    };
    if let Role::Member = role {
        // Not tested alone: the batch's last change tests the whole batch.
        let expect = QueueExpect { state: QueueState::Testing, base: Some(base.clone()) };
        let change = QueueChange { state: QueueState::Built, head: Some(head.clone()), ..QueueChange::from(entry) };
        return match ctx.store.queue_update(ctx.task.id, &expect, &change, ctx.clock.now_ms()).await {
            Ok(true) => {
                ctx.queues.kick(&ctx.repo.name);
                Round::Done(queued(format!("built on top of {}; tested with the rest of its batch", short(&base))))
            }
            Ok(false) => Round::Again,
            Err(error) => Round::Done(verdict(Verdict::Error, format!("cannot record the build: {error}"))),
        };
    }
    let mut fails = entry.fails;
    loop {
        let Some(argv) = ctx.repo.test.clone() else {
            return judged_green(ctx, &base, &head, fails, alone).await;
        };
        match run_repo_command(ctx, "merge-retest", &argv).await {
            Ok(out) if out.exit.success() => {
                if fails > 0 {
                    // A fact about the test command, whatever the queue did meanwhile: it is told
                    // even when the entry moved to another base and this result is not used.
                    note_flake(ctx, &base, &head, &argv.join(" ")).await;
                }
                // What the test left in the worktree goes now, off the landing's path: the landing
                // and deploy jobs then find the worktree known clean and ask git nothing.
                if let Err(error) = ctx.timed(ctx.vcs.clean(ctx.worktree)).await {
                    tracing::debug!(task = %ctx.task.work_item_id, "tidying the worktree after the re-test: {error}");
                }
                return judged_green(ctx, &base, &head, fails, alone).await;
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
                        ..QueueChange::from(entry)
                    };
                    let expect = QueueExpect { state: QueueState::Testing, base: Some(base.clone()) };
                    match ctx.store.queue_update(ctx.task.id, &expect, &change, ctx.clock.now_ms()).await {
                        Ok(true) => continue,
                        Ok(false) => {
                            let what = format!("`{}` failed on {}", argv.join(" "), short(&head));
                            note_superseded(ctx, &base, &what).await;
                            return Round::Again;
                        }
                        Err(error) => {
                            return Round::Done(verdict(Verdict::Error, format!("cannot record the re-test: {error}")));
                        }
                    }
                }
                return record_red(ctx, &base, &head, fails, reason, alone).await;
            }
            Err(error) => {
                return Round::Done(verdict(Verdict::Error, format!("re-test could not run: {error}")));
            }
        }
    }
}

/// The recorded head when the worktree already is this entry's build on `base` (a job restarted
/// after the build, or the flake retry). A batch's last change is built like any change; its
/// recorded head is the batch's commit, which has the same tree on the batch's base.
async fn built(ctx: &GateContext<'_>, entry: &QueueEntry, base: &str, role: &Role) -> Option<String> {
    let recorded = entry.head.as_deref()?;
    let head = ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD")).await?;
    let parent = ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD^")).await?;
    if parent != base {
        return None;
    }
    match role {
        Role::Tail(batch) => {
            let on = ctx.timed(ctx.vcs.rev(&ctx.repo.path, &format!("{recorded}^"))).await;
            let same = ctx.timed(ctx.vcs.same_tree(ctx.worktree, "HEAD", recorded)).await;
            (same && on.as_deref() == Some(batch.base.as_str())).then(|| recorded.to_string())
        }
        Role::Alone | Role::Member => (head == recorded).then_some(head),
    }
}

/// Rebases the task branch onto `base`, squashes it to one commit and records the head, so the
/// change behind it can build on it while this one is tested. The last change of a batch also
/// makes the batch's one commit: its build's tree (every change of the batch) on the batch's base,
/// recorded as the head; its own branch keeps only its own change.
async fn build(ctx: &GateContext<'_>, entry: &QueueEntry, base: &str, role: &Role) -> Result<String, Round> {
    // A change that cannot even be built (a conflict, or nothing left to merge) on the default
    // head itself is the culprit whatever batch it is in: nothing ahead of it can be blamed, and
    // leaving it in its batch would have the batch formed, and failed, again and again.
    let alone = true;
    let default = &ctx.repo.default_branch;
    // A `url` repository: the default head comes from the remote.
    if let Some(remote) = ctx.repo.remote()
        && let Err(error) = ctx.timed(ctx.vcs.sync_remote(&ctx.repo.path, &remote, default)).await
    {
        return Err(Round::Done(verdict(Verdict::Error, format!("cannot fetch the remote: {error}"))));
    }
    // One commit per task on the default branch, so every commit there is a re-tested head.
    let title: String = ctx.task.title.chars().filter(|c| !c.is_control()).take(120).collect();
    let message = format!("{}: {title}\n\nMerged by Baton from {}.", ctx.task.work_item_id, ctx.task.branch);
    let mut head = match ctx.timed(ctx.vcs.rebuild(ctx.worktree, base, &message)).await {
        Ok(Some(head)) => head,
        Ok(None) => {
            let reason = format!("the branch has no changes relative to {default}");
            return Err(record_red(ctx, base, "", 2, reason, alone).await);
        }
        Err(error) => {
            let reason = format!("rebase onto {} conflicts: {error}", short(base));
            if baton_runner::is_infrastructure(&reason) {
                return Err(Round::Done(verdict(Verdict::Error, reason)));
            }
            return Err(record_red(ctx, base, "", 2, reason, alone).await);
        }
    };
    if let Role::Tail(batch) = role {
        let names: Vec<&str> = batch.changes.iter().map(|(id, _)| id.as_str()).collect();
        let lines: Vec<String> = batch.changes.iter().map(|(id, title)| format!("- {id}: {title}")).collect();
        let message = format!(
            "Merge queue batch: {}\n\n{}\n\nTested together and merged by Baton as one commit.",
            names.join(", "),
            lines.join("\n")
        );
        head = match ctx.timed(ctx.vcs.commit_tree(ctx.worktree, &batch.base, &message)).await {
            Ok(commit) => commit,
            Err(error) => {
                return Err(Round::Done(verdict(Verdict::Error, format!("making the batch's commit failed: {error}"))));
            }
        };
    }
    // A `url` repository: the build goes to the remote before it is recorded, so a change behind
    // it that another instance builds finds it there (instances share the store, not the clone).
    if let Some(remote) = ctx.repo.remote().filter(|_| ctx.repo.pushes())
        && let Err(error) = ctx.timed(ctx.vcs.push_branch(&ctx.repo.path, &remote, &ctx.task.branch, default)).await
    {
        return Err(Round::Done(verdict(Verdict::Error, format!("pushing the build to the remote failed: {error}"))));
    }
    let expect = QueueExpect { state: QueueState::Testing, base: Some(base.to_string()) };
    let change = QueueChange {
        state: QueueState::Testing,
        base: Some(base.to_string()),
        head: Some(head.clone()),
        ..QueueChange::from(entry)
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

/// A tree whose re-test passed: the coverage and security checks run on it, in this job, before
/// it is recorded green; a red check is a red re-test (no flake retry: the tools are deterministic).
async fn judged_green(ctx: &GateContext<'_>, base: &str, head: &str, fails: u32, alone: bool) -> Round {
    match super::quality::check(ctx, head).await {
        Quality::Pass => record_green(ctx, base, head, fails, alone).await,
        Quality::Red(reason) => record_red(ctx, base, head, 2, reason, alone).await,
        Quality::Error(reason) => Round::Done(verdict(Verdict::Error, reason)),
    }
}

async fn current_main(ctx: &GateContext<'_>) -> Option<String> {
    ctx.timed(ctx.vcs.rev(&ctx.repo.path, &ctx.repo.default_ref())).await
}

async fn record_green(ctx: &GateContext<'_>, base: &str, head: &str, fails: u32, alone: bool) -> Round {
    let expect = QueueExpect { state: QueueState::Testing, base: Some(base.to_string()) };
    let batch = if alone { None } else { Some(ctx.task.id) };
    let change = QueueChange {
        state: QueueState::Green,
        base: Some(base.to_string()),
        head: Some(head.to_string()),
        fails,
        reason: None,
        batch,
        split: None,
    };
    match ctx.store.queue_update(ctx.task.id, &expect, &change, ctx.clock.now_ms()).await {
        Ok(true) => {}
        Ok(false) => return Round::Again,
        Err(error) => return Round::Done(verdict(Verdict::Error, format!("cannot record the re-test: {error}"))),
    }
    ctx.queues.record(&ctx.repo.name, true);
    // On the default head with the lease free: land now, without a round trip through the queue
    // (a batch lands through the queue, which marks its other changes). Not in a frozen repository
    // (unless this is its revert): the deploy step would refuse, and the change would come back
    // here at once, round after round; it waits green in the queue for the unfreeze instead.
    if alone
        && current_main(ctx).await.as_deref() == Some(base)
        && crate::monitor::may_land_in(ctx.store, ctx.features, &ctx.repo.name, ctx.task.id).await.unwrap_or(false)
    {
        let landing = QueueLanding {
            task: ctx.task.id,
            job: Some(ctx.job.id),
            expect: QueueExpect { state: QueueState::Green, base: Some(base.to_string()) },
            change: QueueChange { state: QueueState::Landing, ..change },
            lease: merge_lease_name(&ctx.repo.name),
            ttl_ms: ctx.limits.lease_ttl_secs as i64 * 1000,
        };
        // The lease and the move to landing commit together, and only while this job is the
        // task's active one: nothing is taken for a change that does not land now.
        if let Ok(Some(LeaseOutcome::Acquired { .. })) = ctx.store.queue_land(&landing, ctx.clock.now_ms()).await {
            return Round::Done(pass(ctx, base, head));
        }
    }
    ctx.queues.kick(&ctx.repo.name);
    Round::Done(queued(format!("green on top of {}; waits for its turn to land", short(base))))
}

/// Tells the task's timeline that `command` failed on `head`, then passed on the same tree.
async fn note_flake(ctx: &GateContext<'_>, base: &str, head: &str, command: &str) {
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

/// Tells the task's timeline that a red result (`what`) is not used: the merge queue moved the
/// change off `base` meanwhile (a change ahead landed, left or was rebuilt), and it is tested again
/// on its new base. Without this line the failure would vanish from the task's story.
async fn note_superseded(ctx: &GateContext<'_>, base: &str, what: &str) {
    let _ = ctx
        .store
        .append_event(NewEvent {
            task: ctx.task.id,
            at_ms: ctx.clock.now_ms(),
            kind: "retest_superseded".into(),
            stage: ctx.stage.name.clone(),
            message: format!(
                "{what} (on top of {}), but the merge queue has moved this change to another base \
                 meanwhile: it is tested again there",
                short(base)
            ),
            detail: serde_json::json!({ "base": base }),
        })
        .await;
}

async fn record_red(ctx: &GateContext<'_>, base: &str, head: &str, fails: u32, reason: String, alone: bool) -> Round {
    let expect = QueueExpect { state: QueueState::Testing, base: Some(base.to_string()) };
    let head = (!head.is_empty()).then(|| head.to_string());
    let entry = match ctx.store.queue_entry(ctx.task.id).await {
        Ok(Some(entry)) => entry,
        Ok(None) => return Round::Again,
        Err(error) => return Round::Done(verdict(Verdict::Error, format!("cannot read the merge queue: {error}"))),
    };
    let change = QueueChange {
        state: QueueState::Red,
        base: Some(base.to_string()),
        head,
        fails,
        reason: Some(reason.clone()),
        ..QueueChange::from(&entry)
    };
    match ctx.store.queue_update(ctx.task.id, &expect, &change, ctx.clock.now_ms()).await {
        Ok(true) => {}
        Ok(false) => {
            let what = reason.lines().next().unwrap_or("the re-test failed").to_string();
            note_superseded(ctx, base, &what).await;
            return Round::Again;
        }
        Err(error) => return Round::Done(verdict(Verdict::Error, format!("cannot record the re-test: {error}"))),
    }
    // Tested alone on the default head itself: nothing ahead can be blamed (a batch is split by
    // the queue until its culprit is alone).
    if alone && current_main(ctx).await.as_deref() == Some(base) {
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
    if crate::queue::is_batch_member(entry) {
        return landed_with_batch(ctx, entry).await;
    }
    let Some(head) = entry.head.clone() else {
        return requeue(ctx, entry, "the landing change has no tested head").await;
    };
    let lease = merge_lease_name(&ctx.repo.name);
    let ttl_ms = ctx.limits.lease_ttl_secs as i64 * 1000;
    match ctx.store.acquire_lease_for_job(&lease, ctx.task.id, ctx.job.id, ttl_ms, ctx.clock.now_ms()).await {
        Ok(Some(LeaseOutcome::Acquired { .. })) => {}
        // The task moved on since this job was claimed (its result will be stale): nothing taken.
        Ok(None) => return verdict(Verdict::Error, "the task changed before it could land; not landing".to_string()),
        Ok(Some(LeaseOutcome::Busy { holder })) => {
            return requeue(ctx, entry, &format!("the merge lease is held by {holder}")).await;
        }
        Err(error) => return verdict(Verdict::Error, format!("cannot take the merge lease: {error}")),
    }
    if let Some(remote) = ctx.repo.remote()
        && let Err(error) = ctx.timed(ctx.vcs.sync_remote(&ctx.repo.path, &remote, &ctx.repo.default_branch)).await
    {
        return verdict(Verdict::Error, format!("cannot fetch the remote: {error}"));
    }
    // A batch's last change lands the batch's commit: its build's tree on the batch's base.
    let tail = entry.batch == Some(ctx.task.id);
    let at_head = if tail {
        ctx.timed(ctx.vcs.same_tree(ctx.worktree, "HEAD", &head)).await
    } else {
        ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD")).await.as_deref() == Some(head.as_str())
    };
    if !at_head {
        return requeue(ctx, entry, "the worktree is not at the tested head").await;
    }
    // A change tested alone is one commit on the base it was tested on (the build made it so, or
    // checked it): that base is recorded with it. A batch's commit sits on the batch's base.
    let base =
        ctx.timed(crate::queue::landing_base(ctx.vcs, &ctx.repo.path, ctx.worktree, Some(entry), &head, tail)).await;
    let Some(base) = base else {
        return requeue(ctx, entry, "the tested head has no parent").await;
    };
    if current_main(ctx).await.as_deref() != Some(base.as_str()) {
        return requeue(ctx, entry, &format!("{} moved since the change was tested", ctx.repo.default_branch)).await;
    }
    pass(ctx, &base, &head)
}

/// A change of a batch other than its last: it has landed once the default branch holds the
/// batch's commit; its worktree is then moved to that commit (what its deploy stage ships).
async fn landed_with_batch(ctx: &GateContext<'_>, entry: &QueueEntry) -> GateVerdict {
    let Some(head) = entry.head.clone() else {
        return requeue(ctx, entry, "the batch's commit is not recorded").await;
    };
    if let Some(remote) = ctx.repo.remote()
        && let Err(error) = ctx.timed(ctx.vcs.sync_remote(&ctx.repo.path, &remote, &ctx.repo.default_branch)).await
    {
        return verdict(Verdict::Error, format!("cannot fetch the remote: {error}"));
    }
    let main = current_main(ctx).await.unwrap_or_default();
    if main != head && !ctx.timed(ctx.vcs.is_ancestor(&ctx.repo.path, &head, &main)).await {
        return queued(format!("its batch lands as {} under the merge lease; it follows", short(&head)));
    }
    if ctx.timed(ctx.vcs.rev(ctx.worktree, "HEAD")).await.as_deref() != Some(head.as_str())
        && let Err(error) = ctx.timed(ctx.vcs.reset_to(ctx.worktree, &head)).await
    {
        return verdict(
            Verdict::Error,
            format!("cannot move the worktree to the batch's commit {}: {error}", short(&head)),
        );
    }
    let mut v = verdict(
        Verdict::Pass,
        format!("landed with its batch as {}, tested as one on {}", short(&head), ctx.repo.default_branch),
    );
    v.evidence = Some(head);
    v
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

/// Gives the lease back and puts the change back to `waiting` (it is tested again on the train);
/// the last change of a batch takes the batch's other changes back with it.
async fn requeue(ctx: &GateContext<'_>, entry: &QueueEntry, why: &str) -> GateVerdict {
    let _ = ctx
        .store
        .queue_update(ctx.task.id, &QueueExpect::of(entry), &QueueChange::waiting(None), ctx.clock.now_ms())
        .await;
    if entry.batch == Some(ctx.task.id)
        && let Ok(entries) = ctx.store.queue_entries(Some(&ctx.repo.name)).await
    {
        for member in entries.iter().filter(|e| e.batch == Some(ctx.task.id) && e.task != ctx.task.id) {
            let change = QueueChange::waiting(member.split);
            let _ = ctx.store.queue_update(member.task, &QueueExpect::of(member), &change, ctx.clock.now_ms()).await;
        }
    }
    let _ = ctx.store.release_lease(&merge_lease_name(&ctx.repo.name), &task_holder(ctx.task.id)).await;
    ctx.queues.kick(&ctx.repo.name);
    queued(format!("back in the merge queue: {why}"))
}
