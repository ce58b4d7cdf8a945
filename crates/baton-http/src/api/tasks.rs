//! Task routes: list, show (with timeline, jobs, agent runs and totals), create, and the human
//! actions, each of which goes through `Engine::submit` so `decide` judges it.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use baton_engine::{Input, InputOutcome, NewTaskRequest};
use baton_store::{AgentRunRecord, EventRecord, JobRecord, TaskFilter, TaskKey, TaskRecord};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Timeline events returned with one task.
pub const TIMELINE_EVENTS_MAX: u32 = 1000;
/// Longest `Idempotency-Key` header accepted.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 200;
/// Who the engine records as the author of API inputs.
const INPUT_BY: &str = "api";

/// `GET /api/tasks` query: `?active=true` hides done and cancelled tasks; `?repo=` filters.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub active: bool,
    pub repo: Option<String>,
}

/// `POST /api/tasks` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    pub repo: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
}

/// `POST /api/tasks/{id}/answer` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    pub text: String,
}

/// One task with everything the detail view shows; the task's own fields sit at the top level.
#[derive(Debug, Serialize)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: TaskRecord,
    pub timeline: Vec<EventRecord>,
    pub jobs: Vec<JobRecord>,
    pub agent_runs: Vec<AgentRunRecord>,
    pub totals: RunTotals,
}

/// Sums over a task's agent runs. `cost_usd` covers the priced runs; `unpriced_runs` the rest.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct RunTotals {
    pub runs: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
    pub unpriced_runs: u64,
}

impl RunTotals {
    pub fn of(runs: &[AgentRunRecord]) -> Self {
        runs.iter().fold(RunTotals::default(), |mut totals, run| {
            totals.runs += 1;
            totals.input_tokens += run.input_tokens;
            totals.output_tokens += run.output_tokens;
            totals.cache_read_tokens += run.cache_read_tokens;
            totals.cache_write_tokens += run.cache_write_tokens;
            totals.reasoning_tokens += run.reasoning_tokens;
            match run.cost_usd {
                Some(cost) => totals.cost_usd += cost,
                None => totals.unpriced_runs += 1,
            }
            totals
        })
    }
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<TaskRecord>>, ApiError> {
    let filter = TaskFilter { active_only: query.active, repo: query.repo };
    Ok(Json(state.engine.store().list_tasks(&filter).await?))
}

pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TaskDetail>, ApiError> {
    let store = &state.engine.store();
    let task = store
        .task(&TaskKey::parse(&id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} does not exist")))?;
    let timeline = store.events(Some(task.id), 0, TIMELINE_EVENTS_MAX).await?;
    let jobs = store.jobs_for_task(task.id).await?;
    let agent_runs = store.agent_runs(task.id).await?;
    let totals = RunTotals::of(&agent_runs);
    Ok(Json(TaskDetail { task, timeline, jobs, agent_runs, totals }))
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<CreateTask>,
) -> Result<impl IntoResponse, ApiError> {
    let request = NewTaskRequest { repo: body.repo, title: body.title, body: body.body, external_ref: None };
    let task = state.engine.create_task(request).await?;
    let location = format!("/api/tasks/{}", task.work_item_id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(task)))
}

pub(crate) async fn approve(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<InputOutcome>, ApiError> {
    submit(&state, &id, Input::Approve, &headers).await
}

pub(crate) async fn answer(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AnswerBody>,
) -> Result<Json<InputOutcome>, ApiError> {
    submit(&state, &id, Input::Answer { text: body.text }, &headers).await
}

pub(crate) async fn confirm_deploy(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<InputOutcome>, ApiError> {
    submit(&state, &id, Input::ConfirmDeploy, &headers).await
}

pub(crate) async fn stop(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<InputOutcome>, ApiError> {
    submit(&state, &id, Input::Stop, &headers).await
}

pub(crate) async fn retry(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Json<InputOutcome>, ApiError> {
    submit(&state, &id, Input::Retry, &headers).await
}

/// Hands one human input to the engine. A suppressed input is a normal 200 answer carrying the
/// reason, because "nothing to approve" is information, not a failure.
async fn submit(state: &AppState, id: &str, input: Input, headers: &HeaderMap) -> Result<Json<InputOutcome>, ApiError> {
    let dedup_key = idempotency_key(headers)?;
    let outcome = state.engine.submit(&TaskKey::parse(id), input, INPUT_BY, dedup_key).await?;
    Ok(Json(outcome))
}

/// The inbox dedup key for an `Idempotency-Key` header. Namespaced with `api:` so a client's key
/// can never collide with the keys webhooks and other input sources record in the same inbox.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::BadRequest(format!(
            "the Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes of visible ASCII"
        ))
    };
    let key = value.to_str().map_err(|_| invalid())?.trim();
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(invalid());
    }
    Ok(Some(format!("api:{key}")))
}
