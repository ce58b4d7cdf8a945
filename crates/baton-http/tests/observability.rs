//! The observability routes against a real engine over a real SQLite file: `/metrics` parsed by a
//! strict Prometheus text-format parser and checked against a scenario built through the store,
//! `/api/queue` showing a held lease, who waits for it and a deferred job, the `/api/metrics`
//! envelope, the kill switches, and the OpenAPI document against the route table on a real server.
// Tests may unwrap, init a git repository with std::process::Command, and time requests.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_domain::{AgentReport, AgentStatus, GateVerdict, Pipeline, TaskId, TaskState, Usage, Verdict};
use baton_engine::{Engine, EngineSettings, Limits, NewTaskRequest, RepoSettings};
use baton_http::{AppState, Observability, app};
use baton_store::{Advance, AgentRunFinish, NewAgentRun, NewEvent, Store, TaskKey, TaskRecord, Transition};
use baton_store_sqlite::SqliteStore;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tower::ServiceExt;

struct Harness {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
}

impl Harness {
    async fn new() -> Self {
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
            budgets: baton_engine::Budgets { global_daily_usd: Some(50.0), ..Default::default() },
            baton_exe: PathBuf::from("baton"),
            env_passthrough: vec![],
        };
        let engine = Engine::new(settings, Arc::new(store));
        Harness { _dir: dir, engine }
    }

    fn state(&self, observability: Observability) -> AppState {
        AppState {
            engine: self.engine.clone(),
            api_token: Some("obs-token".into()),
            read_requires_token: false,
            started_at_ms: 0,
            webhooks: baton_http::WebhookSecrets {
                github: Some("gh-secret".into()),
                gitea: Some("gitea-secret".into()),
                plane: Some("plane-secret".into()),
                telegram: Some("telegram-secret-0123456789".into()),
            },
            observability,
            dashboard: baton_http::Dashboard::default(),
        }
    }

    fn app(&self) -> Router {
        app(self.state(Observability::default()))
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.engine.store()
    }

    fn now(&self) -> i64 {
        self.engine.clock().now_ms()
    }

    async fn create(&self, title: &str) -> TaskRecord {
        let request =
            NewTaskRequest { repo: "demo".into(), title: title.into(), body: String::new(), external_ref: None };
        self.engine.create_task(request).await.unwrap()
    }

    async fn task(&self, id: TaskId) -> TaskRecord {
        self.store().task(&TaskKey::Id(id)).await.unwrap().unwrap()
    }

    /// Moves a task to `stage` in one transaction: its open job cancelled at `now_ms` (so it ends
    /// with a latency), a new job at `stage` due after `delay_ms` unless the stage is final.
    async fn move_to(&self, id: TaskId, stage: &str, delay_ms: i64, now_ms: i64, cancel_requested: Option<&str>) {
        let task = self.task(id).await;
        let mut next = TaskState::new(stage);
        next.cancel_requested = cancel_requested.map(str::to_string);
        let final_stage = stage == "done" || stage == "cancelled";
        let advance = Advance {
            task: id,
            expected_version: task.version,
            next: next.clone(),
            finish_job: None,
            event: NewEvent {
                task: id,
                at_ms: now_ms,
                kind: "job_finished".into(),
                stage: stage.into(),
                message: format!("to {stage}"),
                detail: json!({ "from": task.state.display(), "to": next.display() }),
            },
            transition: Transition {
                enqueue: (!final_stage).then(|| (stage.to_string(), delay_ms)),
                rank: 0,
                cancel_jobs: true,
                release_leases: false,
            },
            inbox: None,
            effects: vec![],
            now_ms,
        };
        self.store().advance(advance).await.unwrap();
    }

    async fn verdict(&self, id: TaskId, stage: &str, gate: &str, verdict: Verdict, at_ms: i64) {
        let detail = serde_json::to_value(GateVerdict::new(gate, verdict, "because")).unwrap();
        let event =
            NewEvent { task: id, at_ms, kind: "gate".into(), stage: stage.into(), message: gate.into(), detail };
        self.store().append_event(event).await.unwrap();
    }

    async fn agent_run(&self, id: TaskId, adapter: &str, tokens: (u64, u64), cost: Option<f64>, failed: bool) {
        let task = self.task(id).await;
        let run = NewAgentRun {
            job: task.state.job.unwrap_or(baton_domain::JobId(1)),
            task: id,
            stage: "analysis".into(),
            adapter: adapter.into(),
            model: Some("model-a".into()),
            pid: None,
            started_at_ms: self.now(),
            log_path: "run.log".into(),
        };
        let run_id = self.store().insert_agent_run(run).await.unwrap();
        let status = if failed { AgentStatus::Failed { message: "boom".into() } } else { AgentStatus::Succeeded };
        let report = AgentReport {
            status,
            usage: Usage { input_tokens: tokens.0, output_tokens: tokens.1, ..Usage::default() },
            cost_usd: cost,
            model: Some("model-a".into()),
            session_id: None,
            turns: None,
            final_text: None,
        };
        let finish = AgentRunFinish { ended_at_ms: self.now(), exit_code: Some(0), report, stopped: false };
        self.store().finish_agent_run(run_id, finish).await.unwrap();
    }
}

