//! `POST /webhooks/{github,gitea,plane}`: signed webhooks, verified, stored once, acknowledged.
//!
//! Outside `/api` and without a bearer token: a delivery is authenticated by its HMAC-SHA256
//! signature over the raw body with the secret configured for its source (`[webhooks]`). The
//! order of checks: the source's secret is configured (else 404 naming the key), the content
//! type is JSON (415), the body fits [`WEBHOOK_BODY_BYTES_MAX`] (413), the signature header is
//! there and matches, compared in constant time (401); only then is the delivery stored in the
//! inbox, deduplicated by the sender's delivery id (or a digest of the body when it sent none),
//! and answered 202 right after the row commits: `{"accepted":true,"duplicate":false}` the
//! first time, `{"accepted":true,"duplicate":true}` for a redelivery. Nothing is parsed or acted
//! on before the answer: the engine's webhook worker does that afterwards.
//!
//! One file per source holds its headers: [`github`], [`gitea`], [`plane`]; [`telegram`] has its
//! own route (a secret-token header instead of a signature, deduplicated by `update_id`).

pub mod gitea;
pub mod github;
pub mod plane;
pub mod telegram;

use crate::{ApiError, AppState};
use axum::Json;
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use baton_store::NewDelivery;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// Largest webhook body accepted (GitHub caps its payloads at 25 MB, but the events Baton reads
/// are far smaller; a bigger one is refused with 413 and nothing stored).
pub const WEBHOOK_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Longest delivery id kept as sent (the senders use UUIDs).
const DELIVERY_ID_CHARS_MAX: usize = 128;
/// Longest event name accepted.
const EVENT_CHARS_MAX: usize = 64;

/// The secret of each webhook source (`[webhooks]` in baton.toml); `None` turns its route off.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WebhookSecrets {
    pub github: Option<String>,
    pub gitea: Option<String>,
    pub plane: Option<String>,
    /// Telegram's `setWebhook` secret token (`[telegram] webhook_secret_env`).
    pub telegram: Option<String>,
}

// Written by hand so that debug output never shows a secret.
impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("WebhookSecrets")
            .field("github", &shown(&self.github))
            .field("gitea", &shown(&self.gitea))
            .field("plane", &shown(&self.plane))
            .field("telegram", &shown(&self.telegram))
            .finish()
    }
}

/// How one source signs and names its deliveries.
#[derive(Debug)]
pub struct SourceSpec {
    /// `github`, `gitea` or `plane`: the inbox's `source` and the route's last segment.
    pub name: &'static str,
    /// For messages: `GitHub`, `Gitea`, `Plane`.
    pub display: &'static str,
    pub signature_header: &'static str,
    /// What precedes the hex digest in the signature header (`sha256=` for GitHub).
    pub signature_prefix: &'static str,
    pub delivery_header: &'static str,
    /// Headers naming the event, the first non-empty one wins.
    pub event_headers: &'static [&'static str],
    /// The configuration key of the secret.
    pub secret_key: &'static str,
    /// The variable the documentation suggests for the secret.
    pub secret_env: &'static str,
    secret: fn(&WebhookSecrets) -> Option<&str>,
}

/// The three routes, merged into [`crate::app`] outside `/api`.
pub(crate) fn router(state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/webhooks/github", post(|s: State<Arc<AppState>>, r: Request| receive(s, &github::SPEC, r)))
        .route("/webhooks/gitea", post(|s: State<Arc<AppState>>, r: Request| receive(s, &gitea::SPEC, r)))
        .route("/webhooks/plane", post(|s: State<Arc<AppState>>, r: Request| receive(s, &plane::SPEC, r)))
        .route("/webhooks/telegram", post(telegram::receive))
        .with_state(state)
}

async fn receive(State(state): State<Arc<AppState>>, spec: &'static SourceSpec, request: Request) -> Response {
    match accept(&state, spec, request).await {
        Ok(response) => response,
        Err(error) => {
            if matches!(error, ApiError::Unauthorized(_)) {
                tracing::warn!("webhook {} refused: {error}", spec.name);
            }
            error.into_response()
        }
    }
}

async fn accept(state: &AppState, spec: &SourceSpec, request: Request) -> Result<Response, ApiError> {
    let Some(secret) = (spec.secret)(&state.webhooks).filter(|s| !s.is_empty()) else {
        return Err(ApiError::NotFound(format!(
            "{} webhooks are off: set `{}` (e.g. \"${{{}}}\") in baton.toml",
            spec.display, spec.secret_key, spec.secret_env
        )));
    };
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{} webhooks must be sent as application/json (set the webhook's content type to JSON)",
            spec.display
        )));
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > WEBHOOK_BODY_BYTES_MAX as u64) {
        return Err(ApiError::PayloadTooLarge(WEBHOOK_BODY_BYTES_MAX));
    }
    let body =
        to_bytes(body, WEBHOOK_BODY_BYTES_MAX).await.map_err(|_| ApiError::PayloadTooLarge(WEBHOOK_BODY_BYTES_MAX))?;
    let Some(signature) = headers.get(spec.signature_header) else {
        return Err(ApiError::Unauthorized(format!("the {} header is missing", spec.signature_header)));
    };
    let signature = signature.to_str().unwrap_or("");
    if !signature_valid(secret.as_bytes(), &body, signature, spec.signature_prefix) {
        return Err(ApiError::Unauthorized(format!(
            "the {} header does not match the body: check that both ends have the same secret (`{}`)",
            spec.signature_header, spec.secret_key
        )));
    }
    // Authenticated from here on.
    let payload = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("the webhook body is not UTF-8 text".into()))?;
    let delivery_id = match text_header(headers, spec.delivery_header, DELIVERY_ID_CHARS_MAX)? {
        Some(id) => id,
        None => format!("sha256:{}", hex(&Sha256::digest(payload.as_bytes()))),
    };
    let mut event = String::new();
    for name in spec.event_headers {
        if let Some(value) = text_header(headers, name, EVENT_CHARS_MAX)? {
            event = value;
            break;
        }
    }
    let engine = &state.engine;
    let new = engine
        .store()
        .record_delivery(NewDelivery {
            source: spec.name.to_string(),
            delivery_id: delivery_id.clone(),
            event,
            payload,
            received_at_ms: engine.clock().now_ms(),
        })
        .await?;
    if new {
        engine.webhook_received();
    }
    let body = serde_json::json!({ "accepted": true, "duplicate": !new, "delivery_id": delivery_id });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Whether `signature` (after `prefix`) is the hex HMAC-SHA256 of `body` under `secret`; the
/// digest is compared in constant time (`hmac`'s `verify_slice`). Public for the fuzz targets.
pub fn signature_valid(secret: &[u8], body: &[u8], signature: &str, prefix: &str) -> bool {
    let Some(hex_digest) = signature.trim().strip_prefix(prefix) else { return false };
    let Some(expected) = unhex(hex_digest) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The hex HMAC-SHA256 of `body` under `secret`, as the senders put it in their headers (without
/// GitHub's `sha256=` prefix). For tests, fuzzers and fakes of the senders.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // `new_from_slice` accepts keys of any length for HMAC.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// A header that must be short printable ASCII when present; `None` when absent or empty.
fn text_header(headers: &HeaderMap, name: &str, max: usize) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    let text = value.to_str().unwrap_or("\u{0}").trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > max || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest(format!("the {name} header must be at most {max} printable characters")));
    }
    Ok(Some(text.to_string()))
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}
