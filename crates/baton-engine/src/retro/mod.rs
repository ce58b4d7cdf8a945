//! The retro stage (SPEC §3, §10, §11; `[retro]`, off by default): after the change shipped, an
//! agent reads the task's hand-off and the repository's lessons and proposes lessons and next
//! tasks. Proposals are only proposals: a lesson is recorded `proposed` and reaches no prompt until
//! a human accepts it; a next task is a row of `task_proposals` until a human accepts it, which
//! creates the task.
//!
//! The retro is a real pipeline stage (claims, adoption, STOP, budgets, timeouts, cost accounting
//! come with it), marked `after_ship`: `decide` ends the task in `done` whatever the retro does.
//! `parse` reads the agent's artifact (untrusted text, bounded), `record` stores its proposals
//! idempotently when the retro job's gates passed, `proposals` holds the human decisions.

pub mod parse;
pub mod proposals;

use crate::engine::Engine;
use crate::features::Feature;
use crate::settings::AgentSettings;
use baton_domain::{Actor, GateSpec, OnGateFail, Pipeline, StageOverrides, StageSpec};
use baton_store::{LessonFilter, NewEvent, NewLesson, NewTaskProposal, TaskRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The retro stage's name, and its agent's role.
pub const STAGE: &str = "retro";
/// The role whose built-in prompt the retro agent gets.
pub const ROLE: &str = "retro";
/// The retro's artifact under `docs/baton/<WORK-ITEM>/`.
pub const ARTIFACT: &str = "09-retro.md";
/// Lessons and next tasks one retro may propose, each, unless `[retro] max_proposals` says.
pub const MAX_PROPOSALS_DEFAULT: u32 = 5;
/// The most `[retro] max_proposals` may be.
pub const MAX_PROPOSALS_LIMIT: u32 = 50;
/// The most text of lessons the retro's prompt shows.
const LESSONS_BYTES_MAX: usize = 8 * 1024;

/// `[retro]`: whether every pipeline ends with a retro stage, which agent entry runs it, and how
/// many proposals of each kind one retro may make.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetroSettings {
    /// Append the `retro` stage to every pipeline (default and named). Off by default.
    pub enabled: bool,
    /// The `[agents.<name>]` entry that runs it; default: `[agents.retro]` when it exists, else the
    /// developer's entry.
    pub agent: Option<String>,
    /// Lessons and next tasks kept from one retro, each (the rest are dropped with a warning).
    pub max_proposals: u32,
}

impl Default for RetroSettings {
    fn default() -> Self {
        RetroSettings { enabled: false, agent: None, max_proposals: MAX_PROPOSALS_DEFAULT }
    }
}

/// The agent entry that runs the retro: `[retro] agent`, else `None` when `[agents.retro]`
/// exists (the role's own entry), else the developer's entry (`[agents.developer]`, when there is
/// one; otherwise `[agents.default]` serves the role).
pub fn agent_entry(settings: &RetroSettings, agents: &BTreeMap<String, AgentSettings>) -> Option<String> {
    match &settings.agent {
        Some(name) => Some(name.clone()),
        None if agents.contains_key(ROLE) => None,
        None => agents.contains_key("developer").then(|| "developer".to_string()),
    }
}

/// The retro stage as `[retro]` configures it: an agent in the `retro` role writing `09-retro.md`,
/// checked by the artifact gate, after the change shipped.
pub fn stage(settings: &RetroSettings, agents: &BTreeMap<String, AgentSettings>) -> StageSpec {
    StageSpec {
        name: STAGE.to_string(),
        actor: Actor::Agent { role: ROLE.to_string() },
        artifact: Some(ARTIFACT.to_string()),
        gates: vec![GateSpec::Artifact],
        confirm_before: false,
        on_gate_fail: OnGateFail::Retry,
        overrides: StageOverrides { agent: agent_entry(settings, agents), ..StageOverrides::default() },
        after_ship: true,
    }
}

/// `pipeline` with `stage` appended as its last stage (unchanged when it has a stage of that name).
pub fn with_retro(mut pipeline: Pipeline, stage: &StageSpec) -> Pipeline {
    if pipeline.stage(&stage.name).is_none() {
        pipeline.stages.push(stage.clone());
    }
    pipeline
}

