//! Task routes: list, show (with timeline, jobs, agent runs and totals), create, and the human
//! actions, each of which goes through `Engine::submit` so `decide` judges it.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::idempotency::IdempotencyKey;
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use baton_engine::{EngineError, Input, InputOutcome, NewTaskRequest, Principal};
use baton_store::{
    AgentRunRecord, DependencyRecord, EventRecord, JobRecord, StoreError, TaskFilter, TaskKey, TaskRecord,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Timeline events returned with one task.
pub const TIMELINE_EVENTS_MAX: u32 = 1000;

/// `GET /api/tasks` query: `?active=true` hides done and cancelled tasks; `?repo=`, `?stage=`
/// and `?hold=` filter (each an index walk in the store).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub active: bool,
    pub repo: Option<String>,
    /// Only tasks in this stage (`review`, `done`, …).
    pub stage: Option<String>,
    /// Only tasks with this hold (`awaiting_approval`, `paused_quota`, …; `none` for tasks
    /// holding for nothing).
    pub hold: Option<String>,
    /// At most this many tasks (default [`PAGE_DEFAULT`], maximum [`PAGE_MAX`]).
    pub limit: Option<u32>,
    /// Only tasks with a smaller id: the `before` of the previous page's `Link: rel="next"`.
    pub before: Option<i64>,
}

/// The largest page of `GET /api/tasks`.
pub const PAGE_MAX: u32 = 500;

/// The page of `GET /api/tasks` without `?limit=`.
pub const PAGE_DEFAULT: u32 = 100;

/// Longest `?stage=` / `?hold=` value (stage names and hold kinds are short identifiers).
const FILTER_NAME_CHARS_MAX: usize = 64;

/// A `?stage=` or `?hold=` value: a short snake_case identifier.
fn filter_name(key: &str, value: &str) -> Result<String, ApiError> {
    let valid = !value.is_empty()
        && value.len() <= FILTER_NAME_CHARS_MAX
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        return Err(ApiError::BadRequest(format!(
            "`{key}` must be a stage or hold name (lowercase letters, digits, `_`, `-`; at most {FILTER_NAME_CHARS_MAX})"
        )));
    }
    Ok(value.to_string())
}

/// `POST /api/tasks` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    pub repo: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
    /// The ticket this task carries (a tracker's id); a second create for a live ticket answers
    /// 409 naming its task.
    #[serde(default)]
    pub external_ref: Option<String>,
    /// Tasks the new one waits for (numeric ids or work-item ids): its jobs are not claimed until
    /// each is done (SPEC §6.4).
    #[serde(default)]
    pub depends_on: Vec<TaskRef>,
}

/// A task named in a body: its numeric id or its work-item id.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TaskRef {
    Id(i64),
    WorkItem(String),
}

impl TaskRef {
    fn key(&self) -> TaskKey {
        match self {
            TaskRef::Id(id) => TaskKey::Id(baton_domain::TaskId(*id)),
            TaskRef::WorkItem(key) => TaskKey::parse(key),
        }
    }
}

/// `POST /api/tasks/{id}/dependencies` and `DELETE …` body: the task waited for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DependencyBody {
    pub depends_on: TaskRef,
}

/// Most dependencies one request may declare.
const DEPENDS_ON_MAX: usize = 50;

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
    /// The tasks this one waits for, each with its stage (`met` once it is done).
    pub dependencies: Vec<DependencyView>,
}

/// A dependency as shown with its task.
#[derive(Debug, Serialize)]
pub struct DependencyView {
    #[serde(flatten)]
    pub record: DependencyRecord,
    pub met: bool,
}

