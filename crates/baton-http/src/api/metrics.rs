//! `GET /api/metrics`: a versioned JSON envelope for dashboards and scripts — tasks by stage, the
//! queue's counts, the live agents (pid, runtime, CPU ticks of their process group) and cost by
//! stage and model. A new field keeps `schema_version`; a changed or removed one raises it.

use crate::AppState;
use crate::error::ApiError;
use crate::procfs;
use axum::Json;
use axum::extract::State;
use baton_store::{JobStatus, UsageGroup};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;

/// The envelope's version.
pub const METRICS_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsEnvelope {
    pub schema_version: u32,
    /// When this envelope was made, unix milliseconds.
    pub generated_at: i64,
    /// Clock ticks per second: the unit of `agents[].cpu_ticks`.
    pub clk_tck: u64,
    /// Tasks by current stage (`done` and `cancelled` included).
    pub stages: BTreeMap<String, u64>,
    pub queue: QueueCounts,
    pub agents: Vec<LiveAgent>,
    pub cost: CostTotals,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct QueueCounts {
    /// Due now.
    pub queued: u64,
    /// Due later (a backoff, a busy merge lease).
    pub deferred: u64,
    pub running: u64,
    /// Leases not yet expired.
    pub leases_held: u64,
}

/// An agent run that has not recorded its end.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveAgent {
    /// The task's work item.
    pub task: String,
    pub job: i64,
    pub stage: String,
    pub adapter: String,
    pub model: Option<String>,
    /// The supervised process (the shim that runs the agent).
    pub pid: Option<u32>,
    /// Its process group (the agent and everything it started).
    pub pgid: Option<u32>,
    pub runtime_ms: i64,
    /// utime + stime (and reaped children's) of the group's live processes, in `clk_tck` units;
    /// `null` when no process of the group is alive on this machine.
    pub cpu_ticks: Option<u64>,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct CostTotals {
    /// Priced spend of every agent run, USD (unpriced runs add nothing).
    pub total_usd: f64,
    pub by_stage: BTreeMap<String, f64>,
    pub by_model: BTreeMap<String, f64>,
}

/// `GET /api/metrics`.
#[utoipa::path(get, path = "/api/metrics", tag = "observability",
    responses((status = 200, description = "The metrics envelope", body = MetricsEnvelope),
              (status = 404, description = "Turned off by `server.metrics = false`", body = crate::openapi::ErrorBody)))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Json<MetricsEnvelope>, ApiError> {
    if !state.observability.metrics {
        return Err(crate::prometheus::turned_off());
    }
    let engine = &state.engine;
    let store = engine.store();
    let now = engine.clock().now_ms();
    let counts =
        store.metric_counts(&baton_store::HistogramBounds { job_latency_ms: vec![], merge_wait_ms: vec![] }).await?;
    let open = store.open_jobs().await?;
    let mut queue = QueueCounts::default();
    for o in &open {
        match o.job.status {
            JobStatus::Running => queue.running += 1,
            _ if o.job.available_at_ms > now => queue.deferred += 1,
            _ => queue.queued += 1,
        }
    }
    queue.leases_held = store.leases().await?.iter().filter(|l| l.expires_at_ms > now).count() as u64;

    let runs = store.open_agent_runs().await?;
    let groups: Vec<u32> = runs
        .iter()
        .filter_map(|run| open.iter().find(|o| o.job.id == run.job_id).and_then(|o| o.job.pgid).or(run.pid))
        .collect();
    let ticks = procfs::group_cpu_ticks(&groups);
    let agents = runs
        .into_iter()
        .map(|run| {
            let open_job = open.iter().find(|o| o.job.id == run.job_id);
            let pgid = open_job.and_then(|o| o.job.pgid).or(run.pid);
            LiveAgent {
                task: open_job.map_or_else(|| run.task_id.to_string(), |o| o.work_item_id.clone()),
                job: run.job_id.0,
                stage: run.stage,
                adapter: run.adapter,
                model: run.model,
                pid: run.pid,
                pgid,
                runtime_ms: (now - run.started_at_ms).max(0),
                cpu_ticks: pgid.and_then(|g| ticks.get(&g).copied()),
            }
        })
        .collect();

    let mut cost = CostTotals::default();
    for row in store.usage(UsageGroup::Stage).await? {
        cost.total_usd += row.cost_usd;
        cost.by_stage.insert(row.key, row.cost_usd);
    }
    for row in store.usage(UsageGroup::Model).await? {
        cost.by_model.insert(row.key, row.cost_usd);
    }
    Ok(Json(MetricsEnvelope {
        schema_version: METRICS_SCHEMA_VERSION,
        generated_at: now,
        clk_tck: procfs::clk_tck(),
        stages: counts.tasks_by_stage.into_iter().collect(),
        queue,
        agents,
        cost,
    }))
}
