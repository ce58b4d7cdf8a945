//! `GitVcs::ensure_worktree` on a path that already exists: reused only when it is a registered
//! worktree of the repository with the task's branch checked out, else removed and re-created, so
//! a new task never works in an old task's tree (a reused work-item id after a lost database).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_runner::{Git, GitVcs, Vcs};
use std::path::Path;

#[path = "support/local_repo.rs"]
mod local_repo;

use local_repo::{git, repo};

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

/// What `git rev-parse` says `name` is in `dir` (the reference `read_ref` must agree with).
async fn rev_parse(dir: &Path, name: &str) -> Option<String> {
    Git::new(dir).run(&["rev-parse", "--verify", "--quiet", &format!("{name}^{{commit}}")]).await.ok()
}

#[tokio::test]
async fn refs_read_from_gits_files_agree_with_git_loose_packed_worktree_and_detached() {
    let (_tmp, repo, worktree) = repo().await;
    GitVcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-task", "main").await.unwrap();
    std::fs::write(worktree.join("a.txt"), "a\n").unwrap();
    git(&worktree, &["add", "a.txt"]).await;
    git(&worktree, &["commit", "-q", "-m", "a"]).await;
    let check = |dir: std::path::PathBuf, name: &'static str| async move {
        let fast = baton_runner::git::read_ref(&dir, name);
        assert_eq!(fast, rev_parse(&dir, name).await, "{name} in {}", dir.display());
        fast
    };
    // Loose refs: the repository's HEAD and branches, the worktree's own HEAD (not the repository's).
    let main = check(repo.clone(), "HEAD").await.expect("main's HEAD");
    assert_eq!(check(repo.clone(), "refs/heads/main").await.as_deref(), Some(main.as_str()));
    let task = check(worktree.clone(), "HEAD").await.expect("the worktree's HEAD");
    assert_ne!(task, main, "a worktree's HEAD is its own branch");
    assert_eq!(check(worktree.clone(), "refs/heads/baton/DEMO-001-task").await.as_deref(), Some(task.as_str()));
    // Packed: the loose files are gone, packed-refs answers.
    git(&repo, &["pack-refs", "--all"]).await;
    assert!(!repo.join(".git/refs/heads/main").exists());
    assert_eq!(check(repo.clone(), "refs/heads/main").await.as_deref(), Some(main.as_str()));
    assert_eq!(check(worktree.clone(), "HEAD").await.as_deref(), Some(task.as_str()));
    // A branch moved after packing: the loose ref wins over the stale packed line.
    git(&repo, &["update-ref", "refs/heads/main", &task]).await;
    assert_eq!(check(repo.clone(), "refs/heads/main").await.as_deref(), Some(task.as_str()));
    // Detached HEAD.
    git(&worktree, &["checkout", "-q", "--detach", &main]).await;
    assert_eq!(check(worktree.clone(), "HEAD").await.as_deref(), Some(main.as_str()));
    // What the files cannot answer is left to git: a missing branch, other names.
    assert_eq!(baton_runner::git::read_ref(&repo, "refs/heads/nope"), None);
    assert_eq!(baton_runner::git::read_ref(&repo, "refs/heads/../HEAD"), None);
    assert_eq!(baton_runner::git::read_ref(&repo, "main"), None);
    assert_eq!(baton_runner::git::read_ref(&repo, "HEAD^"), None);
    assert_eq!(Git::new(&repo).rev("HEAD^").await, rev_parse(&repo, "HEAD^").await);
    assert_eq!(Git::new(&repo).rev("refs/heads/nope").await, None);
}

#[tokio::test]
async fn commit_all_says_whether_it_committed() {
    let (_tmp, repo, _worktree) = repo().await;
    let git_repo = Git::new(&repo);
    assert!(!git_repo.commit_all("nothing").await.unwrap(), "a clean tree commits nothing");
    assert!(git_repo.is_clean().await.unwrap());
    std::fs::write(repo.join("new.txt"), "new\n").unwrap();
    assert!(!git_repo.is_clean().await.unwrap(), "an untracked file is a change");
    assert!(git_repo.commit_all("add new").await.unwrap());
    assert!(git_repo.is_clean().await.unwrap());
    assert_eq!(git(&repo, &["log", "-1", "--format=%s"]).await, "add new");
}

#[tokio::test]
async fn a_sandboxed_agents_git_add_into_its_private_objects_still_commits() {
    let (tmp, repo, worktree) = repo().await;
    GitVcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-task", "main").await.unwrap();
    // The agent, sandboxed: its git writes objects to the run's own directory, the repository's
    // objects as alternates; it stages its file there. The file is older than the index, so git
    // trusts the index entry later (as it would after any real agent run).
    let private = tmp.path().join("run").join("git-objects");
    std::fs::create_dir_all(&private).unwrap();
    let file = worktree.join("agent.txt");
    std::fs::write(&file, "the agent's work\n").unwrap();
    let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    std::fs::File::options().write(true).open(&file).unwrap().set_modified(long_ago).unwrap();
    let agent = Git::new(&worktree).with_env(vec![
        ("GIT_OBJECT_DIRECTORY".into(), private.display().to_string()),
        ("GIT_ALTERNATE_OBJECT_DIRECTORIES".into(), repo.join(".git/objects").display().to_string()),
    ]);
    agent.run(&["add", "agent.txt"]).await.unwrap();
    assert!(std::fs::read_dir(&private).unwrap().next().is_some(), "the blob went to the private directory");
    // Baton commits after the run, outside the sandbox: the index names a blob only the run
    // directory has, so it is rebuilt first, and the commit holds the file.
    assert!(GitVcs.commit_all(&worktree, "DEMO-001 development", Some(&private)).await.unwrap());
    std::fs::remove_dir_all(tmp.path().join("run")).unwrap();
    assert_eq!(git(&worktree, &["show", "HEAD:agent.txt"]).await, "the agent's work");
    git(&repo, &["fsck", "--no-progress"]).await;
    // An agent that staged nothing privately: the index is used as it is.
    std::fs::write(worktree.join("more.txt"), "more\n").unwrap();
    assert!(GitVcs.commit_all(&worktree, "DEMO-001 review", Some(&tmp.path().join("nowhere"))).await.unwrap());
    assert_eq!(git(&worktree, &["show", "HEAD:more.txt"]).await, "more");
    assert!(!GitVcs.commit_all(&worktree, "nothing", None).await.unwrap());
}

/// Removing a worktree whose directory was deleted by hand still forgets its registration (its
/// branch can be checked out again), and removing one already removed is a no-op.
#[tokio::test]
async fn removing_a_hand_deleted_worktree_forgets_it_and_a_second_removal_is_a_no_op() {
    let (_tmp, repo, worktree) = repo().await;
    let vcs = GitVcs;
    vcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-task", "main").await.unwrap();
    std::fs::remove_dir_all(&worktree).unwrap();
    assert!(git(&repo, &["worktree", "list", "--porcelain"]).await.contains("DEMO-001"), "git still lists it");
    vcs.remove_worktree(&repo, &worktree).await.unwrap();
    assert!(!git(&repo, &["worktree", "list", "--porcelain"]).await.contains("DEMO-001"), "the registration is gone");
    vcs.remove_worktree(&repo, &worktree).await.unwrap();
    // The branch is free: another worktree of it can be added.
    vcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-task", "main").await.unwrap();
    assert_eq!(head_branch(&worktree).await, "baton/DEMO-001-task");
}
