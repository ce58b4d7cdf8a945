//! `decide(&state, event, &pipeline, now)`: the one function that decides stage changes (SPEC §3, §4.1).
//!
//! It is pure: the shell evaluates gates and runs actors, then feeds the results back as events.
//! A stale or duplicate event is not an error: it yields [`Decision::Suppress`] with a reason.

use crate::event::{Event, GateVerdict, JobOutcome, Verdict};
use crate::pipeline::{Actor, CANCELLED, DONE, GateSpec, OnGateFail, Pipeline, StageSpec};
use crate::retry::{backoff_ms, quota_backoff_ms};
use crate::task::{Hold, TaskState};
use serde::{Deserialize, Serialize};

/// Who a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    /// Progress worth showing (stage changes, done).
    Info,
    /// A human decision is needed (approve, answer, confirm deploy).
    NeedsHuman,
    /// Something failed and a human must look (blocked).
    Alert,
}

/// Work the shell must do after the decision is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "effect")]
pub enum Effect {
    /// Enqueue a job for `stage`, available after `delay_ms`; the store makes it the task's active job.
    EnqueueJob { stage: String, delay_ms: u64 },
    /// Mark every queued or running job of the task cancelled (never requeued).
    CancelJobs,
    /// Stop the running agent's process group (SIGTERM, grace, SIGKILL).
    StopAgent,
    /// Release every lease the task holds (the repo merge lease).
    ReleaseLeases,
    /// Remove the task's worktree.
    RemoveWorktree,
    /// Delete the task branch (never the default branch, never forced).
    DeleteBranch,
    /// Tell humans.
    Notify { kind: NotifyKind, text: String },
    /// The post-deploy monitor found the deploy DEGRADED: freeze the repository, file an incident
    /// task linked to this one and, when the repository enables it, revert the task's commit.
    /// `output` is the last failed check's output tail.
    Degraded { output: String },
}

/// The reason a task whose deploy degraded is blocked with (the start of its `Blocked` reason).
pub const DEPLOY_DEGRADED: &str = "deploy degraded";

/// The result of `decide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Decision {
    /// Move to `next` and perform `effects`; `note` is the timeline line.
    Apply { next: TaskState, effects: Vec<Effect>, note: String },
    /// Nothing changes; the reason is logged.
    Suppress { reason: String },
}

/// After the first, consecutive infrastructure failures alert once per this many.
const INFRA_ALERT_EVERY: u32 = 5;
/// Consecutive infrastructure failures of one stage before a human must look (a machine that
/// keeps failing, or an agent that keeps claiming it does).
const INFRA_FAILURES_MAX: u32 = 12;

