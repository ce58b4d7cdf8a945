//! In-process fakes of the GitHub, Gitea and Plane REST APIs (axum on 127.0.0.1:0) that check
//! every request against the documented shape, keep state, paginate, and inject faults.
// Test scaffolding: a poisoned lock or a bad fixture should panic the test.
#![allow(dead_code, clippy::unwrap_used, clippy::result_large_err)]

pub mod forge;
pub mod plane;
pub mod telegram;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A fault the next matching calls get instead of an answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `Retry-After: secs`.
    TooMany { retry_after: u64 },
    /// 403 with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset: epoch`.
    RateLimit403 { reset_epoch: u64 },
    /// 502 Bad Gateway.
    ServerError,
}

/// What every fake records: shape violations, calls per endpoint, pending faults.
#[derive(Debug, Default)]
pub struct Recorder {
    pub violations: Vec<String>,
    pub calls: BTreeMap<String, usize>,
    faults: VecDeque<(String, Fault)>,
}

pub type Shared<T> = Arc<Mutex<T>>;

/// One request as the fakes see it.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }
}

impl Recorder {
    /// Queues `fault` for the next `times` calls of `endpoint` (e.g. `GET /pulls`), or of any
    /// endpoint when `endpoint` is `*`.
    pub fn inject(&mut self, endpoint: &str, fault: Fault, times: usize) {
        for _ in 0..times {
            self.faults.push_back((endpoint.to_string(), fault.clone()));
        }
    }

    pub fn count(&self, endpoint: &str) -> usize {
        self.calls.get(endpoint).copied().unwrap_or(0)
    }

    /// Counts the call and answers with a queued fault if one matches.
    pub fn enter(&mut self, endpoint: &str) -> Option<Response> {
        *self.calls.entry(endpoint.to_string()).or_default() += 1;
        let pos = self.faults.iter().position(|(e, _)| e == endpoint || e == "*")?;
        let (_, fault) = self.faults.remove(pos)?;
        Some(match fault {
            Fault::TooMany { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after.to_string())],
                r#"{"message":"slow down"}"#,
            )
                .into_response(),
            Fault::RateLimit403 { reset_epoch } => (
                StatusCode::FORBIDDEN,
                [
                    ("x-ratelimit-limit", "5000".to_string()),
                    ("x-ratelimit-remaining", "0".to_string()),
                    ("x-ratelimit-reset", reset_epoch.to_string()),
                    ("content-type", "application/json".to_string()),
                ],
                include_str!("../fixtures/github_rate_limited_403.json"),
            )
                .into_response(),
            Fault::ServerError => (StatusCode::BAD_GATEWAY, "bad gateway").into_response(),
        })
    }

    /// Records a violation and answers `status` with it.
    pub fn violation(&mut self, status: StatusCode, text: String) -> Response {
        self.violations.push(text.clone());
        (status, axum::Json(serde_json::json!({"message": text}))).into_response()
    }

    /// The JSON body of a request that must carry one, with these fields present; else a
    /// recorded violation answered 422 (GitHub/Gitea "Validation Failed"; Plane answers 400).
    pub fn json_body(
        &mut self,
        req: &Req,
        endpoint: &str,
        required: &[&str],
        status: StatusCode,
    ) -> Result<Value, Response> {
        let ct = req.header("content-type").unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(self.violation(status, format!("{endpoint}: content-type `{ct}`, not application/json")));
        }
        let v: Value = match serde_json::from_slice(&req.body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Err(self.violation(status, format!("{endpoint}: body is not a JSON object"))),
        };
        for f in required {
            if v.get(*f).is_none_or(Value::is_null) {
                return Err(self.violation(status, format!("{endpoint}: missing field `{f}`")));
            }
        }
        Ok(v)
    }

    /// Common checks: a `baton/` user agent.
    pub fn check_user_agent(&mut self, req: &Req, endpoint: &str) {
        let ua = req.header("user-agent").unwrap_or("");
        if !ua.starts_with("baton/") {
            self.violations.push(format!("{endpoint}: user-agent `{ua}`"));
        }
    }
}

/// A fixture file parsed.
pub fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

/// Cuts `items` into the page `page` (1-based) of `per_page`, with a `Link` header to the next
/// page built from `base_url` + `path` + the other query parameters.
pub fn paginate(
    items: Vec<Value>,
    req: &Req,
    base_url: &str,
    per_page_key: &str,
    max_per_page: usize,
) -> (Vec<Value>, Option<String>) {
    let per_page = req.q(per_page_key).and_then(|p| p.parse::<usize>().ok()).unwrap_or(30).clamp(1, max_per_page);
    let page = req.q("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).max(1);
    let start = (page - 1) * per_page;
    let slice: Vec<Value> = items.iter().skip(start).take(per_page).cloned().collect();
    let link = (start + per_page < items.len()).then(|| {
        let mut q: Vec<String> =
            req.query.iter().filter(|(k, _)| k.as_str() != "page").map(|(k, v)| format!("{k}={}", enc(v))).collect();
        q.sort();
        q.push(format!("page={}", page + 1));
        let last = items.len().div_ceil(per_page);
        format!(
            "<{base_url}{}?{}>; rel=\"next\", <{base_url}{}?page={last}>; rel=\"last\"",
            req.path,
            q.join("&"),
            req.path
        )
    });
    (slice, link)
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Serves `app` on 127.0.0.1:0 and returns its base address (`http://127.0.0.1:port`).
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Test-only: the fake runs beside the test on the test's runtime; no engine Spawner here.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    format!("http://{addr}")
}

/// Builds a `Req` from axum parts.
pub fn req(method: Method, uri: &axum::http::Uri, headers: HeaderMap, body: Bytes) -> Req {
    let query = uri
        .query()
        .map(|q| {
            q.split('&')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (dec(k), dec(v))
                })
                .collect()
        })
        .unwrap_or_default();
    Req { method, path: uri.path().to_string(), query, headers, body }
}

/// Percent-decodes (and `+` → space) a query or path part.
pub fn dec(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