/// Records what a retro job proposed, once its gates passed: the artifact is parsed (a bad one is
/// a warning on the timeline and records nothing), each lesson stored `proposed` with source
/// `agent` under a slug of the task and its title, each next task as a task proposal. Idempotent:
/// a retried or adopted job records the same rows again, which changes nothing. Never fails the
/// job: the task is done either way.
pub async fn record(engine: &Engine, task: &TaskRecord, stage: &str, artifact: Option<&str>) {
    if !engine.features().enabled(Feature::Retro, &task.repo) {
        return;
    }
    let now = engine.clock().now_ms();
    let warn = |message: String| NewEvent {
        task: task.id,
        at_ms: now,
        kind: "retro".into(),
        stage: stage.to_string(),
        message,
        detail: serde_json::Value::Null,
    };
    let Some(text) = artifact else {
        let _ =
            engine.store().append_event(warn(format!("retro: {ARTIFACT} could not be read; nothing recorded"))).await;
        return;
    };
    let max = engine.retro().max_proposals as usize;
    let parsed = match parse::parse(text, max) {
        Ok(parsed) => parsed,
        Err(problem) => {
            tracing::warn!(task = %task.work_item_id, "the retro's proposals were not recorded: {problem}");
            let message = format!("retro: proposals not recorded: {problem}");
            let _ = engine.store().append_event(warn(message)).await;
            return;
        }
    };
    for dropped in &parsed.dropped {
        let _ = engine.store().append_event(warn(format!("retro: {dropped}"))).await;
    }
    let pipeline = engine.pipeline_for(&task.repo);
    let (mut lessons, mut tasks) = (0, 0);
    for lesson in &parsed.lessons {
        // A stage the pipeline does not have would scope the lesson to nothing: keep it repo-wide.
        let stage = lesson.stage.clone().filter(|s| pipeline.stage(s).is_some());
        let new = NewLesson {
            slug: format!("agent-{}-{}", parse::slug(&task.work_item_id), parse::slug(&lesson.title)),
            title: lesson.title.clone(),
            body: lesson.body.clone(),
            source: "agent".into(),
            repo: Some(task.repo.clone()),
            stage,
            tags: lesson.tags.clone(),
            task: Some(task.work_item_id.clone()),
            proposed: true,
        };
        match engine.store().record_lesson(&new, crate::lessons::DEDUP_WINDOW_MS, now).await {
            Ok(_) => lessons += 1,
            Err(e) => tracing::warn!(task = %task.work_item_id, "a proposed lesson was not recorded: {e}"),
        }
    }
    for next in &parsed.next_tasks {
        let new = NewTaskProposal {
            from_task: task.id,
            repo: task.repo.clone(),
            title: next.title.clone(),
            body: next.body.clone(),
        };
        match engine.store().propose_task(&new, now).await {
            Ok(_) => tasks += 1,
            Err(e) => tracing::warn!(task = %task.work_item_id, "a task proposal was not recorded: {e}"),
        }
    }
    let message = format!("retro proposed {lessons} lesson(s) and {tasks} next task(s), awaiting a human");
    let _ = engine
        .store()
        .append_event(NewEvent {
            detail: serde_json::json!({ "lessons": lessons, "next_tasks": tasks }),
            ..warn(message)
        })
        .await;
}

/// What the retro agent reads: the task's hand-off built now (as Markdown) and the repository's
/// active lessons. A part that cannot be read says so instead of failing the run.
pub async fn prompt_context(engine: &Engine, task: &TaskRecord) -> crate::prompts::RetroContext {
    let handoff = match crate::handoff::build(engine, task).await {
        Ok(handoff) => handoff.markdown,
        Err(e) => format!("(the hand-off could not be built: {e})"),
    };
    let filter = LessonFilter {
        repo: Some(task.repo.clone()),
        stage: None,
        status: Some(baton_store::LESSON_ACTIVE.to_string()),
    };
    let lessons = match engine.lessons(&filter).await {
        Ok(Some(lessons)) => crate::lessons::render(lessons, LESSONS_BYTES_MAX).0,
        Ok(None) => String::new(),
        Err(e) => format!("(the lessons could not be read: {e})"),
    };
    crate::prompts::RetroContext {
        handoff,
        lessons: lessons.trim().to_string(),
        max_proposals: engine.retro().max_proposals,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // The retro runs on `[retro] agent`, else its own entry, else the developer's.
    #[test]
    fn the_retro_agent_entry_follows_the_roles() {
        let entry = || -> AgentSettings { serde_json::from_value(serde_json::json!({ "adapter": "script" })).unwrap() };
        let mut agents = BTreeMap::from([("default".to_string(), entry())]);
        let settings = RetroSettings::default();
        assert_eq!(agent_entry(&settings, &agents), None, "no developer entry: the default serves the role");
        agents.insert("developer".into(), entry());
        assert_eq!(agent_entry(&settings, &agents).as_deref(), Some("developer"));
        agents.insert("retro".into(), entry());
        assert_eq!(agent_entry(&settings, &agents), None, "its own entry serves the role");
        let named = RetroSettings { agent: Some("cheap".into()), ..RetroSettings::default() };
        assert_eq!(agent_entry(&named, &agents).as_deref(), Some("cheap"));
        let stage = stage(&named, &agents);
        assert!(stage.after_ship && stage.gates == vec![GateSpec::Artifact]);
        let pipeline = with_retro(Pipeline::default_pipeline(), &stage);
        assert_eq!(pipeline.stages.last().map(|s| s.name.as_str()), Some(STAGE));
        assert_eq!(with_retro(pipeline.clone(), &stage), pipeline, "appended once");
        assert!(pipeline.validate().is_empty());
    }
}
