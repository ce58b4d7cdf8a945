//! Fewer git processes per job, with the same answers: a worktree Baton's own commit just left
//! clean is not asked `git status` again until something may have written there; a commit's
//! artifacts are read in one `cat-file --batch`; a reference git's files say is absent is not
//! asked of git.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_runner::git::{Lookup, lookup_ref};
use baton_runner::{CommandSpec, Git, GitVcs, Vcs, run_command};
use std::path::Path;
use std::time::Duration;

#[path = "support/local_repo.rs"]
mod local_repo;

use local_repo::git;

/// A repository with one commit on `main` and a task worktree on its own branch.
async fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let (tmp, repo, worktree) = local_repo::repo().await;
    GitVcs.ensure_worktree(&repo, &worktree, "baton/DEMO-001-task", "main").await.unwrap();
    (tmp, repo, worktree)
}

/// Commits a change through the port (as a job's end does) and leaves a stray file behind it,
/// written with no process at all.
async fn commit_then_stray(worktree: &Path, n: u32) -> std::path::PathBuf {
    std::fs::write(worktree.join(format!("work-{n}.txt")), "work\n").unwrap();
    assert!(GitVcs.commit_all(worktree, &format!("work {n}"), None).await.unwrap());
    let stray = worktree.join("stray.txt");
    std::fs::write(&stray, "left behind\n").unwrap();
    stray
}

#[tokio::test]
async fn a_worktree_baton_just_committed_is_asked_git_status_again_once_anything_may_have_written_there() {
    let (tmp, repo, worktree) = setup().await;

    // Right after Baton's own commit, nothing Baton started has run there: clean() trusts the
    // commit and runs no git at all (the stray file, written behind Baton's back, is not seen).
    let stray = commit_then_stray(&worktree, 1).await;
    GitVcs.clean(&worktree).await.unwrap();
    assert!(stray.exists(), "no git status ran: the mark of Baton's commit answered");

    // A process Baton starts in the worktree (a test gate, an agent) may write there.
    let spec = CommandSpec {
        argv: vec!["true".into()],
        cwd: worktree.clone(),
        env: Vec::new(),
        timeout: Duration::from_secs(30),
        log: tmp.path().join("true.log"),
    };
    assert_eq!(run_command(&spec).await.unwrap().exit.code, Some(0));
    GitVcs.clean(&worktree).await.unwrap();
    assert!(!stray.exists(), "after a process ran in the worktree, clean() asked git and removed the stray file");

    // So may a process started in a directory inside it.
    let stray = commit_then_stray(&worktree, 2).await;
    std::fs::create_dir_all(worktree.join("sub")).unwrap();
    let inside = CommandSpec { cwd: worktree.join("sub"), ..spec.clone() };
    run_command(&inside).await.unwrap();
    GitVcs.clean(&worktree).await.unwrap();
    assert!(!stray.exists(), "a process started below the worktree also counts");

    // A process elsewhere (another task's worktree, the repository) does not.
    let stray = commit_then_stray(&worktree, 3).await;
    let elsewhere = CommandSpec { cwd: tmp.path().join("repo"), ..spec.clone() };
    run_command(&elsewhere).await.unwrap();
    GitVcs.clean(&worktree).await.unwrap();
    assert!(stray.exists(), "a process in another directory does not make this worktree unknown");
    std::fs::remove_file(&stray).unwrap();

    // A git command that may write the tree, run in the worktree.
    let stray = commit_then_stray(&worktree, 4).await;
    git(&worktree, &["update-index", "--refresh"]).await;
    GitVcs.clean(&worktree).await.unwrap();
    assert!(!stray.exists(), "a git command that is not read-only forgets the mark");

    // HEAD moved behind Baton's back (the branch updated from the repository's directory).
    let stray = commit_then_stray(&worktree, 5).await;
    let main = git(&repo, &["rev-parse", "refs/heads/main"]).await;
    git(&repo, &["update-ref", "refs/heads/baton/DEMO-001-task", &main]).await;
    GitVcs.clean(&worktree).await.unwrap();
    assert!(!stray.exists(), "a mark counts only for the HEAD it was made at");
    assert!(!worktree.join("work-5.txt").exists(), "the tree was reset to the moved HEAD");
}

#[tokio::test]
async fn a_fresh_worktree_is_known_clean_and_a_read_only_git_command_keeps_the_mark() {
    let (_tmp, _repo, worktree) = setup().await;
    let stray = worktree.join("stray.txt");
    std::fs::write(&stray, "left behind\n").unwrap();
    // Reading (log, rev-parse, diff) writes nothing.
    Git::new(&worktree).run(&["log", "-1", "--format=%s"]).await.unwrap();
    Git::new(&worktree).run(&["rev-parse", "HEAD"]).await.unwrap();
    GitVcs.clean(&worktree).await.unwrap();
    assert!(stray.exists(), "a checkout git just made holds its HEAD; reading it keeps that known");
    // `Git::is_clean` itself always asks git.
    assert!(!Git::new(&worktree).is_clean().await.unwrap());
}

