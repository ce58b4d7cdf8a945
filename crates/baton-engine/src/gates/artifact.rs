//! The `artifact` gate: the stage's artifact exists under `docs/baton/<WORK-ID>/` and is not empty.

use crate::executor::JobContext;
use baton_domain::{GateVerdict, Verdict};

/// `docs/baton/<WORK-ID>/<name>`.
pub fn artifact_relative_path(work_item: &str, name: &str) -> String {
    format!("docs/baton/{work_item}/{name}")
}

pub fn check(ctx: &JobContext<'_>) -> GateVerdict {
    let Some(name) = ctx.stage.artifact.as_deref() else {
        return GateVerdict::new("artifact", Verdict::Error, "the stage names no artifact file");
    };
    let relative = artifact_relative_path(&ctx.task.work_item_id, name);
    match std::fs::metadata(ctx.worktree.join(&relative)) {
        Ok(meta) if meta.is_file() && meta.len() > 0 => {
            GateVerdict::new("artifact", Verdict::Pass, format!("{relative} present"))
        }
        Ok(_) => GateVerdict::new("artifact", Verdict::Fail, format!("{relative} is empty")),
        Err(_) => {
            GateVerdict::new("artifact", Verdict::Fail, format!("{relative} is missing: write it before finishing"))
        }
    }
}
