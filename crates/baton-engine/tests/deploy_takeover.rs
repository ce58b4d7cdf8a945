//! A deploy run by an instance that was then declared dead is never run a second time by another
//! instance: instance A merges the change and starts the deploy command, and is declared dead in
//! that moment (its job goes back to the queue); instance B takes the job over and fails at its
//! start (the machine's failure: the attempt ends `Infrastructure`), so the task's next attempt
//! is a new job. That job finds the head on the default branch, merged by A, with no job of the
//! task having recorded the deploy's outcome: it must not deploy again, but block for a human,
//! naming the instance. The human's retry then deploys (the block recorded the outcome). Two
//! engines over one SQLite store, each with its own data directory, real git on one repository.
// Test scaffolding: a failed setup step or a poisoned lock should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use async_trait::async_trait;
use baton_adapters::AdapterError;
use baton_adapters::agent::{Agent, AgentRequest};
use baton_domain::pipeline::{Actor, GateSpec, OnGateFail, Pipeline, StageSpec};
use baton_domain::{AgentReport, Event, Hold, JobOutcome};
use baton_engine::{
    AgentFactory, BoxFuture, Clock, Engine, EngineError, EngineSettings, Input, NewTaskRequest, RepoSettings,
    SystemClock,
};
use baton_runner::{ExitReport, LaunchRecord, Previous, ProcessSpec, RunError, RunLimits, Supervisor};
use baton_store::{JobFinish, JobStatus, NewEvent, Store, TaskKey, TaskRecord};
use baton_store_sqlite::SqliteStore;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use support::Collect;
use tokio::sync::watch;

mod support;

const A: &str = "instance-a";
const B: &str = "instance-b";

struct TestAgents;

impl AgentFactory for TestAgents {
    fn agent(&self, _settings: &EngineSettings, _role: &str) -> Result<Arc<dyn Agent>, EngineError> {
        Ok(Arc::new(Developer))
    }
}

/// Writes one file into the worktree (the change to land).
struct Developer;

impl Agent for Developer {
    fn adapter(&self) -> &str {
        "test"
    }
    fn model(&self) -> Option<&str> {
        None
    }
    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError> {
        std::fs::write(request.worktree.join("feature.txt"), "feature\n").unwrap();
        Ok(support::agent_process(request))
    }
    fn parse(&self, _stdout: &str, _stderr: &str, _exit: &ExitReport) -> AgentReport {
        support::succeeded(None)
    }
}

/// What both instances launched, in order: (instance, run directory).
type Launches = Arc<Mutex<Vec<(String, PathBuf)>>>;

/// Every process "runs" at once and exits 0. A's supervisor, when armed, declares A dead at the
/// launch of a deploy command: the job goes back to the queue while A's executor runs on.
struct TestSupervisor {
    instance: &'static str,
    launches: Launches,
    store: OnceLock<Arc<dyn Store>>,
    die_at_deploy: AtomicBool,
}

impl TestSupervisor {
    fn new(instance: &'static str, launches: Launches) -> Self {
        TestSupervisor { instance, launches, store: OnceLock::new(), die_at_deploy: AtomicBool::new(false) }
    }
}

