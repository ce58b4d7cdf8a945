//! Typed parsers of the webhook payloads Baton uses (GitHub, Gitea/Forgejo, Plane).
//!
//! Each parser is a pure function of the sender's event name (the `X-GitHub-Event`,
//! `X-Gitea-Event-Type`/`X-Gitea-Event` or `X-Plane-Event` header) and the raw body, already
//! authenticated by the receiver. An event type Baton does not use is [`WebhookEvent::Ignored`],
//! never an error; comments are always ignored (they never drive the pipeline). A body that is
//! not the documented shape for an event Baton uses is a [`ParseError`].

pub mod gitea;
pub mod github;
pub mod plane;

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a webhook came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Github,
    Gitea,
    Plane,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Github, Source::Gitea, Source::Plane];

    /// The lowercase name used in URLs, configuration keys and the inbox.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Github => "github",
            Source::Gitea => "gitea",
            Source::Plane => "plane",
        }
    }

    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a stored delivery of `source`: dispatches to [`github::parse`], [`gitea::parse`] or
/// [`plane::parse`].
pub fn parse(source: Source, event: &str, body: &[u8]) -> Result<WebhookEvent, ParseError> {
    match source {
        Source::Github => github::parse(event, body),
        Source::Gitea => gitea::parse(event, body),
        Source::Plane => plane::parse(event, body),
    }
}

/// One parsed webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WebhookEvent {
    /// An issue changed on a forge (GitHub `issues`, Gitea `issues`/`issue_label`).
    Issue(IssueEvent),
    /// A pull request changed (a merge is `action: closed` with `merged: true`).
    PullRequest(PullRequestEvent),
    /// A GitHub check run or check suite changed.
    Check(CheckEvent),
    /// A commit status was set (GitHub `status`, Gitea ≥ 1.23 `status`).
    Status(StatusEvent),
    /// A Plane work item was created, updated (one delivery per changed field) or deleted.
    WorkItem(WorkItemEvent),
    /// The sender's test delivery (GitHub `ping`).
    Ping,
    /// An event Baton does not act on.
    Ignored { event: String },
}

impl WebhookEvent {
    /// One line for logs and the inbox row: what happened to what. Control characters from the
    /// payload become `?` and the line is cut at 300 characters.
    pub fn summary(&self) -> String {
        let text = self.describe();
        let mut line: String = text.chars().take(300).map(|c| if c.is_control() { '?' } else { c }).collect();
        if text.chars().count() > 300 {
            line.push('…');
        }
        line
    }

    fn describe(&self) -> String {
        match self {
            WebhookEvent::Issue(e) => format!("issue {}#{} {}", e.repo, e.number, e.action),
            WebhookEvent::PullRequest(e) => {
                let merged = if e.merged { " (merged)" } else { "" };
                format!("pull request {}#{} {}{merged}", e.repo, e.number, e.action)
            }
            WebhookEvent::Check(e) => format!(
                "{} `{}` on {} {} {}",
                e.kind,
                e.name,
                e.head_sha,
                e.status,
                e.conclusion.as_deref().unwrap_or("-")
            ),
            WebhookEvent::Status(e) => format!("status `{}` on {} {}", e.context, e.sha, e.state),
            WebhookEvent::WorkItem(e) => {
                let state = e.state_name.as_deref().unwrap_or("-");
                format!("work item {} {} (state {state})", e.id, e.action)
            }
            WebhookEvent::Ping => "ping".into(),
            WebhookEvent::Ignored { event } => format!("ignored `{event}`"),
        }
    }
}

/// An issue event from a forge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueEvent {
    /// `opened`, `edited`, `closed`, `reopened`, `labeled`, `unlabeled` (GitHub); Gitea's
    /// `label_updated`/`label_cleared` are reported as they come.
    pub action: String,
    /// `owner/name`.
    pub repo: String,
    pub number: u64,
    pub title: String,
    pub body: String,
    /// Every label the issue has now.
    pub labels: Vec<String>,
    /// The label this delivery added or removed (GitHub `labeled`/`unlabeled`).
    pub label: Option<String>,
    /// The issue's author (login).
    pub author: String,
    /// `open` or `closed`.
    pub state: String,
    /// Who caused the delivery (login).
    pub sender: String,
}

/// A pull-request event from a forge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequestEvent {
    pub action: String,
    pub repo: String,
    pub number: u64,
    pub title: String,
    pub state: String,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub merged: bool,
    pub merge_commit_sha: Option<String>,
    pub labels: Vec<String>,
}

/// A GitHub check run or check suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckEvent {
    /// `check_run` or `check_suite`.
    pub kind: String,
    pub action: String,
    pub repo: String,
    pub head_sha: String,
    pub head_branch: Option<String>,
    /// The check run's name, or the suite's app name.
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// Once completed: `success`, `failure`, `cancelled`, `timed_out`, ...
    pub conclusion: Option<String>,
}

/// A commit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusEvent {
    pub repo: String,
    pub sha: String,
    /// `pending`, `success`, `failure`, `error` (and Gitea's `warning`).
    pub state: String,
    pub context: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
}

/// What happened to a Plane work item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkItemAction {
    Created,
    Updated,
    Deleted,
}

impl fmt::Display for WorkItemAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkItemAction::Created => "created",
            WorkItemAction::Updated => "updated",
            WorkItemAction::Deleted => "deleted",
        })
    }
}

