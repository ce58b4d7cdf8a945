//! A local repository for the runner's git tests: one commit on `main` (a `README.md`), and the
//! path where a task's worktree goes; `git` with a fixed test identity.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use baton_runner::Git;
use std::path::{Path, PathBuf};

const ID: [&str; 6] = ["-c", "user.name=Test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false"];

/// Runs git in `dir` as the test identity; panics on failure.
pub async fn git(dir: &Path, args: &[&str]) -> String {
    let all: Vec<&str> = ID.iter().chain(args).copied().collect();
    Git::new(dir).run(&all).await.unwrap_or_else(|e| panic!("git {args:?}: {e}"))
}

/// A repository with one commit on `main`, and where its task worktree `DEMO-001` goes.
pub async fn repo() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]).await;
    std::fs::write(repo.join("README.md"), "demo\n").unwrap();
    git(&repo, &["add", "README.md"]).await;
    git(&repo, &["commit", "-q", "-m", "init"]).await;
    let worktree = tmp.path().join("worktrees").join("demo").join("DEMO-001");
    (tmp, repo, worktree)
}
