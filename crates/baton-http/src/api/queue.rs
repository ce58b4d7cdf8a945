//! `GET /api/queue`: what is waiting and why — open jobs (queued, running, deferred), the merge
//! leases with the tasks waiting for each, the reaper's and reconciler's last passes, budget caps
//! with their spend, and tasks with a STOP waiting for the merge or deploy step to end. A few
//! indexed reads and aggregates: nothing loads every task.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use baton_engine::stats::{ReaperPass, ReconcilerPass};
use baton_store::{JobStatus, OpenJob, SpendFilter};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueReport {
    /// When this report was made, in unix milliseconds.
    pub generated_at_ms: i64,
    pub jobs: Vec<QueueJob>,
    pub leases: Vec<QueueLease>,
    /// Each repository's merge queue in train order (the landing change first): per change its
    /// position, state (`waiting`, `testing`, `green`, `red`, `landing`, `evicted`), the base it
    /// is tested on, its tested head, priority and time waited; and the speculation depth.
    #[schema(value_type = Vec<Object>)]
    pub merge_queues: Vec<baton_engine::queue::QueueView>,
    pub reaper: PassReport<ReaperPassView>,
    pub reconciler: PassReport<ReconcilerPassView>,
    pub budgets: BudgetReport,
    pub stop: Vec<PendingStop>,
    /// Tasks whose next job the claim holds back (SPEC §6.4): `{task, work_item_id, repo, stage,
    /// gate: dependencies | serial, waits_for: [work items]}`.
    #[schema(value_type = Vec<Object>)]
    pub waiting: Vec<baton_engine::dependencies::Waiting>,
    /// The lessons journal, read only: `{enabled, count, recent: [the five newest lessons]}`;
    /// `{enabled: false}` when switched off; `{enabled: true, error}` when it cannot be read (the
    /// rest of the report still answers).
    #[schema(value_type = Object)]
    pub lessons: serde_json::Value,
    /// The frozen repositories (a DEGRADED deploy; nothing lands there but a revert until a
    /// person unfreezes it): `[{id, repo, task, incident, revert, frozen_by, reason, frozen_at_ms}]`.
    #[schema(value_type = Vec<Object>)]
    pub freezes: Vec<baton_store::RepoFreeze>,
}

/// An open job.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueJob {
    pub job: i64,
    pub task: i64,
    pub work_item_id: String,
    pub repo: String,
    pub stage: String,
    /// `queued` (due now), `deferred` (due later: a backoff or a busy merge lease) or `running`.
    pub status: String,
    pub attempt: u32,
    /// When the job is (or was) due to run, unix milliseconds.
    pub due_at_ms: i64,
    pub started_at_ms: Option<i64>,
    /// The Baton process running it.
    pub owner: Option<String>,
}

/// A merge lease: who holds it, until when, and which tasks wait for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueLease {
    pub name: String,
    /// The repository it serialises merges of (`merge:<repo>`), when it is a merge lease.
    pub repo: Option<String>,
    /// `task:<id>`.
    pub holder: String,
    /// The holder's work item, when the holder is a task with an open job.
    pub holder_work_item: Option<String>,
    pub token: i64,
    pub acquired_at_ms: i64,
    pub expires_at_ms: i64,
    /// The lease ran out and nobody renewed it (the reaper reclaims it).
    pub expired: bool,
    /// Work items of the repository's other changes in its merge queue, in train order.
    pub waiting: Vec<String>,
}

/// The last pass of a periodic worker of this server's engine, and how many ran since it started.
#[derive(Debug, Serialize, ToSchema)]
pub struct PassReport<T> {
    pub passes: u64,
    /// `null` until the first pass (one interval after start).
    pub last: Option<T>,
}

/// What one reaper pass did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReaperPassView {
    pub at_ms: i64,
    pub adopted: u32,
    pub backstopped: u32,
    pub leases_renewed: u32,
    pub leases_reclaimed: u32,
    pub runs_closed: u32,
    /// Worktrees of tasks that ended on another instance, removed.
    pub worktrees_swept: u32,
}

