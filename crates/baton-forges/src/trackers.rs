//! The engine's tracker ports over the clients (SPEC §8): [`LabelTracker`] mirrors a task's status
//! onto a GitHub/Gitea issue as one `baton:<status>` label, consumes the decision labels and closes
//! the issue when the task is done; [`PlaneTracker`] moves a Plane work item through the SPEC §8
//! states. [`ForgePoller`] and [`PlanePoller`] list tickets every `poll_secs` and report what they
//! find as the webhook events that would have said it, so a lost webhook costs one poll interval.

use crate::error::ApiError;
use crate::forge::{ForgeApi, Issue};
use crate::plane::{Plane, StateMap, WorkItem};
use async_trait::async_trait;
use baton_adapters::AdapterError;
use baton_adapters::tracker::{
    BATON_COMMENT_MARK, TicketComment, TicketPoller, TicketStatus, Tracker, TrackerUpdate, html_to_text,
};
use baton_adapters::webhook::{IssueEvent, WebhookEvent, WorkItemAction, WorkItemEvent};
use std::sync::Arc;
use tokio::sync::Mutex;

/// The longest back-off after failed polls.
const BACKOFF_MAX_MS: i64 = 3_600_000;

/// The labels a [`LabelTracker`] writes and consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSettings {
    /// Status labels are this prefix + the status (`baton:` → `baton:in-progress`).
    pub status_prefix: String,
    /// The label that starts a ticket: removed when the task is stopped, so adding it again
    /// starts a fresh task.
    pub start_label: String,
    pub approve_label: String,
    pub deploy_label: String,
    pub stop_label: String,
    pub answer_label: String,
    /// Close the issue (with a short note of what merged) when the task is done.
    pub close_on_done: bool,
}

impl LabelSettings {
    /// The label of one status.
    pub fn status_label(&self, status: TicketStatus) -> String {
        format!("{}{}", self.status_prefix, status.slug())
    }

    /// The decision labels with the status each answers (STOP answers any: it is consumed once
    /// the task is stopped).
    fn decisions(&self) -> [(&str, Option<TicketStatus>); 4] {
        [
            (self.approve_label.as_str(), Some(TicketStatus::InReview)),
            (self.deploy_label.as_str(), Some(TicketStatus::AwaitingDeploy)),
            (self.answer_label.as_str(), Some(TicketStatus::NeedsInput)),
            (self.stop_label.as_str(), None),
        ]
    }
}

/// The RFC 3339 form (UTC, whole seconds) of a Unix time in milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Milliseconds of an RFC 3339 time the APIs wrote (`None` when it is not one).
pub fn time_ms(text: &str) -> Option<i64> {
    baton_adapters::agent::cli::iso_time_ms(text)
}

/// A status mirror on the issues of one GitHub or Gitea repository (`owner/name`), for tasks whose
/// external reference is `<kind>:<owner/name>#<number>`.
pub struct LabelTracker {
    api: Arc<dyn ForgeApi>,
    repo: String,
    labels: LabelSettings,
}

impl std::fmt::Debug for LabelTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelTracker").field("repo", &self.repo).field("labels", &self.labels).finish()
    }
}

impl LabelTracker {
    pub fn new(api: Arc<dyn ForgeApi>, repo: &str, labels: LabelSettings) -> Self {
        LabelTracker { api, repo: repo.to_string(), labels }
    }

    /// `github:owner/name#` (or `gitea:`): the references of the tickets this tracker holds.
    pub fn ref_prefix(&self) -> String {
        format!("{}:{}#", self.api.kind(), self.repo)
    }

    fn number(&self, external_ref: &str) -> Option<u64> {
        let prefix = self.ref_prefix();
        let rest = external_ref.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(&prefix))?;
        external_ref[rest.len()..].parse().ok()
    }
}

#[async_trait]
impl Tracker for LabelTracker {
    fn name(&self) -> &str {
        self.api.kind()
    }

