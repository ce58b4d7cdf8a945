//! Ticket intake from forge issues (SPEC §8): a [`WebhookSink`] that turns "this issue got the start
//! label" into a task. One rule per `[[trackers]]` entry maps a forge repository (`owner/name`) to
//! a Baton repository, with the label that starts a ticket and an optional author allowlist.
//!
//! The ticket's reference (`github:owner/name#42`) is the task's external reference, so a repeated
//! or replayed label event finds the live task and creates nothing. The issue's title and body
//! reach the agent only as prompt content; text a task may not hold (control characters, length
//! past the limits) is cleaned, never refused, so a ticket is not silently dropped. Other events
//! (comments above all) never drive the pipeline.
//!
//! Human decisions by label: the rule's approve, deploy and stop labels (and closing the issue,
//! a STOP) go to the ticket's live task through `Engine::submit`, recorded as made by
//! `tracker:<source>:<login>`, so `decide` judges them like any other input (an approve with
//! nothing awaiting approval changes nothing). An `approvers` list limits who may decide.

use crate::webhooks::{LogSink, WebhookSink};
use crate::{Engine, EngineError, Input, NewTaskRequest};
use async_trait::async_trait;
use baton_adapters::webhook::{IssueEvent, WebhookEvent};
use baton_domain::text::{forbidden_in_line, forbidden_in_text};
use baton_store::{DeliveryRecord, StoreError, TaskFilter, TaskKey};

/// Which forge a rule listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntakeSource {
    Github,
    Gitea,
}

impl IntakeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            IntakeSource::Github => "github",
            IntakeSource::Gitea => "gitea",
        }
    }
}

/// One `[[trackers]]` entry: issues of `forge_repo` labelled `start_label` become tasks in `repo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeRule {
    pub source: IntakeSource,
    /// `owner/name` on the forge.
    pub forge_repo: String,
    /// The Baton repository the tasks belong to.
    pub repo: String,
    pub start_label: String,
    /// Logins whose issues may start tickets; empty: anyone who can label.
    pub authors: Vec<String>,
    /// Labels that decide the human gates on the live task: approve the analysis, confirm the
    /// deploy, STOP. (Closing the issue is a STOP too.)
    pub approve_label: String,
    pub deploy_label: String,
    pub stop_label: String,
    /// Logins whose labels and closes may decide; empty: anyone who can label. Never give an
    /// agent a forge token of one of them.
    pub approvers: Vec<String>,
}

impl IntakeRule {
    /// The human decision an issue event makes on the ticket's live task, if any.
    fn decision(&self, issue: &IssueEvent) -> Option<Input> {
        match (issue.action.as_str(), issue.label.as_deref()) {
            ("closed", _) => Some(Input::Stop),
            ("labeled", Some(label)) if label == self.approve_label => Some(Input::Approve),
            ("labeled", Some(label)) if label == self.deploy_label => Some(Input::ConfirmDeploy),
            ("labeled", Some(label)) if label == self.stop_label => Some(Input::Stop),
            _ => None,
        }
    }
}

/// What the intake made of one issue event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// Not a start of a ticket for any rule (another label, another repo, a closed issue, …).
    NotForUs(String),
    Created(String),
    /// The ticket already has its live task.
    AlreadyLive(String),
    /// The author (or, for a decision, the sender) is not on the rule's allowlist.
    Refused(String),
    /// A human decision reached the live task: what the engine made of it.
    Decided(String),
}

/// The sink: issue events go through the rules, every event is also logged.
#[derive(Debug, Default)]
pub struct IntakeSink {
    rules: Vec<IntakeRule>,
}

impl IntakeSink {
    pub fn new(rules: Vec<IntakeRule>) -> Self {
        IntakeSink { rules }
    }

    /// Applies the rules to one issue event from `source` (`github` or `gitea`).
    pub async fn take(&self, engine: &Engine, source: &str, issue: &IssueEvent) -> Result<IntakeOutcome, EngineError> {
        let Some(rule) =
            self.rules.iter().find(|r| r.source.as_str() == source && r.forge_repo.eq_ignore_ascii_case(&issue.repo))
        else {
            return Ok(IntakeOutcome::NotForUs(format!("no [[trackers]] entry for {source} {}", issue.repo)));
        };
        let reference = format!("{source}:{}#{}", issue.repo, issue.number);
        if let Some(input) = rule.decision(issue) {
            return self.decide(engine, rule, &reference, issue, input).await;
        }
        let labelled_now = match issue.action.as_str() {
            "labeled" => issue.label.as_deref() == Some(rule.start_label.as_str()),
            "opened" | "reopened" | "label_updated" => issue.labels.iter().any(|l| l == &rule.start_label),
            _ => false,
        };
        if !labelled_now || issue.state == "closed" {
            return Ok(IntakeOutcome::NotForUs(format!(
                "{} #{}: `{}` does not start a ticket (start label `{}`)",
                issue.repo, issue.number, issue.action, rule.start_label
            )));
        }
        if !rule.authors.is_empty() && !rule.authors.iter().any(|a| a.eq_ignore_ascii_case(&issue.author)) {
            return Ok(IntakeOutcome::Refused(format!(
                "{reference}: author `{}` is not in the tracker's `authors` list",
                issue.author
            )));
        }
        let limits = &engine.settings().limits;
        let request = NewTaskRequest {
            repo: rule.repo.clone(),
            title: clean_title(&issue.title, issue.number, limits.title_chars_max),
            body: clean_body(&issue.body, limits.body_bytes_max),
            external_ref: Some(reference.clone()),
        };
        match engine.create_task(request).await {
            Ok(task) => Ok(IntakeOutcome::Created(format!("{reference} → {}", task.work_item_id))),
            Err(EngineError::Store(StoreError::Exists(task))) => {
                Ok(IntakeOutcome::AlreadyLive(format!("{reference} already has {}", task.work_item_id)))
            }
            Err(other) => Err(other),
        }
    }
}

