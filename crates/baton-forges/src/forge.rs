//! The shapes shared by the GitHub and Gitea clients and the `ForgeApi` trait they implement.

use crate::error::ApiError;
use async_trait::async_trait;
use serde_json::Value;

/// A pull request as Baton needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: String,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub html_url: String,
    pub merged: bool,
}

/// What a new pull request holds.
#[derive(Debug, Clone)]
pub struct NewPullRequest {
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
}

/// How a PR is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeStyle {
    Merge,
    Squash,
    Rebase,
    /// Gitea's `fast-forward-only` (1.21+); GitHub has none and refuses it as `Invalid`.
    FastForwardOnly,
}

/// The CI verdict for one commit, from statuses and (on GitHub) check runs together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiState {
    /// No status and no check run at all: the repository may have no CI. The gate decides.
    NoChecks,
    /// At least one status or check is still running, none failed.
    Pending,
    /// Every status and check succeeded (or was skipped / neutral).
    Green,
    /// A status or check failed: its name, link and the log text the forge gives.
    Red { check: String, details_url: Option<String>, summary: Option<String> },
}

/// An issue (GitHub Issues, Gitea issues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: String,
    pub labels: Vec<String>,
    pub author: String,
    pub html_url: String,
}

/// What `config check --online` learns about the repository: it exists, the token sees it, and
/// whether the token may push (`None` when the forge does not say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    pub full_name: String,
    pub default_branch: String,
    pub can_push: Option<bool>,
}

/// A comment on an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub author: String,
    pub body: String,
    /// RFC 3339, as the forge wrote it.
    pub created_at: String,
}

/// A label added to an issue: who added which, when (GitHub issue events `labeled`, Gitea
/// timeline entries of type `label` that add).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelEvent {
    pub actor: String,
    pub label: String,
    pub created_at: String,
}

/// One forge repository (GitHub or Gitea/Forgejo) as an API.
#[async_trait]
pub trait ForgeApi: Send + Sync {
    /// `github` or `gitea`.
    fn kind(&self) -> &'static str;
    /// The repository itself (`GET /repos/{owner}/{name}`): proves the token and the name.
    async fn repository(&self) -> Result<RepoInfo, ApiError>;
    /// The open PR whose head is `branch` (find-before-create).
    async fn find_open_pr(&self, branch: &str) -> Result<Option<PullRequest>, ApiError>;
    async fn create_pr(&self, pr: &NewPullRequest) -> Result<PullRequest, ApiError>;
    /// Finds the open PR for `pr.head`, or creates it: calling twice opens one PR.
    async fn ensure_pr(&self, pr: &NewPullRequest) -> Result<PullRequest, ApiError> {
        if let Some(found) = self.find_open_pr(&pr.head).await? {
            return Ok(found);
        }
        self.create_pr(pr).await
    }
    async fn get_pr(&self, number: u64) -> Result<PullRequest, ApiError>;
    async fn update_pr(&self, number: u64, title: Option<&str>, body: Option<&str>) -> Result<PullRequest, ApiError>;
    /// Merges exactly `expected_head`; a moved head is `ApiError::Conflict`.
    async fn merge_pr(&self, number: u64, expected_head: &str, style: MergeStyle) -> Result<(), ApiError>;
    /// Deletes a branch; an already missing branch is success.
    async fn delete_branch(&self, branch: &str) -> Result<(), ApiError>;
    async fn ci_state(&self, sha: &str) -> Result<CiState, ApiError>;
    /// Open issues carrying `label`, every page.
    async fn list_issues_with_label(&self, label: &str) -> Result<Vec<Issue>, ApiError>;
    async fn get_issue(&self, number: u64) -> Result<Issue, ApiError>;
    async fn add_label(&self, number: u64, label: &str) -> Result<(), ApiError>;
    /// Removes a label; a label the issue does not carry is success.
    async fn remove_label(&self, number: u64, label: &str) -> Result<(), ApiError>;
    /// A status note. Comments never drive the pipeline.
    async fn comment(&self, number: u64, body: &str) -> Result<(), ApiError>;
    async fn close_issue(&self, number: u64) -> Result<(), ApiError>;
    /// The issue's comments (every page), those created at or after `since` (RFC 3339) when given.
    async fn list_comments(&self, number: u64, since: Option<&str>) -> Result<Vec<Comment>, ApiError>;
    /// Every label addition on the issue, oldest first (every page).
    async fn list_label_events(&self, number: u64) -> Result<Vec<LabelEvent>, ApiError>;
}

pub(crate) fn parse_comment(v: &Value) -> Comment {
    Comment {
        author: v.get("user").map(|u| s(u, "login")).unwrap_or_default(),
        body: s(v, "body"),
        created_at: s(v, "created_at"),
    }
}

