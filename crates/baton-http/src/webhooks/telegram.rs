//! `POST /webhooks/telegram`: Telegram's updates (button presses on the live cards). Telegram
//! signs nothing; it sends the secret given to `setWebhook` in `X-Telegram-Bot-Api-Secret-Token`,
//! compared here in constant time (a wrong or missing one is 401 and nothing is stored). A
//! verified update is stored once per `update_id` in the webhook inbox (source `telegram`) and
//! answered 200; the engine's inbox worker acts on it afterwards (`baton_engine::telegram`).

use crate::{ApiError, AppState};
use axum::Json;
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_store::NewDelivery;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The header Telegram puts the webhook secret in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

pub(crate) async fn receive(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match accept(&state, request).await {
        Ok(response) => response,
        Err(error) => {
            if matches!(error, ApiError::Unauthorized(_)) {
                tracing::warn!("webhook telegram refused: {error}");
            }
            error.into_response()
        }
    }
}

async fn accept(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let Some(secret) = state.webhooks.telegram.as_deref().filter(|s| !s.is_empty()) else {
        return Err(ApiError::NotFound(
            "Telegram webhooks are off: set `telegram.webhook_secret_env` (and `telegram.mode = \"webhook\"`) in baton.toml"
                .into(),
        ));
    };
    let (parts, body) = request.into_parts();
    let given = parts.headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if !secret_matches(secret.as_bytes(), given) {
        return Err(ApiError::Unauthorized(format!(
            "the {SECRET_HEADER} header is missing or wrong: give setWebhook the secret_token of `telegram.webhook_secret_env`"
        )));
    }
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType("Telegram updates must be application/json".into()));
    }
    let max = super::WEBHOOK_BODY_BYTES_MAX;
    let body = to_bytes(body, max).await.map_err(|_| ApiError::PayloadTooLarge(max))?;
    let update: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("the update is not JSON: {e}")))?;
    let Some(update_id) = update.get("update_id").and_then(serde_json::Value::as_i64) else {
        return Err(ApiError::BadRequest("the update has no numeric `update_id`".into()));
    };
    let event = if update.get("callback_query").is_some() { "callback_query" } else { "update" };
    let engine = &state.engine;
    let new = engine
        .store()
        .record_delivery(NewDelivery {
            source: "telegram".into(),
            delivery_id: update_id.to_string(),
            event: event.into(),
            payload: String::from_utf8_lossy(&body).into_owned(),
            received_at_ms: engine.clock().now_ms(),
        })
        .await?;
    if new {
        engine.webhook_received();
    }
    let answer = serde_json::json!({ "accepted": true, "duplicate": !new, "delivery_id": update_id.to_string() });
    Ok((StatusCode::OK, Json(answer)).into_response())
}

/// Whether `given` is `secret`, in time independent of where they differ (both are hashed first,
/// so neither length nor content leaks through timing).
pub fn secret_matches(secret: &[u8], given: &[u8]) -> bool {
    let a = Sha256::digest(secret);
    let b = Sha256::digest(given);
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_comparison() {
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(!secret_matches(b"s3cret", b"s3cre"));
        assert!(!secret_matches(b"s3cret", b""));
    }
}
