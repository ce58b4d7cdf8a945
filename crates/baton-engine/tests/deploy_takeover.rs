//! A deploy run by an instance that was then declared dead is never run a second time by another
//! instance: instance A merges the change and starts the deploy command, and is declared dead in
//! that moment (its job goes back to the queue); instance B takes the job over and fails at its
//! start (the machine's failure: the attempt ends `Infrastructure`), so the task's next attempt
//! is a new job. That job finds the head on the default branch, merged by A, with no job of the
//! task having recorded the deploy's outcome: it must not deploy again, but block for a human,
//! naming the instance. A person's retry is refused while the freeze holding that unknown deploy
//! is open (it says to check the target and unfreeze first), a retry that reaches the task another
//! way waits without deploying, and after the unfreeze the retry deploys (the block recorded the
//! outcome). And an
//! instance declared dead while alive (a stall past the grace period) that finds its deploy job
//! taken away lets the deploy that started run to its end. Two engines over one SQLite store, each
//! with its own data directory, real git on one repository.
// Test scaffolding: a failed setup step or a poisoned lock should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use baton_adapters::AdapterError;
use baton_adapters::agent::{Agent, AgentRequest};
use baton_domain::pipeline::{Actor, GateSpec, OnGateFail, Pipeline};
use baton_domain::{AgentReport, Event, Hold, JobOutcome};
use baton_engine::{AgentFactory, Engine, EngineError, EngineSettings, Input, NewTaskRequest, RepoSettings};
use baton_runner::{ExitReport, ProcessSpec};
use baton_store::{JobFinish, JobStatus, Store, TaskKey, TaskRecord};
use baton_store_sqlite::SqliteStore;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use support::{Collect, InstantSupervisor, TestClock};

mod support;

const A: &str = "instance-a";
const B: &str = "instance-b";

struct TestAgents;

impl AgentFactory for TestAgents {
    fn agent(&self, _settings: &EngineSettings, _role: &str) -> Result<Arc<dyn Agent>, EngineError> {
        Ok(Arc::new(Developer))
    }
}

/// Writes one file into the worktree, named after its task (the change to land).
struct Developer;

impl Agent for Developer {
    fn adapter(&self) -> &str {
        "test"
    }
    fn model(&self) -> Option<&str> {
        None
    }
    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError> {
        let name = request.worktree.file_name().unwrap().to_string_lossy().to_string();
        std::fs::write(request.worktree.join(format!("{name}.txt")), "feature\n").unwrap();
        Ok(support::agent_process(request))
    }
    fn parse(&self, _stdout: &str, _stderr: &str, _exit: &ExitReport) -> AgentReport {
        support::succeeded(None)
    }
}

/// A deploy command's run directory (`runs/<repo>/deploys/<head>`).
fn is_deploy(run_dir: &Path) -> bool {
    run_dir.parent().and_then(Path::file_name).is_some_and(|name| name == "deploys")
}

struct Instance {
    engine: Arc<Engine>,
    supervisor: Arc<InstantSupervisor>,
    spawner: Arc<Collect>,
}

impl Instance {
    /// The deploy commands this instance launched.
    fn deploys(&self) -> usize {
        self.supervisor.launched.lock().unwrap().iter().filter(|dir| is_deploy(dir)).count()
    }
}

struct World {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    store: Arc<dyn Store>,
    clock: Arc<TestClock>,
    a: Instance,
    b: Instance,
}

impl World {
    async fn new() -> World {
        World::with(false).await
    }

