//! `baton task …`, `baton status`, `baton usage` and the hidden `agent-script` runner.
//! Task commands work with or without `baton serve` running: they go through the same engine
//! transactions, and a running server picks the result up on its next poll.

use crate::cli::{
    BudgetCommand, EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, EXIT_SUPPRESSED, EXIT_USAGE, TaskCommand, open_engine,
};
use crate::output;
use anyhow::Context;
use baton::config::Config;
use baton_adapters::agent::script::{Script, ScriptContext, interpret};
use baton_engine::{EngineError, Input, InputOutcome, NewTaskRequest};
use baton_store::{JobStatus, TaskFilter, TaskKey};
use std::path::Path;

/// Reads a text file (or stdin for `-`) of at most `max` bytes, never more: `/dev/zero` or a huge
/// file is refused after `max + 1` bytes, naming the limit.
fn read_bounded(path: &Path, max: usize) -> Result<String, String> {
    use std::io::Read;
    let source: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?)
    };
    let mut bytes = Vec::new();
    source
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if bytes.len() > max {
        return Err(format!(
            "{} is larger than {max} bytes, the limit for a task body (limits.body_bytes_max)",
            path.display()
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

pub async fn run(config: &Config, command: TaskCommand, json: bool) -> anyhow::Result<u8> {
    let engine = open_engine(config).await?;
    let (key, input, dedup) = match command {
        TaskCommand::Add { repo, title, body, body_file, external_ref, depends_on } => {
            let body = match body_file {
                Some(path) => match read_bounded(&path, config.engine.limits.body_bytes_max) {
                    Ok(text) => text,
                    Err(message) => {
                        warn_line!("error: {message}");
                        return Ok(EXIT_USAGE);
                    }
                },
                None => body.unwrap_or_default(),
            };
            let depends_on: Vec<TaskKey> = depends_on.iter().map(|k| TaskKey::parse(k.trim())).collect();
            let request = NewTaskRequest { repo, title, body, external_ref };
            return match engine.create_task_depending(request, None, &depends_on).await {
                Ok(task) => {
                    if json {
                        output::print_json(&task);
                    } else {
                        say!("{}", task.work_item_id);
                        // On stderr: scripts read the id from stdout.
                        if server_state(config).running {
                            warn_line!(
                                "{}: filed; the running `baton serve` starts its analysis on its next poll",
                                task.work_item_id
                            );
                        } else {
                            warn_line!(
                                "{}: filed; no `baton serve` is running on {}, so it waits — start one with \
                                 `baton serve` and the task begins with its analysis",
                                task.work_item_id,
                                config.engine.data_dir.display()
                            );
                        }
                    }
                    Ok(EXIT_OK)
                }
                Err(EngineError::Invalid(message)) => {
                    warn_line!("error: {message}");
                    Ok(EXIT_USAGE)
                }
                Err(EngineError::Refused(message)) => {
                    warn_line!("error: {message}; nothing created");
                    Ok(EXIT_ERROR)
                }
                Err(EngineError::NotFound(what)) => {
                    warn_line!("error: --depends-on names no {what}; `baton task list --all` shows them");
                    Ok(EXIT_NOT_FOUND)
                }
                Err(EngineError::Store(baton_store::StoreError::Exists(task))) => {
                    // The ticket is already being carried: answer with its task, change nothing.
                    if json {
                        output::print_json(&task);
                    } else {
                        say!("{}", task.work_item_id);
                    }
                    warn_line!(
                        "{}: ticket {} already has this live task; nothing created (stop it first to start \
                         the ticket again)",
                        task.work_item_id,
                        task.external_ref.as_deref().unwrap_or("?")
                    );
                    Ok(EXIT_SUPPRESSED)
                }
                Err(other) => Err(other.into()),
            };
        }
        TaskCommand::List { all } => {
            let tasks = engine.store().list_tasks(&TaskFilter { active_only: !all, ..TaskFilter::default() }).await?;
            output::task_list(&tasks, json);
            return Ok(EXIT_OK);
        }
        TaskCommand::Show { id } => {
            let Some(task) = engine.store().task(&TaskKey::parse(&id)).await? else {
                warn_line!("error: no task `{id}`; `baton task list --all` shows them");
                return Ok(EXIT_NOT_FOUND);
            };
            let events = engine.store().events(Some(task.id), 0, 10_000).await?;
            let jobs = engine.store().jobs_for_task(task.id).await?;
            let runs = engine.store().agent_runs(task.id).await?;
            let files = task_files(config, &task, &jobs, &runs);
            output::task_detail(&task, &events, &jobs, &runs, &files, json);
            return Ok(EXIT_OK);
        }
        TaskCommand::Priority { id, priority } => {
            let by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
            return match baton_engine::queue::set_priority(&engine, &TaskKey::parse(&id), priority, &by).await {
                Ok(note) => {
                    if json {
                        output::print_json(&serde_json::json!({ "applied": note }));
                    } else {
                        say!("{id}: {note}");
                    }
                    Ok(EXIT_OK)
                }
                Err(baton_engine::EngineError::NotFound(what)) => {
                    warn_line!("error: no {what}; `baton task list --all` shows them");
                    Ok(EXIT_NOT_FOUND)
                }
                Err(baton_engine::EngineError::Invalid(why)) => {
                    warn_line!("{id}: nothing changed: {why}");
                    Ok(EXIT_SUPPRESSED)
                }
                Err(other) => Err(other.into()),
            };
        }
        TaskCommand::Depend { id, on } => return crate::depend_cmd::depend(&engine, &id, &on, json).await,
        TaskCommand::Undepend { id, on } => return crate::depend_cmd::undepend(&engine, &id, &on, json).await,
        TaskCommand::Approve(a) => (a.id, Input::Approve, a.key),
        TaskCommand::Answer { input, text } => (input.id, Input::Answer { text }, input.key),
        TaskCommand::ConfirmDeploy(a) => (a.id, Input::ConfirmDeploy, a.key),
        TaskCommand::Retry(a) => (a.id, Input::Retry, a.key),
        TaskCommand::Resume(a) => (a.id, Input::Resume, a.key),
        TaskCommand::Stop(a) => (a.id, Input::Stop, a.key),
    };
    let by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
    match engine.submit(&TaskKey::parse(&key), input, &by, dedup).await {
        Ok(outcome) => {
            if json {
                output::print_json(&outcome);
            }
            Ok(match outcome {
                InputOutcome::Applied { note } => {
                    if !json {
                        say!("{key}: {note}");
                    }
                    EXIT_OK
                }
                InputOutcome::Suppressed { reason } => {
                    if !json {
                        warn_line!("{key}: nothing changed: {reason}");
                    }
                    EXIT_SUPPRESSED
                }
                InputOutcome::Duplicate => {
                    if !json {
                        say!("{key}: already applied (same --key); nothing changed");
                    }
                    EXIT_OK
                }
            })
        }
        Err(EngineError::NotFound(what)) => {
            warn_line!("error: no {what}; `baton task list --all` shows them");
            Ok(EXIT_NOT_FOUND)
        }
        Err(EngineError::Invalid(message)) => {
            warn_line!("error: {message}");
            Ok(EXIT_USAGE)
        }
        Err(other) => Err(other.into()),
    }
}

/// Lines of a log shown as a failure's tail.
const TAIL_LINES: usize = 20;

/// Bytes read from the end of a log to find its tail (a run log can be large).
const TAIL_BYTES_MAX: u64 = 64 * 1024;

/// Where a task's files are: its worktree, each stage's artifact (relative to the worktree and
/// absolute), and the log of the last failing agent run or gate command with its tail.
fn task_files(
    config: &Config,
    task: &baton_store::TaskRecord,
    jobs: &[baton_store::JobRecord],
    runs: &[baton_store::AgentRunRecord],
) -> output::TaskFiles {
    let settings = &config.engine;
    let worktree =
        baton_engine::workspace::worktree_path(&settings.worktrees_dir(), &task.repo, &task.work_item_id).ok();
    // After the task ends its worktree is gone; the artifacts are then in the repository's checkout.
    let checkout = settings.repo(&task.repo).filter(|r| r.url.is_none()).map(|r| r.path.clone());
    let base = worktree.clone().filter(|w| w.is_dir()).or(checkout);
    let pipeline = settings.effective_pipeline_for(&task.repo);
    let artifacts = pipeline
        .stages
        .iter()
        .filter_map(|stage| {
            let name = stage.artifact.as_ref()?;
            let relative = format!("docs/baton/{}/{name}", task.work_item_id);
            let absolute = base.as_ref().or(worktree.as_ref()).map(|b| b.join(&relative));
            let exists = absolute.as_ref().is_some_and(|p| p.is_file());
            Some(output::ArtifactPath { stage: stage.name.clone(), relative, absolute, exists })
        })
        .collect();
    let last_failure = last_failure(config, task, jobs, runs);
    output::TaskFiles { worktree, artifacts, last_failure }
}

/// The most recent failing job: its failing agent run (stderr log, else stdout) or gate command
/// (combined output log), with the log's tail; else the recorded reason.
fn last_failure(
    config: &Config,
    task: &baton_store::TaskRecord,
    jobs: &[baton_store::JobRecord],
    runs: &[baton_store::AgentRunRecord],
) -> Option<output::FailureDetail> {
    use baton_domain::{JobOutcome, Verdict};
    let mut jobs: Vec<&baton_store::JobRecord> = jobs.iter().collect();
    jobs.sort_by_key(|j| std::cmp::Reverse(j.id));
    for job in jobs {
        let Some(outcome) = job.outcome() else { continue };
        let agent_failure = |reason: &str| {
            let run = runs.iter().filter(|r| r.job_id == job.id).max_by_key(|r| r.id);
            let log = run.map(|r| {
                let dir = Path::new(&r.log_path);
                let stderr = dir.join("stderr.log");
                if std::fs::metadata(&stderr).is_ok_and(|m| m.len() > 0) { stderr } else { dir.join("stdout.log") }
            });
            output::FailureDetail {
                job: job.id.0,
                stage: job.stage.clone(),
                what: run.map_or_else(|| "the job".to_string(), |r| format!("agent run {} ({})", r.id, r.adapter)),
                reason: reason.to_string(),
                tail: log.as_deref().and_then(tail_of),
                log,
            }
        };
        match &outcome {
            JobOutcome::Failed { reason }
            | JobOutcome::Infrastructure { reason }
            | JobOutcome::BudgetExceeded { reason }
            | JobOutcome::QuotaExhausted { reason, .. } => return Some(agent_failure(reason)),
            JobOutcome::Completed { verdicts } => {
                let Some(verdict) = verdicts.iter().find(|v| matches!(v.verdict, Verdict::Fail | Verdict::Error))
                else {
                    continue;
                };
                let run_dir = baton_engine::executor::job_run_dir(
                    &config.engine.runs_dir(),
                    &task.work_item_id,
                    &job.stage,
                    job.id,
                );
                let log = run_dir.join(format!("cmd-{}", verdict.gate)).join(baton_runner::ports::OUTPUT_FILE);
                let log = log.is_file().then_some(log);
                return Some(output::FailureDetail {
                    job: job.id.0,
                    stage: job.stage.clone(),
                    what: format!("gate {}", verdict.gate),
                    reason: verdict.reason.clone(),
                    tail: log.as_deref().and_then(tail_of),
                    log,
                });
            }
            _ => continue,
        }
    }
    None
}

/// The last [`TAIL_LINES`] lines of a log file (read from its last [`TAIL_BYTES_MAX`] bytes);
/// `None` when it cannot be read or is empty.
fn tail_of(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES_MAX))).ok()?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES_MAX).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    (!tail.trim().is_empty()).then_some(tail)
}

