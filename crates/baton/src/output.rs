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
use baton_store::{AgentRunRecord, EventRecord, JobRecord, LeaseRecord, TaskRecord};
use serde::Serialize;
use std::path::PathBuf;

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

/// Exit status of a command whose output pipe was closed (128 + SIGPIPE, as a shell reports it).
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// Makes a closed output pipe (`baton … | head -1`) end the process quietly: `say!` already
/// ignores it, and a `println!` elsewhere, which panics on a closed pipe, exits with
/// [`EXIT_BROKEN_PIPE`] instead of printing a panic message. Any other panic is reported as before.
pub fn quiet_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(is_broken_pipe_panic) {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        report(info);
    }));
}

/// Whether a panic message is the standard library's for printing into a closed pipe.
fn is_broken_pipe_panic(message: &str) -> bool {
    (message.starts_with("failed printing to stdout") || message.starts_with("failed printing to stderr"))
        && message.contains("Broken pipe")
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

/// A cost for people: `unpriced` when unknown, else [`money`].
pub fn cost(cost_usd: Option<f64>) -> String {
    cost_usd.map_or("unpriced".to_string(), money)
}

/// Money for people: see [`baton_domain::money`].
pub fn money(usd: f64) -> String {
    baton_domain::money(usd)
}

/// `spent / cap` as a percentage for people (`-` without a cap).
pub fn percent(spent: f64, cap: Option<f64>) -> String {
    match cap {
        Some(cap) if cap > 0.0 => format!("{:.0} %", 100.0 * spent / cap),
        _ => "-".to_string(),
    }
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

/// Where a task's files are, for `task show`.
#[derive(Debug, Serialize)]
pub struct TaskFiles {
    /// The task's worktree (it exists while the task is live).
    pub worktree: Option<PathBuf>,
    /// Each stage's artifact.
    pub artifacts: Vec<ArtifactPath>,
    /// The most recent failing agent run or gate command.
    pub last_failure: Option<FailureDetail>,
}

/// One stage's artifact: relative to the worktree (as the agents see it) and absolute (in the
/// worktree while the task is live, else in the repository's checkout).
#[derive(Debug, Serialize)]
pub struct ArtifactPath {
    pub stage: String,
    pub relative: String,
    pub absolute: Option<PathBuf>,
    pub exists: bool,
}

/// The failing part of a job: what failed, why, its run log and the log's tail.
#[derive(Debug, Serialize)]
pub struct FailureDetail {
    pub job: i64,
    pub stage: String,
    /// `agent run 7 (claude)`, `gate tests_passed`, `the job`.
    pub what: String,
    pub reason: String,
    pub log: Option<PathBuf>,
    pub tail: Option<String>,
}

#[derive(Serialize)]
struct TaskDetail<'a> {
    task: &'a TaskRecord,
    timeline: &'a [EventRecord],
    jobs: &'a [JobRecord],
    agent_runs: &'a [AgentRunRecord],
    files: &'a TaskFiles,
}

pub fn task_detail(
    task: &TaskRecord,
    events: &[EventRecord],
    jobs: &[JobRecord],
    runs: &[AgentRunRecord],
    files: &TaskFiles,
    json: bool,
) {
    if json {
        return print_json(&TaskDetail { task, timeline: events, jobs, agent_runs: runs, files });
    }
    say!("{}  {}", task.work_item_id, task.title);
    say!("repo {} · branch {} · stage {}", task.repo, task.branch, task.state.display());
    if let Some(failure) = &task.state.failure {
        say!("last failure: {}", failure.lines().next().unwrap_or(""));
    }
    match &files.worktree {
        Some(worktree) if worktree.is_dir() => say!("worktree: {}", worktree.display()),
        Some(worktree) if task.state.is_terminal() => say!("worktree: {} (removed)", worktree.display()),
        Some(worktree) => say!("worktree: {} (not created yet)", worktree.display()),
        None => {}
    }
    if !files.artifacts.is_empty() {
        say!("");
        let rows: Vec<Vec<String>> = files
            .artifacts
            .iter()
            .map(|a| {
                let absolute = a.absolute.as_ref().map_or_else(String::new, |p| p.display().to_string());
                let state = if a.exists { "" } else { " (not written yet)" };
                vec![a.stage.clone(), a.relative.clone(), format!("{absolute}{state}")]
            })
            .collect();
        table(&["ARTIFACT OF", "PATH IN WORKTREE", "ABSOLUTE PATH"], &rows);
    }
    if let Some(failure) = &files.last_failure {
        say!("\nlast failing run: job {} · {} · {}", failure.job, failure.stage, failure.what);
        say!("  reason: {}", failure.reason.lines().next().unwrap_or(""));
        if let Some(log) = &failure.log {
            say!("  log: {}", log.display());
        }
        match &failure.tail {
            Some(tail) => {
                say!("  log tail:");
                for line in tail.lines() {
                    say!("    {line}");
                }
            }
            None if failure.reason.lines().count() > 1 => {
                say!("  output:");
                for line in failure.reason.lines().skip(1) {
                    say!("    {line}");
                }
            }
            None => {}
        }
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

/// Whether a `baton serve` runs on this data directory: it holds an exclusive lock on
/// `serve.lock` there for its whole life.
#[derive(Debug, Serialize)]
pub struct ServerState {
    pub running: bool,
    /// The lock file probed.
    pub lock_file: PathBuf,
    /// `server.listen` from the configuration (port 0: picked when the server starts).
    pub listen: String,
}

impl ServerState {
    /// One line for people.
    pub fn describe(&self) -> String {
        if self.running {
            let api = if self.listen.ends_with(":0") {
                "its API port is picked at start (see its log)".to_string()
            } else {
                format!("API on http://{}", self.listen)
            };
            format!("server: running (`baton serve` holds {}; {api})", self.lock_file.display())
        } else {
            "server: not running — no job starts until you run `baton serve`".to_string()
        }
    }
}

#[derive(Serialize)]
struct Status<'a> {
    server: &'a ServerState,
    tasks_by_stage: std::collections::BTreeMap<String, u64>,
    queued_jobs: usize,
    running_jobs: &'a [JobRecord],
    leases: &'a [LeaseRecord],
    /// Each repository's merge queue in train order.
    merge_queues: &'a [baton_engine::queue::QueueView],
    /// The `baton serve` instances sharing the store, with their last heartbeat.
    instances: &'a [InstanceView],
    /// The frozen repositories (a DEGRADED deploy, or a deploy whose outcome is unknown).
    freezes: &'a [baton_store::RepoFreeze],
    /// Tasks the claim holds back for their dependencies or the serial gate, with what they wait for.
    waiting: &'a [baton_engine::dependencies::Waiting],
}

/// An instance as `baton status` shows it.
#[derive(Debug, Serialize)]
pub struct InstanceView {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub heartbeat_at_ms: i64,
    /// Heartbeated within `limits.instance_grace_secs`.
    pub alive: bool,
    /// Seconds since its last heartbeat.
    pub silent_secs: i64,
}

#[allow(clippy::too_many_arguments)] // one argument per part of the status, each read by its own query
pub fn status(
    server: &ServerState,
    counts: &[baton_store::TaskCount],
    queued: &[JobRecord],
    running: &[JobRecord],
    leases: &[LeaseRecord],
    queues: &[baton_engine::queue::QueueView],
    instances: &[InstanceView],
    freezes: &[baton_store::RepoFreeze],
    waiting: &[baton_engine::dependencies::Waiting],
    json: bool,
) {
    let mut by_stage = std::collections::BTreeMap::new();
    let mut total = 0;
    for count in counts {
        let key = if count.hold.is_empty() { count.stage.clone() } else { format!("{} ({})", count.stage, count.hold) };
        *by_stage.entry(key).or_insert(0) += count.tasks;
        total += count.tasks;
    }
    if json {
        return print_json(&Status {
            server,
            tasks_by_stage: by_stage,
            queued_jobs: queued.len(),
            running_jobs: running,
            leases,
            merge_queues: queues,
            instances,
            freezes,
            waiting,
        });
    }
    say!("{}", server.describe());
    for freeze in freezes {
        let until = if freeze.frozen_by == baton_engine::monitor::DEPLOY_PRINCIPAL {
            "nothing lands or deploys there until the target is checked and"
        } else {
            "nothing lands there but a revert until"
        };
        say!(
            "FROZEN {}: {} (by {}); {until} `baton repo unfreeze {}`",
            safe(&freeze.repo),
            safe(&freeze.reason),
            safe(&freeze.frozen_by),
            safe(&freeze.repo)
        );
    }
    say!("tasks: {total}");
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
    for w in waiting {
        let why = match w.gate.as_str() {
            "serial" => "serial gate, behind",
            "frozen" => "serial gate, repository frozen, waits for",
            _ => "waits for",
        };
        say!(
            "waiting {} {} ({}): {why} {}",
            safe(&w.work_item_id),
            safe(&w.stage),
            safe(&w.repo),
            w.waits_for.iter().map(|x| safe(x)).collect::<Vec<_>>().join(", ")
        );
    }
    // One instance is the usual case, and its state is the server line above.
    if instances.len() > 1 {
        say!("instances:");
        for i in instances {
            let state = if i.alive { "alive" } else { "DEAD" };
            say!(
                "  {:<24} {:<5} on {} (pid {}), last heartbeat {} s ago",
                safe(&i.id),
                state,
                safe(&i.host),
                i.pid,
                i.silent_secs
            );
        }
    }
    for queue in queues {
        say!("merge queue {} (speculation depth {}):", safe(&queue.repo), queue.depth);
        for entry in &queue.entries {
            let on = entry.base.as_deref().map_or(String::new(), |b| format!(" on {}", &b[..b.len().min(10)]));
            say!(
                "  {:>2}. {:<12} {:<8}{on} waiting {}",
                entry.position,
                entry.work_item_id,
                entry.state,
                duration_ms(entry.waited_ms)
            );
        }
    }
}

pub fn usage(report: &baton_engine::usage_report::UsageReport, json: bool) {
    if json {
        return print_json(report);
    }
    let lines: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|r| {
            vec![
                r.key.clone(),
                r.runs.to_string(),
                r.records.to_string(),
                tokens(r.input_tokens),
                tokens(r.output_tokens),
                tokens(r.cache_read_tokens),
                tokens(r.cache_write_tokens),
                if r.units > 0.0 { format!("{:.2}", r.units) } else { String::new() },
                money(r.cost_usd),
                r.unpriced.to_string(),
            ]
        })
        .collect();
    table(
        &[
            &report.by.to_uppercase(),
            "RUNS",
            "INGESTED",
            "IN",
            "OUT",
            "CACHE READ",
            "CACHE WRITE",
            "UNITS",
            "COST",
            "UNPRICED",
        ],
        &lines,
    );
    say!("total {} (pricing {})", money(report.total_cost_usd), report.pricing_version);
    let economics = &report.unit_economics;
    let per = |v: Option<f64>| v.map_or("-".to_string(), money);
    let merged = &economics.per_merged_task;
    say!("");
    say!(
        "per merged task: {} ({} over {} done tasks)",
        per(merged.usd_per_task),
        money(merged.cost_usd),
        merged.done_tasks
    );
    for stage in &economics.per_stage {
        say!(
            "per task in {}: {} ({} over {} tasks)",
            stage.stage,
            per(stage.usd_per_task),
            money(stage.cost_usd),
            stage.tasks
        );
    }
    for unit in &economics.per_unit {
        say!("per {}: {} ({} over {:.2})", unit.unit_kind, per(unit.usd_per_unit), money(unit.cost_usd), unit.units);
    }
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
            "repo_pipelines": config
                .engine
                .repos
                .iter()
                .filter_map(|r| {
                    let named = r.pipeline.as_ref()?;
                    let stages: Vec<&str> = named.pipeline.stages.iter().map(|s| s.name.as_str()).collect();
                    Some((r.name.clone(), serde_json::json!({ "pipeline": named.name, "stages": stages })))
                })
                .collect::<serde_json::Map<_, _>>(),
        }));
    }
    say!("configuration OK ({source})");
    say!("  data dir: {}", config.engine.data_dir.display());
    say!("  repos: {}", config.engine.repos.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "));
    say!("  agents: {}", config.engine.agents.keys().cloned().collect::<Vec<_>>().join(", "));
    for repo in &config.engine.repos {
        if let Some(named) = &repo.pipeline {
            let stages: Vec<&str> = named.pipeline.stages.iter().map(|s| s.name.as_str()).collect();
            say!("  pipeline of {}: {} ({})", repo.name, named.name, stages.join(" → "));
        }
    }
    say!("  listen: {}", config.server.listen);
}

