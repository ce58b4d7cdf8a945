//! Runs one claimed job: prepares the worktree, runs the stage's actor (agent or deploy),
//! commits the work, evaluates the gates, and feeds the result back as a `JobFinished` event.

use crate::EngineError;
use crate::engine::{Engine, forge_repo};
use crate::gates::{self, RepoCommand, artifact_relative_path, run_repo_command};
use crate::prompts::{self, ArtifactText, PromptContext, PromptTask};
use crate::settings::{AdapterKind, RepoSettings};
use crate::workspace::{ensure_worktree, worktree_path};
use baton_adapters::agent::{Agent, AgentRequest, CommandAgent, ScriptAgent};
use baton_adapters::forge::MergeOutcome;
use baton_domain::{Actor, AgentReport, AgentStatus, Event, JobOutcome, StageSpec};
use baton_runner::{Git, RunLimits};
use baton_store::{
    AgentRunFinish, JobFinish, JobRecord, JobStatus, LeaseOutcome, NewAgentRun, NewEvent, TaskKey, TaskRecord,
    task_holder,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often a running agent's job row is checked for a STOP from another process.
const STOP_POLL_MS: u64 = 500;
/// Bytes of an earlier artifact included in a prompt.
const ARTIFACT_PROMPT_BYTES_MAX: usize = 20_000;

/// Everything a gate or actor needs about the job being run.
pub struct JobContext<'a> {
    pub engine: &'a Engine,
    pub task: &'a TaskRecord,
    pub job: &'a JobRecord,
    pub repo: &'a RepoSettings,
    pub stage: &'a StageSpec,
    pub worktree: PathBuf,
    pub git: Git,
    pub run_dir: PathBuf,
    /// Milliseconds spent in agents, git and repo commands (not Baton's own overhead).
    pub external_ms: Arc<AtomicU64>,
}

/// Executes `job` and applies its result. Never panics; failures become `JobOutcome::Failed`.
pub async fn execute(engine: Arc<Engine>, job: JobRecord) {
    let started = Instant::now();
    let external_ms = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Ok(mut running) = engine.running.lock() {
        running.insert(job.id, stop_tx);
    }
    let outcome = run_job(&engine, &job, &external_ms, stop_rx).await;
    if let Ok(mut running) = engine.running.lock() {
        running.remove(&job.id);
    }
    let outcome = match outcome {
        Ok(Some(outcome)) => outcome,
        Ok(None) => {
            let _ = engine.store.close_job(job.id, JobStatus::Cancelled, serde_json::json!({ "stale": true })).await;
            return;
        }
        Err(error) => JobOutcome::Failed { reason: error.to_string() },
    };
    let wall_ms = started.elapsed().as_millis() as u64;
    let external = external_ms.load(Ordering::Relaxed).min(wall_ms);
    let status = match outcome {
        JobOutcome::Failed { .. } => JobStatus::Failed,
        _ => JobStatus::Done,
    };
    let finish = JobFinish {
        job: job.id,
        status,
        result: serde_json::json!({
            "outcome": outcome,
            "wall_ms": wall_ms,
            "external_ms": external,
            "overhead_ms": wall_ms - external,
        }),
    };
    let event = Event::JobFinished { job: job.id, stage: job.stage.clone(), outcome };
    if let Err(error) = engine.apply_event(job.task_id, &event, Some(finish), None).await {
        tracing::error!(job = %job.id, "applying the result of job failed: {error}");
    }
}

