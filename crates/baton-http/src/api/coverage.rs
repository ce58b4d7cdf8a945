//! `GET /api/coverage`: every repository's coverage baseline; `POST /api/coverage/baseline` (the
//! `admin` scope): a person sets a repository's baseline either way, recorded with the principal
//! and the reason (SPEC §5.1).

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Extension, State};
use baton_engine::Principal;
use baton_store::CoverageBaseline;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Serialize)]
pub struct CoverageReport {
    pub baselines: Vec<CoverageBaseline>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineBody {
    pub repo: String,
    pub pct: f64,
    pub reason: String,
}

/// `GET /api/coverage`.
pub(crate) async fn list(State(state): State<Arc<AppState>>) -> Result<Json<CoverageReport>, ApiError> {
    Ok(Json(CoverageReport { baselines: state.engine.coverage_baselines().await? }))
}

/// `POST /api/coverage/baseline`.
pub(crate) async fn set_baseline(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<BaselineBody>,
) -> Result<Json<CoverageBaseline>, ApiError> {
    let set = state.engine.set_coverage_baseline(&body.repo, body.pct, &body.reason, &principal.name).await?;
    Ok(Json(set))
}
