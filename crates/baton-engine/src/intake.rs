//! Ticket intake (SPEC §8): a [`WebhookSink`] that turns "this issue got the start label" or
//! "this Plane work item moved to the start state" into a task, and the human decisions a ticket
//! carries (labels on GitHub/Gitea, states on Plane) into inputs of the ticket's live task. One
//! rule per `[[trackers]]` entry maps a forge repository (`owner/name`) or a Plane project to a
//! Baton repository. Polled tickets (`TicketPoller`) come through here too, as the events a
//! webhook would have carried, so a lost webhook and a replayed one end the same way.
//!
//! The ticket's reference (`github:owner/name#42`, `plane:<project>/<work-item>`) is the task's
//! external reference, so a repeated or replayed start finds the live task and creates nothing;
//! a ticket started again after STOP gets a fresh task (the cancelled one gave the reference up).
//! The ticket's title and body reach the agent only as prompt content; text a task may not hold
//! is cleaned, never refused, so a ticket is not silently dropped. Comments never drive the
//! pipeline: they are read only as the text of an answer.
//!
//! Decisions (approve, confirm deploy, answer, STOP; closing the issue, or the Plane states
//! Rejected and STOP, are STOPs) go to the live task through `Engine::submit`, recorded as made
//! by `tracker:<source>:<who>`, and only while the task waits for that decision (STOP: always),
//! so a replay or a label left on the ticket decides nothing twice. An `approvers` list limits
//! who may decide (logins; Plane: display names).
//!
//! Done is final: a ticket moved out of Done while its task is done (reopened, or moved to another
//! Plane state) is set back to Done through a tracker-update outbox row, with a timeline event.

use crate::effects;
use crate::ticket_dependencies::{self, TicketPlace};
use crate::webhooks::{LogSink, WebhookSink};
use crate::{Engine, EngineError, Input, NewTaskRequest};
use async_trait::async_trait;
use baton_adapters::tracker::{TicketStatus, html_to_text};
use baton_adapters::webhook::{IssueEvent, WebhookEvent, WorkItemAction, WorkItemEvent};
use baton_domain::Hold;
use baton_domain::text::{forbidden_in_line, forbidden_in_text};
use baton_store::{Advance, DeliveryRecord, NewEvent, StoreError, TaskKey, TaskRecord, Transition};

/// Which tracker a rule listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntakeSource {
    #[default]
    Github,
    Gitea,
    Plane,
}

impl IntakeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            IntakeSource::Github => "github",
            IntakeSource::Gitea => "gitea",
            IntakeSource::Plane => "plane",
        }
    }
}

/// The Plane states that decide (SPEC §8), besides the start state.
pub mod plane_states {
    /// In Review → Approved: approve the analysis.
    pub const APPROVED: &str = "Approved";
    /// A STOP with the rejection recorded.
    pub const REJECTED: &str = "Rejected";
    /// Awaiting Deploy → Deploying: confirm the deploy.
    pub const DEPLOYING: &str = "Deploying";
    /// Needs Input → In Progress: the answer is in the comments.
    pub const IN_PROGRESS: &str = "In Progress";
    pub const STOP: &str = "STOP";
    /// Older projects' name for STOP.
    pub const CANCELLED: &str = "Cancelled";
    pub const DONE: &str = "Done";
}

/// One `[[trackers]]` entry: tickets of `forge_repo` (GitHub/Gitea `owner/name`, or the Plane
/// project id) started with `start_label` (Plane: the start state) become tasks in `repo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IntakeRule {
    pub source: IntakeSource,
    /// `owner/name` on the forge, or the Plane project id.
    pub forge_repo: String,
    /// The Baton repository the tasks belong to.
    pub repo: String,
    /// The label that starts a ticket (Plane: the state, `To Analyse`).
    pub start_label: String,
    /// Logins (Plane: display names) whose tickets may start tasks; empty: anyone.
    pub authors: Vec<String>,
    /// Labels that decide the human gates on the live task (GitHub/Gitea): approve the analysis,
    /// confirm the deploy, STOP, and answer the agent's questions (the answer is the comments
    /// posted since the task asked). Closing the issue is a STOP too.
    pub approve_label: String,
    pub deploy_label: String,
    pub stop_label: String,
    pub answer_label: String,
    /// The prefix of Baton's status labels (`baton:` → `baton:done`).
    pub status_label_prefix: String,
    /// Whether Baton closes the issue when the task is done (then an open issue of a done task
    /// has left Done).
    pub close_on_done: bool,
    /// Logins (Plane: display names) whose labels, closes and state moves may decide; empty:
    /// anyone who can label. Never give an agent a token of one of them.
    pub approvers: Vec<String>,
}

