//! Trackers mirror task status to where tickets live (SPEC §8). The built-in default is Baton's own
//! task list; GitHub/Gitea issues (status labels) and Plane (project states) sit behind the same
//! [`Tracker`] port, and a [`TicketPoller`] recovers what a lost webhook would have said.

use crate::webhook::WebhookEvent;
use async_trait::async_trait;
use baton_domain::{Hold, TaskState, pipeline};
use serde::{Deserialize, Serialize};

/// A task's status as a ticket shows it: one value per SPEC §8 state Baton writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    /// A stage is queued or running (analysis, implementation, review, tests, …).
    InProgress,
    /// The agent asked questions: a human answer relaunches the stage.
    NeedsInput,
    /// Waiting for a human to approve the analysis (stop #1).
    InReview,
    /// Waiting for a human to confirm the deploy (stop #2).
    AwaitingDeploy,
    /// The merge-and-deploy step is running.
    Deploying,
    /// Merged (and deployed): final.
    Done,
    /// STOP: cancelled, final.
    Stopped,
    /// Retries used up, a budget cap reached, or a failure only a human can fix.
    Blocked,
}

impl TicketStatus {
    pub const ALL: [TicketStatus; 8] = [
        TicketStatus::InProgress,
        TicketStatus::NeedsInput,
        TicketStatus::InReview,
        TicketStatus::AwaitingDeploy,
        TicketStatus::Deploying,
        TicketStatus::Done,
        TicketStatus::Stopped,
        TicketStatus::Blocked,
    ];

    /// The status of a task in `state`; `deploy_stage` says whether its stage is the
    /// merge-and-deploy step (the pipeline knows, the state does not).
    pub fn of(state: &TaskState, deploy_stage: bool) -> TicketStatus {
        if state.stage == pipeline::DONE {
            return TicketStatus::Done;
        }
        if state.stage == pipeline::CANCELLED {
            return TicketStatus::Stopped;
        }
        match state.hold {
            Hold::NeedsInput { .. } => TicketStatus::NeedsInput,
            Hold::AwaitingApproval => TicketStatus::InReview,
            Hold::AwaitingConfirm => TicketStatus::AwaitingDeploy,
            // Confirmed and on its way: the merge queue tests, lands and deploys it.
            Hold::MergeQueue => TicketStatus::Deploying,
            // Deployed, its post-deploy monitor window still open: not done until it closes green.
            Hold::Monitoring { .. } => TicketStatus::Deploying,
            Hold::Blocked { .. } | Hold::PausedBudget { .. } => TicketStatus::Blocked,
            Hold::None | Hold::PausedQuota { .. } if deploy_stage => TicketStatus::Deploying,
            Hold::None | Hold::PausedQuota { .. } => TicketStatus::InProgress,
        }
    }

    /// The status a display string (`stage` or `stage (hold)`) stands for, for outbox rows
    /// written before statuses were structured. A stage named `deploy` counts as deploying.
    pub fn from_display(status: &str) -> TicketStatus {
        let (stage, hold) = match status.split_once(" (") {
            Some((stage, hold)) => (stage.trim(), hold.trim_end_matches(')').trim()),
            None => (status.trim(), ""),
        };
        match (stage, hold) {
            (pipeline::DONE, _) => TicketStatus::Done,
            (pipeline::CANCELLED, _) => TicketStatus::Stopped,
            (_, "needs_input") => TicketStatus::NeedsInput,
            (_, "blocked") | (_, "paused_budget") => TicketStatus::Blocked,
            (_, "awaiting_approval") => TicketStatus::InReview,
            (_, "awaiting_confirm") => TicketStatus::AwaitingDeploy,
            (_, "merge_queue") | (_, "monitoring") | ("deploy", _) => TicketStatus::Deploying,
            _ => TicketStatus::InProgress,
        }
    }

