//! The pipeline as data: stages, their actor, gates, human gates and failure policy (SPEC §3).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The terminal stage reached by a finished task.
pub const DONE: &str = "done";
/// The terminal stage reached by a stopped task.
pub const CANCELLED: &str = "cancelled";

/// Who does the work of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Actor {
    /// Nothing runs; only the gates are evaluated (e.g. `deploy_staging`).
    None,
    /// An agent in the given role (analyst, architect, developer, reviewer, tester).
    Agent { role: String },
    /// Baton merges the retested head into the default branch, then runs the repo's `deploy` command.
    Deploy,
}

/// A deterministic check that must pass to leave a stage (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GateSpec {
    /// The stage's artifact exists under `docs/baton/<WORK-ID>/`.
    Artifact,
    /// The artifact's front matter has `key` set to one of `pass`.
    Verdict { key: String, pass: Vec<String> },
    /// A human approves the stage's result (stop #1).
    HumanApproval,
    /// The repo `test` command exits 0 in the worktree.
    TestsPassed,
    /// The merge gate (§6.3): the change waits in the repo's merge queue, is rebased onto the
    /// changes ahead of it (or the default head) and re-tested there; it passes when it may land.
    Mergeable,
    /// The hosted forge's CI is green on the re-tested head (pushed to the task branch, its pull
    /// request kept current); pending checks defer, a red check fails with its log tail.
    CiGreen,
    /// The repo `health` command exits 0 after deploy.
    DeployStatus,
    /// Any user command; its exit code is the verdict.
    Command { name: String, argv: Vec<String> },
}

impl GateSpec {
    /// The gate's name as shown in timelines and configuration.
    pub fn name(&self) -> &str {
        match self {
            GateSpec::Artifact => "artifact",
            GateSpec::Verdict { .. } => "verdict",
            GateSpec::HumanApproval => "human_approval",
            GateSpec::TestsPassed => "tests_passed",
            GateSpec::Mergeable => "mergeable",
            GateSpec::CiGreen => "ci_green",
            GateSpec::DeployStatus => "deploy_status",
            GateSpec::Command { name, .. } => name,
        }
    }
}

/// What a failing gate does to the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OnGateFail {
    /// Run the same stage again (counts an attempt).
    Retry,
    /// Go back to the named stage with the reason in its next prompt (counts a rollback).
    Rollback { to: String },
    /// Stop and ask a human (a failed deploy after the merge cannot be undone by an agent).
    Block,
}

/// Who runs an agent stage and with what limits, when the stage says so itself: each field set
/// here wins over the agent entry's own setting (`[agents.<role>]`), which wins over the defaults
/// (`[limits]`, the built-in prompt of the role). Empty for a stage that names nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageOverrides {
    /// The agent entry (`[agents.<name>]`) that runs the stage instead of the actor's role's.
    pub agent: Option<String>,
    /// The adapter (`claude`, `codex`, `gemini`, `command`, `script`) instead of the entry's.
    pub adapter: Option<String>,
    /// The model instead of the entry's.
    pub model: Option<String>,
    /// The prompt template's text (minijinja) instead of the role's template.
    pub prompt_template: Option<String>,
    /// The agent's wall-clock limit instead of `limits.agent_timeout_secs`.
    pub timeout_secs: Option<u64>,
    /// The agent's stall limit instead of `limits.stall_timeout_secs`.
    pub stall_timeout_secs: Option<u64>,
    /// A cap on the cost of one agent run of this stage, in USD.
    pub budget_usd: Option<f64>,
}

impl StageOverrides {
    /// Whether the stage overrides nothing.
    pub fn is_empty(&self) -> bool {
        *self == StageOverrides::default()
    }
}

/// One stage of the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    pub name: String,
    pub actor: Actor,
    /// Artifact file name, committed under `docs/baton/<WORK-ID>/`.
    pub artifact: Option<String>,
    pub gates: Vec<GateSpec>,
    /// A human confirms before the actor runs (stop #2, Confirm Deploy).
    pub confirm_before: bool,
    pub on_gate_fail: OnGateFail,
    /// The stage's own choice of agent, adapter, model, prompt, timeouts and budget.
    #[serde(default, skip_serializing_if = "StageOverrides::is_empty")]
    pub overrides: StageOverrides,
    /// The stage runs after the change shipped (the retro, SPEC §3): its outcome never changes the
    /// task's fate. A failed attempt, a red gate, questions, an infrastructure failure, a budget or
    /// quota stop and a STOP all end the task in `done`, never `blocked` or `cancelled`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_ship: bool,
}

