//! Telegram, two-way: each task's live card (one message edited in place through the
//! [`LiveBoard`] port, written as a `live_update` outbox row with every transition) and the
//! buttons on it. A press arrives as a stored delivery of source `telegram` (from
//! `POST /webhooks/telegram`, or from long polling `getUpdates` in the engine loop), deduplicated
//! by its `update_id`; it acts only for allowlisted user ids, goes through [`Engine::submit`] as
//! `telegram:<user id>` with the dedup key `telegram:<update_id>`, and is answered either way.
//!
//! Where the card is: the timeline. After each card shown, a `telegram_live` event records the
//! message id and the task version it shows; an update for a version already shown is skipped,
//! so a repeated outbox row never edits or sends twice, and a later one edits that message.

use crate::Engine;
use crate::engine::{Input, InputOutcome};
use baton_adapters::notifier::{CardAction, LiveBoard, LiveCard};
use baton_domain::{Hold, TaskId};
use baton_store::{DeliveryRecord, NewDelivery, NewEvent, TaskKey, TaskRecord};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// The delivery source of Telegram updates in the webhook inbox.
pub const SOURCE: &str = "telegram";
/// The timeline event that records where a task's card is.
pub const LIVE_EVENT: &str = "telegram_live";
/// The timeline event of a refused press.
pub const REFUSED_EVENT: &str = "telegram_refused";
/// How long one `getUpdates` long poll waits.
const POLL_WAIT_SECS: u64 = 25;

/// How presses arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PressMode {
    /// `POST /webhooks/telegram` (Telegram's `setWebhook`).
    #[default]
    Webhook,
    /// Long polling `getUpdates` from the engine loop.
    Poll,
}

/// The live board and who may press its buttons.
pub struct LiveUpdates {
    board: Arc<dyn LiveBoard>,
    allowed_user_ids: Vec<i64>,
    mode: PressMode,
    /// One card update at a time in this process (a first card is never sent twice by two workers).
    lock: tokio::sync::Mutex<()>,
    pub(crate) polling: AtomicBool,
    /// The next `getUpdates` offset (0: not read from the inbox yet).
    offset: AtomicI64,
}

impl std::fmt::Debug for LiveUpdates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveUpdates")
            .field("board", &self.board.name())
            .field("allowed_user_ids", &self.allowed_user_ids)
            .field("mode", &self.mode)
            .finish()
    }
}

impl LiveUpdates {
    pub fn new(board: Arc<dyn LiveBoard>, allowed_user_ids: Vec<i64>, mode: PressMode) -> Self {
        LiveUpdates {
            board,
            allowed_user_ids,
            mode,
            lock: tokio::sync::Mutex::new(()),
            polling: AtomicBool::new(false),
            offset: AtomicI64::new(0),
        }
    }

    pub fn polls(&self) -> bool {
        self.mode == PressMode::Poll
    }
}

/// The buttons of a task in `state`: the decision it awaits, and STOP while it lives.
pub fn actions(task: &TaskRecord) -> Vec<CardAction> {
    if task.state.is_terminal() {
        return Vec::new();
    }
    match task.state.hold {
        Hold::AwaitingApproval => vec![CardAction::Approve, CardAction::Stop],
        Hold::AwaitingConfirm => vec![CardAction::ConfirmDeploy, CardAction::Stop],
        _ => vec![CardAction::Stop],
    }
}

