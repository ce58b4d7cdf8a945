//! Budgets (SPEC §9): caps per task, per repo per UTC day and global per UTC day, with a warning
//! that alerts once and a hard cap that stops the running agent and parks the task.

use crate::EngineError;
use crate::engine::Engine;
use baton_adapters::notifier::Notification;
use baton_domain::NotifyKind;
use baton_store::{NewEvent, SpendFilter, TaskRecord};

const DAY_MS: i64 = 86_400_000;

/// One cap that applies to a run, with what was spent under it before the run.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetLimit {
    /// Human label: `task DEMO-001`, `repo demo today`, `all repos today`.
    pub label: String,
    /// Scope key as used by `baton budget set` (`task:<id>`, `repo:<name>`, `global`).
    pub scope: String,
    pub cap_usd: f64,
    pub spent_usd: f64,
}

impl BudgetLimit {
    /// Whether spending `extra_usd` more reaches the cap.
    pub fn reached_with(&self, extra_usd: f64) -> bool {
        self.spent_usd + extra_usd >= self.cap_usd
    }

    pub fn describe(&self, extra_usd: f64) -> String {
        format!(
            "{} spent {} of its {} budget",
            self.label,
            baton_domain::money(self.spent_usd + extra_usd),
            baton_domain::money(self.cap_usd)
        )
    }
}

/// The first limit that `extra_usd` more spending would reach, as a reason.
pub fn exceeded(limits: &[BudgetLimit], extra_usd: f64) -> Option<String> {
    limits.iter().find(|l| l.reached_with(extra_usd)).map(|l| l.describe(extra_usd))
}

/// The caps that apply to `task` now, with current spend under each.
pub async fn limits_for(engine: &Engine, task: &TaskRecord) -> Result<Vec<BudgetLimit>, EngineError> {
    let configured = &engine.settings().budgets;
    let overrides = engine.store().budget_caps().await?;
    let cap = |scope: &str, default: Option<f64>| -> Option<f64> {
        match overrides.iter().find(|(s, _)| s == scope) {
            Some((_, cap)) => *cap,
            None => default,
        }
    };
    let now = engine.clock().now_ms();
    let day_start = now - now.rem_euclid(DAY_MS);
    let mut limits = Vec::new();
    let task_scope = format!("task:{}", task.id);
    if let Some(cap_usd) = cap(&task_scope, configured.task_usd) {
        let spent_usd =
            engine.store().spend_usd(&SpendFilter { task: Some(task.id), ..SpendFilter::default() }).await?;
        limits.push(BudgetLimit {
            label: format!("task {}", task.work_item_id),
            scope: task_scope,
            cap_usd,
            spent_usd,
        });
    }
    let repo_scope = format!("repo:{}", task.repo);
    if let Some(cap_usd) = cap(&repo_scope, configured.repo_daily_usd) {
        let filter = SpendFilter { repo: Some(task.repo.clone()), since_ms: Some(day_start), ..SpendFilter::default() };
        let spent_usd = engine.store().spend_usd(&filter).await?;
        limits.push(BudgetLimit { label: format!("repo {} today", task.repo), scope: repo_scope, cap_usd, spent_usd });
    }
    if let Some(cap_usd) = cap("global", configured.global_daily_usd) {
        let filter = SpendFilter { since_ms: Some(day_start), ..SpendFilter::default() };
        let spent_usd = engine.store().spend_usd(&filter).await?;
        limits.push(BudgetLimit { label: "all repos today".into(), scope: "global".into(), cap_usd, spent_usd });
    }
    Ok(limits)
}

/// Sends one warning per (scope, cap, day) when spend crosses the warning ratio. Never fails the run.
pub async fn warn_once(engine: &Engine, task: &TaskRecord) {
    let Ok(limits) = limits_for(engine, task).await else {
        return;
    };
    let ratio = engine.settings().budgets.warn_ratio;
    let now = engine.clock().now_ms();
    let day = now.div_euclid(DAY_MS);
    for limit in limits.iter().filter(|l| l.spent_usd >= ratio * l.cap_usd && l.spent_usd < l.cap_usd) {
        let key = format!("budget-warning:{}:{}:{day}", limit.scope, limit.cap_usd);
        if !matches!(engine.store().record_once(&key, "budget_warning", now).await, Ok(true)) {
            continue;
        }
        let text =
            format!("budget warning: {} ({:.0} %)", limit.describe(0.0), 100.0 * limit.spent_usd / limit.cap_usd);
        let _ = engine
            .store()
            .append_event(NewEvent {
                task: task.id,
                at_ms: now,
                kind: "budget_warning".into(),
                stage: task.state.stage.clone(),
                message: text.clone(),
                detail: serde_json::json!({ "scope": limit.scope, "cap_usd": limit.cap_usd, "spent_usd": limit.spent_usd }),
            })
            .await;
        let notification = Notification {
            work_item: task.work_item_id.clone(),
            title: task.title.clone(),
            kind: NotifyKind::Alert,
            text,
        };
        if let Err(error) = engine.notifier().notify(&notification).await {
            tracing::warn!("budget warning notification failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A run is stopped once spend before it plus its own live cost reaches any cap.
    #[test]
    fn exceeded_counts_live_cost() {
        let limits = vec![BudgetLimit { label: "task X".into(), scope: "task:1".into(), cap_usd: 1.0, spent_usd: 0.6 }];
        assert_eq!(exceeded(&limits, 0.3), None);
        assert_eq!(exceeded(&limits, 0.4).as_deref(), Some("task X spent $1.00 of its $1.00 budget"));
    }
}