impl IntakeRule {
    /// The human decision an issue event makes on the ticket's live task, if any.
    fn decision(&self, issue: &IssueEvent) -> Option<Input> {
        let is = |wanted: &str| !wanted.is_empty() && issue.label.as_deref() == Some(wanted);
        match issue.action.as_str() {
            "closed" => Some(Input::Stop),
            "labeled" if is(&self.approve_label) => Some(Input::Approve),
            "labeled" if is(&self.deploy_label) => Some(Input::ConfirmDeploy),
            "labeled" if is(&self.stop_label) => Some(Input::Stop),
            "labeled" if is(&self.answer_label) => Some(Input::Answer { text: String::new() }),
            _ => None,
        }
    }

    fn may_decide(&self, who: &str) -> bool {
        self.approvers.is_empty() || self.approvers.iter().any(|a| a.eq_ignore_ascii_case(who))
    }

    fn may_start(&self, who: &str) -> bool {
        self.authors.is_empty() || self.authors.iter().any(|a| a.eq_ignore_ascii_case(who))
    }
}

/// What the intake made of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// Not a start or a decision for any rule (another label, another repo, nothing waiting, …).
    NotForUs(String),
    Created(String),
    /// The ticket already has its live task.
    AlreadyLive(String),
    /// The author (or, for a decision, the sender) is not on the rule's allowlist.
    Refused(String),
    /// A human decision reached the live task: what the engine made of it.
    Decided(String),
    /// The ticket of a done task had left Done: Baton set it back.
    Converged(String),
}

/// The sink: issue and work-item events go through the rules, every event is also logged.
#[derive(Debug, Default)]
pub struct IntakeSink {
    rules: Vec<IntakeRule>,
}

/// The hold a decision answers (`None`: STOP, which answers any state).
fn awaited(input: &Input) -> Option<fn(&Hold) -> bool> {
    match input {
        Input::Approve => Some(|h| matches!(h, Hold::AwaitingApproval)),
        Input::ConfirmDeploy => Some(|h| matches!(h, Hold::AwaitingConfirm)),
        Input::Answer { .. } => Some(|h| matches!(h, Hold::NeedsInput { .. })),
        _ => None,
    }
}

impl IntakeSink {
    pub fn new(rules: Vec<IntakeRule>) -> Self {
        IntakeSink { rules }
    }

    fn issue_rule(&self, source: &str, issue: &IssueEvent) -> Option<&IntakeRule> {
        self.rules.iter().find(|r| r.source.as_str() == source && r.forge_repo.eq_ignore_ascii_case(&issue.repo))
    }

    /// Applies the rules to one issue event from `source` (`github` or `gitea`); then, when the
    /// open ticket has a live task it did not just create, makes the task's dependencies what the
    /// ticket's body declares (an edit, a label, a poll: each carries the body).
    pub async fn take(&self, engine: &Engine, source: &str, issue: &IssueEvent) -> Result<IntakeOutcome, EngineError> {
        let outcome = self.take_issue(engine, source, issue).await?;
        if let Some(rule) = self.issue_rule(source, issue)
            && issue.state == "open"
            && !matches!(outcome, IntakeOutcome::Created(_))
        {
            let reference = format!("{source}:{}#{}", issue.repo, issue.number);
            let place = TicketPlace { source, forge_repo: &rule.forge_repo };
            sync_live(engine, &place, &reference, &issue.body).await?;
        }
        Ok(outcome)
    }

