//! `GET /metrics`: counters and histograms in the Prometheus text exposition format (version
//! 0.0.4), computed from the store by aggregate queries on each scrape — so they survive restarts
//! and agree across instances sharing one database. Every family has `# HELP` and `# TYPE`; label
//! values are escaped (`\\`, `"`, newline).

use crate::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use baton_store::HistogramBounds;
use baton_store::metrics::Histogram;
use std::fmt::Write;
use std::sync::Arc;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Job latency buckets, seconds: from a job being due to its end.
pub const JOB_LATENCY_BUCKETS_SECS: [f64; 10] = [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0];
/// Merge-queue wait buckets, seconds: from the merge gate's first verdict to its first pass.
pub const MERGE_WAIT_BUCKETS_SECS: [f64; 8] = [10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0];

/// The 404 of a route turned off by `server.metrics = false`.
pub(crate) fn turned_off() -> ApiError {
    ApiError::NotFound("metrics are turned off; set `server.metrics = true` to serve them".into())
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "observability",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"),
              (status = 404, description = "Turned off by `server.metrics = false`", body = crate::openapi::ErrorBody)))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    if !state.observability.metrics {
        return Err(turned_off());
    }
    let ms = |secs: &[f64]| secs.iter().map(|s| (s * 1000.0) as i64).collect();
    let bounds =
        HistogramBounds { job_latency_ms: ms(&JOB_LATENCY_BUCKETS_SECS), merge_wait_ms: ms(&MERGE_WAIT_BUCKETS_SECS) };
    let counts = state.engine.store().metric_counts(&bounds).await?;
    let mut out = Exposition::default();
    out.family("baton_tasks", "gauge", "Tasks by current stage.");
    for (stage, n) in &counts.tasks_by_stage {
        out.sample("baton_tasks", &[("stage", stage)], *n as f64);
    }
    out.family(
        "baton_stage_transitions_total",
        "counter",
        "Applied decisions that moved a task from one stage to another.",
    );
    for (from, to, n) in &counts.stage_transitions {
        out.sample("baton_stage_transitions_total", &[("from", from), ("to", to)], *n as f64);
    }
    out.family("baton_gate_verdicts_total", "counter", "Gate verdicts by gate and verdict.");
    for (gate, verdict, n) in &counts.gate_verdicts {
        out.sample("baton_gate_verdicts_total", &[("gate", gate), ("verdict", verdict)], *n as f64);
    }
    out.family("baton_agent_runs_total", "counter", "Agent runs by adapter and status (running while not ended).");
    for (adapter, status, n) in &counts.agent_runs {
        out.sample("baton_agent_runs_total", &[("adapter", adapter), ("status", status)], *n as f64);
    }
    out.family("baton_agent_tokens_total", "counter", "Tokens of every agent run by direction.");
    let t = &counts.tokens;
    for (direction, n) in [
        ("input", t.input),
        ("output", t.output),
        ("cache_read", t.cache_read),
        ("cache_write", t.cache_write),
        ("reasoning", t.reasoning),
    ] {
        out.sample("baton_agent_tokens_total", &[("direction", direction)], n as f64);
    }
    out.family("baton_cost_usd_total", "counter", "Priced spend of every agent run, US dollars.");
    out.sample("baton_cost_usd_total", &[], counts.cost_usd);
    out.histogram(
        "baton_job_latency_seconds",
        "Time from a job being due to its end, per finished job.",
        &counts.job_latency,
    );
    out.histogram(
        "baton_merge_queue_wait_seconds",
        "Time from the merge gate's first verdict on a task to its first pass.",
        &counts.merge_wait,
    );
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], out.text).into_response())
}

/// The text being written.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            let _ = write!(self.text, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, n) in histogram.bounds_ms.iter().zip(&histogram.buckets) {
            let le = number(*bound as f64 / 1000.0);
            self.sample(&bucket, &[("le", &le)], *n as f64);
        }
        self.sample(&bucket, &[("le", "+Inf")], histogram.count as f64);
        self.sample(&format!("{name}_sum"), &[], histogram.sum_ms as f64 / 1000.0);
        self.sample(&format!("{name}_count"), &[], histogram.count as f64);
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A sample value: integers without a fraction, others as Rust prints them (shortest round-trip).
fn number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    // Buckets ascend, end with +Inf equal to the count, and sum is in seconds.
    #[test]
    fn histogram_lines() {
        let mut h = Histogram::new(&[1000, 5000]);
        h.observe(500);
        h.observe(7000);
        let mut out = Exposition::default();
        out.histogram("x_seconds", "X.", &h);
        assert_eq!(
            out.text,
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\nx_seconds_bucket{le=\"1\"} 1\nx_seconds_bucket{le=\"5\"} 1\n\
             x_seconds_bucket{le=\"+Inf\"} 2\nx_seconds_sum 7.5\nx_seconds_count 2\n"
        );
    }
}
