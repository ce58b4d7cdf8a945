//! Prompt templates (minijinja) per role, shipped in the binary and overridable from
//! `<data_dir>/prompts/<role>.md.j2`. Ticket text reaches agents only as prompt content.

use crate::EngineError;
use minijinja::Environment;
use serde::Serialize;
use std::path::Path;

const BUILT_IN: &[(&str, &str)] = &[
    ("_context.md.j2", include_str!("../prompts/_context.md.j2")),
    ("analyst.md.j2", include_str!("../prompts/analyst.md.j2")),
    ("architect.md.j2", include_str!("../prompts/architect.md.j2")),
    ("developer.md.j2", include_str!("../prompts/developer.md.j2")),
    ("reviewer.md.j2", include_str!("../prompts/reviewer.md.j2")),
    ("tester.md.j2", include_str!("../prompts/tester.md.j2")),
    ("retro.md.j2", include_str!("../prompts/retro.md.j2")),
];

/// An earlier artifact shown to the agent.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactText {
    pub name: String,
    pub content: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptTask {
    pub work_item: String,
    pub title: String,
    pub body: String,
    pub branch: String,
}

/// Everything a prompt template may use.
#[derive(Debug, Clone, Serialize)]
pub struct PromptContext {
    pub task: PromptTask,
    pub stage: String,
    pub role: String,
    pub attempt: u32,
    /// 1 for the stage's first agent run for this task, 2 for the next, ...
    pub run: u32,
    /// Path of the stage's artifact, relative to the worktree.
    pub artifact_path: Option<String>,
    pub failure: Option<String>,
    pub answers: Vec<String>,
    pub artifacts: Vec<ArtifactText>,
    /// What the retro agent reads (the `retro` role only).
    #[serde(default)]
    pub retro: Option<RetroContext>,
}

/// The retro's reading: the task's hand-off as Markdown and the repository's active lessons.
#[derive(Debug, Clone, Serialize)]
pub struct RetroContext {
    pub handoff: String,
    pub lessons: String,
    pub max_proposals: u32,
}

/// The name a stage's own template (`prompt_template`) is known by.
const STAGE_TEMPLATE: &str = "stage prompt_template";

/// Renders the prompt for `context.role`, preferring `<overrides>/<role>.md.j2` when present.
pub fn render(overrides: &Path, context: &PromptContext) -> Result<String, EngineError> {
    render_with(overrides, None, context)
}

/// Renders the prompt of a stage: its own template (`prompt_template`) when it has one, which may
/// include the shared `_context.md.j2`; else the role's, as [`render`].
pub fn render_with(overrides: &Path, template: Option<&str>, context: &PromptContext) -> Result<String, EngineError> {
    let mut env = Environment::new();
    for (name, source) in BUILT_IN {
        let path = overrides.join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| (*source).to_string());
        env.add_template_owned(name.to_string(), text)
            .map_err(|e| EngineError::Invalid(format!("prompt template {name}: {e}")))?;
    }
    let name = match template {
        Some(text) => {
            env.add_template_owned(STAGE_TEMPLATE, text.to_string())
                .map_err(|e| EngineError::Invalid(format!("{STAGE_TEMPLATE}: {e}")))?;
            STAGE_TEMPLATE.to_string()
        }
        None => format!("{}.md.j2", context.role),
    };
    if env.get_template(&name).is_err() {
        let path = overrides.join(&name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            "{% include \"_context.md.j2\" %}\n## Your job: {{ stage }}\n\nDo the work of this stage.\n".to_string()
        });
        env.add_template_owned(name.clone(), text)
            .map_err(|e| EngineError::Invalid(format!("prompt template {name}: {e}")))?;
    }
    let template = env.get_template(&name).map_err(|e| EngineError::Invalid(format!("prompt template {name}: {e}")))?;
    template
        .render(minijinja::Value::from(minijinja::value::Serde(context)))
        .map_err(|e| EngineError::Invalid(format!("rendering prompt {name}: {e}")))
}

/// Checks a stage's own template (`prompt_template`) compiles; the error says where it does not.
pub fn check_template(text: &str) -> Result<(), String> {
    let mut env = Environment::new();
    for (name, source) in BUILT_IN {
        env.add_template(name, source).map_err(|e| e.to_string())?;
    }
    env.add_template_owned(STAGE_TEMPLATE, text.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn context() -> PromptContext {
        PromptContext {
            task: PromptTask {
                work_item: "DEMO-007".into(),
                title: "Add a flag".into(),
                body: "Body text".into(),
                branch: "baton/DEMO-007-add-a-flag".into(),
            },
            stage: "review".into(),
            role: "reviewer".into(),
            attempt: 1,
            run: 1,
            artifact_path: Some("docs/baton/DEMO-007/04-review.md".into()),
            failure: None,
            answers: Vec::new(),
            artifacts: Vec::new(),
            retro: None,
        }
    }

    // A stage's own template replaces the role's and may include the shared context.
    #[test]
    fn a_stage_template_replaces_the_role_template() {
        let dir = tempfile::tempdir().unwrap();
        let role = render(dir.path(), &context()).unwrap();
        let own = "OWN {{ task.work_item }} as {{ role }}\n{% include \"_context.md.j2\" %}";
        let stage = render_with(dir.path(), Some(own), &context()).unwrap();
        assert!(stage.starts_with("OWN DEMO-007 as reviewer\n"), "{stage}");
        assert!(stage.contains("Add a flag") && !role.starts_with("OWN"), "{stage}");
        assert!(check_template(own).is_ok());
        assert!(check_template("{% if %}").unwrap_err().contains("syntax"), "a broken template is refused");
    }
}