impl From<DependencyRecord> for DependencyView {
    fn from(record: DependencyRecord) -> Self {
        DependencyView { met: record.met(), record }
    }
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

/// `GET /api/tasks`: newest first, one page at a time (keyset paging on the id). A full page
/// carries `Link: </api/tasks?…&before=<last id>>; rel="next"`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<axum::response::Response, ApiError> {
    let limit = match query.limit {
        Some(0) => return Err(ApiError::BadRequest("`limit` must be at least 1".into())),
        Some(n) => n.min(PAGE_MAX),
        None => PAGE_DEFAULT,
    };
    let stage = query.stage.as_deref().map(|s| filter_name("stage", s)).transpose()?;
    // A task holding for nothing has the empty hold kind.
    let hold = query.hold.as_deref().map(|h| filter_name("hold", h)).transpose()?;
    let filter = TaskFilter {
        active_only: query.active,
        repo: query.repo.clone(),
        stage: stage.clone(),
        hold: hold.clone().map(|h| if h == "none" { String::new() } else { h }),
    };
    let before = query.before.map(baton_domain::TaskId);
    let page = state.engine.store().list_tasks_page(&filter, before, limit).await?;
    let next = (page.len() == limit as usize).then(|| page.last().map(|t| t.id.0)).flatten();
    let mut response = Json(page).into_response();
    if let Some(last) = next {
        let mut link = format!("/api/tasks?limit={limit}&before={last}");
        if query.active {
            link.push_str("&active=true");
        }
        if let Some(repo) = &query.repo {
            link.push_str(&format!("&repo={}", percent_encode(repo)));
        }
        if let Some(stage) = &stage {
            link.push_str(&format!("&stage={stage}"));
        }
        if let Some(hold) = &hold {
            link.push_str(&format!("&hold={hold}"));
        }
        if let Ok(value) = axum::http::HeaderValue::from_str(&format!("<{link}>; rel=\"next\"")) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// A query value: unreserved characters kept, everything else `%XX`.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
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
    let dependencies = store.dependencies(task.id).await?.into_iter().map(DependencyView::from).collect();
    Ok(Json(TaskDetail { task, timeline, jobs, agent_runs, totals, dependencies }))
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    key: Option<Extension<IdempotencyKey>>,
    ApiJson(body): ApiJson<CreateTask>,
) -> Result<impl IntoResponse, ApiError> {
    if body.depends_on.len() > DEPENDS_ON_MAX {
        return Err(ApiError::Invalid(format!(
            "`depends_on` names {} tasks; at most {DEPENDS_ON_MAX} may be declared at once",
            body.depends_on.len()
        )));
    }
    let depends_on: Vec<TaskKey> = body.depends_on.iter().map(TaskRef::key).collect();
    let request =
        NewTaskRequest { repo: body.repo, title: body.title, body: body.body, external_ref: body.external_ref };
    let task = match state.engine.create_task_depending(request, key.map(|Extension(k)| k.0), &depends_on).await {
        Err(EngineError::Store(StoreError::Exists(task))) => {
            return Err(ApiError::Conflict(format!(
                "ticket {} already has the live task {}; stop it first to start the ticket again",
                task.external_ref.as_deref().unwrap_or("?"),
                task.work_item_id
            )));
        }
        other => other?,
    };
    let location = format!("/api/tasks/{}", task.work_item_id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(task)))
}

/// The principal and idempotency key the middleware attached to a request.
type Caller = (Extension<Principal>, Option<Extension<IdempotencyKey>>);

pub(crate) async fn approve(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    caller: Caller,
) -> Result<Json<InputOutcome>, ApiError> {
    submit(&state, &id, Input::Approve, caller).await
}

pub(crate) async fn answer(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    caller: Caller,
    ApiJson(body): ApiJson<AnswerBody>,
) -> Result<Json<InputOutcome>, ApiError> {
    submit(&state, &id, Input::Answer { text: body.text }, caller).await
}

pub(crate) async fn confirm_deploy(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    caller: Caller,
) -> Result<Json<InputOutcome>, ApiError> {
    submit(&state, &id, Input::ConfirmDeploy, caller).await
}

pub(crate) async fn stop(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    caller: Caller,
) -> Result<Json<InputOutcome>, ApiError> {
    submit(&state, &id, Input::Stop, caller).await
}

pub(crate) async fn retry(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    caller: Caller,
) -> Result<Json<InputOutcome>, ApiError> {
    submit(&state, &id, Input::Retry, caller).await
}

pub(crate) async fn resume(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    caller: Caller,
) -> Result<Json<InputOutcome>, ApiError> {
    submit(&state, &id, Input::Resume, caller).await
}

/// Declares that the task waits for another (`act` scope): 201 when new, 200 when it was declared
/// already; 409 naming the cycle it would close.
pub(crate) async fn depend(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<DependencyBody>,
) -> Result<impl IntoResponse, ApiError> {
    let declared =
        state.engine.declare_dependency(&TaskKey::parse(&id), &body.depends_on.key(), &principal.name).await?;
    let status = if declared.created { StatusCode::CREATED } else { StatusCode::OK };
    let answer = serde_json::json!({
        "task": declared.task.work_item_id,
        "depends_on": declared.depends_on.work_item_id,
        "created": declared.created,
    });
    Ok((status, Json(answer)))
}

/// Withdraws a dependency (`act` scope): `{removed}`, false when there was none.
pub(crate) async fn undepend(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DependencyBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let removed = state.engine.withdraw_dependency(&TaskKey::parse(&id), &body.depends_on.key()).await?;
    Ok(Json(serde_json::json!({ "removed": removed })))
}

/// The body of `POST /api/tasks/{id}/priority`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PriorityBody {
    priority: i64,
}

/// Sets the merge-queue priority of a queued change, recorded with the caller's principal.
pub(crate) async fn priority(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<PriorityBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let note =
        baton_engine::queue::set_priority(&state.engine, &TaskKey::parse(&id), body.priority, &principal.name).await?;
    Ok(Json(serde_json::json!({ "applied": note })))
}

/// Hands one human input to the engine, recorded as made by the caller's principal. A suppressed
/// input is a normal 200 answer carrying the reason, because "nothing to approve" is information,
/// not a failure. With an `Idempotency-Key`, the inbox records the input under the scoped key in
/// the same transaction that applies it.
async fn submit(
    state: &AppState,
    id: &str,
    input: Input,
    (Extension(principal), key): Caller,
) -> Result<Json<InputOutcome>, ApiError> {
    let dedup_key = key.map(|Extension(k)| format!("idem:{}", k.0));
    let outcome = state.engine.submit(&TaskKey::parse(id), input, &principal.name, dedup_key).await?;
    Ok(Json(outcome))
}
