//! Table and snapshot tests of `decide()` (SPEC §3, §4).
//!
//! Each test is an event script played against the default pipeline; `check!` renders one line per event
//! (`event → stage [effects] {state}` or `event  suppressed: reason`) and compares it with an inline snapshot.
//! The harness plays the store: each `EnqueueJob` gets the next fake job id, which becomes the active job.
#![allow(clippy::unwrap_used)]

use baton_domain::pipeline::{CANCELLED, DONE};
use baton_domain::{
    Actor, Decision, Effect, Event, GateSpec, GateVerdict, Hold, JobId, JobOutcome, NotifyKind, OnGateFail, Pipeline,
    PipelineProblem, StageSpec, TaskState, Verdict, decide,
};
use std::fmt::Write as _;

/// The fake clock: event `i` of a script is decided at `T0 + i` seconds.
const T0: i64 = 1_700_000_000_000;

/// One scripted event, built from the state it is applied to (so job results name the active job).
type Step = Box<dyn Fn(&TaskState, &Pipeline) -> Event>;

/// `check!([steps], @"snapshot")` starts from a fresh `analysis` task;
/// `check!(state, [steps], @"snapshot")` starts from `state`.
macro_rules! check {
    ([$($step:expr),* $(,)?], @$snap:tt) => {
        insta::assert_snapshot!(timeline(&Pipeline::default_pipeline(), TaskState::new("analysis"), vec![$($step),*]), @$snap)
    };
    ($state:expr, [$($step:expr),* $(,)?], @$snap:tt) => {
        insta::assert_snapshot!(timeline(&Pipeline::default_pipeline(), $state, vec![$($step),*]), @$snap)
    };
}

// ---------------------------------------------------------------- harness

/// Plays `steps` from `state`, simulating the store's job-id assignment, and renders the timeline.
fn timeline(pipeline: &Pipeline, state: TaskState, steps: Vec<Step>) -> String {
    let mut state = state;
    let mut next_job = state.job.map_or(1, |j| j.0 + 1);
    let mut out = String::new();
    for (i, step) in steps.iter().enumerate() {
        let event = step(&state, pipeline);
        let now_ms = T0 + 1_000 * i64::try_from(i).unwrap();
        match decide(&state, &event, pipeline, now_ms) {
            Decision::Apply { mut next, effects, note } => {
                assert!(!note.is_empty(), "every applied decision has a timeline note");
                let mut rendered = Vec::new();
                for effect in &effects {
                    let job = match effect {
                        Effect::EnqueueJob { .. } => {
                            next.job = Some(JobId(next_job));
                            next_job += 1;
                            next.job
                        }
                        _ => None,
                    };
                    rendered.push(render_effect(effect, job));
                }
                writeln!(
                    out,
                    "{} → {} [{}]{}",
                    render_event(&event),
                    next.display(),
                    rendered.join(", "),
                    render_extras(&next)
                )
                .unwrap();
                state = next;
            }
            Decision::Suppress { reason } => {
                writeln!(out, "{}  suppressed: {reason}", render_event(&event)).unwrap();
            }
        }
    }
    out
}

fn render_event(event: &Event) -> String {
    match event {
        Event::Created => "created".to_string(),
        Event::JobFinished { job, stage, outcome } => {
            let what = match outcome {
                JobOutcome::Completed { verdicts } => {
                    let bad: Vec<String> = verdicts
                        .iter()
                        .filter(|v| v.verdict != Verdict::Pass)
                        .map(|v| format!("{} {} ({})", v.gate, verdict_name(v.verdict), v.reason))
                        .collect();
                    if bad.is_empty() { "ok".to_string() } else { bad.join(", ") }
                }
                JobOutcome::NeedsInput { questions } => format!("questions ({questions})"),
                JobOutcome::Failed { reason } => format!("agent failed ({reason})"),
                JobOutcome::BudgetExceeded { reason } => format!("budget exceeded ({reason})"),
                JobOutcome::QuotaExhausted { reason, resets_at_ms } => {
                    format!("quota exhausted ({reason}, resets at {resets_at_ms:?})")
                }
                JobOutcome::Infrastructure { reason } => format!("infrastructure failure ({reason})"),
                JobOutcome::LeaseLost { reason } => format!("lease lost ({reason})"),
            };
            format!("job {job} {stage}: {what}")
        }
        Event::Approved { by } => format!("approve by {by}"),
        Event::Answered { by, text } => format!("answer by {by}: {text}"),
        Event::DeployConfirmed { by } => format!("confirm by {by}"),
        Event::Retry { by } => format!("retry by {by}"),
        Event::Resume { by } => format!("resume by {by}"),
        Event::Stop { by, critical, landed } => format!(
            "stop by {by}{}{}",
            if *critical { " (critical)" } else { "" },
            if *landed { " (landed)" } else { "" }
        ),
        Event::QueueTurn { why } => format!("queue turn: {why}"),
        Event::HealthChecked { ok: true, .. } => "health ok".to_string(),
        Event::HealthChecked { ok: false, output } => format!("health failed ({output})"),
        Event::DependencyBlocked { reason } => format!("dependency blocked: {reason}"),
    }
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Defer => "defer",
        Verdict::Error => "error",
        Verdict::Queued => "queued",
    }
}

fn render_effect(effect: &Effect, job: Option<JobId>) -> String {
    match effect {
        Effect::EnqueueJob { stage, delay_ms } => {
            let job = job.map_or("?".to_string(), |j| j.to_string());
            if *delay_ms == 0 {
                format!("enqueue #{job} {stage}")
            } else {
                format!("enqueue #{job} {stage} +{delay_ms}ms")
            }
        }
        Effect::CancelJobs => "cancel_jobs".to_string(),
        Effect::StopAgent => "stop_agent".to_string(),
        Effect::ReleaseLeases => "release_leases".to_string(),
        Effect::RemoveWorktree => "remove_worktree".to_string(),
        Effect::DeleteBranch => "delete_branch".to_string(),
        Effect::Notify { kind, text } => {
            let kind = match kind {
                NotifyKind::Info => "info",
                NotifyKind::NeedsHuman => "needs_human",
                NotifyKind::Alert => "alert",
            };
            format!("notify {kind} \"{text}\"")
        }
        Effect::Degraded { output } => format!("degraded ({output})"),
    }
}

/// The counters and carried text that differ from a fresh stage, e.g. ` {attempt 2, failure "..."}`.
fn render_extras(state: &TaskState) -> String {
    let mut parts = Vec::new();
    if state.attempt != 1 {
        parts.push(format!("attempt {}", state.attempt));
    }
    if state.rollbacks != 0 {
        parts.push(format!("rollbacks {}", state.rollbacks));
    }
    if state.defers != 0 {
        parts.push(format!("defers {}", state.defers));
    }
    if let Some(failure) = &state.failure {
        parts.push(format!("failure \"{failure}\""));
    }
    if state.infra_failures != 0 {
        parts.push(format!("infra {}", state.infra_failures));
    }
    if !state.answers.is_empty() {
        parts.push(format!("answers {:?}", state.answers));
    }
    if let Hold::Monitoring { until_ms, next_check_ms, failures, checks } = state.hold {
        parts.push(format!(
            "checks {checks}, failing {failures}, next +{}s, until +{}s",
            (next_check_ms - T0) / 1000,
            (until_ms - T0) / 1000
        ));
    }
    if parts.is_empty() { String::new() } else { format!(" {{{}}}", parts.join(", ")) }
}

// ---------------------------------------------------------------- states

/// A task at `stage` running job `job`.
fn running(stage: &str, job: i64) -> TaskState {
    TaskState { job: Some(JobId(job)), ..TaskState::new(stage) }
}

/// A task at `stage` parked in `hold`, with no active job.
fn held(stage: &str, hold: Hold) -> TaskState {
    TaskState { hold, ..TaskState::new(stage) }
}

fn blocked(stage: &str) -> Hold {
    Hold::Blocked { reason: format!("{stage} is stuck") }
}

// ---------------------------------------------------------------- events

/// The verdicts of the current stage's non-human gates: all pass except `gate`, which gets `verdict`.
fn verdicts(state: &TaskState, pipeline: &Pipeline, gate: &str, verdict: Verdict, reason: &str) -> Vec<GateVerdict> {
    let mut out: Vec<GateVerdict> = pipeline
        .stage(&state.stage)
        .map(|spec| spec.gates.iter().filter(|g| **g != GateSpec::HumanApproval).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|g| {
            if g.name() == gate {
                GateVerdict::new(gate, verdict, reason)
            } else {
                GateVerdict::new(g.name(), Verdict::Pass, "ok")
            }
        })
        .collect();
    if !gate.is_empty() && !out.iter().any(|v| v.gate == gate) {
        out.push(GateVerdict::new(gate, verdict, reason));
    }
    out
}

fn finished(state: &TaskState, outcome: JobOutcome) -> Event {
    Event::JobFinished { job: state.job.unwrap_or(JobId(0)), stage: state.stage.clone(), outcome }
}

fn created() -> Step {
    Box::new(|_, _| Event::Created)
}

