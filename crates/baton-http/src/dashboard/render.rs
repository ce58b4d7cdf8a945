//! Rendering for the dashboard: the embedded templates (minijinja, HTML auto-escaped), the
//! embedded stylesheet and script, Markdown artifacts to HTML with raw HTML escaped, and the
//! small formatters the templates use.

use crate::error::ApiError;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use pulldown_cmark::{Event, Options, Parser};
use serde::Serialize;
use std::sync::OnceLock;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("board.html", include_str!("templates/board.html")),
    ("task.html", include_str!("templates/task.html")),
    ("usage.html", include_str!("templates/usage.html")),
    ("system.html", include_str!("templates/system.html")),
    ("login.html", include_str!("templates/login.html")),
];
const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The templates are part of the binary and covered by tests: a broken one is a bug.
            if let Err(error) = env.add_template(name, source) {
                tracing::error!("dashboard template {name} does not parse: {error}");
            }
        }
        env.add_filter("when", |ms: i64| format_time(ms));
        env.add_filter("usd", |cost: f64| format!("${cost:.4}"));
        env.add_filter("count", |n: u64| group_digits(n));
        env.add_filter("label", |text: String| text.replace('_', " "));
        env.add_filter("q", |text: String| super::encode_component(&text));
        env
    })
}

/// Renders one template with `context` into an HTML response.
pub fn page<C: Serialize>(name: &str, context: C) -> Response {
    match environment()
        .get_template(name)
        .and_then(|template| template.render(minijinja::Value::from(minijinja::value::Serde(&context))))
    {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!("the dashboard page {name} could not be rendered: {error:#}");
            ApiError::Internal.into_response()
        }
    }
}

pub(crate) async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], CSS).into_response()
}

pub(crate) async fn js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], JS)
        .into_response()
}

/// Markdown to HTML. Raw HTML blocks and inline HTML are turned into text, so whatever an agent
/// wrote shows as written and nothing in it runs; links keep only http(s), relative and anchor
/// targets.
pub fn markdown(text: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(text, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(pulldown_cmark::Tag::Link { link_type, dest_url, title, id }) => {
            let dest_url = if safe_url(&dest_url) { dest_url } else { "#".into() };
            Event::Start(pulldown_cmark::Tag::Link { link_type, dest_url, title, id })
        }
        Event::Start(pulldown_cmark::Tag::Image { link_type, dest_url, title, id }) => {
            let dest_url = if safe_url(&dest_url) { dest_url } else { "#".into() };
            Event::Start(pulldown_cmark::Tag::Image { link_type, dest_url, title, id })
        }
        other => other,
    });
    let mut html = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    match lower.find(':') {
        Some(colon) if !lower[..colon].contains('/') => lower.starts_with("http:") || lower.starts_with("https:"),
        _ => true,
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A duration in milliseconds as `1h 2m`, `3m 4s` or `5.6s`.
pub fn format_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {}s", ms / 60_000, ms % 60_000 / 1000)
    } else {
        format!("{}h {}m", ms / 3_600_000, ms % 3_600_000 / 60_000)
    }
}

/// `1234567` as `1,234,567`.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Raw HTML in an artifact comes out as text; Markdown still renders.
    #[test]
    fn markdown_escapes_raw_html() {
        let html = markdown("# Title\n\n<script>alert(1)</script>\n\nsome <b>bold</b> and **strong**\n");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"), "{html}");
        assert!(html.contains("<strong>strong</strong>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }

    // Script URLs in links are replaced; ordinary ones are kept.
    #[test]
    fn markdown_drops_script_links() {
        let html = markdown("[x](javascript:alert(1)) [y](https://example.com/a) [z](docs/a.md)");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("href=\"https://example.com/a\""), "{html}");
        assert!(html.contains("href=\"docs/a.md\""), "{html}");
    }

    // Times and numbers are formatted for people.
    #[test]
    fn formatters() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_duration(90_500), "1m 30s");
        assert_eq!(format_duration(1500), "1.5s");
        assert_eq!(group_digits(1_234_567), "1,234,567");
        assert_eq!(group_digits(12), "12");
    }

    // Every embedded template parses.
    #[test]
    fn templates_parse() {
        for (name, _) in TEMPLATES {
            assert!(environment().get_template(name).is_ok(), "{name}");
        }
    }
}
