//! The OpenAPI 3.1 document of the whole HTTP surface, served at `GET /api/openapi.json`:
//! generated with `utoipa` from the handlers' `#[utoipa::path]` annotations and response types.
//! [`crate::ROUTES`] lists every route the router serves; a test checks that each one is in this
//! document and answers on a real server.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};

/// Every error answer: a stable machine-readable `code` and a message saying what to fix.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Baton", description = "Baton's HTTP API: tasks, human actions, usage, observability and webhooks."),
    paths(
        health, status, tasks_list, tasks_create, tasks_show, task_action, task_depend, task_undepend, handoff_json, handoff_page, usage, usage_ingest, budgets,
        coverage, coverage_baseline, repo_unfreeze, lessons_list, lessons_add, lessons_edit, lesson_decide,
        proposals_list, proposal_decide,
        crate::api::queue::queue, crate::api::metrics::metrics, crate::prometheus::metrics, openapi_json, webhook, events,
    ),
    components(schemas(ErrorBody)),
    tags((name = "observability", description = "Queue, metrics and this document")),
)]
struct Doc;

/// The document, built once per call (cheap: no IO).
pub fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "observability",
    responses((status = 200, description = "This OpenAPI document", body = Object)))]
pub(crate) async fn openapi_json(State(_state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    serde_json::to_value(document()).map(Json).map_err(|error| {
        tracing::error!("rendering the OpenAPI document failed: {error}");
        ApiError::Internal
    })
}

// The routes whose handlers live elsewhere are described here, by path, with their bodies.

/// The store's health checks.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "`{status: \"ok\", checks: [{name, ok, detail}]}`", body = Object),
              (status = 503, description = "A check failed; the body names it", body = Object)))]
#[allow(dead_code)]
fn health() {}

/// Tasks by stage and hold, job counts, held leases, uptime.
#[utoipa::path(get, path = "/api/status", tag = "tasks", responses((status = 200, description = "Status report", body = Object)))]
#[allow(dead_code)]
fn status() {}

/// Tasks, newest first (`?active=true`, `?repo=`, `?stage=`, `?hold=`), one page at a time: a
/// full page carries `Link: <…&before=<last id>>; rel="next"`.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks",
    params(("active" = Option<bool>, Query, description = "hide done and cancelled tasks"),
           ("repo" = Option<String>, Query, description = "only this repository's tasks"),
           ("stage" = Option<String>, Query, description = "only tasks in this stage (`review`, `done`, ...)"),
           ("hold" = Option<String>, Query, description = "only tasks with this hold (`awaiting_approval`, `needs_input`, `blocked`, `paused_budget`, `paused_quota`, ...; `none` for tasks holding for nothing)"),
           ("limit" = Option<u32>, Query, description = "at most this many tasks (default 100, maximum 500)"),
           ("before" = Option<i64>, Query, description = "only tasks with a smaller id (the next page)")),
    responses((status = 200, description = "Task records", body = Vec<Object>), (status = 400, body = ErrorBody)))]
#[allow(dead_code)]
fn tasks_list() {}

