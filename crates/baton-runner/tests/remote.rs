//! Remote repositories against a real git remote: bare repositories served over HTTP on
//! 127.0.0.1 by `git http-backend`, with basic auth required. Baton's clone is created and fetched,
//! worktrees branch from `origin/main`, task branches are pushed with a lease that never clobbers
//! someone else's push, the default branch only moves forward, branches are deleted on the
//! remote, and an unreachable remote is an infrastructure error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/git_http.rs"]
mod git_http;

use baton_runner::{Git, GitVcs, Remote, Vcs, is_infrastructure};
use git_http::{GitHttp, git, ref_history, seed_bare};
use std::path::{Path, PathBuf};

/// The variable holding the token: one every test process has (cargo sets it when running tests),
/// since a test cannot safely set its own environment.
const TOKEN_ENV: &str = "CARGO_PKG_NAME";

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    bare: PathBuf,
    server: GitHttp,
    remote: Remote,
    clone: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("served");
    std::fs::create_dir_all(&root).unwrap();
    let bare = seed_bare(&root, "app.git", &[]);
    let token = std::env::var(TOKEN_ENV).expect("cargo sets CARGO_PKG_NAME for tests");
    let server = GitHttp::start(&root, Some(&token));
    let remote = Remote { url: server.url("app.git"), credentials_env: Some(TOKEN_ENV.into()) };
    let clone = tmp.path().join("data/repos/app.git");
    Fixture { root: tmp.path().to_path_buf(), _tmp: tmp, bare, server, remote, clone }
}

/// A person's own clone of the served repository, for concurrent pushes.
fn person_clone(f: &Fixture, name: &str) -> PathBuf {
    let dir = f.root.join(name);
    git(&f.root, &["clone", "-q", f.bare.to_str().unwrap(), dir.to_str().unwrap()]);
    dir
}

async fn commit_file(worktree: &Path, file: &str, content: &str) {
    std::fs::write(worktree.join(file), content).unwrap();
    assert!(Git::new(worktree).commit_all(&format!("write {file}")).await.unwrap());
}

fn remote_rev(bare: &Path, rev: &str) -> Option<String> {
    git_http::try_git(bare, &["rev-parse", "--verify", "--quiet", rev])
}

// First use clones (bare, with `origin` tracking refs); a worktree branches from origin/main; a
// later fetch sees new commits and prunes deleted branches.
#[tokio::test]
async fn clone_fetch_and_worktree_from_the_remote() {
    let f = fixture();
    let vcs = GitVcs;
    vcs.sync_remote(&f.clone, &f.remote, "main").await.unwrap();
    let seed = remote_rev(&f.bare, "refs/heads/main").unwrap();
    assert_eq!(vcs.rev(&f.clone, "refs/remotes/origin/main").await.as_deref(), Some(seed.as_str()));
    let worktree = f.root.join("data/worktrees/app/APP-001");
    vcs.ensure_worktree(&f.clone, &worktree, "baton/APP-001", "refs/remotes/origin/main").await.unwrap();
    assert_eq!(std::fs::read_to_string(worktree.join("README.md")).unwrap(), "seed\n");
    assert_eq!(vcs.rev(&worktree, "HEAD").await.as_deref(), Some(seed.as_str()));

    // Someone pushes to main and a branch; later deletes the branch.
    let person = person_clone(&f, "person");
    std::fs::write(person.join("NEWS.md"), "news\n").unwrap();
    git(&person, &["add", "-A"]);
    git(&person, &["commit", "-q", "-m", "news"]);
    git(&person, &["push", "-q", "origin", "main", "main:feature"]);
    vcs.sync_remote(&f.clone, &f.remote, "main").await.unwrap();
    let moved = remote_rev(&f.bare, "refs/heads/main").unwrap();
    assert_ne!(moved, seed);
    assert_eq!(vcs.rev(&f.clone, "refs/remotes/origin/main").await.as_deref(), Some(moved.as_str()));
    assert!(vcs.rev(&f.clone, "refs/remotes/origin/feature").await.is_some());
    git(&person, &["push", "-q", "origin", "--delete", "feature"]);
    vcs.sync_remote(&f.clone, &f.remote, "main").await.unwrap();
    assert!(vcs.rev(&f.clone, "refs/remotes/origin/feature").await.is_none(), "fetch --prune");
    // The token went as a header on every request: none was refused.
    assert_eq!(f.server.refused.load(std::sync::atomic::Ordering::SeqCst), 0);
    // ...and it is nowhere on disk in Baton's clone.
    let config = std::fs::read_to_string(f.clone.join("config")).unwrap();
    assert!(!config.contains("extraHeader") && !config.contains("Authorization"), "{config}");
}

