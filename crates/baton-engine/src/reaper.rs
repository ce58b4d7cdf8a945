//! The reaper (SPEC §7): finds running jobs that no executor watches and re-adopts them (the
//! adopted executor waits for a surviving agent, takes a recorded exit, or runs the stage afresh
//! when the agent died without one), fails jobs running past the backstop, renews the merge lease
//! of live holders and reclaims the lease of dead ones. At start it sweeps orphaned worktrees and
//! agent processes. Every write is a guarded flip through the normal transaction: a loser of a
//! race performs no effect.

use crate::engine::Engine;
use crate::stats::ReaperPass;
use baton_domain::{Event, JobOutcome};
use baton_store::{JobFinish, JobStatus, NewEvent, TaskKey};
use std::sync::Arc;

/// One reaper pass. Never fails: problems are logged.
pub async fn tick(engine: &Arc<Engine>) {
    let mut pass = ReaperPass::default();
    match engine.adopt_orphans().await {
        Ok(adopted) => pass.adopted = adopted,
        Err(error) => tracing::warn!("reaper: re-adopting orphaned jobs failed: {error}"),
    }
    pass.backstopped = backstop(engine).await;
    (pass.leases_renewed, pass.leases_reclaimed) = leases(engine).await;
    pass.runs_closed = lost_runs(engine).await;
    pass.worktrees_swept = ended_elsewhere(engine).await;
    pass.at_ms = engine.clock().now_ms();
    engine.maintenance().reaper_done(pass);
}

/// With other instances on the same database, a task this instance worked on may end on another
/// one (a job taken over, a STOP, a cancel): the ended task's clean-up runs wherever the outbox
/// row is carried out, and this instance's worktree of it stays. Each pass removes the worktrees
/// here whose task has ended (one read per worktree on disk; alone, the start's sweep and the
/// clean-up effects are enough and nothing is read).
async fn ended_elsewhere(engine: &Arc<Engine>) -> u32 {
    let Ok(instances) = engine.instances().await else {
        return 0;
    };
    if instances.keys().all(|id| id == engine.owner()) {
        return 0;
    }
    let root = engine.settings().worktrees_dir();
    let mut swept = 0;
    for repo in &engine.settings().repos {
        for work_item in engine.vcs().entries(&root.join(&repo.name)) {
            let task = engine.store().task(&TaskKey::WorkItem(work_item.clone())).await.ok().flatten();
            if let Some(task) = task.filter(|t| t.repo == repo.name && t.state.is_terminal()) {
                tracing::info!(repo = %repo.name, %work_item, "removing the worktree of a task that ended on another instance");
                crate::effects::clean_up_ended(engine, &task).await;
                swept += 1;
            }
        }
    }
    swept
}

