//! A `url` repository end to end: the project lives in a bare repository served over HTTP on
//! 127.0.0.1 by `git http-backend` (basic auth with a token from Baton's environment). Baton
//! clones it under its data dir, pushes task branches, merges by a fast-forward push of exactly the
//! re-tested head, deletes the remote task branch after the merge and on STOP, and rides out a
//! remote that is down as an infrastructure failure.

#[path = "../../../baton-runner/tests/support/git_http.rs"]
pub(crate) mod git_http;

use crate::support::{Env, all_done, git, stage};
use git_http::{GitHttp, ref_history};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKEN: &str = "e2e-remote-git-token-5f1c";

/// The project as a bare repository under `<root>/served`, the server, and baton.toml switched
/// from `path` to `url` with `credentials_env`.
fn remote_env(script: &str) -> (Env, GitHttp, PathBuf) {
    let mut env = Env::new(script, "");
    let served = env.root.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let bare = served.join("demo.git");
    git(&env.root, &["clone", "-q", "--bare", env.project().to_str().unwrap(), bare.to_str().unwrap()]);
    git(&bare, &["config", "core.logAllRefUpdates", "always"]);
    let server = GitHttp::start(&served, Some(TOKEN));
    let config = std::fs::read_to_string(env.config()).unwrap();
    let repo = format!("url = \"{}\"\ncredentials_env = \"BATON_GIT_TOKEN\"", server.url("demo.git"));
    std::fs::write(env.config(), config.replace("path = \"project\"", &repo)).unwrap();
    env.serve_env.push(("BATON_GIT_TOKEN".into(), TOKEN.into()));
    (env, server, bare)
}

fn remote_branch(bare: &Path, branch: &str) -> Option<String> {
    let refs = git(bare, &["for-each-ref", "--format=%(objectname)", &format!("refs/heads/{branch}")]);
    (!refs.is_empty()).then_some(refs)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// One ticket on a url repository reaches done; the remote's main moved once, by fast-forward, to
// exactly the head the merge gate re-tested; the remote task branch is gone after the merge; the
// token is in no log and not in Baton's clone.
#[test]
fn url_repo_ticket_reaches_done_with_the_retested_head_on_the_remote() {
    let (env, _server, bare) = remote_env("");
    let check = env.run(&["config", "check"]);
    assert!(check.status.success(), "config check: {}", String::from_utf8_lossy(&check.stderr));
    let seed = remote_branch(&bare, "main").unwrap();
    let id = env.add_task("Remote work");
    let _baton = env.serve(0);
    let tasks = env.drive(Duration::from_secs(180), all_done);
    assert!(all_done(&tasks), "{tasks:#?}");
    let detail = env.json(&["task", "show", &id]);
    assert_eq!(stage(&detail["task"]), "done");

    let main = remote_branch(&bare, "main").unwrap();
    assert_eq!(ref_history(&bare, "main"), vec![seed.clone(), main.clone()], "main moved once, forward");
    assert_eq!(git(&bare, &["rev-parse", &format!("{main}^")]), seed, "one squashed commit on the old main");
    let subject = git(&bare, &["log", "-1", "--format=%s", &main]);
    assert!(subject.starts_with(&id), "{subject}");
    // The merge gate's recorded re-tested head is exactly what the remote's main holds.
    let retested: Vec<&str> = detail["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|job| job["result"]["outcome"]["verdicts"].as_array())
        .flatten()
        .filter(|v| v["gate"] == "mergeable" && v["verdict"] == "pass")
        .filter_map(|v| v["evidence"].as_str())
        .collect();
    assert_eq!(retested.last().copied(), Some(main.as_str()), "{detail:#}");
    // The local checkout the remote was made from is untouched: Baton worked in its own clone.
    assert_eq!(crate::support::main_commits(&env.project()).len(), 1);
    assert!(env.root.join("data/repos/demo.git/HEAD").is_file());

    let branch = detail["task"]["branch"].as_str().unwrap().to_string();
    wait_for("the remote task branch to be deleted after the merge", Duration::from_secs(30), || {
        remote_branch(&bare, &branch).is_none()
    });
    let log = std::fs::read_to_string(env.root.join("serve-0.log")).unwrap();
    assert!(!log.contains(TOKEN), "the token reached the serve log");
    let clone_config = std::fs::read_to_string(env.root.join("data/repos/demo.git/config")).unwrap();
    assert!(!clone_config.contains(TOKEN) && !clone_config.contains("Authorization"), "{clone_config}");
}

const STOPPABLE: &str = r##"
[[task]]
match = "stoppable"
[[task.step]]
stage = "analysis"
actions = [{ write = { path = "docs/baton/{work_item}/01-analysis.md", content = "# A\n\nAnalysis.\n" } }]
[[task.step]]
stage = "architecture"
actions = [{ sleep_ms = 120000 }]
"##;

// STOP deletes the task branch on the remote (it was pushed after the analysis commit), and the
// remote's main is untouched.
#[test]
fn stop_deletes_the_remote_task_branch() {
    let (env, _server, bare) = remote_env(STOPPABLE);
    let seed = remote_branch(&bare, "main").unwrap();
    let id = env.add_task("stoppable task");
    let _baton = env.serve(0);
    let branch = env.json(&["task", "show", &id])["task"]["branch"].as_str().unwrap().to_string();
    wait_for("the analysis commit to be pushed", Duration::from_secs(60), || remote_branch(&bare, &branch).is_some());
    let pushed = remote_branch(&bare, &branch).unwrap();
    assert_ne!(pushed, seed);
    assert_eq!(git(&bare, &["rev-parse", &format!("{pushed}^")]), seed, "branched from origin/main");
    let out = env.run(&["task", "stop", &id]);
    assert!(out.status.success(), "stop: {}", String::from_utf8_lossy(&out.stderr));
    wait_for("the remote task branch to be deleted on STOP", Duration::from_secs(30), || {
        remote_branch(&bare, &branch).is_none()
    });
    assert_eq!(stage(&env.json(&["task", "show", &id])["task"]), "cancelled");
    assert_eq!(remote_branch(&bare, "main"), Some(seed));
    assert!(ref_history(&bare, "main").is_empty(), "main was never updated");
}

// The remote is down when the first job starts: the job fails as an infrastructure failure
// (retried with backoff, no attempt spent); once the server is back the ticket reaches done.
#[test]
fn remote_down_is_an_infrastructure_failure_and_recovers() {
    let (env, mut server, bare) = remote_env("");
    server.stop();
    let id = env.add_task("Remote later");
    let _baton = env.serve(0);
    let mut detail = Value::Null;
    wait_for("an infrastructure failure", Duration::from_secs(60), || {
        detail = env.json(&["task", "show", &id]);
        detail.to_string().contains("infrastructure failure")
    });
    assert_eq!(stage(&detail["task"]), "analysis", "{detail:#}");
    assert!(!detail.to_string().contains(TOKEN));
    server.restart();
    let tasks = env.drive(Duration::from_secs(180), all_done);
    assert!(all_done(&tasks), "{tasks:#?}");
    assert_eq!(ref_history(&bare, "main").len(), 2);
}
