//! Durable effects (the outbox, SPEC §4.2): a committed decision's external effects — stop an
//! agent, remove a worktree, delete a branch, notify, tell the tracker — are written as outbox rows
//! in the decision's own transaction, then carried out by [`drain`] until acknowledged. A crash
//! between the commit and the effect, or between the effect and its acknowledgement, only delays
//! or repeats it; every effect here is idempotent, so repeating one is harmless.

use crate::engine::Engine;
use crate::workspace::worktree_path;
use baton_adapters::notifier::Notification;
use baton_adapters::tracker::{TicketStatus, TrackerUpdate};
use baton_domain::{Actor, Effect, JobId, NotifyKind, Pipeline, TaskId, TaskState};
use baton_store::{EffectClaim, EffectRecord, NewEffect, NewEvent, TaskKey, TaskRecord};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A worker does not see an effect another worker claimed for this long (a worker that died holding
/// a claim delays its effects by at most this).
const CLAIM_MS: i64 = 20_000;
/// Effects claimed per pass at most (few: a dying worker hides few).
const CLAIM_BATCH_MAX: u32 = 8;
/// First retry delay of a failed effect; doubles per try.
const RETRY_BASE_MS: i64 = 1_000;
/// Longest retry delay of a failed effect.
const RETRY_CAP_MS: i64 = 300_000;

/// One durable effect, as stored in the outbox payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "effect")]
pub enum OutboxEffect {
    /// Stop the job's agent: signal its executor here, and TERM → grace → KILL its process group
    /// when that group is still the one the job started (`proc_start` guards against pid reuse).
    StopAgent {
        job: JobId,
        pgid: Option<u32>,
        proc_start: Option<u64>,
        /// The instance running the job when the decision was taken: its process group is
        /// signalled only on that instance's machine (another machine's pid means nothing here;
        /// the owner sees its job stopped and stops the agent itself).
        #[serde(default)]
        owner: Option<String>,
    },
    /// Remove the task's worktree (a missing one is already removed), and forget what the merge
    /// gate last built its `branch` on (rows written before the field carry none).
    RemoveWorktree {
        repo: String,
        work_item: String,
        #[serde(default)]
        branch: Option<String>,
    },
    /// Park the worktree of a task that waits for a budget or a quota ([`parks_worktree`]): remove
    /// it, keep its branch (the agent's work is committed on it). Carried out only while the task is still
    /// at `version` and still parked, so a task resumed meanwhile keeps its worktree; the
    /// executor's `ensure_worktree` recreates a parked one from the branch when work resumes.
    ParkWorktree {
        repo: String,
        work_item: String,
        version: i64,
    },
    /// Delete the task branch (a missing one is already deleted); for a `url` repository also on
    /// the remote, when its `delete_remote_branch` says so on STOP.
    DeleteBranch {
        repo: String,
        branch: String,
    },
    /// A task merged: delete its branch on the remote of a `url` repository, when its
    /// `delete_remote_branch` says so (nothing for a local repository).
    DeleteMergedBranch {
        repo: String,
        branch: String,
    },
    Notify {
        work_item: String,
        title: String,
        kind: NotifyKind,
        text: String,
    },
    /// Open (once) or update the task's pull request on a hosted forge: title, status, artifact
    /// links. Nothing while the branch is not on the remote.
    SyncPullRequest {
        repo: String,
        work_item: String,
        branch: String,
        title: String,
        status: String,
    },
    /// Tell the tracker the task's new status. Done is final: when it is carried out, a task
    /// that has ended since sends its final status instead (a late or retried update never
    /// moves a ticket out of Done).
    TrackerUpdate {
        work_item: String,
        external_ref: Option<String>,
        title: String,
        /// `stage` or `stage (hold)`.
        status: String,
        /// The structured status (absent in rows written before it existed: then derived from
        /// `status`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket: Option<TicketStatus>,
    },
    /// Show the task's live card (Telegram), unless `version` or a later one is already shown.
    LiveUpdate {
        work_item: String,
        version: i64,
    },
    /// Write the task's hand-off (`<data_dir>/handoffs/<WORK-ITEM>.{md,html}`) from what the store
    /// and git hold now; rewriting it is harmless.
    WriteHandoff {
        work_item: String,
    },
    /// The task's deploy degraded: freeze its repository, alert, file the incident, revert
    /// (`monitor::degraded`; each step skipped when already done).
    Degraded {
        work_item: String,
        output: String,
    },
}

impl OutboxEffect {
    pub fn kind(&self) -> &'static str {
        match self {
            OutboxEffect::StopAgent { .. } => "stop_agent",
            OutboxEffect::RemoveWorktree { .. } => "remove_worktree",
            OutboxEffect::ParkWorktree { .. } => "park_worktree",
            OutboxEffect::DeleteBranch { .. } => "delete_branch",
            OutboxEffect::DeleteMergedBranch { .. } => "delete_merged_branch",
            OutboxEffect::Notify { .. } => "notify",
            OutboxEffect::SyncPullRequest { .. } => "sync_pull_request",
            OutboxEffect::TrackerUpdate { .. } => "tracker_update",
            OutboxEffect::LiveUpdate { .. } => "live_update",
            OutboxEffect::WriteHandoff { .. } => "write_handoff",
            OutboxEffect::Degraded { .. } => "degraded",
        }
    }

    fn to_row(&self) -> NewEffect {
        NewEffect {
            kind: self.kind().to_string(),
            payload: serde_json::to_value(self).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// A job that was running when the decision was taken, with what identifies its process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningProcess {
    pub job: JobId,
    pub pgid: Option<u32>,
    pub proc_start: Option<u64>,
    pub owner: Option<String>,
}

/// What the engine around a decision has configured, for [`outbox_rows`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxOptions {
    /// The task's repository is on GitHub or Gitea/Forgejo (its pull request follows the status).
    pub hosted_forge: bool,
    /// A live board is configured (the task's card shows the new version).
    pub live: bool,
    /// Hand-offs are written (a task reaching done or blocked gets one).
    pub handoffs: bool,
}

/// The outbox rows of a decision's external effects, in the order they are carried out (the
/// agent stops before its worktree goes; the hand-off is written while the worktree is still
/// there; the worktree goes before its branch).
pub fn outbox_rows(
    pipeline: &Pipeline,
    task: &TaskRecord,
    next: &TaskState,
    effects: &[Effect],
    running: &[RunningProcess],
    options: OutboxOptions,
) -> Vec<NewEffect> {
    let OutboxOptions { hosted_forge, live, handoffs } = options;
    let mut rows = Vec::new();
    if effects.contains(&Effect::StopAgent) {
        for process in running {
            rows.push(OutboxEffect::StopAgent {
                job: process.job,
                pgid: process.pgid,
                proc_start: process.proc_start,
                owner: process.owner.clone(),
            });
        }
    }
    if handoffs && crate::handoff::is_handoff_state(next) && !crate::handoff::is_handoff_state(&task.state) {
        rows.push(OutboxEffect::WriteHandoff { work_item: task.work_item_id.clone() });
    }
    if effects.contains(&Effect::RemoveWorktree) {
        rows.push(OutboxEffect::RemoveWorktree {
            repo: task.repo.clone(),
            work_item: task.work_item_id.clone(),
            branch: Some(task.branch.clone()),
        });
    } else if parks_worktree(next) && !parks_worktree(&task.state) {
        rows.push(OutboxEffect::ParkWorktree {
            repo: task.repo.clone(),
            work_item: task.work_item_id.clone(),
            version: task.version + 1,
        });
    }
    if effects.contains(&Effect::DeleteBranch) {
        rows.push(OutboxEffect::DeleteBranch { repo: task.repo.clone(), branch: task.branch.clone() });
    }
    if next.stage == baton_domain::pipeline::DONE {
        rows.push(OutboxEffect::DeleteMergedBranch { repo: task.repo.clone(), branch: task.branch.clone() });
    }
    for effect in effects {
        if let Effect::Degraded { output } = effect {
            rows.push(OutboxEffect::Degraded { work_item: task.work_item_id.clone(), output: output.clone() });
        }
        if let Effect::Notify { kind, text } = effect {
            rows.push(OutboxEffect::Notify {
                work_item: task.work_item_id.clone(),
                title: task.title.clone(),
                kind: *kind,
                text: text.clone(),
            });
        }
    }
    // A merged or cancelled task's pull request is left as the forge has it (a sync after the
    // merge would find no open PR and open a new one).
    if hosted_forge && !next.is_terminal() {
        rows.push(OutboxEffect::SyncPullRequest {
            repo: task.repo.clone(),
            work_item: task.work_item_id.clone(),
            branch: task.branch.clone(),
            title: task.title.clone(),
            status: next.display(),
        });
    }
    // A task filed here (CLI, API, a bench) has no ticket to mirror, now or later: a reference is
    // only ever given at creation, so no row is written for it.
    if task.external_ref.is_some() {
        rows.push(tracker_update(pipeline, task, next));
    }
    if live {
        rows.push(OutboxEffect::LiveUpdate { work_item: task.work_item_id.clone(), version: task.version + 1 });
    }
    rows.iter().map(OutboxEffect::to_row).collect()
}

/// Whether a task in `state` waits long enough, with nobody reading its worktree, for the
/// worktree to be parked: a budget raise or a provider quota (hours, days). Not while a human is
/// awaited (approval, an answer, a blocked task): the dashboard's artifacts and `baton task show`'s
/// file paths are read from the worktree, and the human reviews exactly those; they join this list
/// once both read the branch instead. Never while a deploy confirmation or a merge slot is awaited.
pub fn parks_worktree(state: &TaskState) -> bool {
    use baton_domain::Hold;
    !state.is_terminal() && matches!(state.hold, Hold::PausedBudget { .. } | Hold::PausedQuota { .. })
}

/// The tracker update telling `task`'s ticket that the task is now in `state`.
pub(crate) fn tracker_update(pipeline: &Pipeline, task: &TaskRecord, state: &TaskState) -> OutboxEffect {
    OutboxEffect::TrackerUpdate {
        work_item: task.work_item_id.clone(),
        external_ref: task.external_ref.clone(),
        title: task.title.clone(),
        status: state.display(),
        ticket: Some(ticket_status(pipeline, state)),
    }
}

/// The ticket status of a task in `state` under `pipeline`.
pub fn ticket_status(pipeline: &Pipeline, state: &TaskState) -> TicketStatus {
    TicketStatus::of(state, pipeline.stage(&state.stage).is_some_and(|s| s.actor == Actor::Deploy))
}

/// The outbox row of an effect (for decisions that write one outside [`outbox_rows`]).
pub(crate) fn row(effect: &OutboxEffect) -> NewEffect {
    effect.to_row()
}

/// Carries out due outbox effects (only `task`'s when given) until none is left that this
/// worker may take; returns how many were acknowledged. Never fails: a failed effect is retried
/// later with backoff and leaves a warning on the task's timeline.
pub async fn drain(engine: &Engine, task: Option<TaskId>) -> u32 {
    let mut done = 0;
    loop {
        let claim = EffectClaim { now_ms: engine.clock().now_ms(), claim_ms: CLAIM_MS, limit: CLAIM_BATCH_MAX, task };
        let claimed = match engine.store().claim_effects(&claim).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!("claiming outbox effects failed: {error}");
                return done;
            }
        };
        if claimed.is_empty() {
            return done;
        }
        // Fewer than a batch: nothing more was due when claimed (what became due since is the
        // next drain's).
        let last = claimed.len() < CLAIM_BATCH_MAX as usize;
        for record in claimed {
            match carry_out(engine, &record).await {
                Ok(()) => {
                    if let Err(error) = engine.store().complete_effect(record.id, engine.clock().now_ms()).await {
                        // Not acknowledged: it runs again later, which is harmless.
                        tracing::warn!(effect = record.id, "acknowledging an outbox effect failed: {error}");
                    }
                    done += 1;
                }
                Err(error) => failed(engine, &record, &error).await,
            }
        }
        if last {
            return done;
        }
    }
}

