//! Budgets (SPEC §9): caps per task, per repo per UTC day and global per UTC day, with a warning
//! that alerts once and a hard cap that stops the running agent and parks the task.

use crate::EngineError;
use crate::engine::Engine;
use baton_adapters::notifier::Notification;
use baton_domain::NotifyKind;
use baton_store::{NewEvent, SpendFilter, TaskFilter, TaskKey, TaskRecord};
use serde::Serialize;

const DAY_MS: i64 = 86_400_000;
/// The shortest part of the day a forecast divides by: just after midnight a few cents would
/// otherwise project to thousands of dollars.
const FORECAST_ELAPSED_MS_MIN: i64 = 3_600_000;

/// Spend under one cap (`baton budget show`, `GET /api/budgets`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapSpend {
    /// `all repos today`, `repo demo today`, `task DEMO-001`.
    pub label: String,
    /// As `baton budget set` names it: `global`, `repo:<name>`, `task:<id>`.
    pub scope: String,
    pub spent_usd: f64,
    /// The override when set, else `[budgets]`; `None`: no cap.
    pub cap_usd: Option<f64>,
    /// `spent / cap`; `None` without a cap.
    pub ratio: Option<f64>,
    /// Daily scopes: today's spend at the current rate ([`Forecast`]); `None` for task scopes.
    pub forecast_usd: Option<f64>,
    /// `forecast / cap`.
    pub forecast_ratio: Option<f64>,
}

/// How the forecasts of daily scopes are made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// The rule, in words.
    pub method: String,
    /// Hours of the UTC day gone (at least one: see the method).
    pub elapsed_hours: f64,
    /// Every repository's spend today and its forecast (the global scope's figures).
    pub spent_today_usd: f64,
    pub forecast_usd: f64,
}

/// Spend against every cap, with today's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetReport {
    pub caps: Vec<CapSpend>,
    pub forecast: Forecast,
    pub warn_ratio: f64,
    /// What counts toward the caps.
    pub rule: String,
}

/// What counts toward a cap, as `budget show` and the API state it.
pub const SPEND_RULE: &str = "agent runs always count; ingested usage counts toward a repository's daily cap and the \
     global daily cap when it carries a repository (its own or its task's), and toward a task's cap when linked to the task";

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

/// The caps that apply to one agent run of `stage` for `task`: [`limits_for`], and the stage's
/// own cap on one run (`budget_usd`), under which nothing is spent before the run.
pub async fn limits_for_stage(
    engine: &Engine,
    task: &TaskRecord,
    stage: &baton_domain::StageSpec,
) -> Result<Vec<BudgetLimit>, EngineError> {
    let mut limits = limits_for(engine, task).await?;
    if let Some(cap_usd) = stage.overrides.budget_usd {
        limits.push(BudgetLimit {
            label: format!("one {} run", stage.name),
            scope: format!("stage:{}", stage.name),
            cap_usd,
            spent_usd: 0.0,
        });
    }
    Ok(limits)
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

impl Engine {
    /// Spend against every cap: global and each repository (configured, or with an override) for
    /// the current UTC day, and each active task (or task with an override) for its whole life;
    /// daily scopes with a forecast of the day's spend at the current rate.
    pub async fn budget_report(&self) -> Result<BudgetReport, EngineError> {
        let configured = &self.settings().budgets;
        let store = self.store();
        let caps = store.budget_caps().await?;
        let cap = |scope: &str, default: Option<f64>| match caps.iter().find(|(s, _)| s == scope) {
            Some((_, cap)) => *cap,
            None => default,
        };
        let now = self.clock().now_ms();
        let day_start = now - now.rem_euclid(DAY_MS);
        let elapsed_ms = (now - day_start).max(FORECAST_ELAPSED_MS_MIN);
        let project = |spent: f64| spent * DAY_MS as f64 / elapsed_ms as f64;
        let daily = |label: String, scope: String, spent_usd: f64, cap_usd: Option<f64>| {
            let forecast = project(spent_usd);
            CapSpend {
                label,
                scope,
                spent_usd,
                ratio: cap_usd.map(|c| spent_usd / c),
                forecast_usd: Some(forecast),
                forecast_ratio: cap_usd.map(|c| forecast / c),
                cap_usd,
            }
        };
        let today = SpendFilter { since_ms: Some(day_start), ..SpendFilter::default() };
        let spent_today = store.spend_usd(&today).await?;
        let mut out = vec![daily(
            "all repos today".into(),
            "global".into(),
            spent_today,
            cap("global", configured.global_daily_usd),
        )];
        let mut repos: Vec<String> = self.settings().repos.iter().map(|r| r.name.clone()).collect();
        for (scope, _) in &caps {
            if let Some(name) = scope.strip_prefix("repo:")
                && !repos.iter().any(|r| r == name)
            {
                repos.push(name.to_string());
            }
        }
        for repo in repos {
            let scope = format!("repo:{repo}");
            let filter = SpendFilter { repo: Some(repo.clone()), since_ms: Some(day_start), ..SpendFilter::default() };
            let spent = store.spend_usd(&filter).await?;
            let cap_usd = cap(&scope, configured.repo_daily_usd);
            out.push(daily(format!("repo {repo} today"), scope, spent, cap_usd));
        }
        let mut tasks = store.list_tasks(&TaskFilter { active_only: true, ..TaskFilter::default() }).await?;
        for (scope, _) in &caps {
            let Some(id) = scope.strip_prefix("task:").and_then(|id| id.parse::<i64>().ok()) else { continue };
            let id = baton_domain::TaskId(id);
            if !tasks.iter().any(|t| t.id == id)
                && let Some(task) = store.task(&TaskKey::Id(id)).await?
            {
                tasks.push(task);
            }
        }
        for task in tasks {
            let scope = format!("task:{}", task.id);
            let spent_usd = store.spend_usd(&SpendFilter { task: Some(task.id), ..SpendFilter::default() }).await?;
            let cap_usd = cap(&scope, configured.task_usd);
            out.push(CapSpend {
                label: format!("task {}", task.work_item_id),
                scope,
                spent_usd,
                ratio: cap_usd.map(|c| spent_usd / c),
                cap_usd,
                forecast_usd: None,
                forecast_ratio: None,
            });
        }
        Ok(BudgetReport {
            caps: out,
            forecast: Forecast {
                method:
                    "spend so far today (UTC) ÷ the elapsed part of the day × 24 h, the elapsed part counted as at \
                         least one hour"
                        .into(),
                elapsed_hours: elapsed_ms as f64 / 3_600_000.0,
                spent_today_usd: spent_today,
                forecast_usd: project(spent_today),
            },
            warn_ratio: configured.warn_ratio,
            rule: SPEND_RULE.into(),
        })
    }
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
