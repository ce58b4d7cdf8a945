//! Baton's HTTP API (SPEC §14): JSON under `/api`, a health probe, bearer-token mutations.
//!
//! Code map:
//! - [`app`] builds the router from an [`AppState`]; tests drive it with `oneshot`, no socket.
//! - [`serve`] / [`server::serve_with`] run it on a bound listener until a shutdown future
//!   resolves (`baton serve`): connection limit, header and idle timeouts ([`server`]), behind the
//!   `Host`/`Origin` allowlist ([`guard`]).
//! - [`health`]: `/health`, the store's checks (200, or 503 naming the failed check).
//! - [`api`]: one file per group of routes (tasks, status, usage).
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
pub mod error;
pub mod extract;
pub mod guard;
mod health;
pub mod idempotency;
mod redact;
pub mod server;
pub mod webhooks;

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
}

/// The whole HTTP surface: `/health`, `/api/...`, and JSON 404/405 for everything else.
pub fn app(state: AppState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/health", get(health::health))
        .nest("/api", api::router(state.clone()))
        .merge(webhooks::router(state.clone()))
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
