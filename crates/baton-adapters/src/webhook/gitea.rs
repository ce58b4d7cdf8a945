//! Gitea and Forgejo webhooks. The event name is `X-Gitea-Event-Type` (fine: `issue_label`,
//! `pull_request_sync`, ...) or, when that is empty, `X-Gitea-Event` (coarse: `issues`,
//! `pull_request`); the receiver stores whichever it found first. Gitea 1.23.0 sent `status`
//! with an empty `X-Gitea-Event`, hence the order.

use super::{IssuePayload, ParseError, PullRequestPayload, StatusPayload, WebhookEvent, from_json};

/// Issue actions Baton reads; Gitea reports label changes as `label_updated`/`label_cleared`.
const ISSUE_ACTIONS: &[&str] = &["opened", "edited", "closed", "reopened", "label_updated", "label_cleared"];

/// Parses one Gitea delivery. Comments (`issue_comment`, `pull_request_comment`) and every
/// other event Baton does not use are [`WebhookEvent::Ignored`].
pub fn parse(event: &str, body: &[u8]) -> Result<WebhookEvent, ParseError> {
    match event {
        "issues" | "issue_label" => {
            let payload: IssuePayload = from_json(event, body)?;
            if !ISSUE_ACTIONS.contains(&payload.action.as_str()) {
                return Ok(WebhookEvent::Ignored { event: format!("{event}.{}", super::bounded(&payload.action)) });
            }
            Ok(WebhookEvent::Issue(payload.into_event()))
        }
        "pull_request" | "pull_request_sync" | "pull_request_label" => {
            Ok(WebhookEvent::PullRequest(from_json::<PullRequestPayload>(event, body)?.into_event()))
        }
        "status" => Ok(WebhookEvent::Status(from_json::<StatusPayload>(event, body)?.into_event())),
        other => Ok(WebhookEvent::Ignored { event: super::bounded(other) }),
    }
}
