//! The Telegram client, notifier and live board, and the webhook notifier, against
//! request-checking fakes: the live message is edited in place, a refused edit falls back to a
//! new message, alerts are separate messages, 429s wait `retry_after`, presses are answered,
//! updates are polled, and webhook notifications carry a valid HMAC signature.
// Helpers outside #[test] fns share the tests' rule: a failed call or poisoned lock panics the test.
#![allow(clippy::unwrap_used)]

mod fakes;

use async_trait::async_trait;
use baton_adapters::notifier::{CardAction, LiveBoard, LiveCard, Notification, Notifier};
use baton_domain::NotifyKind;
use baton_forges::telegram::parse_callback_data;
use baton_forges::{Clock, Telegram, TelegramClient, TelegramConfig, WebhookNotifier};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "123456:AAHsecretTOKENvalue";
const CHAT: i64 = -1001234;

#[derive(Default)]
struct TestClock {
    sleeps: Mutex<Vec<Duration>>,
}

#[async_trait]
impl Clock for TestClock {
    fn unix_now(&self) -> u64 {
        1_800_000_000
    }
    async fn sleep(&self, d: Duration) {
        self.sleeps.lock().unwrap().push(d);
    }
}

async fn board() -> (fakes::telegram::FakeTelegram, Telegram, Arc<TestClock>) {
    let (fake, base) = fakes::telegram::start(TOKEN, CHAT).await;
    let clock = Arc::new(TestClock::default());
    let mut config = TelegramConfig::new(base, TOKEN, CHAT.to_string());
    config.clock = clock.clone();
    (fake, Telegram::new(TelegramClient::new(config).unwrap()), clock)
}

fn no_violations(fake: &fakes::telegram::FakeTelegram) {
    let v = fake.lock().unwrap().violations.clone();
    assert!(v.is_empty(), "request shape violations: {v:#?}");
}

fn card(stage: &str, actions: Vec<CardAction>) -> LiveCard {
    LiveCard {
        task_id: 7,
        heading: "SHOP-1 Add a <cart>".into(),
        lines: vec![format!("stage: {stage}"), "tokens 10 in / 5 out".into()],
        actions,
    }
}

#[tokio::test]
async fn the_live_message_is_edited_in_place_across_stages() {
    let (fake, board, _) = board().await;
    let id = board.show(&card("analysis", vec![]), None).await.unwrap();
    let id2 = board
        .show(&card("analysis (awaiting approval)", vec![CardAction::Approve, CardAction::Stop]), Some(id))
        .await
        .unwrap();
    let id3 = board.show(&card("development", vec![]), Some(id)).await.unwrap();
    assert_eq!((id2, id3), (id, id));
    let st = fake.lock().unwrap();
    assert_eq!(st.count("sendMessage"), 1);
    assert_eq!(st.count("editMessageText"), 2);
    assert_eq!(st.messages.len(), 1);
    let message = &st.messages[&id];
    assert_eq!(message.edits, 2);
    assert!(message.text.contains("stage: development"), "{}", message.text);
    assert!(message.text.starts_with("<b>SHOP-1 Add a &lt;cart&gt;</b>"), "{}", message.text);
    // The buttons shown while approval was awaited are gone once it is not.
    assert_eq!(message.markup, json!({ "inline_keyboard": [] }));
    let (_, awaiting) = &st.calls[1];
    assert_eq!(awaiting["message_id"], json!(id));
    assert_eq!(awaiting["chat_id"], json!(CHAT));
    let buttons = awaiting["reply_markup"]["inline_keyboard"][0].as_array().unwrap();
    let data: Vec<&str> = buttons.iter().map(|b| b["callback_data"].as_str().unwrap()).collect();
    assert_eq!(data, ["approve:7", "stop:7"]);
    assert_eq!(parse_callback_data(data[0]), Some((CardAction::Approve, 7)));
    drop(st);
    no_violations(&fake);
}

#[tokio::test]
async fn an_edit_telegram_refuses_falls_back_to_a_new_message() {
    let (fake, board, _) = board().await;
    let id = board.show(&card("analysis", vec![]), None).await.unwrap();
    fake.lock().unwrap().delete(id);
    let new_id = board.show(&card("development", vec![]), Some(id)).await.unwrap();
    assert_ne!(new_id, id);
    let st = fake.lock().unwrap();
    assert_eq!(st.count("sendMessage"), 2);
    assert!(st.messages[&new_id].text.contains("stage: development"));
    drop(st);
    no_violations(&fake);
}

#[tokio::test]
async fn showing_the_same_card_again_is_not_an_error() {
    let (fake, board, _) = board().await;
    let id = board.show(&card("analysis", vec![]), None).await.unwrap();
    assert_eq!(board.show(&card("analysis", vec![]), Some(id)).await.unwrap(), id);
    let st = fake.lock().unwrap();
    assert_eq!((st.count("sendMessage"), st.count("editMessageText")), (1, 1));
    assert_eq!(st.messages[&id].edits, 0);
}