/// What one reconciler pass did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcilerPassView {
    pub at_ms: i64,
    pub examined: u32,
    pub reapplied: u32,
    pub failed: u32,
}

impl From<ReaperPass> for ReaperPassView {
    fn from(p: ReaperPass) -> Self {
        ReaperPassView {
            at_ms: p.at_ms,
            adopted: p.adopted,
            backstopped: p.backstopped,
            leases_renewed: p.leases_renewed,
            leases_reclaimed: p.leases_reclaimed,
            runs_closed: p.runs_closed,
            worktrees_swept: p.worktrees_swept,
        }
    }
}

impl From<ReconcilerPass> for ReconcilerPassView {
    fn from(p: ReconcilerPass) -> Self {
        ReconcilerPassView { at_ms: p.at_ms, examined: p.examined, reapplied: p.reapplied, failed: p.failed }
    }
}

/// Budget caps in force (configuration, overridden by `baton budget set`) with today's spend.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetReport {
    /// Spend of every repository today (UTC) against the global daily cap.
    pub global_daily: BudgetLine,
    /// Each configured repository's spend today against its daily cap.
    pub repos: Vec<BudgetLine>,
    /// The per-task cap every task gets unless overridden.
    pub task_cap_usd: Option<f64>,
    /// Tasks with a cap of their own (`baton budget set --task`), with their total spend.
    pub tasks: Vec<BudgetLine>,
    /// Spend at which a one-time warning is sent, as a fraction of a cap.
    pub warn_ratio: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetLine {
    /// `global`, `repo:<name>` or `task:<id>`.
    pub scope: String,
    /// `null`: no cap.
    pub cap_usd: Option<f64>,
    pub spent_usd: f64,
}

/// A STOP that arrived while the merge or deploy step ran; it is settled when that step ends.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingStop {
    pub task: i64,
    pub work_item_id: String,
    pub stage: String,
    pub requested_by: String,
}

/// `GET /api/queue`.
#[utoipa::path(get, path = "/api/queue", tag = "observability",
    responses((status = 200, description = "The queue view", body = QueueReport),
              (status = 404, description = "Turned off by `server.queue_api = false`", body = crate::openapi::ErrorBody)))]
pub(crate) async fn queue(State(state): State<Arc<AppState>>) -> Result<Json<QueueReport>, ApiError> {
    if !state.observability.queue_api {
        return Err(ApiError::NotFound(
            "the queue view is turned off; set `server.queue_api = true` to serve it".into(),
        ));
    }
    let engine = &state.engine;
    let store = engine.store();
    let now = engine.clock().now_ms();
    let open = store.open_jobs().await?;

    let jobs = open.iter().map(|o| queue_job(o, now)).collect();
    let merge_queues = baton_engine::queue::views(engine).await?;
    let leases = store
        .leases()
        .await?
        .into_iter()
        .map(|lease| {
            let repo = lease.name.strip_prefix("merge:").map(str::to_string);
            let holder_task = lease.holder.strip_prefix("task:").and_then(|id| id.parse::<i64>().ok());
            let holder_work_item =
                open.iter().find(|o| Some(o.job.task_id.0) == holder_task).map(|o| o.work_item_id.clone());
            let waiting: Vec<String> = merge_queues
                .iter()
                .filter(|q| Some(&q.repo) == repo.as_ref())
                .flat_map(|q| q.entries.iter())
                .filter(|e| Some(e.task) != holder_task)
                .map(|e| e.work_item_id.clone())
                .collect();
            QueueLease {
                expired: lease.expires_at_ms <= now,
                name: lease.name,
                repo,
                holder: lease.holder,
                holder_work_item,
                token: lease.token,
                acquired_at_ms: lease.acquired_at_ms,
                expires_at_ms: lease.expires_at_ms,
                waiting,
            }
        })
        .collect();

    let stats = engine.maintenance().snapshot();
    let stop = open
        .iter()
        .filter_map(|o| {
            Some(PendingStop {
                requested_by: o.cancel_requested.clone()?,
                task: o.job.task_id.0,
                work_item_id: o.work_item_id.clone(),
                stage: o.job.stage.clone(),
            })
        })
        .collect();
    let waiting = baton_engine::dependencies::waiting(engine, &open).await?;
    Ok(Json(QueueReport {
        generated_at_ms: now,
        jobs,
        leases,
        merge_queues,
        reaper: PassReport { passes: stats.reaper_passes, last: stats.reaper_last.map(Into::into) },
        reconciler: PassReport { passes: stats.reconciler_passes, last: stats.reconciler_last.map(Into::into) },
        budgets: budgets(&state, now).await?,
        stop,
        waiting,
        lessons: lessons_block(&state).await,
        freezes: state.engine.store().repo_freezes().await?,
    }))
}

