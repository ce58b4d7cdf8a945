//! `GitVcs::ensure_worktree` on a path that already exists: reused only when it is a registered
//! worktree of the repository with the task's branch checked out, else removed and re-created, so
//! a new task never works in an old task's tree (a reused work-item id after a lost database).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_runner::{Git, GitVcs, Vcs};
use std::path::Path;

const ID: [&str; 6] = ["-c", "user.name=Test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false"];

async fn git(dir: &Path, args: &[&str]) -> String {
    let all: Vec<&str> = ID.iter().chain(args).copied().collect();
    Git::new(dir).run(&all).await.unwrap_or_else(|e| panic!("git {args:?}: {e}"))
}

/// A repository with one commit on `main`, and where its task worktrees go.
async fn repo() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
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

async fn head_branch(worktree: &Path) -> String {
    git(worktree, &["symbolic-ref", "--short", "HEAD"]).await
}

#[tokio::test]
async fn an_old_tasks_worktree_is_replaced_by_one_on_the_new_tasks_branch() {
    let (_tmp, repo, worktree) = repo().await;
    let vcs = GitVcs;
    // The old task (lost with its database) left its worktree, with a commit on its branch.
    vcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-old-task", "main").await.unwrap();
    std::fs::write(worktree.join("old.txt"), "old task's work\n").unwrap();
    git(&worktree, &["add", "old.txt"]).await;
    git(&worktree, &["commit", "-q", "-m", "old work"]).await;

    // A new task got the same work-item id, so the same path, but its own branch.
    vcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-new-task", "main").await.unwrap();
    assert_eq!(head_branch(&worktree).await, "baton/DEMO-001-new-task");
    assert!(!worktree.join("old.txt").exists(), "the new task must not see the old task's files");
    assert_eq!(std::fs::read_to_string(worktree.join("README.md")).unwrap(), "demo\n");
    // The old task's branch and commit are left alone.
    assert!(Git::new(&repo).rev("refs/heads/baton/DEMO-001-old-task").await.is_some());
}

#[tokio::test]
async fn the_tasks_own_worktree_is_reused_as_is() {
    let (_tmp, repo, worktree) = repo().await;
    let vcs = GitVcs;
    vcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-task", "main").await.unwrap();
    std::fs::write(worktree.join("work-in-progress.txt"), "kept\n").unwrap();
    vcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-task", "main").await.unwrap();
    assert_eq!(head_branch(&worktree).await, "baton/DEMO-001-task");
    assert!(worktree.join("work-in-progress.txt").exists(), "reusing its own worktree keeps its files");
}

#[tokio::test]
async fn a_worktree_switched_to_another_branch_is_recreated_on_the_tasks_branch() {
    let (_tmp, repo, worktree) = repo().await;
    let vcs = GitVcs;
    vcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-task", "main").await.unwrap();
    git(&worktree, &["checkout", "-q", "-b", "someone-elses-branch"]).await;
    vcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-task", "main").await.unwrap();
    assert_eq!(head_branch(&worktree).await, "baton/DEMO-001-task");
}

#[tokio::test]
async fn a_directory_that_is_not_a_registered_worktree_is_replaced() {
    let (tmp, repo, worktree) = repo().await;
    let vcs = GitVcs;
    // A separate clone at the task's path: a git checkout on the right branch name, but not a
    // worktree of the repository.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    git(&other, &["init", "-q", "-b", "baton/DEMO-001-task"]).await;
    std::fs::write(other.join("foreign.txt"), "not ours\n").unwrap();
    git(&other, &["add", "foreign.txt"]).await;
    git(&other, &["commit", "-q", "-m", "foreign"]).await;
    std::fs::create_dir_all(worktree.parent().unwrap()).unwrap();
    std::fs::rename(&other, &worktree).unwrap();

    vcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-task", "main").await.unwrap();
    assert_eq!(head_branch(&worktree).await, "baton/DEMO-001-task");
    assert!(!worktree.join("foreign.txt").exists());
    let listing = git(&repo, &["worktree", "list", "--porcelain"]).await;
    let wanted = worktree.canonicalize().unwrap();
    assert!(
        listing
            .lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .any(|p| Path::new(p).canonicalize().unwrap() == wanted),
        "{listing}"
    );
}