    /// The kebab-case name used in status labels (`in-progress`, `needs-input`, …).
    pub fn slug(self) -> &'static str {
        match self {
            TicketStatus::InProgress => "in-progress",
            TicketStatus::NeedsInput => "needs-input",
            TicketStatus::InReview => "in-review",
            TicketStatus::AwaitingDeploy => "awaiting-deploy",
            TicketStatus::Deploying => "deploying",
            TicketStatus::Done => "done",
            TicketStatus::Stopped => "stopped",
            TicketStatus::Blocked => "blocked",
        }
    }

    /// Done and Stopped: a ticket in one of them never moves again on Baton's account.
    pub fn is_final(self) -> bool {
        matches!(self, TicketStatus::Done | TicketStatus::Stopped)
    }
}

/// A task change as a tracker sees it.
#[derive(Debug, Clone)]
pub struct TrackerUpdate {
    pub work_item: String,
    /// The ticket (`github:owner/name#42`, `gitea:owner/name#7`, `plane:<project>/<item>`).
    pub external_ref: Option<String>,
    pub title: String,
    /// The task's branch (named in the note written when the ticket is done).
    pub branch: String,
    pub status: TicketStatus,
    /// `stage` or `stage (hold)`, for humans.
    pub display: String,
}

/// A comment a human posted on a ticket (prompt content only: comments never trigger anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketComment {
    /// Login (GitHub, Gitea) or display name (Plane).
    pub author: String,
    /// Plain text.
    pub body: String,
    pub at_ms: i64,
}

/// The first line of every comment Baton writes on a ticket; comments that start with it are
/// Baton's own and never part of an answer.
pub const BATON_COMMENT_MARK: &str = "**Baton**";

/// A ticket tracker (Plane, GitHub Issues, Gitea issues; built-in: none needed).
#[async_trait]
pub trait Tracker: Send + Sync {
    fn name(&self) -> &str;

    /// Mirrors a task's status. Idempotent (a repeated update changes nothing); observers never
    /// fail a transition: errors are retried by the outbox.
    async fn task_changed(&self, update: &TrackerUpdate) -> Result<(), crate::AdapterError>;

    /// The human comments on the ticket `external_ref` posted at or after `since_ms`, oldest
    /// first (Baton's own comments left out). A ticket this tracker does not hold has none.
    async fn comments_since(
        &self,
        external_ref: &str,
        since_ms: i64,
    ) -> Result<Vec<TicketComment>, crate::AdapterError>;

    /// The name of the workflow state `state_id` of the ticket's project (Plane webhooks may carry
    /// only the id); `None` when this tracker has no such state or no states at all.
    async fn state_name(&self, external_ref: &str, state_id: &str) -> Result<Option<String>, crate::AdapterError>;

    /// The external reference of the ticket this tracker knows by `key` (Plane's `PROJ-12`), if
    /// it has one; trackers without such keys have none.
    async fn ticket_by_key(&self, _key: &str) -> Result<Option<String>, crate::AdapterError> {
        Ok(None)
    }

    /// The external references of the tickets the ticket `external_ref` is blocked by in the
    /// tracker's own relations (Plane's `blocked_by`); trackers without such relations have none.
    async fn blocked_by(&self, _external_ref: &str) -> Result<Vec<String>, crate::AdapterError> {
        Ok(Vec::new())
    }
}

/// The built-in tracker: Baton's own tasks (CLI, API). Mirroring is a no-op.
#[derive(Debug, Default, Clone)]
pub struct LocalTracker;

#[async_trait]
impl Tracker for LocalTracker {
    fn name(&self) -> &str {
        "local"
    }

    async fn task_changed(&self, _update: &TrackerUpdate) -> Result<(), crate::AdapterError> {
        Ok(())
    }

    async fn comments_since(
        &self,
        _external_ref: &str,
        _since_ms: i64,
    ) -> Result<Vec<TicketComment>, crate::AdapterError> {
        Ok(Vec::new())
    }

