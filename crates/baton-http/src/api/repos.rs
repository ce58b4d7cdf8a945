//! `POST /api/repos/{repo}/unfreeze`: a person unfreezes a repository frozen by a DEGRADED deploy
//! or a deploy whose outcome is unknown (SPEC §6.4); the principal is recorded with the freeze and
//! on the timeline of the task that froze it.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Extension, Path, State};
use baton_engine::Principal;
use baton_store::RepoFreeze;
use std::sync::Arc;

/// `POST /api/repos/{repo}/unfreeze`.
pub(crate) async fn unfreeze(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(repo): Path<String>,
) -> Result<Json<RepoFreeze>, ApiError> {
    Ok(Json(baton_engine::monitor::unfreeze(&state.engine, &repo, &principal.name).await?))
}