/// Whether a `baton serve` runs on the configured data directory. The server holds an exclusive
/// `flock` on `<data_dir>/serve.lock` while it runs (released by the kernel when it dies, even by
/// `kill -9`), so the probe tries a shared lock without waiting and lets go at once: refused
/// means a server holds it. A missing lock file means no server ever ran there.
pub fn server_state(config: &Config) -> output::ServerState {
    let lock_file = config.engine.data_dir.join("serve.lock");
    let running = match std::fs::File::open(&lock_file) {
        Err(_) => false,
        Ok(file) => match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
            Ok(lock) => {
                drop(lock);
                false
            }
            Err((_, errno)) => errno == nix::errno::Errno::EWOULDBLOCK,
        },
    };
    output::ServerState { running, lock_file, listen: config.server.listen.to_string() }
}

pub async fn status(config: &Config, json: bool) -> anyhow::Result<u8> {
    let engine = open_engine(config).await?;
    let server = server_state(config);
    // Counts by one aggregate query: the command stays quick with any backlog.
    let counts = engine.store().task_counts().await?;
    let queued = engine.store().jobs_with_status(JobStatus::Queued).await?;
    let running = engine.store().jobs_with_status(JobStatus::Running).await?;
    let leases = engine.store().leases().await?;
    let queues = baton_engine::queue::views(&engine).await?;
    let now = engine.clock().now_ms();
    let grace_ms = config.engine.limits.instance_grace_secs as i64 * 1000;
    let instances: Vec<output::InstanceView> = engine
        .store()
        .instances()
        .await?
        .into_iter()
        .map(|i| output::InstanceView {
            alive: i.is_alive(now, grace_ms),
            silent_secs: (now - i.heartbeat_at_ms).max(0) / 1000,
            id: i.id,
            host: i.host,
            pid: i.pid,
            heartbeat_at_ms: i.heartbeat_at_ms,
        })
        .collect();
    let freezes = engine.store().repo_freezes().await?;
    let open = engine.store().open_jobs().await?;
    let waiting = baton_engine::dependencies::waiting(&engine, &open).await?;
    output::status(&server, &counts, &queued, &running, &leases, &queues, &instances, &freezes, &waiting, json);
    if !json {
        // Secrets the server needs but this shell does not have: worth knowing before `serve`.
        for issue in &config.deferred {
            warn_line!("note: `baton serve` would stop here: {}: {}", issue.key, issue.message);
        }
    }
    Ok(EXIT_OK)
}