    async fn state_name(&self, _external_ref: &str, _state_id: &str) -> Result<Option<String>, crate::AdapterError> {
        Ok(None)
    }
}

/// Routes each update to the tracker of its ticket, by the external reference's prefix
/// (`github:owner/name#`, `gitea:owner/name#`, `plane:<project>/`; the longest that matches wins).
/// A task without a reference, or with one no tracker claims, goes to the built-in [`LocalTracker`].
#[derive(Default, Clone)]
pub struct TrackerSet {
    routes: Vec<(String, std::sync::Arc<dyn Tracker>)>,
}

impl std::fmt::Debug for TrackerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.routes.iter().map(|(prefix, t)| (prefix, t.name()))).finish()
    }
}

impl TrackerSet {
    pub fn new() -> Self {
        TrackerSet::default()
    }

    /// Adds the tracker of the tickets whose references start with `ref_prefix`.
    pub fn with(mut self, ref_prefix: impl Into<String>, tracker: std::sync::Arc<dyn Tracker>) -> Self {
        self.routes.push((ref_prefix.into(), tracker));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The tracker of the ticket `external_ref`, if one claims it.
    pub fn route(&self, external_ref: &str) -> Option<&dyn Tracker> {
        self.routes
            .iter()
            .filter(|(prefix, _)| external_ref.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, tracker)| tracker.as_ref())
    }
}

#[async_trait]
impl Tracker for TrackerSet {
    fn name(&self) -> &str {
        "set"
    }

    async fn task_changed(&self, update: &TrackerUpdate) -> Result<(), crate::AdapterError> {
        match update.external_ref.as_deref().and_then(|r| self.route(r)) {
            Some(tracker) => tracker.task_changed(update).await,
            None => LocalTracker.task_changed(update).await,
        }
    }

    async fn comments_since(
        &self,
        external_ref: &str,
        since_ms: i64,
    ) -> Result<Vec<TicketComment>, crate::AdapterError> {
        match self.route(external_ref) {
            Some(tracker) => tracker.comments_since(external_ref, since_ms).await,
            None => Ok(Vec::new()),
        }
    }

    async fn state_name(&self, external_ref: &str, state_id: &str) -> Result<Option<String>, crate::AdapterError> {
        match self.route(external_ref) {
            Some(tracker) => tracker.state_name(external_ref, state_id).await,
            None => Ok(None),
        }
    }