    async fn take_issue(
        &self,
        engine: &Engine,
        source: &str,
        issue: &IssueEvent,
    ) -> Result<IntakeOutcome, EngineError> {
        let Some(rule) = self.issue_rule(source, issue) else {
            return Ok(IntakeOutcome::NotForUs(format!("no [[trackers]] entry for {source} {}", issue.repo)));
        };
        let reference = format!("{source}:{}#{}", issue.repo, issue.number);
        if issue.state == "open"
            && let Some(done) = engine.store().task_by_external_ref(&reference).await?
            && done.state.stage == baton_domain::pipeline::DONE
        {
            let done_label = format!("{}{}", rule.status_label_prefix, TicketStatus::Done.slug());
            let left_done = issue.action == "reopened"
                || (rule.close_on_done && issue.action == "polled")
                || (issue.action == "polled" && !issue.labels.contains(&done_label));
            if left_done {
                return converge(engine, &done, &reference, &format!("issue {}", issue.action)).await;
            }
        }
        if let Some(input) = rule.decision(issue) {
            return self.decide(engine, rule, &reference, &issue.sender, input).await;
        }
        let labelled_now = match issue.action.as_str() {
            "labeled" => issue.label.as_deref() == Some(rule.start_label.as_str()),
            "opened" | "reopened" | "label_updated" | "polled" => issue.labels.iter().any(|l| l == &rule.start_label),
            _ => false,
        };
        if !labelled_now || issue.state == "closed" {
            return Ok(IntakeOutcome::NotForUs(format!(
                "{} #{}: `{}` does not start a ticket (start label `{}`)",
                issue.repo, issue.number, issue.action, rule.start_label
            )));
        }
        // A ticket found by a poll still wearing the marks of its STOP is not a restart: adding
        // the start label again is (the tracker removed it when the task stopped).
        let stopped_label = format!("{}{}", rule.status_label_prefix, TicketStatus::Stopped.slug());
        if issue.action == "polled"
            && issue
                .labels
                .iter()
                .any(|l| *l == stopped_label || (!rule.stop_label.is_empty() && *l == rule.stop_label))
        {
            return Ok(IntakeOutcome::NotForUs(format!(
                "{reference}: stopped; add `{}` again to restart",
                rule.start_label
            )));
        }
        if !rule.may_start(&issue.author) {
            return Ok(IntakeOutcome::Refused(format!(
                "{reference}: author `{}` is not in the tracker's `authors` list",
                issue.author
            )));
        }
        // Done is final: a ticket whose task shipped never starts again, whatever label event
        // arrives for it (Gitea's `label_updated` after Baton's own `done` label, a late replay).
        if let Some(done) = engine.store().task_by_external_ref(&reference).await?
            && done.state.stage == baton_domain::pipeline::DONE
        {
            return Ok(IntakeOutcome::NotForUs(format!(
                "{reference}: its task {} is done, and Done is final; open a new ticket for new work",
                done.work_item_id
            )));
        }
        let limits = &engine.settings().limits;
        let request = NewTaskRequest {
            repo: rule.repo.clone(),
            title: clean_title(&issue.title, &format!("issue #{}", issue.number), limits.title_chars_max),
            body: clean_body(&issue.body, limits.body_bytes_max),
            external_ref: Some(reference.clone()),
        };
        let place = TicketPlace { source, forge_repo: &rule.forge_repo };
        create(engine, request, &reference, &place, &issue.body).await
    }

    fn plane_rule(&self, item: &WorkItemEvent) -> Option<&IntakeRule> {
        let plane_rules = || self.rules.iter().filter(|r| r.source == IntakeSource::Plane);
        match item.project.as_deref() {
            Some(project) => plane_rules().find(|r| r.forge_repo == project),
            None if plane_rules().count() == 1 => plane_rules().next(),
            None => None,
        }
    }

    /// Applies the rules to one Plane work-item event: the start state creates the task, the
    /// decision states decide, a done task's item moved out of Done converges back. Then, when
    /// the event carries the description and the item has a live task it did not just create,
    /// the task's dependencies become what the description declares.
    pub async fn take_work_item(&self, engine: &Engine, item: &WorkItemEvent) -> Result<IntakeOutcome, EngineError> {
        let outcome = self.take_plane_item(engine, item).await?;
        if let Some(rule) = self.plane_rule(item)
            && let Some(html) = item.description_html.as_deref()
            && item.action != WorkItemAction::Deleted
            && !matches!(outcome, IntakeOutcome::Created(_))
        {
            let reference = format!("plane:{}/{}", rule.forge_repo, item.id);
            let place = TicketPlace { source: "plane", forge_repo: &rule.forge_repo };
            sync_live(engine, &place, &reference, &html_to_text(html)).await?;
        }
        Ok(outcome)
    }