async fn failed(engine: &Engine, record: &EffectRecord, error: &str) {
    let exponent = record.attempts.saturating_sub(1).min(20);
    let delay = RETRY_BASE_MS.saturating_mul(1 << exponent).min(RETRY_CAP_MS);
    let now = engine.clock().now_ms();
    tracing::warn!(effect = record.id, kind = %record.kind, attempts = record.attempts, "{error}; retrying in {} s", delay / 1000);
    let _ = engine.store().fail_effect(record.id, error, now + delay).await;
    let _ = engine
        .store()
        .append_event(NewEvent {
            task: record.task_id,
            at_ms: now,
            kind: "warning".into(),
            stage: String::new(),
            message: format!(
                "{} failed (try {}): {error}; retrying in {} s",
                record.kind,
                record.attempts,
                delay / 1000
            ),
            detail: serde_json::json!({ "effect": record.id }),
        })
        .await;
}

/// Removes what a task that ended left in git: its worktree, and for a cancelled task its branch.
/// Called by an executor that may have touched the worktree after the task's own cleanup ran (a
/// STOP landing between the executor's start check and its `ensure_worktree`), and by the start-up
/// sweep. Idempotent; failures are logged.
pub async fn clean_up_ended(engine: &Engine, task: &TaskRecord) {
    if !task.state.is_terminal() {
        return;
    }
    // A lease this job took after the task ended (its own release may have failed) goes too.
    let lease = crate::gates::merge_lease_name(&task.repo);
    let holder = baton_store::task_holder(task.id);
    for _ in 0..3 {
        match engine.store().release_lease(&lease, &holder).await {
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(task = %task.work_item_id, "releasing {lease} after the task ended failed: {error}")
            }
        }
    }
    let mut cleanup = vec![OutboxEffect::RemoveWorktree {
        repo: task.repo.clone(),
        work_item: task.work_item_id.clone(),
        branch: Some(task.branch.clone()),
    }];
    if task.state.stage == baton_domain::pipeline::CANCELLED {
        cleanup.push(OutboxEffect::DeleteBranch { repo: task.repo.clone(), branch: task.branch.clone() });
    }
    for effect in cleanup {
        let record = EffectRecord {
            id: 0,
            task_id: task.id,
            kind: effect.kind().to_string(),
            payload: serde_json::to_value(&effect).unwrap_or(serde_json::Value::Null),
            created_at_ms: 0,
            available_at_ms: 0,
            attempts: 1,
            last_error: None,
            done_at_ms: None,
        };
        if let Err(error) = carry_out(engine, &record).await {
            tracing::warn!(task = %task.work_item_id, "cleaning up after the ended task failed: {error}");
        }
    }
}

