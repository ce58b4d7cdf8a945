//! Path safety: hostile ticket text yields a sanitized branch and worktree, and never reaches a shell.

use crate::support::Env;
use std::time::{Duration, Instant};

// A ticket titled `../../etc/passwd; rm -rf ~` gets branch `baton/DEMO-001-etc-passwd-rm-rf` and a
// worktree under the data dir; the title reaches the agent only as prompt text; HOME survives.
#[test]
fn hostile_title_is_sanitized_and_never_reaches_a_shell() {
    let env = Env::new("", "");
    let canary = env.root.join("canary.txt");
    std::fs::write(&canary, "still here").unwrap();
    let title = "../../etc/passwd; rm -rf ~";
    let id = env.add_task(title);
    assert_eq!(id, "DEMO-001");
    let _server = env.serve(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let detail = env.json(&["task", "show", &id]);
        if detail["task"]["state"]["hold"]["kind"] == "awaiting_approval" {
            assert_eq!(detail["task"]["branch"], "baton/DEMO-001-etc-passwd-rm-rf");
            break;
        }
        assert!(Instant::now() < deadline, "analysis never finished: {detail:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let worktree = env.root.join("data/worktrees/demo/DEMO-001");
    assert!(worktree.join(".git").exists(), "worktree not at {}", worktree.display());
    let analysis = std::fs::read_to_string(worktree.join("docs/baton/DEMO-001/01-analysis.md")).unwrap();
    assert!(analysis.contains(title), "the title should arrive verbatim as text: {analysis}");
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "still here");
    assert!(!env.root.join("etc").exists() && !env.root.join("data/etc").exists());
    // The prompt file holds the title as plain text.
    let prompts: Vec<_> = walk(&env.root.join("data/runs")).into_iter().filter(|p| p.ends_with("prompt.md")).collect();
    assert!(!prompts.is_empty());
    assert!(std::fs::read_to_string(&prompts[0]).unwrap().contains(title));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
