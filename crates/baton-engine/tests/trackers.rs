//! Trackers wired into the engine, against the request-checking GitHub and Plane fakes: Plane
//! intake and each decision by state, answers from comments, Done is final, STOP then restart,
//! a poll that recovers a lost webhook, and replays that change nothing.
// Test scaffolding: a failed setup step should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

#[path = "../../baton-forges/tests/fakes/mod.rs"]
mod fakes;

use baton_adapters::tracker::{TicketPoller, Tracker, TrackerSet};
use baton_domain::{Hold, Pipeline, TaskState};
use baton_engine::clock::{BoxFuture, Clock};
use baton_engine::intake::{IntakeRule, IntakeSink, IntakeSource};
use baton_engine::{Engine, EngineSettings, Limits, RepoSettings};
use baton_forges::{
    Auth, ClientConfig, ForgePoller, GitHub, LabelSettings, LabelTracker, Plane, PlanePoller, PlaneTracker, Secret,
};
use baton_store::{Advance, NewDelivery, NewEvent, TaskFilter, TaskKey, TaskRecord, Transition};
use baton_store_sqlite::SqliteStore;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const TOKEN: &str = "tok_s3cr3t_value_123";
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

/// A clock tests move by hand.
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture {
        Box::pin(tokio::time::sleep(duration.min(Duration::from_millis(5))))
    }
}

/// A fixed wall clock for the HTTP clients (rate limits are not slept through for long).
struct ApiClock;

#[async_trait::async_trait]
impl baton_forges::Clock for ApiClock {
    fn unix_now(&self) -> u64 {
        (T0 / 1000) as u64
    }
    async fn sleep(&self, _d: Duration) {
        tokio::task::yield_now().await;
    }
}

fn api_config(base: &str, auth: Auth) -> ClientConfig {
    let mut c = ClientConfig::new(base, auth);
    c.clock = Arc::new(ApiClock);
    c
}

fn init_repo(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(path).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(path.join("README"), "shop\n").unwrap();
    git(&["add", "."]);
    git(&["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init"]);
}

