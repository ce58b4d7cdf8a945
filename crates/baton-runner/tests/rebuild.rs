//! The merge gate's build through `GitVcs::rebuild`: the branch's own changes as one commit on the
//! base it is tested on (a three-way merge, no replay through the working tree), the same tree a
//! rebase and a squash give; only the branch's own work after an earlier build on a change ahead;
//! a conflict that names its files and moves nothing; a branch that changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_runner::{GitVcs, Vcs};
use std::path::Path;

#[path = "support/local_repo.rs"]
mod local_repo;

use local_repo::git;

const BRANCH: &str = "baton/DEMO-001-task";

/// Writes `files` in `dir` and commits them there as the test identity; returns the commit.
async fn commit(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(dir, &["add", "-A"]).await;
    git(dir, &["commit", "-q", "-m", message]).await;
    git(dir, &["rev-parse", "HEAD"]).await
}

async fn tree(dir: &Path, rev: &str) -> String {
    git(dir, &["rev-parse", &format!("{rev}^{{tree}}")]).await
}

#[tokio::test]
async fn rebuild_lands_the_branch_as_one_commit_on_the_base_with_the_tree_a_rebase_and_squash_give() {
    let (_tmp, repo, worktree) = local_repo::repo().await;
    GitVcs.ensure_worktree(&repo, &worktree, BRANCH, "main").await.unwrap();
    // Three stage commits on the branch; main moves meanwhile.
    commit(&worktree, &[("docs/a.md", "analysis\n")], "analysis").await;
    commit(&worktree, &[("src/lib.rs", "fn a() {}\n")], "development").await;
    commit(&worktree, &[("docs/a.md", "analysis, reviewed\n")], "review").await;
    let main = commit(&repo, &[("other.txt", "main moved\n")], "main moves").await;

    // What a rebase and a squash give, in a second worktree of the same branch history.
    let control = worktree.parent().unwrap().join("control");
    git(&repo, &["worktree", "add", "-q", "-b", "control", control.to_str().unwrap(), BRANCH]).await;
    git(&control, &["rebase", "-q", &main]).await;
    git(&control, &["reset", "-q", "--soft", &main]).await;
    git(&control, &["commit", "-q", "-m", "control"]).await;

    let head = GitVcs.rebuild(&worktree, &main, "DEMO-001: the task").await.unwrap().expect("changes");
    assert_eq!(git(&worktree, &["rev-parse", "HEAD"]).await, head, "the branch moved to the build");
    assert_eq!(git(&worktree, &["rev-parse", "HEAD^"]).await, main, "one commit, on the base");
    assert_eq!(tree(&worktree, &head).await, tree(&control, "HEAD").await, "the tree a rebase and squash give");
    assert_eq!(git(&worktree, &["log", "-1", "--format=%s", &head]).await, "DEMO-001: the task");
    // The files follow, and nothing is left uncommitted.
    assert_eq!(std::fs::read_to_string(worktree.join("docs/a.md")).unwrap(), "analysis, reviewed\n");
    assert_eq!(std::fs::read_to_string(worktree.join("other.txt")).unwrap(), "main moved\n");
    assert_eq!(git(&worktree, &["status", "--porcelain", "--untracked-files=all"]).await, "");
    assert_eq!(
        git(&worktree, &["rev-parse", &format!("refs/baton/built-on/{BRANCH}")]).await,
        main,
        "the base it was built on is recorded"
    );
}

#[tokio::test]
async fn a_branch_built_on_a_change_ahead_is_rebuilt_with_only_its_own_work() {
    let (_tmp, repo, worktree) = local_repo::repo().await;
    GitVcs.ensure_worktree(&repo, &worktree, BRANCH, "main").await.unwrap();
    let main = git(&repo, &["rev-parse", "main"]).await;
    commit(&worktree, &[("mine.txt", "mine\n")], "my work").await;
    // A change ahead in the queue: its own commit on main, not on main itself.
    git(&repo, &["branch", "ahead", "main"]).await;
    let ahead_dir = worktree.parent().unwrap().join("ahead");
    git(&repo, &["worktree", "add", "-q", ahead_dir.to_str().unwrap(), "ahead"]).await;
    let ahead = commit(&ahead_dir, &[("theirs.txt", "theirs\n")], "the change ahead").await;

    let first = GitVcs.rebuild(&worktree, &ahead, "DEMO-001 on the change ahead").await.unwrap().unwrap();
    assert_eq!(git(&worktree, &["rev-parse", "HEAD^"]).await, ahead);
    assert!(worktree.join("theirs.txt").exists());

    // The change ahead is evicted: built again on main, the branch carries only its own work.
    let again = GitVcs.rebuild(&worktree, &main, "DEMO-001 on main").await.unwrap().unwrap();
    assert_ne!(again, first);
    assert_eq!(git(&worktree, &["rev-parse", "HEAD^"]).await, main);
    let files = git(&worktree, &["diff", "--name-only", &main, "HEAD"]).await;
    assert_eq!(files, "mine.txt", "the evicted change's file is not carried along");
    assert!(!worktree.join("theirs.txt").exists());
}

