//! The post-deploy monitor and the repository freeze (SPEC §3 `done` row, §6.4).
//!
//! - [`pipeline_for`]: the pipeline `decide` sees for a task of a repository — the repository's
//!   monitor window when it has one and the `monitor` switch is on.
//! - [`check`]: one health check of a task in `Hold::Monitoring`, run when its hold is due (the
//!   engine's due-holds pass, no job, no slot); its result is an `Event::HealthChecked`.
//! - [`degraded`]: the outbox effect of a DEGRADED deploy — freeze the repository (`freeze`
//!   switch), alert, file the incident task linked to the deployed one, and revert its commit when
//!   the repository says so (`revert` switch): a task held at the merge gate whose branch is the
//!   `git revert` of what the task merged, the one change a frozen repository lands. Carried out
//!   at least once: each step first looks whether it was already done, and the incident and the
//!   revert are created under an idempotency key of the degraded task ([`filing_key`]) recorded in
//!   their creating transaction, so an effect carried out again after a crash between creating a
//!   task and linking it finds that task instead of filing another.
//! - [`freeze_unknown_deploy`]: the freeze while a deploy may still be running on an instance
//!   declared dead, so that no other change lands and deploys over it.
//! - [`frozen`]: whether the merge queue and the deploy step must leave a repository alone.

use crate::EngineError;
use crate::engine::{Engine, NewTaskRequest};
use crate::features::{Feature, Features};
use crate::workspace::worktree_path;
use baton_adapters::notifier::Notification;
use baton_domain::{Event, Hold, MonitorSpec, NotifyKind, Pipeline, TaskId};
use baton_runner::CommandRequest;
use baton_store::{
    EventRecord, IdempotencyBegin, NewEvent, NewFreeze, RepoFreeze, Store, StoreError, TaskKey, TaskRecord,
};
use std::borrow::Cow;
use std::time::Duration;

/// Who freezes a repository on a DEGRADED deploy.
pub const MONITOR_PRINCIPAL: &str = "monitor";
/// Who freezes a repository on a deploy whose outcome is unknown ([`freeze_unknown_deploy`]).
pub const DEPLOY_PRINCIPAL: &str = "deploy";
/// The timeline kind of the event recording that a degraded task froze its repository.
pub const FROZEN: &str = "frozen";
/// The timeline kind of the event naming a degraded task's incident (on the deployed task).
pub const INCIDENT_FILED: &str = "incident_filed";
/// The timeline kind of the event naming the deployed task an incident is about (on the incident).
pub const INCIDENT_OF: &str = "incident_of";
/// The timeline kind of the event naming a degraded task's revert (on the deployed task).
pub const REVERT_FILED: &str = "revert_filed";
/// The timeline kind of the event naming the task a revert undoes (on the revert).
pub const REVERT_OF: &str = "revert_of";
/// The timeline kind of the event recording that a revert's branch holds the revert commit (on
/// the revert); until then nobody may confirm it.
pub const REVERT_PREPARED: &str = "revert_prepared";
/// The timeline kind of the alert that a degraded task's revert could not be made (on the task).
pub const REVERT_FAILED: &str = "revert_failed";
/// The start of a revert task's external reference (`baton:revert:<work item it reverts>`),
/// written in its creating transaction: how a revert is known before its timeline says so.
pub const REVERT_REF_PREFIX: &str = "baton:revert:";
/// The request digest of the idempotency rows the incident and revert are filed under.
const FILING_DIGEST: &str = "monitor-filing-v1";

/// The idempotency key the incident (`what` = `incident`) or revert (`revert`) of the degraded
/// task `task` is filed under. HTTP keys are scoped `principal|route|key`; these hold no `|`.
pub fn filing_key(what: &str, task: TaskId) -> String {
    format!("baton:monitor:{what}:{}", task.0)
}