/// Closes agent runs that never recorded their end while their job is no longer running: the
/// agent died with a Baton and nothing will ever finish the row (its spend is unknown). A job that
/// a STOP or a cancel ended is no longer running while its executor still stops the agent and
/// records the run's real end (its exit and spend): such a run is left to that executor, here or
/// on the live instance that claimed the job (whose own reaper closes the run once it has no
/// executor for it). A run of a dead instance's job is closed here. An agent that still runs here
/// with no executor watching it (its job ended as its Baton died) is stopped first, and its run
/// closed as `stopped`.
async fn lost_runs(engine: &Arc<Engine>) -> u32 {
    let mut closed = 0;
    let Ok(open) = engine.store().open_agent_runs().await else {
        return closed;
    };
    // Read once, and only when a run may be closed.
    let mut instances = None;
    for run in open {
        let Ok(Some(job)) = engine.store().job(run.job_id).await else {
            continue;
        };
        if job.status == JobStatus::Running || engine.is_running_here(job.id) {
            continue;
        }
        if job.owner.as_deref().is_some_and(|owner| owner != engine.owner()) {
            if instances.is_none() {
                match engine.instances().await {
                    Ok(all) => instances = Some(all),
                    // Who claimed the job is unknown: the next pass looks again.
                    Err(_) => return closed,
                }
            }
            let all = instances.as_ref().expect("read just above");
            if matches!(engine.claimant(&job, all), crate::engine::Claimant::Alive(_)) {
                continue;
            }
        }
        let why = format!("its job ended ({}) without the agent recording an exit", job.status.as_str());
        // Its job ended while no Baton watched the agent (a STOP or a cancel that landed as the
        // Baton running it died): an agent still running here is stopped now, never left to run
        // and spend unwatched, and its run says so.
        let supervisor = engine.supervisor();
        if let baton_runner::Previous::Running(launch) = supervisor.previous(std::path::Path::new(&run.log_path)) {
            let grace = std::time::Duration::from_secs(engine.settings().limits.stop_grace_secs);
            supervisor.stop_group(launch.pgid, grace).await;
            let why = format!(
                "its job ended ({}) while no Baton watched its agent; the reaper stopped the agent",
                job.status.as_str()
            );
            if let Ok(true) = engine.store().close_agent_run(run.id, "stopped", &why, engine.clock().now_ms()).await {
                tracing::warn!(run = run.id, job = %job.id, "stopped an agent whose job had ended while no Baton watched it");
                closed += 1;
            }
            continue;
        }
        if let Ok(true) = engine.store().close_agent_run(run.id, "lost", &why, engine.clock().now_ms()).await {
            tracing::warn!(run = run.id, job = %job.id, "closed an agent run that never recorded its end");
            closed += 1;
        }
    }
    closed
}

/// The landed head of `job`'s task when `job` is its deploy job and the default branch holds the
/// head its merge gate passed.
async fn landed_deploy(
    engine: &Arc<Engine>,
    job: &baton_store::JobRecord,
) -> Result<Option<String>, crate::EngineError> {
    let Some(task) = engine.store().task(&baton_store::TaskKey::Id(job.task_id)).await? else {
        return Ok(None);
    };
    let deploys =
        engine.pipeline_for(&task.repo).stage(&job.stage).is_some_and(|s| s.actor == baton_domain::Actor::Deploy);
    if !deploys {
        return Ok(None);
    }
    engine.landed_head(&task).await
}

