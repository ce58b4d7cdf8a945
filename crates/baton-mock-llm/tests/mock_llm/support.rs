//! Helpers for protocol tests: one request through `app` with `oneshot`, and SSE parsing.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use baton_mock_llm::{MockState, Script, app};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A reply as the test sees it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text))
    }

    /// `(event name, data)` for each SSE record.
    pub fn events(&self) -> Vec<(Option<String>, Value)> {
        assert_eq!(self.headers["content-type"], "text/event-stream", "not an event stream: {}", self.text);
        self.text
            .split("\n\n")
            .filter(|record| !record.trim().is_empty())
            .map(|record| {
                let mut name = None;
                let mut data = Value::Null;
                for line in record.lines() {
                    if let Some(rest) = line.strip_prefix("event: ") {
                        name = Some(rest.to_string());
                    } else if let Some(rest) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(rest).expect("SSE data is JSON");
                    }
                }
                (name, data)
            })
            .collect()
    }
}

pub fn state(script: &str) -> MockState {
    MockState::new(Script::from_toml(script).expect("test script is valid"))
}

pub async fn send(state: &MockState, method: Method, path: &str, body: Option<&Value>) -> Reply {
    let body = body.map(|body| Body::from(body.to_string())).unwrap_or_else(Body::empty);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body)
        .expect("request builds");
    let response = app(state.clone()).oneshot(request).await.expect("router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    Reply { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
}

pub async fn post(state: &MockState, path: &str, body: &Value) -> Reply {
    send(state, Method::POST, path, Some(body)).await
}
