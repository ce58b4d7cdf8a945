//! The `/api` routes: every mutation needs a principal with the `act` scope and honours
//! `Idempotency-Key`; reads are open unless `server.read_requires_token`.
//!
//! - [`tasks`]: list, show, create, and the human actions (approve, answer, confirm-deploy, stop, retry).
//! - [`handoff`]: a task's hand-off, as JSON here and as a page at `/tasks/{id}/handoff`.
//! - [`status`]: counts by stage and hold, the job queue, held leases, uptime.
//! - [`events`]: `/api/events`, the timeline as server-sent events, resumable by `Last-Event-ID`.
//! - [`usage`]: usage grouped nine ways with unit economics, usage ingest (`ingest` scope), budgets.
//! - [`queue`]: open jobs, merge leases and who waits, reaper/reconciler passes, budgets, pending STOPs.
//! - [`metrics`]: the versioned metrics envelope (stages, queue, live agents, cost).
//! - [`coverage`]: the coverage baselines, and their override (`admin` scope).
//! - [`repos`]: the unfreeze of a repository frozen by a DEGRADED deploy or a deploy whose outcome is unknown.
//! - [`lessons`]: the lessons journal: list, add and edit.
//! - [`proposals`]: a retro's proposals: list next tasks, accept or reject them and proposed lessons.
//! - `/openapi.json`: the OpenAPI document ([`crate::openapi`]).

pub mod coverage;
pub mod events;
pub mod handoff;
pub mod lessons;
pub mod metrics;
pub mod proposals;
pub mod queue;
pub mod repos;
pub mod status;
pub mod tasks;
pub mod usage;

use crate::AppState;
use crate::auth::{require_act, require_admin, require_ingest, require_read};
use crate::idempotency::idempotent;
use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use std::sync::Arc;

/// `GET /tasks/{id}/handoff`: the hand-off page, served whatever `server.dashboard` says (its
/// handler checks the reader itself: a dashboard session or a bearer token).
pub(crate) fn handoff_page() -> Router<Arc<AppState>> {
    Router::new().route("/tasks/{id}/handoff", get(handoff::page))
}

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
        .route("/tasks/{id}/priority", post(tasks::priority))
        .route("/repos/{repo}/unfreeze", post(repos::unfreeze))
        .route("/tasks/{id}/dependencies", post(tasks::depend).delete(tasks::undepend))
        .route("/lessons", post(lessons::add))
        .route("/lessons/{id}", post(lessons::edit))
        .route("/lessons/{id}/accept", post(proposals::accept_lesson))
        .route("/lessons/{id}/reject", post(proposals::reject_lesson))
        .route("/proposals/{id}/accept", post(proposals::accept))
        .route("/proposals/{id}/reject", post(proposals::reject))
        .route_layer(from_fn_with_state(state.clone(), idempotent))
        .route_layer(from_fn_with_state(state.clone(), require_act));
    let reads = Router::new()
        .route("/status", get(status::status))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}/handoff", get(handoff::json))
        .route("/usage", get(usage::usage))
        .route("/budgets", get(usage::budgets))
        .route("/coverage", get(coverage::list))
        .route("/lessons", get(lessons::list))
        .route("/proposals", get(proposals::list))
        // Observability (kill switches in `crate::Observability`).
        .route("/queue", get(queue::queue))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route_layer(from_fn_with_state(state.clone(), require_read));
    // Usage ingest has its own scope, and its own idempotency (per source, in the record).
    let ingest = Router::new()
        .route("/usage/ingest", post(usage::ingest))
        .route_layer(from_fn_with_state(state.clone(), require_ingest));
    // Overriding a coverage baseline can let a change in that ratchets would keep out: admin only.
    let admin = Router::new()
        .route("/coverage/baseline", post(coverage::set_baseline))
        .route_layer(from_fn_with_state(state.clone(), idempotent))
        .route_layer(from_fn_with_state(state.clone(), require_admin));
    reads.merge(mutations).merge(ingest).merge(admin).merge(events::router(state))
}

/// `/metrics` (Prometheus), outside `/api` but behind the same read rule.
pub(crate) fn observability_root(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/metrics", get(crate::prometheus::metrics))
        .route_layer(from_fn_with_state(state, require_read))
}