/// The active job of the current stage completes with every automatic gate passing.
fn finish_ok() -> Step {
    Box::new(|s, p| finished(s, JobOutcome::Completed { verdicts: verdicts(s, p, "", Verdict::Pass, "") }))
}

/// The active job completes; `gate` fails with `reason`, the other gates pass.
fn finish_fail(gate: &'static str, reason: &'static str) -> Step {
    Box::new(move |s, p| finished(s, JobOutcome::Completed { verdicts: verdicts(s, p, gate, Verdict::Fail, reason) }))
}

/// The active job completes; `gate` says "not now".
fn finish_defer(gate: &'static str, reason: &'static str) -> Step {
    Box::new(move |s, p| finished(s, JobOutcome::Completed { verdicts: verdicts(s, p, gate, Verdict::Defer, reason) }))
}

/// The active job completes; `gate` parks the change in the merge queue.
fn finish_queued(gate: &'static str, reason: &'static str) -> Step {
    Box::new(move |s, p| finished(s, JobOutcome::Completed { verdicts: verdicts(s, p, gate, Verdict::Queued, reason) }))
}

/// The merge queue wakes the task.
fn queue_turn(why: &'static str) -> Step {
    Box::new(move |_, _| Event::QueueTurn { why: why.to_string() })
}

/// The active job completes; `gate` itself could not run.
fn finish_error(gate: &'static str, reason: &'static str) -> Step {
    Box::new(move |s, p| finished(s, JobOutcome::Completed { verdicts: verdicts(s, p, gate, Verdict::Error, reason) }))
}

/// The active job's agent fails (non-zero exit, timeout, ...).
fn agent_failed(reason: &'static str) -> Step {
    Box::new(move |s, _| finished(s, JobOutcome::Failed { reason: reason.to_string() }))
}

/// The active job's agent ends with questions.
fn questions(text: &'static str) -> Step {
    Box::new(move |s, _| finished(s, JobOutcome::NeedsInput { questions: text.to_string() }))
}

/// A job result with an explicit job id and stage, whatever the task's state.
fn job_result(job: i64, stage: &'static str) -> Step {
    Box::new(move |s, p| Event::JobFinished {
        job: JobId(job),
        stage: stage.to_string(),
        outcome: JobOutcome::Completed {
            verdicts: verdicts(&TaskState { stage: stage.to_string(), ..s.clone() }, p, "", Verdict::Pass, ""),
        },
    })
}

fn approve() -> Step {
    Box::new(|_, _| Event::Approved { by: "ann".to_string() })
}

fn answer(text: &'static str) -> Step {
    Box::new(move |_, _| Event::Answered { by: "ann".to_string(), text: text.to_string() })
}

fn confirm() -> Step {
    Box::new(|_, _| Event::DeployConfirmed { by: "ann".to_string() })
}

fn retry() -> Step {
    Box::new(|_, _| Event::Retry { by: "ann".to_string() })
}

fn health(ok: bool) -> Step {
    Box::new(move |_, _| Event::HealthChecked { ok, output: if ok { "200".into() } else { "503".into() } })
}

fn dependency_blocked(reason: &'static str) -> Step {
    Box::new(move |_, _| Event::DependencyBlocked { reason: reason.to_string() })
}

fn stop() -> Step {
    Box::new(|_, _| Event::Stop { by: "ann".to_string(), critical: false, landed: false })
}

/// One event of every kind, with `result` as the job result.
fn every_event_kind(result: Step) -> Vec<Step> {
    vec![created(), result, approve(), answer("late"), confirm(), retry(), stop()]
}

// ---------------------------------------------------------------- §3 default table