#[tokio::test]
async fn a_conflict_names_its_file_and_moves_nothing() {
    let (_tmp, repo, worktree) = local_repo::repo().await;
    GitVcs.ensure_worktree(&repo, &worktree, BRANCH, "main").await.unwrap();
    let before = commit(&worktree, &[("README.md", "the branch's words\n")], "branch edits").await;
    let main = commit(&repo, &[("README.md", "main's words\n")], "main edits").await;

    let error = GitVcs.rebuild(&worktree, &main, "DEMO-001").await.expect_err("a conflict").to_string();
    assert!(error.contains("conflicts in README.md"), "{error}");
    assert!(error.contains("CONFLICT (content)"), "{error}");
    assert_eq!(git(&worktree, &["rev-parse", "HEAD"]).await, before, "the branch did not move");
    assert_eq!(git(&worktree, &["status", "--porcelain", "--untracked-files=all"]).await, "");
    assert_eq!(std::fs::read_to_string(worktree.join("README.md")).unwrap(), "the branch's words\n");
}

#[tokio::test]
async fn a_branch_that_changes_nothing_on_the_base_builds_nothing() {
    let (_tmp, repo, worktree) = local_repo::repo().await;
    GitVcs.ensure_worktree(&repo, &worktree, BRANCH, "main").await.unwrap();
    // The branch's change is already on main (landed some other way).
    let before = commit(&worktree, &[("same.txt", "same\n")], "branch").await;
    let main = commit(&repo, &[("same.txt", "same\n")], "main has it too").await;

    assert_eq!(GitVcs.rebuild(&worktree, &main, "DEMO-001").await.unwrap(), None);
    assert_eq!(git(&worktree, &["rev-parse", "HEAD"]).await, before, "nothing moved");
}

// A task that ended needs no record of what its branch was last built on: forgetting it removes
// the loose reference, a packed one too (through git), and a missing one is no error.
#[tokio::test]
async fn forgetting_what_a_branch_was_built_on_leaves_no_reference_behind() {
    let (_tmp, repo, worktree) = local_repo::repo().await;
    GitVcs.ensure_worktree(&repo, &worktree, BRANCH, "main").await.unwrap();
    commit(&worktree, &[("src/lib.rs", "fn a() {}\n")], "development").await;
    let main = git(&repo, &["rev-parse", "main"]).await;
    GitVcs.rebuild(&worktree, &main, "DEMO-001: the task").await.unwrap().expect("changes");
    let name = format!("refs/baton/built-on/{BRANCH}");
    let listed = || async { git(&repo, &["for-each-ref", "--format=%(refname)", "refs/baton/"]).await };
    assert_eq!(listed().await, name, "the build recorded its base");

    GitVcs.forget_built_on(&repo, BRANCH).await.unwrap();
    assert_eq!(listed().await, "", "the loose reference is gone");
    GitVcs.forget_built_on(&repo, BRANCH).await.expect("a missing record is no error");

    // Packed by a `git gc` meanwhile: removing a loose file alone would not do.
    git(&repo, &["update-ref", &name, &main]).await;
    git(&repo, &["pack-refs", "--all"]).await;
    assert_eq!(listed().await, name);
    GitVcs.forget_built_on(&repo, BRANCH).await.unwrap();
    assert_eq!(listed().await, "", "the packed reference is gone too");
    assert_eq!(
        git(&repo, &["rev-parse", BRANCH]).await,
        git(&worktree, &["rev-parse", "HEAD"]).await,
        "the branch stays"
    );
}
