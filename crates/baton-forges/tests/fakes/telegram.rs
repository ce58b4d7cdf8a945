//! A fake Telegram Bot API: `POST /bot<token>/<method>` with a JSON body, checked per method
//! (`chat_id`, `message_id`, `text`, `parse_mode`, `reply_markup`, `callback_query_id`); keeps
//! the chat's messages, refuses edits of deleted messages as Telegram does, queues updates for
//! `getUpdates`, and answers injected 429s with `parameters.retry_after`.

use super::{Shared, req};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// One message in the fake chat.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub markup: Value,
    /// How many times it was edited.
    pub edits: usize,
}

#[derive(Debug, Default)]
pub struct State {
    pub token: String,
    pub chat_id: i64,
    pub violations: Vec<String>,
    /// Every call, in order: (method, body).
    pub calls: Vec<(String, Value)>,
    pub messages: BTreeMap<i64, Message>,
    next_id: i64,
    /// Answered presses: (callback_query_id, text).
    pub answers: Vec<(String, String)>,
    /// Updates `getUpdates` hands out (and keeps until an offset past them).
    pub updates: VecDeque<Value>,
    /// The next calls of these methods are answered 429 with this `retry_after`.
    pub rate_limits: VecDeque<(String, u64)>,
}

impl State {
    pub fn count(&self, method: &str) -> usize {
        self.calls.iter().filter(|(m, _)| m == method).count()
    }

    /// Deletes a message (as a user could): edits of it are then refused.
    pub fn delete(&mut self, id: i64) {
        self.messages.remove(&id);
    }
}

pub type FakeTelegram = Shared<State>;

fn error(code: u16, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({ "ok": false, "error_code": code, "description": description });
    if let Some(secs) = retry_after {
        body["parameters"] = json!({ "retry_after": secs });
    }
    (StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), axum::Json(body)).into_response()
}

fn ok(result: Value) -> Response {
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

/// Starts the fake for bot `token` and chat `chat_id`; returns its state and base URL.
pub async fn start(token: &str, chat_id: i64) -> (FakeTelegram, String) {
    let state = Arc::new(Mutex::new(State { token: token.into(), chat_id, next_id: 100, ..State::default() }));
    let s = state.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let s = s.clone();
        async move { handle(&s, req(method, &uri, headers, body)) }
    });
    let base = super::serve(app).await;
    (state, base)
}