/// Fails jobs running longer than `job_backstop_secs` and stops their agent.
async fn backstop(engine: &Arc<Engine>) -> u32 {
    let mut failed = 0;
    let Ok(running) = engine.store().jobs_with_status(JobStatus::Running).await else {
        return failed;
    };
    let now = engine.clock().now_ms();
    let backstop_ms = engine.settings().limits.job_backstop_secs as i64 * 1000;
    // Another live instance backstops its own jobs (their agents run on its machine).
    let instances = engine.instances().await.unwrap_or_default();
    let watched_here = |j: &baton_store::JobRecord| {
        matches!(engine.claimant(j, &instances), crate::engine::Claimant::Mine | crate::engine::Claimant::Unknown)
    };
    for job in running.into_iter().filter(|j| j.started_at_ms.is_some_and(|s| now - s > backstop_ms)) {
        if !watched_here(&job) {
            continue;
        }
        let reason = format!("ran longer than the {} s backstop; stopped by the reaper", backstop_ms / 1000);
        // A store that cannot be read says nothing about whether the change landed: the next
        // pass judges this job again.
        let Ok(landed) = landed_deploy(engine, &job).await else {
            continue;
        };
        let outcome = match landed {
            // A deploy whose change is on the default branch (its command hung after the merge):
            // the outcome says so, like a deploy command that failed after its merge — never a
            // plain failure, which a STOP waiting for the step would turn into a cancel.
            Some(head) => {
                let short = &head[..head.len().min(10)];
                let mut merged = baton_domain::GateVerdict::new(
                    baton_domain::MERGED_VERDICT,
                    baton_domain::Verdict::Pass,
                    format!("the default branch holds {short}"),
                );
                merged.evidence = Some(head);
                let failed = baton_domain::GateVerdict::new("deploy", baton_domain::Verdict::Fail, reason.clone());
                JobOutcome::Completed { verdicts: vec![merged, failed] }
            }
            None => JobOutcome::Failed { reason: reason.clone() },
        };
        let finish = JobFinish {
            job: job.id,
            status: JobStatus::Failed,
            result: serde_json::json!({ "outcome": outcome, "reaped": true }),
            // Under the claim read here: if another instance took the job over since, it is theirs.
            claimed_by: job.owner.clone(),
        };
        // The processes go before the job's end is recorded. A deploy command's group is named in
        // its run directory, not on the job row: recorded as ended while that deploy still ran,
        // the job held no merge back, and a change landed under the deploy (seed 161677).
        // Where that group is cannot be read: nothing is recorded, and the next pass judges this
        // job again.
        let group = match crate::executor::live_group(engine, &job).await {
            Ok(group) => group,
            Err(error) => {
                tracing::warn!(job = %job.id, "reaper backstop: {error}");
                continue;
            }
        };
        if let Some(pgid) = group {
            let grace = std::time::Duration::from_secs(engine.settings().limits.stop_grace_secs);
            engine.supervisor().stop_group(pgid, grace).await;
        }
        let event = Event::JobFinished { job: job.id, stage: job.stage.clone(), outcome };
        match engine.apply_event(job.task_id, &event, Some(finish), None).await {
            Ok(outcome) => {
                failed += 1;
                tracing::warn!(job = %job.id, ?outcome, "{reason}")
            }
            Err(error) => tracing::warn!(job = %job.id, "reaper backstop failed: {error}"),
        }
        engine.signal_stop(job.id);
    }
    failed
}

/// Whether `task` may hold its repository's merge lease: it is at the merge gate's stage or a
/// deploy stage, neither ended nor held for a person (a blocked or paused task must not keep the
/// repository's merges waiting for a human).
pub(crate) fn may_hold_merge_lease(engine: &Engine, task: &baton_store::TaskRecord) -> bool {
    !task.state.is_terminal()
        && matches!(task.state.hold, baton_domain::Hold::None | baton_domain::Hold::AwaitingConfirm)
        && engine
            .pipeline_for(&task.repo)
            .stage(&task.state.stage)
            .is_some_and(|s| s.is_merge_gate() || s.actor == baton_domain::Actor::Deploy)
}

/// Renews the merge lease of holders still at the merge/deploy stages; reclaims the others.
async fn leases(engine: &Arc<Engine>) -> (u32, u32) {
    let (mut renewed, mut reclaimed) = (0, 0);
    let Ok(leases) = engine.store().leases().await else {
        return (renewed, reclaimed);
    };
    let now = engine.clock().now_ms();
    let ttl_ms = engine.settings().limits.lease_ttl_secs as i64 * 1000;
    for lease in leases {
        let task = match lease.holder.strip_prefix("task:").and_then(|id| id.parse::<i64>().ok()) {
            Some(id) => match engine.store().task(&TaskKey::Id(baton_domain::TaskId(id))).await {
                Ok(task) => task,
                // A failed read says nothing about the holder: reclaiming on it took a deploying
                // task's lease away just before its merge. The next pass looks again.
                Err(_) => continue,
            },
            None => None,
        };
        let holds_legitimately = task.as_ref().is_some_and(|t| may_hold_merge_lease(engine, t));
        if holds_legitimately {
            if lease.expires_at_ms - now < ttl_ms / 2 {
                // Extend only: a STOP may have released the lease since it was read.
                if let Ok(true) = engine.store().renew_lease(&lease.name, &lease.holder, ttl_ms, now).await {
                    renewed += 1;
                }
            }
            continue;
        }
        // Switched off (`[features] reaper_lease_reclaim`): the lease stays until it expires or
        // its holder releases it.
        let repo = match &task {
            Some(task) => task.repo.as_str(),
            None => lease.name.strip_prefix("merge:").unwrap_or(&lease.name),
        };
        if !engine.features().enabled(crate::features::Feature::ReaperLeaseReclaim, repo) {
            continue;
        }
        // Released only if the task is still as read: a claim or a person's retry since then may
        // have taken the lease again under the same holder name, just before its merge.
        let released = match &task {
            Some(task) => engine.store().release_lease_if_unmoved(&lease.name, task.id, task.version).await,
            None => engine.store().release_lease(&lease.name, &lease.holder).await,
        };
        if let Ok(true) = released {
            tracing::warn!(lease = %lease.name, holder = %lease.holder, "reclaimed a lease whose holder is gone");
            reclaimed += 1;
            if let Some(task) = task {
                let _ = engine
                    .store()
                    .append_event(NewEvent {
                        task: task.id,
                        at_ms: now,
                        kind: "lease_reclaimed".into(),
                        stage: task.state.stage.clone(),
                        message: format!("reaper reclaimed lease {} (holder at {})", lease.name, task.state.display()),
                        detail: serde_json::Value::Null,
                    })
                    .await;
            }
        }
    }
    (renewed, reclaimed)
}

