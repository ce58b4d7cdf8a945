//! Fewer git processes per job, with the same answers: a worktree Baton's own commit just left
//! clean is not asked `git status` again until something may have written there; a commit's
//! artifacts are read in one `cat-file --batch`; a reference git's files say is absent is not
//! asked of git.

// Real file times and real pauses: the fingerprint reads the file system's own clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

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

/// `true`, started at `cwd` as Baton starts any process (its log under `tmp`).
fn true_at(tmp: &Path, cwd: &Path) -> CommandSpec {
    CommandSpec {
        argv: vec!["true".into()],
        cwd: cwd.to_path_buf(),
        env: Vec::new(),
        timeout: Duration::from_secs(30),
        log: tmp.join("true.log"),
    }
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
    let spec = true_at(tmp.path(), &worktree);
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
async fn a_process_started_in_the_worktree_through_a_link_forgets_its_mark_as_a_direct_one_does() {
    let (tmp, _repo, worktree) = setup().await;
    let spec = true_at(tmp.path(), &worktree);
    // A link to the worktree, and a link to the directory that holds it.
    let to_worktree = tmp.path().join("to-worktree");
    std::os::unix::fs::symlink(&worktree, &to_worktree).unwrap();
    let to_parent = tmp.path().join("to-parent");
    std::os::unix::fs::symlink(worktree.parent().unwrap(), &to_parent).unwrap();
    let inside_by_link = to_parent.join(worktree.file_name().unwrap()).join("sub");
    for (n, cwd) in [(1, to_worktree.clone()), (2, inside_by_link.clone())] {
        let stray = commit_then_stray(&worktree, n).await;
        // (An untracked directory: each clean that asks git removes it.)
        std::fs::create_dir_all(worktree.join("sub")).unwrap();
        run_command(&CommandSpec { cwd: cwd.clone(), ..spec.clone() }).await.unwrap();
        GitVcs.clean(&worktree).await.unwrap();
        assert!(!stray.exists(), "a process started at {} is one in the worktree", cwd.display());
    }
    // And the worktree named through a link is the one marked: a process elsewhere leaves it so.
    let stray = commit_then_stray(&worktree, 3).await;
    run_command(&CommandSpec { cwd: tmp.path().join("repo"), ..spec.clone() }).await.unwrap();
    GitVcs.clean(&to_worktree).await.unwrap();
    assert!(stray.exists(), "the mark made at the worktree's own path answers for its linked name");
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

/// Runs `script` in `worktree` as Baton runs a test gate or the merge gate's re-test: a
/// repository command under the shim, in its own run directory.
async fn repo_command(tmp: &Path, worktree: &Path, n: u32, script: &str) {
    use baton_runner::{CommandRequest, CommandRunner, ShimSupervisor, SupervisedCommands};
    let commands = SupervisedCommands::new(std::sync::Arc::new(ShimSupervisor::new(tmp.join("no-baton-binary"))));
    let request = CommandRequest {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        cwd: worktree.to_path_buf(),
        env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
        timeout: Duration::from_secs(30),
        stop_grace: Duration::from_secs(1),
        run_dir: tmp.join(format!("runs/{n}")),
        owner: "job:1".into(),
    };
    let (_keep, stop) = tokio::sync::watch::channel(false);
    let run = commands.run(&request, stop).await.unwrap();
    assert_eq!(run.output.exit.code, Some(0), "{script}: {}", run.output.tail);
}

/// A repository command that writes nothing, then the next job's clean-up.
async fn true_then_clean(tmp: &Path, worktree: &Path) {
    repo_command(tmp, worktree, 1, "true").await;
    GitVcs.clean(worktree).await.unwrap();
}

/// Runs `script` in `worktree` as any other process Baton starts there (an agent, say).
async fn process_in(tmp: &Path, worktree: &Path, script: &str) {
    let spec = CommandSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        cwd: worktree.to_path_buf(),
        env: Vec::new(),
        timeout: Duration::from_secs(30),
        log: tmp.join("process.log"),
    };
    run_command(&spec).await.unwrap();
}

/// [`commit_then_stray`], then a pause: every file time is then older than the file system's
/// clock when the next command starts, so a write by that command is told apart.
async fn settled_commit_then_stray(worktree: &Path, n: u32) -> std::path::PathBuf {
    let stray = commit_then_stray(worktree, n).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    stray
}

#[tokio::test]
async fn a_repository_command_that_writes_nothing_leaves_the_worktree_known_clean_without_git() {
    let (tmp, _repo, worktree) = setup().await;
    let stray = settled_commit_then_stray(&worktree, 1).await;
    repo_command(tmp.path(), &worktree, 1, "cat README.md work-1.txt > /dev/null; ls -R > /dev/null").await;
    GitVcs.clean(&worktree).await.unwrap();
    assert!(stray.exists(), "the files were as before the command: no git status ran");
    // A second command in a row, still writing nothing, keeps it so.
    repo_command(tmp.path(), &worktree, 2, "true").await;
    GitVcs.clean(&worktree).await.unwrap();
    assert!(stray.exists());
    // An agent (any other process started there) after the command still makes it unknown.
    process_in(tmp.path(), &worktree, "echo agent > agent.txt").await;
    GitVcs.clean(&worktree).await.unwrap();
    assert!(!stray.exists() && !worktree.join("agent.txt").exists(), "the files changed: git was asked and cleaned");
}

#[tokio::test]
async fn a_repository_command_that_writes_anything_in_the_worktree_or_its_index_has_git_asked_again() {
    let (tmp, _repo, worktree) = setup().await;
    let cases: [(&str, &str); 6] = [
        ("a new untracked file", "echo built > out.txt"),
        ("a new file in a new directory", "mkdir -p a/b && echo x > a/b/c.txt"),
        // `work\n` and `WORK\n`: the same size, written at once.
        ("a tracked file rewritten in place at the same size", "printf 'WORK\\n' > work-N.txt"),
        ("a tracked file removed", "rm work-N.txt"),
        ("a tracked file's mode", "chmod +x work-N.txt"),
        ("the index alone (the file unstaged, left in place)", "git rm -q --cached work-N.txt"),
    ];
    for (n, (what, script)) in (1u32..).zip(cases) {
        let stray = settled_commit_then_stray(&worktree, n).await;
        let script = script.replace("work-N", &format!("work-{n}"));
        repo_command(tmp.path(), &worktree, n, &script).await;
        GitVcs.clean(&worktree).await.unwrap();
        assert!(!stray.exists(), "{what}: git was asked (the stray file went with the clean-up)");
        let status = git(&worktree, &["status", "--porcelain", "--untracked-files=all"]).await;
        assert_eq!(status, "", "{what}: the worktree is what Baton committed again");
        let tracked = std::fs::read_to_string(worktree.join(format!("work-{n}.txt"))).unwrap();
        assert_eq!(tracked, "work\n", "{what}");
    }
}

#[tokio::test]
async fn a_write_by_one_command_is_not_forgiven_by_a_later_command_that_writes_nothing() {
    let (tmp, _repo, worktree) = setup().await;
    // A deploy command that leaves a file, then a health check that writes nothing.
    let stray = settled_commit_then_stray(&worktree, 1).await;
    repo_command(tmp.path(), &worktree, 1, "echo deployed > deployed.txt").await;
    // Long enough that the new file is no longer too fresh to fingerprint.
    tokio::time::sleep(Duration::from_millis(60)).await;
    repo_command(tmp.path(), &worktree, 2, "true").await;
    GitVcs.clean(&worktree).await.unwrap();
    assert!(!stray.exists() && !worktree.join("deployed.txt").exists(), "git was asked and cleaned");
    // Two commands that both write nothing keep the mark, checked once in between.
    let stray = settled_commit_then_stray(&worktree, 2).await;
    repo_command(tmp.path(), &worktree, 3, "true").await;
    repo_command(tmp.path(), &worktree, 4, "true").await;
    GitVcs.clean(&worktree).await.unwrap();
    assert!(stray.exists(), "no git status ran");
}

#[tokio::test]
async fn a_worktree_past_the_walks_limit_is_asked_git_status_as_before() {
    let (tmp, _repo, worktree) = setup().await;
    let many = worktree.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for n in 0..baton_runner::git::clean_marks::MAX_ENTRIES {
        std::fs::write(many.join(format!("{n}.txt")), "x").unwrap();
    }
    let stray = settled_commit_then_stray(&worktree, 1).await;
    true_then_clean(tmp.path(), &worktree).await;
    assert!(!stray.exists(), "too many entries to fingerprint: git was asked");
}

#[tokio::test]
async fn a_file_not_older_than_the_file_systems_clock_is_never_fingerprinted() {
    let (tmp, _repo, worktree) = setup().await;
    let stray = settled_commit_then_stray(&worktree, 1).await;
    // As if written in the very clock tick the command starts in: a later write in that tick
    // would leave its times unchanged, so the fingerprint cannot vouch for it.
    let file = std::fs::OpenOptions::new().write(true).open(worktree.join("work-1.txt")).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600)).unwrap();
    drop(file);
    true_then_clean(tmp.path(), &worktree).await;
    assert!(!stray.exists(), "no fingerprint was taken: git was asked");
}

