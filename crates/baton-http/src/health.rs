//! `/health`: the store's health checks (database file still the one opened, schema version,
//! the tasks table answers), 200 when all pass and 503 naming each failed one otherwise. The
//! body has one shape either way: `{status: "ok"|"unhealthy", checks: [{name, ok, detail}]}`.

use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Response {
    let checks = state.engine.check_store().await;
    let healthy = checks.iter().all(|c| c.ok);
    let (status, word) = if healthy { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "unhealthy") };
    if !healthy {
        let failed: Vec<String> =
            checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect();
        tracing::warn!("/health: unhealthy: {}", failed.join("; "));
    }
    (status, Json(serde_json::json!({ "status": word, "checks": checks }))).into_response()
}