/// Width of the progress bar, in cells.
const PROGRESS_BAR_CELLS: usize = 24;

/// Progress of a long operation (`baton demo`, `baton bench`) on stderr: a bar redrawn in place
/// on a terminal, plain lines otherwise (one per change, so a log stays readable). Stdout keeps
/// only the command's own output.
pub struct Progress {
    label: String,
    total: u64,
    terminal: bool,
    state: std::sync::Mutex<ProgressState>,
}

#[derive(Default)]
struct ProgressState {
    /// Steps done.
    done: u64,
    /// Whether a bar is on the screen (to erase before other output).
    drawn: bool,
    /// The last line written without a terminal, not repeated.
    last_plain: String,
}

/// Starts a progress report of `total` steps named `label`.
pub fn progress(label: &str, total: u64) -> Progress {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
    progress_to(label, total, terminal)
}

/// A progress report drawn as a bar (`terminal`) or written as plain lines.
pub fn progress_to(label: &str, total: u64, terminal: bool) -> Progress {
    Progress {
        label: label.to_string(),
        total: total.max(1),
        terminal,
        state: std::sync::Mutex::new(ProgressState::default()),
    }
}

impl Progress {
    /// Starts the next step, described by `message`: the steps before it count as done.
    pub fn step(&self, message: &str) {
        let done = self.lock().done;
        self.set(done, message);
        self.lock().done = (done + 1).min(self.total);
    }

