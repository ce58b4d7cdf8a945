//! The one HTTP client: timeouts, user agent, auth header, retries with jitter, rate limits,
//! pagination (`Link: rel="next"` and Plane's cursor), typed errors with the token masked.

use crate::error::ApiError;
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A token held as a value; its Debug and Display never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How a service wants its token.
#[derive(Clone, Debug)]
pub enum Auth {
    /// GitHub: `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// Gitea/Forgejo: `Authorization: token <token>`.
    GiteaToken(Secret),
    /// Plane: `X-API-Key: <token>`.
    ApiKey(Secret),
}

impl Auth {
    fn secret(&self) -> &Secret {
        match self {
            Auth::Bearer(s) | Auth::GiteaToken(s) | Auth::ApiKey(s) => s,
        }
    }
}

/// Time as the client needs it: the wall clock (for `X-RateLimit-Reset`) and sleeping (backoff).
/// Tests and simulations can pass their own.
#[async_trait]
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn unix_now(&self) -> u64;
    async fn sleep(&self, duration: Duration);
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    // This is the crate's one place that reads the wall clock and sleeps: the client sits outside
    // the engine (no `baton_engine::Clock` here) and callers that need control pass their own Clock.
    #[allow(clippy::disallowed_methods)]
    fn unix_now(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    #[allow(clippy::disallowed_methods)]
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Retry and rate-limit policy.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries for one call in total (first try included).
    pub max_attempts: u32,
    /// First backoff; doubles per try, with ±50% jitter.
    pub base_backoff: Duration,
    /// Longest backoff between two tries.
    pub max_backoff: Duration,
    /// Longest rate-limit wait the client sleeps through; past it the call fails `RateLimited`.
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_rate_limit_wait: Duration::from_secs(60),
        }
    }
}

/// Connection settings for one service.
#[derive(Clone)]
pub struct ClientConfig {
    /// e.g. `https://api.github.com`, `https://gitea.example/api/v1`, `https://plane.example/api/v1`.
    pub base_url: String,
    pub auth: Auth,
    pub retry: RetryPolicy,
    pub clock: Arc<dyn Clock>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, auth: Auth) -> Self {
        ClientConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            auth,
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig").field("base_url", &self.base_url).field("auth", &self.auth).finish()
    }
}

/// A successful answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`null` when empty).
    pub fn json(&self, call: &str) -> Result<Value, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| ApiError::invalid(call, format!("unexpected payload: {e}")))
    }
}

/// The user agent every request carries.
pub const USER_AGENT: &str = concat!("baton/", env!("CARGO_PKG_VERSION"));

/// One configured HTTP client for one service.
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    config: ClientConfig,
    extra_headers: HeaderMap,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").field("config", &self.config).finish()
    }
}

