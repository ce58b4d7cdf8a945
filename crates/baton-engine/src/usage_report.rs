//! The read side of usage (SPEC §9): agent runs and ingested records together, grouped by any of
//! task, stage, adapter, model, repo, day, category, source or unit kind, with the unit economics
//! derived from them. `baton usage` and `GET /api/usage` both print [`UsageReport`].
//!
//! How each kind of row is keyed where it has no such field: an agent run's source is
//! `agent:<adapter>` and its unit kind `(none)`; an ingested record's stage and adapter are
//! `(ingested)`, a missing model `(unknown)`, repository `(no repo)`, task `(no task)`, unit kind
//! `(none)`. Categories go through the read-time map (`baton_domain::usage`).
//!
//! Unit economics:
//! - **$ per merged task**: what the tasks that reached done cost (their agent runs and the ingested
//!   records linked to them) ÷ how many reached done;
//! - **$ per stage**: for each stage, its agent runs' cost ÷ the tasks that ran it (the average cost
//!   of that stage per task);
//! - **$ per unit**: for each unit kind, the cost of the priced records counting it ÷ their units
//!   (e.g. $ per audio minute); unpriced records are left out of both.

use crate::{Engine, EngineError};
use baton_domain::usage::UsageOrigin;
use baton_store::{UsageGroup, UsageRecordTotals, UsageRow};
use serde::Serialize;
use std::collections::BTreeMap;

/// What usage is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageBy {
    Task,
    Stage,
    Adapter,
    Model,
    Repo,
    Day,
    Category,
    Source,
    UnitKind,
}

impl UsageBy {
    /// Every grouping with its name, in the order help texts list them.
    pub const ALL: [(&'static str, UsageBy); 9] = [
        ("task", UsageBy::Task),
        ("stage", UsageBy::Stage),
        ("adapter", UsageBy::Adapter),
        ("model", UsageBy::Model),
        ("repo", UsageBy::Repo),
        ("day", UsageBy::Day),
        ("category", UsageBy::Category),
        ("source", UsageBy::Source),
        ("unit_kind", UsageBy::UnitKind),
    ];

    pub fn parse(text: &str) -> Option<UsageBy> {
        UsageBy::ALL.iter().find(|(name, _)| *name == text).map(|(_, by)| *by)
    }

    pub fn name(self) -> &'static str {
        UsageBy::ALL.iter().find(|(_, by)| *by == self).map_or("task", |(name, _)| name)
    }

    /// `task|stage|…` for error messages.
    pub fn choices() -> String {
        UsageBy::ALL.iter().map(|(name, _)| *name).collect::<Vec<_>>().join("|")
    }
}

/// One group: agent runs (`runs`) and ingested records (`records`) side by side.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageLine {
    pub key: String,
    /// Agent runs in the group.
    pub runs: u64,
    /// Ingested usage records in the group.
    pub records: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// Units of the ingested records (of every kind; group by unit_kind to keep kinds apart).
    pub units: f64,
    /// Priced spend of both.
    pub cost_usd: f64,
    pub agent_cost_usd: f64,
    pub ingested_cost_usd: f64,
    /// Agent runs and records whose cost is unknown (never counted as $0).
    pub unpriced: u64,
}

/// `$ per merged task`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerMergedTask {
    pub done_tasks: u64,
    pub cost_usd: f64,
    /// `None` until a task is done.
    pub usd_per_task: Option<f64>,
}

/// `$ per stage` (average per task that ran the stage).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerStage {
    pub stage: String,
    pub tasks: u64,
    pub cost_usd: f64,
    pub usd_per_task: Option<f64>,
}

/// `$ per unit` of one unit kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerUnit {
    pub unit_kind: String,
    /// Units of priced records.
    pub units: f64,
    pub cost_usd: f64,
    pub usd_per_unit: Option<f64>,
}

/// The derived unit economics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitEconomics {
    pub per_merged_task: PerMergedTask,
    pub per_stage: Vec<PerStage>,
    pub per_unit: Vec<PerUnit>,
}

/// `baton usage --by …` and `GET /api/usage?by=…`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    pub by: String,
    pub rows: Vec<UsageLine>,
    pub total_cost_usd: f64,
    pub unit_economics: UnitEconomics,
    /// The pricing table in force (`version`, with `+<user version>` when a user's file applies).
    pub pricing_version: String,
}

fn ratio(cost: f64, count: f64) -> Option<f64> {
    (count > 0.0).then(|| cost / count)
}