fn handle(state: &FakeTelegram, r: super::Req) -> Response {
    let mut st = state.lock().unwrap();
    let prefix = format!("/bot{}/", st.token);
    let Some(method) = r.path.strip_prefix(&prefix).map(str::to_string) else {
        let shown = r.path.replace(&st.token, "<token>");
        st.violations.push(format!("path `{shown}` is not /bot<token>/<method>"));
        return error(404, "Not Found", None);
    };
    if r.method != Method::POST {
        st.violations.push(format!("{method}: {} instead of POST", r.method));
    }
    let ct = r.header("content-type").unwrap_or("").to_string();
    if !ct.starts_with("application/json") {
        st.violations.push(format!("{method}: content-type `{ct}`"));
        return error(400, "Bad Request: wrong content type", None);
    }
    let Ok(body @ Value::Object(_)) = serde_json::from_slice::<Value>(&r.body) else {
        st.violations.push(format!("{method}: body is not a JSON object"));
        return error(400, "Bad Request: body", None);
    };
    st.calls.push((method.clone(), body.clone()));
    if let Some(pos) = st.rate_limits.iter().position(|(m, _)| *m == method) {
        let (_, secs) = st.rate_limits.remove(pos).unwrap();
        return error(429, &format!("Too Many Requests: retry after {secs}"), Some(secs));
    }
    let chat_ok = |st: &mut State, body: &Value| -> bool {
        if body.get("chat_id").and_then(Value::as_i64) != Some(st.chat_id) {
            st.violations.push(format!("{method}: chat_id {:?}, expected {}", body.get("chat_id"), st.chat_id));
            return false;
        }
        true
    };
    let text_ok = |st: &mut State, body: &Value| -> Option<String> {
        let text = body.get("text").and_then(Value::as_str).unwrap_or("").to_string();
        if text.is_empty() || text.chars().count() > 4096 {
            st.violations.push(format!("{method}: text of {} characters", text.chars().count()));
            return None;
        }
        if body.get("parse_mode").and_then(Value::as_str) != Some("HTML") {
            st.violations.push(format!("{method}: parse_mode {:?}", body.get("parse_mode")));
        }
        Some(text)
    };
    let markup_ok = |st: &mut State, markup: &Value| -> bool {
        let Some(rows) = markup.get("inline_keyboard").and_then(Value::as_array) else {
            st.violations.push(format!("{method}: reply_markup without inline_keyboard: {markup}"));
            return false;
        };
        for button in rows.iter().flat_map(|row| row.as_array().cloned().unwrap_or_default()) {
            let data = button.get("callback_data").and_then(Value::as_str).unwrap_or("");
            if button.get("text").and_then(Value::as_str).is_none() || data.is_empty() || data.len() > 64 {
                st.violations.push(format!("{method}: bad button {button}"));
                return false;
            }
        }
        true
    };
    match method.as_str() {
        "sendMessage" => {
            if !chat_ok(&mut st, &body) {
                return error(400, "Bad Request: chat not found", None);
            }
            let Some(text) = text_ok(&mut st, &body) else {
                return error(400, "Bad Request: message text is empty", None);
            };
            let markup = body.get("reply_markup").cloned().unwrap_or(json!({ "inline_keyboard": [] }));
            if !markup_ok(&mut st, &markup) {
                return error(400, "Bad Request: can't parse reply keyboard markup JSON object", None);
            }
            st.next_id += 1;
            let id = st.next_id;
            st.messages.insert(id, Message { text: text.clone(), markup, edits: 0 });
            ok(json!({ "message_id": id, "chat": { "id": st.chat_id }, "date": 1_767_225_600, "text": text }))
        }
        "editMessageText" => {
            if !chat_ok(&mut st, &body) {
                return error(400, "Bad Request: chat not found", None);
            }
            let Some(id) = body.get("message_id").and_then(Value::as_i64) else {
                st.violations.push("editMessageText: no message_id".into());
                return error(400, "Bad Request: message identifier is not specified", None);
            };
            let Some(text) = text_ok(&mut st, &body) else {
                return error(400, "Bad Request: message text is empty", None);
            };
            let markup = body.get("reply_markup").cloned().unwrap_or(json!({ "inline_keyboard": [] }));
            if !markup_ok(&mut st, &markup) {
                return error(400, "Bad Request: can't parse reply keyboard markup JSON object", None);
            }
            let Some(message) = st.messages.get_mut(&id) else {
                return error(400, "Bad Request: message to edit not found", None);
            };
            if message.text == text && message.markup == markup {
                return error(
                    400,
                    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                    None,
                );
            }
            message.text = text.clone();
            message.markup = markup;
            message.edits += 1;
            ok(json!({ "message_id": id, "chat": { "id": st.chat_id }, "date": 1_767_225_600, "text": text }))
        }
        "answerCallbackQuery" => {
            let Some(id) = body.get("callback_query_id").and_then(Value::as_str).map(str::to_string) else {
                st.violations.push("answerCallbackQuery: no callback_query_id".into());
                return error(
                    400,
                    "Bad Request: query is too old and response timeout expired or query ID is invalid",
                    None,
                );
            };
            let text = body.get("text").and_then(Value::as_str).unwrap_or("").to_string();
            if text.chars().count() > 200 {
                st.violations.push(format!("answerCallbackQuery: text of {} characters", text.chars().count()));
            }
            st.answers.push((id, text));
            ok(json!(true))
        }
        "getUpdates" => {
            let offset = body.get("offset").and_then(Value::as_i64).unwrap_or(0);
            while st
                .updates
                .front()
                .and_then(|u| u.get("update_id"))
                .and_then(Value::as_i64)
                .is_some_and(|id| id < offset)
            {
                st.updates.pop_front();
            }
            ok(Value::Array(st.updates.iter().cloned().collect()))
        }
        "getMe" => ok(json!({ "id": 1, "is_bot": true, "first_name": "Baton", "username": "baton_bot" })),
        other => {
            st.violations.push(format!("unexpected method {other}"));
            error(404, "Not Found: method not found", None)
        }
    }
}

/// A button press as Telegram delivers it (`callback_query` on message `message_id`).
pub fn press(update_id: i64, user_id: i64, chat_id: i64, message_id: i64, data: &str) -> Value {
    json!({
        "update_id": update_id,
        "callback_query": {
            "id": format!("cq-{update_id}"),
            "from": { "id": user_id, "is_bot": false, "first_name": "User" },
            "message": { "message_id": message_id, "chat": { "id": chat_id, "type": "private" }, "date": 1_767_225_600 },
            "chat_instance": "1",
            "data": data,
        }
    })
}
