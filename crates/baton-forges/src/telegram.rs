//! Telegram Bot API client (`POST <api_url>/bot<token>/<method>` with JSON) and [`Telegram`], the
//! notifier and live board over it: one message per task edited in place, separate alert
//! messages, inline buttons, answered presses, long polling.
//!
//! Errors are Telegram's `{"ok":false,"error_code","description","parameters"}`. A 429 waits
//! `parameters.retry_after` seconds (through [`Clock`]) and tries again, when that is at most the
//! configured longest wait; a refused edit ("message to edit not found", "message can't be
//! edited") falls back to a new message; "message is not modified" counts as shown. The token is
//! part of every URL and never appears in an error or a debug print.

use crate::http::{Clock, SystemClock, USER_AGENT};
use async_trait::async_trait;
use baton_adapters::AdapterError;
use baton_adapters::notifier::{BoardUpdate, CardAction, LiveBoard, LiveCard, Notification, Notifier};
use baton_domain::NotifyKind;
use serde_json::{Value, json};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Telegram's longest message text (characters after entity parsing).
pub const TEXT_CHARS_MAX: usize = 4096;

/// Where and how to reach the bot.
#[derive(Clone)]
pub struct TelegramConfig {
    /// `https://api.telegram.org` (or a local Bot API server).
    pub api_url: String,
    pub token: String,
    /// The chat every message goes to: a numeric id or `@channelname`.
    pub chat_id: String,
    pub clock: Arc<dyn Clock>,
    /// Longest `retry_after` slept through; past it the call fails (the outbox retries it later).
    pub max_rate_limit_wait: Duration,
    /// Tries of one call in total when rate limited.
    pub max_attempts: u32,
    pub request_timeout: Duration,
}

impl TelegramConfig {
    pub fn new(api_url: impl Into<String>, token: impl Into<String>, chat_id: impl Into<String>) -> Self {
        TelegramConfig {
            api_url: api_url.into().trim_end_matches('/').to_string(),
            token: token.into(),
            chat_id: chat_id.into(),
            clock: Arc::new(SystemClock),
            max_rate_limit_wait: Duration::from_secs(30),
            max_attempts: 3,
            request_timeout: Duration::from_secs(40),
        }
    }
}

impl fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("api_url", &self.api_url)
            .field("token", &"***")
            .field("chat_id", &self.chat_id)
            .finish()
    }
}

/// A failed Bot API call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("telegram.{method}: {}{description}", code.map(|c| format!("HTTP {c}: ")).unwrap_or_default())]
pub struct TelegramError {
    pub method: String,
    /// Telegram's `error_code` (None: no answer, e.g. a connection error).
    pub code: Option<u16>,
    pub description: String,
    /// `parameters.retry_after` of a rate limit that was not waited through.
    pub retry_after: Option<u64>,
}

impl TelegramError {
    /// An edit Telegram refuses for good: the message is gone or not editable (send a new one).
    pub fn edit_refused(&self) -> bool {
        let d = self.description.to_ascii_lowercase();
        self.code == Some(400)
            && (d.contains("message to edit not found")
                || d.contains("message can't be edited")
                || d.contains("message_id_invalid"))
    }

    /// "message is not modified": the message already shows this text and markup.
    pub fn not_modified(&self) -> bool {
        self.code == Some(400) && self.description.to_ascii_lowercase().contains("message is not modified")
    }

    fn adapter(self) -> AdapterError {
        match self.code {
            None | Some(429) | Some(500..) => AdapterError::Transient(self.to_string()),
            _ => AdapterError::Rejected(self.to_string()),
        }
    }
}

/// The Bot API client.
#[derive(Clone)]
pub struct TelegramClient {
    http: reqwest::Client,
    config: TelegramConfig,
}

impl fmt::Debug for TelegramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramClient").field("config", &self.config).finish()
    }
}