/// At start: removes worktrees of finished or unknown tasks, stops agent processes of this data
/// directory that no running job owns, and closes agent runs lost with an earlier Baton.
pub async fn sweep_at_start(engine: &Arc<Engine>) {
    let root = engine.settings().worktrees_dir();
    let vcs = engine.vcs();
    for repo in &engine.settings().repos {
        for work_item in vcs.entries(&root.join(&repo.name)) {
            let task = engine.store().task(&TaskKey::WorkItem(work_item.clone())).await.ok().flatten();
            match task {
                // An ended task's leftovers: its worktree, and a cancelled task's branch.
                Some(task) if task.repo == repo.name && task.state.is_terminal() => {
                    tracing::info!(repo = %repo.name, %work_item, "sweeping the worktree of an ended task");
                    crate::effects::clean_up_ended(engine, &task).await;
                }
                Some(task) if task.repo == repo.name => {}
                _ if vcs.exists(&repo.path) => {
                    tracing::info!(repo = %repo.name, %work_item, "sweeping an orphaned worktree");
                    let path = root.join(&repo.name).join(&work_item);
                    if let Err(error) = vcs.remove_worktree(&repo.path, &path).await {
                        tracing::warn!("sweeping {} failed: {error}", path.display());
                    }
                }
                _ => {}
            }
        }
    }
    lost_runs(engine).await;
    let Ok(running) = engine.store().jobs_with_status(JobStatus::Running).await else {
        return;
    };
    // A process belongs to a running job by its recorded group, or by where its records live: a
    // job's run directory (`…-job<id>/…`), or a run directory whose intent names the job that launched it.
    // (A kill between the spawn and storing the pid leaves only the second.)
    let owned: Vec<u32> = running.iter().filter_map(|j| j.pgid).collect();
    let owns = |run_dir: &std::path::Path| {
        let text = run_dir.display().to_string();
        let by_dir = running
            .iter()
            .any(|j| text.contains(&format!("-job{}/", j.id)) || text.ends_with(&format!("-job{}", j.id)));
        let by_marker = engine
            .supervisor()
            .owner(run_dir)
            .and_then(|owner| owner.strip_prefix("job:").and_then(|id| id.parse::<i64>().ok()))
            .is_some_and(|id| running.iter().any(|j| j.id.0 == id));
        by_dir || by_marker
    };
    for (pid, pgid, run_dir) in engine.supervisor().shims_under(&engine.settings().runs_dir()) {
        if !owned.contains(&pgid) && !owns(&run_dir) {
            tracing::warn!(pid, pgid, "stopping an orphaned agent no running job owns");
            let grace = std::time::Duration::from_secs(engine.settings().limits.stop_grace_secs);
            engine.supervisor().stop_group(pgid, grace).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_store::{Claim, NewAgentRun};

    /// A new task's job claimed by `owner`, with an agent run open on it, then ended by a STOP
    /// (its row leaves `running` while the executor that claimed it stops the agent): the job and
    /// the run's id.
    async fn stopped_run(engine: &Engine, owner: &str, name: &str) -> (baton_store::JobRecord, i64) {
        let store = engine.store();
        let task = crate::testing::task(engine, name).await;
        let now = engine.clock().now_ms();
        let claim = Claim {
            owner: owner.to_string(),
            now_ms: now,
            running_max: 4,
            running_per_repo_max: 4,
            ..Claim::default()
        };
        let job = store.claim_jobs(&claim, 1).await.expect("a claim").pop().expect("the task's job");
        assert_eq!(job.task_id, task);
        let run = NewAgentRun {
            job: job.id,
            task,
            stage: job.stage.clone(),
            adapter: "command".into(),
            model: None,
            pid: None,
            started_at_ms: now,
            log_path: format!("runs/{name}"),
        };
        let run = store.insert_agent_run(run).await.expect("a run");
        assert!(store.close_job(job.id, JobStatus::Cancelled, serde_json::json!({}), now).await.expect("closed"));
        (job, run)
    }

    // A run whose job a STOP ended while the executor here still stops its agent is left to that
    // executor, which records the run's real end (its exit and spend); once no executor here has
    // the job, nothing will, and the reaper closes the run as lost.
    #[tokio::test]
    async fn a_run_whose_job_an_executor_here_still_ends_is_not_closed_as_lost() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let engine = crate::testing::engine_in(dir.path()).await;
        let store = engine.store();
        let (job, run) = stopped_run(&engine, engine.owner(), "one").await;
        let (stop, _stopped) = tokio::sync::watch::channel(false);
        engine.running.lock().expect("the running jobs").insert(job.id, stop);
        assert_eq!(lost_runs(&engine).await, 0, "the executor here records the run's end");
        let open = store.open_agent_runs().await.expect("open runs");
        assert!(open.iter().any(|r| r.id == run), "the run was closed under its executor");
        engine.running.lock().expect("the running jobs").remove(&job.id);
        assert_eq!(lost_runs(&engine).await, 1, "no executor left: the run is lost");
        let open = store.open_agent_runs().await.expect("open runs");
        assert!(open.iter().all(|r| r.id != run));
    }
    // On a shared database, a run whose job a live instance claimed is that instance's to close
    // (its executor may still be stopping the agent there, to record the real exit and spend):
    // another instance's reaper leaves it. A run of a job whose instance is silent past the grace
    // period is closed: nothing will record its end.
    #[tokio::test]
    async fn a_run_of_a_job_another_live_instance_claimed_is_left_to_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let engine = crate::testing::engine_in(dir.path()).await;
        let store = engine.store();
        let now = engine.clock().now_ms();
        let grace_ms = engine.settings().limits.instance_grace_secs as i64 * 1000;
        let mut runs = Vec::new();
        for (name, beat_at) in [("alive", now), ("silent", now - grace_ms - 1_000)] {
            let instance = baton_store::InstanceRecord {
                id: format!("{name}-host:/srv/baton"),
                host: format!("{name}-host"),
                pid: 4242,
                started_at_ms: beat_at,
                heartbeat_at_ms: beat_at,
            };
            store.heartbeat(&instance).await.expect("the instance beats");
            // A STOP on that instance: its executor there stops the agent (if that instance runs).
            runs.push(stopped_run(&engine, &instance.id, name).await.1);
        }
        assert_eq!(lost_runs(&engine).await, 1, "only the silent instance's run is lost");
        let open: Vec<i64> = store.open_agent_runs().await.expect("open runs").iter().map(|r| r.id).collect();
        assert_eq!(open, vec![runs[0]], "the live instance's run is left to it");
    }
}
