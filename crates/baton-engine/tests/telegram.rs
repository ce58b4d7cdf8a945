//! Telegram wired into the engine over real SQLite, against the request-checking Bot API fake:
//! the live message follows the task (edited in place, a deleted one replaced), buttons appear
//! while a decision is awaited, a press from an allowlisted user approves exactly once (a replayed
//! update changes nothing), another user's press is refused and logged, and long polling stores
//! each update once.
// Test scaffolding: a failed setup step should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

#[path = "../../baton-forges/tests/fakes/mod.rs"]
mod fakes;

use baton_domain::{Hold, Pipeline, TaskState};
use baton_engine::clock::{BoxFuture, Clock};
use baton_engine::effects::{OutboxEffect, OutboxOptions, outbox_rows};
use baton_engine::telegram::{LIVE_EVENT, LiveUpdates, PressMode, REFUSED_EVENT, live_message};
use baton_engine::{Engine, EngineSettings, Limits, NewTaskRequest, RepoSettings};
use baton_forges::{Telegram, TelegramClient, TelegramConfig};
use baton_store::{Advance, NewDelivery, NewEvent, TaskKey, TaskRecord, Transition};
use baton_store_sqlite::SqliteStore;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const TOKEN: &str = "123456:AAHsecretTOKENvalue";
const CHAT: i64 = -1001234;
const ALLOWED: i64 = 42;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn sleep(&self, duration: Duration) -> BoxFuture {
        Box::pin(tokio::time::sleep(duration.min(Duration::from_millis(5))))
    }
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
    fake: fakes::telegram::FakeTelegram,
}

impl Harness {
    async fn new(mode: PressMode) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("baton.db")).await.unwrap();
        let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
        let (fake, base) = fakes::telegram::start(TOKEN, CHAT).await;
        let board =
            Arc::new(Telegram::new(TelegramClient::new(TelegramConfig::new(base, TOKEN, CHAT.to_string())).unwrap()));
        let engine = Engine::builder(settings(dir.path()), Arc::new(store))
            .clock(clock.clone())
            .notifier(board.clone())
            .live_updates(LiveUpdates::new(board, vec![ALLOWED], mode))
            .secrets([TOKEN.to_string()])
            .build();
        Harness { _dir: dir, engine, clock, fake }
    }

    async fn create(&self) -> TaskRecord {
        self.engine
            .create_task(NewTaskRequest {
                repo: "shop".into(),
                title: "Add a cart".into(),
                body: "b".into(),
                external_ref: None,
            })
            .await
            .unwrap()
    }

    async fn task(&self, id: baton_domain::TaskId) -> TaskRecord {
        self.engine.store().task(&TaskKey::Id(id)).await.unwrap().unwrap()
    }

    async fn kinds(&self, id: baton_domain::TaskId) -> Vec<String> {
        self.engine.store().events(Some(id), 0, 1000).await.unwrap().into_iter().map(|e| e.kind).collect()
    }

    /// Puts the task where a stage's agent would have left it, with the outbox rows such a
    /// decision writes when Telegram is configured, and carries them out.
    async fn put(&self, id: baton_domain::TaskId, stage: &str, hold: Hold) {
        let task = self.task(id).await;
        let next = TaskState { stage: stage.into(), hold, job: None, ..task.state.clone() };
        let effects = outbox_rows(
            self.engine.pipeline(),
            &task,
            &next,
            &[],
            &[],
            OutboxOptions { live: true, ..OutboxOptions::default() },
        );
        self.advance(&task, next, effects).await;
    }

    async fn advance(&self, task: &TaskRecord, next: TaskState, effects: Vec<baton_store::NewEffect>) {
        self.clock.0.fetch_add(61_000, Ordering::SeqCst);
        self.engine
            .store()
            .advance(Advance {
                task: task.id,
                expected_version: task.version,
                next: next.clone(),
                finish_job: None,
                event: NewEvent {
                    task: task.id,
                    at_ms: self.clock.now_ms(),
                    kind: "test_setup".into(),
                    stage: next.stage.clone(),
                    message: format!("test: {}", next.display()),
                    detail: json!({}),
                },
                transition: Transition { cancel_jobs: true, ..Transition::default() },
                inbox: None,
                effects,
                now_ms: self.clock.now_ms(),
            })
            .await
            .unwrap();
        baton_engine::effects::drain(&self.engine, Some(task.id)).await;
    }

    /// Stores update `update_id` as the webhook route would; returns whether it was new.
    async fn deliver(&self, update: serde_json::Value) -> bool {
        let new = self
            .engine
            .store()
            .record_delivery(NewDelivery {
                source: "telegram".into(),
                delivery_id: update["update_id"].to_string(),
                event: "update".into(),
                payload: update.to_string(),
                received_at_ms: self.clock.now_ms(),
            })
            .await
            .unwrap();
        let pass = self.engine.process_webhooks().await.unwrap();
        assert_eq!(pass.failed + pass.retried, 0, "{pass:?}");
        new
    }

    fn no_violations(&self) {
        let v = self.fake.lock().unwrap().violations.clone();
        assert!(v.is_empty(), "request shape violations: {v:#?}");
    }
}