pub async fn usage(config: &Config, by: &str, json: bool) -> anyhow::Result<u8> {
    let Some(group) = baton_engine::usage_report::UsageBy::parse(by) else {
        warn_line!(
            "error: cannot group usage by `{by}`; use {}",
            baton_engine::usage_report::UsageBy::choices().replace('|', ", ")
        );
        return Ok(EXIT_USAGE);
    };
    let engine = open_engine(config).await?;
    let report = engine.usage_report(group).await?;
    output::usage(&report, json);
    Ok(EXIT_OK)
}

/// The `script` agent process: reads its context from `BATON_*` variables, performs the step,
/// prints the result line. Exit 1 when the step fails.
pub async fn agent_script(script_path: &Path) -> anyhow::Result<u8> {
    let script = Script::load(script_path)?;
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set (Baton sets it)"));
    let context = ScriptContext {
        work_item: var("BATON_WORK_ITEM")?,
        title: var("BATON_TASK_TITLE")?,
        stage: var("BATON_STAGE")?,
        attempt: var("BATON_ATTEMPT")?.parse().context("BATON_ATTEMPT is not a number")?,
        run: var("BATON_RUN")?.parse().context("BATON_RUN is not a number")?,
        worktree: std::env::current_dir().context("reading the working directory")?,
        now_ms: baton_engine::Clock::now_ms(&baton_engine::SystemClock),
        run_dir: var("BATON_PROMPT_FILE")
            .map(|p| baton_adapters::agent::run_dir_of_prompt(Path::new(&p)).unwrap_or_default())
            .unwrap_or_else(|_| std::env::temp_dir()),
        pid: std::process::id(),
        append_dir: std::env::var_os(baton_adapters::agent::script::APPEND_DIR_ENV).map(std::path::PathBuf::from),
    };
    let (line, code) = interpret(&script, &context).await;
    say!("{line}");
    Ok(if code == 0 { EXIT_OK } else { EXIT_ERROR })
}