    async fn task_changed(&self, update: &TrackerUpdate) -> Result<(), AdapterError> {
        let Some(number) = update.external_ref.as_deref().and_then(|r| self.number(r)) else {
            return Ok(());
        };
        let issue = self.api.get_issue(number).await?;
        let want = self.labels.status_label(update.status);
        let already = issue.labels.contains(&want);
        let done = self.labels.status_label(TicketStatus::Done);
        if update.status != TicketStatus::Done && issue.labels.contains(&done) {
            // Done is final: a late or retried update never takes a ticket out of it.
            return Ok(());
        }
        // Exactly one status label: the others go, the current one comes (once).
        for status in TicketStatus::ALL {
            let label = self.labels.status_label(status);
            if label != want && issue.labels.contains(&label) {
                self.api.remove_label(number, &label).await?;
            }
        }
        if !already {
            self.api.add_label(number, &want).await?;
        }
        // Decision labels are consumed: one the task has left the hold of goes, and so does one
        // found when the task enters its hold (it was put there before the question was asked).
        for (label, answers) in self.labels.decisions() {
            let current = answers == Some(update.status) && already;
            if !label.is_empty() && !current && issue.labels.iter().any(|l| l == label) {
                self.api.remove_label(number, label).await?;
            }
        }
        if update.status == TicketStatus::Stopped && issue.labels.contains(&self.labels.start_label) {
            // Adding the start label again starts the ticket afresh.
            self.api.remove_label(number, &self.labels.start_label).await?;
        }
        if update.status == TicketStatus::Done && self.labels.close_on_done && issue.state == "open" {
            if already {
                // Reopened after Done: closed again, the note was written the first time.
                self.api.close_issue(number).await?;
                return Ok(());
            }
            let note = format!(
                "{BATON_COMMENT_MARK}: {} is done: branch `{}` merged.",
                update.work_item,
                if update.branch.is_empty() { "?" } else { update.branch.as_str() }
            );
            self.api.comment(number, &note).await?;
            self.api.close_issue(number).await?;
        }
        Ok(())
    }

    async fn comments_since(&self, external_ref: &str, since_ms: i64) -> Result<Vec<TicketComment>, AdapterError> {
        let Some(number) = self.number(external_ref) else {
            return Ok(Vec::new());
        };
        let comments = self.api.list_comments(number, Some(&rfc3339(since_ms))).await?;
        Ok(comments
            .into_iter()
            .filter_map(|c| {
                let at_ms = time_ms(&c.created_at).unwrap_or(since_ms);
                (at_ms >= since_ms && !c.body.trim_start().starts_with(BATON_COMMENT_MARK)).then_some(TicketComment {
                    author: c.author,
                    body: c.body,
                    at_ms,
                })
            })
            .collect())
    }

    async fn state_name(&self, _external_ref: &str, _state_id: &str) -> Result<Option<String>, AdapterError> {
        Ok(None)
    }
}

/// The Plane state names a status maps to, best first (SPEC §8); a project without any of them
/// gets "In Progress".
pub fn plane_state_for(status: TicketStatus) -> &'static [&'static str] {
    match status {
        TicketStatus::InProgress => &["In Progress"],
        TicketStatus::NeedsInput | TicketStatus::Blocked => &["Needs Input"],
        TicketStatus::InReview => &["In Review"],
        TicketStatus::AwaitingDeploy => &["Awaiting Deploy"],
        TicketStatus::Deploying => &["Deploying"],
        TicketStatus::Done => &["Done"],
        TicketStatus::Stopped => &["STOP", "Cancelled"],
    }
}

/// Mirrors task status onto the work items of one Plane project, for tasks whose external
/// reference is `plane:<project>/<work-item-id>`. States are listed once and cached; an unknown
/// name or id re-lists once (a state added since).
#[derive(Debug)]
pub struct PlaneTracker {
    plane: Plane,
    states: Mutex<Option<StateMap>>,
    /// Work item keys (`PROJ-12`) already resolved to their references: a key never changes
    /// item, so each is looked up once.
    keys: Mutex<std::collections::BTreeMap<String, String>>,
}

