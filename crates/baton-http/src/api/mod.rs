//! The `/api` routes: every mutation needs a principal with the `act` scope and honours
//! `Idempotency-Key`; reads are open unless `server.read_requires_token`.
//!
//! - [`tasks`]: list, show, create, and the human actions (approve, answer, confirm-deploy, stop, retry).
//! - [`status`]: counts by stage and hold, the job queue, held leases, uptime.
//! - [`usage`]: token and cost totals grouped by task, stage, adapter, model, repo or day.

pub mod status;
pub mod tasks;
pub mod usage;

use crate::AppState;
use crate::auth::{require_act, require_read};
use crate::idempotency::idempotent;
use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use std::sync::Arc;

/// The routes under `/api`, to be nested by [`crate::app`].
pub(crate) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let mutations = Router::new()
        .route("/tasks", post(tasks::create))
        .route("/tasks/{id}/approve", post(tasks::approve))
        .route("/tasks/{id}/answer", post(tasks::answer))
        .route("/tasks/{id}/confirm-deploy", post(tasks::confirm_deploy))
        .route("/tasks/{id}/stop", post(tasks::stop))
        .route("/tasks/{id}/retry", post(tasks::retry))
        .route("/tasks/{id}/resume", post(tasks::resume))
        .route_layer(from_fn_with_state(state.clone(), idempotent))
        .route_layer(from_fn_with_state(state.clone(), require_act));
    let reads = Router::new()
        .route("/status", get(status::status))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/usage", get(usage::usage))
        .route_layer(from_fn_with_state(state, require_read));
    reads.merge(mutations)
}