/// The task filed before under `key`, if one was; otherwise the key is begun now, and the caller
/// creates the task under it (its creating transaction records it there).
async fn filed_before(engine: &Engine, key: &str) -> Result<Option<TaskRecord>, String> {
    let store = engine.store();
    let now = engine.clock().now_ms();
    // Stale at once: another attempt under this key is a try of the same effect (an earlier one,
    // or one still running whose outbox claim expired); the store lets only one of them create
    // the task (see `filed_once`).
    match store.begin_idempotent(key, FILING_DIGEST, now, 0).await.map_err(|e| format!("filing key {key}: {e}"))? {
        IdempotencyBegin::Started | IdempotencyBegin::Resumed { task: None } => Ok(None),
        IdempotencyBegin::Resumed { task: Some(id) } => store
            .task(&TaskKey::Id(id))
            .await
            .map_err(|e| e.to_string())?
            .map(Some)
            .ok_or_else(|| format!("filing key {key} names task {id}, which does not exist")),
        other => Err(format!("filing key {key} is in use by something else ({other:?})")),
    }
}

/// The task a filing created, or the one another try of the same filing created under its key
/// meanwhile (two tries at once: an outbox claim that expired while the first still ran).
fn filed_once(created: Result<TaskRecord, crate::EngineError>) -> Result<TaskRecord, crate::EngineError> {
    match created {
        Err(crate::EngineError::Store(baton_store::StoreError::Exists(first))) => Ok(*first),
        other => other,
    }
}

/// Whether `task` is a revert the monitor filed whose branch does not hold the revert yet: a
/// human's deploy confirmation must wait for it (it would land an empty change).
pub async fn revert_unprepared(engine: &Engine, task: &TaskRecord) -> Result<bool, EngineError> {
    if !task.external_ref.as_deref().is_some_and(|r| r.starts_with(REVERT_REF_PREFIX)) {
        return Ok(false);
    }
    Ok(timeline_event(engine, task, REVERT_PREPARED).await.map_err(EngineError::Invalid)?.is_none())
}

/// The pipeline `decide` uses for a task of `repo`: the repository's own (its named pipeline, or
/// the global one), with the repository's monitor window when it has one and the `monitor` switch
/// is on there.
pub fn pipeline_for<'a>(engine: &'a Engine, repo: &str) -> Cow<'a, Pipeline> {
    let monitor = engine
        .settings()
        .repo(repo)
        .filter(|r| r.monitor_window_secs > 0 && engine.features().enabled(Feature::Monitor, repo))
        .map(|r| MonitorSpec {
            window_ms: r.monitor_window_secs.saturating_mul(1000),
            interval_ms: r.monitor_interval_secs.max(1).saturating_mul(1000),
            failures: r.monitor_failures.max(1),
        });
    match monitor {
        None if engine.pipeline_for(repo).monitor.is_none() => Cow::Borrowed(engine.pipeline_for(repo)),
        monitor => {
            let mut pipeline = engine.pipeline_for(repo).clone();
            pipeline.monitor = monitor;
            Cow::Owned(pipeline)
        }
    }
}

/// The open freeze of `repo`, when the `freeze` switch is on there (off: nothing is ever frozen).
pub async fn frozen(engine: &Engine, repo: &str) -> Result<Option<RepoFreeze>, EngineError> {
    if !engine.features().enabled(Feature::Freeze, repo) {
        return Ok(None);
    }
    Ok(engine.store().repo_freezes().await?.into_iter().find(|f| f.repo == repo))
}

/// Whether `task` may land or deploy in `repo` now: always, unless the repository is frozen and
/// the task is not a revert the monitor filed — the freeze's own, or that of another deploy that
/// degraded while the repository was frozen already (the freeze names only the first): each
/// degraded change is taken off the default branch.
pub async fn may_land(engine: &Engine, repo: &str, task: TaskId) -> Result<bool, EngineError> {
    Ok(may_land_in(engine.store().as_ref(), engine.features(), repo, task).await?)
}

/// [`may_land`] for callers that hold the store and the switches, not the engine (the merge gate).
pub async fn may_land_in(store: &dyn Store, features: &Features, repo: &str, task: TaskId) -> Result<bool, StoreError> {
    if !features.enabled(Feature::Freeze, repo) {
        return Ok(true);
    }
    let Some(freeze) = store.repo_freezes().await?.into_iter().find(|f| f.repo == repo) else {
        return Ok(true);
    };
    if freeze.revert == Some(task) {
        return Ok(true);
    }
    is_revert_in(store, task).await
}

