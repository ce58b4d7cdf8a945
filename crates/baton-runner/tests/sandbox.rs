//! The bubblewrap wrapper against the real `bwrap`: the worktree is writable, the rest of the
//! system read-only, the data directory and Baton's processes invisible, and a stop of the
//! process group still ends a sandboxed process that ignores SIGTERM.
//!
//! These tests need a working bubblewrap (`cargo xtask test` installs it); without one they fail
//! with the reason rather than pass without checking anything.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use baton_runner::process::{spawn, stop_group};
use baton_runner::sandbox::{self, SandboxNetwork, SandboxPolicy};
use baton_runner::{ProcessSpec, RunLimits, group_alive};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn bwrap() -> PathBuf {
    let bwrap = sandbox::find_bwrap(std::env::var("PATH").ok().as_deref())
        .expect("bubblewrap is not installed: install it (apt-get install bubblewrap) to run the sandbox tests");
    if let Err(why) = sandbox::probe(&bwrap, SandboxNetwork::Open) {
        panic!("bubblewrap does not work here: {why}; {}", sandbox::HOW_TO_ENABLE);
    }
    bwrap
}

/// `<tmp>/data` (with an API token and another task's worktree) and `<tmp>/data/worktrees/demo/A`.
struct Layout {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    worktree: PathBuf,
    readonly: PathBuf,
}

fn layout() -> Layout {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let data = root.join("data");
    let worktree = data.join("worktrees/demo/A");
    std::fs::create_dir_all(&worktree).unwrap();
    std::fs::create_dir_all(data.join("worktrees/demo/B")).unwrap();
    std::fs::write(data.join("api-token"), "secret-token\n").unwrap();
    std::fs::write(data.join("worktrees/demo/B/secret.txt"), "other task\n").unwrap();
    let readonly = root.join("shared");
    std::fs::create_dir_all(&readonly).unwrap();
    std::fs::write(readonly.join("input.txt"), "readable\n").unwrap();
    std::fs::write(readonly.join("baton.toml"), "[server]\napi_token = \"config-token-in-file\"\n").unwrap();
    Layout { _tmp: tmp, data, worktree, readonly }
}

fn policy(layout: &Layout) -> SandboxPolicy {
    SandboxPolicy {
        hidden: vec![layout.data.clone()],
        read_only: vec![layout.readonly.clone()],
        writable: vec![layout.worktree.clone()],
        masked_files: vec![layout.readonly.join("baton.toml")],
        network: SandboxNetwork::Open,
        env: vec![],
    }
}

fn shell(layout: &Layout, script: &str, out: &Path) -> ProcessSpec {
    ProcessSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: layout.worktree.clone(),
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        stdin: None,
        stdout: out.join("stdout.log"),
        stderr: out.join("stderr.log"),
    }
}

fn limits() -> RunLimits {
    RunLimits {
        timeout: Duration::from_secs(30),
        stall_timeout: Duration::from_secs(30),
        stop_grace: Duration::from_millis(500),
    }
}