#[tokio::test]
async fn a_commits_files_are_read_in_one_batch_in_the_order_asked() {
    let (_tmp, repo, _worktree) = setup().await;
    std::fs::create_dir_all(repo.join("docs")).unwrap();
    std::fs::write(repo.join("docs/a.md"), "# A\nline two\n").unwrap();
    std::fs::write(repo.join("docs/b.md"), "").unwrap();
    std::fs::write(repo.join("docs/c.md"), "no newline at the end").unwrap();
    git(&repo, &["add", "-A"]).await;
    git(&repo, &["commit", "-q", "-m", "docs"]).await;
    let head = git(&repo, &["rev-parse", "HEAD"]).await;
    let asked: Vec<String> =
        ["docs/a.md", "docs/missing.md", "../escape.md", "docs", "docs/b.md", "docs/c.md", "docs/a\nb.md"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let texts = GitVcs.read_all_at(&repo, &head, &asked).await;
    assert_eq!(
        texts,
        vec![
            Some("# A\nline two\n".to_string()),
            None,
            None,
            None, // a tree, not a file
            Some(String::new()),
            Some("no newline at the end".to_string()),
            None,
        ]
    );
    // Each file's answer is what `read_at` (one `git show` each, its output trimmed) gives.
    for (path, text) in asked.iter().zip(&texts).filter(|(path, _)| *path != "docs") {
        let trimmed = text.as_deref().map(str::trim);
        assert_eq!(GitVcs.read_at(&repo, &head, path).await.as_deref(), trimmed, "{path:?}");
    }
    // An unknown commit: nothing.
    let unknown = "0".repeat(40);
    assert_eq!(GitVcs.read_all_at(&repo, &unknown, &asked[..1]).await, vec![None]);
}

#[tokio::test]
async fn a_commits_directory_and_its_documents_read_together_match_the_two_step_read() {
    let (_tmp, repo, _worktree) = setup().await;
    let docs = repo.join("docs/baton/DEMO-001");
    std::fs::create_dir_all(docs.join("sub.md")).unwrap();
    std::fs::write(docs.join("01-analysis.md"), "# A\nline two\n").unwrap();
    std::fs::write(docs.join("04 review.md"), "---\nverdict: approve\n---\n").unwrap();
    std::fs::write(docs.join("notes.txt"), "not a document\n").unwrap();
    std::fs::write(docs.join("sub.md/inner.md"), "inside\n").unwrap();
    std::fs::write(docs.join("z-empty.md"), "").unwrap();
    git(&repo, &["add", "-A"]).await;
    git(&repo, &["commit", "-q", "-m", "docs"]).await;
    let head = git(&repo, &["rev-parse", "HEAD"]).await;
    let relative = "docs/baton/DEMO-001";
    let one = GitVcs.texts_at(&repo, &head, relative, ".md", 10).await;
    assert_eq!(
        one,
        vec![
            ("01-analysis.md".to_string(), Some("# A\nline two\n".to_string())),
            ("04 review.md".to_string(), Some("---\nverdict: approve\n---\n".to_string())),
            ("sub.md".to_string(), None), // a directory, not a document
            ("z-empty.md".to_string(), Some(String::new())),
        ]
    );
    // The same as `ls-tree` then `cat-file --batch` (the trait's two-step default).
    let names: Vec<String> =
        GitVcs.files_at(&repo, &head, relative).await.into_iter().filter(|n| n.ends_with(".md")).collect();
    let paths: Vec<String> = names.iter().map(|n| format!("{relative}/{n}")).collect();
    let two: Vec<(String, Option<String>)> =
        names.into_iter().zip(GitVcs.read_all_at(&repo, &head, &paths).await).collect();
    assert_eq!(one, two);
    // At most `max`; a missing directory, a file, an unknown commit or an unsafe path: nothing.
    assert_eq!(GitVcs.texts_at(&repo, &head, relative, ".md", 1).await.len(), 1);
    assert!(GitVcs.texts_at(&repo, &head, "docs/baton/DEMO-002", ".md", 10).await.is_empty());
    assert!(GitVcs.texts_at(&repo, &head, "docs/baton/DEMO-001/01-analysis.md", ".md", 10).await.is_empty());
    assert!(GitVcs.texts_at(&repo, &"0".repeat(40), relative, ".md", 10).await.is_empty());
    assert!(GitVcs.texts_at(&repo, &head, "docs/../docs", ".md", 10).await.is_empty());
}

#[tokio::test]
async fn a_reference_absent_from_gits_files_is_absent_for_git_too() {
    let (_tmp, repo, worktree) = setup().await;
    for dir in [&repo, &worktree] {
        for name in ["refs/heads/nope", "refs/baton/built-on/baton/DEMO-001-task"] {
            assert_eq!(lookup_ref(dir, name), Lookup::Absent, "{name}");
            let git_says = Git::new(dir).run(&["rev-parse", "-q", "--verify", name]).await;
            assert!(git_says.is_err(), "git agrees {name} does not exist");
        }
    }
    // Loose and packed references are found, in the repository and from the worktree.
    let main = git(&repo, &["rev-parse", "refs/heads/main"]).await;
    git(&repo, &["update-ref", "refs/baton/built-on/baton/DEMO-001-task", &main]).await;
    assert_eq!(lookup_ref(&worktree, "refs/baton/built-on/baton/DEMO-001-task"), Lookup::Found(main.clone()));
    git(&repo, &["pack-refs", "--all"]).await;
    assert_eq!(lookup_ref(&worktree, "refs/baton/built-on/baton/DEMO-001-task"), Lookup::Found(main.clone()));
    assert_eq!(lookup_ref(&repo, "refs/heads/main"), Lookup::Found(main));
    // What the files cannot answer is left to git.
    assert_eq!(lookup_ref(&repo, "main"), Lookup::Unknown);
    assert_eq!(lookup_ref(&repo, "refs/heads/../HEAD"), Lookup::Unknown);
    assert_eq!(lookup_ref(&repo, "HEAD^"), Lookup::Unknown);
}