// An agent commit is pushed with a lease; a person's push to the same branch makes Baton's next
// push fail (their commit stays); the default branch is never pushed as a task branch.
#[tokio::test]
async fn task_branch_pushes_with_a_lease_and_never_clobbers() {
    let f = fixture();
    let vcs = GitVcs;
    vcs.sync_remote(&f.clone, &f.remote, "main").await.unwrap();
    let worktree = f.root.join("data/worktrees/app/APP-002");
    vcs.ensure_worktree(&f.clone, &worktree, "baton/APP-002", "refs/remotes/origin/main").await.unwrap();
    commit_file(&worktree, "a.txt", "one\n").await;
    assert!(vcs.push_branch(&f.clone, &f.remote, "baton/APP-002", "main").await.unwrap());
    let first = vcs.rev(&worktree, "HEAD").await.unwrap();
    assert_eq!(remote_rev(&f.bare, "refs/heads/baton/APP-002").as_deref(), Some(first.as_str()));
    // Nothing new: nothing pushed.
    assert!(!vcs.push_branch(&f.clone, &f.remote, "baton/APP-002", "main").await.unwrap());

    // A rewritten branch (the merge gate's rebase) is pushed over Baton's own last push.
    git(&worktree, &["commit", "-q", "--amend", "-m", "amended"]);
    assert!(vcs.push_branch(&f.clone, &f.remote, "baton/APP-002", "main").await.unwrap());
    let amended = vcs.rev(&worktree, "HEAD").await.unwrap();
    assert_eq!(remote_rev(&f.bare, "refs/heads/baton/APP-002").as_deref(), Some(amended.as_str()));

    // A person pushes to the task branch; Baton fetches (so its tracking ref knows) and commits.
    let person = person_clone(&f, "person");
    git(&person, &["checkout", "-q", "baton/APP-002"]);
    std::fs::write(person.join("b.txt"), "theirs\n").unwrap();
    git(&person, &["add", "-A"]);
    git(&person, &["commit", "-q", "-m", "theirs"]);
    git(&person, &["push", "-q", "origin", "baton/APP-002"]);
    let theirs = remote_rev(&f.bare, "refs/heads/baton/APP-002").unwrap();
    vcs.sync_remote(&f.clone, &f.remote, "main").await.unwrap();
    commit_file(&worktree, "a.txt", "two\n").await;
    let error = vcs.push_branch(&f.clone, &f.remote, "baton/APP-002", "main").await.unwrap_err().to_string();
    assert!(error.contains("refusing to overwrite"), "{error}");
    assert!(!is_infrastructure(&error), "a refused lease is not the machine's fault: {error}");
    assert_eq!(remote_rev(&f.bare, "refs/heads/baton/APP-002").as_deref(), Some(theirs.as_str()), "clobbered");

    // The default branch is never pushed as a task branch.
    let main = remote_rev(&f.bare, "refs/heads/main").unwrap();
    let refused = vcs.push_branch(&f.clone, &f.remote, "main", "main").await.unwrap_err().to_string();
    assert!(refused.contains("only task branches"), "{refused}");
    assert_eq!(remote_rev(&f.bare, "refs/heads/main").as_deref(), Some(main.as_str()));
}

