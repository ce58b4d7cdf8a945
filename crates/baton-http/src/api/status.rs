//! `GET /api/status`: tasks by stage and by hold, the job queue, held leases and uptime.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use baton_domain::pipeline::{CANCELLED, DONE};
use baton_store::LeaseRecord;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub tasks: TaskCounts,
    pub jobs: JobCounts,
    /// Leases whose expiry is still ahead (the repo merge leases).
    pub leases: Vec<LeaseRecord>,
    /// The frozen repositories (a DEGRADED deploy; nothing lands there but a revert).
    pub freezes: Vec<baton_store::RepoFreeze>,
    pub started_at_ms: i64,
    pub uptime_secs: i64,
}

#[derive(Debug, Default, Serialize)]
pub struct TaskCounts {
    pub total: u64,
    /// Neither done nor cancelled.
    pub active: u64,
    /// Every pipeline stage in order, then `done` and `cancelled`, each with its task count.
    pub by_stage: Vec<StageCount>,
    pub by_hold: HoldCounts,
}

#[derive(Debug, Serialize)]
pub struct StageCount {
    pub stage: String,
    pub tasks: u64,
}

/// Active tasks waiting on a human or blocked.
#[derive(Debug, Default, Serialize)]
pub struct HoldCounts {
    pub needs_input: u64,
    pub awaiting_approval: u64,
    pub awaiting_confirm: u64,
    pub blocked: u64,
    pub paused_budget: u64,
    pub paused_quota: u64,
    /// Deployed, in the post-deploy monitor window.
    pub monitoring: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
}

pub(crate) async fn status(State(state): State<Arc<AppState>>) -> Result<Json<StatusReport>, ApiError> {
    let engine = &state.engine;
    let store = &engine.store();
    let now_ms = engine.clock().now_ms();

    let mut tasks = TaskCounts {
        by_stage: engine
            .stage_names(None)
            .into_iter()
            .chain([DONE, CANCELLED])
            .map(|stage| StageCount { stage: stage.to_string(), tasks: 0 })
            .collect(),
        ..TaskCounts::default()
    };
    // One aggregate query: the status never loads a task.
    for count in store.task_counts().await? {
        let n = count.tasks;
        tasks.total += n;
        if count.stage != DONE && count.stage != CANCELLED {
            tasks.active += n;
        }
        match tasks.by_stage.iter_mut().find(|c| c.stage == count.stage) {
            Some(c) => c.tasks += n,
            // A stage no longer in the pipeline (renamed in config) still gets counted.
            None => tasks.by_stage.push(StageCount { stage: count.stage.clone(), tasks: n }),
        }
        let hold = &mut tasks.by_hold;
        match count.hold.as_str() {
            "needs_input" => hold.needs_input += n,
            "awaiting_approval" => hold.awaiting_approval += n,
            "awaiting_confirm" => hold.awaiting_confirm += n,
            "blocked" => hold.blocked += n,
            "paused_budget" => hold.paused_budget += n,
            "paused_quota" => hold.paused_quota += n,
            "monitoring" => hold.monitoring += n,
            _ => {}
        }
    }

    // Counted from an index: a backlog of queued jobs is never loaded.
    let counted = store.job_counts().await?;
    let jobs = JobCounts { queued: counted.queued, running: counted.running };
    let leases = store.leases().await?.into_iter().filter(|lease| lease.expires_at_ms > now_ms).collect();
    Ok(Json(StatusReport {
        tasks,
        jobs,
        leases,
        freezes: store.repo_freezes().await?,
        started_at_ms: state.started_at_ms,
        uptime_secs: (now_ms - state.started_at_ms).max(0) / 1000,
    }))
}
