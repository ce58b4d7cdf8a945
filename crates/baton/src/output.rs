//! Human-readable and `--json` output of the read commands. Everything printed passes through
//! [`safe`]: stored text (titles, failures, answers) can never move the cursor, ring the bell, set
//! the terminal title or reorder a line with bidi characters, and a closed pipe (`| head`) ends the
//! output quietly.

/// `println!` for text that may hold stored, untrusted parts: escapes terminal control and bidi
/// characters, and ignores a closed stdout.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::write_line(&format!($($arg)*))
    };
}

/// `eprintln!` with the same escaping.
macro_rules! warn_line {
    ($($arg:tt)*) => {
        $crate::output::write_err_line(&format!($($arg)*))
    };
}

use baton::config::Config;
use baton_store::{AgentRunRecord, EventRecord, JobRecord, LeaseRecord, TaskRecord, UsageRow};
use serde::Serialize;

/// Writes one line to stdout, terminal-safe; a closed pipe is not an error.
pub fn write_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{}", safe(text));
}

/// Writes one line to stderr, terminal-safe.
pub fn write_err_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{}", safe(text));
}

/// Text with control characters (but newlines and tabs) and bidi characters escaped.
pub fn safe(text: &str) -> std::borrow::Cow<'_, str> {
    baton_domain::text::terminal_safe(text, true)
}

/// Pretty JSON; bidi characters, which JSON leaves raw, are written as `\uXXXX` escapes too.
pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            let escaped: String = text
                .chars()
                .map(|ch| {
                    if baton_domain::text::is_bidi_control(ch) || matches!(ch, '\u{2028}' | '\u{2029}') {
                        format!("\\u{:04x}", u32::from(ch))
                    } else {
                        ch.to_string()
                    }
                })
                .collect();
            write_line(&escaped);
        }
        Err(error) => write_err_line(&format!("error: cannot encode JSON: {error}")),
    }
}

/// `1234567` → `1.2M`, `12345` → `12.3k`.
pub fn tokens(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

pub fn duration_ms(ms: i64) -> String {
    let secs = ms.max(0) as f64 / 1000.0;
    if secs < 60.0 { format!("{secs:.1}s") } else { format!("{}m{:02}s", (secs / 60.0) as u64, (secs % 60.0) as u64) }
}

pub fn cost(cost_usd: Option<f64>) -> String {
    cost_usd.map_or("unpriced".to_string(), |c| format!("${c:.4}"))
}

/// Prints rows as an aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        say!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for row in rows {
        line(row.clone());
    }
}

pub fn task_list(tasks: &[TaskRecord], json: bool) {
    if json {
        return print_json(tasks);
    }
    if tasks.is_empty() {
        say!("no tasks");
        return;
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.work_item_id.clone(),
                t.repo.clone(),
                t.state.display(),
                t.state.attempt.to_string(),
                t.title.clone(),
            ]
        })
        .collect();
    table(&["TASK", "REPO", "STAGE", "ATTEMPT", "TITLE"], &rows);
}

#[derive(Serialize)]
struct TaskDetail<'a> {
    task: &'a TaskRecord,
    timeline: &'a [EventRecord],
    jobs: &'a [JobRecord],
    agent_runs: &'a [AgentRunRecord],
}