// The default branch moves only by fast-forward: a head that does not descend from the remote's
// main is refused and main stays; a descendant is pushed. Deleting a task branch removes it on
// the remote (twice is fine).
#[tokio::test]
async fn default_branch_only_fast_forwards_and_branches_are_deleted() {
    let f = fixture();
    let vcs = GitVcs;
    vcs.sync_remote(&f.clone, &f.remote, "main").await.unwrap();
    let worktree = f.root.join("data/worktrees/app/APP-003");
    vcs.ensure_worktree(&f.clone, &worktree, "baton/APP-003", "refs/remotes/origin/main").await.unwrap();
    commit_file(&worktree, "c.txt", "c\n").await;
    vcs.push_branch(&f.clone, &f.remote, "baton/APP-003", "main").await.unwrap();
    let head = vcs.rev(&worktree, "HEAD").await.unwrap();
    let seed = remote_rev(&f.bare, "refs/heads/main").unwrap();

    // Main moves on the remote meanwhile: the push is refused, nothing forced.
    let person = person_clone(&f, "person");
    std::fs::write(person.join("NEWS.md"), "news\n").unwrap();
    git(&person, &["add", "-A"]);
    git(&person, &["commit", "-q", "-m", "news"]);
    git(&person, &["push", "-q", "origin", "main"]);
    let moved = remote_rev(&f.bare, "refs/heads/main").unwrap();
    assert!(!f.remote.push_fast_forward(&f.clone, "main", &head).await.unwrap());
    assert_eq!(remote_rev(&f.bare, "refs/heads/main").as_deref(), Some(moved.as_str()));
    assert_eq!(f.remote.remote_head(&f.clone, "main").await.unwrap().as_deref(), Some(moved.as_str()));

    // Rebased onto the new main, the head fast-forwards it.
    vcs.sync_remote(&f.clone, &f.remote, "main").await.unwrap();
    vcs.rebase(&worktree, "refs/remotes/origin/main").await.unwrap();
    let rebased = vcs.rev(&worktree, "HEAD").await.unwrap();
    assert!(f.remote.push_fast_forward(&f.clone, "main", &rebased).await.unwrap());
    assert_eq!(remote_rev(&f.bare, "refs/heads/main").as_deref(), Some(rebased.as_str()));
    assert_eq!(ref_history(&f.bare, "main"), vec![seed, moved, rebased], "main moved only forward");

    f.remote.delete_branch(&f.clone, "baton/APP-003", "main").await.unwrap();
    assert!(remote_rev(&f.bare, "refs/heads/baton/APP-003").is_none());
    f.remote.delete_branch(&f.clone, "baton/APP-003", "main").await.unwrap();
    assert!(f.remote.delete_branch(&f.clone, "main", "main").await.is_err());
    assert!(remote_rev(&f.bare, "refs/heads/main").is_some());
}

// A remote that is down is an infrastructure failure (retried with backoff); back up, the same
// call works. Missing credentials are refused by the server and are not infrastructure.
#[tokio::test]
async fn unreachable_remote_is_infrastructure_and_bad_credentials_are_not() {
    let mut f = fixture();
    let vcs = GitVcs;
    vcs.sync_remote(&f.clone, &f.remote, "main").await.unwrap();
    f.server.stop();
    let error = vcs.sync_remote(&f.clone, &f.remote, "main").await.unwrap_err().to_string();
    assert!(is_infrastructure(&error), "{error}");
    // Baton's clone still answers.
    assert!(vcs.rev(&f.clone, "refs/remotes/origin/main").await.is_some());
    f.server.restart();
    vcs.sync_remote(&f.clone, &f.remote, "main").await.unwrap();

    let anonymous = Remote { url: f.remote.url.clone(), credentials_env: None };
    let other = f.root.join("data/repos/anonymous.git");
    let error = vcs.sync_remote(&other, &anonymous, "main").await.unwrap_err().to_string();
    assert!(f.server.refused.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(!is_infrastructure(&error), "{error}");
}