/// Whether `task` is a revert the monitor filed for a degraded deploy.
pub async fn is_revert(engine: &Engine, task: TaskId) -> Result<bool, EngineError> {
    Ok(is_revert_in(engine.store().as_ref(), task).await?)
}

async fn is_revert_in(store: &dyn Store, task: TaskId) -> Result<bool, StoreError> {
    // A revert's `revert_of` line is among the first of its timeline (written before it may move).
    Ok(store.events(Some(task), 0, 50).await?.iter().any(|e| e.kind == REVERT_OF))
}

/// Runs the repository's `health` command for a monitored task whose check is due and feeds the
/// result to `decide`. `false` when the task was not due (or no longer monitored).
pub async fn check(engine: &Engine, task: &TaskRecord) -> Result<bool, EngineError> {
    let now = engine.clock().now_ms();
    let Hold::Monitoring { next_check_ms, checks, .. } = task.state.hold else {
        return Ok(false);
    };
    if next_check_ms > now {
        return Ok(false);
    }
    let settings = engine.settings();
    let Some(repo) = settings.repo(&task.repo) else {
        return Ok(false);
    };
    let (ok, output) = match &repo.health {
        None => (true, format!("no `health` command configured for {}", repo.name)),
        Some(argv) => {
            // The deployed tree is the task's worktree until it ends; a worktree gone (parked,
            // another machine) leaves the repository's checkout.
            let worktree = worktree_path(&settings.worktrees_dir(), &task.repo, &task.work_item_id)?;
            let cwd = if engine.vcs().exists(&worktree) { worktree } else { repo.path.clone() };
            let run_dir =
                settings.runs_dir().join(&task.work_item_id).join("monitor").join(format!("check-{}", checks + 1));
            let grace = Duration::from_secs(settings.limits.stop_grace_secs);
            let mut env = crate::executor::minimal_env(engine);
            env.push(("BATON_WORK_ITEM".into(), task.work_item_id.clone()));
            env.push(("BATON_REPO".into(), task.repo.clone()));
            let request = CommandRequest {
                argv: argv.clone(),
                cwd,
                env,
                timeout: Duration::from_secs(settings.limits.command_timeout_secs),
                stop_grace: grace,
                run_dir: run_dir.clone(),
                owner: format!("monitor:{}", task.id),
            };
            let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let run = match engine.commands().reset(&run_dir, grace).await {
                Ok(()) => engine.commands().run(&request, stop_rx).await,
                Err(error) => Err(error),
            };
            match run {
                Ok(run) if run.output.exit.success() => (true, format!("`{}` passed", argv.join(" "))),
                Ok(run) => (
                    false,
                    format!("`{}` {}; output tail:\n{}", argv.join(" "), run.output.exit.describe(), run.output.tail),
                ),
                Err(error) => (false, format!("`{}` could not run: {error}", argv.join(" "))),
            }
        }
    };
    engine.apply_event(task.id, &Event::HealthChecked { ok, output }, None, None).await?;
    Ok(true)
}

/// Carries out a DEGRADED deploy's consequences for the task `task_id` (an outbox effect: each
/// step is skipped when an earlier try already did it).
pub async fn degraded(engine: &Engine, task_id: TaskId, output: &str) -> Result<(), String> {
    let store = engine.store();
    let Some(task) = store.task(&TaskKey::Id(task_id)).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let now = engine.clock().now_ms();
    let freeze = if engine.features().enabled(Feature::Freeze, &task.repo) {
        let reason = format!("the deploy of {} degraded", task.work_item_id);
        let new = NewFreeze {
            repo: task.repo.clone(),
            task: Some(task.id),
            frozen_by: MONITOR_PRINCIPAL.to_string(),
            reason: reason.clone(),
        };
        let (freeze, _) = store.freeze_repo(&new, now).await.map_err(|e| format!("freeze: {e}"))?;
        // The alert goes before the timeline line that says it went: a failed notification is
        // retried with the effect (at least once), a sent one is not sent again.
        if freeze.task == Some(task.id) && timeline_event(engine, &task, FROZEN).await?.is_none() {
            let text = format!(
                "{} is frozen: {reason}; nothing lands or deploys there until `baton repo unfreeze {}`",
                task.repo, task.repo
            );
            let alert = Notification {
                work_item: task.work_item_id.clone(),
                title: task.title.clone(),
                kind: NotifyKind::Alert,
                text: text.clone(),
            };
            engine.notifier().notify(&alert).await.map_err(|e| format!("notify: {e}"))?;
            append(engine, task.id, FROZEN, &task.state.stage, &text, serde_json::json!({ "freeze": freeze.id }))
                .await?;
        }
        Some(freeze)
    } else {
        None
    };
    let incident = match timeline_link(engine, &task, INCIDENT_FILED, "incident").await? {
        Some(id) => id,
        None => file_incident(engine, &task, output).await?,
    };
    if let Some(freeze) = &freeze {
        store.link_freeze(freeze.id, Some(incident), None).await.map_err(|e| format!("link freeze: {e}"))?;
    }
    let reverts = engine.settings().repo(&task.repo).is_some_and(|r| r.revert_on_degraded)
        && engine.features().enabled(Feature::Revert, &task.repo);
    if reverts {
        file_revert(engine, &task, freeze.as_ref()).await?;
    }
    Ok(())
}

