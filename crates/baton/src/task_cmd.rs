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
use baton_store::{JobStatus, TaskFilter, TaskKey, UsageGroup};
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
        TaskCommand::Add { repo, title, body, body_file, external_ref } => {
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
            return match engine.create_task(NewTaskRequest { repo, title, body, external_ref }).await {
                Ok(task) => {
                    if json {
                        output::print_json(&task);
                    } else {
                        say!("{}", task.work_item_id);
                    }
                    Ok(EXIT_OK)
                }
                Err(EngineError::Invalid(message)) => {
                    warn_line!("error: {message}");
                    Ok(EXIT_USAGE)
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
            let tasks = engine.store().list_tasks(&TaskFilter { active_only: !all, repo: None }).await?;
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
            output::task_detail(&task, &events, &jobs, &runs, json);
            return Ok(EXIT_OK);
        }
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

pub async fn status(config: &Config, json: bool) -> anyhow::Result<u8> {
    let engine = open_engine(config).await?;
    let tasks = engine.store().list_tasks(&TaskFilter::default()).await?;
    let queued = engine.store().jobs_with_status(JobStatus::Queued).await?;
    let running = engine.store().jobs_with_status(JobStatus::Running).await?;
    let leases = engine.store().leases().await?;
    output::status(&tasks, &queued, &running, &leases, json);
    Ok(EXIT_OK)
}

pub async fn usage(config: &Config, by: &str, json: bool) -> anyhow::Result<u8> {
    let group = match by {
        "task" => UsageGroup::Task,
        "stage" => UsageGroup::Stage,
        "adapter" => UsageGroup::Adapter,
        "model" => UsageGroup::Model,
        "repo" => UsageGroup::Repo,
        "day" => UsageGroup::Day,
        other => {
            warn_line!("error: cannot group usage by `{other}`; use task, stage, adapter, model, repo or day");
            return Ok(EXIT_USAGE);
        }
    };
    let engine = open_engine(config).await?;
    let rows = engine.store().usage(group).await?;
    output::usage(by, &rows, json);
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
            .map(|p| Path::new(&p).parent().map(Path::to_path_buf).unwrap_or_default())
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
                    Some(cap) => say!("{scope}: cap ${cap:.2}"),
                    None => say!("{scope}: no cap"),
                }
            }
            Ok(EXIT_OK)
        }
        BudgetCommand::Show => {
            let caps = engine.store().budget_caps().await?;
            let b = &config.engine.budgets;
            if json {
                output::print_json(&serde_json::json!({
                    "configured": { "task_usd": b.task_usd, "repo_daily_usd": b.repo_daily_usd,
                                    "global_daily_usd": b.global_daily_usd, "warn_ratio": b.warn_ratio },
                    "overrides": caps.iter().map(|(s, c)| serde_json::json!({ "scope": s, "cap_usd": c })).collect::<Vec<_>>(),
                }));
            } else {
                let show = |v: Option<f64>| v.map_or("none".to_string(), |v| format!("${v:.2}"));
                say!(
                    "configured: task {} · repo per day {} · global per day {} · warn at {:.0} %",
                    show(b.task_usd),
                    show(b.repo_daily_usd),
                    show(b.global_daily_usd),
                    b.warn_ratio * 100.0
                );
                for (scope, cap) in caps {
                    say!("override {scope}: {}", show(cap));
                }
            }
            Ok(EXIT_OK)
        }
    }
}