impl Engine {
    /// Usage grouped by `by`, with the unit economics.
    pub async fn usage_report(&self, by: UsageBy) -> Result<UsageReport, EngineError> {
        let store = self.store();
        let categories = self.categories();
        let agent_group = match by {
            UsageBy::Task => UsageGroup::Task,
            UsageBy::Stage | UsageBy::Category | UsageBy::UnitKind => UsageGroup::Stage,
            UsageBy::Adapter | UsageBy::Source => UsageGroup::Adapter,
            UsageBy::Model => UsageGroup::Model,
            UsageBy::Repo => UsageGroup::Repo,
            UsageBy::Day => UsageGroup::Day,
        };
        let mut lines: BTreeMap<String, UsageLine> = BTreeMap::new();
        for row in store.usage(agent_group).await? {
            let key = match by {
                UsageBy::Category => categories.category(UsageOrigin::Agent { stage: &row.key }),
                UsageBy::Source => format!("agent:{}", row.key),
                UsageBy::UnitKind => "(none)".to_owned(),
                _ => row.key.clone(),
            };
            add_runs(lines.entry(key.clone()).or_insert_with(|| UsageLine { key, ..UsageLine::default() }), &row);
        }
        let totals = store.usage_record_totals().await?;
        for total in &totals {
            let key = match by {
                UsageBy::Task => total.task.clone().unwrap_or_else(|| "(no task)".into()),
                UsageBy::Stage | UsageBy::Adapter => "(ingested)".into(),
                UsageBy::Model => total.model.clone().unwrap_or_else(|| "(unknown)".into()),
                UsageBy::Repo => total.repo.clone().unwrap_or_else(|| "(no repo)".into()),
                UsageBy::Day => total.day.clone(),
                UsageBy::Category => {
                    categories.category(UsageOrigin::Ingested { source: &total.source, category: &total.category })
                }
                UsageBy::Source => total.source.clone(),
                UsageBy::UnitKind => total.unit_kind.clone().unwrap_or_else(|| "(none)".into()),
            };
            add_records(lines.entry(key.clone()).or_insert_with(|| UsageLine { key, ..UsageLine::default() }), total);
        }
        let rows: Vec<UsageLine> = lines.into_values().collect();
        let total_cost_usd = rows.iter().map(|r| r.cost_usd).sum();
        Ok(UsageReport {
            by: by.name().to_owned(),
            rows,
            total_cost_usd,
            unit_economics: self.unit_economics(&totals).await?,
            pricing_version: self.prices().version.clone(),
        })
    }

    async fn unit_economics(&self, totals: &[UsageRecordTotals]) -> Result<UnitEconomics, EngineError> {
        let done = self.store().done_task_spend().await?;
        let cost_usd = done.agent_cost_usd + done.ingested_cost_usd;
        let per_merged_task =
            PerMergedTask { done_tasks: done.tasks, cost_usd, usd_per_task: ratio(cost_usd, done.tasks as f64) };
        let per_stage = self
            .store()
            .usage(UsageGroup::Stage)
            .await?
            .into_iter()
            .map(|row| PerStage {
                usd_per_task: ratio(row.cost_usd, row.tasks as f64),
                stage: row.key,
                tasks: row.tasks,
                cost_usd: row.cost_usd,
            })
            .collect();
        let mut units: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for total in totals {
            if let Some(kind) = &total.unit_kind
                && total.priced_units > 0.0
            {
                let entry = units.entry(kind).or_default();
                entry.0 += total.priced_units;
                // The cost of records counting this kind (unpriced ones add nothing to either side).
                entry.1 += total.cost_usd;
            }
        }
        let per_unit = units
            .into_iter()
            .map(|(kind, (units, cost_usd))| PerUnit {
                unit_kind: kind.to_owned(),
                units,
                cost_usd,
                usd_per_unit: ratio(cost_usd, units),
            })
            .collect();
        Ok(UnitEconomics { per_merged_task, per_stage, per_unit })
    }
}

fn add_runs(line: &mut UsageLine, row: &UsageRow) {
    line.runs += row.runs;
    line.input_tokens += row.input_tokens;
    line.output_tokens += row.output_tokens;
    line.cache_read_tokens += row.cache_read_tokens;
    line.cache_write_tokens += row.cache_write_tokens;
    line.cost_usd += row.cost_usd;
    line.agent_cost_usd += row.cost_usd;
    line.unpriced += row.unpriced_runs;
}

fn add_records(line: &mut UsageLine, total: &UsageRecordTotals) {
    line.records += total.records;
    line.input_tokens += total.input_tokens;
    line.output_tokens += total.output_tokens;
    line.cache_read_tokens += total.cache_read_tokens;
    line.cache_write_tokens += total.cache_write_tokens;
    line.units += total.units;
    line.cost_usd += total.cost_usd;
    line.ingested_cost_usd += total.cost_usd;
    line.unpriced += total.unpriced_records;
}