#[async_trait]
impl Supervisor for TestSupervisor {
    async fn launch(&self, _spec: ProcessSpec, run_dir: &Path, _owner: &str) -> Result<LaunchRecord, RunError> {
        self.launches.lock().unwrap().push((self.instance.to_string(), run_dir.to_path_buf()));
        if is_deploy(run_dir) && self.die_at_deploy.swap(false, Ordering::SeqCst) {
            let store = self.store.get().unwrap();
            let running = store.jobs_with_status(JobStatus::Running).await.unwrap();
            let job = running.iter().find(|j| j.owner.as_deref() == Some(self.instance)).expect("A's deploy job");
            let event = NewEvent {
                task: job.task_id,
                at_ms: 1,
                kind: "instance_dead".into(),
                stage: job.stage.clone(),
                message: format!("{} was silent past its grace period: its job goes back to the queue", self.instance),
                detail: serde_json::json!({ "job": job.id.0, "instance": self.instance }),
            };
            assert!(store.take_over_job(job.id, self.instance, 0, event).await.unwrap());
        }
        Ok(LaunchRecord { pid: 0, pgid: 0, start_ticks: None })
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
        ExitReport { code: Some(0), signal: None, timed_out: false, stalled: false, stopped: false, duration_ms: 1 }
    }
    fn is_same_group(&self, _pgid: u32, _start_ticks: Option<u64>) -> bool {
        false
    }
    async fn stop_group(&self, _pgid: u32, _grace: Duration) {}
    fn shims_under(&self, _runs_dir: &Path) -> Vec<(u32, u32, PathBuf)> {
        Vec::new()
    }
    fn archive(&self, _run_dir: &Path) -> Result<(), RunError> {
        Ok(())
    }
}

/// A deploy command's run directory (`runs/<repo>/deploys/<head>`).
fn is_deploy(run_dir: &Path) -> bool {
    run_dir.parent().and_then(Path::file_name).is_some_and(|name| name == "deploys")
}

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture {
        SystemClock.sleep(duration)
    }
}

struct Instance {
    engine: Arc<Engine>,
    supervisor: Arc<TestSupervisor>,
    spawner: Arc<Collect>,
}

struct World {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    store: Arc<dyn Store>,
    clock: Arc<TestClock>,
    launches: Launches,
    a: Instance,
    b: Instance,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("app");
        support::init_repo(&repo);
        let stage = |name: &str, actor: Actor, gates: Vec<GateSpec>, on_gate_fail: OnGateFail| StageSpec {
            name: name.into(),
            actor,
            artifact: None,
            gates,
            confirm_before: false,
            on_gate_fail,
            overrides: Default::default(),
            after_ship: false,
        };
        let pipeline = Pipeline {
            stages: vec![
                stage("development", Actor::Agent { role: "developer".into() }, vec![], OnGateFail::Retry),
                stage(
                    "deploy_staging",
                    Actor::None,
                    vec![GateSpec::Mergeable],
                    OnGateFail::Rollback { to: "development".into() },
                ),
                stage("deploy", Actor::Deploy, vec![GateSpec::DeployStatus], OnGateFail::Block),
            ],
            ..Pipeline::default_pipeline()
        };
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("baton.db")).await.unwrap());
        let clock = Arc::new(TestClock(AtomicI64::new(1_800_000_000_000)));
        let launches = Launches::default();
        let instance = |name: &'static str| {
            let settings = EngineSettings {
                data_dir: dir.path().join(name),
                repos: vec![RepoSettings { deploy: Some(vec!["deploy-app".into()]), ..support::repo_settings(&repo) }],
                ..support::engine_settings(dir.path(), &repo, pipeline.clone())
            };
            let supervisor = Arc::new(TestSupervisor::new(name, launches.clone()));
            supervisor.store.set(store.clone()).ok().unwrap();
            let spawner = Arc::new(Collect::default());
            let engine = Engine::builder(settings, store.clone())
                .owner(name)
                .agents(Arc::new(TestAgents))
                .supervisor(supervisor.clone())
                .spawner(spawner.clone())
                .clock(clock.clone())
                .build();
            Instance { engine, supervisor, spawner }
        };
        let (a, b) = (instance(A), instance(B));
        World { _dir: dir, repo, store, clock, launches, a, b }
    }

    /// `on` claims and runs the next job (after any delay); its stage.
    async fn step(&self, on: &Instance) -> String {
        self.clock.0.fetch_add(600_000, Ordering::SeqCst);
        let job = on.engine.claim_next().await.unwrap().expect("a runnable job");
        on.spawner.run_all().await;
        job.stage
    }

    async fn task(&self, task: &TaskRecord) -> TaskRecord {
        self.store.task(&TaskKey::Id(task.id)).await.unwrap().unwrap()
    }

    /// The deploy commands launched so far, by instance.
    fn deploys(&self) -> Vec<String> {
        let launches = self.launches.lock().unwrap();
        launches.iter().filter(|(_, dir)| is_deploy(dir)).map(|(who, _)| who.clone()).collect()
    }

    fn main_head(&self) -> String {
        support::git(&self.repo, &["rev-parse", "main"])
    }
}

