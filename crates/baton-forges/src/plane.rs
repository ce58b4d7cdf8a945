//! Plane REST (`https://<host>/api/v1`): work items, project states, comments.

use crate::error::ApiError;
use crate::forge::s;
use crate::http::{Auth, ClientConfig, HttpClient, Secret, seg};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const MAX_PAGES: usize = 100;
/// Work items one item may be blocked by that Baton reads (as many as a body may name).
const BLOCKED_BY_MAX: usize = 20;

/// One project state (`group` is backlog | unstarted | started | completed | cancelled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneState {
    pub id: String,
    pub name: String,
    pub group: String,
}

/// One work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    pub id: String,
    pub name: String,
    pub sequence_id: u64,
    /// The state's id (whether the server expanded it or not).
    pub state_id: String,
    /// The state's name when the server expanded it.
    pub state_name: Option<String>,
    pub description_html: String,
}

/// One comment on a work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneComment {
    /// The author's display name (`actor_detail.display_name`), else the actor's id.
    pub author: String,
    pub comment_html: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A project's states by name, to turn "In Progress" into the id Plane wants.
#[derive(Debug, Clone, Default)]
pub struct StateMap {
    states: Vec<PlaneState>,
}

impl StateMap {
    pub fn new(states: Vec<PlaneState>) -> Self {
        StateMap { states }
    }

    /// The id of the state named `name` (case and surrounding space ignored).
    pub fn id_for(&self, name: &str) -> Option<&str> {
        let want = name.trim();
        self.states.iter().find(|st| st.name.trim().eq_ignore_ascii_case(want)).map(|st| st.id.as_str())
    }

    /// The name of the state with this id.
    pub fn name_of(&self, id: &str) -> Option<&str> {
        self.states.iter().find(|st| st.id == id).map(|st| st.name.as_str())
    }

    /// Like [`StateMap::id_for`], but an error naming the states the project has.
    pub fn require(&self, call: &str, name: &str) -> Result<&str, ApiError> {
        self.id_for(name).ok_or_else(|| {
            let known: Vec<&str> = self.states.iter().map(|st| st.name.as_str()).collect();
            ApiError::invalid(call, format!("project has no state `{name}` (it has: {})", known.join(", ")))
        })
    }

    pub fn states(&self) -> &[PlaneState] {
        &self.states
    }
}

/// One Plane project in one workspace.
#[derive(Debug, Clone)]
pub struct Plane {
    http: HttpClient,
    workspace: String,
    project: String,
}

impl Plane {
    /// `config.base_url` ends in `/api/v1`; `config.auth` should be `Auth::ApiKey`.
    pub fn new(config: ClientConfig, workspace_slug: &str, project_id: &str) -> Result<Self, ApiError> {
        Ok(Plane {
            http: HttpClient::new(config, HeaderMap::new())?,
            workspace: workspace_slug.into(),
            project: project_id.into(),
        })
    }

    pub fn with_key(base_url: &str, key: Secret, workspace_slug: &str, project_id: &str) -> Result<Self, ApiError> {
        Plane::new(ClientConfig::new(base_url, Auth::ApiKey(key)), workspace_slug, project_id)
    }

    fn path(&self, rest: &str) -> String {
        format!("/workspaces/{}/projects/{}{rest}", seg(&self.workspace), seg(&self.project))
    }

    /// Every state of the project.
    pub async fn list_states(&self) -> Result<StateMap, ApiError> {
        let call = "plane.list_states";
        let items = self.http.get_all_cursor(call, &self.path("/states/"), &[], MAX_PAGES).await?;
        let states = items
            .iter()
            .map(|v| PlaneState { id: s(v, "id"), name: s(v, "name"), group: s(v, "group") })
            .filter(|st| !st.id.is_empty())
            .collect();
        Ok(StateMap::new(states))
    }

    /// Every work item of the project whose state is `state_id`. The community edition ignores a
    /// `state` filter on the list, so every page is read and filtered here.
    pub async fn list_work_items_in_state(&self, state_id: &str) -> Result<Vec<WorkItem>, ApiError> {
        Ok(self.list_work_items().await?.into_iter().filter(|w| w.state_id == state_id).collect())
    }

    /// Every work item of the project, every page.
    pub async fn list_work_items(&self) -> Result<Vec<WorkItem>, ApiError> {
        let call = "plane.list_work_items";
        let q = [("per_page", "100".to_string()), ("expand", "state".to_string())];
        let items = self.http.get_all_cursor(call, &self.path("/work-items/"), &q, MAX_PAGES).await?;
        items.iter().map(|v| parse_work_item(call, v)).collect()
    }

