//! The API token check for mutations (SPEC §16): `Authorization: Bearer <token>`, compared in
//! constant time. A server without a configured token refuses every mutation.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Middleware for the mutating routes: passes the request on only with the right bearer token.
pub(crate) async fn require_token(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match check(state.api_token.as_deref(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error @ ApiError::Unauthorized(_)) => {
            let mut response = error.into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Err(error) => error.into_response(),
    }
}

fn check(expected: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = expected.filter(|token| !token.trim().is_empty()) else {
        return Err(ApiError::Forbidden(
            "this server has no API token, so actions are disabled; set `server.api_token` in baton.toml \
             or the BATON_API_TOKEN environment variable and restart"
                .into(),
        ));
    };
    let presented = bearer(headers).ok_or_else(|| {
        ApiError::Unauthorized("this action needs the API token: send `Authorization: Bearer <token>`".into())
    })?;
    if tokens_match(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("the API token is not valid".into()))
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
}

/// Compares without an early exit, so the time taken depends only on the expected token's length,
/// never on how many leading bytes of a guess are right. A dozen lines here instead of a crate.
fn tokens_match(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = presented.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        let other = presented.get(i).copied().unwrap_or(0);
        diff |= usize::from(byte ^ other);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Equal tokens match; a prefix, an extension, a different byte or an empty guess do not.
    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        assert!(!tokens_match(b"s3cre", b"s3cret"));
        assert!(!tokens_match(b"s3cret!", b"s3cret"));
        assert!(!tokens_match(b"s3creT", b"s3cret"));
        assert!(!tokens_match(b"", b"s3cret"));
    }

    // The bearer scheme is found case-insensitively and other schemes are ignored.
    #[test]
    fn bearer_parses_the_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
    }
}