impl StageSpec {
    /// Whether this stage is a merge gate (its gates include `mergeable`): where changes wait in
    /// the merge queue, are re-tested on the default branch and take the merge lease.
    pub fn is_merge_gate(&self) -> bool {
        self.gates.contains(&GateSpec::Mergeable)
    }
}

/// The whole pipeline: stages in order, then `done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub stages: Vec<StageSpec>,
    /// Attempts of one stage (agent failures, red gates) before the task is blocked.
    pub retry_max: u32,
    /// Rollbacks of one task before it is blocked.
    pub rollback_max: u32,
    /// Deferrals of one stage (a gate said "not yet", e.g. CI pending) before the task is blocked.
    pub defer_max: u32,
    /// Delay before a deferred stage is tried again.
    pub defer_delay_ms: u64,
    /// Base of the exponential retry backoff (10 s by default).
    pub retry_base_ms: u64,
    /// The post-deploy monitor of the task's repository (SPEC §3 `done` row); `None`: the deploy
    /// stage ends on its one `deploy_status` check. The shell sets it per repository.
    #[serde(default)]
    pub monitor: Option<MonitorSpec>,
}

/// The post-deploy monitor window: after the deploy stage passes its gates, the repo `health`
/// command runs every `interval_ms` until `window_ms` has passed; `failures` consecutive failed
/// checks are DEGRADED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorSpec {
    pub window_ms: u64,
    pub interval_ms: u64,
    pub failures: u32,
}

impl Pipeline {
    /// The SPEC §3 default pipeline.
    pub fn default_pipeline() -> Self {
        let agent = |role: &str| Actor::Agent { role: role.to_string() };
        let verdict = |pass: &str| GateSpec::Verdict { key: "verdict".into(), pass: vec![pass.into()] };
        let rollback = || OnGateFail::Rollback { to: "development".into() };
        let stage = |name: &str, actor, artifact: Option<&str>, gates, on_gate_fail| StageSpec {
            name: name.into(),
            actor,
            artifact: artifact.map(str::to_string),
            gates,
            confirm_before: false,
            on_gate_fail,
            overrides: StageOverrides::default(),
            after_ship: false,
        };
        let mut stages = vec![
            stage(
                "analysis",
                agent("analyst"),
                Some("01-analysis.md"),
                vec![GateSpec::Artifact, GateSpec::HumanApproval],
                OnGateFail::Retry,
            ),
            stage(
                "architecture",
                agent("architect"),
                Some("02-architecture.md"),
                vec![GateSpec::Artifact],
                OnGateFail::Retry,
            ),
            stage("development", agent("developer"), None, vec![GateSpec::TestsPassed], OnGateFail::Retry),
            stage(
                "review",
                agent("reviewer"),
                Some("04-review.md"),
                vec![GateSpec::Artifact, verdict("approve")],
                rollback(),
            ),
            stage(
                "testing",
                agent("tester"),
                Some("05-test-report.md"),
                vec![GateSpec::Artifact, verdict("pass")],
                rollback(),
            ),
            stage("deploy_staging", Actor::None, None, vec![GateSpec::Mergeable], rollback()),
            stage("deploy", Actor::Deploy, None, vec![GateSpec::DeployStatus], OnGateFail::Block),
        ];
        // Confirm Deploy comes before the merge queue: the human says "ship it", then the queue
        // tests the change on top of the ones ahead, lands it and deploys it without waiting on
        // anyone while it holds the repository's merge lease (SPEC §6.3).
        if let Some(staging) = stages.iter_mut().find(|s| s.name == "deploy_staging") {
            staging.confirm_before = true;
        }
        Pipeline {
            stages,
            retry_max: 3,
            rollback_max: 3,
            defer_max: 720,
            defer_delay_ms: 5_000,
            retry_base_ms: crate::retry::RETRY_BASE_MS,
            monitor: None,
        }
    }

    pub fn first(&self) -> Option<&StageSpec> {
        self.stages.first()
    }

    pub fn stage(&self, name: &str) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The first merge-gate stage ([`StageSpec::is_merge_gate`]), if the pipeline has one.
    pub fn merge_gate(&self) -> Option<&StageSpec> {
        self.stages.iter().find(|s| s.is_merge_gate())
    }

