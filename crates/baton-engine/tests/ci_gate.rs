//! The `ci_green` gate in a running engine: a `url` repository on a (test) hosted forge, real git
//! and SQLite, a recording agent and supervisor. Pending CI defers without re-squashing or
//! re-testing, green passes and merges exactly the re-tested head, a red check rolls the task back
//! to development with the check's name and log tail in the developer's next prompt.
// Test scaffolding: a failed setup step or a poisoned lock should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use async_trait::async_trait;
use baton_adapters::AdapterError;
use baton_adapters::agent::{Agent, AgentRequest};
use baton_adapters::forge::{CiStatus, Forge, ForgeRepo, LocalForge, MergeOutcome, PullRequestRef, PullRequestSpec};
use baton_domain::pipeline::{Actor, GateSpec, OnGateFail, Pipeline};
use baton_domain::{AgentReport, JobOutcome, Verdict};
use baton_engine::{
    AgentFactory, Engine, EngineError, EngineSettings, ForgeKind, NewTaskRequest, RepoForge, RepoSettings,
};
use baton_runner::{ExitReport, ProcessSpec};
use baton_store::{TaskKey, TaskRecord};
use baton_store_sqlite::SqliteStore;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use support::{Collect, InstantSupervisor, TestClock};

mod support;

/// A hosted forge as the engine sees it: CI answers set by the test; merges and branch deletion
/// by git as the local forge does; every call recorded.
#[derive(Default)]
struct TestForge {
    ci: Mutex<Option<CiStatus>>,
    ci_asked: Mutex<Vec<String>>,
    synced: Mutex<Vec<PullRequestSpec>>,
}

#[async_trait]
impl Forge for TestForge {
    fn name(&self) -> &str {
        "test"
    }
    async fn merge(
        &self,
        repo: &ForgeRepo,
        branch: &str,
        base: &str,
        head: &str,
    ) -> Result<MergeOutcome, AdapterError> {
        LocalForge.merge(repo, branch, base, head).await
    }
    async fn sync_pull_request(
        &self,
        _repo: &ForgeRepo,
        spec: &PullRequestSpec,
    ) -> Result<Option<PullRequestRef>, AdapterError> {
        self.synced.lock().unwrap().push(spec.clone());
        Ok(Some(PullRequestRef { number: 7, url: "https://forge.example.com/acme/app/pull/7".into() }))
    }
    async fn ci_status(&self, _repo: &ForgeRepo, sha: &str) -> Result<CiStatus, AdapterError> {
        self.ci_asked.lock().unwrap().push(sha.to_string());
        Ok(self.ci.lock().unwrap().clone().unwrap_or(CiStatus::NoChecks))
    }
    async fn delete_branch(&self, repo: &ForgeRepo, branch: &str) -> Result<(), AdapterError> {
        LocalForge.delete_branch(repo, branch).await
    }
}

/// The developer: records its prompt and writes a file into the worktree (its "work").
struct TestAgents(Arc<Mutex<Vec<String>>>);

impl AgentFactory for TestAgents {
    fn agent(&self, _settings: &EngineSettings, _role: &str) -> Result<Arc<dyn Agent>, EngineError> {
        Ok(Arc::new(TestAgent(self.0.clone())))
    }
}

struct TestAgent(Arc<Mutex<Vec<String>>>);

impl Agent for TestAgent {
    fn adapter(&self) -> &str {
        "test"
    }
    fn model(&self) -> Option<&str> {
        None
    }
    fn prepare(&self, request: &AgentRequest) -> Result<ProcessSpec, AdapterError> {
        let mut prompts = self.0.lock().unwrap();
        prompts.push(request.prompt.clone());
        std::fs::write(request.worktree.join(format!("work-{}.txt", prompts.len())), "work\n").unwrap();
        Ok(support::agent_process(request))
    }
    fn parse(&self, _stdout: &str, _stderr: &str, _exit: &ExitReport) -> AgentReport {
        support::succeeded(None)
    }
}