/// The task's card: stage, agent and model, tokens, cost, elapsed; a finish block once ended.
pub async fn card(engine: &Engine, task: &TaskRecord) -> Result<LiveCard, String> {
    let runs = engine.store().agent_runs(task.id).await.map_err(|e| e.to_string())?;
    let (tokens_in, tokens_out) = runs.iter().fold((0u64, 0u64), |(i, o), r| {
        (i + r.input_tokens + r.cache_read_tokens + r.cache_write_tokens, o + r.output_tokens)
    });
    let cost: f64 = runs.iter().filter_map(|r| r.cost_usd).sum();
    let ended = task.state.is_terminal();
    let until = if ended { task.updated_at_ms } else { engine.clock().now_ms() };
    let mut lines = vec![format!("stage: {}", task.state.display())];
    if let Some(run) = runs.iter().max_by_key(|r| r.started_at_ms) {
        let model = run.model.as_deref().unwrap_or("default model");
        lines.push(format!("agent: {} · {model} ({})", run.adapter, run.stage));
    }
    lines.push(format!("tokens: {tokens_in} in / {tokens_out} out · cost ${cost:.4}"));
    lines.push(format!("elapsed: {}", elapsed(until - task.created_at_ms)));
    match &task.state.hold {
        Hold::NeedsInput { .. } => lines.push("needs input: answer with `baton answer` or the API".into()),
        Hold::Blocked { reason } => lines.push(format!("blocked: {reason}")),
        Hold::PausedBudget { reason } => lines.push(format!("paused: {reason}")),
        _ => {}
    }
    if ended {
        lines.push(String::new());
        lines.push(format!("finished: {}", task.state.stage));
        lines.push(format!(
            "totals: {} agent runs · {tokens_in} in / {tokens_out} out · ${cost:.4} · {}",
            runs.len(),
            elapsed(until - task.created_at_ms)
        ));
        lines.push(format!("branch: {} ({})", task.branch, task.repo));
        if let Some(reference) = &task.external_ref {
            lines.push(format!("ticket: {reference}"));
        }
    }
    Ok(LiveCard {
        task_id: task.id.0,
        heading: format!("{} {}", task.work_item_id, task.title),
        lines,
        actions: actions(task),
    })
}