impl HttpClient {
    pub fn new(config: ClientConfig, extra_headers: HeaderMap) -> Result<Self, ApiError> {
        let inner = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::invalid("http.client", format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpClient { inner, config, extra_headers })
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    /// Masks the token in any text that leaves the client.
    fn scrub(&self, text: &str) -> String {
        let token = self.config.auth.secret().expose();
        let mut out = if token.len() >= 4 { text.replace(token, "***") } else { text.to_string() };
        if out.len() > 300 {
            let mut cut = 300;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
        }
        out
    }

    fn url_for(&self, call: &str, path_or_url: &str) -> Result<String, ApiError> {
        if path_or_url.starts_with('/') {
            return Ok(format!("{}{}", self.config.base_url, path_or_url));
        }
        // An absolute URL (a `Link: rel="next"`): only to the configured origin, so the token
        // never goes to another host.
        if same_origin(&self.config.base_url, path_or_url) {
            Ok(path_or_url.to_string())
        } else {
            Err(ApiError::invalid(call, "next-page link points outside the configured base URL"))
        }
    }

    /// Sends one call with retries. GET/PUT/DELETE (idempotent) are retried on 5xx and transport
    /// errors; any call is retried after a rate-limit answer (the server did not act on it) when
    /// the wait is at most `max_rate_limit_wait`.
    pub async fn send(
        &self,
        call: &str,
        method: Method,
        path_or_url: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Reply, ApiError> {
        let url = self.url_for(call, path_or_url)?;
        let idempotent = matches!(method, Method::GET | Method::PUT | Method::DELETE | Method::HEAD);
        let policy = &self.config.retry;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let last = attempt >= policy.max_attempts.max(1);
            let mut req = self.inner.request(method.clone(), &url).headers(self.extra_headers.clone());
            if !query.is_empty() {
                req = req.query(query);
            }
            req = match &self.config.auth {
                Auth::Bearer(s) => req.header("Authorization", format!("Bearer {}", s.expose())),
                Auth::GiteaToken(s) => req.header("Authorization", format!("token {}", s.expose())),
                Auth::ApiKey(s) => req.header("X-API-Key", s.expose()),
            };
            if let Some(body) = body {
                req = req.json(body);
            }
            let outcome = req.send().await;
            let response = match outcome {
                Ok(r) => r,
                Err(e) => {
                    let message = self.scrub(&transport_message(&e));
                    if idempotent && !last {
                        tracing::debug!(call, attempt, %message, "transport error, retrying");
                        self.config.clock.sleep(self.backoff(attempt)).await;
                        continue;
                    }
                    return Err(ApiError::Unavailable { call: call.to_string(), message });
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let body = match response.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    let message = self.scrub(&transport_message(&e));
                    if idempotent && !last {
                        self.config.clock.sleep(self.backoff(attempt)).await;
                        continue;
                    }
                    return Err(ApiError::Unavailable { call: call.to_string(), message });
                }
            };
            if status.is_success() {
                return Ok(Reply { status, headers, body });
            }
            if let Some(wait) = self.rate_limit_wait(status, &headers) {
                if wait <= policy.max_rate_limit_wait && !last {
                    tracing::info!(call, wait_s = wait.as_secs_f64(), "rate limited, waiting");
                    self.config.clock.sleep(wait).await;
                    continue;
                }
                return Err(ApiError::RateLimited { call: call.to_string(), retry_after: wait });
            }
            let message = self.scrub(&error_message(&body));
            if status.is_server_error() {
                if idempotent && !last {
                    tracing::debug!(call, attempt, %status, "server error, retrying");
                    self.config.clock.sleep(self.backoff(attempt)).await;
                    continue;
                }
                return Err(ApiError::Unavailable {
                    call: call.to_string(),
                    message: format!("HTTP {status}: {message}"),
                });
            }
            let call = call.to_string();
            return Err(match status.as_u16() {
                401 | 403 => ApiError::Unauthorized { call, status: status.as_u16(), message },
                404 => ApiError::NotFound { call, message },
                405 | 409 => ApiError::Conflict { call, status: status.as_u16(), message },
                code => ApiError::Invalid { call, message: format!("HTTP {code}: {message}") },
            });
        }
    }

    /// The wait a rate-limit answer asks for, or None when the answer is not a rate limit.
    fn rate_limit_wait(&self, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        let retry_after = header_str(headers, "retry-after").and_then(|v| v.trim().parse::<u64>().ok());
        let exhausted = header_str(headers, "x-ratelimit-remaining").map(str::trim) == Some("0");
        let is_limit = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::FORBIDDEN && (exhausted || retry_after.is_some()));
        if !is_limit {
            return None;
        }
        if let Some(secs) = retry_after {
            return Some(Duration::from_secs(secs));
        }
        if let Some(reset) = header_str(headers, "x-ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok()) {
            let now = self.config.clock.unix_now();
            return Some(Duration::from_secs(reset.saturating_sub(now).max(1)));
        }
        Some(Duration::from_secs(60))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let policy = &self.config.retry;
        let exp = policy.base_backoff.saturating_mul(1u32 << (attempt - 1).min(16));
        let capped = exp.min(policy.max_backoff);
        // Full ±50% jitter so that several Batons do not retry in step.
        capped.mul_f64(0.5 + fastrand::f64())
    }

    /// GET returning JSON.
    pub async fn get_json(&self, call: &str, path: &str, query: &[(&str, String)]) -> Result<Value, ApiError> {
        self.send(call, Method::GET, path, query, None).await?.json(call)
    }

