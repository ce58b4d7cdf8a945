//! `baton demo` serves the dashboard: its URL is the first line printed, the board answers while
//! the demo runs, and with `--serve` it stays up after the demo with every ticket done, until a
//! signal ends it.

use crate::support::baton_exe;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `GET path` on `addr` (host:port) with a plain HTTP/1.1 request; the status line and body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.lines().next().unwrap_or_default().to_string();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

// The first line names the dashboard's URL; the board answers during the demo; after it, with
// --serve, the board shows the three tickets done, and SIGTERM ends the process cleanly.
#[test]
fn demo_serves_the_dashboard_and_serve_keeps_it_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(baton_exe())
        .args(["demo", "--yes", "--serve", "--dir"])
        .arg(tmp.path().join("demo"))
        .env_remove("BATON_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| lines.recv_timeout(Duration::from_secs(300)).unwrap_or_else(|_| panic!("no line: {what}"));
    let first = next("the dashboard URL");
    let url = first.strip_prefix("dashboard: http://").unwrap_or_else(|| panic!("first line: {first}"));
    let addr = url.split('/').next().unwrap().to_string();
    let (status, body) = http_get(&addr, "/");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("Board"), "the board while the demo runs");

    let mut seen = Vec::new();
    loop {
        let line = next("the --serve line");
        if line.contains("the dashboard stays up") {
            break;
        }
        seen.push(line);
    }
    assert!(seen.iter().any(|l| l.contains("dashboard login token")), "{seen:?}");
    let (status, body) = http_get(&addr, "/");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("done <span class=\"count\">3</span>"), "three tickets done on the board: {body}");
    let (status, task) = http_get(&addr, "/tasks/DEMO-001");
    assert!(status.contains("200") && task.contains("Add a multiply function"), "{status}");
    assert!(task.contains("href=\"/tasks/DEMO-001/handoff\""), "the task page links its hand-off: {task}");
    let (status, handoff) = http_get(&addr, "/tasks/DEMO-001/handoff");
    assert!(status.contains("200") && handoff.contains("Next prompt"), "{status}: {handoff}");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "the demo ends cleanly on SIGTERM: {exit:?}");
}
