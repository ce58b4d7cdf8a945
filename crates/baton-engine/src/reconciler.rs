//! The reconciler (SPEC §7): a non-terminal task whose current job finished but whose result was
//! never applied (the applying process died between the job's end and the transition) is idle
//! forever. After a grace period the reconciler re-applies the recorded outcome through the normal
//! path (decide + one transaction); anything it cannot judge stays silent (one log line, no alert).
//! Each pass also runs the dependency backstop (`crate::dependencies::backstop`): cycles and
//! cancelled dependencies block their tasks with an alert.

use crate::engine::Engine;
use crate::features::Feature;
use crate::stats::ReconcilerPass;
use baton_domain::{Event, Hold};
use baton_store::JobStatus;
use std::sync::Arc;

/// Candidates examined per pass at most (the next pass takes the rest).
const UNAPPLIED_PER_PASS: u32 = 200;
/// How far back each pass looks again past the previous one's window.
const RECHECK_MS: i64 = 10 * 60 * 1000;

/// One reconciler pass. Never fails: problems are logged. Switched off (`[features] reconciler`)
/// for every repository it does nothing at all; for some, it passes over their tasks and queues.
pub async fn tick(engine: &Arc<Engine>) {
    // The dependency backstop has its own switch (`[features] dependencies`).
    crate::dependencies::backstop(engine).await;
    let features = engine.features();
    if features.off_everywhere(Feature::Reconciler) {
        return;
    }
    let mut pass = ReconcilerPass::default();
    pass_over(engine, &mut pass).await;
    // The merge queues' backstop: a wake lost in a crash, a default branch moved from outside.
    crate::queue::schedule_where(engine, |repo| features.enabled(Feature::Reconciler, repo)).await;
    pass.at_ms = engine.clock().now_ms();
    engine.maintenance().reconciler_done(pass);
}

async fn pass_over(engine: &Arc<Engine>, pass: &mut ReconcilerPass) {
    let now = engine.clock().now_ms();
    let grace_ms = engine.settings().limits.reconcile_grace_secs as i64 * 1000;
    // Only live tasks without a hold whose current job ended since the last look (indexed on the
    // jobs' end time): an idle Baton's pass reads nothing of the backlog. The first pass after a
    // start looks at every ended job once (a Baton that died between a job's end and applying it);
    // later passes look again at the last `RECHECK_MS` (a failed re-apply is retried meanwhile).
    let since = engine.maintenance().reconciler_since_ms();
    let before = now - grace_ms;
    let Ok(tasks) = engine.store().unapplied_tasks(since, before, UNAPPLIED_PER_PASS).await else {
        return;
    };
    if tasks.len() < UNAPPLIED_PER_PASS as usize {
        engine.maintenance().set_reconciler_since_ms(before - RECHECK_MS);
    }
    let switched_on = |repo: &str| engine.features().enabled(Feature::Reconciler, repo);
    for task in tasks
        .into_iter()
        .filter(|t| t.state.hold == Hold::None && now - t.updated_at_ms > grace_ms && switched_on(&t.repo))
    {
        pass.examined += 1;
        let Some(job_id) = task.state.job else {
            tracing::warn!(task = %task.work_item_id, "reconciler: running task without a job; left for a human");
            continue;
        };
        let Ok(Some(job)) = engine.store().job(job_id).await else {
            continue;
        };
        if matches!(job.status, JobStatus::Queued | JobStatus::Running) {
            continue;
        }
        if job.finished_at_ms.is_some_and(|at| now - at < grace_ms) {
            continue;
        }
        let Some(outcome) = job.outcome() else {
            tracing::info!(task = %task.work_item_id, job = %job.id, "reconciler: finished job has no recorded outcome; silent");
            continue;
        };
        let event = Event::JobFinished { job: job.id, stage: job.stage.clone(), outcome };
        match engine.apply_event(task.id, &event, None, None).await {
            Ok(outcome) => {
                pass.reapplied += 1;
                tracing::info!(task = %task.work_item_id, job = %job.id, ?outcome, "reconciler re-applied a finished job")
            }
            Err(error) => {
                pass.failed += 1;
                tracing::warn!(task = %task.work_item_id, "reconciler failed: {error}")
            }
        }
    }
}