/// Freezes `task`'s repository because the deploy of `head` started on `instance`, since declared
/// dead, and its outcome is unknown here: it may still be running there (a deploy runs to its end
/// on an instance that lost its job, and survives its instance's death as an orphan). Called by
/// the deploy job before it records its outcome, so the freeze is in place before the task leaves
/// the merge queue: no later change lands and deploys while that deploy may run. A human checks
/// the target, unfreezes, and retries the task. A freeze already open (a degraded deploy's) holds
/// it too: the alert then says to check this target as well before lifting it. Idempotent (one
/// open freeze per repository, the alert and the timeline line once); nothing happens when the
/// `freeze` switch is off there. `true` when the repository is frozen now.
pub async fn freeze_unknown_deploy(
    engine: &Engine,
    task: &TaskRecord,
    head: &str,
    instance: &str,
) -> Result<bool, String> {
    if !engine.features().enabled(Feature::Freeze, &task.repo) {
        return Ok(false);
    }
    let short = &head[..head.len().min(10)];
    let reason = format!(
        "the deploy of {short} ({}) started on instance {instance}, declared dead since; it may still be running",
        task.work_item_id
    );
    let new = NewFreeze {
        repo: task.repo.clone(),
        task: Some(task.id),
        frozen_by: DEPLOY_PRINCIPAL.to_string(),
        reason: reason.clone(),
    };
    let now = engine.clock().now_ms();
    let (freeze, _) = engine.store().freeze_repo(&new, now).await.map_err(|e| format!("freeze: {e}"))?;
    if timeline_event(engine, task, FROZEN).await?.is_some() {
        return Ok(true);
    }
    // One freeze is open per repository: one already open (a degraded deploy's) holds this deploy
    // too, and whoever lifts it must know to check this target as well.
    let text = if freeze.task == Some(task.id) {
        format!(
            "{repo} is frozen: {reason}. Nothing lands or deploys there until a person checks the target \
             and runs `baton repo unfreeze {repo}`",
            repo = task.repo
        )
    } else {
        format!(
            "{repo} stays frozen ({}, by {}): {reason}. Check the target for this deploy too before \
             `baton repo unfreeze {repo}`",
            freeze.reason,
            freeze.frozen_by,
            repo = task.repo
        )
    };
    let alert = Notification {
        work_item: task.work_item_id.clone(),
        title: task.title.clone(),
        kind: NotifyKind::Alert,
        text: text.clone(),
    };
    // The freeze holds whether or not the alert went; the blocked task says it too.
    if let Err(error) = engine.notifier().notify(&alert).await {
        tracing::warn!(task = %task.work_item_id, "the alert of the freeze was not sent: {error}");
    }
    append(engine, task.id, FROZEN, &task.state.stage, &text, serde_json::json!({ "freeze": freeze.id })).await?;
    Ok(true)
}