/// A Plane work item (`issue`) event. A deletion carries only the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkItemEvent {
    pub action: WorkItemAction,
    pub id: String,
    pub sequence_id: Option<u64>,
    pub name: Option<String>,
    pub description_html: Option<String>,
    pub state_id: Option<String>,
    pub state_name: Option<String>,
    /// `backlog`, `unstarted`, `started`, `completed` or `cancelled`.
    pub state_group: Option<String>,
    pub project: Option<String>,
    pub workspace: Option<String>,
    pub labels: Vec<String>,
    /// On an update: the field this delivery is about (`state`, `state_id`, `name`, ...).
    pub changed_field: Option<String>,
    /// Who made the change (display name).
    pub actor: Option<String>,
}

/// A body that is not the documented shape of an event Baton uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{event}` payload: {message}")]
pub struct ParseError {
    pub event: String,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(event: &str, message: impl Into<String>) -> Self {
        // Bounded: the message may quote the body.
        let mut message: String = message.into();
        if message.len() > 300 {
            let mut end = 300;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        ParseError { event: bounded(event), message }
    }
}

/// An event name as it may be quoted: at most 64 characters.
fn bounded(text: &str) -> String {
    text.chars().take(64).collect()
}

fn from_json<'a, T: Deserialize<'a>>(event: &str, body: &'a [u8]) -> Result<T, ParseError> {
    serde_json::from_slice(body).map_err(|e| ParseError::new(event, e.to_string()))
}

// ---------------------------------------------------------------- shapes shared by GitHub and Gitea
// Gitea's payloads follow GitHub's for the fields Baton reads.

#[derive(Deserialize)]
pub(crate) struct Repository {
    #[serde(default)]
    pub(crate) full_name: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct User {
    #[serde(default)]
    pub(crate) login: String,
}

#[derive(Deserialize)]
pub(crate) struct Label {
    pub(crate) name: String,
}

#[derive(Deserialize)]
pub(crate) struct IssuePayload {
    pub(crate) action: String,
    pub(crate) issue: Issue,
    pub(crate) label: Option<Label>,
    pub(crate) repository: Option<Repository>,
    pub(crate) sender: Option<User>,
}

#[derive(Deserialize)]
pub(crate) struct Issue {
    pub(crate) number: u64,
    pub(crate) title: String,
    #[serde(default)]
    pub(crate) body: Option<String>,
    #[serde(default)]
    pub(crate) labels: Option<Vec<Label>>,
    #[serde(default)]
    pub(crate) user: Option<User>,
    #[serde(default)]
    pub(crate) state: Option<String>,
}

impl IssuePayload {
    pub(crate) fn into_event(self) -> IssueEvent {
        IssueEvent {
            action: self.action,
            repo: self.repository.map(|r| r.full_name).unwrap_or_default(),
            number: self.issue.number,
            title: self.issue.title,
            body: self.issue.body.unwrap_or_default(),
            labels: names(self.issue.labels),
            label: self.label.map(|l| l.name),
            author: self.issue.user.unwrap_or_default().login,
            state: self.issue.state.unwrap_or_default(),
            sender: self.sender.unwrap_or_default().login,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct PullRequestPayload {
    pub(crate) action: String,
    pub(crate) number: Option<u64>,
    pub(crate) pull_request: PullRequest,
    pub(crate) repository: Option<Repository>,
}

#[derive(Deserialize)]
pub(crate) struct PullRequest {
    pub(crate) number: u64,
    #[serde(default)]
    pub(crate) title: String,
    #[serde(default)]
    pub(crate) state: String,
    pub(crate) head: Branch,
    pub(crate) base: Branch,
    #[serde(default)]
    pub(crate) merged: Option<bool>,
    #[serde(default)]
    pub(crate) merge_commit_sha: Option<String>,
    #[serde(default)]
    pub(crate) labels: Option<Vec<Label>>,
}

#[derive(Deserialize)]
pub(crate) struct Branch {
    #[serde(rename = "ref")]
    pub(crate) name: String,
    pub(crate) sha: String,
}

impl PullRequestPayload {
    pub(crate) fn into_event(self) -> PullRequestEvent {
        let pr = self.pull_request;
        PullRequestEvent {
            action: self.action,
            repo: self.repository.map(|r| r.full_name).unwrap_or_default(),
            number: self.number.unwrap_or(pr.number),
            title: pr.title,
            state: pr.state,
            head_ref: pr.head.name,
            head_sha: pr.head.sha,
            base_ref: pr.base.name,
            merged: pr.merged.unwrap_or(false),
            merge_commit_sha: pr.merge_commit_sha.filter(|sha| !sha.is_empty()),
            labels: names(pr.labels),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct StatusPayload {
    pub(crate) sha: String,
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) context: String,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) target_url: Option<String>,
    pub(crate) repository: Option<Repository>,
}

impl StatusPayload {
    pub(crate) fn into_event(self) -> StatusEvent {
        StatusEvent {
            repo: self.repository.map(|r| r.full_name).unwrap_or_default(),
            sha: self.sha,
            state: self.state,
            context: self.context,
            description: self.description.filter(|d| !d.is_empty()),
            target_url: self.target_url.filter(|u| !u.is_empty()),
        }
    }
}

fn names(labels: Option<Vec<Label>>) -> Vec<String> {
    labels.unwrap_or_default().into_iter().map(|l| l.name).collect()
}
