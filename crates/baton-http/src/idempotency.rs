//! Exact idempotency for every mutation (SPEC §4.5): an `Idempotency-Key` is scoped by principal
//! and route, stored with a digest of the request (method, path, body), and answered once. A replay
//! of the same request gets the first answer again (`Idempotent-Replayed: true`); the same key
//! with a different request gets 422 naming the key; a replay while the first is still running
//! waits for its answer. A create is recorded under its key in the task's own transaction, so even
//! a crash between creating and answering never makes a second task.

use crate::error::ApiError;
use crate::{AppState, JSON_BODY_BYTES_MAX};
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use baton_engine::Principal;
use baton_store::{IdempotencyBegin, TaskKey};
use std::sync::Arc;
use std::time::Duration;

/// Longest `Idempotency-Key` header accepted.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 200;
/// An attempt unanswered for this long is taken to have died with its server and is resumed.
const STALE_MS: i64 = 30_000;
/// How long a replay waits for the first request with its key to be answered.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(15);
const WAIT_STEP: Duration = Duration::from_millis(25);
/// Header marking a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The scoped key of the request being performed, for handlers that record it with their change.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

/// Middleware for the mutating routes (after authentication).
pub(crate) async fn idempotent(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match run(&state, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn run(state: &AppState, request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(key) = header_key(request.headers())? else {
        return Ok(next.run(request).await);
    };
    let principal = request.extensions().get::<Principal>().map_or_else(|| "anonymous".to_string(), |p| p.name.clone());
    let route = route_of(request.uri().path());
    let (parts, body) = request.into_parts();
    let bytes =
        to_bytes(body, JSON_BODY_BYTES_MAX).await.map_err(|_| ApiError::PayloadTooLarge(JSON_BODY_BYTES_MAX))?;
    let digest = request_digest(parts.method.as_str(), parts.uri.path(), &bytes);
    let scoped = format!("{principal}|{} {route}|{key}", parts.method);
    let store = state.engine.store();
    let clock = state.engine.clock();
    let mut waited = Duration::ZERO;
    let resumed_task = loop {
        match store.begin_idempotent(&scoped, &digest, clock.now_ms(), STALE_MS).await? {
            IdempotencyBegin::Started => break None,
            IdempotencyBegin::Resumed { task } => break task,
            IdempotencyBegin::Replay { status, body } => return Ok(replay(status, body)),
            IdempotencyBegin::Mismatch => {
                return Err(ApiError::Invalid(format!(
                    "the Idempotency-Key `{key}` was already used by {principal} on this route with a different \
                     request; use a new key for a new request"
                )));
            }
            IdempotencyBegin::InProgress if waited < WAIT_FOR_FIRST => {
                clock.sleep(WAIT_STEP).await;
                waited += WAIT_STEP;
            }
            IdempotencyBegin::InProgress => {
                return Err(ApiError::Conflict(format!(
                    "a request with the Idempotency-Key `{key}` is still being performed; retry it later"
                )));
            }
        }
    };
    // A create that committed before its server died: answer with that task, create nothing.
    if let Some(task) = resumed_task
        && let Some(record) = store.task(&TaskKey::Id(task)).await?
    {
        let body = serde_json::to_string(&record).map_err(|_| ApiError::Internal)?;
        store.finish_idempotent(&scoped, StatusCode::CREATED.as_u16(), &body, clock.now_ms()).await?;
        return Ok(replay(StatusCode::CREATED.as_u16(), body));
    }
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(IdempotencyKey(scoped.clone()));
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.map_err(|_| ApiError::Internal)?;
    if parts.status.is_server_error() {
        // Worth retrying with the same key: forget the attempt (a committed create keeps it).
        store.abandon_idempotent(&scoped).await?;
    } else {
        let text = String::from_utf8_lossy(&bytes);
        store.finish_idempotent(&scoped, parts.status.as_u16(), &text, clock.now_ms()).await?;
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// The route a path matched, with the task id generalised: `/tasks/A/approve` → `/tasks/{id}/approve`.
fn route_of(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["", "tasks", _, action] => format!("/tasks/{{id}}/{action}"),
        _ => path.to_string(),
    }
}

/// A stored answer, sent again.
fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// The digest that says whether two requests are the same: method, path and body bytes.
fn request_digest(method: &str, path: &str, body: &[u8]) -> String {
    baton_engine::access::digest_hex(&[method.as_bytes(), path.as_bytes(), body])
}

/// The `Idempotency-Key` header: 1 to 200 bytes of visible ASCII.
pub(crate) fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::BadRequest(format!(
            "the Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes of visible ASCII"
        ))
    };
    let key = value.to_str().map_err(|_| invalid())?.trim();
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(Some(key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The digest changes with the method, the path and the body, and not otherwise.
    #[test]
    fn digest_covers_method_path_and_body() {
        let a = request_digest("POST", "/api/tasks/A/approve", b"");
        assert_eq!(a, request_digest("POST", "/api/tasks/A/approve", b""));
        assert_ne!(a, request_digest("POST", "/api/tasks/B/approve", b""));
        assert_ne!(a, request_digest("PUT", "/api/tasks/A/approve", b""));
        assert_ne!(a, request_digest("POST", "/api/tasks/A/approve", b"{}"));
    }

    // Every task's action shares one route, so a key reused on another task is a mismatch.
    #[test]
    fn route_generalises_the_task() {
        assert_eq!(route_of("/tasks/A-1/approve"), "/tasks/{id}/approve");
        assert_eq!(route_of("/tasks"), "/tasks");
    }

    // Keys are visible ASCII of bounded length.
    #[test]
    fn header_key_is_bounded_visible_ascii() {
        let mut headers = HeaderMap::new();
        assert_eq!(header_key(&headers).unwrap(), None);
        headers.insert("idempotency-key", HeaderValue::from_static("k-1"));
        assert_eq!(header_key(&headers).unwrap().as_deref(), Some("k-1"));
        headers.insert("idempotency-key", HeaderValue::from_static("has space"));
        assert!(header_key(&headers).is_err());
        headers.insert("idempotency-key", HeaderValue::from_str(&"k".repeat(201)).unwrap());
        assert!(header_key(&headers).is_err());
    }
}
