//! The generic webhook notifier (`[[notifiers]] kind = "webhook"`): each notification is a JSON
//! POST `{work_item, title, kind, text}` signed with HMAC-SHA256 over the raw body
//! (`X-Baton-Signature: sha256=<hex>`), plus [`NotifierSet`], which hands a notification to
//! several notifiers. A failed POST is an error, so the outbox retries it with backoff.

use crate::http::USER_AGENT;
use async_trait::async_trait;
use baton_adapters::AdapterError;
use baton_adapters::notifier::{Notification, Notifier};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Baton-Signature";

/// A webhook receiver of notifications.
#[derive(Clone)]
pub struct WebhookNotifier {
    name: String,
    url: String,
    secret: String,
    http: reqwest::Client,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier").field("name", &self.name).field("url", &self.url).finish()
    }
}

impl WebhookNotifier {
    pub fn new(
        name: impl Into<String>,
        url: impl Into<String>,
        secret: impl Into<String>,
    ) -> Result<Self, AdapterError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AdapterError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(WebhookNotifier { name: name.into(), url: url.into(), secret: secret.into(), http })
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The JSON body of a notification.
pub fn payload(n: &Notification) -> serde_json::Value {
    let kind = match n.kind {
        baton_domain::NotifyKind::Info => "info",
        baton_domain::NotifyKind::NeedsHuman => "needs_human",
        baton_domain::NotifyKind::Alert => "alert",
    };
    serde_json::json!({ "work_item": n.work_item, "title": n.title, "kind": kind, "text": n.text })
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn notify(&self, n: &Notification) -> Result<(), AdapterError> {
        let body = serde_json::to_vec(&payload(n)).unwrap_or_default();
        let signed = signature(self.secret.as_bytes(), &body);
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signed)
            .body(body)
            .send()
            .await
            .map_err(|e| AdapterError::Transient(format!("webhook notifier {}: {}", self.name, e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = format!("webhook notifier {}: HTTP {status}", self.name);
        if status.is_server_error() || status.as_u16() == 429 {
            Err(AdapterError::Transient(message))
        } else {
            Err(AdapterError::Rejected(message))
        }
    }
}

/// Several notifiers as one: each gets every notification; the first failure is returned after
/// all were tried (the outbox then retries the whole notification, which repeats it harmlessly).
#[derive(Clone, Default)]
pub struct NotifierSet {
    notifiers: Vec<Arc<dyn Notifier>>,
}

impl fmt::Debug for NotifierSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.notifiers.iter().map(|n| n.name())).finish()
    }
}

impl NotifierSet {
    pub fn new(notifiers: Vec<Arc<dyn Notifier>>) -> Self {
        NotifierSet { notifiers }
    }
}

#[async_trait]
impl Notifier for NotifierSet {
    fn name(&self) -> &str {
        "set"
    }

    async fn notify(&self, n: &Notification) -> Result<(), AdapterError> {
        let mut first = None;
        for notifier in &self.notifiers {
            if let Err(error) = notifier.notify(n).await {
                tracing::warn!(notifier = notifier.name(), "notification failed: {error}");
                first.get_or_insert(error);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
