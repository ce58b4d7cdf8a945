//! Plane webhooks: `X-Plane-Event` names the event (`issue`, `issue_comment`, `project`, ...);
//! the body is `{event, action, webhook_id, workspace_id, data, activity}`. Actions are
//! `created|updated|deleted` in current Plane and `create|update|delete` in older releases.

use super::{ParseError, WebhookEvent, WorkItemAction, WorkItemEvent, from_json};
use serde::Deserialize;

/// Parses one Plane delivery. Only `issue` (work items) is read; comments and the rest are
/// [`WebhookEvent::Ignored`].
pub fn parse(event: &str, body: &[u8]) -> Result<WebhookEvent, ParseError> {
    if event != "issue" {
        return Ok(WebhookEvent::Ignored { event: super::bounded(event) });
    }
    let payload: Payload = from_json(event, body)?;
    let action = match payload.action.as_str() {
        "created" | "create" => WorkItemAction::Created,
        "updated" | "update" => WorkItemAction::Updated,
        "deleted" | "delete" => WorkItemAction::Deleted,
        other => return Err(ParseError::new(event, format!("unknown action `{}`", super::bounded(other)))),
    };
    let data = payload.data;
    let (state_id, state_name, state_group) = match data.state {
        Some(State::Expanded { id, name, group }) => (id, name, group),
        Some(State::Id(id)) => (Some(id), None, None),
        None => (data.state_id, None, None),
    };
    let activity = payload.activity.unwrap_or_default();
    Ok(WebhookEvent::WorkItem(WorkItemEvent {
        action,
        id: data.id,
        sequence_id: data.sequence_id,
        name: data.name,
        description_html: data.description_html,
        state_id,
        state_name,
        state_group,
        project: data.project.or(data.project_id),
        workspace: data.workspace.or(payload.workspace_id),
        labels: data.labels.unwrap_or_default().into_iter().filter_map(LabelRef::name).collect(),
        changed_field: activity.field,
        actor: activity.actor.and_then(|a| a.display_name),
    }))
}

#[derive(Deserialize)]
struct Payload {
    action: String,
    #[serde(default)]
    workspace_id: Option<String>,
    data: Data,
    #[serde(default)]
    activity: Option<Activity>,
}

#[derive(Deserialize)]
struct Data {
    id: String,
    #[serde(default)]
    sequence_id: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description_html: Option<String>,
    #[serde(default)]
    state: Option<State>,
    #[serde(default)]
    state_id: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    workspace: Option<String>,
    #[serde(default)]
    labels: Option<Vec<LabelRef>>,
}

/// `state` is an object when expanded (webhooks send it so), a UUID otherwise.
#[derive(Deserialize)]
#[serde(untagged)]
enum State {
    Id(String),
    Expanded {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        group: Option<String>,
    },
}

/// A label as an expanded object (its name) or a bare UUID (no name to report).
#[derive(Deserialize)]
#[serde(untagged)]
enum LabelRef {
    Expanded {
        #[serde(default)]
        name: Option<String>,
    },
    Other(serde::de::IgnoredAny),
}

impl LabelRef {
    fn name(self) -> Option<String> {
        match self {
            LabelRef::Expanded { name } => name,
            LabelRef::Other(_) => None,
        }
    }
}

#[derive(Deserialize, Default)]
struct Activity {
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    actor: Option<Actor>,
}

#[derive(Deserialize)]
struct Actor {
    #[serde(default)]
    display_name: Option<String>,
}
