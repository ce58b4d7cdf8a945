//! The trust boundary end to end: a key an agent prints never reaches the database, the logs, the
//! run logs, `task show` or the API; the data dir is owner-only; the CLI refuses unbounded and
//! poisonous input and never lets stored text drive the terminal; a live ticket gets no second task.

use crate::support::{ConfigExtra, Env};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The secret the agent is given and prints.
const SECRET: &str = "sk-live-7f3a9c1e5b2d4a6f8e0c";

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// `GET path` on the server at `addr`; returns the body.
pub(crate) fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "GET {path}: {reply}");
    reply
}

// A development agent prints the key it was given on stdout and stderr and fails with it in its
// last words; the task blocks after its retries. The key is then searched for in every file of the
// data dir (database, WAL, run logs, intents), the serve log, `task show` (text and JSON) and every
// read route of the API: it appears nowhere, and the masked form does.
#[test]
fn a_key_printed_by_an_agent_is_masked_everywhere() {
    let agent = "[agents.developer]\nadapter = \"command\"\ncommand = [\"sh\", \"-c\", \"echo \\\"using key \
                 $BATON_E2E_API_KEY\\\"; echo \\\"401 Unauthorized: invalid x-api-key $BATON_E2E_API_KEY\\\" >&2; \
                 exit 3\"]\n";
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
    let id = env.add_task("Leaky agent");
    let server = env.serve(0);
    let tasks = env.drive(Duration::from_secs(120), |tasks| tasks[0]["state"]["hold"]["kind"] == "blocked");
    let failure = tasks[0]["state"]["failure"].as_str().unwrap_or_default().to_string();
    assert!(failure.contains("[REDACTED]"), "the failure quotes the agent, masked: {failure}");

    let addr = crate::support::served_address(&env.root.join("serve-0.log"));
    let mut api = String::new();
    for path in ["/api/tasks", &format!("/api/tasks/{id}"), "/api/status", "/api/usage?by=task", "/health"] {
        api.push_str(&http_get(&addr, path));
    }
    drop(server);

    let show_text = env.run(&["task", "show", &id]);
    let show_json = env.run(&["--json", "task", "show", &id]);
    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("task show".into(), show_text.stdout),
        ("task show --json".into(), show_json.stdout),
        ("the API".into(), api.into_bytes()),
        ("serve log".into(), std::fs::read(env.root.join("serve-0.log")).unwrap()),
    ];
    let mut files = Vec::new();
    files_under(&env.root.join("data"), &mut files);
    let run_logs = files.iter().filter(|f| f.extension().is_some_and(|e| e == "log")).count();
    assert!(run_logs > 0, "no run logs were written: {files:?}");
    for file in files {
        places.push((file.display().to_string(), std::fs::read(&file).unwrap_or_default()));
    }
    let mut masked_seen = 0;
    for (place, bytes) in &places {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the key leaked into {place}: {}",
            String::from_utf8_lossy(bytes)
        );
        masked_seen += usize::from(bytes.windows(10).any(|w| w == b"[REDACTED]"));
    }
    assert!(masked_seen >= 3, "the masked key should show where the agent's words are kept");
}

// The data dir is owner-only, and so are the database and the run logs; a looser data dir left
// by an older Baton is tightened with a warning.
#[test]
fn the_data_dir_and_its_files_are_owner_only() {
    let env = Env::new("", "");
    let data = env.root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env.run(&["task", "add", "--repo", "demo", "--title", "Owner only"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("was readable by other users"), "no warning");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("baton.db")), 0o600);
}

// `--body-file /dev/zero` is refused after the limit instead of reading until memory runs out; a
// title with terminal escapes is refused; a body with them is stored but printed escaped.
#[test]
fn the_cli_bounds_and_escapes_untrusted_text() {
    let env = Env::new("", "");
    let started = Instant::now();
    let out = env.run(&["task", "add", "--repo", "demo", "--title", "Zero", "--body-file", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("limits.body_bytes_max") && stderr.contains("100000 bytes"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));

    let out = env.run(&["task", "add", "--repo", "demo", "--title", "clear\u{1b}[2J\u{7}"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("U+001B"));

    let body = "see \u{1b}]0;pwned\u{1b}\\ and \u{202e}txt.exe";
    let out = env.run(&["task", "add", "--repo", "demo", "--title", "Escapes", "--body", body]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let shown = env.run(&["task", "show", &id]);
    let json = env.run(&["--json", "task", "show", &id]);
    for output in [&shown.stdout, &json.stdout] {
        assert!(!output.iter().any(|b| *b == 0x1b || *b == 0x07), "a raw control byte reached the terminal");
        assert!(!String::from_utf8_lossy(output).contains('\u{202e}'), "a raw bidi override reached the terminal");
    }
    let stored: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(stored["task"]["body"], body, "the JSON still decodes to the exact stored text");
}

// A second `task add` for a ticket that already has a live task creates nothing: it prints that
// task's id and exits 4.
#[test]
fn a_live_ticket_answers_with_its_task() {
    let env = Env::new("", "");
    let add = || env.run(&["task", "add", "--repo", "demo", "--title", "From Plane", "--external-ref", "plane:ORCH-7"]);
    let first = add();
    assert!(first.status.success());
    let again = add();
    assert_eq!(again.status.code(), Some(4), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(again.stdout, first.stdout);
    assert_eq!(env.tasks().len(), 1);
    let long_ref = "r".repeat(201);
    let out = env.run(&["task", "add", "--repo", "demo", "--title", "x", "--external-ref", &long_ref]);
    assert_eq!(out.status.code(), Some(2));
}
