//! `GET /api/lessons` (filtered by `repo` and `stage`), `POST /api/lessons` and
//! `POST /api/lessons/{id}` (the `act` scope): the lessons journal (SPEC §10). With
//! `[features] lessons = false` every answer is `{"enabled": false}` and nothing is written.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use axum::Json;
use axum::extract::{Path, Query, State};
use baton_engine::lessons::LessonInput;
use baton_store::{LessonFilter, LessonPatch};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub repo: Option<String>,
    pub stage: Option<String>,
}

/// An edit: fields left out stay; `repo` or `stage` set to `null` makes the lesson apply everywhere.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditBody {
    pub title: Option<String>,
    pub body: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub repo: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub stage: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn disabled() -> Json<Value> {
    Json(json!({ "enabled": false }))
}

/// `GET /api/lessons`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = LessonFilter { repo: query.repo, stage: query.stage, status: None };
    Ok(match state.engine.lessons(&filter).await? {
        Some(lessons) => Json(json!({ "enabled": true, "lessons": lessons })),
        None => disabled(),
    })
}

/// `POST /api/lessons`.
pub(crate) async fn add(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<LessonInput>,
) -> Result<Json<Value>, ApiError> {
    Ok(match state.engine.add_lesson(body).await? {
        Some(lesson) => Json(json!(lesson)),
        None => disabled(),
    })
}

/// `POST /api/lessons/{id}`.
pub(crate) async fn edit(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<EditBody>,
) -> Result<Json<Value>, ApiError> {
    let patch = LessonPatch {
        title: body.title,
        body: body.body,
        repo: body.repo,
        stage: body.stage,
        tags: body.tags,
        status: None,
    };
    Ok(match state.engine.edit_lesson(id, patch).await? {
        Some(lesson) => Json(json!(lesson)),
        None => disabled(),
    })
}