#[tokio::test]
async fn a_rebuild_of_a_clean_worktree_leaves_it_known_clean_and_of_an_unknown_one_does_not() {
    let (tmp, repo, worktree) = setup().await;
    let advance_main = |n: u32| {
        let repo = repo.clone();
        async move {
            std::fs::write(repo.join(format!("main-{n}.txt")), "main\n").unwrap();
            git(&repo, &["add", "-A"]).await;
            git(&repo, &["commit", "-q", "-m", &format!("main {n}")]).await;
            git(&repo, &["rev-parse", "HEAD"]).await
        }
    };
    // Clean before (Baton's own commit): the rebuilt worktree is clean and known so.
    std::fs::write(worktree.join("work-1.txt"), "work\n").unwrap();
    assert!(GitVcs.commit_all(&worktree, "work 1", None).await.unwrap());
    let main = advance_main(1).await;
    let head = GitVcs.rebuild(&worktree, &main, "squashed 1").await.unwrap().expect("a new commit");
    assert!(worktree.join("main-1.txt").exists() && worktree.join("work-1.txt").exists());
    let stray = worktree.join("stray.txt");
    std::fs::write(&stray, "behind Baton's back\n").unwrap();
    GitVcs.clean(&worktree).await.unwrap();
    assert!(stray.exists(), "known clean at the rebuilt head {head}: no git status ran");
    std::fs::remove_file(&stray).unwrap();

    // Unknown before (a process ran there and wrote): the rebuild does not vouch for the files.
    std::fs::write(worktree.join("work-2.txt"), "work\n").unwrap();
    assert!(GitVcs.commit_all(&worktree, "work 2", None).await.unwrap());
    process_in(tmp.path(), &worktree, "echo left > left.txt").await;
    let main = advance_main(2).await;
    GitVcs.rebuild(&worktree, &main, "squashed 2").await.unwrap().expect("a new commit");
    assert!(worktree.join("left.txt").exists(), "a reset keeps untracked files");
    GitVcs.clean(&worktree).await.unwrap();
    assert!(!worktree.join("left.txt").exists(), "git was asked and the leftover removed");
}