pub(crate) fn s(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The open PR whose head is `branch` among a listing of PRs (GitHub and Gitea alike).
pub(crate) fn open_pr_for(call: &str, prs: &[Value], branch: &str) -> Result<Option<PullRequest>, ApiError> {
    for pr in prs {
        let pr = parse_pr(call, pr)?;
        if pr.head_ref == branch && pr.state == "open" {
            return Ok(Some(pr));
        }
    }
    Ok(None)
}

/// The body of a PR update: only the fields given.
pub(crate) fn pr_patch(title: Option<&str>, body: Option<&str>) -> Value {
    let mut patch = serde_json::Map::new();
    if let Some(t) = title {
        patch.insert("title".into(), Value::String(t.to_string()));
    }
    if let Some(b) = body {
        patch.insert("body".into(), Value::String(b.to_string()));
    }
    Value::Object(patch)
}

pub(crate) fn parse_repo(call: &str, v: &Value) -> Result<RepoInfo, ApiError> {
    let full_name = s(v, "full_name");
    if full_name.is_empty() {
        return Err(ApiError::invalid(call, "repository without full_name"));
    }
    let can_push = v.get("permissions").and_then(|p| p.get("push")).and_then(Value::as_bool);
    Ok(RepoInfo { full_name, default_branch: s(v, "default_branch"), can_push })
}

pub(crate) fn parse_pr(call: &str, v: &Value) -> Result<PullRequest, ApiError> {
    let number = v
        .get("number")
        .and_then(Value::as_u64)
        .ok_or_else(|| ApiError::invalid(call, "pull request without number"))?;
    let head = v.get("head").cloned().unwrap_or(Value::Null);
    let base = v.get("base").cloned().unwrap_or(Value::Null);
    Ok(PullRequest {
        number,
        title: s(v, "title"),
        body: s(v, "body"),
        state: s(v, "state"),
        head_ref: s(&head, "ref"),
        head_sha: s(&head, "sha"),
        base_ref: s(&base, "ref"),
        html_url: s(v, "html_url"),
        merged: v.get("merged").and_then(Value::as_bool).unwrap_or(false),
    })
}

pub(crate) fn parse_issue(call: &str, v: &Value) -> Result<Issue, ApiError> {
    let number =
        v.get("number").and_then(Value::as_u64).ok_or_else(|| ApiError::invalid(call, "issue without number"))?;
    let labels = v
        .get("labels")
        .and_then(Value::as_array)
        .map(|ls| ls.iter().map(|l| l.as_str().map(str::to_string).unwrap_or_else(|| s(l, "name"))).collect())
        .unwrap_or_default();
    Ok(Issue {
        number,
        title: s(v, "title"),
        body: s(v, "body"),
        state: s(v, "state"),
        labels,
        author: v.get("user").map(|u| s(u, "login")).unwrap_or_default(),
        html_url: s(v, "html_url"),
    })
}

/// Folds commit statuses (`state` or Gitea's `status`: pending|success|error|failure|warning)
/// and check runs into one verdict. A failure anywhere wins; then anything running; then green.
pub(crate) fn fold_ci(statuses: &[Value], check_runs: &[Value]) -> CiState {
    if statuses.is_empty() && check_runs.is_empty() {
        return CiState::NoChecks;
    }
    let mut pending = false;
    for st in statuses {
        let state = st.get("state").or_else(|| st.get("status")).and_then(Value::as_str).unwrap_or("");
        match state {
            "failure" | "error" => {
                return CiState::Red {
                    check: s(st, "context"),
                    details_url: st
                        .get("target_url")
                        .and_then(Value::as_str)
                        .filter(|u| !u.is_empty())
                        .map(str::to_string),
                    summary: st
                        .get("description")
                        .and_then(Value::as_str)
                        .filter(|d| !d.is_empty())
                        .map(str::to_string),
                };
            }
            "success" | "warning" => {}
            _ => pending = true,
        }
    }
    for run in check_runs {
        if s(run, "status") != "completed" {
            pending = true;
            continue;
        }
        match s(run, "conclusion").as_str() {
            "success" | "neutral" | "skipped" => {}
            _ => {
                let output = run.get("output").cloned().unwrap_or(Value::Null);
                let summary = [s(&output, "title"), s(&output, "summary"), s(&output, "text")]
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n");
                return CiState::Red {
                    check: s(run, "name"),
                    details_url: run.get("details_url").and_then(Value::as_str).map(str::to_string),
                    summary: (!summary.is_empty()).then(|| tail(&summary, 2000)),
                };
            }
        }
    }
    if pending { CiState::Pending } else { CiState::Green }
}

/// The last `max` bytes of a text, cut at a character boundary.
pub(crate) fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}
