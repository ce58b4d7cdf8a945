//! Hand-offs end to end: after `baton demo` every task has its Markdown and self-contained HTML
//! hand-off with gates, costs, decisions and the next prompt; a blocked task's hand-off lists its
//! failure; a secret planted in the run reaches neither the files nor the HTTP answers.

use crate::support::served_address;
use crate::support::{ConfigExtra, Env, baton_exe};
use crate::trust::http_get;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The secret the failing agent is given, prints and writes into its artifact.
const SECRET: &str = "sk-live-4c1d9e7a2b8f6053aa71";

/// Checks by structure that an HTML page makes no request of its own: no script, no source or
/// link to another address, no CSS import or url().
fn assert_self_contained(html: &str, what: &str) {
    let lower = html.to_ascii_lowercase();
    for banned in ["<script", "src=", "href=\"http", "href='http", "href=http", "@import", "url(", "<link", "<iframe"] {
        assert!(!lower.contains(banned), "{what} contains `{banned}`:\n{html}");
    }
    assert!(lower.starts_with("<!doctype html>") && lower.trim_end().ends_with("</html>"), "{what} is not one page");
    // Every tag opened by the page is closed in order (the page is well-formed).
    let mut open: Vec<String> = Vec::new();
    let mut rest = &lower[..];
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').map(|e| start + e).unwrap_or_else(|| panic!("{what}: unclosed tag"));
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if tag.starts_with('!') || ["meta", "br", "hr"].contains(&name.as_str()) {
            continue;
        }
        if tag.starts_with('/') {
            assert_eq!(open.pop().as_deref(), Some(name.as_str()), "{what}: </{name}> closes the wrong tag");
        } else {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "{what}: tags left open: {open:?}");
}

fn baton(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(baton_exe()).arg("--config").arg(config).env_remove("BATON_CONFIG").args(args).output().unwrap()
}

