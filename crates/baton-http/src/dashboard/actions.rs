//! Login, logout and the task actions of the dashboard. An action needs the dashboard `on`, a
//! live session whose token has the `act` scope, and that session's CSRF token (the `csrf` form
//! field or the `X-CSRF-Token` header), compared in constant time. Each action goes through
//! `Engine::submit`, recorded under the session's principal, so `decide` judges it like any other.

use super::session::{COOKIE, SESSION_TTL_MS, Session, csrf_matches};
use super::{CONFIG_KEY, DashboardMode, render, session_of};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiPath;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_engine::{Input, Scope};
use baton_store::TaskKey;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The header a script sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Serialize)]
struct LoginPage {
    common: LoginCommon,
    next: String,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct LoginCommon {
    title: &'static str,
    nav: &'static str,
    user: Option<String>,
    mode: &'static str,
    cursor: i64,
}

fn login_form(state: &AppState, next: &str, error: Option<String>, user: Option<String>) -> Response {
    let common = LoginCommon { title: "Log in", nav: "login", user, mode: state.dashboard.mode.as_str(), cursor: 0 };
    render::page("login.html", LoginPage { common, next: next.to_string(), error })
}

/// Only a path on this server is a redirect target after login.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => path.to_string(),
        _ => "/".into(),
    }
}

pub(crate) async fn login_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let user = session_of(&state, &headers).map(|s| s.principal.name);
    login_form(&state, &local_path(query.next.as_deref()), None, user)
}

pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let next = local_path(form.next.as_deref());
    let token = form.token.trim();
    if token.is_empty() {
        let mut response = login_form(&state, &next, Some("Paste an API token (scope read or act).".into()), None);
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    let Some(principal) = state.engine.authenticate(token, state.api_token.as_deref()).await? else {
        let message =
            "That token is not valid (unknown or revoked). Create one with `baton token create NAME --scope act`.";
        let mut response = login_form(&state, &next, Some(message.into()), None);
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(response);
    };
    let now = state.engine.clock().now_ms();
    let (id, _) = state.dashboard.sessions.create(principal, now).map_err(|why| {
        tracing::error!("cannot start a dashboard session: {why}");
        ApiError::Internal
    })?;
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_TTL_MS / 1000);
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    pub csrf: Option<String>,
    /// The answer's text (`answer` only).
    #[serde(default)]
    pub text: Option<String>,
}

pub(crate) async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Response, ApiError> {
    let session = checked_session(&state, &headers, &form, None)?;
    let cookies = headers.get_all(header::COOKIE);
    for id in cookies.iter().filter_map(|v| v.to_str().ok()).filter_map(|v| super::session::cookie(v, COOKIE)) {
        if state.dashboard.sessions.get(id, state.engine.clock().now_ms()).is_some_and(|s| s.csrf == session.csrf) {
            state.dashboard.sessions.remove(id);
        }
    }
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("baton_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

/// The session of an action request, after every check: a session exists, its CSRF token came
/// back, and (for task actions, `needed` set) the mode and scope allow acting.
fn checked_session(
    state: &AppState,
    headers: &HeaderMap,
    form: &ActionForm,
    needed: Option<Scope>,
) -> Result<Session, ApiError> {
    if needed.is_some() && state.dashboard.mode == DashboardMode::ReadOnly {
        return Err(ApiError::Forbidden(format!(
            "the dashboard is read-only ({CONFIG_KEY} = \"read_only\"); act through the API or the CLI, \
             or set it to \"on\""
        )));
    }
    let session = session_of(state, headers).ok_or_else(|| {
        ApiError::Unauthorized("log in at /login with an API token first; dashboard actions need a session".into())
    })?;
    let presented = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| form.csrf.clone())
        .unwrap_or_default();
    if !csrf_matches(&session, &presented) {
        return Err(ApiError::Forbidden(
            "the form's CSRF token is missing or wrong; reload the page and try again".into(),
        ));
    }
    if let Some(needed) = needed
        && !session.principal.allows(needed)
    {
        return Err(ApiError::Forbidden(format!(
            "you are logged in as `{}` with the `{}` scope; this action needs `{needed}` (log in with an act token)",
            session.principal.name, session.principal.scope
        )));
    }
    Ok(session)
}

async fn act(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    form: ActionForm,
    input: impl FnOnce(&ActionForm) -> Result<Input, ApiError>,
) -> Result<Response, ApiError> {
    let session = checked_session(state, headers, &form, Some(Scope::Act))?;
    let input = input(&form)?;
    let outcome = state.engine.submit(&TaskKey::parse(id), input, &session.principal.name, None).await?;
    // A script (fetch with the header) gets the outcome; a plain form goes back to the task.
    if headers.contains_key(CSRF_HEADER) {
        return Ok(axum::Json(outcome).into_response());
    }
    let target = format!("/tasks/{}", super::encode_component(id));
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response())
}

pub(crate) async fn approve(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ApiError> {
    act(&state, &headers, &id, form, |_| Ok(Input::Approve)).await
}

pub(crate) async fn answer(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ApiError> {
    act(&state, &headers, &id, form, |form| {
        let text = form.text.as_deref().map(str::trim).unwrap_or_default();
        if text.is_empty() {
            return Err(ApiError::Invalid("the answer is empty; write the answer to the agent's questions".into()));
        }
        Ok(Input::Answer { text: text.to_string() })
    })
    .await
}

pub(crate) async fn confirm_deploy(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ApiError> {
    act(&state, &headers, &id, form, |_| Ok(Input::ConfirmDeploy)).await
}

pub(crate) async fn stop(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ApiError> {
    act(&state, &headers, &id, form, |_| Ok(Input::Stop)).await
}

pub(crate) async fn retry(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ApiError> {
    act(&state, &headers, &id, form, |_| Ok(Input::Retry)).await
}

pub(crate) async fn resume(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ApiError> {
    act(&state, &headers, &id, form, |_| Ok(Input::Resume)).await
}
