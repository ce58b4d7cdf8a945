//! Fuzz harness: webhook payloads (GitHub, Gitea, Plane) through `baton_adapters::webhook`.
//!
//! Input: the event name (the `X-GitHub-Event` / `X-Gitea-Event-Type` / `X-Plane-Event` header)
//! up to the first newline, then the body. The signature is checked before a body is stored, so
//! these bodies are what a configured sender (or someone holding its secret) can make Baton parse.

use baton_adapters::webhook::{Source, WebhookEvent, parse};

pub fn github(data: &[u8]) {
    run(Source::Github, data);
}

pub fn gitea(data: &[u8]) {
    run(Source::Gitea, data);
}

pub fn plane(data: &[u8]) {
    run(Source::Plane, data);
}

/// Parses the input; an event must summarise to one printable line and serialise to JSON, an
/// error must name its event; a panic is a bug.
fn run(source: Source, data: &[u8]) {
    let (event, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let event = String::from_utf8_lossy(event);
    match parse(source, &event, body) {
        Ok(parsed) => {
            let summary = parsed.summary();
            assert!(!summary.chars().any(char::is_control), "summary with a control character: {summary:?}");
            assert!(summary.chars().count() <= 400, "summary too long: {}", summary.len());
            serde_json::to_string(&parsed).expect("a parsed event serialises");
            if let WebhookEvent::Ignored { event: name } = &parsed {
                assert!(name.chars().count() <= 200);
            }
        }
        Err(error) => {
            assert!(error.message.chars().count() <= 301, "unbounded error message");
            assert!(error.event.chars().count() <= 64);
        }
    }
}