#[tokio::test]
async fn a_deploy_merged_by_an_instance_declared_dead_is_not_run_again_after_a_failed_take_over() {
    let w = World::new().await;
    let initial = w.main_head();
    let task =
        w.a.engine
            .create_task(NewTaskRequest { repo: "app".into(), title: "t".into(), body: "".into(), external_ref: None })
            .await
            .unwrap();
    // Instance A runs the change up to its deploy job.
    for _ in 0..8 {
        let now = w.task(&task).await;
        if now.state.stage == "deploy" {
            break;
        }
        w.step(&w.a).await;
    }
    let now = w.task(&task).await;
    assert_eq!((now.state.stage.as_str(), &now.state.hold), ("deploy", &Hold::None), "{:?}", now.state);

    // A merges and starts the deploy, and is declared dead in that moment: the job goes back to
    // the queue, and A's late result is refused (its claim is gone).
    w.a.supervisor.die_at_deploy.store(true, Ordering::SeqCst);
    assert_eq!(w.step(&w.a).await, "deploy");
    assert_ne!(w.main_head(), initial, "A merged the change");
    assert_eq!(w.deploys(), [A], "A started the deploy once");
    let taken_over = w.task(&task).await.state.job.unwrap();
    let job = w.store.job(taken_over).await.unwrap().unwrap();
    assert_eq!((job.status, job.outcome()), (JobStatus::Queued, None), "A's result was refused: {job:?}");

    // A's machine is gone, and its checkout of the branch with it (both instances share the one
    // repository here, where separate machines would each have their own clone).
    std::fs::remove_dir_all(w._dir.path().join(A).join("worktrees")).unwrap();
    support::git(&w.repo, &["worktree", "prune"]);

    // B takes the job over and fails at its start, on the machine (as a `git fetch` racing
    // another for a ref lock does): the task's next deploy attempt is a new job.
    let claimed = w.b.engine.claim_next().await.unwrap().expect("B claims the job taken over");
    assert_eq!(claimed.id, taken_over);
    drop(std::mem::take(&mut *w.b.spawner.0.lock().unwrap()));
    let outcome = JobOutcome::Infrastructure { reason: "cannot lock ref 'refs/heads/main'".into() };
    let finish = JobFinish {
        job: taken_over,
        status: JobStatus::Failed,
        result: serde_json::json!({ "outcome": outcome }),
        claimed_by: Some(B.into()),
    };
    let event = Event::JobFinished { job: taken_over, stage: "deploy".into(), outcome };
    w.b.engine.apply_event(task.id, &event, Some(finish), None).await.unwrap();
    let now = w.task(&task).await;
    assert_ne!(now.state.job, Some(taken_over), "the failed attempt was followed by a new job");

    // B's next attempt finds the change merged by A, with no outcome recorded: it blocks for a
    // human, naming A, and deploys nothing.
    assert_eq!(w.step(&w.b).await, "deploy");
    assert_eq!(w.deploys(), [A], "the deploy A may have run was run again");
    let now = w.task(&task).await;
    let Hold::Blocked { reason } = &now.state.hold else { panic!("the task is {:?}", now.state) };
    assert!(reason.contains(A), "the block does not name the instance that merged: {reason}");

    // The human's retry deploys: the block recorded the outcome, so the head is settled.
    w.b.engine.submit(&TaskKey::Id(task.id), Input::Retry, "human", None).await.unwrap();
    assert_eq!(w.step(&w.b).await, "deploy");
    assert_eq!(w.deploys(), [A, B], "the human's retry did not deploy");
    assert_eq!(w.task(&task).await.state.stage, "done");
}