/// The open freeze of `task`'s repository that holds a deploy of unknown outcome
/// ([`freeze_unknown_deploy`]): one it opened (`frozen_by = "deploy"`), or the one already open
/// that this task's unknown deploy joined (its `frozen` timeline line names it). `None` when the
/// `freeze` switch is off there. A change that landed and has not deployed yet (a human's retry of
/// a task such a freeze blocked, before the unfreeze) waits while it is open: that other deploy
/// may still be running on the target. A degraded deploy's freeze alone does not hold such a
/// deploy back: the revert lands on top of it only once its deploy stage has ended.
pub async fn unknown_deploy_freeze(engine: &Engine, task: &TaskRecord) -> Result<Option<RepoFreeze>, String> {
    if !engine.features().enabled(Feature::Freeze, &task.repo) {
        return Ok(None);
    }
    let open: Vec<RepoFreeze> = engine
        .store()
        .repo_freezes()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|f| f.repo == task.repo)
        .collect();
    if open.is_empty() {
        return Ok(None);
    }
    if let Some(freeze) = open.iter().find(|f| f.frozen_by == DEPLOY_PRINCIPAL) {
        return Ok(Some(freeze.clone()));
    }
    let joined = |e: &EventRecord| e.detail.get("freeze").and_then(|v| v.as_i64());
    let line =
        timeline_find(engine, task, |e| e.kind == FROZEN && open.iter().any(|f| Some(f.id) == joined(e))).await?;
    Ok(line.and_then(|e| open.into_iter().find(|f| Some(f.id) == joined(&e))))
}