#[tokio::test]
async fn batons_own_reference_written_in_place_is_what_git_reads_and_anything_unusual_is_left_to_git() {
    use baton_runner::git::write_own_ref;
    let (_tmp, repo, worktree) = setup().await;
    let main = git(&repo, &["rev-parse", "refs/heads/main"]).await;
    std::fs::write(worktree.join("work.txt"), "work\n").unwrap();
    assert!(GitVcs.commit_all(&worktree, "work", None).await.unwrap());
    let work = git(&worktree, &["rev-parse", "HEAD"]).await;
    let name = "refs/baton/built-on/baton/DEMO-001-task";

    // Written from the worktree, it lands in the common directory: git reads it from both.
    assert!(write_own_ref(&worktree, name, &main));
    assert_eq!(git(&repo, &["rev-parse", name]).await, main);
    assert_eq!(git(&worktree, &["rev-parse", name]).await, main);
    // A loose reference overrides a packed one, as git's own update does.
    git(&repo, &["pack-refs", "--all"]).await;
    assert!(write_own_ref(&repo, name, &work));
    assert_eq!(git(&repo, &["rev-parse", name]).await, work);
    assert_eq!(git(&repo, &["for-each-ref", "--format=%(objectname)", name]).await, work);
    git(&repo, &["fsck", "--no-progress"]).await;

    // A lock someone holds: nothing is written (git would refuse too).
    let lock = repo.join(".git").join(format!("{name}.lock"));
    std::fs::write(&lock, "").unwrap();
    assert!(!write_own_ref(&repo, name, &main));
    assert_eq!(git(&repo, &["rev-parse", name]).await, work, "unchanged");
    // A lock left by a writer killed while it held it (older than any write takes): taken over.
    let left = std::time::SystemTime::now() - baton_runner::git::STALE_LOCK_AFTER * 2;
    std::fs::File::options().write(true).open(&lock).unwrap().set_modified(left).unwrap();
    assert!(write_own_ref(&repo, name, &main), "a stale lock kept Baton's reference from being written");
    assert_eq!(git(&repo, &["rev-parse", name]).await, main);
    assert!(!lock.exists(), "the stale lock was left");
    assert!(write_own_ref(&repo, name, &work));

    // Names and ids git should judge, and anything outside Baton's own namespace, are left to git.
    for bad in [
        "refs/heads/main",
        "refs/baton/built-on/../heads/main",
        "refs/baton/built-on/x.lock",
        "refs/baton/built-on/.hidden",
        "refs/baton/built-on/a b",
        "refs/baton/built-on//x",
        "refs/baton/",
    ] {
        assert!(!write_own_ref(&repo, bad, &main), "{bad}");
    }
    assert!(!write_own_ref(&repo, "refs/baton/built-on/y", "HEAD"), "only a full object id");
    // A file in the way of a directory the name needs.
    assert!(write_own_ref(&repo, "refs/baton/built-on/z", &main));
    assert!(!write_own_ref(&repo, "refs/baton/built-on/z/under", &main));
    assert_eq!(git(&repo, &["rev-parse", "refs/heads/main"]).await, main, "main untouched throughout");
}