    /// With `a_notices`, A is alive when it is declared dead (a stall past the grace period): in
    /// that moment it also finds the job taken away and stops what it runs for it.
    async fn with(a_notices: bool) -> World {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("app");
        support::init_repo(&repo);
        let pipeline = Pipeline {
            stages: vec![
                support::stage("development", Actor::Agent { role: "developer".into() }, vec![], OnGateFail::Retry),
                support::stage(
                    "deploy_staging",
                    Actor::None,
                    vec![GateSpec::Mergeable],
                    OnGateFail::Rollback { to: "development".into() },
                ),
                support::stage("deploy", Actor::Deploy, vec![GateSpec::DeployStatus], OnGateFail::Block),
            ],
            ..Pipeline::default_pipeline()
        };
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("baton.db")).await.unwrap());
        let clock = Arc::new(TestClock::at(1_800_000_000_000));
        // A is declared dead the moment it launches the deploy command (once).
        let armed = Arc::new(AtomicBool::new(true));
        let a_engine: Arc<OnceLock<Arc<Engine>>> = Arc::new(OnceLock::new());
        let instance = |name: &'static str, on_launch: Option<support::OnLaunch>| {
            let settings = EngineSettings {
                data_dir: dir.path().join(name),
                repos: vec![RepoSettings { deploy: Some(vec!["deploy-app".into()]), ..support::repo_settings(&repo) }],
                ..support::engine_settings(dir.path(), &repo, pipeline.clone())
            };
            let supervisor = Arc::new(InstantSupervisor { on_launch, ..InstantSupervisor::default() });
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
        let dies: support::OnLaunch = {
            let (store, armed, a_engine) = (store.clone(), armed.clone(), a_engine.clone());
            Box::new(move |run_dir| {
                let (store, armed, a_engine) = (store.clone(), armed.clone(), a_engine.clone());
                Box::pin(async move {
                    if is_deploy(&run_dir) && armed.swap(false, Ordering::SeqCst) {
                        support::declare_dead(store.as_ref(), A).await;
                        if a_notices && let Some(engine) = a_engine.get() {
                            assert_eq!(engine.stop_jobs_taken_away().await.unwrap(), 1, "A stops the job taken away");
                        }
                    }
                })
            })
        };
        let (a, b) = (instance(A, Some(dies)), instance(B, None));
        let _ = a_engine.set(a.engine.clone());
        World { _dir: dir, repo, store, clock, a, b }
    }

    /// `on` claims and runs the next job (after any delay); its stage.
    async fn step(&self, on: &Instance) -> String {
        self.clock.0.fetch_add(600_000, Ordering::SeqCst);
        let job = on.engine.claim_next().await.unwrap().expect("a runnable job");
        on.spawner.run_all().await;
        job.stage
    }

    /// A task filed on A and run there up to its deploy job.
    async fn to_deploy(&self) -> TaskRecord {
        let request = NewTaskRequest { repo: "app".into(), title: "t".into(), body: "".into(), external_ref: None };
        let task = self.a.engine.create_task(request).await.unwrap();
        for _ in 0..8 {
            if self.task(&task).await.state.stage == "deploy" {
                break;
            }
            self.step(&self.a).await;
        }
        task
    }

    async fn task(&self, task: &TaskRecord) -> TaskRecord {
        self.store.task(&TaskKey::Id(task.id)).await.unwrap().unwrap()
    }

    /// The deploy commands launched so far by A and by B.
    fn deploys(&self) -> (usize, usize) {
        (self.a.deploys(), self.b.deploys())
    }

    fn main_head(&self) -> String {
        support::git(&self.repo, &["rev-parse", "main"])
    }
}