    pub async fn get_work_item(&self, id: &str) -> Result<WorkItem, ApiError> {
        let call = "plane.get_work_item";
        let v = self
            .http
            .get_json(call, &self.path(&format!("/work-items/{}/", seg(id))), &[("expand", "state".to_string())])
            .await?;
        parse_work_item(call, &v)
    }

    /// The id of this project's work item known by `key` (`PROJ-12`: the project identifier and
    /// the sequence id), read through the workspace's by-key route; `None` when there is no such
    /// item or it belongs to another project.
    pub async fn work_item_id_by_key(&self, key: &str) -> Result<Option<String>, ApiError> {
        let call = "plane.get_work_item_by_key";
        let path = format!("/workspaces/{}/work-items/{}/", seg(&self.workspace), seg(key));
        let v = match self.http.get_json(call, &path, &[]).await {
            Ok(v) => v,
            Err(ApiError::NotFound { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        let item = parse_work_item(call, &v)?;
        let project = s(&v, "project");
        Ok((project.is_empty() || project == self.project).then_some(item.id))
    }

    /// The ids of the work items this one is blocked by (its `relations` map's `blocked_by`; the
    /// other lists — blocking, duplicate, relates_to, scheduling — do not order work).
    pub async fn blocked_by(&self, id: &str) -> Result<Vec<String>, ApiError> {
        let call = "plane.list_relations";
        let v = self.http.get_json(call, &self.path(&format!("/work-items/{}/relations/", seg(id))), &[]).await?;
        let Some(list) = v.get("blocked_by").and_then(|b| b.as_array()) else {
            return Err(ApiError::invalid(call, "the relations map has no `blocked_by` list"));
        };
        Ok(list.iter().filter_map(|id| id.as_str().map(str::to_string)).take(BLOCKED_BY_MAX).collect())
    }

    /// Moves a work item to the state with this id (partial update).
    pub async fn set_state(&self, id: &str, state_id: &str) -> Result<(), ApiError> {
        let call = "plane.set_state";
        let body = json!({"state": state_id});
        self.http.send(call, Method::PATCH, &self.path(&format!("/work-items/{}/", seg(id))), &[], Some(&body)).await?;
        Ok(())
    }

    /// Every comment of a work item, every page, oldest first.
    pub async fn list_comments(&self, id: &str) -> Result<Vec<PlaneComment>, ApiError> {
        let call = "plane.list_comments";
        let q = [("per_page", "100".to_string()), ("expand", "actor".to_string())];
        let items = self
            .http
            .get_all_cursor(call, &self.path(&format!("/work-items/{}/comments/", seg(id))), &q, MAX_PAGES)
            .await?;
        Ok(items
            .iter()
            .map(|v| {
                let detail = v.get("actor_detail").or_else(|| v.get("actor").filter(|a| a.is_object()));
                let name = detail.map(|d| s(d, "display_name")).filter(|n| !n.is_empty());
                PlaneComment {
                    author: name.unwrap_or_else(|| s(v, "actor")),
                    comment_html: s(v, "comment_html"),
                    created_at: s(v, "created_at"),
                }
            })
            .collect())
    }

    /// The project id this client works on.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Adds an internal comment; `text` is escaped into one HTML paragraph.
    pub async fn comment(&self, id: &str, text: &str) -> Result<(), ApiError> {
        let call = "plane.comment";
        let body = json!({"comment_html": format!("<p>{}</p>", escape_html(text)), "access": "INTERNAL"});
        self.http
            .send(call, Method::POST, &self.path(&format!("/work-items/{}/comments/", seg(id))), &[], Some(&body))
            .await?;
        Ok(())
    }
}

fn parse_work_item(call: &str, v: &Value) -> Result<WorkItem, ApiError> {
    let id = s(v, "id");
    if id.is_empty() {
        return Err(ApiError::invalid(call, "work item without id"));
    }
    let (state_id, state_name) = match v.get("state") {
        Some(Value::String(sid)) => (sid.clone(), None),
        Some(obj @ Value::Object(_)) => (s(obj, "id"), Some(s(obj, "name"))),
        _ => (s(v, "state_id"), None),
    };
    Ok(WorkItem {
        id,
        name: s(v, "name"),
        sequence_id: v.get("sequence_id").and_then(Value::as_u64).unwrap_or(0),
        state_id,
        state_name,
        description_html: s(v, "description_html"),
    })
}

/// Escapes `<`, `>`, `&` and quotes for HTML text.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