// After the demo, each of the three tasks has both hand-off files; the HTML is self-contained and
// holds the gates, the cost table, the human decisions and the next prompt; the review rollback of
// the divide ticket is told as overcome; `baton handoff` prints the stored document and an unknown
// id exits 3.
#[test]
fn each_demo_task_gets_a_self_contained_handoff() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = Command::new(baton_exe())
        .args(["demo", "--yes", "--dir"])
        .arg(&dir)
        .env_remove("BATON_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "demo failed: {}", String::from_utf8_lossy(&out.stdout));
    for id in ["DEMO-001", "DEMO-002", "DEMO-003"] {
        let md = std::fs::read_to_string(dir.join(format!("data/handoffs/{id}.md"))).unwrap();
        let html = std::fs::read_to_string(dir.join(format!("data/handoffs/{id}.html"))).unwrap();
        assert_self_contained(&html, id);
        for text in [&md, &html] {
            for needed in [
                "Gates and their proof",
                "mergeable",
                "deploy_status",
                "Cost and tokens",
                "total",
                "Human decisions",
                "confirmed the deploy",
                "Open limitations",
                "Next prompt",
                "Continue from Baton task",
                "done: merged and deployed",
            ] {
                assert!(text.contains(needed), "{id}'s hand-off lacks `{needed}`:\n{text}");
            }
        }
        assert!(md.contains(&format!("{id}: ")), "{id}: the merged commit is listed:\n{md}");
        assert!(md.contains("```text\nContinue from Baton task"), "{id}: the next prompt is a fenced block:\n{md}");
    }
    let divide = std::fs::read_to_string(dir.join("data/handoffs/DEMO-002.md")).unwrap();
    assert!(divide.contains("Met and overcome on the way") && divide.contains("Rolled back"), "{divide}");

    let config = dir.join("baton.toml");
    let printed = baton(&config, &["handoff", "DEMO-002"]);
    assert!(printed.status.success());
    assert_eq!(String::from_utf8_lossy(&printed.stdout), divide, "baton handoff prints the stored document");
    let page = baton(&config, &["handoff", "DEMO-001", "--html"]);
    assert!(String::from_utf8_lossy(&page.stdout).starts_with("<!DOCTYPE html>"));
    let unknown = baton(&config, &["handoff", "DEMO-999"]);
    assert_eq!(unknown.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no task `DEMO-999`"));
}

// A development agent writes the key it was given into an artifact's "Known limitations" and its
// log, then fails until the task blocks; the ticket body quotes the key too. The blocked task's
// hand-off lists the block and the artifact's finding, and the key is in neither file nor in any
// of the three HTTP answers (page, Markdown, JSON), where the masked form shows instead.
#[test]
fn a_blocked_task_hands_off_its_failure_without_the_secret() {
    let agent = r##"[agents.developer]
adapter = "command"
command = ["sh", "-c", "mkdir -p docs/baton/$BATON_WORK_ITEM && printf '# Notes\n\n## Known limitations\n\n- the key %s is hard-coded\n' \"$BATON_E2E_API_KEY\" > docs/baton/$BATON_WORK_ITEM/03-notes.md; echo using key $BATON_E2E_API_KEY; exit 3"]
"##;
    let mut env = Env::with_extra(
        "",
        &ConfigExtra {
            server: "agent_env = [\"BATON_E2E_API_KEY\"]",
            limits: "retry_max = 2",
            sections: agent,
            ..ConfigExtra::default()
        },
    );
    env.serve_env.push(("BATON_E2E_API_KEY".into(), SECRET.into()));
    let body = format!("Use the token {SECRET} for the API.");
    let out = env.run(&["task", "add", "--repo", "demo", "--title", "Leaky notes", "--body", &body]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let server = env.serve(0);
    env.drive(Duration::from_secs(120), |tasks| tasks[0]["state"]["hold"]["kind"] == "blocked");

    let files = [env.root.join(format!("data/handoffs/{id}.md")), env.root.join(format!("data/handoffs/{id}.html"))];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !files.iter().all(|f| f.exists()) {
        assert!(std::time::Instant::now() < deadline, "the blocked task's hand-off was never written");
        std::thread::sleep(Duration::from_millis(100));
    }
    let addr = served_address(&env.root.join("serve-0.log"));
    let answers = [
        ("the page", http_get(&addr, &format!("/tasks/{id}/handoff"))),
        ("the Markdown", http_get(&addr, &format!("/tasks/{id}/handoff?format=md"))),
        ("the JSON", http_get(&addr, &format!("/api/tasks/{id}/handoff"))),
    ];
    drop(server);

    let md = std::fs::read_to_string(&files[0]).unwrap();
    let html = std::fs::read_to_string(&files[1]).unwrap();
    assert_self_contained(&html, "the blocked hand-off");
    for (what, text) in [("the Markdown file", &md), ("the HTML file", &html)] {
        assert!(text.contains("Blocked in development"), "{what} names the block:\n{text}");
        assert!(
            text.contains("03-notes.md") && text.contains("Known limitations"),
            "{what} lists the finding:\n{text}"
        );
        assert!(text.contains("[REDACTED]"), "{what} shows the masked key:\n{text}");
    }
    assert!(md.contains("baton task retry"), "the next prompt says how to carry on:\n{md}");
    for (what, text) in answers
        .iter()
        .map(|(w, t)| (*w, t.as_str()))
        .chain([("the Markdown file", &md[..]), ("the HTML file", &html[..])])
    {
        assert!(!text.contains(SECRET), "the key leaked into {what}:\n{text}");
    }
    assert!(
        answers[0].1.contains("Content-Security-Policy: default-src 'none'")
            || answers[0].1.to_ascii_lowercase().contains("content-security-policy: default-src 'none'")
    );
    assert!(answers[1].1.contains("## Next prompt"));
    assert!(answers[2].1.contains("\"markdown\"") && answers[2].1.contains("\"stored\":true"));
    let printed = env.run(&["handoff", &id]);
    assert!(String::from_utf8_lossy(&printed.stdout).contains("Blocked in development"));
}
