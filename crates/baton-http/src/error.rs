//! [`ApiError`]: the one error type of the HTTP API, rendered as a status and `{code, message}` JSON.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_engine::EngineError;
use baton_store::StoreError;
use serde::Serialize;

/// Every way a request can fail. `code` strings are part of the API and never change meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The route, task or other named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request could not be read: malformed JSON, a bad query string or header.
    #[error("{0}")]
    BadRequest(String),
    /// The request was well formed but the engine refused it (unknown repo, empty answer, ...).
    #[error("{0}")]
    Invalid(String),
    /// No valid API token was presented.
    #[error("{0}")]
    Unauthorized(String),
    /// The server refuses the action whatever the caller presents (no token is configured).
    #[error("{0}")]
    Forbidden(String),
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("this route does not accept that method")]
    MethodNotAllowed,
    /// The task kept changing under the request; retrying is safe.
    #[error("{0}")]
    Conflict(String),
    /// The `Host` header (or the request target's authority) names a host this server does not
    /// answer for: a DNS-rebinding page, or a name missing from `server.allowed_hosts`.
    #[error("{0}")]
    HostNotAllowed(String),
    /// The `Origin` header names a site that is not an allowed host (a cross-site browser request).
    #[error("{0}")]
    OriginNotAllowed(String),
    /// The database is locked by another connection; nothing changed, retry after a second.
    #[error("the database is busy; nothing changed, retry in a moment")]
    DatabaseBusy,
    /// The server cannot serve this now (its database was lost); the message says why.
    #[error("{0}")]
    Unavailable(String),
    /// Something broke inside Baton; the details are in the server log, not in the response.
    #[error("internal error; the server log has the details")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::HostNotAllowed(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::DatabaseBusy | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid(_) => "invalid",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::HostNotAllowed(_) => "host_not_allowed",
            ApiError::OriginNotAllowed(_) => "origin_not_allowed",
            ApiError::DatabaseBusy => "database_busy",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal => "internal",
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code(), message: self.to_string() };
        let mut response = (self.status(), Json(body)).into_response();
        if self == ApiError::DatabaseBusy {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Invalid(message) => ApiError::Invalid(message),
            EngineError::NotFound(what) => ApiError::NotFound(format!("{what} does not exist")),
            EngineError::Refused(message) => ApiError::Conflict(message),
            EngineError::Store(store) => store.into(),
            other => internal(&other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} does not exist")),
            StoreError::Conflict(_) => ApiError::Conflict("the task changed while the request ran; try again".into()),
            StoreError::Busy(why) => {
                tracing::warn!("request answered 503: the database is busy: {why}");
                ApiError::DatabaseBusy
            }
            StoreError::Lost(why) => ApiError::Unavailable(format!("the database was lost: {why}")),
            StoreError::Unavailable(why) => {
                tracing::warn!("request answered 503: the database is unavailable: {why}");
                ApiError::Unavailable("the database is unavailable; try again shortly".into())
            }
            other => internal(&other),
        }
    }
}

/// Logs the full error for the operator and returns the opaque variant for the client.
fn internal(error: &dyn std::fmt::Display) -> ApiError {
    tracing::error!("request failed: {error}");
    ApiError::Internal
}