fn settings(dir: &Path) -> EngineSettings {
    init_repo(&dir.join("shop"));
    EngineSettings {
        data_dir: dir.join("data"),
        limits: Limits::default(),
        repos: vec![RepoSettings {
            name: "shop".into(),
            path: dir.join("shop"),
            default_branch: "main".into(),
            prefix: "SHOP".into(),
            url: None,
            push: None,
            delete_remote_branch: baton_engine::DeleteRemoteBranch::default(),
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
            credentials_env: None,
            test: None,
            deploy: None,
            health: None,
            coverage: None,
            coverage_mode: Default::default(),
            coverage_min: 0.0,
            coverage_epsilon: 0.1,
            coverage_fail_open: true,
            security: None,
        }],
        agents: BTreeMap::new(),
        pipeline: Pipeline::default_pipeline(),
        budgets: baton_engine::Budgets::default(),
        baton_exe: "baton".into(),
        env_passthrough: vec![],
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    deliveries: std::sync::atomic::AtomicU32,
}

impl Harness {
    async fn new(rule: IntakeRule, tracker: (String, Arc<dyn Tracker>), poller: Arc<dyn TicketPoller>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("baton.db")).await.unwrap();
        let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
        let engine = Engine::builder(settings(dir.path()), Arc::new(store))
            .clock(clock.clone())
            .tracker(Arc::new(TrackerSet::new().with(tracker.0, tracker.1)))
            .webhook_sink(Arc::new(IntakeSink::new(vec![rule])))
            .pollers(vec![poller])
            .build();
        Harness { _dir: dir, engine, clock, deliveries: Default::default() }
    }

    fn advance_clock(&self, ms: i64) {
        self.clock.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Stores one webhook delivery and lets the inbox worker handle it.
    async fn deliver(&self, source: &str, event: &str, payload: serde_json::Value) {
        let n = self.deliveries.fetch_add(1, Ordering::SeqCst);
        self.deliver_as(source, event, &format!("d-{n}"), payload).await;
    }

    async fn deliver_as(&self, source: &str, event: &str, id: &str, payload: serde_json::Value) {
        self.engine
            .store()
            .record_delivery(NewDelivery {
                source: source.into(),
                delivery_id: id.into(),
                event: event.into(),
                payload: payload.to_string(),
                received_at_ms: self.clock.now_ms(),
            })
            .await
            .unwrap();
        let pass = self.engine.process_webhooks().await.unwrap();
        assert_eq!(pass.failed + pass.retried, 0, "{pass:?}");
    }

    async fn tasks(&self) -> Vec<TaskRecord> {
        self.engine.store().list_tasks(&TaskFilter::default()).await.unwrap()
    }

    async fn task(&self, id: baton_domain::TaskId) -> TaskRecord {
        self.engine.store().task(&TaskKey::Id(id)).await.unwrap().unwrap()
    }

    async fn kinds(&self, id: baton_domain::TaskId) -> Vec<String> {
        self.engine.store().events(Some(id), 0, 1000).await.unwrap().into_iter().map(|e| e.kind).collect()
    }

    /// Puts the task where a stage's agent would have left it (the queued job cancelled), with
    /// the tracker update such a decision writes.
    async fn put(&self, id: baton_domain::TaskId, stage: &str, hold: Hold) {
        let display = TaskState { stage: stage.into(), hold: hold.clone(), ..TaskState::new(stage) }.display();
        self.put_with_update(id, stage, hold, &display).await;
    }

    /// [`Harness::put`] whose tracker update says `status` (a stale one, written earlier).
    async fn put_with_update(&self, id: baton_domain::TaskId, stage: &str, hold: Hold, status: &str) {
        let task = self.task(id).await;
        let next = TaskState { stage: stage.into(), hold, job: None, ..task.state.clone() };
        let update = baton_engine::effects::OutboxEffect::TrackerUpdate {
            work_item: task.work_item_id.clone(),
            external_ref: task.external_ref.clone(),
            title: task.title.clone(),
            status: status.into(),
            ticket: None,
        };
        let row =
            baton_store::NewEffect { kind: update.kind().into(), payload: serde_json::to_value(&update).unwrap() };
        self.engine
            .store()
            .advance(Advance {
                task: id,
                expected_version: task.version,
                next: next.clone(),
                finish_job: None,
                event: NewEvent {
                    task: id,
                    at_ms: self.clock.now_ms(),
                    kind: "test_setup".into(),
                    stage: stage.into(),
                    message: format!("test: {}", next.display()),
                    detail: json!({}),
                },
                transition: Transition { cancel_jobs: true, ..Transition::default() },
                inbox: None,
                effects: vec![row],
                now_ms: self.clock.now_ms(),
            })
            .await
            .unwrap();
        baton_engine::effects::drain(&self.engine, Some(id)).await;
    }
}

// ------------------------------------------------------------------------------------------ Plane

fn plane_rule() -> IntakeRule {
    IntakeRule {
        source: IntakeSource::Plane,
        forge_repo: "p1".into(),
        repo: "shop".into(),
        start_label: "To Analyse".into(),
        approvers: vec!["Alice".into()],
        ..IntakeRule::default()
    }
}

async fn plane_harness() -> (Harness, fakes::plane::FakePlane) {
    let (fake, base) = fakes::plane::start(TOKEN).await;
    let client = || Plane::new(api_config(&base, Auth::ApiKey(Secret::new(TOKEN))), "acme", "p1").unwrap();
    let tracker = PlaneTracker::new(client());
    let prefix = tracker.ref_prefix();
    let h = Harness::new(plane_rule(), (prefix, Arc::new(tracker)), Arc::new(PlanePoller::new(client(), 60))).await;
    (h, fake)
}

/// A Plane `issue` webhook: the work item now in `state` (by name and id, or by id only).
fn work_item(fake: &fakes::plane::FakePlane, id: &str, state: &str, with_name: bool, actor: &str) -> serde_json::Value {
    let sid = fake.lock().unwrap().state_id(state);
    let state_value = if with_name { json!({"id": sid, "name": state, "group": "started"}) } else { json!(sid) };
    json!({
        "event": "issue", "action": "updated", "webhook_id": "w1", "workspace_id": "ws1",
        "data": {
            "id": id, "sequence_id": 7, "name": "Fix the <b>checkout</b>\u{7}",
            "description_html": "<p>Totals are <strong>wrong</strong> &amp; off by one.</p><ul><li>cart</li></ul>",
            "state": state_value, "project": "p1", "workspace": "ws1", "labels": []
        },
        "activity": {"field": "state", "actor": {"display_name": actor}}
    })
}

fn plane_fixture_ok(fake: &fakes::plane::FakePlane) {
    let v = fake.lock().unwrap().rec.violations.clone();
    assert!(v.is_empty(), "request shape violations: {v:#?}");
}

// A work item moved to the start state becomes one task with `plane:<project>/<id>`, its body
// plain text; a replayed delivery creates nothing; Baton mirrors the state back.
#[tokio::test]
async fn plane_start_state_creates_one_task_with_plain_text_body() {
    let (h, fake) = plane_harness().await;
    let id = fake.lock().unwrap().add_item("Fix", "To Analyse");
    let payload = work_item(&fake, &id, "To Analyse", true, "Alice");
    h.deliver_as("plane", "issue", "same", payload.clone()).await;
    h.deliver_as("plane", "issue", "same", payload.clone()).await;
    h.deliver("plane", "issue", payload).await;
    let tasks = h.tasks().await;
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    let task = &tasks[0];
    assert_eq!(task.external_ref.as_deref(), Some(format!("plane:p1/{id}").as_str()));
    assert_eq!(task.title, "Fix the <b>checkout</b>");
    assert_eq!(task.body, "Totals are wrong & off by one.\n- cart");
    assert_eq!(fake.lock().unwrap().state_of(&id), "In Progress", "the status is mirrored");
    plane_fixture_ok(&fake);
}

// Each decision state reaches the live task when it waits for it: Approved approves, Deploying
// confirms, In Progress answers (with the comments), STOP stops, Rejected stops with the
// rejection recorded; a state sent by id only is resolved through the project's states.
#[tokio::test]
async fn plane_decisions_by_state() {
    let (h, fake) = plane_harness().await;
    let mut tasks = Vec::new();
    for n in 0..4 {
        let id = fake.lock().unwrap().add_item(&format!("t{n}"), "To Analyse");
        h.deliver("plane", "issue", work_item(&fake, &id, "To Analyse", true, "Alice")).await;
        let task = h.engine.store().live_task_by_external_ref(&format!("plane:p1/{id}")).await.unwrap().unwrap();
        tasks.push((id, task.id));
    }
    // Approved (the state sent by id only) approves the analysis.
    let (item, task) = &tasks[0];
    h.put(*task, "analysis", Hold::AwaitingApproval).await;
    // Someone off the approvers list decides nothing.
    h.deliver("plane", "issue", work_item(&fake, item, "Approved", false, "Mallory")).await;
    assert_eq!(h.task(*task).await.state.hold, Hold::AwaitingApproval);
    h.deliver("plane", "issue", work_item(&fake, item, "Approved", false, "Alice")).await;
    let after = h.task(*task).await;
    assert_eq!((after.state.stage.as_str(), after.state.hold.clone()), ("architecture", Hold::None));
    let approved = h.engine.store().events(Some(*task), 0, 100).await.unwrap();
    let approved = approved.iter().find(|e| e.kind == "approved").unwrap();
    assert_eq!(approved.detail["event"]["by"], "tracker:plane:Alice");

    // Deploying confirms the deploy.
    let (item, task) = &tasks[1];
    h.put(*task, "deploy", Hold::AwaitingConfirm).await;
    h.deliver("plane", "issue", work_item(&fake, item, "Deploying", true, "Alice")).await;
    assert!(h.kinds(*task).await.contains(&"deploy_confirmed".to_string()), "{:?}", h.kinds(*task).await);

    // STOP stops.
    let (item, task) = &tasks[2];
    h.deliver("plane", "issue", work_item(&fake, item, "STOP", true, "Alice")).await;
    assert_eq!(h.task(*task).await.state.stage, "cancelled");
    assert_eq!(fake.lock().unwrap().state_of(item), "STOP");
    // Moved to the start state again: a fresh task (the cancelled one is a tombstone).
    h.deliver("plane", "issue", work_item(&fake, item, "To Analyse", true, "Alice")).await;
    let fresh = h.engine.store().live_task_by_external_ref(&format!("plane:p1/{item}")).await.unwrap().unwrap();
    assert_ne!(fresh.id, *task);
    assert_eq!(h.tasks().await.len(), 5);

    // Rejected stops, and the rejection is on the timeline.
    let (item, task) = &tasks[3];
    h.put(*task, "analysis", Hold::AwaitingApproval).await;
    h.deliver("plane", "issue", work_item(&fake, item, "Rejected", true, "Alice")).await;
    assert_eq!(h.task(*task).await.state.stage, "cancelled");
    let kinds = h.kinds(*task).await;
    assert!(kinds.contains(&"rejected".to_string()) && kinds.contains(&"stop".to_string()), "{kinds:?}");
    plane_fixture_ok(&fake);
}

// Needs Input → In Progress answers with the comments posted since the questions; the stage is
// relaunched with that text in its prompt. Baton's own echo of In Progress answers nothing.
#[tokio::test]
async fn plane_answer_from_comments_relaunches_the_stage() {
    let (h, fake) = plane_harness().await;
    let id = fake.lock().unwrap().add_item("t", "To Analyse");
    h.deliver("plane", "issue", work_item(&fake, &id, "To Analyse", true, "Alice")).await;
    let task = h.tasks().await[0].id;
    // The echo of Baton's own move to In Progress, while the task runs: no answer.
    h.deliver("plane", "issue", work_item(&fake, &id, "In Progress", true, "Baton")).await;
    h.advance_clock(60_000);
    fake.lock().unwrap().human_comment(&id, "Alice", "<p>before the question</p>", "2026-01-01T00:00:30Z");
    h.put(task, "analysis", Hold::NeedsInput { questions: "Which currency?".into() }).await;
    h.advance_clock(60_000);
    fake.lock().unwrap().human_comment(&id, "Alice", "<p>Use <b>EUR</b>, rounded half up.</p>", "2026-01-01T00:02:00Z");
    h.deliver("plane", "issue", work_item(&fake, &id, "In Progress", true, "Alice")).await;
    let after = h.task(task).await;
    assert_eq!(after.state.hold, Hold::None);
    assert_eq!(after.state.answers, ["Alice wrote:\nUse EUR, rounded half up."]);
    let jobs = h.engine.store().jobs_for_task(task).await.unwrap();
    assert!(jobs.iter().any(|j| j.stage == "analysis" && j.status == baton_store::JobStatus::Queued), "{jobs:#?}");
    let prompt = baton_engine::prompts::render(
        &h.engine.settings().data_dir.join("prompts"),
        &baton_engine::prompts::PromptContext {
            task: baton_engine::prompts::PromptTask {
                work_item: after.work_item_id.clone(),
                title: after.title.clone(),
                body: after.body.clone(),
                branch: after.branch.clone(),
            },
            stage: "analysis".into(),
            role: "analyst".into(),
            attempt: after.state.attempt,
            run: 2,
            artifact_path: None,
            failure: None,
            answers: after.state.answers.clone(),
            artifacts: vec![],
            retro: None,
        },
    )
    .unwrap();
    assert!(prompt.contains("Use EUR, rounded half up."), "{prompt}");
    assert!(!prompt.contains("before the question"));
    plane_fixture_ok(&fake);
}

// Done is final: a done task's item moved out of Done is set back to Done, with a timeline event;
// a replay of the same move while that update is in flight writes no second one.
#[tokio::test]
async fn plane_done_is_final() {
    let (h, fake) = plane_harness().await;
    let id = fake.lock().unwrap().add_item("t", "To Analyse");
    h.deliver("plane", "issue", work_item(&fake, &id, "To Analyse", true, "Alice")).await;
    let task = h.tasks().await[0].id;
    h.put(task, "deploy", Hold::AwaitingConfirm).await;
    h.put(task, "done", Hold::None).await;
    baton_engine::effects::drain(&h.engine, None).await;
    fake.lock().unwrap().move_item(&id, "Done");
    // A human drags it back to In Progress (or a late echo arrives).
    fake.lock().unwrap().move_item(&id, "In Progress");
    h.deliver("plane", "issue", work_item(&fake, &id, "In Progress", true, "Alice")).await;
    assert_eq!(fake.lock().unwrap().state_of(&id), "Done");
    let kinds = h.kinds(task).await;
    assert_eq!(kinds.iter().filter(|k| *k == "tracker_converged").count(), 1, "{kinds:?}");
    // Moving it to the start state again does not start a second task: Done is final.
    fake.lock().unwrap().move_item(&id, "To Analyse");
    h.deliver("plane", "issue", work_item(&fake, &id, "To Analyse", true, "Alice")).await;
    assert_eq!(h.tasks().await.len(), 1);
    assert_eq!(fake.lock().unwrap().state_of(&id), "Done");
    plane_fixture_ok(&fake);
}

// A Plane move whose webhook was lost is found by the next poll and decided the same way; a
// second poll changes nothing.
#[tokio::test]
async fn plane_poll_recovers_lost_webhooks() {
    let (h, fake) = plane_harness().await;
    let id = fake.lock().unwrap().add_item("Lost ticket", "To Analyse");
    fake.lock().unwrap().add_item("Backlog item", "Backlog");
    assert!(h.engine.poll_tickets().await.unwrap() >= 2);
    let tasks = h.tasks().await;
    assert_eq!(tasks.len(), 1, "only the item in the start state: {tasks:#?}");
    assert_eq!(tasks[0].title, "Lost ticket");
    h.advance_clock(61_000);
    h.engine.poll_tickets().await.unwrap();
    assert_eq!(h.tasks().await.len(), 1, "a second poll creates nothing");
    // STOP by a human, webhook lost: the poll cannot tell who moved it, so with `approvers` set
    // it is refused (documented: Plane decisions by poll need an empty approvers list).
    fake.lock().unwrap().move_item(&id, "STOP");
    h.advance_clock(61_000);
    h.engine.poll_tickets().await.unwrap();
    assert!(!h.task(tasks[0].id).await.state.is_terminal());
    plane_fixture_ok(&fake);
}

// ----------------------------------------------------------------------------------------- GitHub

fn github_rule() -> IntakeRule {
    IntakeRule {
        source: IntakeSource::Github,
        forge_repo: "acme/app".into(),
        repo: "shop".into(),
        start_label: "baton".into(),
        approve_label: "baton:approved".into(),
        deploy_label: "baton:deploy".into(),
        stop_label: "baton:stop".into(),
        answer_label: "baton:answered".into(),
        status_label_prefix: "baton:".into(),
        close_on_done: true,
        approvers: vec!["alice".into()],
        ..IntakeRule::default()
    }
}

fn label_settings() -> LabelSettings {
    LabelSettings {
        status_prefix: "baton:".into(),
        start_label: "baton".into(),
        approve_label: "baton:approved".into(),
        deploy_label: "baton:deploy".into(),
        stop_label: "baton:stop".into(),
        answer_label: "baton:answered".into(),
        close_on_done: true,
    }
}

async fn github_harness() -> (Harness, fakes::forge::FakeForge) {
    let (fake, base) = fakes::forge::start(fakes::forge::Flavor::GitHub, TOKEN).await;
    let api = Arc::new(GitHub::new(api_config(&base, Auth::Bearer(Secret::new(TOKEN))), "acme", "app").unwrap());
    let tracker = LabelTracker::new(api.clone(), "acme/app", label_settings());
    let prefix = tracker.ref_prefix();
    let poller = ForgePoller::new(api, "acme/app", label_settings(), true, 60);
    let h = Harness::new(github_rule(), (prefix, Arc::new(tracker)), Arc::new(poller)).await;
    (h, fake)
}

/// A GitHub `issues` webhook for the fake's issue `number` as it is now.
fn issue_payload(
    fake: &fakes::forge::FakeForge,
    number: u64,
    action: &str,
    label: Option<&str>,
    sender: &str,
) -> serde_json::Value {
    let f = fake.lock().unwrap();
    let issue = f.issues.iter().find(|i| i.number == number).unwrap();
    let labels: Vec<serde_json::Value> = issue.labels.iter().map(|l| json!({"name": l})).collect();
    json!({
        "action": action,
        "issue": {"number": number, "title": issue.title, "body": issue.body, "labels": labels,
                  "user": {"login": issue.author}, "state": issue.state},
        "label": label.map(|l| json!({"name": l})),
        "repository": {"full_name": "acme/app"},
        "sender": {"login": sender}
    })
}

fn github_ok(fake: &fakes::forge::FakeForge) {
    let v = fake.lock().unwrap().rec.violations.clone();
    assert!(v.is_empty(), "request shape violations: {v:#?}");
}

// An approve label whose webhook was lost: the poll finds it (and who added it) and approves; a
// replayed poll or delivery changes nothing: one task, one approval.
#[tokio::test]
async fn github_poll_makes_the_decision_a_lost_webhook_would_have() {
    let (h, fake) = github_harness().await;
    let n = fake.lock().unwrap().issue("Checkout rounds wrongly", &["baton"]);
    h.deliver("github", "issues", issue_payload(&fake, n, "labeled", Some("baton"), "alice")).await;
    let task = h.tasks().await[0].id;
    assert!(fake.lock().unwrap().labels_of(n).contains(&"baton:in-progress".to_string()));
    h.put(task, "analysis", Hold::AwaitingApproval).await;
    baton_engine::effects::drain(&h.engine, None).await;
    // Alice labels; the webhook never arrives.
    fake.lock().unwrap().human_label(n, "alice", "baton:approved", "2026-01-01T00:05:00Z");
    h.engine.poll_tickets().await.unwrap();
    let after = h.task(task).await;
    assert_eq!(after.state.stage, "architecture", "{:?}", after.state);
    // The replays: the same poll again, and the late webhook.
    h.advance_clock(61_000);
    h.engine.poll_tickets().await.unwrap();
    h.deliver("github", "issues", issue_payload(&fake, n, "labeled", Some("baton:approved"), "alice")).await;
    h.deliver("github", "issues", issue_payload(&fake, n, "labeled", Some("baton"), "alice")).await;
    let kinds = h.kinds(task).await;
    assert_eq!(kinds.iter().filter(|k| *k == "approved").count(), 1, "{kinds:?}");
    assert_eq!(h.tasks().await.len(), 1);
    // The approve label is consumed now that the task has left the hold.
    baton_engine::effects::drain(&h.engine, None).await;
    assert!(!fake.lock().unwrap().labels_of(n).contains(&"baton:approved".to_string()));
    github_ok(&fake);
}

// The answer label answers with the comments posted since the task asked; without comments the
// text says the answer is in the ticket.
#[tokio::test]
async fn github_answer_label_answers_with_the_comments() {
    let (h, fake) = github_harness().await;
    let n = fake.lock().unwrap().issue("Ticket", &["baton"]);
    h.deliver("github", "issues", issue_payload(&fake, n, "labeled", Some("baton"), "alice")).await;
    let task = h.tasks().await[0].id;
    h.put(task, "development", Hold::NeedsInput { questions: "Which DB?".into() }).await;
    fake.lock().unwrap().human_comment(n, "bob", "Postgres, version 16.", "2026-01-01T00:03:00Z");
    h.advance_clock(300_000);
    fake.lock().unwrap().human_label(n, "alice", "baton:answered", "2026-01-01T00:05:00Z");
    h.deliver("github", "issues", issue_payload(&fake, n, "labeled", Some("baton:answered"), "alice")).await;
    let after = h.task(task).await;
    assert_eq!(after.state.answers, ["bob wrote:\nPostgres, version 16."]);

    h.put(task, "development", Hold::NeedsInput { questions: "And the port?".into() }).await;
    h.deliver("github", "issues", issue_payload(&fake, n, "labeled", Some("baton:answered"), "alice")).await;
    let after = h.task(task).await;
    assert_eq!(after.state.answers.len(), 2);
    assert!(
        after.state.answers[1].contains("The answer is in the ticket github:acme/app#"),
        "{:?}",
        after.state.answers
    );
    github_ok(&fake);
}

// STOP by label stops the task and clears the start label; adding it again starts a fresh task
// (the cancelled one is a tombstone); a poll does not resurrect a stopped ticket on its own.
#[tokio::test]
async fn github_stop_then_restart_gives_a_fresh_task() {
    let (h, fake) = github_harness().await;
    let n = fake.lock().unwrap().issue("Ticket", &["baton"]);
    h.deliver("github", "issues", issue_payload(&fake, n, "labeled", Some("baton"), "alice")).await;
    let first = h.tasks().await[0].id;
    fake.lock().unwrap().human_label(n, "alice", "baton:stop", "2026-01-01T00:01:00Z");
    h.deliver("github", "issues", issue_payload(&fake, n, "labeled", Some("baton:stop"), "alice")).await;
    assert_eq!(h.task(first).await.state.stage, "cancelled");
    assert_eq!(fake.lock().unwrap().labels_of(n), ["baton:stopped"]);
    h.engine.poll_tickets().await.unwrap();
    assert_eq!(h.tasks().await.len(), 1, "a poll does not restart a stopped ticket");

    fake.lock().unwrap().human_label(n, "alice", "baton", "2026-01-01T00:02:00Z");
    h.deliver("github", "issues", issue_payload(&fake, n, "labeled", Some("baton"), "alice")).await;
    let tasks = h.tasks().await;
    assert_eq!(tasks.len(), 2);
    let fresh = tasks.iter().find(|t| t.id != first).unwrap();
    assert!(!fresh.state.is_terminal());
    assert_eq!(fresh.external_ref.as_deref(), Some(format!("github:acme/app#{n}").as_str()));
    assert_eq!(fake.lock().unwrap().labels_of(n), ["baton", "baton:in-progress"]);
    github_ok(&fake);
}

// Done is final on GitHub: the issue closed with a note; reopened, it is closed again and the
// timeline says why; a late update of an earlier status does not regress it.
#[tokio::test]
async fn github_done_is_final() {
    let (h, fake) = github_harness().await;
    let n = fake.lock().unwrap().issue("Ticket", &["baton"]);
    h.deliver("github", "issues", issue_payload(&fake, n, "labeled", Some("baton"), "alice")).await;
    let task = h.tasks().await[0].id;
    // The task is done, but the update that runs is a stale one of an earlier status (a retried
    // row): the ticket gets Done all the same.
    h.put_with_update(task, "done", Hold::None, "testing").await;
    {
        let f = fake.lock().unwrap();
        let issue = f.issues.iter().find(|i| i.number == n).unwrap();
        assert_eq!(issue.state, "closed");
        assert!(issue.labels.contains(&"baton:done".to_string()), "{:?}", issue.labels);
    }
    fake.lock().unwrap().issues.iter_mut().find(|i| i.number == n).unwrap().state = "open".into();
    h.deliver("github", "issues", issue_payload(&fake, n, "reopened", None, "bob")).await;
    assert_eq!(fake.lock().unwrap().issues.iter().find(|i| i.number == n).unwrap().state, "closed");
    let kinds = h.kinds(task).await;
    assert_eq!(kinds.iter().filter(|k| *k == "tracker_converged").count(), 1, "{kinds:?}");
    assert_eq!(h.tasks().await.len(), 1);
    github_ok(&fake);
}
