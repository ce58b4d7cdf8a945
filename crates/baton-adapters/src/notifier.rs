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
