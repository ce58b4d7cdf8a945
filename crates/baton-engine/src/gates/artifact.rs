//! The `artifact` gate: the stage's artifact exists under `docs/baton/<WORK-ID>/` and is not empty.

use super::GateContext;
use baton_domain::{GateVerdict, Verdict};

/// `docs/baton/<WORK-ID>/<name>`.
pub fn artifact_relative_path(work_item: &str, name: &str) -> String {
    format!("docs/baton/{work_item}/{name}")
}

pub async fn check(ctx: &GateContext<'_>) -> GateVerdict {
    let Some(name) = ctx.stage.artifact.as_deref() else {
        return GateVerdict::new("artifact", Verdict::Error, "the stage names no artifact file");
    };
    let relative = artifact_relative_path(&ctx.task.work_item_id, name);
    match ctx.vcs.read_file(ctx.worktree, &relative).await {
        Some(text) if !text.is_empty() => GateVerdict::new("artifact", Verdict::Pass, format!("{relative} present")),
        Some(_) => GateVerdict::new("artifact", Verdict::Fail, format!("{relative} is empty")),
        None => {
            GateVerdict::new("artifact", Verdict::Fail, format!("{relative} is missing: write it before finishing"))
        }
    }
}
