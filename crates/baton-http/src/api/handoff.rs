//! A task's hand-off (SPEC §11): `GET /api/tasks/{id}/handoff` (JSON with the Markdown and the
//! HTML) and `GET /tasks/{id}/handoff` (the self-contained HTML page; `?format=md` the Markdown),
//! both read routes: open unless reads need a token (a bearer token, or a dashboard session for
//! the page). The document is the one written when the task reached done or blocked, else one
//! built now (`baton_engine::handoff::read`); the response masking applies as on every route.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use baton_engine::Scope;
use baton_engine::handoff::Handoff;
use baton_store::{TaskKey, TaskRecord};
use serde::Deserialize;
use std::sync::Arc;

/// The page allows nothing but its own inline style: no script, no request anywhere.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// `GET /tasks/{id}/handoff` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// `html` (default) or `md`.
    pub format: Option<String>,
}

async fn task_of(state: &AppState, id: &str) -> Result<TaskRecord, ApiError> {
    state
        .engine
        .store()
        .task(&TaskKey::parse(id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} does not exist")))
}

async fn handoff_of(state: &AppState, task: &TaskRecord) -> Result<Handoff, ApiError> {
    baton_engine::handoff::read(&state.engine, task).await.map_err(|error| {
        tracing::warn!(task = %task.work_item_id, "building the hand-off failed: {error}");
        ApiError::from(error)
    })
}

/// `GET /api/tasks/{id}/handoff`.
pub(crate) async fn json(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Handoff>, ApiError> {
    let task = task_of(&state, &id).await?;
    Ok(Json(handoff_of(&state, &task).await?))
}

/// `GET /tasks/{id}/handoff`.
pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    if state.read_requires_token {
        crate::dashboard::reader(&state, &headers, Scope::Read).await?;
    }
    let markdown = match query.format.as_deref() {
        None | Some("html") => false,
        Some("md") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!("`format` is `{other}`; use `html` (the default) or `md`")));
        }
    };
    let task = task_of(&state, &id).await?;
    let handoff = handoff_of(&state, &task).await?;
    let (body, content_type) = if markdown {
        (handoff.markdown, "text/markdown; charset=utf-8")
    } else {
        (handoff.html, "text/html; charset=utf-8")
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}
