//! Worktrees (SPEC §6.1): one per task under `<data_dir>/worktrees/<repo>/<work-item-id>`, from
//! sanitized identifiers only, verified to stay under the root, removed when the task ends.

use crate::EngineError;
use crate::settings::RepoSettings;
use baton_domain::WorkItemId;
use baton_domain::ids::valid_repo_name;
use baton_runner::Git;
use baton_runner::paths::join_under;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The worktree path of a task, or an error when an identifier is unsafe.
pub fn worktree_path(root: &Path, repo: &str, work_item: &str) -> Result<PathBuf, EngineError> {
    if !valid_repo_name(repo) {
        return Err(EngineError::Invalid(format!("repository name `{repo}` is not a safe path component")));
    }
    let id = WorkItemId::parse(work_item)
        .ok_or_else(|| EngineError::Invalid(format!("work-item id `{work_item}` is not PREFIX-NNN")))?;
    join_under(root, &[repo, id.as_str()])
        .ok_or_else(|| EngineError::Invalid(format!("worktree path for {repo}/{work_item} leaves {}", root.display())))
}

/// Makes sure the task's worktree exists on its branch (leftovers are cleaned by the caller).
pub async fn ensure_worktree(
    repo: &RepoSettings,
    path: &Path,
    branch: &str,
    timer: &Arc<AtomicU64>,
) -> Result<Git, EngineError> {
    let main = Git::new(&repo.path).with_timer(timer.clone());
    let git = Git::new(path).with_timer(timer.clone());
    if path.join(".git").exists() {
        return Ok(git);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| EngineError::Io(format!("create {}: {e}", parent.display())))?;
    }
    // A stale registration (directory deleted by hand) would block `worktree add`.
    main.run(&["worktree", "prune"]).await?;
    let path_text = path.display().to_string();
    if main.rev(&format!("refs/heads/{branch}")).await.is_some() {
        main.run(&["worktree", "add", "-q", &path_text, branch]).await?;
    } else {
        main.run(&["worktree", "add", "-q", "-b", branch, &path_text, &repo.default_branch]).await?;
    }
    Ok(git)
}

/// Discards uncommitted leftovers of a run that died mid-way, before a stage runs afresh. Never
/// called for a re-adopted agent: what it wrote before the restart is its work.
pub async fn clean_worktree(git: &Git) -> Result<(), EngineError> {
    git.run(&["reset", "-q", "--hard"]).await?;
    git.run(&["clean", "-q", "-fd"]).await?;
    Ok(())
}

/// Removes the task's worktree (forced: its work is committed or abandoned) and prunes the registration.
pub async fn remove_worktree(repo: &RepoSettings, path: &Path) -> Result<(), EngineError> {
    let main = Git::new(&repo.path);
    if path.exists() {
        let path_text = path.display().to_string();
        if main.run(&["worktree", "remove", "--force", &path_text]).await.is_err() {
            std::fs::remove_dir_all(path).map_err(|e| EngineError::Io(format!("remove {}: {e}", path.display())))?;
        }
    }
    main.run(&["worktree", "prune"]).await?;
    Ok(())
}