    /// The stage after `name`, or `None` when the next step is `done`.
    pub fn next_after(&self, name: &str) -> Option<&StageSpec> {
        let index = self.stages.iter().position(|s| s.name == name)?;
        self.stages.get(index + 1)
    }

    /// Checks references between stages; returns every problem, in stage order.
    pub fn validate(&self) -> Vec<PipelineProblem> {
        let mut problems = Vec::new();
        if self.stages.is_empty() {
            problems.push(PipelineProblem::Empty);
        }
        for (i, stage) in self.stages.iter().enumerate() {
            let name = || stage.name.clone();
            if stage.name == DONE || stage.name == CANCELLED {
                problems.push(PipelineProblem::ReservedStageName { stage: name() });
            }
            if self.stages[..i].iter().any(|s| s.name == stage.name) {
                problems.push(PipelineProblem::DuplicateStage { stage: name() });
            }
            if let OnGateFail::Rollback { to } = &stage.on_gate_fail {
                match self.stages.iter().position(|s| &s.name == to) {
                    None => problems.push(PipelineProblem::UnknownRollbackTarget { stage: name(), target: to.clone() }),
                    Some(j) if j >= i => {
                        problems.push(PipelineProblem::RollbackNotEarlier { stage: name(), target: to.clone() })
                    }
                    Some(_) => {}
                }
            }
            if stage.confirm_before && self.stages[..i].iter().any(|s| s.is_merge_gate()) {
                problems.push(PipelineProblem::ConfirmAfterMergeQueue { stage: name() });
            }
            let needs_artifact = stage.gates.iter().any(|g| matches!(g, GateSpec::Artifact | GateSpec::Verdict { .. }));
            if needs_artifact && stage.artifact.is_none() {
                problems.push(PipelineProblem::MissingArtifact { stage: name() });
            }
        }
        problems
    }
}

/// One problem [`Pipeline::validate`] finds; `Display` gives the message shown to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineProblem {
    /// The pipeline has no stages.
    Empty,
    /// A stage is named `done` or `cancelled`, the names of the terminal stages.
    ReservedStageName { stage: String },
    /// A second stage has the same name as an earlier one.
    DuplicateStage { stage: String },
    /// `on_gate_fail` rolls back to a stage the pipeline does not have.
    UnknownRollbackTarget { stage: String, target: String },
    /// `on_gate_fail` rolls back to the stage itself or a later one.
    RollbackNotEarlier { stage: String, target: String },
    /// An artifact or verdict gate without an `artifact` file name to check.
    MissingArtifact { stage: String },
    /// A human confirmation after the merge queue: the task would wait for a human while holding
    /// the repository's merge lease, stalling every other merge.
    ConfirmAfterMergeQueue { stage: String },
}

impl PipelineProblem {
    /// The name of the stage the problem concerns; `None` for a problem of the whole pipeline.
    pub fn stage(&self) -> Option<&str> {
        match self {
            PipelineProblem::Empty => None,
            PipelineProblem::ReservedStageName { stage }
            | PipelineProblem::DuplicateStage { stage }
            | PipelineProblem::UnknownRollbackTarget { stage, .. }
            | PipelineProblem::RollbackNotEarlier { stage, .. }
            | PipelineProblem::MissingArtifact { stage }
            | PipelineProblem::ConfirmAfterMergeQueue { stage } => Some(stage),
        }
    }
}

impl fmt::Display for PipelineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineProblem::Empty => write!(f, "the pipeline has no stages"),
            PipelineProblem::ReservedStageName { stage } => {
                write!(f, "stage name `{stage}` is reserved for the terminal stage")
            }
            PipelineProblem::DuplicateStage { stage } => write!(f, "stage `{stage}` appears twice"),
            PipelineProblem::UnknownRollbackTarget { stage, target } => {
                write!(f, "stage `{stage}` rolls back to unknown stage `{target}`")
            }
            PipelineProblem::RollbackNotEarlier { stage, target } => {
                write!(f, "stage `{stage}` rolls back to `{target}`, which is not an earlier stage")
            }
            PipelineProblem::ConfirmAfterMergeQueue { stage } => write!(
                f,
                "stage `{stage}` asks for confirmation after the merge queue (a `mergeable` gate comes earlier): \
                 the task would wait for a human while holding the merge lease; set `confirm_before = true` \
                 on the stage with the `mergeable` gate instead"
            ),
            PipelineProblem::MissingArtifact { stage } => {
                write!(f, "stage `{stage}` has an artifact or verdict gate but no `artifact` file name")
            }
        }
    }
}
