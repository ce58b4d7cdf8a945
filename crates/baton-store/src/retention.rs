//! Retention: which old rows [`crate::Store::prune`] deletes. The rule is written once here, in
//! Rust; each backend's prune SQL mirrors it term by term (the SimStore calls these functions
//! directly), and the conformance suite's `suite_prune` checks every backend against it.
//!
//! A row goes when it is older than the cutoff **and** its task's story no longer needs it:
//!
//! - an **event** of an *ended* task (stage `done` or `cancelled`) that is not part of the task's
//!   summary ([`event_is_summary`]): progress lines, agent chatter, lease and queue notes go; the
//!   `created` event, every stage transition and every gate verdict stay, so `task show` still
//!   tells what happened, who decided and why;
//! - a **job** that finished before the cutoff, is not its task's current job and has no agent
//!   run (agent runs carry the spend, and reference their job);
//! - an **outbox** row acknowledged before the cutoff;
//! - a **webhook delivery** processed before the cutoff;
//! - an **inbox** row received before the cutoff whose task has ended, or that belongs to no task
//!   (a `record_once` key).
//!
//! Never a live task's event or inbox row, never a task, an agent run, a lease, a token, a budget
//! cap or a counter.

use crate::records::{DeliveryRecord, EffectRecord, EventRecord, JobRecord, JobStatus};

/// The stages of an ended task (the SQL writes them as `stage IN ('done', 'cancelled')`).
pub const ENDED_STAGES: [&str; 2] = [baton_domain::pipeline::DONE, baton_domain::pipeline::CANCELLED];

/// Whether a task in `stage` has ended: only then is its timeline thinned out.
pub fn task_ended(stage: &str) -> bool {
    ENDED_STAGES.contains(&stage)
}

/// Whether an event belongs to its task's summary and is kept whatever its age: the `created`
/// event, every gate verdict (`kind = 'gate'`), and every stage transition (its detail holds
/// the states before and after as strings, `from` and `to`).
///
/// SQLite writes it `kind IN ('created', 'gate') OR (json_type(detail, '$.from') IS 'text' AND
/// json_type(detail, '$.to') IS 'text')`; PostgreSQL the same with `jsonb_typeof(...) = 'string'`.
pub fn event_is_summary(kind: &str, detail: &serde_json::Value) -> bool {
    let text = |key: &str| detail.get(key).is_some_and(serde_json::Value::is_string);
    kind == "created" || kind == "gate" || (text("from") && text("to"))
}

/// Whether `event`, of a task now in `task_stage`, is pruned at cutoff `before_ms`.
pub fn event_prunable(event: &EventRecord, task_stage: &str, before_ms: i64) -> bool {
    event.at_ms < before_ms && task_ended(task_stage) && !event_is_summary(&event.kind, &event.detail)
}

/// Whether `job` is pruned at cutoff `before_ms`: it finished before it, is not its task's current
/// job (`is_current`) and no agent run references it (`has_run`).
pub fn job_prunable(job: &JobRecord, is_current: bool, has_run: bool, before_ms: i64) -> bool {
    let finished = !matches!(job.status, JobStatus::Queued | JobStatus::Running);
    finished && job.finished_at_ms.is_some_and(|at| at < before_ms) && !is_current && !has_run
}

/// Whether an outbox row is pruned: acknowledged before the cutoff.
pub fn effect_prunable(effect: &EffectRecord, before_ms: i64) -> bool {
    effect.done_at_ms.is_some_and(|at| at < before_ms)
}

/// Whether a webhook delivery is pruned: processed before the cutoff.
pub fn delivery_prunable(delivery: &DeliveryRecord, before_ms: i64) -> bool {
    delivery.processed_at_ms.is_some_and(|at| at < before_ms)
}

/// Whether an inbox row received at `received_at_ms` is pruned: before the cutoff, and it belongs
/// to no task or to a task that has ended (a row naming a task that cannot be found is kept).
pub fn inbox_prunable(received_at_ms: i64, task: InboxOwner<'_>, before_ms: i64) -> bool {
    let owner_done = match task {
        InboxOwner::None => true,
        InboxOwner::Task(stage) => task_ended(stage),
        InboxOwner::Missing => false,
    };
    received_at_ms < before_ms && owner_done
}

/// Whose input an inbox row records, for [`inbox_prunable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxOwner<'a> {
    /// No task: a `record_once` key (a one-shot alert).
    None,
    /// A task, now in this stage.
    Task(&'a str),
    /// A task id that names no stored task (kept: nothing says it ended).
    Missing,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_summary_is_created_gates_and_transitions() {
        // The events `task show` needs are recognised; chatter is not.
        assert!(event_is_summary("created", &json!({ "branch": "b" })));
        assert!(event_is_summary("gate", &json!({})));
        assert!(event_is_summary("job_finished", &json!({ "from": "plan", "to": "code" })));
        assert!(!event_is_summary("progress", &json!({ "line": "…" })));
        assert!(!event_is_summary("progress", &json!({ "from": "plan" })));
        assert!(!event_is_summary("odd", &json!({ "from": 1, "to": 2 })));
        assert!(!event_is_summary("odd", &json!(["from", "to"])));
    }

    #[test]
    fn inbox_rows_of_live_or_unknown_tasks_stay() {
        // Only ended tasks' rows and task-less keys go, and only when old.
        assert!(inbox_prunable(1, InboxOwner::None, 2));
        assert!(inbox_prunable(1, InboxOwner::Task("done"), 2));
        assert!(!inbox_prunable(1, InboxOwner::Task("code"), 2));
        assert!(!inbox_prunable(1, InboxOwner::Missing, 2));
        assert!(!inbox_prunable(2, InboxOwner::None, 2));
    }
}
