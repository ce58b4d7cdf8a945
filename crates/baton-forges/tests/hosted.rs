//! `HostedForge` (the engine's `Forge` port on GitHub and Gitea) against the request-checking
//! fakes, each backed by a real bare repository that the fake's merges really move.
// Helpers outside #[test] fns share the tests' rule: a failed call or poisoned lock panics the test.
#![allow(clippy::unwrap_used)]

mod fakes;

use baton_adapters::forge::{CiStatus, Forge, ForgeRepo, MergeOutcome, MergeStyle, PullRequestSpec};
use baton_forges::*;
use baton_runner::Remote;
use fakes::forge::{FakeForge, Flavor, git_in};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const TOKEN: &str = "tok_s3cr3t_value_123";
const BRANCH: &str = "baton/APP-1-change";

fn git(dir: &Path, args: &[&str]) -> String {
    git_in(dir, args).unwrap_or_else(|| panic!("git {args:?} failed in {}", dir.display()))
}

/// A bare "forge-side" repository with `main`, a work clone to push from, Baton's own clone, and
/// the fake API serving that repository.
struct Setup {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
    fake: FakeForge,
    forge: HostedForge,
    repo: ForgeRepo,
}

impl Setup {
    async fn new(flavor: Flavor, style: MergeStyle) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("app.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main", "."]);
        git(dir.path(), &["clone", "-q", bare.to_str().unwrap(), "work"]);
        git(&work, &["checkout", "-q", "-b", "main"]);
        std::fs::write(work.join("README"), "hello\n").unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "-q", "-m", "initial"]);
        git(&work, &["push", "-q", "origin", "main"]);
        let (fake, base) = fakes::forge::start(flavor, TOKEN).await;
        fake.lock().unwrap().git = Some(bare.clone());
        let config = ClientConfig::new(
            &base,
            match flavor {
                Flavor::GitHub => Auth::Bearer(Secret::new(TOKEN)),
                Flavor::Gitea => Auth::GiteaToken(Secret::new(TOKEN)),
            },
        );
        let api: Arc<dyn ForgeApi> = match flavor {
            Flavor::GitHub => Arc::new(GitHub::new(config, "acme", "app").unwrap()),
            Flavor::Gitea => Arc::new(Gitea::new(config, "acme", "app").unwrap()),
        };
        let remote = Remote { url: bare.display().to_string(), credentials_env: None };
        let clone = dir.path().join("clone.git");
        remote.sync(&clone, "main").await.unwrap();
        let repo = ForgeRepo {
            name: "app".into(),
            path: clone,
            default_branch: "main".into(),
            remote: Some(remote),
            merge_style: style,
        };
        Setup { _dir: dir, bare, work, fake, forge: HostedForge::new(api), repo }
    }

    /// Commits `file` on the task branch, pushes it, fetches it into Baton's clone; its sha.
    async fn push_task_commit(&self, file: &str) -> String {
        if git_in(&self.work, &["rev-parse", "--verify", "-q", BRANCH]).is_none() {
            git(&self.work, &["checkout", "-q", "-b", BRANCH, "main"]);
        }
        std::fs::write(self.work.join(file), format!("{file}\n")).unwrap();
        git(&self.work, &["add", "."]);
        git(&self.work, &["commit", "-q", "-m", file]);
        git(&self.work, &["push", "-q", "origin", BRANCH]);
        self.repo.remote.as_ref().unwrap().sync(&self.repo.path, "main").await.unwrap();
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn main(&self) -> String {
        git(&self.bare, &["rev-parse", "refs/heads/main"])
    }

    fn count(&self, endpoint: &str) -> usize {
        self.fake.lock().unwrap().rec.count(endpoint)
    }

    fn no_violations(&self) {
        let v = self.fake.lock().unwrap().rec.violations.clone();
        assert!(v.is_empty(), "request shape violations: {v:#?}");
    }
}

fn spec(body: &str) -> PullRequestSpec {
    PullRequestSpec { branch: BRANCH.into(), title: "APP-1: change".into(), body: body.into() }
}