/// Work item keys remembered at most (then the cache starts over).
const PLANE_KEYS_CACHED_MAX: usize = 10_000;

impl PlaneTracker {
    pub fn new(plane: Plane) -> Self {
        PlaneTracker { plane, states: Mutex::new(None), keys: Mutex::new(Default::default()) }
    }

    /// `plane:<project>/`.
    pub fn ref_prefix(&self) -> String {
        format!("plane:{}/", self.plane.project())
    }

    fn item<'a>(&self, external_ref: &'a str) -> Option<&'a str> {
        external_ref.strip_prefix(&self.ref_prefix()).filter(|id| !id.is_empty())
    }

    /// The cached state map, listed when absent or when `fresh` says it lacks what is wanted.
    async fn states(&self, fresh: impl Fn(&StateMap) -> bool) -> Result<StateMap, ApiError> {
        let mut cache = self.states.lock().await;
        if let Some(map) = cache.as_ref()
            && fresh(map)
        {
            return Ok(map.clone());
        }
        let map = self.plane.list_states().await?;
        *cache = Some(map.clone());
        Ok(map)
    }

    async fn state_id(&self, status: TicketStatus) -> Result<String, ApiError> {
        let names = plane_state_for(status);
        let map = self.states(|m| names.iter().any(|n| m.id_for(n).is_some())).await?;
        match names.iter().find_map(|n| map.id_for(n)) {
            Some(id) => Ok(id.to_string()),
            None => Ok(map.require("plane.task_changed", "In Progress")?.to_string()),
        }
    }
}

#[async_trait]
impl Tracker for PlaneTracker {
    fn name(&self) -> &str {
        "plane"
    }

    async fn task_changed(&self, update: &TrackerUpdate) -> Result<(), AdapterError> {
        let Some(item) = update.external_ref.as_deref().and_then(|r| self.item(r)) else {
            return Ok(()); // A task that did not come from this project.
        };
        let state_id = self.state_id(update.status).await?;
        let current = self.plane.get_work_item(item).await?;
        if current.state_id == state_id {
            return Ok(()); // Already right.
        }
        let done = current.state_name.as_deref().is_some_and(|n| n.trim().eq_ignore_ascii_case("Done"));
        if done && update.status != TicketStatus::Done {
            return Ok(()); // Done is final: a late or retried update never takes an item out of it.
        }
        self.plane.set_state(item, &state_id).await?;
        Ok(())
    }

    async fn comments_since(&self, external_ref: &str, since_ms: i64) -> Result<Vec<TicketComment>, AdapterError> {
        let Some(item) = self.item(external_ref) else {
            return Ok(Vec::new());
        };
        let comments = self.plane.list_comments(item).await?;
        Ok(comments
            .into_iter()
            .filter_map(|c| {
                let at_ms = time_ms(&c.created_at).unwrap_or(since_ms);
                let body = html_to_text(&c.comment_html);
                (at_ms >= since_ms && !body.trim_start().starts_with(BATON_COMMENT_MARK)).then_some(TicketComment {
                    author: c.author,
                    body,
                    at_ms,
                })
            })
            .collect())
    }

    async fn state_name(&self, external_ref: &str, state_id: &str) -> Result<Option<String>, AdapterError> {
        if self.item(external_ref).is_none() {
            return Ok(None);
        }
        let map = self.states(|m| m.name_of(state_id).is_some()).await?;
        Ok(map.name_of(state_id).map(str::to_string))
    }

    async fn blocked_by(&self, external_ref: &str) -> Result<Vec<String>, AdapterError> {
        let Some(item) = self.item(external_ref) else {
            return Ok(Vec::new());
        };
        let prefix = self.ref_prefix();
        Ok(self.plane.blocked_by(item).await?.into_iter().map(|id| format!("{prefix}{id}")).collect())
    }

