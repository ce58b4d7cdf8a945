//! Who is asking (SPEC §16): `Authorization: Bearer <token>` names a principal with a scope — a
//! named token from the database (`baton token create`), or the one set in `server.api_token`.
//! Mutations need the `act` scope, usage ingest the `ingest` scope (or `admin`); reads are open
//! unless `server.read_requires_token`. The
//! principal rides in the request's extensions, so every input records who made it.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use baton_engine::{Principal, Scope};
use std::sync::Arc;

/// Middleware for the mutating routes: passes the request on only for a principal with `act`.
pub(crate) async fn require_act(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    guard(&state, Scope::Act, request, next).await
}

/// Middleware for `POST /api/usage/ingest`: a principal with `ingest` (or `admin`).
pub(crate) async fn require_ingest(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    guard(&state, Scope::Ingest, request, next).await
}

/// Middleware for the administrative routes (the coverage baseline's override): `admin` only.
pub(crate) async fn require_admin(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    guard(&state, Scope::Admin, request, next).await
}

/// Middleware for the read routes: open unless the server requires a `read` token.
pub(crate) async fn require_read(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if !state.read_requires_token {
        return next.run(request).await;
    }
    guard(&state, Scope::Read, request, next).await
}

async fn guard(state: &AppState, needed: Scope, mut request: Request, next: Next) -> Response {
    match principal(state, request.headers(), needed).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error @ ApiError::Unauthorized(_)) => {
            let mut response = error.into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn principal(state: &AppState, headers: &HeaderMap, needed: Scope) -> Result<Principal, ApiError> {
    let presented = bearer(headers).ok_or_else(|| {
        ApiError::Unauthorized(format!(
            "this request needs a token with the `{needed}` scope: send `Authorization: Bearer <token>` \
             (create one with `baton token create NAME --scope {needed}`)"
        ))
    })?;
    let principal = state
        .engine
        .authenticate(presented, state.api_token.as_deref())
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the token is not valid (unknown or revoked)".into()))?;
    if !principal.allows(needed) {
        return Err(ApiError::Forbidden(format!(
            "the token `{}` has the `{}` scope; this request needs `{needed}`",
            principal.name, principal.scope
        )));
    }
    Ok(principal)
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

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
