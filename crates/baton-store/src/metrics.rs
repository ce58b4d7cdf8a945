//! Aggregate reads for observability (`/api/queue`, `/api/metrics`, `/metrics`): the open jobs
//! with their task's work item, and counters and histograms over the whole history, each computed
//! by the store in a handful of aggregate queries (never by loading every task).
//!
//! [`MetricCounts::from_records`] is the reference definition of every figure, over plain records:
//! a store that keeps its rows in memory uses it, and a SQL store must answer the same.

use crate::records::{AgentRunRecord, EventRecord, JobRecord, TaskRecord};
use serde::Serialize;
use std::collections::BTreeMap;

/// The merge gate's name as recorded in `gate` timeline events.
pub const MERGE_GATE: &str = "mergeable";

/// A queued or running job, with what the queue view shows of its task.
#[derive(Debug, Clone, Serialize)]
pub struct OpenJob {
    #[serde(flatten)]
    pub job: JobRecord,
    pub work_item_id: String,
    /// A STOP that arrived while the merge or deploy step ran, waiting for that step to end: who asked.
    pub cancel_requested: Option<String>,
}

/// A histogram over millisecond durations: `buckets[i]` counts the observations `<= bounds_ms[i]`
/// (cumulative, as Prometheus wants them); `count` and `sum_ms` cover every observation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Histogram {
    pub bounds_ms: Vec<i64>,
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_ms: i64,
}

impl Histogram {
    /// An empty histogram over `bounds_ms` (ascending).
    pub fn new(bounds_ms: &[i64]) -> Self {
        Histogram { bounds_ms: bounds_ms.to_vec(), buckets: vec![0; bounds_ms.len()], count: 0, sum_ms: 0 }
    }

    pub fn observe(&mut self, value_ms: i64) {
        for (bound, bucket) in self.bounds_ms.iter().zip(self.buckets.iter_mut()) {
            if value_ms <= *bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_ms += value_ms;
    }
}

/// Token totals of every agent run, by direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenTotals {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

/// Bucket bounds of the histograms [`crate::Store::metric_counts`] computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramBounds {
    /// Job latency: from the moment a job was due (its `available_at`, or its creation if later)
    /// to its end.
    pub job_latency_ms: Vec<i64>,
    /// Merge-queue wait per task: from the merge gate's first verdict to its first pass.
    pub merge_wait_ms: Vec<i64>,
}

/// Counters and histograms over the whole history. Every list is sorted by its labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricCounts {
    /// Tasks by current stage (`done` and `cancelled` included).
    pub tasks_by_stage: Vec<(String, u64)>,
    /// Applied decisions that moved a task from one stage to another: (from, to, count).
    pub stage_transitions: Vec<(String, String, u64)>,
    /// Gate verdicts recorded on the timeline: (gate, verdict, count).
    pub gate_verdicts: Vec<(String, String, u64)>,
    /// Agent runs: (adapter, status, count); a run still going has status `running`.
    pub agent_runs: Vec<(String, String, u64)>,
    pub tokens: TokenTotals,
    /// Priced spend of every agent run (unpriced runs add nothing).
    pub cost_usd: f64,
    pub job_latency: Histogram,
    pub merge_wait: Histogram,
}

/// The stage part of a state's display (`review (awaiting approval)` → `review`).
pub fn stage_of_display(display: &str) -> &str {
    display.split_once(" (").map_or(display, |(stage, _)| stage)
}

impl MetricCounts {
    /// The reference definition of every figure, over plain records.
    pub fn from_records<'a>(
        tasks: impl IntoIterator<Item = &'a TaskRecord>,
        jobs: impl IntoIterator<Item = &'a JobRecord>,
        events: impl IntoIterator<Item = &'a EventRecord>,
        runs: impl IntoIterator<Item = &'a AgentRunRecord>,
        bounds: &HistogramBounds,
    ) -> Self {
        let mut by_stage: BTreeMap<String, u64> = BTreeMap::new();
        for task in tasks {
            *by_stage.entry(task.state.stage.clone()).or_default() += 1;
        }
        let mut transitions: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut verdicts: BTreeMap<(String, String), u64> = BTreeMap::new();
        // Per task: the merge gate's first verdict and first pass.
        let mut merge: BTreeMap<i64, (Option<i64>, Option<i64>)> = BTreeMap::new();
        for event in events {
            let text = |key: &str| event.detail.get(key).and_then(|v| v.as_str()).map(str::to_string);
            if let (Some(from), Some(to)) = (text("from"), text("to")) {
                let (from, to) = (stage_of_display(&from).to_string(), stage_of_display(&to).to_string());
                if from != to {
                    *transitions.entry((from, to)).or_default() += 1;
                }
            }
            if event.kind == "gate"
                && let (Some(gate), Some(verdict)) = (text("gate"), text("verdict"))
            {
                if gate == MERGE_GATE {
                    let entry = merge.entry(event.task_id.0).or_default();
                    entry.0 = Some(entry.0.map_or(event.at_ms, |at| at.min(event.at_ms)));
                    if verdict == "pass" {
                        entry.1 = Some(entry.1.map_or(event.at_ms, |at| at.min(event.at_ms)));
                    }
                }
                *verdicts.entry((gate, verdict)).or_default() += 1;
            }
        }
        let mut job_latency = Histogram::new(&bounds.job_latency_ms);
        for job in jobs {
            if let Some(finished) = job.finished_at_ms {
                job_latency.observe((finished - job.available_at_ms.max(job.created_at_ms)).max(0));
            }
        }
        let mut merge_wait = Histogram::new(&bounds.merge_wait_ms);
        for (first, pass) in merge.values() {
            if let (Some(first), Some(pass)) = (first, pass) {
                merge_wait.observe(pass - first);
            }
        }
        let mut by_run: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut tokens = TokenTotals::default();
        let mut cost_usd = 0.0;
        for run in runs {
            let status = run.status.clone().unwrap_or_else(|| "running".to_string());
            *by_run.entry((run.adapter.clone(), status)).or_default() += 1;
            tokens.input += run.input_tokens;
            tokens.output += run.output_tokens;
            tokens.cache_read += run.cache_read_tokens;
            tokens.cache_write += run.cache_write_tokens;
            tokens.reasoning += run.reasoning_tokens;
            cost_usd += run.cost_usd.unwrap_or(0.0);
        }
        let triples = |map: BTreeMap<(String, String), u64>| map.into_iter().map(|((a, b), n)| (a, b, n)).collect();
        MetricCounts {
            tasks_by_stage: by_stage.into_iter().collect(),
            stage_transitions: triples(transitions),
            gate_verdicts: triples(verdicts),
            agent_runs: triples(by_run),
            tokens,
            cost_usd,
            job_latency,
            merge_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Buckets are cumulative: an observation counts in every bucket whose bound it does not exceed.
    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[10, 100]);
        for v in [5, 10, 50, 500] {
            h.observe(v);
        }
        assert_eq!(h.buckets, vec![2, 3]);
        assert_eq!((h.count, h.sum_ms), (4, 565));
    }

    #[test]
    fn stage_of_display_drops_the_hold() {
        assert_eq!(stage_of_display("review (awaiting approval)"), "review");
        assert_eq!(stage_of_display("done"), "done");
    }
}