// A Baton killed in the middle of a commit leaves the locks of the worktree's index and of its
// branch: the next job's clean removes them (the branch's only once stale), and a commit works.
#[tokio::test]
async fn clean_removes_the_locks_a_killed_commit_left() {
    let (_tmp, _repo, worktree) = setup().await;
    let git_dir = std::path::PathBuf::from(git(&worktree, &["rev-parse", "--absolute-git-dir"]).await);
    let common =
        std::path::PathBuf::from(git(&worktree, &["rev-parse", "--path-format=absolute", "--git-common-dir"]).await);
    let branch = git(&worktree, &["symbolic-ref", "HEAD"]).await;
    let branch_lock = common.join(format!("{branch}.lock"));
    std::fs::write(&branch_lock, "").unwrap();
    std::fs::write(git_dir.join("index.lock"), "").unwrap();
    // A fresh lock may be a live writer's: kept.
    GitVcs.clean(&worktree).await.unwrap();
    assert!(branch_lock.exists(), "a fresh branch lock was removed");
    let left = std::time::SystemTime::now() - baton_runner::git::STALE_LOCK_AFTER * 2;
    std::fs::File::options().write(true).open(&branch_lock).unwrap().set_modified(left).unwrap();
    GitVcs.clean(&worktree).await.unwrap();
    assert!(!branch_lock.exists(), "the stale branch lock was left");
    assert!(!git_dir.join("index.lock").exists(), "the index lock was left");
    std::fs::write(worktree.join("after.txt"), "after\n").unwrap();
    assert!(GitVcs.commit_all(&worktree, "after the kill", None).await.unwrap(), "the commit did not go through");
}