/// `baton budget set|show`.
pub async fn budget(config: &Config, command: BudgetCommand, json: bool) -> anyhow::Result<u8> {
    let engine = open_engine(config).await?;
    match command {
        BudgetCommand::Set { task, repo, global, usd } => {
            let cap = match usd.as_str() {
                "none" => None,
                text => match text.parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
                    _ => {
                        warn_line!("error: --usd must be a non-negative number of dollars or `none`, not `{text}`");
                        return Ok(EXIT_USAGE);
                    }
                },
            };
            let scope = match (task, repo, global) {
                (Some(id), None, false) => match engine.store().task(&TaskKey::parse(&id)).await? {
                    Some(task) => format!("task:{}", task.id),
                    None => {
                        warn_line!("error: no task `{id}`");
                        return Ok(EXIT_NOT_FOUND);
                    }
                },
                (None, Some(repo), false) => format!("repo:{repo}"),
                (None, None, true) => "global".to_string(),
                _ => {
                    warn_line!("error: give exactly one of --task ID, --repo NAME or --global");
                    return Ok(EXIT_USAGE);
                }
            };
            engine.store().set_budget_cap(&scope, cap, engine.clock().now_ms()).await?;
            if json {
                output::print_json(&serde_json::json!({ "scope": scope, "cap_usd": cap }));
            } else {
                match cap {
                    Some(cap) => say!("{scope}: cap {}", output::money(cap)),
                    None => say!("{scope}: no cap"),
                }
            }
            Ok(EXIT_OK)
        }
        BudgetCommand::Show => {
            let caps = engine.store().budget_caps().await?;
            let b = &config.engine.budgets;
            let report = engine.budget_report().await?;
            if json {
                output::print_json(&serde_json::json!({
                    "configured": { "task_usd": b.task_usd, "repo_daily_usd": b.repo_daily_usd,
                                    "global_daily_usd": b.global_daily_usd, "warn_ratio": b.warn_ratio },
                    "overrides": caps.iter().map(|(s, c)| serde_json::json!({ "scope": s, "cap_usd": c })).collect::<Vec<_>>(),
                    "spend": report.caps,
                    "forecast": report.forecast,
                    "rule": report.rule,
                }));
            } else {
                let show = |v: Option<f64>| v.map_or("none".to_string(), output::money);
                say!(
                    "configured: task {} · repo per day {} · global per day {} · warn at {:.0} %",
                    show(b.task_usd),
                    show(b.repo_daily_usd),
                    show(b.global_daily_usd),
                    b.warn_ratio * 100.0
                );
                for (scope, cap) in &caps {
                    say!("override {scope}: {}", show(*cap));
                }
                say!("");
                let rows: Vec<Vec<String>> = report
                    .caps
                    .iter()
                    .map(|s| {
                        vec![
                            s.label.clone(),
                            s.scope.clone(),
                            output::money(s.spent_usd),
                            show(s.cap_usd),
                            output::percent(s.spent_usd, s.cap_usd),
                            show(s.forecast_usd),
                            s.forecast_usd.map_or(String::new(), |f| output::percent(f, s.cap_usd)),
                        ]
                    })
                    .collect();
                output::table(&["SPEND", "SCOPE", "SPENT", "CAP", "USED", "FORECAST TODAY", "OF CAP"], &rows);
                say!("");
                say!(
                    "forecast: {} today at the current rate ({}; {:.1} h elapsed)",
                    output::money(report.forecast.forecast_usd),
                    report.forecast.method,
                    report.forecast.elapsed_hours
                );
                say!("counted: {}", report.rule);
            }
            Ok(EXIT_OK)
        }
    }
}

/// `baton handoff ID [--html]`: the task's hand-off — the one written when it reached done or
/// blocked, else built now — as Markdown, the HTML page, or (`--json`) both.
pub async fn handoff(config: &Config, id: &str, html: bool, json: bool) -> anyhow::Result<u8> {
    let engine = open_engine(config).await?;
    let Some(task) = engine.store().task(&TaskKey::parse(id)).await? else {
        warn_line!("error: no task `{id}`; `baton task list --all` shows them");
        return Ok(EXIT_NOT_FOUND);
    };
    let handoff = baton_engine::handoff::read(&engine, &task).await.context("building the hand-off")?;
    if json {
        output::print_json(&handoff);
        return Ok(EXIT_OK);
    }
    let text = if html { &handoff.html } else { &handoff.markdown };
    for line in text.lines() {
        say!("{line}");
    }
    Ok(EXIT_OK)
}