    async fn take_plane_item(&self, engine: &Engine, item: &WorkItemEvent) -> Result<IntakeOutcome, EngineError> {
        let Some(rule) = self.plane_rule(item) else {
            return Ok(IntakeOutcome::NotForUs(format!(
                "no [[trackers]] entry for plane project {}",
                item.project.as_deref().unwrap_or("?")
            )));
        };
        if item.action == WorkItemAction::Deleted {
            return Ok(IntakeOutcome::NotForUs(format!("work item {} deleted", item.id)));
        }
        if item.changed_field.as_deref().is_some_and(|f| f != "state" && f != "state_id") {
            return Ok(IntakeOutcome::NotForUs(format!(
                "work item {}: {} changed",
                item.id,
                item.changed_field.as_deref().unwrap_or("?")
            )));
        }
        let reference = format!("plane:{}/{}", rule.forge_repo, item.id);
        let state = match (&item.state_name, &item.state_id) {
            (Some(name), _) if !name.is_empty() => Some(name.clone()),
            (_, Some(id)) => engine.tracker().state_name(&reference, id).await.map_err(EngineError::Adapter)?,
            _ => None,
        };
        let Some(state) = state else {
            return Ok(IntakeOutcome::NotForUs(format!("{reference}: no state")));
        };
        let actor = item.actor.clone().unwrap_or_default();
        if let Some(done) = engine.store().task_by_external_ref(&reference).await?
            && done.state.stage == baton_domain::pipeline::DONE
        {
            if state.eq_ignore_ascii_case(plane_states::DONE) {
                return Ok(IntakeOutcome::NotForUs(format!("{reference}: done")));
            }
            return converge(engine, &done, &reference, &format!("moved to `{state}`")).await;
        }
        let is = |name: &str| state.trim().eq_ignore_ascii_case(name);
        let input = if is(plane_states::APPROVED) {
            Some(Input::Approve)
        } else if is(plane_states::DEPLOYING) {
            Some(Input::ConfirmDeploy)
        } else if is(plane_states::IN_PROGRESS) {
            Some(Input::Answer { text: String::new() })
        } else if is(plane_states::STOP) || is(plane_states::CANCELLED) || is(plane_states::REJECTED) {
            Some(Input::Stop)
        } else {
            None
        };
        if let Some(input) = input {
            if is(plane_states::REJECTED)
                && rule.may_decide(&actor)
                && let Some(task) = engine.store().live_task_by_external_ref(&reference).await?
            {
                engine
                    .store()
                    .append_event(NewEvent {
                        task: task.id,
                        at_ms: engine.clock().now_ms(),
                        kind: "rejected".into(),
                        stage: task.state.stage.clone(),
                        message: format!("rejected in Plane by `{actor}`"),
                        detail: serde_json::json!({ "by": format!("tracker:plane:{actor}"), "ticket": reference }),
                    })
                    .await?;
            }
            return self.decide(engine, rule, &reference, &actor, input).await;
        }
        if !is(&rule.start_label) {
            return Ok(IntakeOutcome::NotForUs(format!("{reference}: state `{state}` decides nothing")));
        }
        if !rule.may_start(&actor) {
            return Ok(IntakeOutcome::Refused(format!(
                "{reference}: `{actor}` is not in the tracker's `authors` list"
            )));
        }
        let limits = &engine.settings().limits;
        let title = item.name.as_deref().unwrap_or_default();
        let fallback = match item.sequence_id {
            Some(n) => format!("work item {n}"),
            None => "work item".to_string(),
        };
        let text = html_to_text(item.description_html.as_deref().unwrap_or_default());
        let request = NewTaskRequest {
            repo: rule.repo.clone(),
            title: clean_title(title, &fallback, limits.title_chars_max),
            body: clean_body(&text, limits.body_bytes_max),
            external_ref: Some(reference.clone()),
        };
        let place = TicketPlace { source: "plane", forge_repo: &rule.forge_repo };
        create(engine, request, &reference, &place, &text).await
    }