async fn run_job(
    engine: &Engine,
    job: &JobRecord,
    external_ms: &Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) -> Result<Option<JobOutcome>, EngineError> {
    let Some(task) = engine.store.task(&TaskKey::Id(job.task_id)).await? else {
        return Ok(None);
    };
    if task.state.job != Some(job.id) || task.state.is_terminal() {
        return Ok(None);
    }
    let repo = engine
        .settings
        .repo(&task.repo)
        .ok_or_else(|| EngineError::Invalid(format!("repository `{}` is no longer configured", task.repo)))?;
    let stage = engine
        .pipeline
        .stage(&job.stage)
        .ok_or_else(|| EngineError::Invalid(format!("stage `{}` is not in the pipeline", job.stage)))?;
    let worktree = worktree_path(&engine.settings.worktrees_dir(), &task.repo, &task.work_item_id)?;
    let git = ensure_worktree(repo, &worktree, &task.branch, external_ms).await?;
    let run_dir = engine.settings.runs_dir().join(&task.work_item_id).join(format!("{}-job{}", job.stage, job.id));
    let ctx =
        JobContext { engine, task: &task, job, repo, stage, worktree, git, run_dir, external_ms: external_ms.clone() };
    match &stage.actor {
        Actor::Agent { role } => {
            let report = run_agent(&ctx, role, stop).await?;
            let message = format!("{} {}: {role} run", task.work_item_id, stage.name);
            ctx.git.commit_all(&message).await?;
            match report.status {
                AgentStatus::Failed { message } => return Ok(Some(JobOutcome::Failed { reason: message })),
                AgentStatus::NeedsInput { questions } => return Ok(Some(JobOutcome::NeedsInput { questions })),
                AgentStatus::Succeeded => {}
            }
        }
        Actor::Deploy => {
            if let Err(reason) = deploy(&ctx).await {
                return Ok(Some(JobOutcome::Failed { reason }));
            }
        }
        Actor::None => {}
    }
    let verdicts = gates::evaluate_all(&ctx, &stage.gates).await;
    for verdict in &verdicts {
        let _ = engine
            .store
            .append_event(NewEvent {
                task: task.id,
                at_ms: engine.clock.now_ms(),
                kind: "gate".into(),
                stage: stage.name.clone(),
                message: format!("{} {:?}: {}", verdict.gate, verdict.verdict, first_line(&verdict.reason))
                    .to_lowercase(),
                detail: serde_json::to_value(verdict).unwrap_or_default(),
            })
            .await;
    }
    Ok(Some(JobOutcome::Completed { verdicts }))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn build_agent(engine: &Engine, role: &str) -> Result<Box<dyn Agent>, EngineError> {
    let settings = engine.settings.agent_for(role).ok_or_else(|| {
        EngineError::Invalid(format!("no agent configured for role `{role}`: add [agents.{role}] or [agents.default]"))
    })?;
    Ok(match settings.adapter {
        AdapterKind::Script => Box::new(ScriptAgent {
            script: settings
                .script
                .clone()
                .ok_or_else(|| EngineError::Invalid(format!("agents.{role}: the script adapter needs `script`")))?,
            baton_exe: engine.settings.baton_exe.clone(),
        }),
        AdapterKind::Command => Box::new(CommandAgent {
            name: "command".into(),
            argv: settings
                .command
                .clone()
                .ok_or_else(|| EngineError::Invalid(format!("agents.{role}: the command adapter needs `command`")))?,
            prompt: settings.prompt,
            model: settings.model.clone(),
        }),
    })
}

/// The earlier artifacts of this task, in file-name order.
fn earlier_artifacts(worktree: &Path, work_item: &str) -> Vec<ArtifactText> {
    let dir = worktree.join("docs/baton").join(work_item);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let text = std::fs::read_to_string(dir.join(&name)).ok()?;
            let mut content = text;
            if content.len() > ARTIFACT_PROMPT_BYTES_MAX {
                let mut cut = ARTIFACT_PROMPT_BYTES_MAX;
                while !content.is_char_boundary(cut) {
                    cut -= 1;
                }
                content.truncate(cut);
                content.push_str("\n[truncated]");
            }
            Some(ArtifactText { name, content })
        })
        .collect()
}

async fn run_agent(ctx: &JobContext<'_>, role: &str, stop: watch::Receiver<bool>) -> Result<AgentReport, EngineError> {
    let engine = ctx.engine;
    let agent = build_agent(engine, role)?;
    let run_number = engine.store.count_agent_runs(ctx.task.id, &ctx.stage.name).await? + 1;
    let artifact_path = ctx.stage.artifact.as_deref().map(|name| artifact_relative_path(&ctx.task.work_item_id, name));
    let prompt = prompts::render(
        &engine.settings.data_dir.join("prompts"),
        &PromptContext {
            task: PromptTask {
                work_item: ctx.task.work_item_id.clone(),
                title: ctx.task.title.clone(),
                body: ctx.task.body.clone(),
                branch: ctx.task.branch.clone(),
            },
            stage: ctx.stage.name.clone(),
            role: role.to_string(),
            attempt: ctx.task.state.attempt,
            artifact_path,
            failure: ctx.task.state.failure.clone(),
            answers: ctx.task.state.answers.clone(),
            artifacts: earlier_artifacts(&ctx.worktree, &ctx.task.work_item_id),
        },
    )?;
    let run_dir = ctx.run_dir.join(format!("run{run_number}"));
    let request = AgentRequest {
        work_item: ctx.task.work_item_id.clone(),
        title: ctx.task.title.clone(),
        stage: ctx.stage.name.clone(),
        role: role.to_string(),
        attempt: ctx.task.state.attempt,
        run_number,
        worktree: ctx.worktree.clone(),
        run_dir: run_dir.clone(),
        prompt,
        base_env: engine.minimal_env(),
        resume_session: None,
    };
    let spec = agent.prepare(&request)?;
    let mut child = baton_runner::process::spawn(&spec)?;
    engine.store.set_job_process(ctx.job.id, Some(child.pid), Some(child.pgid)).await?;
    let started_at_ms = engine.clock.now_ms();
    let run_id = engine
        .store
        .insert_agent_run(NewAgentRun {
            job: ctx.job.id,
            task: ctx.task.id,
            stage: ctx.stage.name.clone(),
            adapter: agent.adapter().to_string(),
            model: agent.model().map(str::to_string),
            pid: Some(child.pid),
            started_at_ms,
            log_path: run_dir.display().to_string(),
        })
        .await?;
    let limits = &engine.settings.limits;
    let run_limits = RunLimits {
        timeout: Duration::from_secs(limits.agent_timeout_secs),
        stall_timeout: Duration::from_secs(limits.stall_timeout_secs),
        stop_grace: Duration::from_secs(limits.stop_grace_secs),
    };
    let (merged_tx, merged_rx) = watch::channel(false);
    let watcher = tokio::spawn(watch_for_stop(engine.store.clone(), ctx.job.id, stop, merged_tx));
    let exit = child.wait(run_limits, merged_rx).await;
    watcher.abort();
    ctx.external_ms.fetch_add(exit.duration_ms, Ordering::Relaxed);
    let stdout = std::fs::read_to_string(request.stdout_path()).unwrap_or_default();
    let stderr = std::fs::read_to_string(request.stderr_path()).unwrap_or_default();
    let report = agent.parse(&stdout, &stderr, &exit);
    engine
        .store
        .finish_agent_run(
            run_id,
            AgentRunFinish { ended_at_ms: engine.clock.now_ms(), exit_code: exit.code, report: report.clone() },
        )
        .await?;
    let status = match &report.status {
        AgentStatus::Succeeded => "succeeded".to_string(),
        AgentStatus::NeedsInput { .. } => "ended with questions".to_string(),
        AgentStatus::Failed { message } => format!("failed: {message}"),
    };
    let cost = report.cost_usd.map_or("unpriced".to_string(), |c| format!("${c:.4}"));
    let _ = engine
        .store
        .append_event(NewEvent {
            task: ctx.task.id,
            at_ms: engine.clock.now_ms(),
            kind: "agent".into(),
            stage: ctx.stage.name.clone(),
            message: format!(
                "{role} run {run_number} ({}) {status} in {:.1} s · {} in / {} out · {cost}",
                agent.adapter(),
                exit.duration_ms as f64 / 1000.0,
                report.usage.input_tokens,
                report.usage.output_tokens
            ),
            detail: serde_json::json!({ "run_id": run_id, "pid": child.pid, "exit": exit.code }),
        })
        .await;
    Ok(report)
}

