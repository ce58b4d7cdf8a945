//! `GET /api/usage?by=…`: agent runs and ingested usage grouped by task, stage, adapter, model,
//! repo, day, category, source or unit kind, with the derived unit economics; `POST
//! /api/usage/ingest` (the `ingest` scope, or `admin`): outside tools report what they spent;
//! `GET /api/budgets`: spend against every cap with today's forecast.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_engine::Principal;
use baton_engine::budgets::BudgetReport;
use baton_engine::usage::{IngestError, IngestRequest};
use baton_engine::usage_report::{UsageBy, UsageReport};
use serde::Deserialize;
use std::sync::Arc;

/// Largest ingest body: one record is a few hundred bytes.
pub const INGEST_BODY_BYTES_MAX: usize = 16 * 1024;

#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    /// Defaults to `task`.
    pub by: Option<String>,
}

pub(crate) async fn usage(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<UsageReport>, ApiError> {
    let text = query.by.as_deref().unwrap_or("task");
    let by = UsageBy::parse(text).ok_or_else(|| {
        ApiError::BadRequest(format!("unknown usage grouping `{text}`; use by={}", UsageBy::choices()))
    })?;
    Ok(Json(state.engine.usage_report(by).await?))
}

/// `POST /api/usage/ingest`: 201 with the stored record, 200 with the first record on a replay of
/// its (source, idempotency key), 400 naming the field of a bad body.
pub(crate) async fn ingest(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.len() > INGEST_BODY_BYTES_MAX {
        return Err(ApiError::BadRequest(format!(
            "the body is {} bytes; a usage record takes at most {INGEST_BODY_BYTES_MAX}",
            body.len()
        )));
    }
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::BadRequest(format!("the body is not JSON: {error}")))?;
    let header_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let request = IngestRequest::from_json(&json, header_key)
        .map_err(|problem| ApiError::BadRequest(format!("usage record: {problem}")))?;
    match state.engine.ingest_usage(request, &principal.name).await {
        Ok(outcome) => {
            let status = if outcome.insert.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok((status, Json(outcome)).into_response())
        }
        Err(IngestError::Field(problem)) => Err(ApiError::BadRequest(format!("usage record: {problem}"))),
        Err(IngestError::Engine(error)) => Err(error.into()),
    }
}

/// `GET /api/budgets`.
pub(crate) async fn budgets(State(state): State<Arc<AppState>>) -> Result<Json<BudgetReport>, ApiError> {
    Ok(Json(state.engine.budget_report().await?))
}
