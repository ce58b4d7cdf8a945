//! The lessons journal (SPEC §10): auto-detectors that record what a transition taught (a gate
//! failure that rolled a task back, the merge queue sending a change back, retries exhausted, a
//! task blocked, a pause on a quota or a budget), and the "Lessons from earlier runs" section
//! injected into the prompts they apply to.
//!
//! The journal only observes: every write runs after the transition committed, and an error is a
//! warning in the log, never a failed transition. `[features] lessons = false` stops the detectors,
//! the injection and the API's answers.

use crate::engine::Engine;
use crate::features::Feature;
use baton_domain::{Hold, TaskState};
use baton_store::{LessonFilter, LessonRecord, LessonWrite, NewLesson, TaskRecord};

/// A detector that sees the same kind of event again within this window records nothing new.
pub const DEDUP_WINDOW_MS: i64 = 3_600_000;

/// The most text the lessons section adds to one prompt.
pub const PROMPT_BUDGET_BYTES: usize = 2048;

/// What a transition from `before` to `after` taught, if anything: a rollback after a failed
/// gate (the merge queue's own, a merge hold, apart), a task blocked once its retries ran out
/// (transient failures), a deploy the post-deploy monitor found degraded, another block, a pause
/// on a provider's quota or a budget cap.
pub fn detect(task: &TaskRecord, before: &TaskState, after: &TaskState) -> Option<NewLesson> {
    let failure = after.failure.clone().unwrap_or_default();
    let lesson = |slug: String, title: String, body: &str, stage: &str, tags: &[&str]| NewLesson {
        slug,
        title,
        body: format!("{body} (seen on {})", task.work_item_id),
        source: "auto".into(),
        repo: Some(task.repo.clone()),
        stage: Some(stage.to_string()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        task: Some(task.work_item_id.clone()),
        proposed: false,
    };
    let repo = slug_part(&task.repo);
    if after.rollbacks > before.rollbacks {
        // The failure reads `<stage> failed: <gate>: <reason>[; <gate>: <reason>]`.
        let reasons = failure.strip_prefix(&format!("{} failed: ", before.stage)).unwrap_or(&failure);
        let gate = reasons.split_once(':').map_or("gate", |(gate, _)| gate.trim());
        let gate = slug_part(gate);
        if gate == "mergeable" {
            // The merge queue sent the change back: it conflicted with main or failed on top of it.
            let why = if reasons.to_lowercase().contains("conflict") { "conflict" } else { "evicted" };
            return Some(lesson(
                format!("merge-hold-{why}-{repo}"),
                format!("the merge queue of {} sent a change back to {} ({why})", task.repo, after.stage),
                reasons,
                &after.stage,
                &["merge", why, "rollback"],
            ));
        }
        return Some(lesson(
            format!("gate-{gate}-{repo}-{}", slug_part(&before.stage)),
            format!("the {gate} gate of {} rolled a change back to {}", before.stage, after.stage),
            reasons,
            &after.stage,
            &["gate", &gate, "rollback"],
        ));
    }
    let newly = |hold: &Hold| std::mem::discriminant(hold) != std::mem::discriminant(&before.hold);
    match &after.hold {
        Hold::Blocked { reason } if newly(&after.hold) && reason.starts_with(baton_domain::DEPLOY_DEGRADED) => {
            // The post-deploy monitor saw the deploy degrade production (the repository froze).
            Some(lesson(
                format!("deploy-degraded-{repo}"),
                format!("a deploy of {} degraded production", task.repo),
                reason,
                &before.stage,
                &["deploy", "degraded", "freeze"],
            ))
        }
        Hold::Blocked { reason } if newly(&after.hold) => {
            let stage = slug_part(&before.stage);
            // `failed_attempt` words an exhausted retry budget as `<stage> failed <n> times; last: …`.
            if reason.starts_with(&format!("{} failed ", before.stage)) && reason.contains(" times; last: ") {
                return Some(lesson(
                    format!("retries-exhausted-{repo}-{stage}"),
                    format!("{} kept failing until its retries ran out", before.stage),
                    reason,
                    &before.stage,
                    &["blocked", "transient", "retry"],
                ));
            }
            Some(lesson(
                format!("blocked-{repo}-{stage}"),
                format!("{} blocked a change", before.stage),
                reason,
                &before.stage,
                &["blocked"],
            ))
        }
        Hold::PausedQuota { reason, .. } if newly(&after.hold) => Some(lesson(
            format!("quota-{repo}-{}", slug_part(&after.stage)),
            format!("{} paused on a provider's quota", after.stage),
            reason,
            &after.stage,
            &["quota", "pause"],
        )),
        Hold::PausedBudget { reason } if newly(&after.hold) => Some(lesson(
            format!("budget-{repo}-{}", slug_part(&after.stage)),
            format!("{} paused on a budget cap", after.stage),
            reason,
            &after.stage,
            &["budget", "pause"],
        )),
        _ => None,
    }
}

/// Runs the detectors on a committed transition and records what they found. Never fails.
pub async fn observe(engine: &Engine, task: &TaskRecord, after: &TaskState) {
    if !engine.features().enabled(Feature::Lessons, &task.repo) {
        return;
    }
    let Some(lesson) = detect(task, &task.state, after) else {
        return;
    };
    let now = engine.clock().now_ms();
    match engine.store().record_lesson(&lesson, DEDUP_WINDOW_MS, now).await {
        Ok((row, LessonWrite::Duplicate)) => {
            tracing::debug!(task = %task.work_item_id, lesson = %row.slug, "lesson seen again within its window")
        }
        Ok((row, _)) => tracing::info!(task = %task.work_item_id, lesson = %row.slug, "lesson recorded"),
        Err(e) => {
            tracing::warn!(task = %task.work_item_id, lesson = %lesson.slug, "the lessons journal failed: {e}")
        }
    }
}

/// The lessons section for a prompt of `stage` in `repo` (empty when none apply or the journal is
/// off); the lessons it shows get a hit. Never fails.
pub async fn prompt_section(engine: &Engine, repo: &str, stage: &str, work_item: &str) -> String {
    if !engine.features().enabled(Feature::Lessons, repo) {
        return String::new();
    }
    // Only active lessons reach prompts: an agent's proposal waits for a human's accept.
    let filter = LessonFilter {
        repo: Some(repo.to_string()),
        stage: Some(stage.to_string()),
        status: Some(baton_store::LESSON_ACTIVE.to_string()),
    };
    let lessons = match engine.store().lessons(&filter).await {
        Ok(lessons) => lessons,
        Err(e) => {
            tracing::warn!(task = %work_item, "lessons not read for the prompt: {e}");
            return String::new();
        }
    };
    // A task is not told about its own failures twice: they are in its prompt already.
    let lessons: Vec<LessonRecord> =
        lessons.into_iter().filter(|l| l.task.as_deref() != Some(work_item) || l.source != "auto").collect();
    let (text, shown) = render(lessons, PROMPT_BUDGET_BYTES);
    if !shown.is_empty()
        && let Err(e) = engine.store().hit_lessons(&shown, engine.clock().now_ms()).await
    {
        tracing::warn!(task = %work_item, "lesson hits not counted: {e}");
    }
    text
}

/// Orders `lessons` most relevant first (scoped to both the repository and the stage, then to
/// one of them, then unscoped; within that the most hit, then the newest) and renders as many as
/// fit in `budget` bytes. Returns the text and the ids shown.
pub fn render(mut lessons: Vec<LessonRecord>, budget: usize) -> (String, Vec<i64>) {
    if lessons.is_empty() {
        return (String::new(), Vec::new());
    }
    lessons.sort_by_key(|l| {
        let scoped = u8::from(l.repo.is_some()) + u8::from(l.stage.is_some());
        std::cmp::Reverse((scoped, l.hits, l.updated_at_ms, l.id))
    });
    let header = "\n\n## Lessons from earlier runs\n\n";
    let mut text = header.to_string();
    let mut shown = Vec::new();
    for lesson in lessons {
        let item = format!("- **{}**: {}\n", lesson.title.trim(), lesson.body.trim());
        if text.len() + item.len() > budget {
            continue;
        }
        text.push_str(&item);
        shown.push(lesson.id);
    }
    if shown.is_empty() { (String::new(), shown) } else { (text, shown) }
}

/// Lower-case letters, digits and dashes: a name made safe for a slug.
fn slug_part(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lesson(id: i64, repo: Option<&str>, stage: Option<&str>, hits: i64, body: &str) -> LessonRecord {
        LessonRecord {
            id,
            slug: format!("s{id}"),
            title: format!("t{id}"),
            body: body.into(),
            source: "human".into(),
            repo: repo.map(Into::into),
            stage: stage.map(Into::into),
            tags: Vec::new(),
            task: None,
            created_at_ms: 0,
            updated_at_ms: id,
            hits,
            last_hit_at_ms: None,
            status: "active".into(),
        }
    }

    #[test]
    fn render_puts_the_most_specific_first_and_keeps_to_the_budget() {
        let lessons = vec![
            lesson(1, None, None, 9, "anywhere"),
            lesson(2, Some("alpha"), Some("development"), 0, "exact"),
            lesson(3, Some("alpha"), None, 0, "repo"),
            lesson(4, Some("alpha"), None, 0, &"x".repeat(4000)),
        ];
        let (text, shown) = render(lessons, PROMPT_BUDGET_BYTES);
        assert_eq!(shown, vec![2, 3, 1], "the oversized lesson is left out");
        assert!(text.contains("## Lessons from earlier runs"));
        assert!(text.find("exact").unwrap() < text.find("anywhere").unwrap());
        assert!(text.len() <= PROMPT_BUDGET_BYTES);
        assert_eq!(render(Vec::new(), PROMPT_BUDGET_BYTES), (String::new(), Vec::new()));
    }

    fn task() -> TaskRecord {
        TaskRecord {
            id: baton_domain::TaskId(7),
            work_item_id: "APP-007".into(),
            repo: "app".into(),
            title: "t".into(),
            body: String::new(),
            branch: "baton/APP-007-t".into(),
            external_ref: None,
            state: TaskState::new("development"),
            version: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn at(stage: &str, hold: Hold) -> TaskState {
        let mut state = TaskState::new(stage);
        state.hold = hold;
        state
    }

    // Each detector fires on the transition that enters its condition, once: staying in the same
    // hold is not a new lesson; the merge queue's rollbacks and exhausted retries are told apart.
    #[test]
    fn each_detector_names_what_happened() {
        let task = task();
        let quota = Hold::PausedQuota { reason: "claude: 429 rate limited".into(), resume_at_ms: 9 };
        let found = detect(&task, &at("development", Hold::None), &at("development", quota.clone())).unwrap();
        assert_eq!(
            (found.slug.as_str(), found.tags.clone()),
            ("quota-app-development", vec!["quota".into(), "pause".into()])
        );
        assert!(found.body.contains("429") && found.body.contains("APP-007"), "{}", found.body);
        assert!(detect(&task, &at("development", quota.clone()), &at("development", quota)).is_none());

        let budget = Hold::PausedBudget { reason: "repo:app daily cap $5.00 reached".into() };
        let found = detect(&task, &at("review", Hold::None), &at("review", budget)).unwrap();
        assert_eq!(found.slug, "budget-app-review");

        let exhausted = Hold::Blocked { reason: "development failed 3 times; last: agent exited 1".into() };
        let found = detect(&task, &at("development", Hold::None), &at("development", exhausted)).unwrap();
        assert_eq!(found.slug, "retries-exhausted-app-development");
        assert!(found.tags.contains(&"transient".to_string()));
        let degraded = Hold::Blocked { reason: format!("{}: `health` failed 3 times", baton_domain::DEPLOY_DEGRADED) };
        let found = detect(&task, &at("deploy", Hold::None), &at("deploy", degraded)).unwrap();
        assert_eq!((found.slug.as_str(), found.stage.as_deref()), ("deploy-degraded-app", Some("deploy")));
        let other = Hold::Blocked { reason: "cycle of dependencies".into() };
        assert_eq!(
            detect(&task, &at("development", Hold::None), &at("development", other)).unwrap().slug,
            "blocked-app-development"
        );

        let before = at("merge", Hold::None);
        let mut after = at("development", Hold::None);
        after.rollbacks = 1;
        after.failure = Some("merge failed: mergeable: rebase onto main conflicts in src/lib.rs".into());
        let found = detect(&task, &before, &after).unwrap();
        assert_eq!(found.slug, "merge-hold-conflict-app");
        after.failure = Some("merge failed: tests_passed: 2 tests failed".into());
        assert_eq!(detect(&task, &before, &after).unwrap().slug, "gate-tests-passed-app-merge");
    }

    #[test]
    fn slugs_are_safe() {
        assert_eq!(slug_part("Review: Verdict!"), "review-verdict");
        assert_eq!(slug_part("command:lint"), "command-lint");
    }
}

/// A lesson as a person writes it (`POST /api/lessons`, `baton lessons add`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonInput {
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// `human` (the default) or `agent`; `auto` belongs to the detectors.
    #[serde(default)]
    pub source: Option<String>,
}

impl Engine {
    /// The lessons that apply to `filter`, or `None` when the journal is switched off everywhere.
    pub async fn lessons(&self, filter: &LessonFilter) -> Result<Option<Vec<LessonRecord>>, crate::EngineError> {
        if self.features().off_everywhere(Feature::Lessons) {
            return Ok(None);
        }
        Ok(Some(self.store().lessons(filter).await?))
    }

    /// Records a lesson written by a person or an agent. An empty title or body, an unknown
    /// repository or stage, or a source other than `human`/`agent` is refused and nothing stored.
    pub async fn add_lesson(&self, input: LessonInput) -> Result<Option<LessonRecord>, crate::EngineError> {
        if self.features().off_everywhere(Feature::Lessons) {
            return Ok(None);
        }
        let source = input.source.clone().unwrap_or_else(|| "human".into());
        if !["human", "agent"].contains(&source.as_str()) {
            return Err(crate::EngineError::Invalid(format!(
                "lesson source `{source}` is not allowed: use `human` or `agent` (`auto` is the detectors')"
            )));
        }
        self.check_lesson_text(Some(&input.title), Some(&input.body))?;
        self.check_lesson_scope(input.repo.as_deref(), input.stage.as_deref())?;
        let now = self.clock().now_ms();
        let lesson = NewLesson {
            slug: format!("{source}-{now}-{}", slug_part(&input.title)),
            title: input.title.trim().to_string(),
            body: input.body.trim().to_string(),
            source,
            repo: input.repo,
            stage: input.stage,
            tags: input.tags,
            task: None,
            proposed: false,
        };
        Ok(Some(self.store().record_lesson(&lesson, DEDUP_WINDOW_MS, now).await?.0))
    }

    /// Edits lesson `id`; the same checks as [`Engine::add_lesson`].
    pub async fn edit_lesson(
        &self,
        id: i64,
        patch: baton_store::LessonPatch,
    ) -> Result<Option<LessonRecord>, crate::EngineError> {
        if self.features().off_everywhere(Feature::Lessons) {
            return Ok(None);
        }
        self.check_lesson_text(patch.title.as_deref(), patch.body.as_deref())?;
        let repo = patch.repo.clone().flatten();
        let stage = patch.stage.clone().flatten();
        self.check_lesson_scope(repo.as_deref(), stage.as_deref())?;
        let now = self.clock().now_ms();
        Ok(Some(self.store().update_lesson(id, &patch, now).await?))
    }

    fn check_lesson_text(&self, title: Option<&str>, body: Option<&str>) -> Result<(), crate::EngineError> {
        for (name, text) in [("title", title), ("body", body)] {
            if text.is_some_and(|t| t.trim().is_empty()) {
                return Err(crate::EngineError::Invalid(format!("the lesson's {name} is empty: say what was learned")));
            }
        }
        Ok(())
    }

    fn check_lesson_scope(&self, repo: Option<&str>, stage: Option<&str>) -> Result<(), crate::EngineError> {
        if let Some(repo) = repo
            && self.settings().repo(repo).is_none()
        {
            return Err(crate::EngineError::Invalid(format!(
                "repository `{repo}` is not configured: name one under [[repos]] or leave `repo` out"
            )));
        }
        // A lesson of one repository names a stage of its pipeline; one of every repository, a
        // stage of any pipeline in use.
        let known = |stage: &str| match repo {
            Some(repo) => self.pipeline_for(repo).stage(stage).is_some(),
            None => {
                self.pipeline().stage(stage).is_some()
                    || self.settings().repos.iter().any(|r| self.pipeline_for(&r.name).stage(stage).is_some())
            }
        };
        if let Some(stage) = stage
            && !known(stage)
        {
            return Err(crate::EngineError::Invalid(format!(
                "stage `{stage}` is not in the pipeline: name one of its stages or leave `stage` out"
            )));
        }
        Ok(())
    }
}