impl IntakeSink {
    /// Hands a decision by label or close to the ticket's live task, recorded as made by
    /// `tracker:<source>:<sender>`; a ticket without a live task, or a sender off the approvers
    /// list, changes nothing.
    async fn decide(
        &self,
        engine: &Engine,
        rule: &IntakeRule,
        reference: &str,
        issue: &IssueEvent,
        input: Input,
    ) -> Result<IntakeOutcome, EngineError> {
        if !rule.approvers.is_empty() && !rule.approvers.iter().any(|a| a.eq_ignore_ascii_case(&issue.sender)) {
            return Ok(IntakeOutcome::Refused(format!(
                "{reference}: `{}` by `{}`, who is not in the tracker's `approvers` list",
                input.kind(),
                issue.sender
            )));
        }
        let active =
            engine.store().list_tasks(&TaskFilter { active_only: true, repo: Some(rule.repo.clone()) }).await?;
        let Some(task) = active.iter().find(|t| t.external_ref.as_deref() == Some(reference)) else {
            return Ok(IntakeOutcome::NotForUs(format!("{reference}: no live task for `{}`", input.kind())));
        };
        let by = format!("tracker:{}:{}", rule.source.as_str(), issue.sender);
        let outcome = engine.submit(&TaskKey::Id(task.id), input.clone(), &by, None).await?;
        Ok(IntakeOutcome::Decided(format!("{reference} {} by {by}: {outcome:?}", input.kind())))
    }
}

#[async_trait]
impl WebhookSink for IntakeSink {
    async fn handle(&self, engine: &Engine, delivery: &DeliveryRecord, event: &WebhookEvent) -> Result<(), String> {
        LogSink.handle(engine, delivery, event).await?;
        let WebhookEvent::Issue(issue) = event else {
            return Ok(());
        };
        match self.take(engine, &delivery.source, issue).await {
            Ok(IntakeOutcome::Created(what) | IntakeOutcome::Decided(what)) => tracing::info!("intake: {what}"),
            Ok(IntakeOutcome::Refused(why)) => tracing::warn!("intake refused: {why}"),
            Ok(IntakeOutcome::AlreadyLive(what) | IntakeOutcome::NotForUs(what)) => tracing::debug!("intake: {what}"),
            // A configuration problem (an unknown repository): retrying cannot help.
            Err(EngineError::Invalid(why)) => tracing::warn!("intake could not create the task: {why}"),
            // The database: leave the delivery pending, the next pass tries again.
            Err(other) => return Err(other.to_string()),
        }
        Ok(())
    }
}

/// A title a task may hold: control and bidi characters become spaces, runs of spaces one, at
/// most `max` characters; `issue #N` when nothing is left.
fn clean_title(title: &str, number: u64, max: usize) -> String {
    let spaced: String = title.chars().map(|c| if forbidden_in_line(c) { ' ' } else { c }).collect();
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let joined: String = words.join(" ").chars().take(max).collect();
    if joined.trim().is_empty() { format!("issue #{number}") } else { joined.trim().to_string() }
}

/// A body a task may hold: forbidden control characters dropped, cut at `max` bytes on a
/// character boundary with a note that it was cut.
fn clean_body(body: &str, max: usize) -> String {
    let kept: String = body.chars().filter(|c| !forbidden_in_text(*c)).collect();
    if kept.len() <= max {
        return kept;
    }
    const NOTE: &str = "\n\n[… cut at the body limit]";
    let mut end = max.saturating_sub(NOTE.len());
    while !kept.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{NOTE}", &kept[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    // Titles lose control and bidi characters and are bounded; an empty one gets a name.
    #[test]
    fn titles_are_cleaned_not_refused() {
        assert_eq!(clean_title("Fix\u{1b}[2J the\nlogin\u{202e}", 7, 200), "Fix [2J the login");
        assert_eq!(clean_title("\u{7}\u{0}", 7, 200), "issue #7");
        assert_eq!(clean_title("ééééé", 1, 3), "ééé");
    }

    // Bodies lose NUL and friends and are cut on a character boundary with a note.
    #[test]
    fn bodies_are_cleaned_and_bounded() {
        assert_eq!(clean_body("a\u{0}b\nc", 100), "ab\nc");
        let long = "é".repeat(100);
        let cut = clean_body(&long, 60);
        assert!(cut.len() <= 60 && cut.ends_with("[… cut at the body limit]"), "{cut}");
    }
}
