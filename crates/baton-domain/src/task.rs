//! The task state `decide` reads and writes; the store keeps it with a version for compare-and-set.

use crate::ids::JobId;
use crate::pipeline::{CANCELLED, DONE};
use serde::{Deserialize, Serialize};

/// Why a non-terminal task is not running a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Hold {
    /// Running or queued: `TaskState::job` names the active job.
    #[default]
    None,
    /// The stage's agent ended with questions; a human answer relaunches the stage.
    NeedsInput { questions: String },
    /// Waiting for a human to approve the stage's result (stop #1).
    AwaitingApproval,
    /// Waiting for a human to confirm before the stage's actor runs (stop #2, Confirm Deploy).
    AwaitingConfirm,
    /// In the repository's merge queue: no job, no slot, no events while it waits; the queue wakes
    /// the task when it is its turn to be tested or landed (SPEC §6.3).
    MergeQueue,
    /// Retries or rollbacks used up, or a failure only a human can fix.
    Blocked { reason: String },
    /// A budget cap was reached; resumes when a human raises the cap and resumes the task.
    PausedBudget { reason: String },
    /// The provider's quota ran out; resumes by itself at `resume_at_ms` (or earlier on request).
    PausedQuota { reason: String, resume_at_ms: i64 },
    /// Deployed; the post-deploy monitor runs the repo `health` command at `next_check_ms` (no
    /// job, no slot: a due hold) until `until_ms`. `failures` counts consecutive failed checks.
    Monitoring { until_ms: i64, next_check_ms: i64, failures: u32, checks: u32 },
}

impl Hold {
    /// When the hold ends by itself or needs the engine again (a quota's reset, the monitor's next
    /// health check): the store indexes it for `due_holds`.
    pub fn due_at_ms(&self) -> Option<i64> {
        match self {
            Hold::PausedQuota { resume_at_ms, .. } => Some(*resume_at_ms),
            Hold::Monitoring { next_check_ms, .. } => Some(*next_check_ms),
            _ => None,
        }
    }

    /// The short label used in listings (`needs_input`, `awaiting_approval`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            Hold::None => "",
            Hold::NeedsInput { .. } => "needs_input",
            Hold::AwaitingApproval => "awaiting_approval",
            Hold::AwaitingConfirm => "awaiting_confirm",
            Hold::MergeQueue => "merge_queue",
            Hold::Blocked { .. } => "blocked",
            Hold::PausedBudget { .. } => "paused_budget",
            Hold::PausedQuota { .. } => "paused_quota",
            Hold::Monitoring { .. } => "monitoring",
        }
    }
}

/// Everything `decide` needs to know about a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    /// Current stage name, or `done` / `cancelled`.
    pub stage: String,
    pub hold: Hold,
    /// The active job; job results for any other job are stale.
    pub job: Option<JobId>,
    /// Attempt of the current stage, from 1.
    pub attempt: u32,
    /// Rollbacks so far for this task.
    pub rollbacks: u32,
    /// Merge-gate deferrals in the current stage.
    pub defers: u32,
    /// Why the last attempt or gate failed; carried into the next prompt.
    pub failure: Option<String>,
    /// Human answers to the current stage's questions, oldest first.
    pub answers: Vec<String>,
    /// Consecutive quota pauses of the current stage (sets the backoff when no reset time is known).
    #[serde(default)]
    pub quota_pauses: u32,
    /// A STOP arrived while the merge or deploy step ran; who asked. Applied when the step ends.
    #[serde(default)]
    pub cancel_requested: Option<String>,
    /// Consecutive infrastructure failures of the current stage (sets their backoff and alerts).
    #[serde(default)]
    pub infra_failures: u32,
}

impl TaskState {
    /// The state of a freshly created task, before its first job is enqueued.
    pub fn new(first_stage: &str) -> Self {
        TaskState {
            stage: first_stage.to_string(),
            hold: Hold::None,
            job: None,
            attempt: 1,
            rollbacks: 0,
            defers: 0,
            failure: None,
            answers: Vec::new(),
            quota_pauses: 0,
            cancel_requested: None,
            infra_failures: 0,
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.stage == DONE || self.stage == CANCELLED
    }

    /// `stage` or `stage (hold)` for humans.
    pub fn display(&self) -> String {
        match self.hold {
            Hold::None => self.stage.clone(),
            ref hold => format!("{} ({})", self.stage, hold.label()),
        }
    }
}
