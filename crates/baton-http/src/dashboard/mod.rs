//! The web dashboard (SPEC §14): server-rendered pages — the board of tasks by stage with their
//! holds, a task's detail (timeline, agent runs, gate verdicts, artifacts, live log tail, action
//! buttons), usage with unit economics, and the queue and health summary — kept live by
//! `/api/events` (SSE) and a little vanilla JavaScript. Everything is embedded in the binary.
//!
//! - `server.dashboard` ([`DashboardMode`]): `off` (no pages), `read_only` (pages, never an
//!   action), `on` (actions for a logged-in session with the `act` scope).
//! - [`session`]: `/login` takes an API token and starts a server-side session (an `HttpOnly`,
//!   `SameSite=Strict` cookie); every action POST needs that session *and* its CSRF token.
//! - [`render`]: the templates (minijinja, auto-escaped) and Markdown artifacts (raw HTML in them
//!   is shown as text, never run: agents write them).
//! - [`pages`]: the page handlers; [`actions`]: login, logout and the task actions.

pub mod actions;
pub mod pages;
pub mod render;
pub mod session;

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use baton_engine::{Principal, Scope};
use session::{COOKIE, Session, Sessions};
use std::fmt;
use std::sync::Arc;

/// The configuration key of the dashboard's mode, named in refusals.
pub const CONFIG_KEY: &str = "server.dashboard";

/// `server.dashboard`: whether the dashboard is served, and whether it may act.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DashboardMode {
    /// No dashboard pages (the API is unaffected).
    Off,
    /// Pages without action buttons; action POSTs are refused.
    ReadOnly,
    /// Pages, and actions for a logged-in session whose token has the `act` scope.
    #[default]
    On,
}

impl DashboardMode {
    /// Parses `off`, `read_only` or `on`; the error names the accepted values.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "off" => Ok(DashboardMode::Off),
            "read_only" => Ok(DashboardMode::ReadOnly),
            "on" => Ok(DashboardMode::On),
            other => Err(format!("`{other}` is not a dashboard mode; use \"off\", \"read_only\" or \"on\"")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DashboardMode::Off => "off",
            DashboardMode::ReadOnly => "read_only",
            DashboardMode::On => "on",
        }
    }
}

impl fmt::Display for DashboardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The dashboard's share of [`AppState`]: its mode, its login sessions, and the newest-event
/// probe its live streams share.
#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    pub mode: DashboardMode,
    pub sessions: Arc<Sessions>,
    pub latest: Arc<crate::api::events::LatestEvent>,
}

impl Dashboard {
    pub fn new(mode: DashboardMode) -> Self {
        Dashboard { mode, ..Dashboard::default() }
    }
}

/// The dashboard's routes (none but a 404 naming the key when it is off).
pub(crate) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    if state.dashboard.mode == DashboardMode::Off {
        return Router::new().route("/", get(off));
    }
    Router::new()
        .route("/", get(pages::board))
        .route("/tasks/{id}", get(pages::task))
        .route("/tasks/{id}/log", get(pages::log_tail))
        .route("/tasks/{id}/approve", post(actions::approve))
        .route("/tasks/{id}/answer", post(actions::answer))
        .route("/tasks/{id}/confirm-deploy", post(actions::confirm_deploy))
        .route("/tasks/{id}/stop", post(actions::stop))
        .route("/tasks/{id}/retry", post(actions::retry))
        .route("/tasks/{id}/resume", post(actions::resume))
        .route("/usage", get(pages::usage))
        .route("/system", get(pages::system))
        .route("/login", get(actions::login_page).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/assets/dashboard.css", get(render::css))
        .route("/assets/dashboard.js", get(render::js))
}

async fn off() -> ApiError {
    ApiError::NotFound(format!(
        "the dashboard is off ({CONFIG_KEY} = \"off\"); set it to \"read_only\" or \"on\" to serve it"
    ))
}

/// Who is looking at a page: the session (if logged in) and what the page may offer.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub session: Option<Session>,
    /// Action buttons are shown (and accepted): mode `on` and a session with the `act` scope.
    pub can_act: bool,
}

impl Viewer {
    pub fn name(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.principal.name.as_str())
    }
}

/// The session behind the request's cookie, if any.
pub(crate) fn session_of(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let cookies = headers.get_all(header::COOKIE);
    let now = state.engine.clock().now_ms();
    cookies
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| session::cookie(value, COOKIE))
        .find_map(|id| state.dashboard.sessions.get(id, now))
}

/// Where a page sends a visitor who must log in first.
#[derive(Debug)]
pub(crate) struct LoginFirst(String);

impl IntoResponse for LoginFirst {
    fn into_response(self) -> Response {
        (axum::http::StatusCode::SEE_OTHER, [(header::LOCATION, self.0)]).into_response()
    }
}

/// The viewer of a page; when reads need a token and there is no session, a redirect to login.
pub(crate) fn viewer(state: &AppState, headers: &HeaderMap, path: &str) -> Result<Viewer, LoginFirst> {
    let session = session_of(state, headers);
    if session.is_none() && state.read_requires_token {
        return Err(LoginFirst(format!("/login?next={}", encode_component(path))));
    }
    let can_act =
        state.dashboard.mode == DashboardMode::On && session.as_ref().is_some_and(|s| s.principal.allows(Scope::Act));
    Ok(Viewer { session, can_act })
}

/// A reader of the API from a browser or a client: the dashboard session, or a bearer token,
/// with at least `needed`. Used by `/api/events` when reads need a token.
pub(crate) async fn reader(state: &AppState, headers: &HeaderMap, needed: Scope) -> Result<Principal, ApiError> {
    if let Some(session) = session_of(state, headers).filter(|s| s.principal.allows(needed)) {
        return Ok(session.principal);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(format!(
                "this stream needs a token with the `{needed}` scope: send `Authorization: Bearer <token>` \
                 or log in to the dashboard at /login"
            ))
        })?;
    let principal = state
        .engine
        .authenticate(bearer, state.api_token.as_deref())
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the token is not valid (unknown or revoked)".into()))?;
    if !principal.allows(needed) {
        return Err(ApiError::Forbidden(format!(
            "the token `{}` has the `{}` scope; this request needs `{needed}`",
            principal.name, principal.scope
        )));
    }
    Ok(principal)
}

/// Percent-encodes a URL component (for the `next` parameter of the login redirect).
pub(crate) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