    /// Shows `done` of the total steps with `message`.
    pub fn set(&self, done: u64, message: &str) {
        let done = done.min(self.total);
        let line = self.render(done, message);
        let mut state = self.lock();
        state.done = done;
        if self.terminal {
            write_err_raw(&line);
            state.drawn = true;
        } else if state.last_plain != line {
            write_err_line(&line);
            state.last_plain = line;
        }
    }

    /// Erases the bar so that other output starts on a clean line (no-op without a terminal).
    pub fn clear(&self) {
        let mut state = self.lock();
        if self.terminal && state.drawn {
            write_err_raw("");
            state.drawn = false;
        }
    }

    /// Ends the report with a last line.
    pub fn finish(&self, message: &str) {
        self.clear();
        let line = self.render(self.total, message);
        let mut state = self.lock();
        state.done = self.total;
        if state.last_plain != line {
            write_err_line(&line);
            state.last_plain = line;
        }
    }

    /// `label [#####-----] 2/5 message` on a terminal, `label: 2/5 message` otherwise.
    fn render(&self, done: u64, message: &str) -> String {
        let done = done.min(self.total);
        if !self.terminal {
            return format!("{}: {done}/{} {message}", self.label, self.total);
        }
        let filled = (done as usize * PROGRESS_BAR_CELLS) / self.total as usize;
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(PROGRESS_BAR_CELLS - filled));
        format!("{} [{bar}] {done}/{} {message}", self.label, self.total)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Erases the current terminal line and writes `text` (terminal-safe) there, without a newline.
fn write_err_raw(text: &str) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "\r\x1b[2K{}", safe(text));
    let _ = stderr.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    // The money rules: $0, 4 decimals under $1 (rounded as the decimal it stands for), 2 from $1,
    // 2 significant digits for dust, `unpriced` when unknown.
    #[test]
    fn money_reads_as_people_write_it() {
        assert_eq!(money(0.0), "$0");
        assert_eq!(money(0.052649999999999995), "$0.0527");
        assert_eq!(money(0.0526), "$0.0526");
        assert_eq!(money(0.5), "$0.5000");
        assert_eq!(money(1.0), "$1.00");
        assert_eq!(money(12.345), "$12.35");
        assert_eq!(money(0.000031), "$0.000031");
        assert_eq!(cost(None), "unpriced");
        assert_eq!(cost(Some(2.0)), "$2.00");
        assert_eq!(percent(0.05265, Some(1.0)), "5 %");
        assert_eq!(percent(1.0, None), "-");
    }

    // Off a terminal the progress is one plain line per change; on one, a bar with the count.
    #[test]
    fn progress_renders_plain_or_bar() {
        let plain = progress_to("bench", 4, false);
        assert_eq!(plain.render(1, "store"), "bench: 1/4 store");
        let bar = progress_to("demo", 4, true);
        assert_eq!(bar.render(2, "x"), format!("demo [{}{}] 2/4 x", "#".repeat(12), "-".repeat(12)));
        assert_eq!(bar.render(9, "x"), format!("demo [{}] 4/4 x", "#".repeat(24)));
    }
}
