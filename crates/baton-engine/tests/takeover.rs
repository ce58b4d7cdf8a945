//! An agent launched for a job taken over in the same moment: the instance that claimed the job
//! stood still past its grace period between its last check and the launch, and another instance
//! took the job over. The launch record is written only under the launching claim, so the job
//! keeps its new claimant's process, and the agent just started is stopped at once instead of
//! running beside the new claimant's own. Real git and SQLite; the supervisor is a test double
//! whose launch is where the take-over happens.
// Test scaffolding: a failed setup step or a poisoned lock should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use async_trait::async_trait;
use baton_adapters::agent::Agent;
use baton_engine::{AgentFactory, Engine, EngineError, EngineSettings, NewTaskRequest};
use baton_runner::{ExitReport, LaunchRecord, Previous, ProcessSpec, RunError, RunLimits, Supervisor};
use baton_store::{Claim, JobStatus, Store};
use baton_store_sqlite::SqliteStore;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use support::Collect;
use tokio::sync::watch;

mod support;

const HERE: &str = "instance-here";
const ELSEWHERE: &str = "instance-elsewhere";
const LAUNCHED_PGID: u32 = 4242;

struct TestAgents;

impl AgentFactory for TestAgents {
    fn agent(&self, _settings: &EngineSettings, _role: &str) -> Result<Arc<dyn Agent>, EngineError> {
        Ok(Arc::new(support::SucceedingAgent))
    }
}

/// Its launch is the moment the other instance takes the job over (this one declared dead) and
/// claims it; it then "starts" a process group it records, and notes every group it is asked to
/// stop and every wait.
#[derive(Default)]
struct TakeOverAtLaunch {
    store: OnceLock<Arc<dyn Store>>,
    stopped: Mutex<Vec<u32>>,
    waited: Mutex<u32>,
}

#[async_trait]
impl Supervisor for TakeOverAtLaunch {
    async fn launch(&self, _spec: ProcessSpec, _run_dir: &Path, _owner: &str) -> Result<LaunchRecord, RunError> {
        let store = self.store.get().unwrap();
        let job = support::declare_dead(store.as_ref(), HERE).await;
        let claim = Claim {
            owner: ELSEWHERE.into(),
            now_ms: i64::MAX / 2,
            running_max: 10,
            running_per_repo_max: 10,
            ..Claim::default()
        };
        let taken = store.claim_job(&claim).await.unwrap().expect("the other instance claims the job");
        assert_eq!(taken.id, job.id);
        Ok(LaunchRecord { pid: LAUNCHED_PGID, pgid: LAUNCHED_PGID, start_ticks: Some(7) })
    }
    fn owner(&self, _run_dir: &Path) -> Option<String> {
        None
    }
    fn read_output(&self, _path: &Path) -> Vec<u8> {
        Vec::new()
    }
    fn previous(&self, _run_dir: &Path) -> Previous {
        Previous::Nothing
    }
    async fn wait(
        &self,
        _launch: &LaunchRecord,
        _run_dir: &Path,
        _outputs: [&Path; 2],
        _already_ran: Duration,
        _limits: RunLimits,
        _stop: watch::Receiver<bool>,
    ) -> ExitReport {
        *self.waited.lock().unwrap() += 1;
        ExitReport { code: Some(0), signal: None, timed_out: false, stalled: false, stopped: false, duration_ms: 1 }
    }
    fn is_same_group(&self, _pgid: u32, _start_ticks: Option<u64>) -> bool {
        false
    }
    async fn stop_group(&self, pgid: u32, _grace: Duration) {
        self.stopped.lock().unwrap().push(pgid);
    }
    fn shims_under(&self, _runs_dir: &Path) -> Vec<(u32, u32, PathBuf)> {
        Vec::new()
    }
    fn archive(&self, _run_dir: &Path) -> Result<(), RunError> {
        Ok(())
    }
}

#[tokio::test]
async fn an_agent_launched_as_its_job_is_taken_over_is_stopped_and_leaves_the_job_to_its_new_claimant() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("app");
    support::init_repo(&repo);
    let settings = support::engine_settings(dir.path(), &repo, support::analysis_only());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("baton.db")).await.unwrap());
    let supervisor = Arc::new(TakeOverAtLaunch::default());
    supervisor.store.set(store.clone()).ok().unwrap();
    let spawner = Arc::new(Collect::default());
    let engine = Engine::builder(settings, store.clone())
        .owner(HERE)
        .agents(Arc::new(TestAgents))
        .supervisor(supervisor.clone())
        .spawner(spawner.clone())
        .build();
    let task = engine
        .create_task(NewTaskRequest { repo: "app".into(), title: "t".into(), body: "".into(), external_ref: None })
        .await
        .unwrap();
    let job = engine.claim_next().await.unwrap().expect("the analysis job");
    assert_eq!(spawner.run_all().await, 1);

    // The agent started here is stopped at once, never watched to its end.
    assert_eq!(*supervisor.stopped.lock().unwrap(), vec![LAUNCHED_PGID]);
    assert_eq!(*supervisor.waited.lock().unwrap(), 0, "the stopped agent is not supervised here");
    // The job runs on under the other instance's claim, without this launch's process.
    let row = store.job(job.id).await.unwrap().unwrap();
    assert_eq!((row.status, row.owner.as_deref()), (JobStatus::Running, Some(ELSEWHERE)));
    assert_eq!(
        (row.pid, row.pgid, row.proc_start),
        (None, None, None),
        "the new claimant's process fields stay its own"
    );
    // The run says why it ended; the task did not move.
    let runs = store.agent_runs(task.id).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].pid, runs[0].status.as_deref()), (Some(LAUNCHED_PGID), Some("stopped")));
    assert!(runs[0].error.as_deref().unwrap_or_default().contains("taken over"), "{:?}", runs[0].error);
    assert!(runs[0].ended_at_ms.is_some());
    let now = store.task(&baton_store::TaskKey::Id(task.id)).await.unwrap().unwrap();
    assert_eq!((now.state.stage.as_str(), now.state.job), ("analysis", Some(job.id)));
}