struct World {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    engine: Arc<Engine>,
    forge: Arc<TestForge>,
    prompts: Arc<Mutex<Vec<String>>>,
    supervisor: Arc<InstantSupervisor>,
    spawner: Arc<Collect>,
    clock: Arc<TestClock>,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("app.git");
        std::fs::create_dir_all(&bare).unwrap();
        support::git(&bare, &["init", "-q", "--bare", "-b", "main", "."]);
        support::git(dir.path(), &["clone", "-q", bare.to_str().unwrap(), "seed"]);
        let seed = dir.path().join("seed");
        support::git(&seed, &["checkout", "-q", "-b", "main"]);
        std::fs::write(seed.join("README"), "app\n").unwrap();
        support::git(&seed, &["add", "."]);
        support::git(&seed, &["commit", "-q", "-m", "initial"]);
        support::git(&seed, &["push", "-q", "origin", "main"]);
        let pipeline = Pipeline {
            stages: vec![
                support::stage("development", Actor::Agent { role: "developer".into() }, vec![], OnGateFail::Retry),
                support::stage(
                    "deploy_staging",
                    Actor::None,
                    vec![GateSpec::Mergeable, GateSpec::CiGreen],
                    OnGateFail::Rollback { to: "development".into() },
                ),
                support::stage("deploy", Actor::Deploy, vec![], OnGateFail::Block),
            ],
            ..Pipeline::default_pipeline()
        };
        let data_dir = dir.path().join("data");
        let settings = EngineSettings {
            data_dir: data_dir.clone(),
            limits: Default::default(),
            repos: vec![RepoSettings {
                path: data_dir.join("repos/app.git"),
                url: Some(bare.display().to_string()),
                test: Some(vec!["run-tests".into()]),
                forge: RepoForge {
                    kind: ForgeKind::GitHub,
                    repo: Some("acme/app".into()),
                    api_url: None,
                    token_env: None,
                    merge_style: Default::default(),
                    ci: Default::default(),
                },
                ..support::repo_settings(&data_dir.join("repos/app.git"))
            }],
            agents: Default::default(),
            pipeline,
            budgets: Default::default(),
            baton_exe: PathBuf::from("/nonexistent/baton"),
            env_passthrough: vec![],
        };
        let store = SqliteStore::open(&dir.path().join("baton.db")).await.unwrap();
        let forge = Arc::new(TestForge::default());
        let prompts = Arc::new(Mutex::new(Vec::new()));
        let supervisor = Arc::new(InstantSupervisor::default());
        let spawner = Arc::new(Collect::default());
        let clock = Arc::new(TestClock::at(1_800_000_000_000));
        let engine = Engine::builder(settings, Arc::new(store))
            .forge(forge.clone())
            .agents(Arc::new(TestAgents(prompts.clone())))
            .supervisor(supervisor.clone())
            .spawner(spawner.clone())
            .clock(clock.clone())
            .build();
        World { _dir: dir, bare, engine, forge, prompts, supervisor, spawner, clock }
    }

    /// Claims and runs the next job (after any delay); returns its stage.
    async fn step(&self) -> String {
        self.clock.0.fetch_add(600_000, Ordering::SeqCst);
        let job = self.engine.claim_next().await.unwrap().expect("a runnable job");
        self.spawner.run_all().await;
        job.stage
    }

    async fn task(&self, id: &str) -> TaskRecord {
        self.engine.store().task(&TaskKey::WorkItem(id.to_string())).await.unwrap().unwrap()
    }

    /// The verdicts of the task's last finished job.
    async fn last_verdicts(&self, task: &TaskRecord) -> Vec<baton_domain::GateVerdict> {
        let jobs = self.engine.store().jobs_for_task(task.id).await.unwrap();
        let job = jobs.iter().rev().find(|j| j.outcome().is_some()).unwrap();
        match job.outcome().unwrap() {
            JobOutcome::Completed { verdicts } => verdicts,
            other => panic!("job ended {other:?}"),
        }
    }

    fn retests(&self) -> usize {
        self.supervisor
            .launched
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.display().to_string().contains("merge-retest"))
            .count()
    }

    fn remote(&self, reference: &str) -> String {
        support::git(&self.bare, &["rev-parse", reference])
    }
}

fn verdict<'v>(verdicts: &'v [baton_domain::GateVerdict], gate: &str) -> &'v baton_domain::GateVerdict {
    verdicts.iter().find(|v| v.gate == gate).unwrap_or_else(|| panic!("no {gate} verdict in {verdicts:#?}"))
}