// The SPEC §3 table end to end: every stage in order, both human stops, and the clean-up at done.
#[test]
fn happy_path_walks_every_default_stage_to_done() {
    check!([
        created(),
        finish_ok(),
        approve(),
        finish_ok(),
        finish_ok(),
        finish_ok(),
        finish_ok(),
        confirm(),
        finish_ok(),
        finish_ok(),
    ], @r#"
        created → analysis [enqueue #1 analysis]
        job 1 analysis: ok → analysis (awaiting_approval) [notify needs_human "analysis is ready for approval"]
        approve by ann → architecture [enqueue #2 architecture]
        job 2 architecture: ok → development [enqueue #3 development]
        job 3 development: ok → review [enqueue #4 review]
        job 4 review: ok → testing [enqueue #5 testing]
        job 5 testing: ok → deploy_staging (awaiting_confirm) [notify needs_human "deploy_staging awaits confirmation"]
        confirm by ann → deploy_staging [enqueue #6 deploy_staging]
        job 6 deploy_staging: ok → deploy [enqueue #7 deploy]
        job 7 deploy: ok → done [release_leases, remove_worktree, notify info "done"]
        "#);
}

// A second `Created` (a replayed webhook) does not start the task twice.
#[test]
fn created_twice_is_suppressed() {
    check!([created(), created(), finish_ok(), created()], @r#"
        created → analysis [enqueue #1 analysis]
        created  suppressed: task already started
        job 1 analysis: ok → analysis (awaiting_approval) [notify needs_human "analysis is ready for approval"]
        created  suppressed: task already started
        "#);
}

// ---------------------------------------------------------------- rollback

// A review that requests changes sends the task back to development with the reason and a rollback counted;
// the next development pass clears the reason.
#[test]
fn review_changes_requested_rolls_back_to_development_with_reason() {
    check!(running("review", 4), [
        finish_fail("verdict", "changes_requested: missing tests"),
        finish_ok(),
        finish_ok(),
    ], @r#"
        job 4 review: verdict fail (changes_requested: missing tests) → development [release_leases, enqueue #5 development] {rollbacks 1, failure "review failed: verdict: changes_requested: missing tests"}
        job 5 development: ok → review [enqueue #6 review] {rollbacks 1}
        job 6 review: ok → testing [enqueue #7 testing] {rollbacks 1}
        "#);
}

// A failing test report rolls back to development, not to testing or review.
#[test]
fn testing_fail_rolls_back_to_development() {
    check!(running("testing", 5), [finish_fail("verdict", "fail: 2 scenarios red")], @r#"
        job 5 testing: verdict fail (fail: 2 scenarios red) → development [release_leases, enqueue #6 development] {rollbacks 1, failure "testing failed: verdict: fail: 2 scenarios red"}
        "#);
}

// A red merge gate rolls back to development and releases the repo lease it held.
#[test]
fn merge_gate_fail_rolls_back_and_releases_lease() {
    check!(running("deploy_staging", 6), [finish_fail("mergeable", "tests red after rebase onto main")], @r#"
        job 6 deploy_staging: mergeable fail (tests red after rebase onto main) → development [release_leases, enqueue #7 development] {rollbacks 1, failure "deploy_staging failed: mergeable: tests red after rebase onto main"}
        "#);
}

// rollback_max = 3: three rollbacks are allowed, the fourth failing gate blocks the task with an alert.
#[test]
fn fourth_rollback_blocks_with_alert() {
    check!(running("review", 4), [
        finish_fail("verdict", "changes_requested 1"),
        finish_ok(),
        finish_fail("verdict", "changes_requested 2"),
        finish_ok(),
        finish_fail("verdict", "changes_requested 3"),
        finish_ok(),
        finish_fail("verdict", "changes_requested 4"),
    ], @r#"
        job 4 review: verdict fail (changes_requested 1) → development [release_leases, enqueue #5 development] {rollbacks 1, failure "review failed: verdict: changes_requested 1"}
        job 5 development: ok → review [enqueue #6 review] {rollbacks 1}
        job 6 review: verdict fail (changes_requested 2) → development [release_leases, enqueue #7 development] {rollbacks 2, failure "review failed: verdict: changes_requested 2"}
        job 7 development: ok → review [enqueue #8 review] {rollbacks 2}
        job 8 review: verdict fail (changes_requested 3) → development [release_leases, enqueue #9 development] {rollbacks 3, failure "review failed: verdict: changes_requested 3"}
        job 9 development: ok → review [enqueue #10 review] {rollbacks 3}
        job 10 review: verdict fail (changes_requested 4) → review (blocked) [release_leases, notify alert "blocked: rolled back 3 times; last: review failed: verdict: changes_requested 4"] {rollbacks 3, failure "rolled back 3 times; last: review failed: verdict: changes_requested 4"}
        "#);
}

// ---------------------------------------------------------------- retry cap and backoff

// retry_max = 3: development's tests failing three times blocks the task with an alert.
#[test]
fn tests_passed_failing_three_times_blocks_with_alert() {
    check!(running("development", 3), [
        finish_fail("tests_passed", "2 failing"),
        finish_fail("tests_passed", "1 failing"),
        finish_fail("tests_passed", "1 failing"),
    ], @r#"
        job 3 development: tests_passed fail (2 failing) → development [enqueue #4 development +9788ms] {attempt 2, failure "tests_passed: 2 failing"}
        job 4 development: tests_passed fail (1 failing) → development [enqueue #5 development +21224ms] {attempt 3, failure "tests_passed: 1 failing"}
        job 5 development: tests_passed fail (1 failing) → development (blocked) [release_leases, notify alert "blocked: development failed 3 times; last: tests_passed: 1 failing"] {attempt 3, failure "development failed 3 times; last: tests_passed: 1 failing"}
        "#);
}

// Agent failures retry the same stage after a backoff, then block at the cap.
#[test]
fn agent_failures_retry_with_backoff_then_block() {
    check!(running("architecture", 2), [
        agent_failed("exit 1"),
        agent_failed("timeout"),
        agent_failed("stalled"),
    ], @r#"
        job 2 architecture: agent failed (exit 1) → architecture [enqueue #3 architecture +9788ms] {attempt 2, failure "exit 1"}
        job 3 architecture: agent failed (timeout) → architecture [enqueue #4 architecture +21224ms] {attempt 3, failure "timeout"}
        job 4 architecture: agent failed (stalled) → architecture (blocked) [release_leases, notify alert "blocked: architecture failed 3 times; last: stalled"] {attempt 3, failure "architecture failed 3 times; last: stalled"}
        "#);
}

// Whatever the clock, retry n waits 10 s·2^(n−1) ±10 %.
#[test]
fn agent_failure_backoff_stays_within_schedule() {
    let pipeline = Pipeline::default_pipeline();
    for attempt in 1..pipeline.retry_max {
        let state = TaskState { attempt, ..running("development", 7) };
        let event = finished(&state, JobOutcome::Failed { reason: "exit 1".into() });
        let expected = 10_000u64 << (attempt - 1);
        for now_ms in [0, 1, 999, 7_919, T0, T0 + 12_345, -5, i64::MAX, i64::MIN] {
            let Decision::Apply { next, effects, .. } = decide(&state, &event, &pipeline, now_ms) else {
                panic!("attempt {attempt} at {now_ms} was suppressed");
            };
            assert_eq!(next.attempt, attempt + 1);
            let [Effect::EnqueueJob { stage, delay_ms }] = effects.as_slice() else {
                panic!("expected one EnqueueJob, got {effects:?}");
            };
            assert_eq!(stage, "development");
            assert!(
                (expected - expected / 10..=expected + expected / 10).contains(delay_ms),
                "attempt {attempt} at {now_ms}: {delay_ms} ms is outside {expected} ms ±10 %"
            );
        }
    }
}

// A gate that could not run counts as a failed attempt of the same stage (no rollback), up to the cap.
#[test]
fn gate_error_counts_as_failed_attempt() {
    check!(running("review", 4), [
        finish_error("verdict", "front matter unreadable"),
        finish_error("artifact", "disk full"),
        finish_error("verdict", "front matter unreadable"),
    ], @r#"
        job 4 review: verdict error (front matter unreadable) → review [enqueue #5 review +9788ms] {attempt 2, failure "gate error: verdict: front matter unreadable"}
        job 5 review: artifact error (disk full) → review [enqueue #6 review +21224ms] {attempt 3, failure "gate error: artifact: disk full"}
        job 6 review: verdict error (front matter unreadable) → review (blocked) [release_leases, notify alert "blocked: review failed 3 times; last: gate error: verdict: front matter unreadable"] {attempt 3, failure "review failed 3 times; last: gate error: verdict: front matter unreadable"}
        "#);
}

// A failed deploy health check blocks at once: a merged deploy is not retried or rolled back by an agent.
#[test]
fn deploy_health_failure_blocks() {
    check!(running("deploy", 8), [finish_fail("deploy_status", "health returned 503")], @r#"
        job 8 deploy: deploy_status fail (health returned 503) → deploy (blocked) [release_leases, notify alert "blocked: deploy failed: deploy_status: health returned 503"] {failure "deploy failed: deploy_status: health returned 503"}
        "#);
}

// ---------------------------------------------------------------- needs_input

// Questions park the task; the answer relaunches the SAME stage with the same attempt and keeps the answer.
#[test]
fn answer_relaunches_same_stage_with_same_attempt() {
    check!(running("analysis", 1), [
        agent_failed("exit 1"),
        questions("Which database?"),
        answer("PostgreSQL"),
        questions("Which version?"),
        answer("16"),
        finish_ok(),
        approve(),
    ], @r#"
        job 1 analysis: agent failed (exit 1) → analysis [enqueue #2 analysis +9788ms] {attempt 2, failure "exit 1"}
        job 2 analysis: questions (Which database?) → analysis (needs_input) [notify needs_human "analysis has questions: Which database?"] {attempt 2, failure "exit 1"}
        answer by ann: PostgreSQL → analysis [enqueue #3 analysis] {attempt 2, failure "exit 1", answers ["PostgreSQL"]}
        job 3 analysis: questions (Which version?) → analysis (needs_input) [notify needs_human "analysis has questions: Which version?"] {attempt 2, failure "exit 1", answers ["PostgreSQL"]}
        answer by ann: 16 → analysis [enqueue #4 analysis] {attempt 2, failure "exit 1", answers ["PostgreSQL", "16"]}
        job 4 analysis: ok → analysis (awaiting_approval) [notify needs_human "analysis is ready for approval"] {attempt 2, failure "exit 1", answers ["PostgreSQL", "16"]}
        approve by ann → architecture [enqueue #5 architecture]
        "#);
}

// An answer is only taken while the task waits for input.
#[test]
fn answer_only_acts_when_needs_input() {
    check!([created(), answer("too early"), finish_ok(), answer("not asked")], @r#"
        created → analysis [enqueue #1 analysis]
        answer by ann: too early  suppressed: answer ignored: the task is at analysis, not waiting for input
        job 1 analysis: ok → analysis (awaiting_approval) [notify needs_human "analysis is ready for approval"]
        answer by ann: not asked  suppressed: answer ignored: the task is at analysis (awaiting_approval), not waiting for input
        "#);
}

// ---------------------------------------------------------------- human gates

// Approve only acts while awaiting approval: not while analysis runs, not twice, not during development.
#[test]
fn approve_only_acts_when_awaiting_approval() {
    check!([created(), approve(), finish_ok(), approve(), approve(), finish_ok(), approve()], @r#"
        created → analysis [enqueue #1 analysis]
        approve by ann  suppressed: approve ignored: the task is at analysis, not awaiting approval
        job 1 analysis: ok → analysis (awaiting_approval) [notify needs_human "analysis is ready for approval"]
        approve by ann → architecture [enqueue #2 architecture]
        approve by ann  suppressed: approve ignored: the task is at architecture, not awaiting approval
        job 2 architecture: ok → development [enqueue #3 development]
        approve by ann  suppressed: approve ignored: the task is at development, not awaiting approval
        "#);
}

// Approve does not answer questions: a task in needs_input stays there.
#[test]
fn approve_does_not_answer_questions() {
    check!(running("analysis", 1), [questions("Which database?"), approve()], @r#"
        job 1 analysis: questions (Which database?) → analysis (needs_input) [notify needs_human "analysis has questions: Which database?"]
        approve by ann  suppressed: approve ignored: the task is at analysis (needs_input), not awaiting approval
        "#);
}

// Confirm only acts while deploy awaits confirmation: not earlier, not twice, not while the deploy runs.
#[test]
fn confirm_only_acts_when_awaiting_confirm() {
    check!(running("testing", 5), [confirm(), finish_ok(), confirm(), confirm(), finish_ok()], @r#"
        confirm by ann  suppressed: confirm ignored: the task is at testing, not awaiting confirmation
        job 5 testing: ok → deploy_staging (awaiting_confirm) [notify needs_human "deploy_staging awaits confirmation"]
        confirm by ann → deploy_staging [enqueue #6 deploy_staging]
        confirm by ann  suppressed: confirm ignored: the task is at deploy_staging, not awaiting confirmation
        job 6 deploy_staging: ok → deploy [enqueue #7 deploy]
        "#);
}

// Confirm does not approve analysis, and approve does not confirm a deploy.
#[test]
fn human_gates_are_not_interchangeable() {
    check!(held("analysis", Hold::AwaitingApproval), [confirm(), approve()], @r"
        confirm by ann  suppressed: confirm ignored: the task is at analysis (awaiting_approval), not awaiting confirmation
        approve by ann → architecture [enqueue #1 architecture]
        ");
    check!(held("deploy_staging", Hold::AwaitingConfirm), [approve(), confirm()], @r"
        approve by ann  suppressed: approve ignored: the task is at deploy_staging (awaiting_confirm), not awaiting approval
        confirm by ann → deploy_staging [enqueue #1 deploy_staging]
        ");
}

// ---------------------------------------------------------------- terminal

// After done, every event kind is suppressed with a reason (SPEC §4.3).
#[test]
fn done_ignores_every_later_event() {
    let mut steps = vec![finish_ok()];
    steps.extend(every_event_kind(job_result(8, "deploy")));
    insta::assert_snapshot!(timeline(&Pipeline::default_pipeline(), running("deploy", 8), steps), @r#"
        job 8 deploy: ok → done [release_leases, remove_worktree, notify info "done"]
        created  suppressed: task is done; terminal stages ignore `created`
        job 8 deploy: ok  suppressed: task is done; terminal stages ignore `job_finished`
        approve by ann  suppressed: task is done; terminal stages ignore `approved`
        answer by ann: late  suppressed: task is done; terminal stages ignore `answered`
        confirm by ann  suppressed: task is done; terminal stages ignore `deploy_confirmed`
        retry by ann  suppressed: task is done; terminal stages ignore `retry`
        stop by ann  suppressed: task is done; terminal stages ignore `stop`
        "#);
}

// After cancelled, every event kind is suppressed with a reason, including a second STOP (notifies once).
#[test]
fn cancelled_ignores_every_later_event() {
    let mut steps = vec![stop()];
    steps.extend(every_event_kind(job_result(3, "development")));
    insta::assert_snapshot!(timeline(&Pipeline::default_pipeline(), running("development", 3), steps), @r#"
        stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at development"]
        created  suppressed: task is cancelled; terminal stages ignore `created`
        job 3 development: ok  suppressed: task is cancelled; terminal stages ignore `job_finished`
        approve by ann  suppressed: task is cancelled; terminal stages ignore `approved`
        answer by ann: late  suppressed: task is cancelled; terminal stages ignore `answered`
        confirm by ann  suppressed: task is cancelled; terminal stages ignore `deploy_confirmed`
        retry by ann  suppressed: task is cancelled; terminal stages ignore `retry`
        stop by ann  suppressed: task is cancelled; terminal stages ignore `stop`
        "#);
}

// ---------------------------------------------------------------- stale and duplicate results

// Results of a job that is not the active one, or that name another stage, change nothing.
#[test]
fn stale_job_results_are_suppressed() {
    check!(running("development", 3), [
        job_result(2, "development"),
        job_result(3, "review"),
        job_result(99, "analysis"),
        finish_ok(),
    ], @r"
        job 2 development: ok  suppressed: stale result of job 2 (development); the task is at development with active job 3
        job 3 review: ok  suppressed: stale result of job 3 (review); the task is at development with active job 3
        job 99 analysis: ok  suppressed: stale result of job 99 (analysis); the task is at development with active job 3
        job 3 development: ok → review [enqueue #4 review]
        ");
}

// A job result delivered twice advances the task once.
#[test]
fn duplicate_job_result_after_advance_is_suppressed() {
    check!(running("development", 3), [finish_ok(), job_result(3, "development")], @r"
        job 3 development: ok → review [enqueue #4 review]
        job 3 development: ok  suppressed: stale result of job 3 (development); the task is at review with active job 4
        ");
}

// A late result of the job that produced the analysis changes nothing while it awaits approval.
#[test]
fn job_result_while_awaiting_approval_is_suppressed() {
    check!(running("analysis", 1), [finish_ok(), job_result(1, "analysis")], @r#"
        job 1 analysis: ok → analysis (awaiting_approval) [notify needs_human "analysis is ready for approval"]
        job 1 analysis: ok  suppressed: stale result of job 1 (analysis); the task is at analysis (awaiting_approval) with active job none
        "#);
}

// A late result of a failed attempt does not count once the retry is enqueued.
#[test]
fn result_of_superseded_attempt_is_suppressed() {
    check!(running("development", 3), [agent_failed("exit 1"), job_result(3, "development"), finish_ok()], @r#"
        job 3 development: agent failed (exit 1) → development [enqueue #4 development +9788ms] {attempt 2, failure "exit 1"}
        job 3 development: ok  suppressed: stale result of job 3 (development); the task is at development with active job 4
        job 4 development: ok → review [enqueue #5 review]
        "#);
}

// ---------------------------------------------------------------- merge queue

// A change in the merge queue parks the task: no job, no deferral, no timer; the queue's turn
// relaunches the stage; a turn for a task that is not parked is suppressed; a STOP while it waits
// cancels at once (nothing irreversible is running).
#[test]
fn merge_queue_parks_without_a_job_and_its_turn_relaunches_the_stage() {
    let state = TaskState { defers: 3, ..running("deploy_staging", 6) };
    check!(state, [
        finish_queued("mergeable", "entered the merge queue of demo"),
        queue_turn("tested on main 0123456789"),
        queue_turn("a second wake"),
        finish_queued("mergeable", "green on top of 0123456789; waits for its turn to land"),
        queue_turn("landing"),
        finish_ok(),
    ], @r#"
        job 6 deploy_staging: mergeable queued (entered the merge queue of demo) → deploy_staging (merge_queue) []
        queue turn: tested on main 0123456789 → deploy_staging [enqueue #7 deploy_staging]
        queue turn: a second wake  suppressed: merge queue turn ignored: the task is at deploy_staging, not in the merge queue
        job 7 deploy_staging: mergeable queued (green on top of 0123456789; waits for its turn to land) → deploy_staging (merge_queue) []
        queue turn: landing → deploy_staging [enqueue #8 deploy_staging]
        job 8 deploy_staging: ok → deploy [enqueue #9 deploy]
        "#);
    check!(held("deploy_staging", Hold::MergeQueue), [stop()], @r#"
        stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at deploy_staging (merge_queue)"]
        "#);
}

// An evicted change (its re-test failed on top of green changes) rolls back to development with
// the reason, leaving the queue with its leases.
#[test]
fn merge_queue_eviction_rolls_back_with_the_reason() {
    check!(running("deploy_staging", 6), [finish_fail("mergeable", "re-test on top of main failed")], @r#"
        job 6 deploy_staging: mergeable fail (re-test on top of main failed) → development [release_leases, enqueue #7 development] {rollbacks 1, failure "deploy_staging failed: mergeable: re-test on top of main failed"}
        "#);
}

// ---------------------------------------------------------------- defer

// A busy merge lease defers deploy_staging: same stage again after defer_delay_ms, attempt unchanged.
#[test]
fn mergeable_defer_requeues_same_stage_with_delay() {
    check!(running("deploy_staging", 6), [
        finish_defer("mergeable", "repo lease held by DEMO-002"),
        finish_defer("mergeable", "repo lease held by DEMO-002"),
        finish_ok(),
    ], @r#"
        job 6 deploy_staging: mergeable defer (repo lease held by DEMO-002) → deploy_staging [enqueue #7 deploy_staging +5000ms] {defers 1}
        job 7 deploy_staging: mergeable defer (repo lease held by DEMO-002) → deploy_staging [enqueue #8 deploy_staging +5000ms] {defers 2}
        job 8 deploy_staging: ok → deploy [enqueue #9 deploy]
        "#);
}

// Deferrals beyond defer_max (720) block the task.
#[test]
fn defers_beyond_defer_max_block() {
    let state = TaskState { defers: 719, ..running("deploy_staging", 6) };
    check!(state, [finish_defer("mergeable", "lease busy"), finish_defer("mergeable", "lease busy")], @r#"
        job 6 deploy_staging: mergeable defer (lease busy) → deploy_staging [enqueue #7 deploy_staging +5000ms] {defers 720}
        job 7 deploy_staging: mergeable defer (lease busy) → deploy_staging (blocked) [release_leases, notify alert "blocked: deploy_staging deferred 720 times: mergeable: lease busy"] {defers 720, failure "deploy_staging deferred 720 times: mergeable: lease busy"}
        "#);
}

// ---------------------------------------------------------------- stop

// STOP cancels from every non-terminal stage and hold, with the full clean-up (SPEC §12).
#[test]
fn stop_cancels_from_every_non_terminal_stage() {
    let pipeline = Pipeline::default_pipeline();
    let mut starts: Vec<TaskState> = vec![TaskState::new("analysis")];
    for (i, spec) in pipeline.stages.iter().enumerate() {
        starts.push(running(&spec.name, i64::try_from(i).unwrap() + 1));
    }
    starts.push(held("analysis", Hold::NeedsInput { questions: "Which database?".into() }));
    starts.push(held("analysis", Hold::AwaitingApproval));
    starts.push(held("deploy", Hold::AwaitingConfirm));
    starts.push(held("development", blocked("development")));
    let mut out = String::new();
    for start in starts {
        let line = timeline(&pipeline, start.clone(), vec![stop()]);
        write!(out, "{:<30} {line}", start.display()).unwrap();
    }
    insta::assert_snapshot!(out, @r#"
        analysis                       stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at analysis"]
        analysis                       stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at analysis"]
        architecture                   stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at architecture"]
        development                    stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at development"]
        review                         stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at review"]
        testing                        stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at testing"]
        deploy_staging                 stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at deploy_staging"]
        deploy                         stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at deploy"]
        analysis (needs_input)         stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at analysis (needs_input)"]
        analysis (awaiting_approval)   stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at analysis (awaiting_approval)"]
        deploy (awaiting_confirm)      stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at deploy (awaiting_confirm)"]
        development (blocked)          stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at development (blocked)"]
        "#);
}

// ---------------------------------------------------------------- retry

// Retry on a blocked task re-enqueues its stage with attempt, rollbacks and defers reset.
#[test]
fn retry_on_blocked_task_resets_counters() {
    let state = TaskState { attempt: 3, rollbacks: 2, defers: 4, ..running("development", 9) };
    check!(state, [finish_fail("tests_passed", "3 failing"), retry(), finish_ok()], @r#"
        job 9 development: tests_passed fail (3 failing) → development (blocked) [release_leases, notify alert "blocked: development failed 3 times; last: tests_passed: 3 failing"] {attempt 3, rollbacks 2, defers 4, failure "development failed 3 times; last: tests_passed: 3 failing"}
        retry by ann → development [enqueue #10 development] {failure "development failed 3 times; last: tests_passed: 3 failing"}
        job 10 development: ok → review [enqueue #11 review]
        "#);
}

// Retry is only for blocked tasks: running, parked or waiting tasks ignore it.
#[test]
fn retry_only_acts_when_blocked() {
    check!([retry(), created(), retry(), questions("Which database?"), retry(), answer("PostgreSQL"), finish_ok(), retry()], @r#"
        retry by ann  suppressed: retry ignored: the task is at analysis, not blocked
        created → analysis [enqueue #1 analysis]
        retry by ann  suppressed: retry ignored: the task is at analysis, not blocked
        job 1 analysis: questions (Which database?) → analysis (needs_input) [notify needs_human "analysis has questions: Which database?"]
        retry by ann  suppressed: retry ignored: the task is at analysis (needs_input), not blocked
        answer by ann: PostgreSQL → analysis [enqueue #2 analysis] {answers ["PostgreSQL"]}
        job 2 analysis: ok → analysis (awaiting_approval) [notify needs_human "analysis is ready for approval"] {answers ["PostgreSQL"]}
        retry by ann  suppressed: retry ignored: the task is at analysis (awaiting_approval), not blocked
        "#);
}

// ---------------------------------------------------------------- exhaustive

// For every stage, hold, counter edge and event kind: decide never panics, never moves a terminal task,
// and every applied decision keeps the state coherent.
#[test]
fn decide_never_panics_and_terminal_never_moves() {
    let pipeline = Pipeline::default_pipeline();
    let mut stages: Vec<String> = pipeline.stages.iter().map(|s| s.name.clone()).collect();
    stages.extend([DONE.to_string(), CANCELLED.to_string(), "no_such_stage".to_string()]);
    let holds = [
        Hold::None,
        Hold::NeedsInput { questions: "?".into() },
        Hold::AwaitingApproval,
        Hold::AwaitingConfirm,
        Hold::Blocked { reason: "stuck".into() },
        Hold::PausedBudget { reason: "cap".into() },
        Hold::PausedQuota { reason: "limit".into(), resume_at_ms: 5 },
    ];
    let outcomes = |stage: &str| {
        let mut out = vec![
            JobOutcome::Completed { verdicts: vec![] },
            JobOutcome::NeedsInput { questions: "?".into() },
            JobOutcome::Failed { reason: "exit 1".into() },
            JobOutcome::BudgetExceeded { reason: "cap".into() },
            JobOutcome::QuotaExhausted { reason: "limit".into(), resets_at_ms: None },
            JobOutcome::QuotaExhausted { reason: "limit".into(), resets_at_ms: Some(10_000) },
            JobOutcome::Infrastructure { reason: "disk full".into() },
            JobOutcome::LeaseLost { reason: "held by task:9".into() },
        ];
        let gate = pipeline.stage(stage).and_then(|s| s.gates.first()).map_or("artifact", GateSpec::name);
        for verdict in [Verdict::Pass, Verdict::Fail, Verdict::Defer, Verdict::Error] {
            out.push(JobOutcome::Completed { verdicts: vec![GateVerdict::new(gate, verdict, "r")] });
        }
        out
    };
    let mut decisions = 0;
    for stage in &stages {
        for hold in &holds {
            // Only reachable states: a parked task never has an active job.
            let jobs = if *hold == Hold::None { vec![None, Some(JobId(1))] } else { vec![None] };
            for job in jobs {
                for (attempt, rollbacks, defers) in
                    [(1, 0, 0), (pipeline.retry_max, pipeline.rollback_max, pipeline.defer_max)]
                {
                    let state = TaskState {
                        stage: stage.clone(),
                        hold: hold.clone(),
                        job,
                        attempt,
                        rollbacks,
                        defers,
                        failure: None,
                        answers: vec![],
                        quota_pauses: 0,
                        cancel_requested: None,
                        infra_failures: 0,
                    };
                    let mut events = vec![
                        Event::Created,
                        Event::Approved { by: "a".into() },
                        Event::Answered { by: "a".into(), text: "t".into() },
                        Event::DeployConfirmed { by: "a".into() },
                        Event::Retry { by: "a".into() },
                        Event::Resume { by: "a".into() },
                        Event::Stop { by: "a".into(), critical: false, landed: false },
                        Event::Stop { by: "a".into(), critical: true, landed: false },
                    ];
                    for (job, event_stage) in [(1, stage.as_str()), (2, stage.as_str()), (1, "analysis")] {
                        for outcome in outcomes(event_stage) {
                            events.push(Event::JobFinished { job: JobId(job), stage: event_stage.into(), outcome });
                        }
                    }
                    for event in &events {
                        for now_ms in [0, -1, T0, i64::MAX, i64::MIN] {
                            decisions += 1;
                            let decision = decide(&state, event, &pipeline, now_ms);
                            assert_coherent(&pipeline, &state, event, &decision);
                        }
                    }
                }
            }
        }
    }
    assert!(decisions > 5_000, "the loop covered only {decisions} decisions");
}

fn assert_coherent(pipeline: &Pipeline, state: &TaskState, event: &Event, decision: &Decision) {
    let context = format!("{state:?} + {event:?} → {decision:?}");
    let Decision::Apply { next, effects, .. } = decision else {
        return;
    };
    assert!(!state.is_terminal(), "a terminal task moved: {context}");
    assert!(
        next.stage == state.stage || next.is_terminal() || pipeline.stage(&next.stage).is_some(),
        "moved to a stage outside the pipeline: {context}"
    );
    if next.stage == CANCELLED {
        assert!(matches!(event, Event::Stop { .. }), "only STOP cancels: {context}");
    }
    if next.stage == DONE {
        assert!(
            matches!(event, Event::JobFinished { .. } | Event::Approved { .. }),
            "done without a result: {context}"
        );
    }
    if next.is_terminal() {
        assert_eq!(next.hold, Hold::None, "{context}");
        assert_eq!(next.job, None, "{context}");
    }
    for effect in effects {
        if let Effect::EnqueueJob { stage, .. } = effect {
            assert_eq!(stage, &next.stage, "job enqueued for another stage: {context}");
            assert_eq!(next.hold, Hold::None, "job enqueued for a parked task: {context}");
        }
    }
    let enqueues = effects.iter().filter(|e| matches!(e, Effect::EnqueueJob { .. })).count();
    assert!(enqueues <= 1, "more than one job enqueued: {context}");
    // A running task gets a new job, unless a deferred STOP leaves its running job alone.
    let deferred_stop = next.cancel_requested.is_some() && next.job.is_some() && next.job == state.job;
    if next.hold == Hold::None && !next.is_terminal() && !deferred_stop {
        assert_eq!(enqueues, 1, "a running task without a job: {context}");
    }
    assert!(next.attempt >= 1 && next.attempt <= pipeline.retry_max, "attempt out of range: {context}");
    assert!(next.rollbacks <= pipeline.rollback_max, "rollbacks over the cap: {context}");
    assert!(next.defers <= pipeline.defer_max, "defers over the cap: {context}");
}

// ---------------------------------------------------------------- Pipeline::validate

// The built-in SPEC §3 pipeline has no problems.
#[test]
fn validate_accepts_default_pipeline() {
    assert_eq!(Pipeline::default_pipeline().validate(), Vec::<PipelineProblem>::new());
}

/// The problems' messages, one a line.
fn problem_lines(problems: &[PipelineProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

// Each broken reference is reported once, in stage order, naming the stage it concerns.
#[test]
fn validate_reports_every_broken_reference() {
    let stage = |name: &str, artifact: Option<&str>, gates: Vec<GateSpec>, on_gate_fail| StageSpec {
        name: name.into(),
        actor: Actor::Agent { role: "developer".into() },
        artifact: artifact.map(str::to_string),
        gates,
        confirm_before: false,
        on_gate_fail,
        overrides: Default::default(),
        after_ship: false,
    };
    let rollback = |to: &str| OnGateFail::Rollback { to: to.into() };
    let verdict = GateSpec::Verdict { key: "verdict".into(), pass: vec!["pass".into()] };
    let pipeline = Pipeline {
        stages: vec![
            stage("build", None, vec![GateSpec::TestsPassed], rollback("ship")),
            stage("review", None, vec![verdict], rollback("nowhere")),
            stage("review", Some("r.md"), vec![GateSpec::Artifact], rollback("review")),
            stage("done", None, vec![GateSpec::Artifact], OnGateFail::Retry),
            stage("cancelled", Some("c.md"), vec![], OnGateFail::Block),
            stage("ship", Some("s.md"), vec![], rollback("ship")),
        ],
        ..Pipeline::default_pipeline()
    };
    let problems = pipeline.validate();
    let name = |name: &str| name.to_string();
    assert_eq!(
        problems,
        [
            PipelineProblem::RollbackNotEarlier { stage: name("build"), target: name("ship") },
            PipelineProblem::UnknownRollbackTarget { stage: name("review"), target: name("nowhere") },
            PipelineProblem::MissingArtifact { stage: name("review") },
            PipelineProblem::DuplicateStage { stage: name("review") },
            PipelineProblem::ReservedStageName { stage: name("done") },
            PipelineProblem::MissingArtifact { stage: name("done") },
            PipelineProblem::ReservedStageName { stage: name("cancelled") },
            PipelineProblem::RollbackNotEarlier { stage: name("ship"), target: name("ship") },
        ]
    );
    let stages: Vec<_> = problems.iter().map(PipelineProblem::stage).collect();
    assert_eq!(stages, ["build", "review", "review", "review", "done", "done", "cancelled", "ship"].map(Some));
    insta::assert_snapshot!(problem_lines(&problems), @r"
        stage `build` rolls back to `ship`, which is not an earlier stage
        stage `review` rolls back to unknown stage `nowhere`
        stage `review` has an artifact or verdict gate but no `artifact` file name
        stage `review` appears twice
        stage name `done` is reserved for the terminal stage
        stage `done` has an artifact or verdict gate but no `artifact` file name
        stage name `cancelled` is reserved for the terminal stage
        stage `ship` rolls back to `ship`, which is not an earlier stage
        ");
}

// A pipeline without stages is reported, not accepted.
#[test]
fn validate_rejects_empty_pipeline() {
    let pipeline = Pipeline { stages: vec![], ..Pipeline::default_pipeline() };
    let problems = pipeline.validate();
    assert_eq!(problems, [PipelineProblem::Empty]);
    assert_eq!(problems[0].stage(), None);
    insta::assert_snapshot!(problem_lines(&problems), @r"
        the pipeline has no stages
        ");
}

// ---------------------------------------------------------------- budgets and provider quota

fn budget_exceeded() -> Step {
    Box::new(|s, _| finished(s, JobOutcome::BudgetExceeded { reason: "task X spent $1.20 of its $1.00 budget".into() }))
}

fn quota(resets_at_ms: Option<i64>) -> Step {
    Box::new(move |s, _| finished(s, JobOutcome::QuotaExhausted { reason: "usage limit".into(), resets_at_ms }))
}

fn resume() -> Step {
    Box::new(|_, _| Event::Resume { by: "ann".to_string() })
}

// A budget stop parks the task without using an attempt; only a resume restarts the same stage.
#[test]
fn budget_exceeded_parks_until_resumed() {
    check!(running("development", 4), [budget_exceeded(), finish_ok(), approve(), resume(), resume()], @r#"
        job 4 development: budget exceeded (task X spent $1.20 of its $1.00 budget) → development (paused_budget) [notify alert "development paused: task X spent $1.20 of its $1.00 budget; raise the cap, then `baton task resume`"]
        job 0 development: ok  suppressed: stale result of job 0 (development); the task is at development (paused_budget) with active job none
        approve by ann  suppressed: approve ignored: the task is at development (paused_budget), not awaiting approval
        resume by ann → development [enqueue #5 development]
        resume by ann  suppressed: resume ignored: the task is at development, not paused
        "#);
}

// A quota ending parks the task with a resume time: the provider's when given, else 60 s, then
// doubling on consecutive pauses; attempts are untouched and a completed stage clears the count.
#[test]
fn quota_pauses_back_off_and_resume_without_using_attempts() {
    check!(
        running("development", 4),
        [quota(None), resume(), quota(None), resume(), quota(Some(T0 + 3_600_000)), resume(), finish_ok()],
        @r#"
        job 4 development: quota exhausted (usage limit, resets at None) → development (paused_quota) [notify info "development paused on provider quota: usage limit; resumes in 60 s"]
        resume by ann → development [enqueue #5 development]
        job 5 development: quota exhausted (usage limit, resets at None) → development (paused_quota) [notify info "development paused on provider quota: usage limit; resumes in 120 s"]
        resume by ann → development [enqueue #6 development]
        job 6 development: quota exhausted (usage limit, resets at Some(1700003600000)) → development (paused_quota) [notify info "development paused on provider quota: usage limit; resumes in 3596 s"]
        resume by ann → development [enqueue #7 development]
        job 7 development: ok → review [enqueue #8 review]
        "#
    );
}

// ---------------------------------------------------------------- STOP during the irreversible step

fn stop_critical() -> Step {
    Box::new(|_, _| Event::Stop { by: "bob".to_string(), critical: true, landed: false })
}

// A STOP while the deploy actor runs is deferred (one notification; a repeated STOP changes
// nothing), then applied when the step ends, whatever its outcome (SPEC §12, ORCH-090).
#[test]
fn stop_during_running_deploy_is_deferred_then_applied() {
    check!(running("deploy", 9), [stop_critical(), stop_critical(), stop(), finish_ok(), stop()], @r#"
        stop by bob (critical) → deploy [notify info "stop requested by bob: deferred until the running deploy step ends"]
        stop by bob (critical)  suppressed: stop already requested by bob; it applies when the running step ends
        stop by ann  suppressed: stop already requested by bob; it applies when the running step ends
        job 9 deploy: ok → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by bob after the deploy step ended"]
        stop by ann  suppressed: task is cancelled; terminal stages ignore `stop`
        "#);
}

// Idle parking at Confirm Deploy (lease held, nothing running) is not critical: STOP cancels at once.
#[test]
fn stop_while_awaiting_confirm_cancels_at_once() {
    check!(held("deploy", Hold::AwaitingConfirm), [stop(), confirm()], @r#"
        stop by ann → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by ann at deploy (awaiting_confirm)"]
        confirm by ann  suppressed: task is cancelled; terminal stages ignore `deploy_confirmed`
        "#);
}

// ---------------------------------------------------------------- infrastructure failures

fn infra(reason: &'static str) -> Step {
    Box::new(move |s, _| finished(s, JobOutcome::Infrastructure { reason: reason.into() }))
}

// A full disk is not the code's fault: the stage runs again after a growing backoff without using
// an attempt or a rollback and without a failure for the next prompt; humans get an alert on the
// first and every fifth one; a completed run clears the count.
#[test]
fn infrastructure_failures_retry_without_spending_attempts_or_reaching_the_prompt() {
    let state = TaskState { attempt: 2, failure: Some("review: add a test".into()), ..running("deploy_staging", 4) };
    check!(
        state,
        [infra("No space left on device"), infra("No space left on device"), infra("x"), infra("x"), infra("x"), finish_ok()],
        @r#"
        job 4 deploy_staging: infrastructure failure (No space left on device) → deploy_staging [enqueue #5 deploy_staging +9788ms, notify alert "deploy_staging hit an infrastructure failure (1 in a row): No space left on device; running it again in 9 s"] {attempt 2, failure "review: add a test", infra 1}
        job 5 deploy_staging: infrastructure failure (No space left on device) → deploy_staging [enqueue #6 deploy_staging +21224ms] {attempt 2, failure "review: add a test", infra 2}
        job 6 deploy_staging: infrastructure failure (x) → deploy_staging [enqueue #7 deploy_staging +36559ms] {attempt 2, failure "review: add a test", infra 3}
        job 7 deploy_staging: infrastructure failure (x) → deploy_staging [enqueue #8 deploy_staging +87641ms] {attempt 2, failure "review: add a test", infra 4}
        job 8 deploy_staging: infrastructure failure (x) → deploy_staging [enqueue #9 deploy_staging +144660ms, notify alert "deploy_staging hit an infrastructure failure (5 in a row): x; running it again in 144 s"] {attempt 2, failure "review: add a test", infra 5}
        job 9 deploy_staging: ok → deploy [enqueue #10 deploy]
        "#
    );
}

// ---------------------------------------------------------------- STOP after the merge

/// The deploy job merged `head` and its health gate passed (or failed).
fn deployed(health: Verdict) -> Step {
    Box::new(move |s, _| {
        let mut merged = GateVerdict::new(baton_domain::MERGED_VERDICT, Verdict::Pass, "main fast-forwarded");
        merged.evidence = Some("0123456789abcdef".into());
        let health = GateVerdict::new("deploy_status", health, "health");
        finished(s, JobOutcome::Completed { verdicts: vec![merged, health] })
    })
}

// A STOP deferred during deploy arrives too late once main holds the change: the task ends done
// (its health gate decided), with an alert saying the stop came too late; never `cancelled`.
#[test]
fn stop_during_deploy_after_the_merge_ends_done_and_says_too_late() {
    check!(running("deploy", 9), [stop_critical(), deployed(Verdict::Pass), stop()], @r#"
        stop by bob (critical) → deploy [notify info "stop requested by bob: deferred until the running deploy step ends"]
        job 9 deploy: ok → done [release_leases, remove_worktree, notify info "done", notify alert "stop requested by bob arrived too late: 0123456789 is already merged and deployed"]
        stop by ann  suppressed: task is done; terminal stages ignore `stop`
        "#);
}

// The same after a failed health check: the change is shipped, so the task blocks for a human.
#[test]
fn stop_during_deploy_after_the_merge_with_failed_health_blocks() {
    check!(running("deploy", 9), [stop_critical(), deployed(Verdict::Fail)], @r#"
        stop by bob (critical) → deploy [notify info "stop requested by bob: deferred until the running deploy step ends"]
        job 9 deploy: deploy_status fail (health) → deploy (blocked) [release_leases, notify alert "blocked: deploy failed: deploy_status: health", notify alert "stop requested by bob arrived too late: 0123456789 is already merged and deployed"] {failure "deploy failed: deploy_status: health"}
        "#);
}

fn stop_landed() -> Step {
    Box::new(|_, _| Event::Stop { by: "bob".to_string(), critical: false, landed: true })
}

/// The deploy job found its change landed by an earlier run and waits for the merge lease.
fn landed_waits() -> Step {
    Box::new(|s, _| {
        let mut waits = GateVerdict::new(baton_domain::MERGED_VERDICT, Verdict::Defer, "lease busy; landed");
        waits.evidence = Some("0123456789abcdef".into());
        finished(s, JobOutcome::Completed { verdicts: vec![waits] })
    })
}

// A STOP that waited for a deploy whose change had landed before (the deploy now waits for the
// merge lease) keeps waiting for the next run of the deploy, which ends the task done: a cancel
// then would call code on the default branch cancelled.
#[test]
fn stop_waiting_for_a_landed_deploy_waits_for_its_next_run() {
    check!(running("deploy", 9), [stop_critical(), landed_waits(), stop(), deployed(Verdict::Pass)], @r#"
        stop by bob (critical) → deploy [notify info "stop requested by bob: deferred until the running deploy step ends"]
        job 9 deploy: merged defer (lease busy; landed) → deploy [enqueue #10 deploy +5000ms] {defers 1}
        stop by ann  suppressed: stop already requested by bob; it applies when the running step ends
        job 10 deploy: ok → done [release_leases, remove_worktree, notify info "done", notify alert "stop requested by bob arrived too late: 0123456789 is already merged and deployed"] {defers 1}
        "#);
}

// A deploy that failed on the machine may have merged before it could tell: the STOP waits for
// the next run, and a run that merged nothing then cancels.
#[test]
fn stop_waiting_for_a_deploy_that_failed_on_the_machine_waits_for_its_next_run() {
    check!(running("deploy", 9), [stop_critical(), infra("database is locked"), agent_failed("stop requested by bob before the merge; not merging")], @r#"
        stop by bob (critical) → deploy [notify info "stop requested by bob: deferred until the running deploy step ends"]
        job 9 deploy: infrastructure failure (database is locked) → deploy [enqueue #10 deploy +10788ms, notify alert "deploy hit an infrastructure failure (1 in a row): database is locked; running it again in 10 s"] {infra 1}
        job 10 deploy: agent failed (stop requested by bob before the merge; not merging) → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by bob after the deploy step ended"] {infra 1}
        "#);
}

// A STOP of a task whose change is on the default branch and that has no step to wait for (its
// deploy blocked after the merge) ends it done with an alert, never cancelled.
#[test]
fn stop_of_a_blocked_task_whose_change_landed_ends_done() {
    check!(held("deploy", blocked("deploy")), [stop_landed(), stop()], @r#"
        stop by bob (landed) → done [stop_agent, cancel_jobs, release_leases, remove_worktree, notify alert "done; stop requested by bob at deploy (blocked) arrived too late: the change is already on the default branch; the task ends done (check that the target runs it)"]
        stop by ann  suppressed: task is done; terminal stages ignore `stop`
        "#);
}

// A change of a merge-queue batch that is landing (parked in the queue) waits for its merge gate's
// next run, which says whether the batch landed.
#[test]
fn stop_of_a_change_whose_batch_is_landing_waits_parked() {
    check!(held("deploy_staging", Hold::MergeQueue), [stop_critical(), stop()], @r#"
        stop by bob (critical) → deploy_staging (merge_queue) [notify info "stop requested by bob: deferred until the landing of its merge-queue batch settles"]
        stop by ann  suppressed: stop already requested by bob; it applies when the running step ends
        "#);
}

// A deploy job that ended before merging (it failed, or refused) lets the STOP cancel the task.
#[test]
fn stop_during_deploy_before_the_merge_cancels() {
    check!(running("deploy", 9), [stop_critical(), agent_failed("deploy lease lost")], @r#"
        stop by bob (critical) → deploy [notify info "stop requested by bob: deferred until the running deploy step ends"]
        job 9 deploy: agent failed (deploy lease lost) → cancelled [stop_agent, cancel_jobs, release_leases, remove_worktree, delete_branch, notify info "stopped by bob after the deploy step ended"]
        "#);
}

// The deploy found the merge lease taken by another task (it expired while Baton was paused):
// nothing was merged, so the task goes back to the merge gate to rebase and re-test, spending no
// rollback and telling the next prompt nothing.
#[test]
fn lease_lost_before_the_merge_goes_back_to_the_merge_gate() {
    let lost = || -> Step { Box::new(|s, _| finished(s, JobOutcome::LeaseLost { reason: "held by task:21".into() })) };
    check!(running("deploy", 9), [lost(), finish_ok(), confirm()], @r#"
        job 9 deploy: lease lost (held by task:21) → deploy_staging [release_leases, enqueue #10 deploy_staging, notify info "deploy lost the merge lease before merging: held by task:21; back to deploy_staging"]
        job 10 deploy_staging: ok → deploy [enqueue #11 deploy]
        confirm by ann  suppressed: confirm ignored: the task is at deploy, not awaiting confirmation
        "#);
}

// Twelve infrastructure failures in a row block the task for a human (a machine that keeps failing,
// or an agent that keeps claiming it does, must not retry for ever).
#[test]
fn infrastructure_failures_block_after_twelve_in_a_row() {
    let state = TaskState { infra_failures: 11, ..running("development", 4) };
    check!(state, [infra("No space left on device")], @r#"
        job 4 development: infrastructure failure (No space left on device) → development (blocked) [release_leases, notify alert "blocked: development hit 12 infrastructure failures in a row; last: No space left on device"] {failure "development hit 12 infrastructure failures in a row; last: No space left on device", infra 11}
        "#);
}

// ---------------------------------------------------------------- post-deploy monitor (SPEC §3 `done` row)

/// The default pipeline with a 3 s monitor window, a check a second, degraded after 2 failures.
fn monitored() -> Pipeline {
    Pipeline {
        monitor: Some(baton_domain::MonitorSpec { window_ms: 3_000, interval_ms: 1_000, failures: 2 }),
        ..Pipeline::default_pipeline()
    }
}

// A deploy that passes its gates waits in the monitor hold (lease released, no job); the window
// closing green is what makes it done.
#[test]
fn monitor_window_closes_green_into_done() {
    let steps = vec![finish_ok(), health(true), health(true), health(true), health(true)];
    insta::assert_snapshot!(timeline(&monitored(), running("deploy", 8), steps), @r#"
    job 8 deploy: ok → deploy (monitoring) [release_leases, notify info "deploy passed its gates; monitoring health for 3 s (every 1 s, degraded after 2 failures in a row)"] {checks 0, failing 0, next +1s, until +3s}
    health ok → deploy (monitoring) [] {checks 1, failing 0, next +2s, until +3s}
    health ok → deploy (monitoring) [] {checks 2, failing 0, next +3s, until +3s}
    health ok → done [release_leases, remove_worktree, notify info "done"]
    health ok  suppressed: task is done; terminal stages ignore `health_checked`
    "#);
}

// K failures in a row are DEGRADED: the task is blocked with the reason and the shell is told to
// freeze, file the incident and revert; a later check changes nothing.
#[test]
fn monitor_degrades_after_consecutive_failures() {
    let steps = vec![finish_ok(), health(false), health(true), health(false), health(false), health(true)];
    insta::assert_snapshot!(timeline(&monitored(), running("deploy", 8), steps), @r#"
    job 8 deploy: ok → deploy (monitoring) [release_leases, notify info "deploy passed its gates; monitoring health for 3 s (every 1 s, degraded after 2 failures in a row)"] {checks 0, failing 0, next +1s, until +3s}
    health failed (503) → deploy (monitoring) [] {checks 1, failing 1, next +2s, until +3s}
    health ok → deploy (monitoring) [] {checks 2, failing 0, next +3s, until +3s}
    health failed (503) → deploy (monitoring) [] {checks 3, failing 1, next +4s, until +3s}
    health failed (503) → deploy (blocked) [release_leases, degraded (503), notify alert "blocked: deploy degraded: `health` failed 2 times in a row after deploy; output tail:
    503"] {failure "deploy degraded: `health` failed 2 times in a row after deploy; output tail:
    503"}
    health ok  suppressed: health check ignored: the task is at deploy (blocked), not monitoring
    "#);
}

// Shipped code is never cancelled: STOP while monitoring is suppressed, and so is every human
// input that does not belong to the monitor hold.
#[test]
fn monitor_ignores_stop_and_other_inputs() {
    let state = held("deploy", Hold::Monitoring { until_ms: T0 + 3_000, next_check_ms: T0, failures: 0, checks: 0 });
    insta::assert_snapshot!(timeline(&monitored(), state, vec![stop(), confirm(), retry(), queue_turn("late")]), @r"
    stop by ann  suppressed: the change is deployed and its post-deploy monitor is running: shipped code is never cancelled; the window ends the task (switch the `monitor` feature off to end windows early)
    confirm by ann  suppressed: confirm ignored: the task is at deploy (monitoring), not awaiting confirmation
    retry by ann  suppressed: retry ignored: the task is at deploy (monitoring), not blocked
    queue turn: late  suppressed: merge queue turn ignored: the task is at deploy (monitoring), not in the merge queue
    ");
}

// A monitor switched off while a window is open: the next check ends the task as the one
// `deploy_status` check did; without a monitor, deploy goes straight to done as before.
#[test]
fn monitor_switched_off_ends_the_window() {
    let state = held("deploy", Hold::Monitoring { until_ms: T0 + 3_000, next_check_ms: T0, failures: 1, checks: 1 });
    insta::assert_snapshot!(timeline(&Pipeline::default_pipeline(), state, vec![health(true)]), @r#"
    health ok → done [release_leases, remove_worktree, notify info "done"]
    "#);
}

// ---------------------------------------------------------------- dependencies (SPEC §6.4)

// A task waiting for its dependencies is blocked when they can never be met: its queued job is
// cancelled and a human alerted; a second report is suppressed; a human's retry starts the stage again.
#[test]
fn dependency_blocked_blocks_once_with_an_alert_and_retry_resumes() {
    check!([
        created(),
        dependency_blocked("dependency cycle ACME-1 → ACME-2 → ACME-1"),
        dependency_blocked("dependency cycle ACME-1 → ACME-2 → ACME-1"),
        retry(),
    ], @r#"
        created → analysis [enqueue #1 analysis]
        dependency blocked: dependency cycle ACME-1 → ACME-2 → ACME-1 → analysis (blocked) [cancel_jobs, release_leases, notify alert "blocked: dependency cycle ACME-1 → ACME-2 → ACME-1"] {failure "dependency cycle ACME-1 → ACME-2 → ACME-1"}
        dependency blocked: dependency cycle ACME-1 → ACME-2 → ACME-1  suppressed: already blocked: analysis (blocked)
        retry by ann → analysis [enqueue #2 analysis] {failure "dependency cycle ACME-1 → ACME-2 → ACME-1"}
        "#);
}

// A task that ended ignores a late dependency report.
#[test]
fn dependency_blocked_after_done_is_suppressed() {
    check!(held("done", Hold::None), [dependency_blocked("ACME-2 was cancelled")], @r#"
        dependency blocked: ACME-2 was cancelled  suppressed: task is done; terminal stages ignore `dependency_blocked`
        "#);
}

// ---------------------------------------------------------------- after-ship stages (the retro)

/// The default pipeline with a `retro` stage appended after deploy, as `[retro] enabled` builds it.
fn with_retro() -> Pipeline {
    let mut pipeline = Pipeline::default_pipeline();
    pipeline.stages.push(StageSpec {
        name: "retro".into(),
        actor: Actor::Agent { role: "retro".into() },
        artifact: Some("09-retro.md".into()),
        gates: vec![GateSpec::Artifact],
        confirm_before: false,
        on_gate_fail: OnGateFail::Retry,
        overrides: Default::default(),
        after_ship: true,
    });
    pipeline
}

/// Decides `event` for a task running job 9 of the retro stage; returns the next state, the
/// effects and the note.
fn at_retro(event: impl Fn(&TaskState) -> Event) -> (TaskState, Vec<Effect>, String) {
    let state = running("retro", 9);
    match decide(&state, &event(&state), &with_retro(), T0) {
        Decision::Apply { next, effects, note } => (next, effects, note),
        Decision::Suppress { reason } => panic!("suppressed: {reason}"),
    }
}

/// Asserts that a retro outcome ended the task in `done` (not blocked, not cancelled), with the
/// failure wording and the clean-up of done.
fn assert_done_anyway(outcome: JobOutcome, reason: &str) {
    let (next, effects, note) = at_retro(|s| finished(s, outcome.clone()));
    assert_eq!(next.stage, DONE, "{note}");
    assert_eq!(next.hold, Hold::None, "{note}");
    assert_eq!(next.job, None);
    assert_eq!(note, format!("retro failed: {reason}; the task is done anyway"));
    assert!(effects.contains(&Effect::ReleaseLeases) && effects.contains(&Effect::RemoveWorktree), "{effects:?}");
    assert!(!effects.contains(&Effect::DeleteBranch), "a shipped task keeps its branch: {effects:?}");
    assert!(!effects.iter().any(|e| matches!(e, Effect::EnqueueJob { .. })), "no retry: {effects:?}");
}

// Deploy passing its gates enters the retro stage, releasing the merge lease (the next change may
// land meanwhile); the retro passing its gates ends in done.
#[test]
fn a_shipped_task_enters_the_retro_and_a_passing_retro_is_done() {
    let pipeline = with_retro();
    let state = running("deploy", 4);
    let event =
        finished(&state, JobOutcome::Completed { verdicts: verdicts(&state, &pipeline, "", Verdict::Pass, "") });
    let Decision::Apply { next, effects, .. } = decide(&state, &event, &pipeline, T0) else { panic!("suppressed") };
    assert_eq!((next.stage.as_str(), &next.hold), ("retro", &Hold::None));
    assert!(effects.contains(&Effect::EnqueueJob { stage: "retro".into(), delay_ms: 0 }), "{effects:?}");
    assert!(effects.contains(&Effect::ReleaseLeases), "the merge lease goes once shipped: {effects:?}");
    let (next, _, note) =
        at_retro(|s| finished(s, JobOutcome::Completed { verdicts: verdicts(s, &pipeline, "", Verdict::Pass, "") }));
    assert_eq!(next.stage, DONE);
    assert_eq!(note, "retro passed its gates; retro → done");
}

// A retro agent that fails is not retried and never blocks: the task is done.
#[test]
fn a_failed_retro_attempt_ends_in_done() {
    assert_done_anyway(JobOutcome::Failed { reason: "agent exited 1".into() }, "agent exited 1");
}

// A retro whose artifact gate fails (or cannot run) ends in done, not retried or blocked.
#[test]
fn a_failing_retro_gate_ends_in_done() {
    let pipeline = with_retro();
    let state = running("retro", 9);
    let failing = verdicts(&state, &pipeline, "artifact", Verdict::Fail, "09-retro.md is missing");
    assert_done_anyway(JobOutcome::Completed { verdicts: failing }, "artifact: 09-retro.md is missing");
    let error = verdicts(&state, &pipeline, "artifact", Verdict::Error, "git failed");
    assert_done_anyway(JobOutcome::Completed { verdicts: error }, "artifact: git failed");
}

// A retro agent asking questions does not park the shipped task for a human.
#[test]
fn a_retro_needing_input_ends_in_done() {
    assert_done_anyway(
        JobOutcome::NeedsInput { questions: "which lessons?".into() },
        "it asked questions instead of answering: which lessons?",
    );
}

// An infrastructure failure during the retro does not rerun it forever nor block: done.
#[test]
fn a_retro_infrastructure_failure_ends_in_done() {
    assert_done_anyway(JobOutcome::Infrastructure { reason: "disk full".into() }, "disk full");
}

// A budget cap or a provider quota reached by the retro does not pause the shipped task: done.
#[test]
fn a_retro_budget_or_quota_stop_ends_in_done() {
    assert_done_anyway(JobOutcome::BudgetExceeded { reason: "daily cap reached".into() }, "daily cap reached");
    assert_done_anyway(
        JobOutcome::QuotaExhausted { reason: "429 rate limited".into(), resets_at_ms: Some(T0 + 60_000) },
        "429 rate limited",
    );
}

// A STOP during the retro stops the agent and cancels its job, and the shipped task is done,
// never cancelled.
#[test]
fn a_stop_during_the_retro_ends_in_done_not_cancelled() {
    for critical in [false, true] {
        let (next, effects, note) = at_retro(|_| Event::Stop { by: "ann".into(), critical, landed: false });
        assert_eq!(next.stage, DONE);
        assert_ne!(next.stage, CANCELLED);
        assert_eq!(note, "retro stopped by ann; the change is shipped, the task is done");
        assert_eq!(&effects[..2], &[Effect::StopAgent, Effect::CancelJobs]);
        assert!(!effects.contains(&Effect::DeleteBranch), "{effects:?}");
    }
}

// A dependency block cannot reach a shipped task at its retro.
#[test]
fn a_dependency_block_at_the_retro_is_suppressed() {
    let state = running("retro", 9);
    let event = Event::DependencyBlocked { reason: "waits for a cancelled task".into() };
    assert!(matches!(decide(&state, &event, &with_retro(), T0), Decision::Suppress { .. }));
}
