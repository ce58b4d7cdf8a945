//! The local forge's merge styles on a real repository, and `ForgeSet`'s routing.
// Test scaffolding: a failed git call should panic the test.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use async_trait::async_trait;
use baton_adapters::AdapterError;
use baton_adapters::forge::{
    CiStatus, Forge, ForgeRepo, ForgeSet, LocalForge, MergeOutcome, MergeStyle, PullRequestRef, PullRequestSpec,
};
use std::path::Path;
use std::sync::Arc;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository with `main` and a task branch one commit ahead; (base, head).
fn repo(dir: &Path) -> (String, String) {
    git(dir, &["init", "-q", "--bare", "-b", "main", "."]);
    let empty = git(dir, &["hash-object", "-t", "tree", "-w", "--stdin"]);
    let base = git(dir, &["commit-tree", &empty, "-m", "initial"]);
    git(dir, &["update-ref", "refs/heads/main", &base]);
    let blob = git(dir, &["hash-object", "-w", "/dev/null"]);
    git(dir, &["update-index", "--add", "--cacheinfo", &format!("100644,{blob},a.txt")]);
    let tree = git(dir, &["write-tree"]);
    let head = git(dir, &["commit-tree", &tree, "-p", &base, "-m", "APP-1: change"]);
    git(dir, &["update-ref", "refs/heads/baton/APP-1", &head]);
    (base, head)
}

fn forge_repo(dir: &Path, style: MergeStyle) -> ForgeRepo {
    ForgeRepo {
        name: "app".into(),
        path: dir.to_path_buf(),
        default_branch: "main".into(),
        remote: None,
        merge_style: style,
    }
}

#[tokio::test]
async fn merge_style_makes_a_merge_commit_with_the_retested_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (base, head) = repo(dir.path());
    let repo = forge_repo(dir.path(), MergeStyle::Merge);
    assert_eq!(LocalForge.merge(&repo, "baton/APP-1", &base, &head).await.unwrap(), MergeOutcome::Merged);
    let main = git(dir.path(), &["rev-parse", "refs/heads/main"]);
    assert_ne!(main, head);
    assert_eq!(git(dir.path(), &["rev-parse", &format!("{main}^1")]), base);
    assert_eq!(git(dir.path(), &["rev-parse", &format!("{main}^2")]), head);
    assert_eq!(
        git(dir.path(), &["rev-parse", &format!("{main}^{{tree}}")]),
        git(dir.path(), &["rev-parse", &format!("{head}^{{tree}}")])
    );
    // A re-drive finds the merge it made.
    assert_eq!(LocalForge.merge(&repo, "baton/APP-1", &base, &head).await.unwrap(), MergeOutcome::AlreadyMerged);
    assert_eq!(git(dir.path(), &["rev-parse", "refs/heads/main"]), main);
}

#[tokio::test]
async fn fast_forward_and_squash_move_main_to_the_head_itself() {
    for style in [MergeStyle::FastForward, MergeStyle::Squash] {
        let dir = tempfile::tempdir().unwrap();
        let (base, head) = repo(dir.path());
        let repo = forge_repo(dir.path(), style);
        assert_eq!(LocalForge.merge(&repo, "baton/APP-1", &base, &head).await.unwrap(), MergeOutcome::Merged);
        assert_eq!(git(dir.path(), &["rev-parse", "refs/heads/main"]), head, "{style:?}");
        let stale = LocalForge.merge(&repo, "baton/APP-1", &"0".repeat(40), &head).await.unwrap();
        assert_eq!(stale, MergeOutcome::AlreadyMerged);
    }
}

struct Named(&'static str);

#[async_trait]
impl Forge for Named {
    fn name(&self) -> &str {
        self.0
    }
    async fn merge(&self, _: &ForgeRepo, _: &str, _: &str, _: &str) -> Result<MergeOutcome, AdapterError> {
        Err(AdapterError::Rejected(self.0.into()))
    }
    async fn sync_pull_request(
        &self,
        _: &ForgeRepo,
        _: &PullRequestSpec,
    ) -> Result<Option<PullRequestRef>, AdapterError> {
        Ok(Some(PullRequestRef { number: 1, url: self.0.into() }))
    }
    async fn ci_status(&self, _: &ForgeRepo, _: &str) -> Result<CiStatus, AdapterError> {
        Ok(CiStatus::Green)
    }
    async fn delete_branch(&self, _: &ForgeRepo, _: &str) -> Result<(), AdapterError> {
        Ok(())
    }
}

#[tokio::test]
async fn forge_set_routes_by_repository_name_else_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let set = ForgeSet::new(Arc::new(LocalForge)).with("app", Arc::new(Named("hosted")));
    let spec = PullRequestSpec { branch: "baton/APP-1".into(), title: "t".into(), body: "b".into() };
    let app = forge_repo(dir.path(), MergeStyle::FastForward);
    let other = ForgeRepo { name: "other".into(), ..app.clone() };
    assert_eq!(set.sync_pull_request(&app, &spec).await.unwrap().unwrap().url, "hosted");
    assert_eq!(set.ci_status(&app, "x").await.unwrap(), CiStatus::Green);
    assert_eq!(set.sync_pull_request(&other, &spec).await.unwrap(), None, "local: no PR");
    assert_eq!(set.ci_status(&other, "x").await.unwrap(), CiStatus::NoChecks);
}