fn init_repo(path: &Path) {
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

async fn get(app: Router, uri: &str) -> (StatusCode, Option<String>, String) {
    let response = app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn get_json(app: Router, uri: &str) -> (StatusCode, Value) {
    let (status, _, text) = get(app, uri).await;
    (status, serde_json::from_str(&text).unwrap())
}

// ---- a strict parser of the Prometheus text exposition format (0.0.4) ----

/// One sample: metric name and its labels, sorted.
type Key = (String, Vec<(String, String)>);

#[derive(Debug, Default)]
struct Scrape {
    types: HashMap<String, String>,
    samples: BTreeMap<Key, f64>,
}

impl Scrape {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        labels.sort();
        self.samples.get(&(name.to_string(), labels)).copied()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to (a histogram's `_bucket`, `_sum` and `_count` belong to it).
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|base| types.get(*base).is_some_and(|t| t == "histogram"))
}

fn parse_exposition(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    let mut helped = std::collections::HashSet::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let (keyword, rest) = rest.split_once(' ').expect(&at);
            let (name, what) = rest.split_once(' ').expect(&at);
            assert!(valid_name(name), "{at}");
            match keyword {
                "HELP" => assert!(helped.insert(name.to_string()) && !what.is_empty(), "{at}"),
                "TYPE" => {
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&what), "{at}");
                    assert!(helped.contains(name), "HELP before TYPE: {at}");
                    assert!(scrape.types.insert(name.to_string(), what.to_string()).is_none(), "{at}");
                }
                _ => panic!("unknown comment keyword: {at}"),
            }
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "{at}");
        let name_end = line.find(['{', ' ']).expect(&at);
        let name = &line[..name_end];
        assert!(valid_name(name), "{at}");
        let family = family_of(name, &scrape.types).unwrap_or_else(|| panic!("sample before its TYPE: {at}"));
        if scrape.types[family] == "counter" {
            assert!(name.ends_with("_total"), "a counter is named *_total: {at}");
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            loop {
                let (start, _) = *chars.peek().expect(&at);
                let eq = inner[start..].find('=').expect(&at) + start;
                let key = &inner[start..eq];
                assert!(valid_name(key) && !key.starts_with("__"), "{at}");
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{at}");
                let mut value = String::new();
                loop {
                    match chars.next().expect(&at).1 {
                        '\\' => match chars.next().expect(&at).1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => panic!("bad escape \\{other}: {at}"),
                        },
                        '"' => break,
                        '\n' => panic!("raw newline in a label value: {at}"),
                        c => value.push(c),
                    }
                }
                labels.push((key.to_string(), value));
                match chars.next().expect(&at) {
                    (_, ',') => continue,
                    (i, '}') => {
                        rest = &inner[i + 1..];
                        break;
                    }
                    other => panic!("unexpected {other:?}: {at}"),
                }
            }
        }
        let value_text = rest.strip_prefix(' ').expect(&at);
        assert!(!value_text.contains(' '), "no timestamps are written: {at}");
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            other => other.parse().expect(&at),
        };
        labels.sort();
        let key = (name.to_string(), labels);
        assert!(scrape.samples.insert(key, value).is_none(), "duplicate sample: {at}");
    }
    // Histograms: buckets ascend and are cumulative, `+Inf` equals `_count`.
    for (family, kind) in &scrape.types {
        if kind != "histogram" {
            continue;
        }
        let bucket = format!("{family}_bucket");
        let mut buckets: Vec<(f64, f64)> = scrape
            .samples
            .iter()
            .filter(|((name, _), _)| *name == bucket)
            .map(|((_, labels), v)| {
                let le = &labels.iter().find(|(k, _)| k == "le").unwrap().1;
                (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, *v)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family} buckets are cumulative");
        let count = scrape.value(&format!("{family}_count"), &[]).unwrap();
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count), "{family}: +Inf bucket is the count");
        assert!(scrape.value(&format!("{family}_sum"), &[]).is_some(), "{family}_sum");
    }
    scrape
}