    async fn ticket_by_key(&self, key: &str) -> Result<Option<String>, AdapterError> {
        let key = key.to_ascii_uppercase();
        let well_formed = key.split_once('-').is_some_and(|(project, seq)| {
            !project.is_empty() && !seq.is_empty() && seq.chars().all(|c| c.is_ascii_digit())
        });
        if !well_formed {
            return Ok(None);
        }
        if let Some(found) = self.keys.lock().await.get(&key) {
            return Ok(Some(found.clone()));
        }
        let Some(id) = self.plane.work_item_id_by_key(&key).await? else {
            return Ok(None);
        };
        let reference = format!("{}{id}", self.ref_prefix());
        let mut keys = self.keys.lock().await;
        if keys.len() >= PLANE_KEYS_CACHED_MAX {
            keys.clear();
        }
        keys.insert(key, reference.clone());
        Ok(Some(reference))
    }
}

/// When the next poll is due: after the interval, a rate limit's wait, or an error's back-off.
#[derive(Debug, Default)]
struct Schedule {
    next_at_ms: i64,
    failures: u32,
}

impl Schedule {
    fn due(&self, now_ms: i64) -> bool {
        now_ms >= self.next_at_ms
    }

    /// Records one poll's result; returns it as the port's error.
    fn after<T>(&mut self, now_ms: i64, interval_secs: u64, result: Result<T, ApiError>) -> Result<T, AdapterError> {
        let interval_ms = (interval_secs as i64).saturating_mul(1000);
        match result {
            Ok(found) => {
                self.failures = 0;
                self.next_at_ms = now_ms + interval_ms;
                Ok(found)
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                let backoff = interval_ms.saturating_mul(1 << self.failures.min(10)).min(BACKOFF_MAX_MS);
                let wait = match &error {
                    ApiError::RateLimited { retry_after, .. } => (retry_after.as_millis() as i64).max(interval_ms),
                    _ => backoff.max(interval_ms),
                };
                self.next_at_ms = now_ms + wait;
                tracing::warn!("ticket poll failed, next in {} s: {error}", wait / 1000);
                Err(error.into())
            }
        }
    }
}

/// Polls one GitHub/Gitea repository's issues: those carrying the start label or a decision label
/// (who added the label is read from the issue's events when `approvers` limits who may decide),
/// and each live task's issue, to see it closed.
pub struct ForgePoller {
    api: Arc<dyn ForgeApi>,
    repo: String,
    labels: LabelSettings,
    /// Whether decisions are limited to approvers (then the actor of each label is looked up).
    approvers_limited: bool,
    interval_secs: u64,
    schedule: Mutex<Schedule>,
}

impl ForgePoller {
    pub fn new(
        api: Arc<dyn ForgeApi>,
        repo: &str,
        labels: LabelSettings,
        approvers_limited: bool,
        interval_secs: u64,
    ) -> Self {
        ForgePoller {
            api,
            repo: repo.to_string(),
            labels,
            approvers_limited,
            interval_secs,
            schedule: Mutex::new(Schedule::default()),
        }
    }

    fn event(&self, issue: &Issue, action: &str, label: Option<&str>, sender: &str) -> WebhookEvent {
        WebhookEvent::Issue(IssueEvent {
            action: action.into(),
            repo: self.repo.clone(),
            number: issue.number,
            title: issue.title.clone(),
            body: issue.body.clone(),
            labels: issue.labels.clone(),
            label: label.map(str::to_string),
            author: issue.author.clone(),
            state: issue.state.clone(),
            sender: sender.into(),
        })
    }

