//! What the dashboard tests share: a real engine over a real SQLite file and a real git
//! repository, named tokens, tasks parked where a human must act, an analysis artifact with raw
//! HTML in it, and a real server on 127.0.0.1. No claim loop runs, so no agent ever starts.
#![allow(dead_code)]

use baton_domain::{AgentReport, AgentStatus, Event, GateVerdict, JobOutcome, Pipeline, Usage, Verdict};
use baton_engine::{Engine, EngineSettings, Limits, NewTaskRequest, RepoSettings, Scope};
use baton_http::{AppState, Dashboard, DashboardMode};
use baton_store::{AgentRunFinish, Claim, JobFinish, JobStatus, NewAgentRun, NewEvent, TaskKey, TaskRecord};
use baton_store_sqlite::SqliteStore;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The analysis the parked task shows: Markdown, plus raw HTML an agent might write.
pub const ANALYSIS: &str = "# Analysis of the multiply ticket\n\n\
The function **multiply** belongs in `mathkit/core.py`.\n\n\
<script>window.__pwned = 1</script>\n\n\
<img src=x onerror=\"window.__pwned = 2\">\n\n\
| case | result |\n|---|---|\n| 2 × 3 | 6 |\n";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub engine: Arc<Engine>,
    pub act_token: String,
    pub read_token: String,
}

impl Harness {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("demo");
        init_repo(&repo);
        let store = SqliteStore::open(&dir.path().join("baton.db")).await.unwrap();
        let settings = EngineSettings {
            data_dir: dir.path().join("data"),
            limits: Limits::default(),
            repos: vec![RepoSettings {
                name: "demo".into(),
                path: repo,
                default_branch: "main".into(),
                url: None,
                push: None,
                delete_remote_branch: baton_engine::DeleteRemoteBranch::default(),
                credentials_env: None,
                prefix: "DEMO".into(),
                test: None,
                deploy: None,
                health: None,
                coverage: None,
                coverage_mode: Default::default(),
                coverage_min: 0.0,
                coverage_epsilon: 0.1,
                coverage_fail_open: true,
                security: None,
                merge_batch: 1,
                monitor_window_secs: 0,
                monitor_interval_secs: 30,
                monitor_failures: 3,
                revert_on_degraded: false,
                revert_confirm: false,
                serial: false,
                hooks: Default::default(),
                pipeline: None,
                forge: Default::default(),
            }],
            agents: BTreeMap::new(),
            pipeline: Pipeline::default_pipeline(),
            budgets: baton_engine::Budgets::default(),
            baton_exe: PathBuf::from("baton"),
            env_passthrough: vec![],
        };
        let engine = Engine::new(settings, Arc::new(store));
        let act_token = engine.create_token("alice", Scope::Act, "cli:test").await.unwrap();
        let read_token = engine.create_token("viewer", Scope::Read, "cli:test").await.unwrap();
        Harness { dir, engine, act_token, read_token }
    }

    pub fn state(&self, mode: DashboardMode, read_requires_token: bool) -> AppState {
        AppState {
            engine: self.engine.clone(),
            api_token: None,
            read_requires_token,
            started_at_ms: 0,
            webhooks: baton_http::WebhookSecrets::default(),
            dashboard: Dashboard::new(mode),
            observability: baton_http::Observability::default(),
        }
    }

    pub async fn create(&self, title: &str) -> TaskRecord {
        let request =
            NewTaskRequest { repo: "demo".into(), title: title.into(), body: String::new(), external_ref: None };
        self.engine.create_task(request).await.unwrap()
    }

    pub async fn task(&self, id: &str) -> TaskRecord {
        self.engine.store().task(&TaskKey::parse(id)).await.unwrap().unwrap()
    }

    /// Runs the task's analysis job to a passing end without an agent: the job is claimed, an
    /// agent run with usage is recorded, the artifact is written into the worktree, and the
    /// result goes through `apply_event`, which parks the task for approval.
    pub async fn park_for_approval(&self, task: &TaskRecord) -> TaskRecord {
        let store = self.engine.store();
        let now = self.engine.clock().now_ms();
        let claim = Claim {
            owner: "test".into(),
            now_ms: now,
            running_max: 1000,
            running_per_repo_max: 1000,
            ..Claim::default()
        };
        let job = loop {
            let job = store.claim_job(&claim).await.unwrap().expect("a queued job");
            if job.task_id == task.id {
                break job;
            }
        };
        let log = self.dir.path().join(format!("{}.log", task.work_item_id));
        std::fs::write(&log, "reading the ticket\nwriting 01-analysis.md\ndone\n").unwrap();
        let run = store
            .insert_agent_run(NewAgentRun {
                job: job.id,
                task: task.id,
                stage: "analysis".into(),
                adapter: "script".into(),
                model: Some("claude-sonnet-4-5".into()),
                pid: None,
                started_at_ms: now - 42_000,
                log_path: log.display().to_string(),
            })
            .await
            .unwrap();
        let report = AgentReport {
            status: AgentStatus::Succeeded,
            usage: Usage {
                input_tokens: 12_345,
                output_tokens: 2_345,
                cache_read_tokens: 100,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
            },
            cost_usd: Some(0.0734),
            model: Some("claude-sonnet-4-5".into()),
            session_id: None,
            turns: Some(3),
            final_text: None,
        };
        store
            .finish_agent_run(run, AgentRunFinish { ended_at_ms: now, exit_code: Some(0), report, stopped: false })
            .await
            .unwrap();
        let worktree =
            baton_engine::workspace::worktree_path(&self.engine.settings().worktrees_dir(), "demo", &task.work_item_id)
                .unwrap();
        let docs = worktree.join("docs/baton").join(&task.work_item_id);
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("01-analysis.md"), ANALYSIS).unwrap();
        let outcome = JobOutcome::Completed {
            verdicts: vec![GateVerdict::new("artifact", Verdict::Pass, "01-analysis.md exists (312 bytes)")],
        };
        // The executor records each verdict on the timeline before it reports the job's end.
        for verdict in match &outcome {
            JobOutcome::Completed { verdicts } => verdicts.clone(),
            _ => Vec::new(),
        } {
            store
                .append_event(NewEvent {
                    task: task.id,
                    at_ms: now,
                    kind: "gate".into(),
                    stage: "analysis".into(),
                    message: format!("{} pass: {}", verdict.gate, verdict.reason),
                    detail: serde_json::to_value(&verdict).unwrap(),
                })
                .await
                .unwrap();
        }
        let finish = JobFinish {
            job: job.id,
            status: JobStatus::Done,
            result: serde_json::json!({ "outcome": outcome }),
            claimed_by: None,
        };
        let event = Event::JobFinished { job: job.id, stage: "analysis".into(), outcome };
        self.engine.apply_event(task.id, &event, Some(finish), None).await.unwrap();
        let parked = self.task(&task.work_item_id).await;
        assert_eq!(parked.state.hold.label(), "awaiting_approval", "{:?}", parked.state);
        parked
    }
}

/// A real server on 127.0.0.1 (behind the Host/Origin guard, like `baton serve`).
pub struct Served {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    #[allow(clippy::disallowed_methods)] // the test's own server task
    pub async fn start(state: AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(baton_http::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Served { base, stop: Some(stop), task }
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

pub fn init_repo(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::write(path.join("README.md"), "demo\n").unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "README.md"]);
    git(&["commit", "-q", "-m", "init"]);
}
