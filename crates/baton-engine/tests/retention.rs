//! Retention through the engine's maintenance loop: an engine started with `[retention] days = 30`
//! on a SQLite store prunes, at start, the old chatter of a task that ended long ago and deletes
//! its run logs, while a live task's history and run logs stay, and nothing of the spend changes.
// Test scaffolding: a failed setup step should panic; the loop runs on its own tokio task.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use baton_domain::{AgentReport, AgentStatus, JobId, TaskId, TaskState, Usage};
use baton_engine::{BoxFuture, Clock, Engine, EngineSettings, Retention, SystemClock};
use baton_store::{
    Advance, AgentRunFinish, Claim, JobFinish, JobStatus, NewAgentRun, NewEvent, NewTask, SpendFilter, Store, TaskKey,
    TaskRecord, Transition,
};
use baton_store_sqlite::SqliteStore;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const DAY_MS: i64 = 86_400_000;
/// When the history was written.
const T0: i64 = 1_800_000_000_000;
/// When the engine starts: 40 days later, past a 30-day retention.
const NOW: i64 = T0 + 40 * DAY_MS;

struct FixedClock;

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        NOW
    }
    fn sleep(&self, duration: Duration) -> BoxFuture {
        SystemClock.sleep(duration)
    }
}

fn settings(data_dir: &Path) -> EngineSettings {
    EngineSettings {
        data_dir: data_dir.to_path_buf(),
        limits: Default::default(),
        repos: vec![],
        agents: Default::default(),
        pipeline: baton_domain::Pipeline::default_pipeline(),
        budgets: Default::default(),
        baton_exe: PathBuf::from("/nonexistent/baton"),
        env_passthrough: vec![],
    }
}

fn note(task: TaskId, at_ms: i64, kind: &str) -> NewEvent {
    NewEvent {
        task,
        at_ms,
        kind: kind.into(),
        stage: "analysis".into(),
        message: format!("{kind} line"),
        detail: json!({ "line": kind }),
    }
}

/// A task at `analysis` with its job claimed and one agent run (cost 0.5) whose log directory
/// exists under `runs/` as the executor lays it out.
async fn task_with_run(store: &dyn Store, runs_dir: &Path, title: &str) -> (TaskRecord, JobId, PathBuf) {
    let new = NewTask {
        repo: "app".into(),
        prefix: "APP".into(),
        title: title.into(),
        body: String::new(),
        external_ref: None,
        state: TaskState::new("analysis"),
        idempotency_key: None,
        depends_on: Vec::new(),
    };
    let enqueue = Transition { enqueue: Some(("analysis".into(), 0)), ..Transition::default() };
    let task = store.create_task(new, enqueue, T0).await.unwrap();
    let claim =
        Claim { owner: "test".into(), now_ms: T0 + 1, running_max: 10, running_per_repo_max: 10, ..Claim::default() };
    let job = store.claim_job(&claim).await.unwrap().unwrap().id;
    let log_dir = baton_engine::executor::job_run_dir(runs_dir, &task.work_item_id, "analysis", job);
    std::fs::create_dir_all(&log_dir).unwrap();
    std::fs::write(log_dir.join("stdout.log"), "agent output\n").unwrap();
    let run = NewAgentRun {
        job,
        task: task.id,
        stage: "analysis".into(),
        adapter: "claude".into(),
        model: None,
        pid: None,
        started_at_ms: T0 + 2,
        log_path: log_dir.display().to_string(),
    };
    let run = store.insert_agent_run(run).await.unwrap();
    let report = AgentReport {
        status: AgentStatus::Succeeded,
        usage: Usage::default(),
        cost_usd: Some(0.5),
        model: None,
        session_id: None,
        turns: None,
        final_text: None,
    };
    let finish = AgentRunFinish { ended_at_ms: T0 + 3, exit_code: Some(0), report, stopped: false };
    store.finish_agent_run(run, finish).await.unwrap();
    store.append_event(note(task.id, T0 + 4, "progress")).await.unwrap();
    store.append_event(note(task.id, T0 + 5, "agent")).await.unwrap();
    (task, job, log_dir)
}

async fn kinds(store: &dyn Store, task: TaskId) -> Vec<String> {
    store.events(Some(task), 0, 100).await.unwrap().into_iter().map(|e| e.kind).collect()
}

#[tokio::test]
async fn the_maintenance_loop_prunes_an_ended_tasks_old_history_and_keeps_a_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let runs_dir = data_dir.join("runs");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("baton.db")).await.unwrap());

    // Ended 40 days ago: finished its job with a transition to `done`.
    let (ended, ended_job, ended_logs) = task_with_run(store.as_ref(), &runs_dir, "ended").await;
    let to_done = Advance {
        task: ended.id,
        expected_version: store.task(&TaskKey::Id(ended.id)).await.unwrap().unwrap().version,
        next: TaskState::new("done"),
        finish_job: Some(JobFinish { job: ended_job, status: JobStatus::Done, result: json!({}), claimed_by: None }),
        event: NewEvent {
            detail: json!({ "from": "analysis", "to": "done" }),
            ..note(ended.id, T0 + 10, "job_finished")
        },
        transition: Transition { release_leases: true, ..Transition::default() },
        inbox: None,
        effects: vec![],
        now_ms: T0 + 10,
    };
    store.advance(to_done).await.unwrap();
    // Live: its job failed long ago and waits for a human; its history is all old.
    let (live, live_job, live_logs) = task_with_run(store.as_ref(), &runs_dir, "live").await;
    assert!(store.close_job(live_job, JobStatus::Failed, json!({}), T0 + 10).await.unwrap());
    let live_before = kinds(store.as_ref(), live.id).await;
    let spend_before = store.spend_usd(&SpendFilter::default()).await.unwrap();

    let engine = Engine::builder(settings(&data_dir), store.clone())
        .clock(Arc::new(FixedClock))
        .retention(Retention { days: 30, batch: 2 })
        .build();
    let (stop_tx, stop_rx) = watch::channel(false);
    let engine_loop = tokio::spawn(engine.clone().run(stop_rx));
    let mut pruned = false;
    for _ in 0..200 {
        if kinds(store.as_ref(), ended.id).await == ["created", "job_finished"] {
            pruned = true;
            break;
        }
        SystemClock.sleep(Duration::from_millis(25)).await;
    }
    stop_tx.send(true).unwrap();
    engine_loop.await.unwrap();
    assert!(pruned, "the ended task's chatter is still there: {:?}", kinds(store.as_ref(), ended.id).await);

    assert!(!ended_logs.exists(), "the ended task's run log is deleted");
    assert!(!ended_logs.parent().unwrap().exists(), "and its work item's run directory with it");
    assert_eq!(kinds(store.as_ref(), live.id).await, live_before, "a live task's history stays");
    assert!(live_logs.join("stdout.log").exists(), "a live task's run log stays");
    assert_eq!(store.agent_runs(ended.id).await.unwrap().len(), 1, "agent runs are never pruned");
    assert_eq!(store.jobs_for_task(ended.id).await.unwrap().len(), 1, "a job with a run stays");
    assert_eq!(store.spend_usd(&SpendFilter::default()).await.unwrap(), spend_before);
}