impl TelegramClient {
    pub fn new(config: TelegramConfig) -> Result<Self, TelegramError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.request_timeout)
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TelegramError {
                method: "client".into(),
                code: None,
                description: format!("cannot build the HTTP client: {e}"),
                retry_after: None,
            })?;
        Ok(TelegramClient { http, config })
    }

    pub fn chat_id(&self) -> &str {
        &self.config.chat_id
    }

    /// `chat_id` as Telegram wants it: a number when it is one, else the `@name`.
    fn chat(&self) -> Value {
        match self.config.chat_id.trim().parse::<i64>() {
            Ok(id) => json!(id),
            Err(_) => json!(self.config.chat_id.trim()),
        }
    }

    fn scrub(&self, text: &str) -> String {
        let token = &self.config.token;
        let text = if token.len() >= 4 { text.replace(token.as_str(), "***") } else { text.to_string() };
        text.chars().take(300).collect()
    }

    /// Calls `method` with `body`; returns its `result`. Waits through a short 429.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, TelegramError> {
        let url = format!("{}/bot{}/{method}", self.config.api_url, self.config.token);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = |code: Option<u16>, description: String, retry_after: Option<u64>| TelegramError {
                method: method.to_string(),
                code,
                description,
                retry_after,
            };
            let response = match self.http.post(&url).json(body).send().await {
                Ok(r) => r,
                Err(e) => {
                    // Without the URL: it holds the token.
                    let e = e.without_url();
                    let mut text = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        text.push_str(": ");
                        text.push_str(&s.to_string());
                        source = s.source();
                    }
                    return Err(error(None, self.scrub(&text), None));
                }
            };
            let status = response.status().as_u16();
            let bytes =
                response.bytes().await.map_err(|e| error(None, self.scrub(&e.without_url().to_string()), None))?;
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if answer.get("ok").and_then(Value::as_bool) == Some(true) {
                return Ok(answer.get("result").cloned().unwrap_or(Value::Null));
            }
            let code = answer.get("error_code").and_then(Value::as_u64).map(|c| c as u16).unwrap_or(status);
            let description = answer
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            let retry_after = answer.pointer("/parameters/retry_after").and_then(Value::as_u64);
            if code == 429 {
                let wait = retry_after.unwrap_or(1);
                if Duration::from_secs(wait) <= self.config.max_rate_limit_wait && attempt < self.config.max_attempts {
                    tracing::info!(method, wait_s = wait, "telegram rate limit, waiting");
                    self.config.clock.sleep(Duration::from_secs(wait)).await;
                    continue;
                }
            }
            return Err(error(Some(code), self.scrub(&description), retry_after));
        }
    }

    /// `sendMessage` in HTML; returns the new message's id.
    pub async fn send_message(&self, html: &str, markup: Option<Value>) -> Result<i64, TelegramError> {
        let mut body = json!({
            "chat_id": self.chat(),
            "text": html,
            "parse_mode": "HTML",
            "link_preview_options": { "is_disabled": true },
        });
        if let Some(markup) = markup {
            body["reply_markup"] = markup;
        }
        let result = self.call("sendMessage", &body).await?;
        result.get("message_id").and_then(Value::as_i64).ok_or_else(|| TelegramError {
            method: "sendMessage".into(),
            code: None,
            description: "the answer has no result.message_id".into(),
            retry_after: None,
        })
    }

    /// `editMessageText` in HTML with the given markup (an empty keyboard removes the buttons).
    pub async fn edit_message_text(&self, message_id: i64, html: &str, markup: Value) -> Result<(), TelegramError> {
        let body = json!({
            "chat_id": self.chat(),
            "message_id": message_id,
            "text": html,
            "parse_mode": "HTML",
            "link_preview_options": { "is_disabled": true },
            "reply_markup": markup,
        });
        self.call("editMessageText", &body).await.map(|_| ())
    }

    /// `answerCallbackQuery` with a short text.
    pub async fn answer_callback_query(&self, callback_query_id: &str, text: &str) -> Result<(), TelegramError> {
        let text: String = text.chars().take(200).collect();
        let body = json!({ "callback_query_id": callback_query_id, "text": text });
        self.call("answerCallbackQuery", &body).await.map(|_| ())
    }

    /// `getUpdates` (button presses only) after `offset`, waiting up to `timeout` seconds.
    pub async fn get_updates(&self, offset: i64, timeout: u64) -> Result<Vec<Value>, TelegramError> {
        let body = json!({ "offset": offset, "timeout": timeout, "allowed_updates": ["callback_query"] });
        match self.call("getUpdates", &body).await? {
            Value::Array(updates) => Ok(updates),
            _ => Err(TelegramError {
                method: "getUpdates".into(),
                code: None,
                description: "the answer's result is not a list".into(),
                retry_after: None,
            }),
        }
    }

    /// `getMe`: the bot's username (a cheap check of the token).
    pub async fn get_me(&self) -> Result<String, TelegramError> {
        let me = self.call("getMe", &json!({})).await?;
        Ok(me.get("username").and_then(Value::as_str).unwrap_or("").to_string())
    }
}

/// Escapes text for Telegram's HTML parse mode.
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A card as the message's HTML: the heading in bold, then the lines; cut to the text limit.
pub fn card_html(card: &LiveCard) -> String {
    let mut html = format!("<b>{}</b>", escape_html(&card.heading));
    for line in &card.lines {
        html.push('\n');
        html.push_str(&escape_html(line));
    }
    cut(html)
}

/// The inline keyboard of a card's actions (`callback_data` = `<action>:<task id>`), one row.
pub fn card_markup(card: &LiveCard) -> Value {
    let row: Vec<Value> = card
        .actions
        .iter()
        .map(|a| json!({ "text": a.label(), "callback_data": format!("{}:{}", a.code(), card.task_id) }))
        .collect();
    if row.is_empty() { json!({ "inline_keyboard": [] }) } else { json!({ "inline_keyboard": [row] }) }
}