/// Forwards a local stop request, and notices a STOP from another process (the job row left `running`).
async fn watch_for_stop(
    store: Arc<dyn baton_store::Store>,
    job: baton_domain::JobId,
    mut local: watch::Receiver<bool>,
    merged: watch::Sender<bool>,
) {
    loop {
        tokio::select! {
            changed = local.changed() => {
                if changed.is_err() || *local.borrow() {
                    let _ = merged.send(true);
                    return;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(STOP_POLL_MS)) => {
                if let Ok(Some(row)) = store.job(job).await
                    && row.status != JobStatus::Running
                {
                    let _ = merged.send(true);
                    return;
                }
            }
        }
    }
}

/// The deploy actor: fast-forward the default branch to the retested head, then run `deploy`.
async fn deploy(ctx: &JobContext<'_>) -> Result<(), String> {
    let engine = ctx.engine;
    let lease = gates::merge_lease_name(&ctx.repo.name);
    let ttl_ms = engine.settings.limits.lease_ttl_secs as i64 * 1000;
    match engine.store.acquire_lease(&lease, &task_holder(ctx.task.id), ttl_ms, engine.clock.now_ms()).await {
        Ok(LeaseOutcome::Acquired { .. }) => {}
        Ok(LeaseOutcome::Busy { holder }) => {
            return Err(format!(
                "the merge lease of {} is held by {holder}; the merge gate must run again",
                ctx.repo.name
            ));
        }
        Err(error) => return Err(format!("cannot renew the merge lease: {error}")),
    }
    let head = ctx.git.rev("HEAD").await.ok_or("the worktree has no HEAD")?;
    let base = ctx.git.rev("HEAD^").await.ok_or("the retested head has no parent")?;
    let started = Instant::now();
    let merged = engine.forge.fast_forward(&forge_repo(ctx.repo), &base, &head).await;
    ctx.external_ms.fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    match merged {
        Ok(MergeOutcome::Merged) | Ok(MergeOutcome::AlreadyMerged) => {}
        Ok(MergeOutcome::Moved { current }) => {
            return Err(format!(
                "{} moved to {current} since the merge gate; refusing to merge (main is sacred)",
                ctx.repo.default_branch
            ));
        }
        Err(error) => return Err(format!("merge failed: {error}")),
    }
    let _ = engine
        .store
        .append_event(NewEvent {
            task: ctx.task.id,
            at_ms: engine.clock.now_ms(),
            kind: "merged".into(),
            stage: ctx.stage.name.clone(),
            message: format!("{} fast-forwarded to {}", ctx.repo.default_branch, &head[..head.len().min(10)]),
            detail: serde_json::json!({ "base": base, "head": head }),
        })
        .await;
    if let Some(argv) = RepoCommand::Deploy.argv(ctx) {
        let out = run_repo_command(ctx, "deploy", &argv).await.map_err(|e| format!("deploy could not run: {e}"))?;
        if !out.exit.success() {
            return Err(format!("`{}` {}; output tail:\n{}", argv.join(" "), out.exit.describe(), out.tail));
        }
    }
    Ok(())
}
