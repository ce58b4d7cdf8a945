//! `GET /api/usage?by=task|stage|adapter|model|repo|day`: token and cost totals per group.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use axum::Json;
use axum::extract::State;
use baton_store::{UsageGroup, UsageRow};
use serde::Deserialize;
use std::sync::Arc;

/// The accepted `by` values, in the order error messages list them.
const GROUPS: [(&str, UsageGroup); 6] = [
    ("task", UsageGroup::Task),
    ("stage", UsageGroup::Stage),
    ("adapter", UsageGroup::Adapter),
    ("model", UsageGroup::Model),
    ("repo", UsageGroup::Repo),
    ("day", UsageGroup::Day),
];

#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    /// Defaults to `task`.
    pub by: Option<String>,
}

pub(crate) async fn usage(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<Vec<UsageRow>>, ApiError> {
    let group = parse_group(query.by.as_deref().unwrap_or("task"))?;
    Ok(Json(state.engine.store().usage(group).await?))
}

fn parse_group(text: &str) -> Result<UsageGroup, ApiError> {
    GROUPS.iter().find(|(name, _)| *name == text).map(|(_, group)| *group).ok_or_else(|| {
        let names: Vec<&str> = GROUPS.iter().map(|(name, _)| *name).collect();
        ApiError::BadRequest(format!("unknown usage grouping `{text}`; use by={}", names.join("|")))
    })
}