/// Parses a button's `callback_data` (`approve:12`) into its action and task id.
pub fn parse_callback_data(data: &str) -> Option<(CardAction, i64)> {
    let (code, task) = data.split_once(':')?;
    Some((CardAction::from_code(code)?, task.parse().ok()?))
}

fn cut(mut text: String) -> String {
    if text.chars().count() > TEXT_CHARS_MAX {
        text = text.chars().take(TEXT_CHARS_MAX - 1).collect();
        // A cut inside a tag or entity would make the message unparsable: drop the last line.
        if let Some(at) = text.rfind('\n') {
            text.truncate(at);
        }
        text.push('…');
    }
    text
}

/// Telegram as Baton's notifier (alerts) and live board (one message per task).
#[derive(Debug, Clone)]
pub struct Telegram {
    client: TelegramClient,
}

impl Telegram {
    pub fn new(client: TelegramClient) -> Self {
        Telegram { client }
    }

    pub fn client(&self) -> &TelegramClient {
        &self.client
    }

    /// Whether a notification of `kind` is a separate alert message (decisions awaited and
    /// failures); progress (`Info`) shows only on the live message.
    pub fn alerts(kind: NotifyKind) -> bool {
        matches!(kind, NotifyKind::NeedsHuman | NotifyKind::Alert)
    }
}

#[async_trait]
impl Notifier for Telegram {
    fn name(&self) -> &str {
        "telegram"
    }

    async fn notify(&self, n: &Notification) -> Result<(), AdapterError> {
        if !Telegram::alerts(n.kind) {
            return Ok(());
        }
        let mark = if n.kind == NotifyKind::Alert { "⚠️" } else { "✋" };
        let html = cut(format!(
            "{mark} <b>{}</b> {}\n{}",
            escape_html(&n.work_item),
            escape_html(&n.title),
            escape_html(&n.text)
        ));
        self.client.send_message(&html, None).await.map(|_| ()).map_err(TelegramError::adapter)
    }
}

#[async_trait]
impl LiveBoard for Telegram {
    fn name(&self) -> &str {
        "telegram"
    }

    async fn show(&self, card: &LiveCard, existing: Option<i64>) -> Result<i64, AdapterError> {
        let html = card_html(card);
        let markup = card_markup(card);
        if let Some(id) = existing {
            match self.client.edit_message_text(id, &html, markup.clone()).await {
                Ok(()) => return Ok(id),
                Err(e) if e.not_modified() => return Ok(id),
                Err(e) if e.edit_refused() => {
                    tracing::info!(
                        message_id = id,
                        "telegram refused the edit ({}); sending a new message",
                        e.description
                    );
                }
                Err(e) => return Err(e.adapter()),
            }
        }
        let markup = (!card.actions.is_empty()).then_some(markup);
        self.client.send_message(&html, markup).await.map_err(TelegramError::adapter)
    }

    async fn answer(&self, press_id: &str, text: &str) -> Result<(), AdapterError> {
        self.client.answer_callback_query(press_id, text).await.map_err(TelegramError::adapter)
    }

    async fn updates(&self, offset: i64, wait_secs: u64) -> Result<Vec<BoardUpdate>, AdapterError> {
        let updates = self.client.get_updates(offset, wait_secs).await.map_err(TelegramError::adapter)?;
        Ok(updates
            .into_iter()
            .filter_map(|u| {
                let update_id = u.get("update_id").and_then(Value::as_i64)?;
                Some(BoardUpdate { update_id, payload: u.to_string() })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_data_round_trips() {
        let card = LiveCard { task_id: 42, heading: "h".into(), lines: vec![], actions: vec![CardAction::Approve] };
        let markup = card_markup(&card);
        let data = markup["inline_keyboard"][0][0]["callback_data"].as_str().unwrap_or_default();
        assert_eq!(parse_callback_data(data), Some((CardAction::Approve, 42)));
        assert_eq!(parse_callback_data("deploy:1"), None);
        assert_eq!(parse_callback_data("stop:x"), None);
    }

    #[test]
    fn html_is_escaped_and_cut() {
        let card = LiveCard { task_id: 1, heading: "<a&b>".into(), lines: vec!["x".repeat(5000)], actions: vec![] };
        let html = card_html(&card);
        assert!(html.starts_with("<b>&lt;a&amp;b&gt;</b>"));
        assert!(html.chars().count() <= TEXT_CHARS_MAX);
    }

    #[test]
    fn debug_hides_the_token() {
        let config = TelegramConfig::new("http://127.0.0.1:1", "123456:SECRETTOKEN", "-100");
        assert!(!format!("{config:?}").contains("SECRETTOKEN"));
    }
}