#[tokio::test]
async fn ci_green_defers_while_pending_passes_on_green_and_the_merge_gate_rerun_does_not_resquash() {
    let w = World::new().await;
    let task = w
        .engine
        .create_task(NewTaskRequest {
            repo: "app".into(),
            title: "add feature".into(),
            body: "".into(),
            external_ref: None,
        })
        .await
        .unwrap();
    let id = task.work_item_id.clone();
    *w.forge.ci.lock().unwrap() = Some(CiStatus::Pending { running: vec!["build".into()] });
    assert_eq!(w.step().await, "development");
    // The merge gate's first job puts the change in the merge queue, which wakes it at once to
    // be tested on main (the queue is empty ahead of it).
    assert_eq!(w.step().await, "deploy_staging");
    assert_eq!(w.step().await, "deploy_staging");
    let task = w.task(&id).await;
    assert_eq!(task.state.stage, "deploy_staging", "{:?}", task.state);
    let verdicts = w.last_verdicts(&task).await;
    let head = verdict(&verdicts, "mergeable").evidence.clone().unwrap();
    let ci = verdict(&verdicts, "ci_green");
    assert_eq!(ci.verdict, Verdict::Defer);
    assert!(ci.reason.contains("build running") && ci.reason.contains(&head[..10]), "{}", ci.reason);
    // The re-tested head is on the task branch for the forge's CI, and the PR was synced.
    assert_eq!(w.remote(&format!("refs/heads/{}", task.branch)), head);
    assert_eq!(w.retests(), 1);
    {
        let synced = w.forge.synced.lock().unwrap();
        let spec = synced.last().unwrap();
        assert_eq!(spec.title, format!("{id}: add feature"));
        assert!(spec.body.contains(&format!("<!-- baton:{id} -->")), "{}", spec.body);
        assert!(spec.body.contains("https://github.com/acme/app/blob/"), "{}", spec.body);
    }

    // Deferred: the stage runs again; the merge gate passes at once (same head, no re-test).
    assert_eq!(w.step().await, "deploy_staging");
    let verdicts = w.last_verdicts(&w.task(&id).await).await;
    let merge = verdict(&verdicts, "mergeable");
    assert_eq!(merge.verdict, Verdict::Pass);
    assert!(merge.reason.contains("landing under the merge lease"), "{}", merge.reason);
    assert_eq!(merge.evidence.as_deref(), Some(head.as_str()), "no new squash");
    assert_eq!(verdict(&verdicts, "ci_green").verdict, Verdict::Defer);
    assert_eq!(w.retests(), 1, "not re-tested");
    assert!(w.forge.ci_asked.lock().unwrap().iter().all(|sha| *sha == head), "CI asked only about the one head");

    // Green: the gate passes with the head as evidence, and deploy merges exactly that head.
    *w.forge.ci.lock().unwrap() = Some(CiStatus::Green);
    assert_eq!(w.step().await, "deploy_staging");
    let verdicts = w.last_verdicts(&w.task(&id).await).await;
    let ci = verdict(&verdicts, "ci_green");
    assert_eq!((ci.verdict, ci.evidence.as_deref()), (Verdict::Pass, Some(head.as_str())));
    assert_eq!(w.step().await, "deploy");
    assert_eq!(w.task(&id).await.state.stage, "done");
    assert_eq!(w.remote("refs/heads/main"), head, "main is the re-tested head");
    assert_eq!(w.retests(), 1);
}

#[tokio::test]
async fn a_red_check_rolls_back_to_development_with_its_name_and_log_tail_in_the_prompt() {
    let w = World::new().await;
    let task = w
        .engine
        .create_task(NewTaskRequest {
            repo: "app".into(),
            title: "add feature".into(),
            body: "".into(),
            external_ref: None,
        })
        .await
        .unwrap();
    let id = task.work_item_id.clone();
    *w.forge.ci.lock().unwrap() = Some(CiStatus::Red {
        check: "unit tests".into(),
        url: Some("https://ci.example.com/run/9".into()),
        log_tail: "test_total ... FAILED\nAssertionError: 3 != 4".into(),
    });
    assert_eq!(w.step().await, "development");
    // The merge gate's first job puts the change in the merge queue, which wakes it at once to
    // be tested on main (the queue is empty ahead of it).
    assert_eq!(w.step().await, "deploy_staging");
    assert_eq!(w.step().await, "deploy_staging");
    let task = w.task(&id).await;
    assert_eq!(task.state.stage, "development", "rolled back: {:?}", task.state);
    let lease = w.engine.store().lease(&baton_engine::gates::merge_lease_name("app")).await.unwrap();
    assert!(lease.is_none_or(|l| l.holder != baton_store::task_holder(task.id)), "the lease was released");
    assert_eq!(w.step().await, "development");
    let prompts = w.prompts.lock().unwrap().clone();
    assert_eq!(prompts.len(), 2);
    let prompt = &prompts[1];
    assert!(prompt.contains("CI check `unit tests` failed on"), "{prompt}");
    assert!(prompt.contains("https://ci.example.com/run/9"), "{prompt}");
    assert!(prompt.contains("test_total ... FAILED\nAssertionError: 3 != 4"), "{prompt}");
    assert!(!prompts[0].contains("unit tests"), "the first prompt had no failure");
}
