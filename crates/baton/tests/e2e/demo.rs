//! The README's main-job command: `baton demo --yes` on the embedded defaults.

use crate::support::{assert_each_main_commit_passes_tests, baton_exe, main_commits};
use std::process::Command;

// The demo exits 0 with every ticket done; main holds exactly the three squashed task commits on
// top of the initial one; every commit on main passes the project's tests; the divide ticket was
// rolled back once by review, and the power ticket's questions were answered.
#[test]
fn demo_reaches_done_and_every_main_commit_passes_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = Command::new(baton_exe())
        .args(["demo", "--yes", "--dir"])
        .arg(&dir)
        .env_remove("BATON_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("auto-approve because --yes was given"), "{stdout}");
    assert!(stdout.contains("auto-confirm-deploy because --yes was given"), "{stdout}");
    // It ends by saying where each hand-off is and what it learned (review's rollback of divide).
    for n in 1..=3 {
        let md = dir.join("data").join("handoffs").join(format!("DEMO-00{n}.md"));
        assert!(stdout.contains(&md.display().to_string()), "DEMO-00{n}'s hand-off is named: {stdout}");
        assert!(md.exists() && md.with_extension("html").exists(), "both documents of DEMO-00{n} exist");
    }
    let learned = stdout.lines().find(|l| l.starts_with("learned: ")).unwrap_or_default();
    assert!(
        learned.contains("[demo/development]") && learned.contains("review") && learned.contains("DEMO-002"),
        "the demo names the lesson of DEMO-002's review rollback: {stdout}"
    );

    let project = dir.join("project");
    let commits = main_commits(&project);
    let subjects: Vec<&str> = commits.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(subjects.len(), 4, "main: {subjects:?}");
    assert!(subjects[0].starts_with("Initial commit"));
    let mut merged: Vec<&str> = subjects[1..].to_vec();
    merged.sort();
    assert_eq!(
        merged,
        ["DEMO-001: Add a multiply function", "DEMO-002: Add a safe divide function", "DEMO-003: Add a power function"]
    );
    assert_each_main_commit_passes_tests(&project);

    let show = |id: &str| -> serde_json::Value {
        let out = Command::new(baton_exe())
            .args(["--json", "--config"])
            .arg(dir.join("baton.toml"))
            .args(["task", "show", id])
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let divide = show("DEMO-002");
    assert_eq!(divide["task"]["state"]["rollbacks"], 1, "divide should be rolled back once by review");
    let power = show("DEMO-003");
    let answered = power["timeline"].as_array().unwrap().iter().any(|e| e["kind"] == "answered");
    assert!(answered, "power's questions should have been answered");
    // The deployed copy is the last merged head.
    let revision = std::fs::read_to_string(dir.join("deployed/REVISION")).unwrap();
    assert_eq!(revision.trim(), commits.last().unwrap().0);
}

// Without --yes the demo does not approve anything itself: it prints the approve command and waits.
#[test]
fn demo_without_yes_prints_the_approve_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut child = Command::new(baton_exe())
        .args(["demo", "--dir"])
        .arg(&dir)
        .env_remove("BATON_CONFIG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut seen = false;
    for line in reader.map_while(Result::ok) {
        assert!(!line.contains("because --yes"), "approved without --yes: {line}");
        if line.contains("waits for you") && line.contains("task approve DEMO-00") {
            seen = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "the demo never printed the approve command");
}