/// Carries out one effect. Idempotent: what is already done counts as done.
async fn carry_out(engine: &Engine, record: &EffectRecord) -> Result<(), String> {
    let effect: OutboxEffect = serde_json::from_value(record.payload.clone())
        .map_err(|e| format!("unreadable outbox effect {} ({}): {e}", record.id, record.kind))?;
    let settings = engine.settings();
    match effect {
        OutboxEffect::StopAgent { job, pgid, proc_start, owner } => {
            engine.signal_stop(job);
            let elsewhere = match owner.as_deref() {
                Some(owner) if owner != engine.owner() => engine
                    .instances()
                    .await
                    .map_err(|e| e.to_string())?
                    .get(owner)
                    .is_some_and(|instance| instance.host != engine.host()),
                _ => false,
            };
            if let Some(pgid) = pgid.filter(|_| !elsewhere) {
                let supervisor = engine.supervisor();
                // A group that ended long ago may have a new owner: stop only the one we started.
                if supervisor.is_same_group(pgid, proc_start) {
                    supervisor.stop_group(pgid, Duration::from_secs(settings.limits.stop_grace_secs)).await;
                }
            }
            Ok(())
        }
        OutboxEffect::RemoveWorktree { repo, work_item, branch } => {
            // A repository that is no longer configured or no longer exists has no worktrees.
            let Some(repo) = settings.repo(&repo).filter(|r| engine.vcs().exists(&r.path)) else {
                return Ok(());
            };
            let path = worktree_path(&settings.worktrees_dir(), &repo.name, &work_item).map_err(|e| e.to_string())?;
            // Only a repository with the hook reads the task (nothing more happens without one).
            if crate::hooks::Hook::BeforeRemove.argv(repo).is_some()
                && let Ok(Some(task)) = engine.store().task(&TaskKey::Id(record.task_id)).await
            {
                crate::hooks::before_remove(engine, &task, repo, &path).await;
            }
            engine.vcs().remove_worktree(&repo.path, &path).await.map_err(|e| format!("remove worktree: {e}"))?;
            // One reference a task would otherwise leave behind in the repository for good.
            if let Some(branch) = branch {
                engine.vcs().forget_built_on(&repo.path, &branch).await.map_err(|e| format!("forget built-on: {e}"))?;
            }
            Ok(())
        }
        OutboxEffect::ParkWorktree { repo, work_item, version } => {
            // The task moved on (resumed, answered, cancelled) since: its worktree is not ours to park.
            let task = engine.store().task(&TaskKey::Id(record.task_id)).await.map_err(|e| e.to_string())?;
            if !task.as_ref().is_some_and(|t| t.version == version && parks_worktree(&t.state)) {
                return Ok(());
            }
            let Some(repo) = settings.repo(&repo).filter(|r| engine.vcs().exists(&r.path)) else {
                return Ok(());
            };
            let path = worktree_path(&settings.worktrees_dir(), &repo.name, &work_item).map_err(|e| e.to_string())?;
            if let Some(task) = &task {
                crate::hooks::before_remove(engine, task, repo, &path).await;
            }
            engine.vcs().remove_worktree(&repo.path, &path).await.map_err(|e| format!("park worktree: {e}"))
        }
        OutboxEffect::DeleteBranch { repo, branch } => {
            let Some(repo) = settings.repo(&repo) else {
                return Ok(());
            };
            let mut forge_repo = crate::engine::forge_repo(repo);
            if !repo.deletes_remote_branch(true) {
                forge_repo.remote = None;
            }
            engine.forge().delete_branch(&forge_repo, &branch).await.map_err(|e| format!("delete branch: {e}"))
        }
        OutboxEffect::DeleteMergedBranch { repo, branch } => {
            let Some(repo) = settings.repo(&repo).filter(|r| r.pushes() && r.deletes_remote_branch(false)) else {
                return Ok(());
            };
            engine
                .forge()
                .delete_branch(&crate::engine::forge_repo(repo), &branch)
                .await
                .map_err(|e| format!("delete merged branch: {e}"))
        }
        OutboxEffect::Notify { work_item, title, kind, text } => engine
            .notifier()
            .notify(&Notification { work_item, title, kind, text })
            .await
            .map_err(|e| format!("notify: {e}")),
        OutboxEffect::SyncPullRequest { repo, work_item, branch, title, status } => {
            let Some(repo) = settings.repo(&repo).filter(|r| r.forge.is_hosted()) else {
                return Ok(());
            };
            let spec = crate::gates::pull_request_spec(
                repo,
                engine.pipeline_for(&repo.name),
                &work_item,
                &title,
                &branch,
                &status,
            );
            engine
                .forge()
                .sync_pull_request(&crate::engine::forge_repo(repo), &spec)
                .await
                .map(|_| ())
                .map_err(|e| format!("sync pull request: {e}"))
        }
        OutboxEffect::TrackerUpdate { work_item, external_ref, title, status, ticket } => {
            let mut update = TrackerUpdate {
                work_item,
                external_ref,
                title,
                branch: String::new(),
                status: ticket.unwrap_or_else(|| TicketStatus::from_display(&status)),
                display: status,
            };
            // Done is final: the task is read again now, and an ended task's final status is what
            // is sent, whatever this row said when it was written.
            let task = engine.store().task(&TaskKey::Id(record.task_id)).await.map_err(|e| e.to_string())?;
            if let Some(task) = task {
                if task.state.is_terminal() {
                    update.status = ticket_status(engine.pipeline_for(&task.repo), &task.state);
                    update.display = task.state.display();
                }
                update.branch = task.branch;
                // A cancelled task gave its reference up; the ticket is still the one the row names.
                if update.external_ref.is_none() {
                    update.external_ref = task.external_ref;
                }
            }
            engine.tracker().task_changed(&update).await.map_err(|e| format!("tracker update: {e}"))
        }
        OutboxEffect::LiveUpdate { version, .. } => crate::telegram::show(engine, record.task_id, version).await,
        OutboxEffect::WriteHandoff { .. } => crate::handoff::write(engine, record.task_id).await,
        // Boxed: the revert it files is confirmed through `apply_event`, which drains effects again.
        OutboxEffect::Degraded { output, .. } => {
            Box::pin(crate::monitor::degraded(engine, record.task_id, &output)).await
        }
    }
}
