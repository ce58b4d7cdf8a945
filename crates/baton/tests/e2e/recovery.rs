//! The reconciler, the reaper's lease reclaim and tombstoned natural keys (SPEC §4, §7, §12).

use crate::support::{Env, engine_for, wait_for};
use baton_domain::{Hold, JobOutcome};
use baton_store::{Claim, JobStatus, LeaseOutcome, TaskKey, task_holder};

// A job finished but its result was never applied (the applying process died in between, ORCH-053
// class): after the grace period the reconciler applies the recorded outcome through the normal path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_applies_a_finished_job_that_was_never_applied() {
    let (env, engine, clock) = engine_for("").await;
    let task = engine.create_task(env.request("lost result")).await.unwrap();
    let claim = Claim {
        owner: "dead".into(),
        now_ms: clock.now(),
        running_max: 4,
        running_per_repo_max: 4,
        ..Claim::default()
    };
    let job = engine.store().claim_job(&claim).await.unwrap().unwrap();
    let outcome = JobOutcome::Completed { verdicts: vec![] };
    let result = serde_json::json!({ "outcome": outcome });
    assert!(engine.store().close_job(job.id, JobStatus::Done, result, engine.clock().now_ms()).await.unwrap());
    baton_engine::reconciler::tick(&engine).await;
    let key = TaskKey::Id(task.id);
    assert_eq!(engine.store().task(&key).await.unwrap().unwrap().state.hold, Hold::None, "acted before the grace");
    clock.advance_ms(engine.settings().limits.reconcile_grace_secs as i64 * 1000 + 5_000);
    baton_engine::reconciler::tick(&engine).await;
    let task = wait_for(&engine, &key, |t| t.state.hold == Hold::AwaitingApproval).await;
    assert_eq!(task.state.stage, "analysis");
    // A second pass changes nothing (the task now waits for a human).
    baton_engine::reconciler::tick(&engine).await;
    assert_eq!(engine.store().task(&key).await.unwrap().unwrap().version, task.version);
}

// A lease held by a task that is no longer at the merge/deploy stages (e.g. cancelled by a crash
// path that skipped the release), or by a holder that does not exist, is reclaimed by the reaper.
// (That a live holder keeps its lease is covered by the merge-lease test, where the reaper runs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaper_reclaims_leases_of_finished_or_unknown_holders() {
    let (env, engine, clock) = engine_for("").await;
    let dead = engine.create_task(env.request("dead holder")).await.unwrap();
    engine.submit(&TaskKey::Id(dead.id), baton_engine::Input::Stop, "test", None).await.unwrap();
    let ttl = 3_600_000;
    let taken = engine.store().acquire_lease("merge:demo", &task_holder(dead.id), ttl, clock.now()).await.unwrap();
    assert!(matches!(taken, LeaseOutcome::Acquired { .. }));
    baton_engine::reaper::tick(&engine).await;
    assert!(engine.store().leases().await.unwrap().is_empty(), "the dead holder's lease must be reclaimed");
    let other = engine.store().acquire_lease("merge:other", "task:999999", ttl, clock.now()).await.unwrap();
    assert!(matches!(other, LeaseOutcome::Acquired { .. }));
    baton_engine::reaper::tick(&engine).await;
    assert!(engine.store().leases().await.unwrap().is_empty(), "a holder that does not exist is dead too");
}

// STOP tombstones the ticket's external ref: the same ticket can start again from scratch, while
// a second active task for it is refused.
#[test]
fn stopped_ticket_can_start_again() {
    let env = Env::new("", "");
    let add = |env: &Env| {
        env.run(&["task", "add", "--repo", "demo", "--title", "from tracker", "--external-ref", "plane:ORCH-7"])
    };
    let first = add(&env);
    assert!(first.status.success());
    let first_id = String::from_utf8_lossy(&first.stdout).trim().to_string();
    let twice = add(&env);
    // A second active task for one ticket is refused: the live task is named (stdout and the
    // message) and nothing changes (exit 4).
    assert_eq!(twice.status.code(), Some(4), "a second active task for one ticket must be refused");
    assert_eq!(String::from_utf8_lossy(&twice.stdout).trim(), first_id);
    assert!(String::from_utf8_lossy(&twice.stderr).contains(&first_id));
    assert!(env.run(&["task", "stop", &first_id]).status.success());
    let again = add(&env);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_ne!(String::from_utf8_lossy(&again.stdout).trim(), first_id);
}