/// Files the revert of `task`'s merged change: a task held at the merge gate's stage whose branch
/// is the default branch plus `git revert` of what the task merged. It skips the agent stages; it
/// is linked to the freeze before it may move (so the frozen merge queue lets exactly it land),
/// then confirmed by the monitor unless the repository wants a human's `revert_confirm`. Each step
/// is done once across tries: the revert is found again by its filing key, its links and its
/// prepared branch by the timelines.
async fn file_revert(engine: &Engine, task: &TaskRecord, freeze: Option<&RepoFreeze>) -> Result<(), String> {
    let settings = engine.settings();
    let Some(repo) = settings.repo(&task.repo) else { return Ok(()) };
    let store = engine.store();
    let merged = timeline_event(engine, task, "merged").await?;
    let range = merged.as_ref().and_then(|e| {
        let base = e.detail.get("base")?.as_str()?.to_string();
        let head = e.detail.get("head")?.as_str()?.to_string();
        Some((base, head))
    });
    let pipeline = engine.pipeline_for(&task.repo);
    let gate = pipeline.merge_gate();
    let (Some((base, head)), Some(gate)) = (range, gate) else {
        if timeline_event(engine, task, REVERT_FAILED).await?.is_some() {
            return Ok(());
        }
        return alert(engine, task, "no merged change or merge gate to revert through; revert it by hand".into()).await;
    };
    let short = head[..head.len().min(10)].to_string();
    let linked = match timeline_link(engine, task, REVERT_FILED, "revert").await? {
        Some(id) => store.task(&TaskKey::Id(id)).await.map_err(|e| e.to_string())?,
        None => None,
    };
    let revert = match linked {
        Some(revert) => revert,
        None => {
            let key = filing_key("revert", task.id);
            match filed_before(engine, &key).await? {
                Some(revert) => revert,
                None => {
                    let title = truncate(
                        &format!("Revert {}: {}", task.work_item_id, task.title),
                        settings.limits.title_chars_max,
                    );
                    let body = format!(
                        "Reverts {base}..{head}, the change of {} whose deploy degraded. Made by Baton: no agent stages.\n",
                        task.work_item_id
                    );
                    let state = baton_domain::TaskState {
                        hold: Hold::AwaitingConfirm,
                        ..baton_domain::TaskState::new(&gate.name)
                    };
                    let external_ref = Some(format!("{REVERT_REF_PREFIX}{}", task.work_item_id));
                    let request = NewTaskRequest { repo: task.repo.clone(), title, body, external_ref };
                    filed_once(engine.create_held_task(request, state, Some(key)).await)
                        .map_err(|e| format!("file revert: {e}"))?
                }
            }
        }
    };
    if timeline_event(engine, &revert, REVERT_OF).await?.is_none() {
        let detail =
            serde_json::json!({ "task": task.id.0, "work_item": task.work_item_id, "base": base, "head": head });
        let text = format!("reverts {} ({short}), whose deploy degraded", task.work_item_id);
        append(engine, revert.id, REVERT_OF, &revert.state.stage, &text, detail).await?;
    }
    if timeline_event(engine, task, REVERT_FILED).await?.is_none() {
        let detail = serde_json::json!({ "revert": revert.id.0, "work_item": revert.work_item_id });
        let text = format!("revert {} filed for {short}", revert.work_item_id);
        append(engine, task.id, REVERT_FILED, &task.state.stage, &text, detail).await?;
    }
    if let Some(freeze) = freeze {
        store.link_freeze(freeze.id, None, Some(revert.id)).await.map_err(|e| format!("link freeze: {e}"))?;
    }
    // Read again: a human may have stopped it (or, once prepared, confirmed it) meanwhile.
    let revert = store.task(&TaskKey::Id(revert.id)).await.map_err(|e| e.to_string())?.unwrap_or(revert);
    if revert.state.is_terminal() || revert.state.stage != gate.name || revert.state.hold != Hold::AwaitingConfirm {
        return Ok(());
    }
    if timeline_event(engine, &revert, REVERT_PREPARED).await?.is_none() {
        let worktree =
            worktree_path(&settings.worktrees_dir(), &task.repo, &revert.work_item_id).map_err(|e| e.to_string())?;
        let message = format!("Revert {} ({short}): its deploy degraded", task.work_item_id);
        if let Err(error) = prepare_revert(engine, repo, &worktree, &revert.branch, (&base, &head), &message).await {
            let by = format!("{MONITOR_PRINCIPAL} (revert failed)");
            let _ =
                engine.apply_event(revert.id, &Event::Stop { by, critical: false, landed: false }, None, None).await;
            return alert(
                engine,
                task,
                format!("the revert of {short} could not be made ({error}); revert it by hand"),
            )
            .await;
        }
        let text = format!("the branch holds the revert of {short}");
        append(engine, revert.id, REVERT_PREPARED, &revert.state.stage, &text, serde_json::Value::Null).await?;
    }
    if !repo.revert_confirm {
        let by = format!("{MONITOR_PRINCIPAL} (revert-only change)");
        engine.apply_event(revert.id, &Event::DeployConfirmed { by }, None, None).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The revert's branch: the default head (reset to it again when an earlier try left its commit)
/// plus the inverse of `range`.
async fn prepare_revert(
    engine: &Engine,
    repo: &crate::RepoSettings,
    worktree: &std::path::Path,
    branch: &str,
    (base, head): (&str, &str),
    message: &str,
) -> Result<(), baton_runner::GitError> {
    let vcs = engine.vcs();
    vcs.ensure_worktree(&repo.path, worktree, branch, &repo.default_ref()).await?;
    if let Some(main) = vcs.rev(&repo.path, &repo.default_ref()).await
        && vcs.rev(worktree, "HEAD").await.as_deref() != Some(main.as_str())
    {
        vcs.reset_to(worktree, &main).await?;
    }
    vcs.revert(worktree, base, head, message).await
}

async fn alert(engine: &Engine, task: &TaskRecord, text: String) -> Result<(), String> {
    append(engine, task.id, REVERT_FAILED, &task.state.stage, &text, serde_json::Value::Null).await?;
    let alert =
        Notification { work_item: task.work_item_id.clone(), title: task.title.clone(), kind: NotifyKind::Alert, text };
    engine.notifier().notify(&alert).await.map_err(|e| format!("notify: {e}"))
}

/// The first event of `kind` on `task`'s timeline.
async fn timeline_event(engine: &Engine, task: &TaskRecord, kind: &str) -> Result<Option<EventRecord>, String> {
    timeline_find(engine, task, |e| e.kind == kind).await
}

/// The first event of `task`'s timeline that `wanted` picks.
async fn timeline_find(
    engine: &Engine,
    task: &TaskRecord,
    wanted: impl Fn(&EventRecord) -> bool,
) -> Result<Option<EventRecord>, String> {
    let mut after = 0;
    // A task's timeline is bounded (retries, rollbacks, defers are capped); read it in pages.
    for _ in 0..1_000 {
        let page = engine.store().events(Some(task.id), after, 500).await.map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { return Ok(None) };
        after = last.id;
        if let Some(found) = page.into_iter().find(|e| wanted(e)) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The task a timeline event of `kind` links to (its `detail[key]`).
async fn timeline_link(engine: &Engine, task: &TaskRecord, kind: &str, key: &str) -> Result<Option<TaskId>, String> {
    Ok(timeline_event(engine, task, kind).await?.and_then(|e| e.detail.get(key).and_then(|v| v.as_i64())).map(TaskId))
}

/// Files the incident task of `task`'s degraded deploy in the same repository (once: under its
/// filing key), linked both ways on the timelines.
async fn file_incident(engine: &Engine, task: &TaskRecord, output: &str) -> Result<TaskId, String> {
    let key = filing_key("incident", task.id);
    let incident = match filed_before(engine, &key).await? {
        Some(incident) => incident,
        None => {
            let limits = &engine.settings().limits;
            let title: String = format!("Incident: {} degraded {}", task.work_item_id, task.repo);
            let title = truncate(&title, limits.title_chars_max);
            let body = format!(
                "The post-deploy monitor found the deploy of {} ({}) DEGRADED.\n\nHealth output tail:\n\n{output}\n",
                task.work_item_id, task.title
            );
            let body = truncate(&body, limits.body_bytes_max);
            let request = NewTaskRequest { repo: task.repo.clone(), title, body, external_ref: None };
            filed_once(engine.create_task_keyed(request, Some(key)).await).map_err(|e| format!("file incident: {e}"))?
        }
    };
    if timeline_event(engine, &incident, INCIDENT_OF).await?.is_none() {
        let detail = serde_json::json!({ "task": task.id.0, "work_item": task.work_item_id });
        let text = format!("incident of the degraded deploy of {}", task.work_item_id);
        append(engine, incident.id, INCIDENT_OF, &incident.state.stage, &text, detail).await?;
    }
    let detail = serde_json::json!({ "incident": incident.id.0, "work_item": incident.work_item_id });
    let text = format!("incident {} filed for the degraded deploy", incident.work_item_id);
    append(engine, task.id, INCIDENT_FILED, &task.state.stage, &text, detail).await?;
    Ok(incident.id)
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_string(),
        None => text.to_string(),
    }
}

async fn append(
    engine: &Engine,
    task: TaskId,
    kind: &str,
    stage: &str,
    message: &str,
    detail: serde_json::Value,
) -> Result<(), String> {
    let event = NewEvent {
        task,
        at_ms: engine.clock().now_ms(),
        kind: kind.to_string(),
        stage: stage.to_string(),
        message: message.to_string(),
        detail,
    };
    engine.store().append_event(event).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Unfreezes `repo` on a human's authenticated request; `by` is the principal recorded. An error
/// names the fix when the repository is unknown or not frozen.
pub async fn unfreeze(engine: &Engine, repo: &str, by: &str) -> Result<RepoFreeze, EngineError> {
    if engine.settings().repo(repo).is_none() {
        let known: Vec<&str> = engine.settings().repos.iter().map(|r| r.name.as_str()).collect();
        return Err(EngineError::NotFound(format!("repository `{repo}` (configured: {})", known.join(", "))));
    }
    let now = engine.clock().now_ms();
    let Some(freeze) = engine.store().unfreeze_repo(repo, by, now).await? else {
        return Err(EngineError::Invalid(format!("repository `{repo}` is not frozen; nothing to unfreeze")));
    };
    if let Some(task) = freeze.task
        && let Ok(Some(task)) = engine.store().task(&TaskKey::Id(task)).await
    {
        let text = format!("{repo} unfrozen by {by}");
        let detail = serde_json::json!({ "freeze": freeze.id, "by": by });
        if let Err(error) = append(engine, task.id, "unfrozen", &task.state.stage, &text, detail).await {
            tracing::warn!(repo, "recording the unfreeze on {}'s timeline failed: {error}", task.work_item_id);
        }
    }
    tracing::info!(repo, by, "repository unfrozen");
    // The merge queue may move again.
    crate::queue::schedule(engine, repo).await;
    engine.wake();
    Ok(freeze)
}
