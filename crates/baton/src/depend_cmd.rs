//! `baton task depend ID --on ID[,ID]` and `baton task undepend ID --on ID[,ID]`: declare and
//! withdraw task dependencies (SPEC §6.4) through the engine, which refuses a cycle and names it.

use crate::cli::{EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, EXIT_SUPPRESSED, EXIT_USAGE};
use crate::output::{self, safe};
use baton_engine::{Engine, EngineError};
use baton_store::TaskKey;

/// Who a CLI declaration is recorded as.
fn cli_principal() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

/// The exit code and message of an engine refusal; other errors go up.
fn refusal(error: EngineError) -> anyhow::Result<u8> {
    match error {
        EngineError::NotFound(what) => {
            warn_line!("error: no {what}; `baton task list --all` shows them");
            Ok(EXIT_NOT_FOUND)
        }
        EngineError::Invalid(message) => {
            warn_line!("error: {message}");
            Ok(EXIT_USAGE)
        }
        EngineError::Refused(message) => {
            warn_line!("error: {message}; nothing changed");
            Ok(EXIT_ERROR)
        }
        other => Err(other.into()),
    }
}

pub async fn depend(engine: &Engine, id: &str, on: &[String], json: bool) -> anyhow::Result<u8> {
    let by = cli_principal();
    let mut answers = Vec::new();
    for dependency in on {
        match engine.declare_dependency(&TaskKey::parse(id), &TaskKey::parse(dependency.trim()), &by).await {
            Ok(declared) => {
                let (task, on) = (&declared.task.work_item_id, &declared.depends_on.work_item_id);
                if !json {
                    let what = if declared.created { "now waits for" } else { "already waited for" };
                    say!("{}: {what} {}", safe(task), safe(on));
                }
                answers.push(serde_json::json!({ "task": task, "depends_on": on, "created": declared.created }));
            }
            Err(error) => return refusal(error),
        }
    }
    if json {
        output::print_json(&answers);
    }
    Ok(EXIT_OK)
}

pub async fn undepend(engine: &Engine, id: &str, on: &[String], json: bool) -> anyhow::Result<u8> {
    let mut removed_any = false;
    let mut answers = Vec::new();
    for dependency in on {
        match engine.withdraw_dependency(&TaskKey::parse(id), &TaskKey::parse(dependency.trim())).await {
            Ok(removed) => {
                removed_any |= removed;
                if !json {
                    let what = if removed { "no longer waits for" } else { "did not wait for" };
                    say!("{}: {what} {}", safe(id), safe(dependency));
                }
                answers.push(serde_json::json!({ "depends_on": dependency, "removed": removed }));
            }
            Err(error) => return refusal(error),
        }
    }
    if json {
        output::print_json(&answers);
    }
    Ok(if removed_any { EXIT_OK } else { EXIT_SUPPRESSED })
}
