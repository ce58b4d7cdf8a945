//! What can happen to a task: job results with gate verdicts, human inputs and STOP.

use crate::ids::JobId;
use serde::{Deserialize, Serialize};

/// A gate's verdict (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Not now (e.g. the merge lease is busy): try the stage again later.
    Defer,
    /// The gate itself could not run; treated like a failed attempt.
    Error,
    /// The change waits in the repository's merge queue (tested, or to be tested, on top of the
    /// changes ahead): the task parks without a job until the queue wakes it.
    Queued,
}

/// One gate's verdict with its human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateVerdict {
    pub gate: String,
    pub verdict: Verdict,
    pub reason: String,
    /// What the verdict was given on, when a later step must act on exactly that (the merge gate:
    /// the re-tested head that deploy may merge, and nothing else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// Where a human sees what the gate judged (the `ci_green` gate: the pull request's page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl GateVerdict {
    pub fn new(gate: &str, verdict: Verdict, reason: impl Into<String>) -> Self {
        GateVerdict { gate: gate.to_string(), verdict, reason: reason.into(), evidence: None, link: None }
    }

    /// The verdict with `link` (when there is one).
    pub fn with_link(mut self, link: Option<String>) -> Self {
        self.link = link;
        self
    }
}

/// How a job ended, as reported by the engine's shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum JobOutcome {
    /// The actor finished; these are the verdicts of the stage's automatic gates.
    Completed { verdicts: Vec<GateVerdict> },
    /// The agent ended with questions for a human.
    NeedsInput { questions: String },
    /// The actor failed (non-zero exit, timeout, stall, bad output).
    Failed { reason: String },
    /// A budget cap was reached before or during the run; the agent was stopped.
    BudgetExceeded { reason: String },
    /// The provider's quota ran out; `resets_at_ms` when the provider said.
    QuotaExhausted { reason: String, resets_at_ms: Option<i64> },
    /// The machine, not the code, failed (disk full, I/O error, a git lock file, a busy database,
    /// a command killed from outside): retried with backoff without spending the stage's attempts
    /// or rollbacks, and never shown to an agent as a failure of its work.
    Infrastructure { reason: String },
    /// The deploy step found the repository's merge lease gone (taken by another task after it
    /// expired) before merging: nothing was merged; the merge gate must rebase and re-test again.
    LeaseLost { reason: String },
}

/// The name of the verdict the deploy actor records once the default branch holds the task's
/// re-tested head (its evidence): from then on the change is shipped and cannot be cancelled.
pub const MERGED_VERDICT: &str = "merged";

impl JobOutcome {
    /// The head a passing merge gate re-tested (what deploy may merge), when this is one.
    pub fn retested_head(&self) -> Option<&str> {
        match self {
            JobOutcome::Completed { verdicts } => verdicts
                .iter()
                .find(|v| v.gate == "mergeable" && v.verdict == Verdict::Pass)
                .and_then(|v| v.evidence.as_deref()),
            _ => None,
        }
    }

    /// The head the default branch holds for the job's change, when its `merged` verdict names
    /// one: merged by this job (a pass), or landed earlier and waiting to deploy (a deferral).
    pub fn landed_head(&self) -> Option<&str> {
        match self {
            JobOutcome::Completed { verdicts } => verdicts
                .iter()
                .find(|v| v.gate == MERGED_VERDICT && matches!(v.verdict, Verdict::Pass | Verdict::Defer))
                .and_then(|v| v.evidence.as_deref()),
            _ => None,
        }
    }

    /// The head the job merged into the default branch, when it did.
    pub fn merged_head(&self) -> Option<&str> {
        match self {
            JobOutcome::Completed { verdicts } => verdicts
                .iter()
                .find(|v| v.gate == MERGED_VERDICT && v.verdict == Verdict::Pass)
                .and_then(|v| v.evidence.as_deref()),
            _ => None,
        }
    }
}

/// An input to `decide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Event {
    /// The task was created; start its first stage.
    Created,
    /// A job of the task ended.
    JobFinished { job: JobId, stage: String, outcome: JobOutcome },
    /// A human approved the stage result (stop #1).
    Approved { by: String },
    /// A human answered the agent's questions.
    Answered { by: String, text: String },
    /// A human confirmed the deploy (stop #2).
    DeployConfirmed { by: String },
    /// A human asked to retry a blocked task from its current stage.
    Retry { by: String },
    /// Resume a task paused for budget or quota.
    Resume { by: String },
    /// STOP: cancel the task. `critical` is set by the shell when the task's change may be landing
    /// or may already have landed (a deploy running or sent back after a claim, a landed change
    /// waiting for its deploy, a batch member whose batch is landing): the cancel then waits for
    /// the step that settles it, and a change that landed ends done ("arrived too late").
    /// `landed` is set by the shell when the default branch already holds the task's change:
    /// shipped code is never called cancelled, so a STOP that has no step to wait for ends the
    /// task done, with an alert saying so.
    Stop {
        by: String,
        #[serde(default)]
        critical: bool,
        #[serde(default)]
        landed: bool,
    },
    /// The merge queue wakes a parked task: its change is to be tested on a new base, landed, or
    /// evicted; `why` is the timeline line.
    QueueTurn { why: String },
    /// The post-deploy monitor ran the repo `health` command: whether it passed, and its output tail.
    HealthChecked { ok: bool, output: String },
    /// The task cannot wait for its dependencies any longer (SPEC §6.4): they form a cycle, or one
    /// was cancelled. `reason` names the tasks and what a human can do.
    DependencyBlocked { reason: String },
}

impl Event {
    /// Who or what sent the event, for log lines (`cli:ann`, `job 12`, `created`).
    pub fn caller(&self) -> String {
        match self {
            Event::Created => "created".to_string(),
            Event::JobFinished { job, .. } => format!("job {job}"),
            Event::Approved { by }
            | Event::Answered { by, .. }
            | Event::DeployConfirmed { by }
            | Event::Retry { by }
            | Event::Resume { by }
            | Event::Stop { by, .. } => by.clone(),
            Event::QueueTurn { .. } => "merge queue".to_string(),
            Event::HealthChecked { .. } => "monitor".to_string(),
            Event::DependencyBlocked { .. } => "dependencies".to_string(),
        }
    }

    /// The event's kind as stored in the timeline.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Created => "created",
            Event::JobFinished { .. } => "job_finished",
            Event::Approved { .. } => "approved",
            Event::Answered { .. } => "answered",
            Event::DeployConfirmed { .. } => "deploy_confirmed",
            Event::Retry { .. } => "retry",
            Event::Resume { .. } => "resume",
            Event::Stop { .. } => "stop",
            Event::QueueTurn { .. } => "queue_turn",
            Event::HealthChecked { .. } => "health_checked",
            Event::DependencyBlocked { .. } => "dependency_blocked",
        }
    }
}
