//! Baton's HTTP API (SPEC §14): JSON under `/api`, a health probe, bearer-token mutations.
//!
//! Code map:
//! - [`app`] builds the router from an [`AppState`]; tests drive it with `oneshot`, no socket.
//! - [`serve`] / [`server::serve_with`] run it on a bound listener until a shutdown future
//!   resolves (`baton serve`): connection limit, header and idle timeouts ([`server`]), behind the
//!   `Host`/`Origin` allowlist ([`guard`]).
//! - [`health`]: `/health`, the store's checks (200, or 503 naming the failed check).
//! - [`api`]: one file per group of routes (tasks, status, usage).
//! - Observability: `/api/queue` and `/api/metrics` ([`api`]), `/metrics` in the Prometheus
//!   text format ([`prometheus`]), each with a kill switch ([`Observability`]); `procfs`: CPU
//!   ticks of agent process groups; [`openapi`]: the OpenAPI document at `/api/openapi.json`.
//!   [`ROUTES`] lists every route.
//! - [`dashboard`]: the server-rendered web dashboard (board, task, usage, system pages), its
//!   login sessions and CSRF-checked actions; `/api/events` (SSE) keeps its pages live.
//! - [`webhooks`]: `POST /webhooks/{github,gitea,plane}`, signed deliveries stored in the inbox
//!   and acknowledged with 202 before any processing.
//! - [`auth`]: the principal behind a bearer token and the scope each route needs.
//! - [`idempotency`]: exact `Idempotency-Key` handling on every mutation.
//! - `redact`: every response masked with the engine's redactor.
//! - [`extract`]: `Json`/`Query`/`Path` wrappers whose rejections are [`ApiError`]s.
//! - [`error`]: [`ApiError`], the one error type, rendered as `{code, message}` JSON.
//!
//! Invariant: this crate reads through `Store` and changes tasks only through the `Engine`; it
//! never writes SQL and never calls adapters.

pub mod api;
mod auth;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod guard;
mod health;
pub mod idempotency;
pub mod openapi;
mod procfs;
pub mod prometheus;
mod redact;
pub mod server;
pub mod webhooks;

pub use dashboard::{Dashboard, DashboardMode};
pub use error::ApiError;
pub use webhooks::WebhookSecrets;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use baton_engine::Engine;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest request body accepted on any route.
pub const JSON_BODY_BYTES_MAX: usize = 256 * 1024;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// The token set in `server.api_token` (principal `api:config`, scope admin), besides the
    /// named tokens in the database.
    pub api_token: Option<String>,
    /// Reads need a token with the `read` scope too (`server.read_requires_token`).
    pub read_requires_token: bool,
    /// When this server started, in the engine clock's milliseconds; `/api/status` reports uptime.
    pub started_at_ms: i64,
    /// The secret of each webhook source (`[webhooks]`); an unset one turns its route off.
    pub webhooks: WebhookSecrets,
    /// The kill switches of the observability routes.
    pub observability: Observability,
    /// The web dashboard's mode (`server.dashboard`) and its login sessions.
    pub dashboard: Dashboard,
}

/// Which observability routes answer (`[server] metrics`, `queue_api`); an off one is a 404
/// naming its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observability {
    /// `/metrics` and `/api/metrics`.
    pub metrics: bool,
    /// `/api/queue`.
    pub queue_api: bool,
    /// `/api/events` (the dashboard then redraws only on reload).
    pub events: bool,
}

impl Default for Observability {
    fn default() -> Self {
        Observability { metrics: true, queue_api: true, events: true }
    }
}

/// Every route the router serves, as (method, path) with `{param}` segments. The OpenAPI
/// document covers each (a test checks it, and that each answers on a real server); a new route
/// goes here too.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/api/status"),
    ("GET", "/api/tasks"),
    ("POST", "/api/tasks"),
    ("GET", "/api/tasks/{id}"),
    ("POST", "/api/tasks/{id}/dependencies"),
    ("DELETE", "/api/tasks/{id}/dependencies"),
    ("GET", "/api/tasks/{id}/handoff"),
    ("GET", "/tasks/{id}/handoff"),
    ("POST", "/api/tasks/{id}/approve"),
    ("POST", "/api/tasks/{id}/answer"),
    ("POST", "/api/tasks/{id}/confirm-deploy"),
    ("POST", "/api/tasks/{id}/priority"),
    ("POST", "/api/tasks/{id}/stop"),
    ("POST", "/api/tasks/{id}/retry"),
    ("POST", "/api/tasks/{id}/resume"),
    ("POST", "/api/repos/{repo}/unfreeze"),
    ("GET", "/api/usage"),
    ("POST", "/api/usage/ingest"),
    ("GET", "/api/budgets"),
    ("GET", "/api/coverage"),
    ("POST", "/api/coverage/baseline"),
    ("GET", "/api/lessons"),
    ("POST", "/api/lessons"),
    ("POST", "/api/lessons/{id}"),
    ("POST", "/api/lessons/{id}/accept"),
    ("POST", "/api/lessons/{id}/reject"),
    ("GET", "/api/proposals"),
    ("POST", "/api/proposals/{id}/accept"),
    ("POST", "/api/proposals/{id}/reject"),
    ("GET", "/api/queue"),
    ("GET", "/api/metrics"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/events"),
    ("POST", "/webhooks/github"),
    ("POST", "/webhooks/gitea"),
    ("POST", "/webhooks/plane"),
    ("POST", "/webhooks/telegram"),
];

/// The whole HTTP surface: `/health`, `/api/...`, and JSON 404/405 for everything else.
pub fn app(state: AppState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/health", get(health::health))
        .merge(api::observability_root(state.clone()))
        .nest("/api", api::router(state.clone()))
        .merge(webhooks::router(state.clone()))
        .merge(api::handoff_page())
        .merge(dashboard::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(JSON_BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(state.clone(), redact::redact_responses))
        .with_state(state)
}

/// Serves [`app`] behind the host guard on `listener`, with the default [`server::ServerSettings`],
/// until `shutdown` resolves, then lets in-flight requests finish. The caller binds the listener,
/// so a taken port is reported before anything else starts.
pub async fn serve<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    server::serve_with(listener, state, server::ServerSettings::default(), shutdown).await
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; the API lives under /api".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
