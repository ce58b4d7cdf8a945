//! Reply bodies on the wire: server-sent events (each reply sent as one complete body)
//! and error responses with their status and `retry-after` header.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::exchange::Failure;

/// Accumulates `event:` / `data:` records.
#[derive(Debug, Default)]
pub(crate) struct SseBody {
    text: String,
}

impl SseBody {
    /// Adds a record with an `event:` line (Anthropic, OpenAI).
    pub(crate) fn event(&mut self, name: &str, data: &Value) {
        self.text.push_str("event: ");
        self.text.push_str(name);
        self.text.push('\n');
        self.data(data);
    }

    /// Adds a record with only a `data:` line (Gemini).
    pub(crate) fn data(&mut self, data: &Value) {
        self.text.push_str("data: ");
        self.text.push_str(&data.to_string());
        self.text.push_str("\n\n");
    }

    /// The finished `text/event-stream` response.
    pub(crate) fn into_response(self) -> Response {
        let mut response = self.text.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

/// An error response: the failure's verbatim `body` if set, else `json`, with the
/// failure's status and `retry-after`.
pub(crate) fn failure_response(failure: &Failure, json: Value) -> Response {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = failure.body.clone().unwrap_or_else(|| json.to_string());
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(seconds) = failure.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A JSON response with status 200.
pub(crate) fn json_response(json: &Value) -> Response {
    let mut response = json.to_string().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