// Inside: the worktree takes writes, a read-only bind and the system refuse them, the data
// directory is empty (no token, no other worktree), and no process of the host (this test, with
// its CARGO_* environment) is visible in /proc.
#[tokio::test]
async fn the_worktree_is_writable_and_everything_else_is_read_only_or_hidden() {
    let bwrap = bwrap();
    let layout = layout();
    let logs = tempfile::tempdir().unwrap();
    let data = layout.data.display();
    let ro = layout.readonly.display();
    let script = format!(
        "echo made > made.txt && echo worktree-write=ok
         cat {ro}/input.txt && echo ro-read=ok
         (echo x > {ro}/new.txt) 2>/dev/null && echo ro-write=ok || echo ro-write=denied
         (echo x > /etc/baton-sandbox-test) 2>/dev/null && echo etc-write=ok || echo etc-write=denied
         cat {data}/api-token 2>/dev/null && echo token=read || echo token=denied
         echo config-bytes=$(cat {ro}/baton.toml 2>/dev/null | wc -c)
         ls {data}/worktrees/demo/B 2>/dev/null && echo other-worktree=listed || echo other-worktree=denied
         echo data-entries=$(ls -A {data} | tr '\\n' ' ')
         if grep -l CARGO_PKG_NAME /proc/[0-9]*/environ 2>/dev/null | grep -q .; then echo host-environ=read; else echo host-environ=denied; fi
         echo procs=$(ls -d /proc/[0-9]* | wc -l)"
    );
    let spec = sandbox::wrap(shell(&layout, &script, logs.path()), &bwrap, &policy(&layout));
    let mut child = spawn(&spec).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let exit = child.wait(limits(), rx).await;
    let out = std::fs::read_to_string(logs.path().join("stdout.log")).unwrap();
    let err = std::fs::read_to_string(logs.path().join("stderr.log")).unwrap();
    assert!(exit.success(), "{exit:?}\nstdout:\n{out}\nstderr:\n{err}");
    for expected in [
        "worktree-write=ok",
        "readable",
        "ro-read=ok",
        "ro-write=denied",
        "etc-write=denied",
        "token=denied",
        "other-worktree=denied",
        "host-environ=denied",
    ] {
        assert!(out.lines().any(|l| l.trim() == expected), "`{expected}` missing:\n{out}\n{err}");
    }
    assert!(!out.contains("secret-token"), "{out}");
    // Nothing of the configuration file can be read inside; it is untouched outside.
    assert!(out.lines().any(|l| l.trim() == "config-bytes=0"), "{out}");
    assert!(std::fs::read_to_string(layout.readonly.join("baton.toml")).unwrap().contains("config-token"));
    // The data directory shows only the mount points leading to the worktree.
    assert!(out.lines().any(|l| l.trim() == "data-entries=worktrees"), "{out}");
    let procs: usize = out.lines().find_map(|l| l.strip_prefix("procs=")).unwrap().trim().parse().unwrap();
    assert!(procs <= 6, "the sandbox's /proc shows {procs} processes:\n{out}");
    // The write landed in the real worktree; the read-only directory is unchanged.
    assert_eq!(std::fs::read_to_string(layout.worktree.join("made.txt")).unwrap(), "made\n");
    assert!(!layout.readonly.join("new.txt").exists());
    assert_eq!(std::fs::read_to_string(layout.data.join("api-token")).unwrap(), "secret-token\n");
}

// bwrap keeps the process group (no --new-session): SIGTERM then SIGKILL to the group ends a
// sandboxed process that ignores SIGTERM, with everything it started.
#[tokio::test]
async fn stopping_the_process_group_ends_a_sandboxed_process() {
    let bwrap = bwrap();
    let layout = layout();
    let logs = tempfile::tempdir().unwrap();
    let script = "trap '' TERM; echo started; while :; do sleep 1; done";
    let spec = sandbox::wrap(shell(&layout, script, logs.path()), &bwrap, &policy(&layout));
    let mut child = spawn(&spec).unwrap();
    let pgid = child.pgid;
    let stdout = logs.path().join("stdout.log");
    for _ in 0..100 {
        if std::fs::read_to_string(&stdout).unwrap_or_default().contains("started") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::read_to_string(&stdout).unwrap().contains("started"), "the sandboxed shell never started");
    // bwrap, its pid-1 helper, the shell and its sleep: all in the group Baton stops.
    let members = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').nth(2)?.parse::<u32>().ok()))
                == Some(pgid)
        })
        .count();
    assert!(members >= 3, "expected bwrap, its helper and the shell in group {pgid}, found {members}");
    stop_group(pgid, Duration::from_millis(500)).await;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let exit = child.wait(limits(), rx).await;
    for _ in 0..40 {
        if !group_alive(pgid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!group_alive(pgid), "processes of group {pgid} survived the stop");
    assert!(!exit.success(), "{exit:?}");
}
