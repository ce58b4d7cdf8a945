//! A retro's proposals (SPEC §3, §10): `GET /api/proposals` lists the next tasks retros proposed;
//! `POST /api/proposals/{id}/accept` creates the task (once), `…/reject` closes the proposal;
//! `POST /api/lessons/{id}/accept|reject` decides a proposed lesson. Deciding needs the `act`
//! scope and a person: an agent's principal is refused with 403.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use baton_engine::Principal;
use baton_store::{PROPOSAL_STATUSES, ProposalFilter};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `proposed`, `accepted` or `rejected`.
    pub status: Option<String>,
}

/// Refuses an agent (or a token that may not act) before anything is read or written.
fn human(principal: &Principal) -> Result<(), ApiError> {
    baton_engine::retro::proposals::check_human(principal).map_err(|e| ApiError::Forbidden(e.to_string()))
}

/// `GET /api/proposals`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(status) = query.status.as_deref().filter(|s| !PROPOSAL_STATUSES.contains(s)) {
        return Err(ApiError::Invalid(format!("status `{status}` is not one of {}", PROPOSAL_STATUSES.join(", "))));
    }
    let filter = ProposalFilter { status: query.status, from_task: None };
    Ok(Json(json!({ "proposals": state.engine.task_proposals(&filter).await? })))
}

/// `POST /api/proposals/{id}/accept`.
pub(crate) async fn accept(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    human(&principal)?;
    let (proposal, task) = state.engine.accept_proposal(id, &principal).await?;
    Ok(Json(json!({ "proposal": proposal, "task": task })))
}

/// `POST /api/proposals/{id}/reject`.
pub(crate) async fn reject(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    human(&principal)?;
    Ok(Json(json!({ "proposal": state.engine.reject_proposal(id, &principal).await? })))
}

/// `POST /api/lessons/{id}/accept`.
pub(crate) async fn accept_lesson(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    human(&principal)?;
    Ok(Json(json!(state.engine.accept_lesson(id, &principal).await?)))
}

/// `POST /api/lessons/{id}/reject`.
pub(crate) async fn reject_lesson(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    human(&principal)?;
    Ok(Json(json!(state.engine.reject_lesson(id, &principal).await?)))
}