fn callback_data(markup: &serde_json::Value) -> Vec<String> {
    markup["inline_keyboard"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|b| b["callback_data"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn the_live_message_is_edited_in_place_and_a_press_approves_exactly_once() {
    let h = Harness::new(PressMode::Webhook).await;
    let task = h.create().await;
    h.put(task.id, "analysis", Hold::AwaitingApproval).await;
    let (message_id, _) = live_message(&h.engine, task.id).await.unwrap().unwrap();
    {
        let st = h.fake.lock().unwrap();
        assert_eq!(st.count("sendMessage"), 1, "{:#?}", st.calls);
        let message = &st.messages[&message_id];
        assert!(
            message.text.contains("stage: analysis (awaiting_approval)") || message.text.contains("analysis"),
            "{}",
            message.text
        );
        assert!(message.text.contains("tokens: 0 in / 0 out"), "{}", message.text);
        assert_eq!(callback_data(&message.markup), [format!("approve:{}", task.id.0), format!("stop:{}", task.id.0)]);
    }

    let press = fakes::telegram::press(9001, ALLOWED, CHAT, message_id, &format!("approve:{}", task.id.0));
    assert!(h.deliver(press.clone()).await);
    let approved = h.task(task.id).await;
    assert_ne!(approved.state.hold, Hold::AwaitingApproval, "{:?}", approved.state);
    assert_eq!(approved.state.stage, "architecture", "{:?}", approved.state);
    let events = h.engine.store().events(Some(task.id), 0, 1000).await.unwrap();
    let approvals: Vec<_> = events.iter().filter(|e| e.kind == "approved").collect();
    assert_eq!(approvals.len(), 1, "{events:#?}");
    assert!(approvals[0].detail.to_string().contains("telegram:42"), "{:?}", approvals[0]);
    {
        let st = h.fake.lock().unwrap();
        // Still the one message, edited to the new stage, the Approve button gone.
        assert_eq!(st.count("sendMessage"), 1);
        assert_eq!(st.messages.len(), 1);
        let message = &st.messages[&message_id];
        assert!(message.edits >= 1 && message.text.contains("architecture"), "{message:?}");
        assert_eq!(callback_data(&message.markup), [format!("stop:{}", task.id.0)]);
        assert_eq!(st.answers.len(), 1);
        assert_eq!(st.answers[0].0, "cq-9001");
        assert!(st.answers[0].1.starts_with("Approve"), "{:?}", st.answers);
    }

    // The same update again (Telegram redelivers until it gets a 2xx): nothing changes.
    let version = h.task(task.id).await.version;
    assert!(!h.deliver(press).await);
    assert_eq!(h.task(task.id).await.version, version);
    assert_eq!(h.fake.lock().unwrap().answers.len(), 1);
    h.no_violations();
}

#[tokio::test]
async fn a_replayed_update_under_another_delivery_is_a_duplicate_input() {
    let h = Harness::new(PressMode::Webhook).await;
    let task = h.create().await;
    h.put(task.id, "analysis", Hold::AwaitingApproval).await;
    let (message_id, _) = live_message(&h.engine, task.id).await.unwrap().unwrap();
    let press = fakes::telegram::press(77, ALLOWED, CHAT, message_id, &format!("approve:{}", task.id.0));
    h.deliver(press.clone()).await;
    let after_first = h.task(task.id).await;
    // Put the task back to awaiting approval, then replay the same update_id from a second
    // store row (as after a lost acknowledgement): the input's dedup key refuses it.
    h.put(task.id, "analysis", Hold::AwaitingApproval).await;
    let version = h.task(task.id).await.version;
    h.engine
        .store()
        .record_delivery(NewDelivery {
            source: "telegram".into(),
            delivery_id: "77-replay".into(),
            event: "update".into(),
            payload: press.to_string(),
            received_at_ms: h.clock.now_ms(),
        })
        .await
        .unwrap();
    h.engine.process_webhooks().await.unwrap();
    assert_eq!(h.task(task.id).await.version, version);
    assert_eq!(h.task(task.id).await.state.hold, Hold::AwaitingApproval);
    assert_ne!(after_first.state.hold, Hold::AwaitingApproval);
    let answers = h.fake.lock().unwrap().answers.clone();
    assert_eq!(answers.last().unwrap().1, "Already done.");
}

#[tokio::test]
async fn a_press_from_a_user_not_allowlisted_is_refused_and_logged() {
    let h = Harness::new(PressMode::Webhook).await;
    let task = h.create().await;
    h.put(task.id, "analysis", Hold::AwaitingApproval).await;
    let version = h.task(task.id).await.version;
    let (message_id, _) = live_message(&h.engine, task.id).await.unwrap().unwrap();
    h.deliver(fakes::telegram::press(5, 666, CHAT, message_id, &format!("approve:{}", task.id.0))).await;
    assert_eq!(h.task(task.id).await.version, version);
    assert_eq!(h.task(task.id).await.state.hold, Hold::AwaitingApproval);
    assert!(h.kinds(task.id).await.contains(&REFUSED_EVENT.to_string()));
    let st = h.fake.lock().unwrap();
    assert_eq!(st.answers, vec![("cq-5".to_string(), "You are not allowed to act on Baton tasks.".to_string())]);
    assert_eq!(st.count("editMessageText"), 0, "a refused press edits nothing");
}

#[tokio::test]
async fn stop_from_the_card_cancels_the_task() {
    let h = Harness::new(PressMode::Webhook).await;
    let task = h.create().await;
    h.put(task.id, "deploy", Hold::AwaitingConfirm).await;
    let (message_id, _) = live_message(&h.engine, task.id).await.unwrap().unwrap();
    let markup = h.fake.lock().unwrap().messages[&message_id].markup.clone();
    assert_eq!(callback_data(&markup), [format!("confirm:{}", task.id.0), format!("stop:{}", task.id.0)]);
    h.deliver(fakes::telegram::press(11, ALLOWED, CHAT, message_id, &format!("stop:{}", task.id.0))).await;
    let stopped = h.task(task.id).await;
    assert!(stopped.state.is_terminal(), "{:?}", stopped.state);
    let st = h.fake.lock().unwrap();
    let message = &st.messages[&message_id];
    assert!(message.text.contains("finished: cancelled") && message.text.contains("totals:"), "{}", message.text);
    assert_eq!(message.markup, json!({ "inline_keyboard": [] }));
}

#[tokio::test]
async fn an_update_row_for_a_version_already_shown_sends_nothing_and_a_deleted_message_is_replaced() {
    let h = Harness::new(PressMode::Webhook).await;
    let task = h.create().await;
    h.put(task.id, "analysis", Hold::None).await;
    let (first, shown) = live_message(&h.engine, task.id).await.unwrap().unwrap();
    let calls = h.fake.lock().unwrap().calls.len();
    // A stale row (its version already shown) written with another transition: skipped.
    let current = h.task(task.id).await;
    let stale = OutboxEffect::LiveUpdate { work_item: current.work_item_id.clone(), version: shown };
    let row = baton_store::NewEffect { kind: stale.kind().into(), payload: serde_json::to_value(&stale).unwrap() };
    h.advance(&current, current.state.clone(), vec![row]).await;
    assert_eq!(h.fake.lock().unwrap().calls.len(), calls);
    // The message was deleted in the chat: the next stage sends a new one and keeps its id.
    h.fake.lock().unwrap().delete(first);
    h.put(task.id, "architecture", Hold::None).await;
    let (second, _) = live_message(&h.engine, task.id).await.unwrap().unwrap();
    assert_ne!(second, first);
    h.put(task.id, "development", Hold::None).await;
    {
        let st = h.fake.lock().unwrap();
        assert_eq!(st.messages.len(), 1);
        assert!(st.messages[&second].text.contains("development"));
        assert_eq!(st.messages[&second].edits, 1);
    }
    assert!(h.kinds(task.id).await.iter().filter(|k| *k == LIVE_EVENT).count() >= 3);
    h.no_violations();
}

#[tokio::test]
async fn alerts_for_decisions_are_separate_messages() {
    let h = Harness::new(PressMode::Webhook).await;
    let task = h.create().await;
    let current = h.task(task.id).await;
    let next = TaskState { stage: "analysis".into(), hold: Hold::AwaitingApproval, job: None, ..current.state.clone() };
    let effects = [baton_domain::Effect::Notify {
        kind: baton_domain::NotifyKind::NeedsHuman,
        text: "analysis awaits approval".into(),
    }];
    let rows = outbox_rows(
        h.engine.pipeline(),
        &current,
        &next,
        &effects,
        &[],
        OutboxOptions { live: true, ..OutboxOptions::default() },
    );
    h.advance(&current, next, rows).await;
    let st = h.fake.lock().unwrap();
    assert_eq!(st.count("sendMessage"), 2, "the live message and one alert");
    assert!(
        st.messages
            .values()
            .any(|m| m.text.contains("analysis awaits approval") && m.markup == json!({ "inline_keyboard": [] }))
    );
}

#[tokio::test]
async fn presses_by_long_polling_are_stored_once_per_update_id() {
    let h = Harness::new(PressMode::Poll).await;
    let task = h.create().await;
    h.put(task.id, "analysis", Hold::AwaitingApproval).await;
    let (message_id, _) = live_message(&h.engine, task.id).await.unwrap().unwrap();
    h.fake.lock().unwrap().updates.push_back(fakes::telegram::press(
        300,
        ALLOWED,
        CHAT,
        message_id,
        &format!("approve:{}", task.id.0),
    ));
    assert_eq!(baton_engine::telegram::poll(&h.engine).await.unwrap(), 1);
    h.engine.process_webhooks().await.unwrap();
    assert_eq!(h.task(task.id).await.state.stage, "architecture");
    // The next poll asks past update 300, so it is neither fetched nor stored again.
    assert_eq!(baton_engine::telegram::poll(&h.engine).await.unwrap(), 0);
    let st = h.fake.lock().unwrap();
    let polls: Vec<_> = st.calls.iter().filter(|(m, _)| m == "getUpdates").map(|(_, b)| b["offset"].clone()).collect();
    assert_eq!(polls, [json!(0), json!(301)]);
}