    /// Hands a decision to the ticket's live task, recorded as made by `tracker:<source>:<who>`,
    /// when the task waits for it (STOP: always); a ticket without a live task, or someone off
    /// the approvers list, changes nothing. An answer's text is the comments posted on the ticket
    /// since the task asked.
    async fn decide(
        &self,
        engine: &Engine,
        rule: &IntakeRule,
        reference: &str,
        who: &str,
        input: Input,
    ) -> Result<IntakeOutcome, EngineError> {
        if !rule.may_decide(who) {
            return Ok(IntakeOutcome::Refused(format!(
                "{reference}: `{}` by `{who}`, who is not in the tracker's `approvers` list",
                input.kind(),
            )));
        }
        let Some(task) = engine.store().live_task_by_external_ref(reference).await? else {
            return Ok(IntakeOutcome::NotForUs(format!("{reference}: no live task for `{}`", input.kind())));
        };
        if let Some(waits) = awaited(&input)
            && !waits(&task.state.hold)
        {
            return Ok(IntakeOutcome::NotForUs(format!(
                "{reference}: {} does not wait for `{}` ({})",
                task.work_item_id,
                input.kind(),
                task.state.display()
            )));
        }
        let input = match input {
            Input::Answer { .. } => Input::Answer { text: answer_text(engine, &task, reference).await? },
            other => other,
        };
        let by = format!("tracker:{}:{who}", rule.source.as_str());
        let outcome = engine.submit(&TaskKey::Id(task.id), input.clone(), &by, None).await?;
        Ok(IntakeOutcome::Decided(format!("{reference} {} by {by}: {outcome:?}", input.kind())))
    }
}

/// Makes the dependencies of the ticket's live task, if it has one, what `body` declares.
async fn sync_live(engine: &Engine, place: &TicketPlace<'_>, reference: &str, body: &str) -> Result<(), EngineError> {
    let Some(task) = engine.store().live_task_by_external_ref(reference).await? else {
        return Ok(());
    };
    let synced = ticket_dependencies::sync(engine, place, &task, body).await?;
    if !synced.declared.is_empty() || !synced.withdrawn.is_empty() {
        tracing::info!(
            task = %task.work_item_id,
            "{reference}: dependencies declared {:?}, withdrawn {:?}",
            synced.declared,
            synced.withdrawn
        );
    }
    Ok(())
}

/// Creates the ticket's task, waiting for the tasks its `body` names (recorded in the creating
/// transaction, so its first job is never claimed before them); a named task that was cancelled
/// and a ticket without a task yet become timeline notes. An existing holder of the reference
/// (live, or done: Done is final) is reported, not duplicated.
async fn create(
    engine: &Engine,
    request: NewTaskRequest,
    reference: &str,
    place: &TicketPlace<'_>,
    body: &str,
) -> Result<IntakeOutcome, EngineError> {
    let refs = ticket_dependencies::parse_dependencies(body);
    let ticket_dependencies::TicketDependencies { tasks: named, mut notes, .. } =
        ticket_dependencies::resolve_all(engine, place, &refs, Some(reference)).await?;
    let mut depends_on = Vec::new();
    for task in named {
        if task.state.stage == baton_domain::pipeline::CANCELLED {
            notes.push(format!("dependency on {} refused: it was cancelled and will never be done", task.work_item_id));
        } else {
            depends_on.push(TaskKey::Id(task.id));
        }
    }
    match engine.create_task_depending(request, None, &depends_on).await {
        Ok(task) => {
            for note in &notes {
                ticket_dependencies::note_once(engine, &task, note).await?;
            }
            // The ticket shows at once that Baton took it (best effort: creation writes no outbox
            // row; the next status change writes one, and retries until it lands).
            if let effects::OutboxEffect::TrackerUpdate { work_item, external_ref, title, status, ticket } =
                effects::tracker_update(engine.pipeline_for(&task.repo), &task, &task.state)
            {
                let update = baton_adapters::tracker::TrackerUpdate {
                    work_item,
                    external_ref,
                    title,
                    branch: task.branch.clone(),
                    status: ticket.unwrap_or(TicketStatus::InProgress),
                    display: status,
                };
                if let Err(error) = engine.tracker().task_changed(&update).await {
                    tracing::warn!("{reference}: showing the new task on the ticket failed: {error}");
                }
            }
            Ok(IntakeOutcome::Created(format!("{reference} → {}", task.work_item_id)))
        }
        Err(EngineError::Store(StoreError::Exists(task))) => {
            Ok(IntakeOutcome::AlreadyLive(format!("{reference} already has {}", task.work_item_id)))
        }
        Err(other) => Err(other),
    }
}

