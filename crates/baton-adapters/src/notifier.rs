//! Notifiers tell humans. The built-in default writes to the log (the dashboard reads the timeline).

use async_trait::async_trait;
use baton_domain::NotifyKind;

/// One notification.
#[derive(Debug, Clone)]
pub struct Notification {
    pub work_item: String,
    pub title: String,
    pub kind: NotifyKind,
    pub text: String,
}

/// A notifier (Telegram, webhook; built-in: log).
#[async_trait]
pub trait Notifier: Send + Sync {
    fn name(&self) -> &str;

    async fn notify(&self, notification: &Notification) -> Result<(), crate::AdapterError>;
}

/// The built-in notifier: structured log lines.
#[derive(Debug, Default, Clone)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    fn name(&self) -> &str {
        "log"
    }

    async fn notify(&self, n: &Notification) -> Result<(), crate::AdapterError> {
        match n.kind {
            NotifyKind::Alert => tracing::warn!(work_item = %n.work_item, "{}", n.text),
            _ => tracing::info!(work_item = %n.work_item, kind = ?n.kind, "{}", n.text),
        }
        Ok(())
    }
}

/// A decision a button on a task's live card asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardAction {
    Approve,
    ConfirmDeploy,
    Stop,
}

impl CardAction {
    /// The short name carried in a button's data (`approve`, `confirm`, `stop`).
    pub fn code(self) -> &'static str {
        match self {
            CardAction::Approve => "approve",
            CardAction::ConfirmDeploy => "confirm",
            CardAction::Stop => "stop",
        }
    }

    pub fn from_code(code: &str) -> Option<CardAction> {
        match code {
            "approve" => Some(CardAction::Approve),
            "confirm" => Some(CardAction::ConfirmDeploy),
            "stop" => Some(CardAction::Stop),
            _ => None,
        }
    }

    /// The button's label.
    pub fn label(self) -> &'static str {
        match self {
            CardAction::Approve => "Approve",
            CardAction::ConfirmDeploy => "Confirm deploy",
            CardAction::Stop => "STOP",
        }
    }
}

/// A task's live card: a heading and plain-text lines (the board escapes them), with the
/// buttons of the decisions the task awaits.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveCard {
    /// The task's numeric id (carried in the buttons' data).
    pub task_id: i64,
    pub heading: String,
    pub lines: Vec<String>,
    pub actions: Vec<CardAction>,
}

/// One stored update a board received (a button press, by long polling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardUpdate {
    /// The sender's update id (deduplication key).
    pub update_id: i64,
    /// The update as received (JSON).
    pub payload: String,
}

/// A board of live task cards, one message per task edited in place (Telegram).
#[async_trait]
pub trait LiveBoard: Send + Sync {
    fn name(&self) -> &str;

    /// Shows `card`: edits message `existing` when given, and sends a new message when there is
    /// none or it can no longer be edited. Returns the id of the message that now shows it.
    async fn show(&self, card: &LiveCard, existing: Option<i64>) -> Result<i64, crate::AdapterError>;

    /// Answers a button press (`press_id`) with a short text shown to the one who pressed.
    async fn answer(&self, press_id: &str, text: &str) -> Result<(), crate::AdapterError>;

    /// Long polling: the updates after `offset` (waits up to `wait_secs` for one).
    async fn updates(&self, offset: i64, wait_secs: u64) -> Result<Vec<BoardUpdate>, crate::AdapterError>;
}
