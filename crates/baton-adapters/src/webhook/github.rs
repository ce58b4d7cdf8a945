//! GitHub webhooks: `X-GitHub-Event` names the event; the body is the documented payload.

use super::{
    CheckEvent, IssuePayload, ParseError, PullRequestPayload, Repository, StatusPayload, WebhookEvent, from_json,
};
use serde::Deserialize;

/// Issue actions Baton reads (others, e.g. `assigned`, `milestoned`, are ignored).
const ISSUE_ACTIONS: &[&str] = &["opened", "edited", "closed", "reopened", "labeled", "unlabeled"];

/// Parses one GitHub delivery. `issue_comment` and every other event Baton does not use are
/// [`WebhookEvent::Ignored`].
pub fn parse(event: &str, body: &[u8]) -> Result<WebhookEvent, ParseError> {
    match event {
        "ping" => Ok(WebhookEvent::Ping),
        "issues" => {
            let payload: IssuePayload = from_json(event, body)?;
            if !ISSUE_ACTIONS.contains(&payload.action.as_str()) {
                return Ok(WebhookEvent::Ignored { event: format!("issues.{}", super::bounded(&payload.action)) });
            }
            Ok(WebhookEvent::Issue(payload.into_event()))
        }
        "pull_request" => Ok(WebhookEvent::PullRequest(from_json::<PullRequestPayload>(event, body)?.into_event())),
        "check_run" => {
            let payload: CheckRunPayload = from_json(event, body)?;
            let run = payload.check_run;
            Ok(WebhookEvent::Check(CheckEvent {
                kind: "check_run".into(),
                action: payload.action,
                repo: payload.repository.map(|r| r.full_name).unwrap_or_default(),
                head_sha: run.head_sha,
                head_branch: run.check_suite.and_then(|s| s.head_branch),
                name: run.name,
                status: run.status,
                conclusion: run.conclusion,
            }))
        }
        "check_suite" => {
            let payload: CheckSuitePayload = from_json(event, body)?;
            let suite = payload.check_suite;
            Ok(WebhookEvent::Check(CheckEvent {
                kind: "check_suite".into(),
                action: payload.action,
                repo: payload.repository.map(|r| r.full_name).unwrap_or_default(),
                head_sha: suite.head_sha,
                head_branch: suite.head_branch,
                name: suite.app.map(|a| a.name).unwrap_or_default(),
                status: suite.status.unwrap_or_default(),
                conclusion: suite.conclusion,
            }))
        }
        "status" => Ok(WebhookEvent::Status(from_json::<StatusPayload>(event, body)?.into_event())),
        other => Ok(WebhookEvent::Ignored { event: super::bounded(other) }),
    }
}

#[derive(Deserialize)]
struct CheckRunPayload {
    action: String,
    check_run: CheckRun,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct CheckRun {
    name: String,
    head_sha: String,
    status: String,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    check_suite: Option<SuiteRef>,
}

#[derive(Deserialize)]
struct SuiteRef {
    #[serde(default)]
    head_branch: Option<String>,
}

#[derive(Deserialize)]
struct CheckSuitePayload {
    action: String,
    check_suite: CheckSuite,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct CheckSuite {
    head_sha: String,
    #[serde(default)]
    head_branch: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    app: Option<App>,
}

#[derive(Deserialize)]
struct App {
    name: String,
}
