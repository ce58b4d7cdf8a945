//! No agent runs on unwatched after its Baton died: one whose job ended (a cancel that landed as
//! the Baton watching it died) is stopped by the next Baton's reaper and its run says so, and one
//! whose re-adoption failed is stopped before its job ends (the job's next attempt must not run
//! beside it). Real git and SQLite; the supervisor is a test double whose process groups live
//! until stopped and whose wait never returns (the first Baton dies in it).
// Test scaffolding: a failed setup step or a poisoned lock should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use async_trait::async_trait;
use baton_adapters::agent::Agent;
use baton_engine::{AgentFactory, Engine, EngineError, EngineSettings, NewTaskRequest};
use baton_runner::{ExitReport, LaunchRecord, Previous, ProcessSpec, RunError, RunLimits, Supervisor};
use baton_store::{JobRecord, JobStatus, Store, TaskRecord};
use baton_store_sqlite::SqliteStore;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::Collect;
use tokio::sync::watch;

mod support;

const INSTANCE: &str = "instance-one";

/// Agents as configured; `broken` ones cannot be built (a configuration that changed across the
/// restart).
struct TestAgents {
    broken: bool,
}

impl AgentFactory for TestAgents {
    fn agent(&self, _settings: &EngineSettings, role: &str) -> Result<Arc<dyn Agent>, EngineError> {
        if self.broken {
            return Err(EngineError::Invalid(format!("no agent is configured for role `{role}`")));
        }
        Ok(Arc::new(support::SucceedingAgent))
    }
}

/// Process groups that run until stopped, shared by every Baton of a test (they outlive it).
#[derive(Default)]
struct Processes {
    launched: Mutex<BTreeMap<PathBuf, LaunchRecord>>,
    alive: Mutex<BTreeSet<u32>>,
    stopped: Mutex<Vec<u32>>,
}

#[async_trait]
impl Supervisor for Processes {
    async fn launch(&self, _spec: ProcessSpec, run_dir: &Path, _owner: &str) -> Result<LaunchRecord, RunError> {
        let mut launched = self.launched.lock().unwrap();
        let pgid = 5000 + launched.len() as u32;
        let launch = LaunchRecord { pid: pgid, pgid, start_ticks: Some(11) };
        launched.insert(run_dir.to_path_buf(), launch);
        self.alive.lock().unwrap().insert(pgid);
        Ok(launch)
    }
    fn owner(&self, _run_dir: &Path) -> Option<String> {
        None
    }
    fn read_output(&self, _path: &Path) -> Vec<u8> {
        Vec::new()
    }
    fn previous(&self, run_dir: &Path) -> Previous {
        match self.launched.lock().unwrap().get(run_dir) {
            Some(launch) if self.alive.lock().unwrap().contains(&launch.pgid) => Previous::Running(*launch),
            _ => Previous::Nothing,
        }
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
        std::future::pending().await
    }
    fn is_same_group(&self, pgid: u32, _start_ticks: Option<u64>) -> bool {
        self.alive.lock().unwrap().contains(&pgid)
    }
    async fn stop_group(&self, pgid: u32, _grace: Duration) {
        self.alive.lock().unwrap().remove(&pgid);
        self.stopped.lock().unwrap().push(pgid);
    }
    fn shims_under(&self, _runs_dir: &Path) -> Vec<(u32, u32, PathBuf)> {
        Vec::new()
    }
    fn archive(&self, _run_dir: &Path) -> Result<(), RunError> {
        Ok(())
    }
}

struct World {
    _dir: tempfile::TempDir,
    settings: EngineSettings,
    store: Arc<dyn Store>,
    processes: Arc<Processes>,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("app");
        support::init_repo(&repo);
        let settings = support::engine_settings(dir.path(), &repo, support::analysis_only());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("baton.db")).await.unwrap());
        World { _dir: dir, settings, store, processes: Arc::new(Processes::default()) }
    }

    /// A Baton process over the shared store and processes.
    fn baton(&self, agents: TestAgents) -> (Arc<Engine>, Arc<Collect>) {
        let spawner = Arc::new(Collect::default());
        let engine = Engine::builder(self.settings.clone(), self.store.clone())
            .owner(INSTANCE)
            .agents(Arc::new(agents))
            .supervisor(self.processes.clone())
            .spawner(spawner.clone())
            .build();
        (engine, spawner)
    }

    /// A Baton claims the task's job, starts its agent and dies while watching it.
    async fn agent_left_running(&self) -> (TaskRecord, JobRecord, u32) {
        let (first, spawner) = self.baton(TestAgents { broken: false });
        let task = first
            .create_task(NewTaskRequest { repo: "app".into(), title: "t".into(), body: "".into(), external_ref: None })
            .await
            .unwrap();
        let job = first.claim_next().await.unwrap().expect("the analysis job");
        let executor = spawner.0.lock().unwrap().pop().expect("its executor");
        // The executor ends only with the agent, which never ends: once the launch is on the job
        // row, the Baton dies there (the executor is dropped mid-wait).
        let launched = async {
            loop {
                let row = self.store.job(job.id).await.unwrap().unwrap();
                if row.pgid.is_some() {
                    return row;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let row = tokio::select! {
            _ = executor => panic!("the executor ended although its agent runs"),
            row = tokio::time::timeout(Duration::from_secs(60), launched) => row.expect("the agent was launched"),
        };
        let pgid = row.pgid.expect("the launch was recorded on the job");
        assert!(self.processes.is_same_group(pgid, None));
        (task, row, pgid)
    }
}

// The job was cancelled as the Baton watching its agent died, so no executor saw the cancel: the
// next Baton's reaper stops the agent (it would otherwise run and spend with nobody watching) and
// closes its run as stopped, saying why.
#[tokio::test]
async fn an_agent_whose_job_ended_while_no_baton_watched_it_is_stopped_by_the_reaper() {
    let world = World::new().await;
    let (task, job, pgid) = world.agent_left_running().await;
    let cancelled = world
        .store
        .close_claimed_job(job.id, INSTANCE, JobStatus::Cancelled, serde_json::json!({ "cancelled": true }), 1)
        .await
        .unwrap();
    assert!(cancelled);

    let (second, _spawner) = world.baton(TestAgents { broken: false });
    baton_engine::reaper::tick(&second).await;

    assert_eq!(*world.processes.stopped.lock().unwrap(), vec![pgid], "the unwatched agent is stopped");
    let runs = world.store.agent_runs(task.id).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status.as_deref(), Some("stopped"), "{:?}", runs[0]);
    let why = runs[0].error.as_deref().unwrap_or_default();
    assert!(why.contains("ended (cancelled) while no Baton watched its agent"), "{why}");
}

// The next Baton re-adopts the running job but cannot build its agent (its configuration changed):
// the job ends failed, and the agent it adopted is stopped first instead of running on beside the
// job's next attempt.
#[tokio::test]
async fn an_agent_whose_adoption_failed_is_stopped_before_its_job_ends() {
    let world = World::new().await;
    let (_task, job, pgid) = world.agent_left_running().await;

    let (second, spawner) = world.baton(TestAgents { broken: true });
    assert_eq!(second.adopt_orphans().await.unwrap(), 1, "the running job is re-adopted");
    assert_eq!(spawner.run_all().await, 1);

    assert_eq!(*world.processes.stopped.lock().unwrap(), vec![pgid], "the adopted agent is stopped");
    let row = world.store.job(job.id).await.unwrap().unwrap();
    assert_eq!(row.status, JobStatus::Failed, "{row:?}");
    let result = row.result.unwrap_or_default().to_string();
    assert!(result.contains("no agent is configured for role"), "{result}");
}