/// The text of an answer given on the ticket: the human comments posted since the task entered
/// Needs Input, oldest first, bounded by `limits.answer_bytes_max`; when there are none, a line
/// saying the answer is in the ticket.
async fn answer_text(engine: &Engine, task: &TaskRecord, reference: &str) -> Result<String, EngineError> {
    let comments =
        engine.tracker().comments_since(reference, task.updated_at_ms).await.map_err(EngineError::Adapter)?;
    let mut text = String::new();
    for comment in comments.iter().filter(|c| !c.body.trim().is_empty()) {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&format!("{} wrote:\n{}", comment.author, comment.body.trim()));
    }
    if text.is_empty() {
        text = format!("The answer is in the ticket {reference} (no comment was posted there since the questions).");
    }
    Ok(clean_body(&text, engine.settings().limits.answer_bytes_max))
}

/// Sets the ticket of a done task back to Done: a tracker-update outbox row and a timeline event,
/// in one transaction (none while an update of the task is still pending: that one converges).
async fn converge(
    engine: &Engine,
    task: &TaskRecord,
    reference: &str,
    why: &str,
) -> Result<IntakeOutcome, EngineError> {
    let pending = engine.store().effects(Some(task.id), true).await?;
    if pending.iter().any(|e| e.kind == "tracker_update") {
        return Ok(IntakeOutcome::AlreadyLive(format!(
            "{reference}: {} is done; its ticket update is pending",
            task.work_item_id
        )));
    }
    let now = engine.clock().now_ms();
    let message = format!("the ticket {reference} left Done ({why}); Baton set it back to Done: a done task is final");
    let advance = Advance {
        task: task.id,
        expected_version: task.version,
        next: task.state.clone(),
        finish_job: None,
        event: NewEvent {
            task: task.id,
            at_ms: now,
            kind: "tracker_converged".into(),
            stage: task.state.stage.clone(),
            message: message.clone(),
            detail: serde_json::json!({ "ticket": reference, "why": why }),
        },
        transition: Transition::default(),
        inbox: None,
        effects: vec![effects::row(&effects::tracker_update(engine.pipeline_for(&task.repo), task, &task.state))],
        now_ms: now,
    };
    match engine.store().advance(advance).await {
        Ok(_) => {}
        // Someone else wrote first (another converge): theirs carries the update.
        Err(StoreError::Conflict(_)) => return Ok(IntakeOutcome::AlreadyLive(format!("{reference}: converging"))),
        Err(other) => return Err(other.into()),
    }
    effects::drain(engine, Some(task.id)).await;
    Ok(IntakeOutcome::Converged(message))
}

#[async_trait]
impl WebhookSink for IntakeSink {
    async fn handle(&self, engine: &Engine, delivery: &DeliveryRecord, event: &WebhookEvent) -> Result<(), String> {
        LogSink.handle(engine, delivery, event).await?;
        let taken = match event {
            WebhookEvent::Issue(issue) => self.take(engine, &delivery.source, issue).await,
            WebhookEvent::WorkItem(item) if delivery.source == "plane" => self.take_work_item(engine, item).await,
            _ => return Ok(()),
        };
        match taken {
            Ok(IntakeOutcome::Created(what) | IntakeOutcome::Decided(what) | IntakeOutcome::Converged(what)) => {
                tracing::info!("intake: {what}")
            }
            Ok(IntakeOutcome::Refused(why)) => tracing::warn!("intake refused: {why}"),
            Ok(IntakeOutcome::AlreadyLive(what) | IntakeOutcome::NotForUs(what)) => tracing::debug!("intake: {what}"),
            // A configuration problem (an unknown repository) or bad input: retrying cannot help.
            Err(EngineError::Invalid(why)) => tracing::warn!("intake could not act: {why}"),
            // The database or the tracker: leave the delivery pending, the next pass tries again.
            Err(other) => return Err(other.to_string()),
        }
        Ok(())
    }
}

/// A title a task may hold: control and bidi characters become spaces, runs of spaces one, at
/// most `max` characters; `fallback` (`issue #N`) when nothing is left.
fn clean_title(title: &str, fallback: &str, max: usize) -> String {
    let spaced: String = title.chars().map(|c| if forbidden_in_line(c) { ' ' } else { c }).collect();
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let joined: String = words.join(" ").chars().take(max).collect();
    if joined.trim().is_empty() { fallback.to_string() } else { joined.trim().to_string() }
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
        assert_eq!(clean_title("Fix\u{1b}[2J the\nlogin\u{202e}", "issue #7", 200), "Fix [2J the login");
        assert_eq!(clean_title("\u{7}\u{0}", "issue #7", 200), "issue #7");
        assert_eq!(clean_title("ééééé", "issue #1", 3), "ééé");
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