fn elapsed(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Where the task's card is: the last `telegram_live` event's (message id, version).
pub async fn live_message(engine: &Engine, task: TaskId) -> Result<Option<(i64, i64)>, String> {
    let mut after = 0;
    let mut found = None;
    loop {
        let page = engine.store().events(Some(task), after, 500).await.map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { return Ok(found) };
        after = last.id;
        for event in page.iter().filter(|e| e.kind == LIVE_EVENT) {
            let id = event.detail.get("message_id").and_then(Value::as_i64);
            let version = event.detail.get("version").and_then(Value::as_i64);
            if let (Some(id), Some(version)) = (id, version) {
                found = Some((id, version));
            }
        }
        if page.len() < 500 {
            return Ok(found);
        }
    }
}

/// Carries out a `live_update` row: shows the task's current card unless version `version` (or
/// a later one) is already shown. Idempotent by task and version.
pub(crate) async fn show(engine: &Engine, task_id: TaskId, version: i64) -> Result<(), String> {
    let Some(live) = engine.live() else { return Ok(()) };
    let _one = live.lock.lock().await;
    let existing = live_message(engine, task_id).await?;
    if existing.is_some_and(|(_, shown)| shown >= version) {
        return Ok(());
    }
    let Some(task) = engine.store().task(&TaskKey::Id(task_id)).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let card = card(engine, &task).await?;
    let message_id = live.board.show(&card, existing.map(|(id, _)| id)).await.map_err(|e| format!("telegram: {e}"))?;
    let shown = task.version.max(version);
    engine
        .store()
        .append_event(NewEvent {
            task: task_id,
            at_ms: engine.clock().now_ms(),
            kind: LIVE_EVENT.into(),
            stage: task.state.stage.clone(),
            message: format!("telegram message {message_id} shows version {shown}"),
            detail: json!({ "message_id": message_id, "version": shown }),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// One button press, read from an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Press {
    pub update_id: i64,
    pub press_id: String,
    pub user_id: i64,
    /// The action and task id of the button's data, when it is one of Baton's.
    pub action: Option<(CardAction, i64)>,
}

/// Reads a button press from an update (None: another kind of update).
pub fn parse_press(payload: &str) -> Result<Option<Press>, String> {
    let update: Value = serde_json::from_str(payload).map_err(|e| format!("the Telegram update is not JSON: {e}"))?;
    let update_id = update.get("update_id").and_then(Value::as_i64).ok_or("the Telegram update has no update_id")?;
    let Some(query) = update.get("callback_query") else { return Ok(None) };
    let press_id = query.get("id").and_then(Value::as_str).ok_or("the button press has no id")?.to_string();
    let user_id = query.pointer("/from/id").and_then(Value::as_i64).ok_or("the button press has no from.id")?;
    let action = query.get("data").and_then(Value::as_str).and_then(|data| {
        let (code, task) = data.split_once(':')?;
        Some((CardAction::from_code(code)?, task.parse().ok()?))
    });
    Ok(Some(Press { update_id, press_id, user_id, action }))
}

/// Handles one stored Telegram update; returns the summary recorded on the delivery. An error
/// leaves the delivery pending (tried again).
pub(crate) async fn handle_delivery(engine: &Engine, delivery: &DeliveryRecord) -> Result<String, String> {
    let Some(live) = engine.live() else {
        return Ok("ignored: Telegram is not configured".into());
    };
    let press = match parse_press(&delivery.payload) {
        Ok(Some(press)) => press,
        Ok(None) => return Ok("ignored: not a button press".into()),
        // Unreadable now is unreadable later: recorded, not retried.
        Err(error) => return Ok(format!("ignored: {error}")),
    };
    let by = format!("telegram:{}", press.user_id);
    if !live.allowed_user_ids.contains(&press.user_id) {
        tracing::warn!(
            user = press.user_id,
            "a Telegram button press from a user not in telegram.allowed_user_ids was refused"
        );
        if let Some((action, task)) = press.action {
            let _ = engine
                .store()
                .append_event(NewEvent {
                    task: TaskId(task),
                    at_ms: engine.clock().now_ms(),
                    kind: REFUSED_EVENT.into(),
                    stage: String::new(),
                    message: format!("{} from {by} refused: not in telegram.allowed_user_ids", action.label()),
                    detail: json!({ "user_id": press.user_id, "update_id": press.update_id }),
                })
                .await;
        }
        answer(live, &press.press_id, "You are not allowed to act on Baton tasks.").await;
        return Ok(format!("refused: user {} is not allowed", press.user_id));
    }
    let Some((action, task)) = press.action else {
        answer(live, &press.press_id, "Unknown button.").await;
        return Ok("ignored: unknown button data".into());
    };
    let input = match action {
        CardAction::Approve => Input::Approve,
        CardAction::ConfirmDeploy => Input::ConfirmDeploy,
        CardAction::Stop => Input::Stop,
    };
    let outcome =
        engine.submit(&TaskKey::Id(TaskId(task)), input, &by, Some(format!("telegram:{}", press.update_id))).await;
    let (reply, summary) = match outcome {
        Ok(InputOutcome::Applied { note }) => {
            (format!("{}: {note}", action.label()), format!("{} by {by}", action.code()))
        }
        Ok(InputOutcome::Suppressed { reason }) => {
            (reason.clone(), format!("{} by {by} suppressed: {reason}", action.code()))
        }
        Ok(InputOutcome::Duplicate) => ("Already done.".to_string(), format!("{} by {by}: duplicate", action.code())),
        Err(crate::EngineError::NotFound(what)) => (format!("Not found: {what}"), format!("{what} not found")),
        Err(crate::EngineError::Invalid(why)) => (why.clone(), format!("refused: {why}")),
        Err(other) => return Err(other.to_string()),
    };
    answer(live, &press.press_id, &reply).await;
    Ok(summary)
}

async fn answer(live: &LiveUpdates, press_id: &str, text: &str) {
    // Best effort: the press is recorded whether or not Telegram takes the answer.
    if let Err(error) = live.board.answer(press_id, text).await {
        tracing::warn!("answering a Telegram button press failed: {error}");
    }
}

/// One long poll (`mode = "poll"`): stores each update as a `telegram` delivery keyed by its
/// `update_id` (a repeated one is a duplicate) and wakes the loop; returns how many were new.
pub async fn poll(engine: &Engine) -> Result<u32, String> {
    let Some(live) = engine.live() else { return Ok(0) };
    let mut offset = live.offset.load(Ordering::Acquire);
    if offset == 0 {
        // After a restart: past every update already stored.
        let stored = engine.store().deliveries(Some(SOURCE)).await.map_err(|e| e.to_string())?;
        offset = stored.iter().filter_map(|d| d.delivery_id.parse::<i64>().ok()).max().map_or(0, |id| id + 1);
    }
    let updates = live.board.updates(offset, POLL_WAIT_SECS).await.map_err(|e| e.to_string())?;
    let mut new = 0;
    for update in updates {
        let stored = engine
            .store()
            .record_delivery(NewDelivery {
                source: SOURCE.into(),
                delivery_id: update.update_id.to_string(),
                event: "update".into(),
                payload: update.payload,
                received_at_ms: engine.clock().now_ms(),
            })
            .await
            .map_err(|e| e.to_string())?;
        new += u32::from(stored);
        offset = offset.max(update.update_id + 1);
    }
    live.offset.store(offset, Ordering::Release);
    if new > 0 {
        engine.webhook_received();
    }
    Ok(new)
}