    /// Every page of a list that paginates with `Link: <url>; rel="next"` (GitHub, Gitea).
    /// `items_key` picks the array from an object page (GitHub's check runs); None = the page is
    /// the array. Stops after `max_pages` pages.
    pub async fn get_all_linked(
        &self,
        call: &str,
        path: &str,
        query: &[(&str, String)],
        items_key: Option<&str>,
        max_pages: usize,
    ) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut reply = self.send(call, Method::GET, path, query, None).await?;
        for _ in 0..max_pages {
            let page = reply.json(call)?;
            let items = match items_key {
                Some(key) => page.get(key).cloned().unwrap_or(Value::Null),
                None => page,
            };
            match items {
                Value::Array(items) => out.extend(items),
                Value::Null => {}
                _ => return Err(ApiError::invalid(call, "expected a list")),
            }
            let Some(next) = header_str(&reply.headers, "link").and_then(next_link) else {
                return Ok(out);
            };
            reply = self.send(call, Method::GET, &next, &[], None).await?;
        }
        Err(ApiError::invalid(call, format!("more than {max_pages} pages")))
    }

    /// Every page of a Plane list: `cursor` query, loop while `next_page_results`.
    pub async fn get_all_cursor(
        &self,
        call: &str,
        path: &str,
        query: &[(&str, String)],
        max_pages: usize,
    ) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..max_pages {
            let mut q: Vec<(&str, String)> = query.to_vec();
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self.get_json(call, path, &q).await?;
            match &page {
                // An unpaginated answer is a bare array.
                Value::Array(items) => {
                    out.extend(items.iter().cloned());
                    return Ok(out);
                }
                Value::Object(map) => {
                    if let Some(Value::Array(items)) = map.get("results") {
                        out.extend(items.iter().cloned());
                    } else {
                        return Err(ApiError::invalid(call, "page without `results`"));
                    }
                    let more = map.get("next_page_results").and_then(Value::as_bool).unwrap_or(false);
                    let next = map.get("next_cursor").and_then(Value::as_str).unwrap_or("");
                    if !more || next.is_empty() || cursor.as_deref() == Some(next) {
                        return Ok(out);
                    }
                    cursor = Some(next.to_string());
                }
                _ => return Err(ApiError::invalid(call, "expected a page")),
            }
        }
        Err(ApiError::invalid(call, format!("more than {max_pages} pages")))
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok())
}

/// The `rel="next"` target of an RFC 8288 `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p == "rel=\"next\""
                || p == "rel=next"
                || (p.starts_with("rel=\"") && p[5..].split(['"', ' ']).any(|r| r == "next"))
        });
        is_next.then(|| target.to_string())
    })
}

fn origin(url: &str) -> Option<&str> {
    let rest_start = url.find("://")? + 3;
    let end = url[rest_start..].find('/').map(|i| rest_start + i).unwrap_or(url.len());
    Some(&url[..end])
}

fn same_origin(base: &str, url: &str) -> bool {
    matches!((origin(base), origin(url)), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
}

fn transport_message(e: &reqwest::Error) -> String {
    // Without the URL: it may carry query values, and the call name says where it went.
    let text = e.without_url_ref();
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    format!("{kind} error: {text}")
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            text = text.replace(url.as_str(), "<url>");
        }
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

/// The message of an error body (`{"message": ...}` on GitHub/Gitea, `{"error"|"detail": ...}` on
/// Plane), or its text.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        for key in ["message", "error", "detail"] {
            if let Some(s) = v.get(key).and_then(Value::as_str) {
                return s.to_string();
            }
        }
        return v.to_string();
    }
    String::from_utf8_lossy(body).trim().to_string()
}

/// Percent-encodes one path segment (a branch keeps its `/`s where the route is a wildcard).
pub fn seg(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// Percent-encodes a branch name for a wildcard route, keeping `/` between its parts.
pub fn branch_path(s: &str) -> String {
    s.split('/').map(seg).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_finds_next_among_others() {
        let h = r#"<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last""#;
        assert_eq!(next_link(h).as_deref(), Some("https://api.github.com/x?page=2"));
        let h = r#"<https://g/x?page=1>; rel="prev", <https://g/x?page=5>; rel="last""#;
        assert_eq!(next_link(h), None);
    }

    #[test]
    fn secret_debug_hides_value() {
        let a = Auth::Bearer(Secret::new("ghp_supersecret"));
        assert!(!format!("{a:?}").contains("supersecret"));
    }

    #[test]
    fn origin_check() {
        assert!(same_origin("http://127.0.0.1:5/api/v1", "http://127.0.0.1:5/api/v1/x?page=2"));
        assert!(!same_origin("http://127.0.0.1:5/api/v1", "http://evil:5/api/v1/x"));
    }
}
