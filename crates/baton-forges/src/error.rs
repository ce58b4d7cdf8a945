//! Typed API errors; every one names the call that failed and none carries a token.

use std::time::Duration;

/// What went wrong with one API call. `call` is a short name such as `github.merge_pr`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401, or 403 that is not a rate limit: the token is missing, wrong or lacks a scope.
    #[error("{call}: unauthorized (HTTP {status}): {message}")]
    Unauthorized { call: String, status: u16, message: String },
    /// 404: the repository, PR, issue or work item does not exist (or the token cannot see it).
    #[error("{call}: not found: {message}")]
    NotFound { call: String, message: String },
    /// 409 (and 405 on merges): the remote state refuses the call, e.g. a merge with a stale head.
    #[error("{call}: conflict (HTTP {status}): {message}")]
    Conflict { call: String, status: u16, message: String },
    /// 429, or 403 with `X-RateLimit-Remaining: 0`, whose wait is longer than the client may sleep.
    #[error("{call}: rate limited, retry after {}s", retry_after.as_secs())]
    RateLimited { call: String, retry_after: Duration },
    /// 5xx or a transport error (connect, timeout, reset) after the retries the call allows.
    #[error("{call}: unavailable: {message}")]
    Unavailable { call: String, message: String },
    /// Any other refusal (400, 422, ...), an unexpected payload, or a request Baton cannot make.
    #[error("{call}: invalid: {message}")]
    Invalid { call: String, message: String },
}

impl ApiError {
    /// The call this error belongs to.
    pub fn call(&self) -> &str {
        match self {
            ApiError::Unauthorized { call, .. }
            | ApiError::NotFound { call, .. }
            | ApiError::Conflict { call, .. }
            | ApiError::RateLimited { call, .. }
            | ApiError::Unavailable { call, .. }
            | ApiError::Invalid { call, .. } => call,
        }
    }

    /// Whether trying again later may help (rate limits and outages).
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::RateLimited { .. } | ApiError::Unavailable { .. })
    }

    pub(crate) fn invalid(call: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid { call: call.to_string(), message: message.into() }
    }
}

impl From<ApiError> for baton_adapters::AdapterError {
    fn from(e: ApiError) -> Self {
        if e.is_transient() {
            baton_adapters::AdapterError::Transient(e.to_string())
        } else {
            baton_adapters::AdapterError::Rejected(e.to_string())
        }
    }
}