#[tokio::test]
async fn a_deploy_merged_by_an_instance_declared_dead_is_not_run_again_after_a_failed_take_over() {
    let w = World::new().await;
    let initial = w.main_head();
    let task = w.to_deploy().await;
    let now = w.task(&task).await;
    assert_eq!((now.state.stage.as_str(), &now.state.hold), ("deploy", &Hold::None), "{:?}", now.state);

    // A merges and starts the deploy, and is declared dead in that moment: the job goes back to
    // the queue, and A's late result is refused (its claim is gone).
    assert_eq!(w.step(&w.a).await, "deploy");
    assert_ne!(w.main_head(), initial, "A merged the change");
    assert_eq!(w.deploys(), (1, 0), "A started the deploy once");
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

    // The repository is frozen already, by another deploy that degraded meanwhile.
    let degraded = baton_store::NewFreeze {
        repo: "app".into(),
        task: None,
        frozen_by: "monitor".into(),
        reason: "the deploy of APP-000 degraded".into(),
    };
    w.store.freeze_repo(&degraded, 0).await.unwrap();

    // B's next attempt finds the change merged by A, with no outcome recorded: it blocks for a
    // human, naming A, and deploys nothing.
    assert_eq!(w.step(&w.b).await, "deploy");
    assert_eq!(w.deploys(), (1, 0), "the deploy A may have run was run again");
    let now = w.task(&task).await;
    let Hold::Blocked { reason } = &now.state.hold else { panic!("the task is {:?}", now.state) };
    assert!(reason.contains(A), "the block does not name the instance that merged: {reason}");
    // The freeze already open holds this deploy too: whoever lifts it is told to check this target.
    let timeline = w.store.events(Some(task.id), 0, 500).await.unwrap();
    let frozen = timeline.iter().find(|e| e.kind == "frozen").expect("no freeze line on the timeline");
    assert!(
        frozen.message.contains("stays frozen") && frozen.message.contains("APP-000") && frozen.message.contains(A),
        "{}",
        frozen.message
    );

    // A person's retry before the freeze is lifted is refused, naming the order that works: the
    // deploy A may have run is held by the freeze it joined, whoever opened it.
    let refused = w.b.engine.submit(&TaskKey::Id(task.id), Input::Retry, "human", None).await;
    let Err(EngineError::Invalid(why)) = &refused else { panic!("the retry was not refused: {refused:?}") };
    assert!(why.contains("APP-000") && why.contains("baton repo unfreeze app"), "{why}");
    assert!(matches!(w.task(&task).await.state.hold, Hold::Blocked { .. }), "the refused retry moved the task");
    // A retry that reaches the task another way deploys nothing either.
    let retry = Event::Retry { by: "human".into() };
    w.b.engine.apply_event(task.id, &retry, None, None).await.unwrap();
    assert_eq!(w.step(&w.b).await, "deploy");
    assert_eq!(w.deploys(), (1, 0), "a retry deployed while the freeze holding the unknown deploy is open");
    assert_eq!(w.task(&task).await.state.stage, "deploy");
    let timeline = w.store.events(Some(task.id), 0, 500).await.unwrap();
    assert!(
        timeline.iter().any(|e| e.message.contains("deploys once a person has checked the target")),
        "the wait is not on the timeline: {:?}",
        timeline.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
    baton_engine::monitor::unfreeze(&w.b.engine, "app", "human").await.unwrap();

    // Once it is lifted, the retried change deploys: the block recorded the outcome, so the head
    // is settled.
    assert_eq!(w.step(&w.b).await, "deploy");
    assert_eq!(w.deploys(), (1, 1), "the human's retry did not deploy");
    assert_eq!(w.task(&task).await.state.stage, "done");
}

// A stall past the grace period: A is declared dead while alive, the moment its deploy starts, and
// finds the job taken away at once. It stops the job, but not the deploy command that started: cut
// short, it would leave the target half-deployed, and the instance that takes the job over never
// runs it again (it blocks for a human). As far as B knows that deploy may still be running, so
// B freezes the repository: the next change waits until a person unfreezes it.
#[tokio::test]
async fn a_deploy_started_by_an_instance_declared_dead_while_alive_runs_to_its_end() {
    let w = World::with(true).await;
    let task = w.to_deploy().await;
    assert_eq!(w.step(&w.a).await, "deploy");
    assert_eq!(w.deploys(), (1, 0), "A started the deploy once");
    let stopped: Vec<PathBuf> = w.a.supervisor.stopped.lock().unwrap().clone();
    assert!(!stopped.iter().any(|dir| is_deploy(dir)), "A cut its running deploy short: {stopped:?}");
    let taken_over = w.task(&task).await.state.job.unwrap();
    let job = w.store.job(taken_over).await.unwrap().unwrap();
    assert_eq!((job.status, job.outcome()), (JobStatus::Queued, None), "A's result was refused: {job:?}");
    // Both instances share the one repository here: B's checkout of the branch needs A's gone.
    std::fs::remove_dir_all(w._dir.path().join(A).join("worktrees")).unwrap();
    support::git(&w.repo, &["worktree", "prune"]);
    // B takes the job over, finds the change merged by A with no outcome recorded, and blocks.
    assert_eq!(w.step(&w.b).await, "deploy");
    assert_eq!(w.deploys(), (1, 0), "the deploy A ran was run again");
    let now = w.task(&task).await;
    let Hold::Blocked { reason } = &now.state.hold else { panic!("not blocked: {:?}", now.state) };
    assert!(reason.contains(A), "{reason}");
    assert!(reason.contains("baton repo unfreeze app"), "the block does not say how to go on: {reason}");

    // A's deploy may still be running as far as B knows: the repository froze before the task left
    // the merge queue, so the next change waits, green, and neither lands nor deploys.
    let freezes = w.store.repo_freezes().await.unwrap();
    let [freeze] = freezes.as_slice() else { panic!("one open freeze expected: {freezes:?}") };
    assert_eq!((freeze.repo.as_str(), freeze.task, freeze.frozen_by.as_str()), ("app", Some(task.id), "deploy"));
    assert!(freeze.reason.contains(A), "the freeze does not name the instance: {}", freeze.reason);
    let merged = w.main_head();
    let request = NewTaskRequest { repo: "app".into(), title: "next".into(), body: "".into(), external_ref: None };
    let next = w.b.engine.create_task(request).await.unwrap();
    for _ in 0..12 {
        w.clock.0.fetch_add(600_000, Ordering::SeqCst);
        if w.b.engine.claim_next().await.unwrap().is_none() {
            break;
        }
        w.b.spawner.run_all().await;
    }
    assert_eq!(w.main_head(), merged, "a change landed in the frozen repository");
    assert_eq!(w.deploys(), (1, 0), "a deploy ran in the frozen repository");
    assert_ne!(w.task(&next).await.state.stage, "done");

    // A retry before the unfreeze (the person skipped checking the target) is refused, saying what
    // to do first; the task stays blocked and nothing lands or deploys.
    let refused = w.b.engine.submit(&TaskKey::Id(task.id), Input::Retry, "human", None).await;
    let Err(EngineError::Invalid(why)) = &refused else { panic!("the retry was not refused: {refused:?}") };
    assert!(why.contains("check the target") && why.contains("baton repo unfreeze app"), "{why}");
    w.clock.0.fetch_add(600_000, Ordering::SeqCst);
    assert!(w.b.engine.claim_next().await.unwrap().is_none(), "a job runs in the frozen repository");
    assert_eq!(w.deploys(), (1, 0), "a retry deployed in the frozen repository");
    assert_eq!(w.main_head(), merged, "a change landed in the frozen repository");
    assert!(matches!(w.task(&task).await.state.hold, Hold::Blocked { .. }), "the refused retry moved the task");

    // A person checks the target and unfreezes: the retried change deploys, and the next change
    // lands and deploys.
    baton_engine::monitor::unfreeze(&w.b.engine, "app", "human").await.unwrap();
    w.b.engine.submit(&TaskKey::Id(task.id), Input::Retry, "human", None).await.unwrap();
    for _ in 0..16 {
        if w.task(&next).await.state.stage == "done" && w.task(&task).await.state.stage == "done" {
            break;
        }
        w.clock.0.fetch_add(600_000, Ordering::SeqCst);
        if w.b.engine.claim_next().await.unwrap().is_none() {
            break;
        }
        w.b.spawner.run_all().await;
    }
    assert_eq!(w.task(&next).await.state.stage, "done", "{:?}", w.task(&next).await.state);
    assert_eq!(w.task(&task).await.state.stage, "done", "{:?}", w.task(&task).await.state);
    assert_ne!(w.main_head(), merged, "the next change did not land after the unfreeze");
    assert_eq!(w.deploys(), (1, 2), "the retried and the next change were not deployed once each");
}