/// The journal's read-only block of the report; never fails it.
async fn lessons_block(state: &AppState) -> serde_json::Value {
    match state.engine.lessons(&baton_store::LessonFilter::default()).await {
        Ok(None) => serde_json::json!({ "enabled": false }),
        Ok(Some(lessons)) => serde_json::json!({
            "enabled": true,
            "count": lessons.len(),
            "recent": lessons.iter().take(5).collect::<Vec<_>>(),
        }),
        Err(e) => serde_json::json!({ "enabled": true, "error": e.to_string() }),
    }
}

fn queue_job(open: &OpenJob, now: i64) -> QueueJob {
    let job = &open.job;
    let status = match job.status {
        JobStatus::Running => "running",
        _ if job.available_at_ms > now => "deferred",
        _ => "queued",
    };
    QueueJob {
        job: job.id.0,
        task: job.task_id.0,
        work_item_id: open.work_item_id.clone(),
        repo: job.repo.clone(),
        stage: job.stage.clone(),
        status: status.to_string(),
        attempt: job.attempt,
        due_at_ms: job.available_at_ms,
        started_at_ms: job.started_at_ms,
        owner: job.owner.clone(),
    }
}

async fn budgets(state: &AppState, now: i64) -> Result<BudgetReport, ApiError> {
    let engine = &state.engine;
    let store = engine.store();
    let configured = &engine.settings().budgets;
    let overrides = store.budget_caps().await?;
    let cap = |scope: &str, default: Option<f64>| match overrides.iter().find(|(s, _)| s == scope) {
        Some((_, cap)) => *cap,
        None => default,
    };
    let today = Some(now - now.rem_euclid(DAY_MS));
    let global_daily = BudgetLine {
        scope: "global".into(),
        cap_usd: cap("global", configured.global_daily_usd),
        spent_usd: store.spend_usd(&SpendFilter { since_ms: today, ..SpendFilter::default() }).await?,
    };
    let mut repos = Vec::new();
    for repo in &engine.settings().repos {
        let scope = format!("repo:{}", repo.name);
        let filter = SpendFilter { repo: Some(repo.name.clone()), since_ms: today, ..SpendFilter::default() };
        repos.push(BudgetLine {
            cap_usd: cap(&scope, configured.repo_daily_usd),
            spent_usd: store.spend_usd(&filter).await?,
            scope,
        });
    }
    let mut tasks = Vec::new();
    for (scope, cap_usd) in overrides.iter().filter(|(s, _)| s.starts_with("task:")) {
        let Some(id) = scope.strip_prefix("task:").and_then(|id| id.parse::<i64>().ok()) else {
            continue;
        };
        let filter = SpendFilter { task: Some(baton_domain::TaskId(id)), ..SpendFilter::default() };
        tasks.push(BudgetLine { scope: scope.clone(), cap_usd: *cap_usd, spent_usd: store.spend_usd(&filter).await? });
    }
    Ok(BudgetReport {
        global_daily,
        repos,
        task_cap_usd: configured.task_usd,
        tasks,
        warn_ratio: configured.warn_ratio,
    })
}