#[tokio::test]
async fn alerts_are_separate_messages_and_progress_is_not_sent() {
    let (fake, board, _) = board().await;
    let note = |kind, text: &str| Notification {
        work_item: "SHOP-1".into(),
        title: "Add a cart".into(),
        kind,
        text: text.into(),
    };
    board.notify(&note(NotifyKind::Info, "analysis done")).await.unwrap();
    board.notify(&note(NotifyKind::NeedsHuman, "analysis awaits approval")).await.unwrap();
    board.notify(&note(NotifyKind::Alert, "blocked: deploy failed")).await.unwrap();
    let st = fake.lock().unwrap();
    assert_eq!(st.count("sendMessage"), 2);
    let texts: Vec<&str> = st.messages.values().map(|m| m.text.as_str()).collect();
    assert!(texts[0].contains("analysis awaits approval") && texts[0].contains("<b>SHOP-1</b>"), "{texts:?}");
    assert!(texts[1].contains("blocked: deploy failed"), "{texts:?}");
    drop(st);
    no_violations(&fake);
}

#[tokio::test]
async fn a_rate_limit_waits_exactly_retry_after_and_tries_again() {
    let (fake, board, clock) = board().await;
    fake.lock().unwrap().rate_limits.push_back(("sendMessage".into(), 7));
    let id = board.show(&card("analysis", vec![]), None).await.unwrap();
    assert_eq!(*clock.sleeps.lock().unwrap(), vec![Duration::from_secs(7)]);
    let st = fake.lock().unwrap();
    assert_eq!(st.count("sendMessage"), 2);
    assert_eq!(st.messages.keys().copied().collect::<Vec<_>>(), vec![id]);
}

#[tokio::test]
async fn a_long_rate_limit_fails_the_call_as_transient_without_sleeping() {
    let (fake, board, clock) = board().await;
    fake.lock().unwrap().rate_limits.push_back(("sendMessage".into(), 3600));
    let error = board.show(&card("analysis", vec![]), None).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("429"), "{error}");
    assert!(!error.to_string().contains("AAHsecret"), "the token leaked: {error}");
    assert!(clock.sleeps.lock().unwrap().is_empty());
}

#[tokio::test]
async fn presses_are_answered_and_updates_polled_from_an_offset() {
    let (fake, board, _) = board().await;
    {
        let mut st = fake.lock().unwrap();
        st.updates.push_back(fakes::telegram::press(500, 42, CHAT, 101, "approve:7"));
        st.updates.push_back(fakes::telegram::press(501, 43, CHAT, 101, "stop:7"));
    }
    let updates = board.updates(0, 0).await.unwrap();
    assert_eq!(updates.iter().map(|u| u.update_id).collect::<Vec<_>>(), vec![500, 501]);
    let first: Value = serde_json::from_str(&updates[0].payload).unwrap();
    assert_eq!(first["callback_query"]["data"], "approve:7");
    assert_eq!(board.updates(501, 0).await.unwrap().len(), 1);
    board.answer("cq-500", "Approved").await.unwrap();
    let st = fake.lock().unwrap();
    assert_eq!(st.answers, vec![("cq-500".to_string(), "Approved".to_string())]);
    let (_, poll) = &st.calls[0];
    assert_eq!(poll["allowed_updates"], json!(["callback_query"]));
    drop(st);
    no_violations(&fake);
}

#[tokio::test]
async fn a_wrong_token_is_an_error_that_does_not_show_it() {
    let (fake, base) = fakes::telegram::start(TOKEN, CHAT).await;
    let client = TelegramClient::new(TelegramConfig::new(base, "999:WRONGtokenVALUE", CHAT.to_string())).unwrap();
    let error = client.get_me().await.unwrap_err();
    assert_eq!(error.code, Some(404));
    assert!(!error.to_string().contains("WRONGtoken"), "{error}");
    assert_eq!(fake.lock().unwrap().violations.len(), 1);
}

// --------------------------------------------------------------------------- webhook notifier

#[tokio::test]
async fn the_webhook_notifier_posts_signed_json() {
    type Seen = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let status = Arc::new(Mutex::new(axum::http::StatusCode::OK));
    let st = status.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let s = s.clone();
            let st = st.clone();
            async move {
                let sig = headers.get("x-baton-signature").and_then(|v| v.to_str().ok()).map(str::to_string);
                s.lock().unwrap().push((sig, body.to_vec()));
                *st.lock().unwrap()
            }
        }),
    );
    let base = fakes::serve(app).await;
    let notifier = WebhookNotifier::new("ops", format!("{base}/hook"), "hook-secret").unwrap();
    let n = Notification {
        work_item: "SHOP-2".into(),
        title: "Fix".into(),
        kind: NotifyKind::Alert,
        text: "blocked".into(),
    };
    notifier.notify(&n).await.unwrap();
    let (sig, body) = seen.lock().unwrap()[0].clone();
    let expected = baton_forges::notify_webhook::signature(b"hook-secret", &body);
    assert_eq!(sig.as_deref(), Some(expected.as_str()));
    assert!(expected.starts_with("sha256=") && expected.len() == 7 + 64);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json, json!({ "work_item": "SHOP-2", "title": "Fix", "kind": "alert", "text": "blocked" }));
    // A failing receiver is a transient error, so the outbox retries the notification.
    *status.lock().unwrap() = axum::http::StatusCode::BAD_GATEWAY;
    assert!(notifier.notify(&n).await.unwrap_err().is_transient());
}
