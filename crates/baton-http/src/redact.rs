//! The API side of redaction: every response body passes through the engine's redactor before it
//! leaves, so no secret reaches a client even if one got past the store (SPEC §16).

use crate::AppState;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Middleware over the whole app: masks known secrets in text responses.
pub(crate) async fn redact_responses(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let redactor = state.engine.redactor();
    // A stream (server-sent events) is never buffered; its producer redacts each event itself.
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if redactor.is_empty() || streaming {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let masked = redactor.redact(text).into_owned();
    if masked.len() != bytes.len() {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    Response::from_parts(parts, Body::from(masked))
}