    async fn scan(&self, live_refs: &[String]) -> Result<Vec<WebhookEvent>, ApiError> {
        let prefix = format!("{}:{}#", self.api.kind(), self.repo);
        let live: Vec<u64> = live_refs.iter().filter_map(|r| r.strip_prefix(&prefix)?.parse().ok()).collect();
        let mut events = Vec::new();
        for issue in self.api.list_issues_with_label(&self.labels.start_label).await? {
            // `polled`: a ticket found carrying its start label (not the act of adding it).
            events.push(self.event(&issue, "polled", Some(&self.labels.start_label), &issue.author));
        }
        let decisions =
            [&self.labels.approve_label, &self.labels.deploy_label, &self.labels.stop_label, &self.labels.answer_label];
        for label in decisions.into_iter().filter(|l| !l.is_empty()) {
            // A decision label matters only on the ticket of a live task.
            for issue in self.api.list_issues_with_label(label).await?.into_iter().filter(|i| live.contains(&i.number))
            {
                let sender = if self.approvers_limited {
                    let added = self.api.list_label_events(issue.number).await?;
                    added.into_iter().rev().find(|e| e.label == *label).map(|e| e.actor).unwrap_or_default()
                } else {
                    String::new()
                };
                events.push(self.event(&issue, "labeled", Some(label), &sender));
            }
        }
        for number in live {
            let issue = match self.api.get_issue(number).await {
                Ok(issue) => issue,
                Err(ApiError::NotFound { .. }) => continue,
                Err(error) => return Err(error),
            };
            if issue.state == "closed" {
                events.push(self.event(&issue, "closed", None, ""));
            }
        }
        Ok(events)
    }
}

#[async_trait]
impl TicketPoller for ForgePoller {
    fn source(&self) -> &str {
        self.api.kind()
    }

    fn ref_prefix(&self) -> String {
        format!("{}:{}#", self.api.kind(), self.repo)
    }

    async fn poll(&self, now_ms: i64, live_refs: &[String]) -> Result<Option<Vec<WebhookEvent>>, AdapterError> {
        let mut schedule = self.schedule.lock().await;
        if self.interval_secs == 0 || !schedule.due(now_ms) {
            return Ok(None);
        }
        let found = self.scan(live_refs).await;
        schedule.after(now_ms, self.interval_secs, found).map(Some)
    }
}

/// Polls one Plane project's work items (every page) and reports each as a state update, the
/// state's name resolved through the project's states.
#[derive(Debug)]
pub struct PlanePoller {
    plane: Plane,
    interval_secs: u64,
    schedule: Mutex<Schedule>,
}

impl PlanePoller {
    pub fn new(plane: Plane, interval_secs: u64) -> Self {
        PlanePoller { plane, interval_secs, schedule: Mutex::new(Schedule::default()) }
    }

    async fn scan(&self) -> Result<Vec<WebhookEvent>, ApiError> {
        let items = self.plane.list_work_items().await?;
        let need_states = items.iter().any(|i| i.state_name.as_deref().is_none_or(str::is_empty));
        let states = if need_states { Some(self.plane.list_states().await?) } else { None };
        Ok(items.into_iter().map(|item| self.event(item, states.as_ref())).collect())
    }

    fn event(&self, item: WorkItem, states: Option<&StateMap>) -> WebhookEvent {
        let state_name = item
            .state_name
            .filter(|n| !n.is_empty())
            .or_else(|| states.and_then(|m| m.name_of(&item.state_id)).map(str::to_string));
        WebhookEvent::WorkItem(WorkItemEvent {
            action: WorkItemAction::Updated,
            id: item.id,
            sequence_id: Some(item.sequence_id),
            name: Some(item.name),
            description_html: Some(item.description_html),
            state_id: Some(item.state_id),
            state_name,
            state_group: None,
            project: Some(self.plane.project().to_string()),
            workspace: None,
            labels: Vec::new(),
            changed_field: Some("state".into()),
            actor: None,
        })
    }
}

#[async_trait]
impl TicketPoller for PlanePoller {
    fn source(&self) -> &str {
        "plane"
    }

    fn ref_prefix(&self) -> String {
        format!("plane:{}/", self.plane.project())
    }

    async fn poll(&self, now_ms: i64, _live_refs: &[String]) -> Result<Option<Vec<WebhookEvent>>, AdapterError> {
        let mut schedule = self.schedule.lock().await;
        if self.interval_secs == 0 || !schedule.due(now_ms) {
            return Ok(None);
        }
        let found = self.scan().await;
        schedule.after(now_ms, self.interval_secs, found).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Unix milliseconds print as RFC 3339 UTC and read back the same (whole seconds).
    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        let ms = 1_800_000_123_000;
        assert_eq!(time_ms(&rfc3339(ms)), Some(ms));
        assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }
}