fn short_sha(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

fn suppress(reason: impl Into<String>) -> Decision {
    Decision::Suppress { reason: reason.into() }
}

/// Decides what `event` does to a task in `state` under `pipeline` at time `now_ms`.
pub fn decide(state: &TaskState, event: &Event, pipeline: &Pipeline, now_ms: i64) -> Decision {
    if state.is_terminal() {
        return suppress(format!("task is {}; terminal stages ignore `{}`", state.stage, event.kind()));
    }
    match event {
        Event::Created => {
            if state.job.is_some() || state.hold != Hold::None {
                return suppress("task already started");
            }
            match pipeline.stage(&state.stage) {
                Some(spec) => {
                    let mut next = state.clone();
                    let effects = enter(&mut next, spec, pipeline);
                    Decision::Apply { next, effects, note: format!("started at {}", spec.name) }
                }
                None => suppress(format!("stage `{}` is not in the pipeline", state.stage)),
            }
        }
        Event::JobFinished { job, stage, outcome } => {
            if state.job != Some(*job) || &state.stage != stage {
                return suppress(format!(
                    "stale result of job {job} ({stage}); the task is at {} with active job {}",
                    state.display(),
                    state.job.map_or("none".to_string(), |j| j.to_string())
                ));
            }
            match pipeline.stage(stage) {
                Some(spec) if spec.after_ship => after_ship_finished(state, outcome, pipeline),
                Some(spec) => job_finished(state, spec, outcome, pipeline, now_ms),
                None => suppress(format!("stage `{stage}` is not in the pipeline")),
            }
        }
        Event::Approved { by } => match state.hold {
            Hold::AwaitingApproval => advance(state, pipeline, format!("{} approved by {by}", state.stage)),
            _ => suppress(format!("approve ignored: the task is at {}, not awaiting approval", state.display())),
        },
        Event::Answered { by, text } => match state.hold {
            Hold::NeedsInput { .. } => {
                let mut next = state.clone();
                next.hold = Hold::None;
                next.answers.push(text.clone());
                let effects = vec![Effect::EnqueueJob { stage: state.stage.clone(), delay_ms: 0 }];
                Decision::Apply { next, effects, note: format!("answered by {by}; {} relaunched", state.stage) }
            }
            _ => suppress(format!("answer ignored: the task is at {}, not waiting for input", state.display())),
        },
        Event::DeployConfirmed { by } => match state.hold {
            Hold::AwaitingConfirm => {
                let mut next = state.clone();
                next.hold = Hold::None;
                let effects = vec![Effect::EnqueueJob { stage: state.stage.clone(), delay_ms: 0 }];
                Decision::Apply { next, effects, note: format!("{} confirmed by {by}", state.stage) }
            }
            _ => suppress(format!("confirm ignored: the task is at {}, not awaiting confirmation", state.display())),
        },
        Event::Retry { by } => match state.hold {
            Hold::Blocked { .. } => {
                let mut next = state.clone();
                next.hold = Hold::None;
                next.attempt = 1;
                next.rollbacks = 0;
                next.defers = 0;
                let effects = vec![Effect::EnqueueJob { stage: state.stage.clone(), delay_ms: 0 }];
                Decision::Apply { next, effects, note: format!("{} retried by {by}", state.stage) }
            }
            _ => suppress(format!("retry ignored: the task is at {}, not blocked", state.display())),
        },
        Event::Resume { by } => match state.hold {
            Hold::PausedBudget { .. } | Hold::PausedQuota { .. } => {
                let mut next = state.clone();
                next.hold = Hold::None;
                let effects = vec![Effect::EnqueueJob { stage: state.stage.clone(), delay_ms: 0 }];
                Decision::Apply { next, effects, note: format!("{} resumed by {by}", state.stage) }
            }
            _ => suppress(format!("resume ignored: the task is at {}, not paused", state.display())),
        },
        Event::QueueTurn { why } => match state.hold {
            Hold::MergeQueue => {
                let mut next = state.clone();
                next.hold = Hold::None;
                let effects = vec![Effect::EnqueueJob { stage: state.stage.clone(), delay_ms: 0 }];
                Decision::Apply { next, effects, note: format!("{}: {why}", state.stage) }
            }
            _ => suppress(format!(
                "merge queue turn ignored: the task is at {}, not in the merge queue",
                state.display()
            )),
        },
        Event::HealthChecked { ok, output } => match state.hold {
            Hold::Monitoring { until_ms, failures, checks, .. } => {
                health_checked(state, pipeline, *ok, output, until_ms, failures, checks, now_ms)
            }
            _ => suppress(format!("health check ignored: the task is at {}, not monitoring", state.display())),
        },
        Event::Stop { .. } if matches!(state.hold, Hold::Monitoring { .. }) => suppress(
            "the change is deployed and its post-deploy monitor is running: shipped code is never cancelled; \
             the window ends the task (switch the `monitor` feature off to end windows early)",
        ),
        Event::Stop { by, .. } if after_ship(state, pipeline) => {
            let mut decision = shipped_done(
                state,
                format!("{} stopped by {by}; the change is shipped, the task is done", state.stage),
            );
            if let Decision::Apply { effects, .. } = &mut decision {
                effects.splice(0..0, [Effect::StopAgent, Effect::CancelJobs]);
            }
            decision
        }
        Event::DependencyBlocked { .. } if after_ship(state, pipeline) => suppress(format!(
            "dependency block ignored: {} runs after the change shipped, which no dependency can undo",
            state.stage
        )),
        Event::DependencyBlocked { reason } => match state.hold {
            Hold::Blocked { .. } => suppress(format!("already blocked: {}", state.display())),
            // A waiting task's queued job is never claimed; cancel it so the block is the only
            // thing the task does until a human acts (undepend, then retry).
            _ => {
                let mut decision = block(state, reason.clone());
                if let Decision::Apply { effects, .. } = &mut decision {
                    effects.insert(0, Effect::CancelJobs);
                }
                decision
            }
        },
        Event::Stop { by, critical, landed } => {
            if let Some(first) = &state.cancel_requested {
                return suppress(format!("stop already requested by {first}; it applies when the running step ends"));
            }
            // The step that may be merging, or may have merged, cannot be interrupted honestly:
            // cancel when it ends, unless it merged (a change of a batch that is landing waits
            // parked for its merge gate's next run, which says whether the batch landed).
            let settles = (state.job.is_some() && state.hold == Hold::None) || state.hold == Hold::MergeQueue;
            if (*critical || *landed) && settles {
                let mut next = state.clone();
                next.cancel_requested = Some(by.clone());
                let text = if state.hold == Hold::MergeQueue {
                    format!("stop requested by {by}: deferred until the landing of its merge-queue batch settles")
                } else {
                    format!("stop requested by {by}: deferred until the running {} step ends", state.stage)
                };
                let effects = vec![Effect::Notify { kind: NotifyKind::Info, text: text.clone() }];
                return Decision::Apply { next, effects, note: text };
            }
            if *landed {
                // Nothing left to wait for (a deploy blocked after its merge, say): the change is on
                // the default branch, so the task ends done and a human checks the target.
                let note = format!(
                    "stop requested by {by} at {} arrived too late: the change is already on the default branch; \
                     the task ends done (check that the target runs it)",
                    state.display()
                );
                let mut decision = shipped_done(state, note);
                if let Decision::Apply { effects, .. } = &mut decision {
                    effects.splice(0..0, [Effect::StopAgent, Effect::CancelJobs]);
                    alert_instead(effects);
                }
                return decision;
            }
            cancel(state, &format!("stopped by {by} at {}", state.display()))
        }
    }
}

/// The task ends `cancelled`: stop the agent, cancel jobs, release leases, remove the worktree and
/// the task branch.
fn cancel(state: &TaskState, note: &str) -> Decision {
    let mut next = state.clone();
    next.stage = CANCELLED.to_string();
    next.hold = Hold::None;
    next.job = None;
    let effects = vec![
        Effect::StopAgent,
        Effect::CancelJobs,
        Effect::ReleaseLeases,
        Effect::RemoveWorktree,
        Effect::DeleteBranch,
        Effect::Notify { kind: NotifyKind::Info, text: note.to_string() },
    ];
    Decision::Apply { next, effects, note: note.to_string() }
}

/// Whether the task's current stage runs after its change shipped.
fn after_ship(state: &TaskState, pipeline: &Pipeline) -> bool {
    pipeline.stage(&state.stage).is_some_and(|spec| spec.after_ship)
}

/// A stage that runs after the change shipped (the retro) ended: it passes into the next stage
/// (or `done`) whatever happened, since shipped code is never held back, blocked or cancelled.
fn after_ship_finished(state: &TaskState, outcome: &JobOutcome, pipeline: &Pipeline) -> Decision {
    let failure = match outcome {
        JobOutcome::Completed { verdicts } => [Verdict::Error, Verdict::Fail, Verdict::Defer, Verdict::Queued]
            .into_iter()
            .find_map(|verdict| reasons(verdicts, verdict)),
        JobOutcome::Failed { reason }
        | JobOutcome::LeaseLost { reason }
        | JobOutcome::Infrastructure { reason }
        | JobOutcome::BudgetExceeded { reason }
        | JobOutcome::QuotaExhausted { reason, .. } => Some(reason.clone()),
        JobOutcome::NeedsInput { questions } => Some(format!("it asked questions instead of answering: {questions}")),
    };
    let mut decision = match failure {
        Some(reason) => shipped_done(state, format!("{} failed: {reason}; the task is done anyway", state.stage)),
        None => {
            // A human approval gate is not asked after shipping: it would hold a shipped task.
            let mut passed = advance(state, pipeline, format!("{} passed its gates", state.stage));
            if let Decision::Apply { next, .. } = &mut passed {
                next.quota_pauses = 0;
                next.infra_failures = 0;
            }
            passed
        }
    };
    if let (Some(by), Decision::Apply { note, .. }) = (&state.cancel_requested, &mut decision) {
        *note = format!("stop requested by {by} arrived after the change shipped; {note}");
    }
    if let Decision::Apply { next, .. } = &mut decision {
        next.cancel_requested = None;
    }
    decision
}

/// Makes the decision's notifications alerts: a STOP that arrived too late is news for a human.
fn alert_instead(effects: &mut [Effect]) {
    for effect in effects {
        if let Effect::Notify { kind, .. } = effect {
            *kind = NotifyKind::Alert;
        }
    }
}

/// Ends a shipped task in `done` from a stage that runs after shipping, with `note` on the timeline.
fn shipped_done(state: &TaskState, note: String) -> Decision {
    let mut next = state.clone();
    next.stage = DONE.to_string();
    next.hold = Hold::None;
    next.job = None;
    next.failure = None;
    next.cancel_requested = None;
    let effects = vec![
        Effect::ReleaseLeases,
        Effect::RemoveWorktree,
        Effect::Notify { kind: NotifyKind::Info, text: format!("done; {note}") },
    ];
    Decision::Apply { next, effects, note }
}

fn job_finished(
    state: &TaskState,
    spec: &StageSpec,
    outcome: &JobOutcome,
    pipeline: &Pipeline,
    now_ms: i64,
) -> Decision {
    if let Some(by) = &state.cancel_requested {
        // Shipped code is never called cancelled (SPEC §12): once the deploy step merged, the STOP
        // arrived too late and the stage ends on its own gates (the health check still counts).
        if let Some(head) = outcome.merged_head() {
            let mut shipped = state.clone();
            shipped.cancel_requested = None;
            let mut decision = job_finished(&shipped, spec, outcome, pipeline, now_ms);
            if let Decision::Apply { effects, note, .. } = &mut decision {
                let late = format!(
                    "stop requested by {by} arrived too late: {} is already merged and deployed",
                    short_sha(head)
                );
                effects.push(Effect::Notify { kind: NotifyKind::Alert, text: late.clone() });
                *note = format!("{late}; {note}");
            }
            return decision;
        }
        // A deploy step that settled nothing — its change landed and it waits for the merge lease
        // to deploy, it waits for another change's landing or deploy before it looks (a change
        // that landed in an earlier run waits there too: seed 330000973), or it failed on the
        // machine before it could tell — runs again as it would, and the STOP keeps waiting for
        // it: cancelled now, a change on the default branch would be called cancelled.
        let landed = outcome.landed_head().is_some();
        let waits = matches!(outcome, JobOutcome::Completed { verdicts }
            if verdicts.iter().any(|v| v.gate == crate::event::MERGED_VERDICT && v.verdict == Verdict::Defer));
        let unsettled = landed || waits || matches!(outcome, JobOutcome::Infrastructure { .. });
        if spec.actor == Actor::Deploy && unsettled {
            let mut waiting = state.clone();
            waiting.cancel_requested = None;
            let mut decision = job_finished(&waiting, spec, outcome, pipeline, now_ms);
            if let Decision::Apply { next, effects, note } = &mut decision {
                let again =
                    effects.iter().any(|e| matches!(e, Effect::EnqueueJob { stage, .. } if *stage == state.stage));
                if again && next.hold == Hold::None && next.stage == state.stage {
                    next.cancel_requested = Some(by.clone());
                    *note = format!("{note}; the stop requested by {by} waits for the next run of the step");
                } else if landed && matches!(next.hold, Hold::Blocked { .. }) {
                    let late = format!(
                        "stop requested by {by} arrived too late: the change is already on the default branch; \
                         the task ends done (check that the target runs it)"
                    );
                    let mut done = shipped_done(state, format!("{late}; {note}"));
                    if let Decision::Apply { effects, .. } = &mut done {
                        effects.insert(0, Effect::CancelJobs);
                        alert_instead(effects);
                    }
                    return done;
                } else {
                    let text = format!(
                        "stop requested by {by} could not be applied: the {} step failed before it could tell \
                         whether the change landed; stop the task again to end it",
                        state.stage
                    );
                    effects.push(Effect::Notify { kind: NotifyKind::Alert, text: text.clone() });
                    *note = format!("{note}; {text}");
                }
            }
            return decision;
        }
        return cancel(state, &format!("stopped by {by} after the {} step ended", state.stage));
    }
    match outcome {
        JobOutcome::Failed { reason } => failed_attempt(state, pipeline, reason, now_ms),
        JobOutcome::NeedsInput { questions } => {
            let mut next = state.clone();
            next.hold = Hold::NeedsInput { questions: questions.clone() };
            next.job = None;
            let text = format!("{} has questions: {questions}", state.stage);
            let effects = vec![Effect::Notify { kind: NotifyKind::NeedsHuman, text: text.clone() }];
            Decision::Apply { next, effects, note: text }
        }
        JobOutcome::Completed { verdicts } => {
            let mut decision = gates_verdict(state, spec, verdicts, pipeline, now_ms);
            if let Decision::Apply { next, .. } = &mut decision {
                next.quota_pauses = 0;
                next.infra_failures = 0;
            }
            decision
        }
        JobOutcome::LeaseLost { reason } => lease_lost(state, pipeline, reason, now_ms),
        JobOutcome::Infrastructure { reason } if state.infra_failures + 1 >= INFRA_FAILURES_MAX => block(
            state,
            format!("{} hit {INFRA_FAILURES_MAX} infrastructure failures in a row; last: {reason}", state.stage),
        ),
        JobOutcome::Infrastructure { reason } => {
            // Not the code's fault: the attempt, the rollbacks and the failure carried into the next
            // prompt stay as they were; the stage runs again after a backoff, and humans hear of it.
            let mut next = state.clone();
            next.infra_failures = next.infra_failures.saturating_add(1);
            next.job = None;
            let delay_ms = backoff_ms(next.infra_failures, pipeline.retry_base_ms, now_ms.unsigned_abs());
            let text = format!(
                "{} hit an infrastructure failure ({} in a row): {reason}; running it again in {} s",
                state.stage,
                next.infra_failures,
                delay_ms / 1000
            );
            let mut effects = vec![Effect::EnqueueJob { stage: state.stage.clone(), delay_ms }];
            // Alert on the first failure and then every fifth: a full disk must not flood the channel.
            if next.infra_failures == 1 || next.infra_failures.is_multiple_of(INFRA_ALERT_EVERY) {
                effects.push(Effect::Notify { kind: NotifyKind::Alert, text: text.clone() });
            }
            Decision::Apply { next, effects, note: text }
        }
        JobOutcome::BudgetExceeded { reason } => {
            let mut next = state.clone();
            next.hold = Hold::PausedBudget { reason: reason.clone() };
            next.job = None;
            let text = format!("{} paused: {reason}; raise the cap, then `baton task resume`", state.stage);
            let effects = vec![Effect::Notify { kind: NotifyKind::Alert, text: text.clone() }];
            Decision::Apply { next, effects, note: text }
        }
        JobOutcome::QuotaExhausted { reason, resets_at_ms } => {
            // Not the agent's fault: the attempt is not used up; resume at the reset time or after a backoff.
            let mut next = state.clone();
            next.quota_pauses += 1;
            let resume_at_ms = resets_at_ms
                .filter(|at| *at > now_ms)
                .unwrap_or(now_ms.saturating_add(quota_backoff_ms(next.quota_pauses) as i64));
            next.hold = Hold::PausedQuota { reason: reason.clone(), resume_at_ms };
            next.job = None;
            let text = format!(
                "{} paused on provider quota: {reason}; resumes in {} s",
                state.stage,
                resume_at_ms.saturating_sub(now_ms).max(0) / 1000
            );
            let effects = vec![Effect::Notify { kind: NotifyKind::Info, text: text.clone() }];
            Decision::Apply { next, effects, note: text }
        }
    }
}

fn reasons(verdicts: &[GateVerdict], verdict: Verdict) -> Option<String> {
    let parts: Vec<String> =
        verdicts.iter().filter(|v| v.verdict == verdict).map(|v| format!("{}: {}", v.gate, v.reason)).collect();
    if parts.is_empty() { None } else { Some(parts.join("; ")) }
}

fn gates_verdict(
    state: &TaskState,
    spec: &StageSpec,
    verdicts: &[GateVerdict],
    pipeline: &Pipeline,
    now_ms: i64,
) -> Decision {
    if let Some(reason) = reasons(verdicts, Verdict::Error) {
        return failed_attempt(state, pipeline, &format!("gate error: {reason}"), now_ms);
    }
    if let Some(reason) = reasons(verdicts, Verdict::Fail) {
        return match &spec.on_gate_fail {
            OnGateFail::Retry => failed_attempt(state, pipeline, &reason, now_ms),
            OnGateFail::Block => block(state, format!("{} failed: {reason}", state.stage)),
            OnGateFail::Rollback { to } => rollback(state, pipeline, to, &reason),
        };
    }
    if let Some(reason) = reasons(verdicts, Verdict::Queued) {
        // Waiting in the merge queue costs nothing: no job, no deferral count, no timer.
        let mut next = state.clone();
        next.hold = Hold::MergeQueue;
        next.job = None;
        next.defers = 0;
        return Decision::Apply {
            next,
            effects: Vec::new(),
            note: format!("{} in the merge queue: {reason}", state.stage),
        };
    }
    if let Some(reason) = reasons(verdicts, Verdict::Defer) {
        if state.defers >= pipeline.defer_max {
            return block(state, format!("{} deferred {} times: {reason}", state.stage, state.defers));
        }
        let mut next = state.clone();
        next.defers += 1;
        let effects = vec![Effect::EnqueueJob { stage: state.stage.clone(), delay_ms: pipeline.defer_delay_ms }];
        return Decision::Apply { next, effects, note: format!("{} deferred: {reason}", state.stage) };
    }
    if spec.gates.contains(&GateSpec::HumanApproval) {
        let mut next = state.clone();
        next.hold = Hold::AwaitingApproval;
        next.job = None;
        let text = format!("{} is ready for approval", state.stage);
        let effects = vec![Effect::Notify { kind: NotifyKind::NeedsHuman, text: text.clone() }];
        return Decision::Apply { next, effects, note: text };
    }
    if spec.actor == Actor::Deploy
        && let Some(monitor) = pipeline.monitor
    {
        // Deployed and healthy once: the monitor window starts. The merge lease goes now (other
        // changes may land meanwhile, unless a DEGRADED check freezes the repository).
        let mut next = state.clone();
        next.job = None;
        next.failure = None;
        let until_ms = now_ms.saturating_add(monitor.window_ms as i64);
        let next_check_ms = now_ms.saturating_add(monitor.interval_ms.max(1) as i64).min(until_ms);
        next.hold = Hold::Monitoring { until_ms, next_check_ms, failures: 0, checks: 0 };
        let text = format!(
            "{} passed its gates; monitoring health for {} s (every {} s, degraded after {} failures in a row)",
            state.stage,
            monitor.window_ms / 1000,
            monitor.interval_ms / 1000,
            monitor.failures
        );
        let effects = vec![Effect::ReleaseLeases, Effect::Notify { kind: NotifyKind::Info, text: text.clone() }];
        return Decision::Apply { next, effects, note: text };
    }
    advance(state, pipeline, format!("{} passed its gates", state.stage))
}

/// One post-deploy health check's result: the window closes green into `done`, or
/// `monitor.failures` failures in a row are DEGRADED (blocked with [`DEPLOY_DEGRADED`]; the shell
/// freezes the repository), or the next check is scheduled.
#[allow(clippy::too_many_arguments)]
fn health_checked(
    state: &TaskState,
    pipeline: &Pipeline,
    ok: bool,
    output: &str,
    until_ms: i64,
    failures: u32,
    checks: u32,
    now_ms: i64,
) -> Decision {
    let Some(monitor) = pipeline.monitor else {
        // The monitor was switched off meanwhile: the deploy already passed its gates.
        return advance(state, pipeline, format!("{} monitor switched off", state.stage));
    };
    let checks = checks.saturating_add(1);
    let failures = if ok { 0 } else { failures.saturating_add(1) };
    if failures >= monitor.failures.max(1) {
        let reason = format!(
            "{DEPLOY_DEGRADED}: `health` failed {failures} times in a row after deploy; output tail:\n{output}"
        );
        let mut next = state.clone();
        next.hold = Hold::Blocked { reason: reason.clone() };
        next.failure = Some(reason.clone());
        next.job = None;
        let effects = vec![
            Effect::ReleaseLeases,
            Effect::Degraded { output: output.to_string() },
            Effect::Notify { kind: NotifyKind::Alert, text: format!("blocked: {reason}") },
        ];
        return Decision::Apply { next, effects, note: format!("blocked: {reason}") };
    }
    if now_ms >= until_ms && ok {
        return advance(state, pipeline, format!("monitor window closed green after {checks} checks"));
    }
    let mut next = state.clone();
    // A window that closes on a failed check is extended check by check until it passes again or
    // degrades: `done` only ever follows a green check.
    let next_check_ms = now_ms.saturating_add(monitor.interval_ms.max(1) as i64);
    let next_check_ms = if ok { next_check_ms.min(until_ms.max(now_ms)) } else { next_check_ms };
    next.hold = Hold::Monitoring { until_ms, next_check_ms, failures, checks };
    let note = if ok {
        format!("health check {checks} passed")
    } else {
        format!("health check {checks} failed ({failures} of {} in a row): {output}", monitor.failures)
    };
    Decision::Apply { next, effects: Vec::new(), note }
}

/// Enters `spec` as a fresh stage: attempt 1, then either a job or a wait for confirmation.
fn enter(next: &mut TaskState, spec: &StageSpec, pipeline: &Pipeline) -> Vec<Effect> {
    enter_confirmed(next, spec, pipeline, false)
}

/// [`enter`], skipping the confirmation when a human already gave it for this passage (the
/// task goes back to the merge queue on its own, not because its code changed).
fn enter_confirmed(next: &mut TaskState, spec: &StageSpec, _pipeline: &Pipeline, confirmed: bool) -> Vec<Effect> {
    next.stage = spec.name.clone();
    next.attempt = 1;
    next.defers = 0;
    next.answers.clear();
    next.job = None;
    if spec.confirm_before && !confirmed {
        next.hold = Hold::AwaitingConfirm;
        vec![Effect::Notify { kind: NotifyKind::NeedsHuman, text: format!("{} awaits confirmation", spec.name) }]
    } else {
        next.hold = Hold::None;
        vec![Effect::EnqueueJob { stage: spec.name.clone(), delay_ms: 0 }]
    }
}

fn advance(state: &TaskState, pipeline: &Pipeline, why: String) -> Decision {
    let mut next = state.clone();
    next.failure = None;
    match pipeline.next_after(&state.stage) {
        Some(spec) => {
            let mut effects = enter(&mut next, spec, pipeline);
            if spec.after_ship {
                // The change shipped: the merge lease and the queue entry go now, so the next
                // change lands while this one's retro runs.
                effects.insert(0, Effect::ReleaseLeases);
            }
            Decision::Apply { next, effects, note: format!("{why}; {} → {}", state.stage, spec.name) }
        }
        None => {
            next.stage = DONE.to_string();
            next.hold = Hold::None;
            next.job = None;
            let effects = vec![
                Effect::ReleaseLeases,
                Effect::RemoveWorktree,
                Effect::Notify { kind: NotifyKind::Info, text: "done".to_string() },
            ];
            Decision::Apply { next, effects, note: format!("{why}; {} → done", state.stage) }
        }
    }
}

fn failed_attempt(state: &TaskState, pipeline: &Pipeline, reason: &str, now_ms: i64) -> Decision {
    if state.attempt >= pipeline.retry_max {
        return block(state, format!("{} failed {} times; last: {reason}", state.stage, state.attempt));
    }
    let mut next = state.clone();
    next.attempt += 1;
    next.failure = Some(reason.to_string());
    next.job = None;
    // Jitter comes from the decision time: deterministic for a given input, spread across tasks.
    let delay_ms = backoff_ms(state.attempt, pipeline.retry_base_ms, now_ms.unsigned_abs());
    let effects = vec![Effect::EnqueueJob { stage: state.stage.clone(), delay_ms }];
    let note = format!(
        "{} attempt {} failed: {reason}; retry {} in {} s",
        state.stage,
        state.attempt,
        next.attempt,
        delay_ms / 1000
    );
    Decision::Apply { next, effects, note }
}

/// The merge lease was lost before the merge: back to the stage whose merge gate rebases and
/// re-tests (the head it passed may no longer sit on the default branch's head). Not the code's
/// fault: no rollback is spent and the next prompt hears nothing of it.
fn lease_lost(state: &TaskState, pipeline: &Pipeline, reason: &str, now_ms: i64) -> Decision {
    let current = pipeline.stages.iter().position(|s| s.name == state.stage);
    let gate = current.and_then(|at| pipeline.stages[..at].iter().rev().find(|s| s.is_merge_gate()));
    let Some(gate) = gate else {
        return failed_attempt(state, pipeline, reason, now_ms);
    };
    let mut next = state.clone();
    let mut effects = vec![Effect::ReleaseLeases];
    // The human's confirmation stands: the change itself did not change.
    effects.extend(enter_confirmed(&mut next, gate, pipeline, true));
    let text = format!("{} lost the merge lease before merging: {reason}; back to {}", state.stage, gate.name);
    effects.push(Effect::Notify { kind: NotifyKind::Info, text: text.clone() });
    Decision::Apply { next, effects, note: text }
}

fn rollback(state: &TaskState, pipeline: &Pipeline, to: &str, reason: &str) -> Decision {
    if state.rollbacks >= pipeline.rollback_max {
        return block(state, format!("rolled back {} times; last: {} failed: {reason}", state.rollbacks, state.stage));
    }
    let Some(target) = pipeline.stage(to) else {
        return block(state, format!("rollback target `{to}` is not in the pipeline"));
    };
    let mut next = state.clone();
    next.rollbacks += 1;
    next.failure = Some(format!("{} failed: {reason}", state.stage));
    let mut effects = vec![Effect::ReleaseLeases];
    effects.extend(enter(&mut next, target, pipeline));
    let note = format!(
        "{} failed: {reason}; rolled back to {to} ({} of {})",
        state.stage, next.rollbacks, pipeline.rollback_max
    );
    Decision::Apply { next, effects, note }
}

fn block(state: &TaskState, reason: String) -> Decision {
    let mut next = state.clone();
    next.hold = Hold::Blocked { reason: reason.clone() };
    next.failure = Some(reason.clone());
    next.job = None;
    let effects =
        vec![Effect::ReleaseLeases, Effect::Notify { kind: NotifyKind::Alert, text: format!("blocked: {reason}") }];
    Decision::Apply { next, effects, note: format!("blocked: {reason}") }
}