    async fn ticket_by_key(&self, key: &str) -> Result<Option<String>, crate::AdapterError> {
        for (_, tracker) in &self.routes {
            if let Some(found) = tracker.ticket_by_key(key).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    async fn blocked_by(&self, external_ref: &str) -> Result<Vec<String>, crate::AdapterError> {
        match self.route(external_ref) {
            Some(tracker) => tracker.blocked_by(external_ref).await,
            None => Ok(Vec::new()),
        }
    }
}

/// Plain text of a ticket's HTML (Plane's `description_html`, `comment_html`): tags dropped,
/// block ends and `<br>` become line breaks, the common entities decoded, runs of blank lines
/// folded to one.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..open]));
        let Some(close) = rest[open..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[open + 1..open + close].trim().to_ascii_lowercase();
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        let block = matches!(
            name.as_str(),
            "br" | "p"
                | "div"
                | "li"
                | "ul"
                | "ol"
                | "h1"
                | "h2"
                | "h3"
                | "h4"
                | "h5"
                | "h6"
                | "pre"
                | "blockquote"
                | "tr"
        );
        let closes = name == "br" || tag.starts_with('/');
        if block && (closes || (name == "li" && !out.is_empty() && !out.ends_with('\n'))) {
            out.push('\n');
        }
        if name == "li" && !tag.starts_with('/') {
            out.push_str("- ");
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(&decode_entities(rest));
    let mut folded = String::with_capacity(out.len());
    let mut blank_run = 0;
    for line in out.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank_run += 1;
            if blank_run > 1 || folded.is_empty() {
                continue;
            }
        } else {
            blank_run = 0;
        }
        folded.push_str(line);
        folded.push('\n');
    }
    folded.trim_end().to_string()
}

fn decode_entities(text: &str) -> String {
    text.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// Lists a tracker's tickets and reports what it finds as the webhook events that would have
/// said it (SPEC §7: a lost webhook costs at most one poll interval). What it returns goes through
/// the same intake as deliveries, so reporting a ticket again changes nothing.
#[async_trait]
pub trait TicketPoller: Send + Sync {
    /// `github`, `gitea` or `plane`: the source the events are judged as.
    fn source(&self) -> &str;

    /// The prefix of the external references of the tickets it polls (`github:owner/name#`,
    /// `plane:<project>/`): the live tasks whose tickets it checks are those with it.
    fn ref_prefix(&self) -> String;

    /// One poll at `now_ms` when one is due: `Ok(None)` while it is not (the interval has not
    /// passed, a rate limit's wait or an error's back-off is running). `live_refs` are the
    /// external references of the live tasks of this tracker (to see a ticket closed).
    async fn poll(&self, now_ms: i64, live_refs: &[String]) -> Result<Option<Vec<WebhookEvent>>, crate::AdapterError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    // The status follows the hold, then the stage: done and cancelled win over any hold.
    #[test]
    fn status_follows_the_task_state() {
        let mut state = TaskState::new("analysis");
        assert_eq!(TicketStatus::of(&state, false), TicketStatus::InProgress);
        assert_eq!(TicketStatus::of(&state, true), TicketStatus::Deploying);
        state.hold = Hold::AwaitingApproval;
        assert_eq!(TicketStatus::of(&state, false), TicketStatus::InReview);
        state.hold = Hold::AwaitingConfirm;
        assert_eq!(TicketStatus::of(&state, true), TicketStatus::AwaitingDeploy);
        state.hold = Hold::NeedsInput { questions: "which?".into() };
        assert_eq!(TicketStatus::of(&state, false), TicketStatus::NeedsInput);
        state.hold = Hold::Blocked { reason: "tests".into() };
        assert_eq!(TicketStatus::of(&state, false), TicketStatus::Blocked);
        state.stage = pipeline::DONE.into();
        assert_eq!(TicketStatus::of(&state, false), TicketStatus::Done);
        state.stage = pipeline::CANCELLED.into();
        assert_eq!(TicketStatus::of(&state, false), TicketStatus::Stopped);
    }

    // HTML becomes readable text: tags gone, paragraphs and items on their own lines.
    #[test]
    fn html_becomes_plain_text() {
        let html =
            "<p>Fix the <strong>login</strong> &amp; signup</p><ul><li>one</li><li>two</li></ul><p></p><p>a<br/>b</p>";
        assert_eq!(html_to_text(html), "Fix the login & signup\n- one\n- two\n\na\nb");
        assert_eq!(html_to_text("plain &lt;tag&gt;"), "plain <tag>");
    }

    // Old outbox rows carry only the display string; it maps to the same statuses.
    #[test]
    fn display_strings_map_to_statuses() {
        assert_eq!(TicketStatus::from_display("analysis (awaiting_approval)"), TicketStatus::InReview);
        assert_eq!(TicketStatus::from_display("deploy (awaiting_confirm)"), TicketStatus::AwaitingDeploy);
        assert_eq!(TicketStatus::from_display("deploy"), TicketStatus::Deploying);
        assert_eq!(TicketStatus::from_display("implement (needs_input)"), TicketStatus::NeedsInput);
        assert_eq!(TicketStatus::from_display("done"), TicketStatus::Done);
        assert_eq!(TicketStatus::from_display("cancelled"), TicketStatus::Stopped);
        assert_eq!(TicketStatus::from_display("review"), TicketStatus::InProgress);
    }
}
