//! The reaper (SPEC §7): finds running jobs that no executor watches and re-adopts them (the
//! adopted executor waits for a surviving agent, takes a recorded exit, or runs the stage afresh
//! when the agent died without one), fails jobs running past the backstop, renews the merge lease
//! of live holders and reclaims the lease of dead ones. At start it sweeps orphaned worktrees and
//! agent processes. Every write is a guarded flip through the normal transaction: a loser of a
//! race performs no effect.

use crate::engine::Engine;
use crate::workspace::remove_worktree;
use baton_domain::{Event, JobOutcome};
use baton_store::{JobFinish, JobStatus, NewEvent, TaskKey};
use std::sync::Arc;

/// One reaper pass. Never fails: problems are logged.
pub async fn tick(engine: &Arc<Engine>) {
    if let Err(error) = engine.adopt_orphans().await {
        tracing::warn!("reaper: re-adopting orphaned jobs failed: {error}");
    }
    backstop(engine).await;
    leases(engine).await;
}

/// Fails jobs running longer than `job_backstop_secs` and stops their agent.
async fn backstop(engine: &Arc<Engine>) {
    let Ok(running) = engine.store.jobs_with_status(JobStatus::Running).await else {
        return;
    };
    let now = engine.clock.now_ms();
    let backstop_ms = engine.settings.limits.job_backstop_secs as i64 * 1000;
    for job in running.into_iter().filter(|j| j.started_at_ms.is_some_and(|s| now - s > backstop_ms)) {
        let reason = format!("ran longer than the {} s backstop; stopped by the reaper", backstop_ms / 1000);
        let outcome = JobOutcome::Failed { reason: reason.clone() };
        let finish = JobFinish {
            job: job.id,
            status: JobStatus::Failed,
            result: serde_json::json!({ "outcome": outcome, "reaped": true }),
        };
        let event = Event::JobFinished { job: job.id, stage: job.stage.clone(), outcome };
        match engine.apply_event(job.task_id, &event, Some(finish), None).await {
            Ok(outcome) => tracing::warn!(job = %job.id, ?outcome, "{reason}"),
            Err(error) => tracing::warn!(job = %job.id, "reaper backstop failed: {error}"),
        }
        engine.signal_stop(job.id);
        if let Some(pgid) = job.pgid {
            baton_runner::stop_group(pgid, std::time::Duration::from_secs(engine.settings.limits.stop_grace_secs))
                .await;
        }
    }
}

/// Renews the merge lease of holders still at the merge/deploy stages; reclaims the others.
async fn leases(engine: &Arc<Engine>) {
    let Ok(leases) = engine.store.leases().await else {
        return;
    };
    let now = engine.clock.now_ms();
    let ttl_ms = engine.settings.limits.lease_ttl_secs as i64 * 1000;
    for lease in leases {
        let task = match lease.holder.strip_prefix("task:").and_then(|id| id.parse::<i64>().ok()) {
            Some(id) => engine.store.task(&TaskKey::Id(baton_domain::TaskId(id))).await.ok().flatten(),
            None => None,
        };
        // A blocked or paused task must not keep the repo's merges waiting for a human.
        let holds_legitimately = task.as_ref().is_some_and(|t| {
            !t.state.is_terminal()
                && matches!(t.state.hold, baton_domain::Hold::None | baton_domain::Hold::AwaitingConfirm)
                && engine.pipeline.stage(&t.state.stage).is_some_and(|s| {
                    s.gates.contains(&baton_domain::GateSpec::Mergeable) || s.actor == baton_domain::Actor::Deploy
                })
        });
        if holds_legitimately {
            if lease.expires_at_ms - now < ttl_ms / 2 {
                // Extend only: a STOP may have released the lease since it was read.
                let _ = engine.store.renew_lease(&lease.name, &lease.holder, ttl_ms, now).await;
            }
            continue;
        }
        if let Ok(true) = engine.store.release_lease(&lease.name, &lease.holder).await {
            tracing::warn!(lease = %lease.name, holder = %lease.holder, "reclaimed a lease whose holder is gone");
            if let Some(task) = task {
                let _ = engine
                    .store
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
}

/// At start: removes worktrees of finished or unknown tasks and stops agent processes of this data
/// directory that no running job owns.
pub async fn sweep_at_start(engine: &Arc<Engine>) {
    let root = engine.settings.worktrees_dir();
    for repo in &engine.settings.repos {
        let Ok(entries) = std::fs::read_dir(root.join(&repo.name)) else {
            continue;
        };
        for entry in entries.flatten() {
            let work_item = entry.file_name().to_string_lossy().to_string();
            let task = engine.store.task(&TaskKey::WorkItem(work_item.clone())).await.ok().flatten();
            let orphan = task.is_none_or(|t| t.repo != repo.name || t.state.is_terminal());
            if orphan && repo.path.exists() {
                tracing::info!(repo = %repo.name, %work_item, "sweeping an orphaned worktree");
                if let Err(error) = remove_worktree(repo, &entry.path()).await {
                    tracing::warn!("sweeping {} failed: {error}", entry.path().display());
                }
            }
        }
    }
    let Ok(running) = engine.store.jobs_with_status(JobStatus::Running).await else {
        return;
    };
    let owned: Vec<u32> = running.iter().filter_map(|j| j.pgid).collect();
    let runs_dir = engine.settings.runs_dir().display().to_string();
    for (pid, pgid) in baton_runner::process::find_shims(&runs_dir) {
        if !owned.contains(&pgid) {
            tracing::warn!(pid, pgid, "stopping an orphaned agent no running job owns");
            baton_runner::stop_group(pgid, std::time::Duration::from_secs(engine.settings.limits.stop_grace_secs))
                .await;
        }
    }
}