pub fn task_detail(task: &TaskRecord, events: &[EventRecord], jobs: &[JobRecord], runs: &[AgentRunRecord], json: bool) {
    if json {
        return print_json(&TaskDetail { task, timeline: events, jobs, agent_runs: runs });
    }
    say!("{}  {}", task.work_item_id, task.title);
    say!("repo {} · branch {} · stage {}", task.repo, task.branch, task.state.display());
    if let Some(failure) = &task.state.failure {
        say!("last failure: {}", failure.lines().next().unwrap_or(""));
    }
    let start = events.first().map_or(0, |e| e.at_ms);
    say!("\ntimeline:");
    for event in events {
        say!(
            "  {:>8}  {:<12} {:<15} {}",
            duration_ms(event.at_ms - start),
            event.stage,
            event.kind,
            event.message.lines().next().unwrap_or("")
        );
    }
    if !runs.is_empty() {
        say!("\nagent runs:");
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    r.stage.clone(),
                    r.adapter.clone(),
                    r.model.clone().unwrap_or_default(),
                    r.status.clone().unwrap_or_else(|| "running".into()),
                    duration_ms(r.ended_at_ms.unwrap_or(r.started_at_ms) - r.started_at_ms),
                    tokens(r.input_tokens),
                    tokens(r.output_tokens),
                    cost(r.cost_usd),
                ]
            })
            .collect();
        table(&["STAGE", "ADAPTER", "MODEL", "STATUS", "TIME", "IN", "OUT", "COST"], &rows);
    }
    say!("\njobs: {}", jobs.len());
}

#[derive(Serialize)]
struct Status<'a> {
    tasks_by_stage: std::collections::BTreeMap<String, usize>,
    queued_jobs: usize,
    running_jobs: &'a [JobRecord],
    leases: &'a [LeaseRecord],
}

pub fn status(tasks: &[TaskRecord], queued: &[JobRecord], running: &[JobRecord], leases: &[LeaseRecord], json: bool) {
    let mut by_stage = std::collections::BTreeMap::new();
    for task in tasks {
        *by_stage.entry(task.state.display()).or_insert(0) += 1;
    }
    if json {
        return print_json(&Status {
            tasks_by_stage: by_stage,
            queued_jobs: queued.len(),
            running_jobs: running,
            leases,
        });
    }
    say!("tasks: {}", tasks.len());
    for (stage, count) in &by_stage {
        say!("  {stage:<28} {count}");
    }
    say!("jobs: {} queued, {} running", queued.len(), running.len());
    for job in running {
        say!(
            "  job {} task {} {} (pid {})",
            job.id,
            job.task_id,
            job.stage,
            job.pid.map_or("-".into(), |p| p.to_string())
        );
    }
    for lease in leases {
        say!("lease {} held by {} (token {})", lease.name, lease.holder, lease.token);
    }
}

pub fn usage(by: &str, rows: &[UsageRow], json: bool) {
    if json {
        return print_json(rows);
    }
    let mut total = 0.0;
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            total += r.cost_usd;
            vec![
                r.key.clone(),
                r.runs.to_string(),
                tokens(r.input_tokens),
                tokens(r.output_tokens),
                tokens(r.cache_read_tokens),
                tokens(r.cache_write_tokens),
                format!("${:.4}", r.cost_usd),
                r.unpriced_runs.to_string(),
            ]
        })
        .collect();
    table(&[&by.to_uppercase(), "RUNS", "IN", "OUT", "CACHE READ", "CACHE WRITE", "COST", "UNPRICED"], &lines);
    say!("total ${total:.4}");
}

pub fn config_ok(config: &Config, json: bool) {
    let source = config.source.as_ref().map_or("embedded defaults".to_string(), |p| p.display().to_string());
    if json {
        return print_json(&serde_json::json!({
            "ok": true,
            "source": source,
            "data_dir": config.engine.data_dir,
            "repos": config.engine.repos.iter().map(|r| &r.name).collect::<Vec<_>>(),
            "agents": config.engine.agents.keys().collect::<Vec<_>>(),
            "stages": config.engine.pipeline.stages.iter().map(|s| &s.name).collect::<Vec<_>>(),
        }));
    }
    say!("configuration OK ({source})");
    say!("  data dir: {}", config.engine.data_dir.display());
    say!("  repos: {}", config.engine.repos.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "));
    say!("  agents: {}", config.engine.agents.keys().cloned().collect::<Vec<_>>().join(", "));
    say!("  listen: {}", config.server.listen);
}