// The parser refuses what the format forbids, so the scrape test below can fail.
#[test]
#[should_panic(expected = "sample before its TYPE")]
fn the_parser_refuses_a_sample_without_a_type() {
    parse_exposition("x_total 1\n");
}

#[test]
#[should_panic(expected = "bad escape")]
fn the_parser_refuses_a_bad_escape() {
    parse_exposition("# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"\\q\"} 1\n");
}

// Scenario: 6 tasks; 2 done (through development), 1 cancelled, 3 still at analysis; gate
// verdicts; 3 agent runs on two adapters; one task through the merge gate after 120 s of waiting.
#[tokio::test]
async fn metrics_exposition_matches_the_scenario() {
    let h = Harness::new().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(h.create(&format!("task {i}")).await.id);
    }
    let t0 = h.now();
    for id in &ids[..2] {
        h.move_to(*id, "development", 0, t0 + 2_000, None).await;
        h.move_to(*id, "done", 0, t0 + 2_000, None).await;
    }
    h.move_to(ids[2], "cancelled", 0, t0 + 2_000, None).await;
    h.verdict(ids[0], "analysis", "artifact", Verdict::Pass, t0).await;
    h.verdict(ids[1], "analysis", "artifact", Verdict::Pass, t0).await;
    h.verdict(ids[1], "development", "tests_passed", Verdict::Fail, t0).await;
    h.verdict(ids[0], "deploy_staging", "mergeable", Verdict::Defer, t0).await;
    h.verdict(ids[0], "deploy_staging", "mergeable", Verdict::Pass, t0 + 120_000).await;
    h.agent_run(ids[0], "claude", (1000, 200), Some(0.5), false).await;
    h.agent_run(ids[1], "claude", (500, 100), Some(0.25), true).await;
    h.agent_run(ids[3], "codex", (10, 5), None, false).await;
    // A label value that needs escaping reaches the output escaped.
    h.verdict(ids[3], "analysis", "odd \"gate\"\\x", Verdict::Error, t0).await;

    let (status, content_type, text) = get(h.app(), "/metrics").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(content_type.as_deref(), Some(baton_http::prometheus::CONTENT_TYPE));
    let scrape = parse_exposition(&text);

    assert_eq!(scrape.value("baton_tasks", &[("stage", "done")]), Some(2.0));
    assert_eq!(scrape.value("baton_tasks", &[("stage", "cancelled")]), Some(1.0));
    assert_eq!(scrape.value("baton_tasks", &[("stage", "analysis")]), Some(3.0));
    let moved = |from, to| scrape.value("baton_stage_transitions_total", &[("from", from), ("to", to)]);
    assert_eq!(moved("analysis", "development"), Some(2.0));
    assert_eq!(moved("development", "done"), Some(2.0));
    assert_eq!(moved("analysis", "cancelled"), Some(1.0));
    let verdict = |gate, v| scrape.value("baton_gate_verdicts_total", &[("gate", gate), ("verdict", v)]);
    assert_eq!(verdict("artifact", "pass"), Some(2.0));
    assert_eq!(verdict("tests_passed", "fail"), Some(1.0));
    assert_eq!(verdict("mergeable", "defer"), Some(1.0));
    assert_eq!(verdict("odd \"gate\"\\x", "error"), Some(1.0));
    assert!(text.contains(r#"gate="odd \"gate\"\\x""#), "escaped label in {text}");
    let runs = |adapter, s| scrape.value("baton_agent_runs_total", &[("adapter", adapter), ("status", s)]);
    assert_eq!(runs("claude", "succeeded"), Some(1.0));
    assert_eq!(runs("claude", "failed"), Some(1.0));
    assert_eq!(runs("codex", "succeeded"), Some(1.0));
    assert_eq!(scrape.value("baton_agent_tokens_total", &[("direction", "input")]), Some(1510.0));
    assert_eq!(scrape.value("baton_agent_tokens_total", &[("direction", "output")]), Some(305.0));
    assert_eq!(scrape.value("baton_cost_usd_total", &[]), Some(0.75));
    // Jobs ended: each task's analysis job ~2 s after it was due (5), and the two done tasks'
    // development jobs at the moment they were enqueued (0 s).
    assert_eq!(scrape.value("baton_job_latency_seconds_count", &[]), Some(5.0));
    assert_eq!(scrape.value("baton_job_latency_seconds_bucket", &[("le", "1")]), Some(2.0));
    assert_eq!(scrape.value("baton_job_latency_seconds_bucket", &[("le", "5")]), Some(5.0));
    let sum = scrape.value("baton_job_latency_seconds_sum", &[]).unwrap();
    assert!((6.0..=15.0).contains(&sum), "three jobs of about 2 s: {sum}");
    assert_eq!(scrape.value("baton_merge_queue_wait_seconds_count", &[]), Some(1.0));
    assert_eq!(scrape.value("baton_merge_queue_wait_seconds_sum", &[]), Some(120.0));
    assert_eq!(scrape.value("baton_merge_queue_wait_seconds_bucket", &[("le", "60")]), Some(0.0));
    assert_eq!(scrape.value("baton_merge_queue_wait_seconds_bucket", &[("le", "300")]), Some(1.0));

    // SQLite's aggregate queries answer exactly what the reference definition computes from the rows.
    let store = h.store();
    let tasks = store.list_tasks(&baton_store::TaskFilter::default()).await.unwrap();
    let (mut jobs, mut runs) = (Vec::new(), Vec::new());
    for task in &tasks {
        jobs.extend(store.jobs_for_task(task.id).await.unwrap());
        runs.extend(store.agent_runs(task.id).await.unwrap());
    }
    let events = store.events(None, 0, 10_000).await.unwrap();
    let bounds =
        baton_store::HistogramBounds { job_latency_ms: vec![500, 3_000], merge_wait_ms: vec![60_000, 300_000] };
    let reference = baton_store::MetricCounts::from_records(&tasks, &jobs, &events, &runs, &bounds);
    assert_eq!(store.metric_counts(&bounds).await.unwrap(), reference);
}

// A lease held by one task at the merge-gated stage, another task waiting for it with a deferred
// job, and a STOP pending on the holder.
#[tokio::test]
async fn queue_shows_a_held_lease_its_waiter_and_a_deferred_job() {
    let h = Harness::new().await;
    let holder = h.create("holder").await;
    let waiter = h.create("waiter").await;
    let idle = h.create("idle").await;
    let now = h.now();
    h.move_to(holder.id, "deploy_staging", 0, now, Some("cli:alice")).await;
    h.move_to(waiter.id, "deploy_staging", 600_000, now, None).await;
    let lease = h.store().acquire_lease("merge:demo", &format!("task:{}", holder.id), 300_000, now).await.unwrap();
    assert!(matches!(lease, baton_store::LeaseOutcome::Acquired { .. }));
    assert!(h.store().queue_enter(waiter.id, "demo", 0, now - 5_000).await.unwrap());
    h.store().set_budget_cap(&format!("task:{}", idle.id), Some(2.0), now).await.unwrap();

    let (status, queue) = get_json(h.app(), "/api/queue").await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    let leases = queue["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1, "{queue}");
    assert_eq!(leases[0]["name"], "merge:demo");
    assert_eq!(leases[0]["repo"], "demo");
    assert_eq!(leases[0]["holder"], format!("task:{}", holder.id));
    assert_eq!(leases[0]["holder_work_item"], holder.work_item_id);
    assert_eq!(leases[0]["expired"], false);
    assert_eq!(leases[0]["waiting"], json!([waiter.work_item_id]));
    // The merge queue: the waiter's change, its position, state and time waited.
    let queues = queue["merge_queues"].as_array().unwrap();
    assert_eq!(queues.len(), 1, "{queue}");
    assert_eq!(queues[0]["repo"], "demo");
    assert_eq!(queues[0]["depth"], 3);
    let entry = &queues[0]["entries"][0];
    assert_eq!((entry["position"].clone(), entry["work_item_id"].clone()), (json!(1), json!(waiter.work_item_id)));
    assert_eq!(entry["state"], "waiting");
    assert!(entry["waited_ms"].as_i64().unwrap() >= 5_000, "{entry}");

    let jobs = queue["jobs"].as_array().unwrap();
    let job_of = |w: &str| jobs.iter().find(|j| j["work_item_id"] == w).unwrap().clone();
    let deferred = job_of(&waiter.work_item_id);
    assert_eq!(deferred["status"], "deferred");
    assert_eq!(deferred["stage"], "deploy_staging");
    assert_eq!(deferred["due_at_ms"], now + 600_000);
    assert_eq!(job_of(&holder.work_item_id)["status"], "queued");
    assert_eq!(job_of(&idle.work_item_id)["stage"], "analysis");
    assert_eq!(jobs.len(), 3);

    assert_eq!(
        queue["stop"],
        json!([{ "task": holder.id.0, "work_item_id": holder.work_item_id, "stage": "deploy_staging", "requested_by": "cli:alice" }])
    );
    assert_eq!(queue["reaper"]["passes"], 0);
    assert_eq!(queue["reaper"]["last"], Value::Null);
    assert_eq!(queue["budgets"]["global_daily"]["cap_usd"], 50.0);
    assert_eq!(queue["budgets"]["repos"][0]["scope"], "repo:demo");
    assert_eq!(queue["budgets"]["tasks"][0]["scope"], format!("task:{}", idle.id));
    assert_eq!(queue["budgets"]["tasks"][0]["cap_usd"], 2.0);

    // A reaper pass shows up with what it did.
    baton_engine::reaper::tick(&h.engine).await;
    let (_, queue) = get_json(h.app(), "/api/queue").await;
    assert_eq!(queue["reaper"]["passes"], 1, "{queue}");
    assert!(queue["reaper"]["last"]["at_ms"].as_i64().unwrap() >= now);
}

// The envelope's fields and their values for a small scenario.
#[tokio::test]
async fn api_metrics_envelope_has_its_fields() {
    let h = Harness::new().await;
    let a = h.create("a").await;
    h.create("b").await;
    h.move_to(a.id, "development", 60_000, h.now(), None).await;
    h.agent_run(a.id, "claude", (100, 10), Some(1.25), false).await;

    let (status, m) = get_json(h.app(), "/api/metrics").await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["schema_version"], 1);
    assert!(m["generated_at"].as_i64().unwrap() > 1_600_000_000_000);
    assert!(m["clk_tck"].as_u64().unwrap() > 0);
    assert_eq!(m["stages"], json!({ "analysis": 1, "development": 1 }));
    assert_eq!(m["queue"], json!({ "queued": 1, "deferred": 1, "running": 0, "leases_held": 0 }));
    assert_eq!(m["agents"], json!([]), "no run is open");
    assert_eq!(m["cost"]["total_usd"], 1.25);
    assert_eq!(m["cost"]["by_stage"], json!({ "analysis": 1.25 }));
    assert_eq!(m["cost"]["by_model"], json!({ "model-a": 1.25 }));
}

// An open agent run of a live process group is listed with its runtime and CPU ticks.
#[tokio::test]
async fn api_metrics_lists_a_live_agent_with_cpu_ticks() {
    let h = Harness::new().await;
    let task = h.create("a").await;
    let job = task.state.job.unwrap();
    // This test process stands in for the agent: its group is alive and has used CPU.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let pgid: u32 = stat.rsplit_once(") ").unwrap().1.split(' ').nth(2).unwrap().parse().unwrap();
    h.store().set_job_process(job, Some(std::process::id()), Some(pgid)).await.unwrap();
    let run = NewAgentRun {
        job,
        task: task.id,
        stage: "analysis".into(),
        adapter: "claude".into(),
        model: None,
        pid: Some(std::process::id()),
        started_at_ms: h.now() - 5_000,
        log_path: "run.log".into(),
    };
    h.store().insert_agent_run(run).await.unwrap();
    let (_, m) = get_json(h.app(), "/api/metrics").await;
    let agents = m["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{m}");
    assert_eq!(agents[0]["task"], task.work_item_id);
    assert_eq!(agents[0]["adapter"], "claude");
    assert_eq!(agents[0]["pid"], std::process::id());
    assert_eq!(agents[0]["pgid"], pgid);
    assert!(agents[0]["runtime_ms"].as_i64().unwrap() >= 5_000);
    assert!(agents[0]["cpu_ticks"].as_u64().is_some(), "{m}");
}

// Each switch turns its routes into a 404 naming its key, and leaves the others on.
#[tokio::test]
async fn kill_switches_answer_404_naming_the_key() {
    let h = Harness::new().await;
    let off = app(h.state(Observability { metrics: false, queue_api: true, events: true }));
    for uri in ["/metrics", "/api/metrics"] {
        let (status, body) = get_json(off.clone(), uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(body["code"], "not_found");
        assert!(body["message"].as_str().unwrap().contains("server.metrics = true"), "{body}");
    }
    assert_eq!(get(off, "/api/queue").await.0, StatusCode::OK);

    let off = app(h.state(Observability { metrics: true, queue_api: false, events: true }));
    let (status, body) = get_json(off.clone(), "/api/queue").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["message"].as_str().unwrap().contains("server.queue_api = true"), "{body}");
    assert_eq!(get(off.clone(), "/metrics").await.0, StatusCode::OK);
    assert_eq!(get(off, "/api/metrics").await.0, StatusCode::OK);

    let off = app(h.state(Observability { metrics: true, queue_api: true, events: false }));
    let (status, body) = get_json(off.clone(), "/api/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["message"].as_str().unwrap().contains("server.events = true"), "{body}");
    assert_eq!(get(off, "/api/queue").await.0, StatusCode::OK);
}

/// Sends one request over a real socket and returns the status code.
async fn status_over_socket(address: std::net::SocketAddr, method: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = if method == "POST" { "{}" } else { "" };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Only the status line: a stream (`/api/events`) never ends.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&answer).split(' ').nth(1).unwrap().parse().unwrap()
}

// Every route of the route table is in the OpenAPI document and every documented operation is a
// route; on a real server every route answers (never 404 or 405), so the table matches the router.
#[tokio::test]
async fn openapi_covers_every_route_and_every_route_answers() {
    let h = Harness::new().await;
    let task = h.create("a").await;
    let (status, doc_json) = get_json(h.app(), "/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc_json["openapi"].as_str().unwrap().starts_with("3."), "{doc_json}");
    let doc = baton_http::openapi::document();
    for (method, path) in baton_http::ROUTES {
        assert!(baton_http::openapi::documents(&doc, method, path), "{method} {path} is not in the OpenAPI document");
    }
    for (template, item) in &doc.paths.paths {
        for (method, present) in [("GET", item.get.is_some()), ("POST", item.post.is_some())] {
            if present {
                let served = baton_http::ROUTES.iter().any(|(m, p)| {
                    *m == method && {
                        let (a, b): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), p.split('/').collect());
                        a.len() == b.len() && a.iter().zip(&b).all(|(t, p)| t == p || t.starts_with('{'))
                    }
                });
                assert!(served, "the document has {method} {template}, which no route serves");
            }
        }
    }
    // The ones the document names are also listed by path in the served JSON.
    assert!(doc_json["paths"]["/api/queue"]["get"].is_object());
    assert!(doc_json["paths"]["/metrics"]["get"].is_object());
    assert!(doc_json["components"]["schemas"]["QueueReport"].is_object(), "generated from the handler's type");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(baton_http::serve(listener, h.state(Observability::default()), async move {
        let _ = stopped.await;
    }));
    for (method, path) in baton_http::ROUTES {
        let path = path.replace("{id}", &task.work_item_id);
        let status = status_over_socket(address, method, &path).await;
        assert!(status != 404 && status != 405, "{method} {path} answered {status}");
        if *method == "GET" {
            assert_eq!(status, 200, "{method} {path}");
        }
    }
    assert_eq!(status_over_socket(address, "GET", "/api/no-such-route").await, 404, "the check can fail");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

// Measures (prints, does not assert) `/metrics` and `/api/queue` at 1000 tasks.
#[tokio::test]
async fn measure_metrics_and_queue_at_1k_tasks() {
    let h = Harness::new().await;
    let t0 = h.now();
    for i in 0..1000 {
        let task = h.create(&format!("task {i}")).await;
        h.verdict(task.id, "analysis", "artifact", Verdict::Pass, t0).await;
        if i % 3 == 0 {
            h.move_to(task.id, "done", 0, t0 + 1_000, None).await;
        }
    }
    for (uri, label) in
        [("/metrics", "GET /metrics"), ("/api/queue", "GET /api/queue"), ("/api/metrics", "GET /api/metrics")]
    {
        let mut times = Vec::new();
        for _ in 0..5 {
            let start = std::time::Instant::now();
            let (status, _, body) = get(h.app(), uri).await;
            times.push(start.elapsed());
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        times.sort();
        println!("{label} at 1000 tasks: median {:?}, max {:?}", times[2], times[4]);
    }
}