#[tokio::test]
async fn pull_request_is_opened_once_after_two_syncs_and_its_body_updated() {
    let s = Setup::new(Flavor::GitHub, MergeStyle::FastForward).await;
    // Not on the remote yet: nothing to open a PR for, and no API call.
    assert_eq!(s.forge.sync_pull_request(&s.repo, &spec("status: development")).await.unwrap(), None);
    assert_eq!(s.count("GET /pulls") + s.count("POST /pulls"), 0);

    s.push_task_commit("a.txt").await;
    let first = s.forge.sync_pull_request(&s.repo, &spec("status: development")).await.unwrap().unwrap();
    let second = s.forge.sync_pull_request(&s.repo, &spec("status: development")).await.unwrap().unwrap();
    assert_eq!(first, second);
    assert!(first.url.ends_with(&format!("/pull/{}", first.number)), "{first:?}");
    assert_eq!(s.count("POST /pulls"), 1, "one PR opened");
    assert_eq!(s.count("PATCH /pulls/{n}"), 0, "nothing changed, nothing updated");

    let third = s.forge.sync_pull_request(&s.repo, &spec("status: review")).await.unwrap().unwrap();
    assert_eq!(third.number, first.number);
    assert_eq!(s.count("POST /pulls"), 1);
    assert_eq!(s.count("PATCH /pulls/{n}"), 1);
    {
        let f = s.fake.lock().unwrap();
        assert_eq!(f.prs.len(), 1);
        assert_eq!(f.prs[0].body, "status: review");
        assert_eq!(f.prs[0].title, "APP-1: change");
        assert_eq!(f.prs[0].base, "main");
    }
    s.no_violations();
}

#[tokio::test]
async fn fast_forward_merge_lands_exactly_the_head() {
    let s = Setup::new(Flavor::GitHub, MergeStyle::FastForward).await;
    let base = s.main();
    let head = s.push_task_commit("a.txt").await;
    let outcome = s.forge.merge(&s.repo, BRANCH, &base, &head).await.unwrap();
    assert_eq!(outcome, MergeOutcome::Merged);
    assert_eq!(s.main(), head, "main is exactly the re-tested head");
    // A re-drive after a lost answer.
    assert_eq!(s.forge.merge(&s.repo, BRANCH, &base, &head).await.unwrap(), MergeOutcome::AlreadyMerged);
    assert_eq!(s.count("PUT /pulls/{n}/merge"), 0, "a fast-forward is a git push, not an API merge");
    s.no_violations();
}

#[tokio::test]
async fn squash_merge_call_carries_the_expected_head_and_main_gets_its_tree() {
    for flavor in [Flavor::GitHub, Flavor::Gitea] {
        let s = Setup::new(flavor, MergeStyle::Squash).await;
        let base = s.main();
        let head = s.push_task_commit("a.txt").await;
        s.forge.sync_pull_request(&s.repo, &spec("body")).await.unwrap().unwrap();
        let outcome = s.forge.merge(&s.repo, BRANCH, &base, &head).await.unwrap();
        assert_eq!(outcome, MergeOutcome::Merged, "{flavor:?}");
        let merge_calls = s.count("PUT /pulls/{n}/merge") + s.count("POST /pulls/{n}/merge");
        assert_eq!(merge_calls, 1, "{flavor:?}");
        {
            let f = s.fake.lock().unwrap();
            assert!(f.prs[0].merged);
            assert_eq!(f.prs[0].merge_style.as_deref(), Some("squash"));
        }
        let main = s.main();
        assert_ne!(main, head);
        assert_eq!(
            git(&s.bare, &["rev-parse", &format!("{main}^{{tree}}")]),
            git(&s.bare, &["rev-parse", &format!("{head}^{{tree}}")])
        );
        assert_eq!(git(&s.bare, &["rev-parse", &format!("{main}^1")]), base);
        // Baton's clone fetched the merged main.
        assert_eq!(git(&s.repo.path, &["rev-parse", "refs/remotes/origin/main"]), main);
        // Re-driven (the answer was lost): recognised, nothing merged twice.
        assert_eq!(s.forge.merge(&s.repo, BRANCH, &base, &head).await.unwrap(), MergeOutcome::AlreadyMerged);
        assert_eq!(s.count("PUT /pulls/{n}/merge") + s.count("POST /pulls/{n}/merge"), 1);
        s.no_violations();
    }
}