/// Creates a task (`act` scope; honours `Idempotency-Key`).
#[utoipa::path(post, path = "/api/tasks", tag = "tasks",
    request_body(content = Object, description = "`{repo, title, body?, external_ref?, depends_on?: [id or work item]}`"),
    responses((status = 201, description = "The new task", body = Object), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[allow(dead_code)]
fn tasks_create() {}

/// One task with its timeline, jobs, agent runs, totals and dependencies.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "numeric id or work-item id")),
    responses((status = 200, description = "Task detail", body = Object), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn tasks_show() {}

/// A task's hand-off: `{work_item, markdown, html, stored}` — the document written when the task
/// reached done or blocked (`stored`), else one built now.
#[utoipa::path(get, path = "/api/tasks/{id}/handoff", tag = "tasks",
    params(("id" = String, Path, description = "numeric id or work-item id")),
    responses((status = 200, description = "The hand-off in Markdown and HTML", body = Object), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn handoff_json() {}

/// A task's hand-off as one self-contained HTML page (`?format=md`: the Markdown).
#[utoipa::path(get, path = "/tasks/{id}/handoff", tag = "tasks",
    params(("id" = String, Path, description = "numeric id or work-item id"),
           ("format" = Option<String>, Query, description = "`html` (default) or `md`")),
    responses((status = 200, description = "The hand-off page (text/html) or Markdown (text/markdown)", content_type = "text/html"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn handoff_page() {}

/// A human action on a task (`act` scope; honours `Idempotency-Key`); `answer` takes `{text}`,
/// `priority` takes `{priority}` (the change's place in its merge queue; 422 when not queued).
#[utoipa::path(post, path = "/api/tasks/{id}/{action}", tag = "tasks",
    params(("id" = String, Path, description = "numeric id or work-item id"),
           ("action" = String, Path, description = "approve | answer | confirm-deploy | stop | retry | resume | priority")),
    responses((status = 200, description = "The input's outcome (applied or suppressed with a reason)", body = Object),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn task_action() {}

/// Declares that the task waits for another to be done (`act` scope): 201 new, 200 declared
/// already, 409 when it would close a cycle (the message names it) or the other was cancelled.
#[utoipa::path(post, path = "/api/tasks/{id}/dependencies", tag = "tasks",
    params(("id" = String, Path, description = "numeric id or work-item id")),
    request_body(content = Object, description = "`{depends_on: id or work item}`"),
    responses((status = 201, description = "`{task, depends_on, created: true}`", body = Object),
              (status = 200, description = "`{task, depends_on, created: false}`", body = Object),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[allow(dead_code)]
fn task_depend() {}

/// Withdraws a dependency (`act` scope).
#[utoipa::path(delete, path = "/api/tasks/{id}/dependencies", tag = "tasks",
    params(("id" = String, Path, description = "numeric id or work-item id")),
    request_body(content = Object, description = "`{depends_on: id or work item}`"),
    responses((status = 200, description = "`{removed}`: false when there was none", body = Object),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[allow(dead_code)]
fn task_undepend() {}

/// Agent runs and ingested usage grouped, with unit economics ($ per merged task, per stage, per unit).
#[utoipa::path(get, path = "/api/usage", tag = "usage",
    params(("by" = Option<String>, Query, description = "task | stage | adapter | model | repo | day | category | source | unit_kind")),
    responses((status = 200, description = "`{by, rows: [{key, runs, records, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, units, cost_usd, agent_cost_usd, ingested_cost_usd, unpriced}], total_cost_usd, unit_economics: {per_merged_task, per_stage, per_unit}, pricing_version}`", body = Object),
              (status = 400, body = ErrorBody)))]
#[allow(dead_code)]
fn usage() {}

/// Usage reported by an outside tool (`ingest` or `admin` scope). Unknown fields, negative numbers
/// and oversize values are refused with a 400 naming the field. Without `cost_usd` the record is
/// priced from the pricing table (tokens by model, units by unit kind); an unknown model is stored
/// unpriced with a warning. A replay of `(source, idempotency_key)` (the key may also come as the
/// `Idempotency-Key` header) returns the first record with 200.
#[utoipa::path(post, path = "/api/usage/ingest", tag = "usage",
    request_body(content = Object, description = "`{source, category?, model?, input_tokens?, output_tokens?, cache_read_tokens?, cache_write_tokens?, units?, unit_kind?, cost_usd?, idempotency_key?, task?, repo?}`"),
    responses((status = 201, description = "`{record, created: true, warnings}`", body = Object),
              (status = 200, description = "A replay: `{record (the first), created: false, warnings}`", body = Object),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[allow(dead_code)]
fn usage_ingest() {}

/// Spend against every budget cap (global and per repository per UTC day, per task), with the
/// ratio and a forecast of today's spend at the current rate.
#[utoipa::path(get, path = "/api/budgets", tag = "usage",
    responses((status = 200, description = "`{caps: [{label, scope, spent_usd, cap_usd, ratio, forecast_usd, forecast_ratio}], forecast: {method, elapsed_hours, spent_today_usd, forecast_usd}, warn_ratio, rule}`", body = Object)))]
#[allow(dead_code)]
fn budgets() {}

/// Every repository's coverage baseline (SPEC §5.1).
#[utoipa::path(get, path = "/api/coverage", tag = "coverage",
    responses((status = 200, description = "`{baselines: [{repo, pct, updated_at_ms, set_by, reason}]}`", body = Object)))]
#[allow(dead_code)]
fn coverage() {}

/// Sets a repository's coverage baseline either way (`admin` scope), recorded with the principal
/// and the reason. An unknown repository, a percentage outside 0–100 or an empty reason is a 422 naming it; a malformed body a 400.
#[utoipa::path(post, path = "/api/coverage/baseline", tag = "coverage",
    request_body(content = Object, description = "`{repo, pct, reason}`"),
    responses((status = 200, description = "The baseline now: `{repo, pct, updated_at_ms, set_by, reason}`", body = Object),
              (status = 400, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[allow(dead_code)]
fn coverage_baseline() {}

/// Unfreezes a repository frozen by a DEGRADED post-deploy check, or by a deploy whose outcome is
/// unknown (`frozen_by = "deploy"`; SPEC §6.4); the principal is recorded. An unknown repository is a 404; one that is not frozen a 422.
#[utoipa::path(post, path = "/api/repos/{repo}/unfreeze", tag = "repos",
    params(("repo" = String, Path, description = "the repository's name")),
    responses((status = 200, description = "The closed freeze: `{id, repo, task, incident, revert, frozen_by, reason, frozen_at_ms, unfrozen_by, unfrozen_at_ms}`", body = Object),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[allow(dead_code)]
fn repo_unfreeze() {}

/// The lessons journal (SPEC §10), filtered to the lessons that apply to `repo` and/or `stage`;
/// `{"enabled": false}` when `[features] lessons` is off.
#[utoipa::path(get, path = "/api/lessons", tag = "lessons",
    params(("repo" = Option<String>, Query, description = "only lessons for this repository or for every one"),
           ("stage" = Option<String>, Query, description = "only lessons for this stage or for every one")),
    responses((status = 200, description = "`{enabled, lessons: [{id, slug, title, body, source, repo, stage, tags, task, created_at_ms, updated_at_ms, hits, last_hit_at_ms, status}]}`; only `active` lessons reach prompts", body = Object)))]
#[allow(dead_code)]
fn lessons_list() {}

/// Records a lesson (`act` scope; source `human` unless `agent` is given). An empty title or body,
/// an unknown repository or stage is a 422 naming it; a malformed body a 400.
#[utoipa::path(post, path = "/api/lessons", tag = "lessons",
    request_body(content = Object, description = "`{title, body, repo?, stage?, tags?, source?}`"),
    responses((status = 200, description = "The lesson, or `{enabled: false}`", body = Object),
              (status = 400, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[allow(dead_code)]
fn lessons_add() {}

/// Edits a lesson (`act` scope): fields left out stay; `repo`/`stage` set to null widen it.
#[utoipa::path(post, path = "/api/lessons/{id}", tag = "lessons",
    params(("id" = i64, Path, description = "the lesson's id")),
    request_body(content = Object, description = "`{title?, body?, repo?, stage?, tags?}`"),
    responses((status = 200, description = "The lesson now, or `{enabled: false}`", body = Object),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[allow(dead_code)]
fn lessons_edit() {}

/// Accepts (`active`: it reaches prompts from now on) or rejects a lesson a retro proposed. A
/// person's `act` token only: an agent's principal is 403; a lesson not `proposed` is 409.
#[utoipa::path(post, path = "/api/lessons/{id}/{decision}", tag = "lessons",
    params(("id" = i64, Path, description = "the lesson's id"),
           ("decision" = String, Path, description = "`accept` or `reject`")),
    responses((status = 200, description = "The lesson now", body = Object),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[allow(dead_code)]
fn lesson_decide() {}

/// The next tasks retros proposed (SPEC §3), oldest first.
#[utoipa::path(get, path = "/api/proposals", tag = "proposals",
    params(("status" = Option<String>, Query, description = "`proposed`, `accepted` or `rejected`")),
    responses((status = 200, description = "`{proposals: [{id, from_task, repo, title, body, status, created_at_ms, decided_at_ms, decided_by, created_task}]}`", body = Object),
              (status = 422, body = ErrorBody)))]
#[allow(dead_code)]
fn proposals_list() {}

/// Accepts a task proposal (its task is created in the proposal's repository, once:
/// `{proposal, task}`) or rejects it (`{proposal, task: null}`). A person's `act` token only: an
/// agent's principal is 403; a proposal decided already is 409, never a second task.
#[utoipa::path(post, path = "/api/proposals/{id}/{decision}", tag = "proposals",
    params(("id" = i64, Path, description = "the proposal's id"),
           ("decision" = String, Path, description = "`accept` or `reject`")),
    responses((status = 200, description = "`{proposal, task}`", body = Object),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[allow(dead_code)]
fn proposal_decide() {}

/// Timeline events as server-sent events, resumable with `Last-Event-ID`.
#[utoipa::path(get, path = "/api/events", tag = "events",
    params(("after" = Option<i64>, Query, description = "Replay events after this id (Last-Event-ID wins)"),
           ("task" = Option<String>, Query, description = "Only this task's events")),
    responses((status = 200, description = "`text/event-stream`: one `event` per timeline event, id = event id", content_type = "text/event-stream", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[allow(dead_code)]
fn events() {}

/// A signed webhook delivery, stored once and acknowledged before any processing.
#[utoipa::path(post, path = "/webhooks/{source}", tag = "webhooks",
    params(("source" = String, Path, description = "github | gitea | plane (HMAC-SHA256 signed, answered 202) | telegram (X-Telegram-Bot-Api-Secret-Token, answered 200)")),
    request_body(content = Object, description = "The sender's JSON payload"),
    responses((status = 202, description = "`{accepted: true, duplicate}`", body = Object),
              (status = 200, description = "Telegram: the update is stored", body = Object),
              (status = 401, body = ErrorBody), (status = 404, description = "The source's secret is not configured", body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
#[allow(dead_code)]
fn webhook() {}

/// Whether `(method, path)` of the router is a path of the document: `{param}` segments match
/// any one segment of the document's path (the document names some routes by a template, such
/// as `/api/tasks/{id}/{action}`).
pub fn documents(doc: &utoipa::openapi::OpenApi, method: &str, path: &str) -> bool {
    doc.paths.paths.iter().any(|(template, item)| {
        let operation = match method {
            "GET" => item.get.is_some(),
            "POST" => item.post.is_some(),
            "PUT" => item.put.is_some(),
            "DELETE" => item.delete.is_some(),
            "PATCH" => item.patch.is_some(),
            _ => false,
        };
        let (a, b): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
        operation
            && a.len() == b.len()
            && a.iter().zip(&b).all(|(t, p)| t == p || (t.starts_with('{') && (p.starts_with('{') || !p.is_empty())))
    })
}
