//! Worktrees (SPEC §6.1): one per task under `<data_dir>/worktrees/<repo>/<work-item-id>`, from
//! sanitized identifiers only, verified to stay under the root, removed when the task ends (the
//! git work itself goes through the `Vcs` port).

use crate::EngineError;
use baton_domain::WorkItemId;
use baton_domain::ids::valid_repo_name;
use baton_runner::paths::join_under;
use std::path::{Path, PathBuf};

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