#[tokio::test]
async fn a_head_moved_on_the_forge_is_moved_not_merged() {
    let s = Setup::new(Flavor::GitHub, MergeStyle::Merge).await;
    let base = s.main();
    let tested = s.push_task_commit("a.txt").await;
    s.forge.sync_pull_request(&s.repo, &spec("body")).await.unwrap().unwrap();
    // Someone pushes to the task branch after the re-test: the fenced merge refuses.
    s.push_task_commit("b.txt").await;
    let outcome = s.forge.merge(&s.repo, BRANCH, &base, &tested).await.unwrap();
    assert_eq!(outcome, MergeOutcome::Moved { current: base.clone() });
    assert_eq!(s.main(), base, "main untouched");
    assert!(!s.fake.lock().unwrap().prs[0].merged);
    s.no_violations();
}

#[tokio::test]
async fn a_moved_main_is_moved_with_no_merge_call() {
    let s = Setup::new(Flavor::Gitea, MergeStyle::Squash).await;
    let base = s.main();
    let head = s.push_task_commit("a.txt").await;
    s.forge.sync_pull_request(&s.repo, &spec("body")).await.unwrap().unwrap();
    // Another change lands on main after the merge gate re-tested.
    git(&s.work, &["checkout", "-q", "main"]);
    std::fs::write(s.work.join("other.txt"), "other\n").unwrap();
    git(&s.work, &["add", "."]);
    git(&s.work, &["commit", "-q", "-m", "other"]);
    git(&s.work, &["push", "-q", "origin", "main"]);
    let moved = s.main();
    let outcome = s.forge.merge(&s.repo, BRANCH, &base, &head).await.unwrap();
    assert_eq!(outcome, MergeOutcome::Moved { current: moved.clone() });
    assert_eq!(s.count("POST /pulls/{n}/merge"), 0, "never a blind merge");
    assert_eq!(s.main(), moved);
    s.no_violations();
}

#[tokio::test]
async fn red_ci_gives_the_check_name_and_a_bounded_log_tail() {
    let s = Setup::new(Flavor::GitHub, MergeStyle::FastForward).await;
    let head = s.push_task_commit("a.txt").await;
    assert_eq!(s.forge.ci_status(&s.repo, &head).await.unwrap(), CiStatus::NoChecks);
    let log: String = (1..=100).map(|i| format!("line {i}\n")).collect();
    s.fake
        .lock()
        .unwrap()
        .check_runs
        .insert(head.clone(), vec![json!({"name": "unit tests", "status": "in_progress", "conclusion": null})]);
    assert_eq!(s.forge.ci_status(&s.repo, &head).await.unwrap(), CiStatus::Pending { running: vec![] });
    s.fake.lock().unwrap().check_runs.insert(
        head.clone(),
        vec![json!({
            "name": "unit tests", "status": "completed", "conclusion": "failure",
            "details_url": "https://ci.example.com/run/7",
            "output": {"title": "", "summary": "", "text": log}
        })],
    );
    match s.forge.ci_status(&s.repo, &head).await.unwrap() {
        CiStatus::Red { check, url, log_tail } => {
            assert_eq!(check, "unit tests");
            assert_eq!(url.as_deref(), Some("https://ci.example.com/run/7"));
            assert_eq!(log_tail.lines().count(), 40, "{log_tail}");
            assert!(log_tail.starts_with("line 61\n") && log_tail.ends_with("line 100"), "{log_tail}");
        }
        other => panic!("expected red, got {other:?}"),
    }
    let long: String = (1..=30).map(|i| format!("{i:03} {}\n", "x".repeat(300))).collect();
    assert!(bounded_tail_len(&long) <= 4096);
    s.no_violations();
}

fn bounded_tail_len(text: &str) -> usize {
    let tail = baton_forges::hosted::bounded_tail(text);
    assert!(text.trim_end().ends_with(&tail), "a tail of the text");
    tail.len()
}

#[tokio::test]
async fn deleting_a_branch_goes_by_git_on_the_remote() {
    let s = Setup::new(Flavor::GitHub, MergeStyle::FastForward).await;
    s.push_task_commit("a.txt").await;
    s.forge.delete_branch(&s.repo, BRANCH).await.unwrap();
    assert!(git_in(&s.bare, &["rev-parse", "--verify", "-q", &format!("refs/heads/{BRANCH}")]).is_none());
    assert!(s.forge.delete_branch(&s.repo, "main").await.is_err(), "the default branch is refused");
    s.no_violations();
}
