//! The engine handle: creating tasks, applying human inputs and job results through `decide`,
//! performing the effects of committed decisions, and the claim loop.

use crate::EngineError;
use crate::agents::{AgentFactory, ConfiguredAgents};
use crate::clock::{Clock, Spawner, SystemClock, TokioSpawner};
use crate::effects::{self, RunningProcess};
use crate::executor::{self, Start};
use crate::features::Feature;
use crate::redacting::RedactingStore;
use crate::sandbox::Sandbox;
use crate::settings::EngineSettings;
use crate::webhooks::{LogSink, WebhookPass, WebhookSink};
use baton_adapters::forge::{Forge, ForgeRepo, LocalForge};
use baton_adapters::notifier::{LogNotifier, Notifier};
use baton_adapters::tracker::{LocalTracker, TicketPoller, Tracker};
use baton_domain::{Decision, Effect, Event, JobId, Pipeline, Redactor, TaskState, text};
use baton_runner::{CommandRunner, GitVcs, ShimSupervisor, SupervisedCommands, Supervisor, Vcs};
use baton_store::{
    Advance, Claim, InboxEntry, JobFinish, JobRecord, JobStatus, NewEvent, NewTask, Store, StoreError, TaskFilter,
    TaskKey, TaskRecord, Transition,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How often paused-on-quota tasks are checked for their resume time.
const QUOTA_TIMER_MS: i64 = 1_000;
/// Quota pauses resumed per pass of the quota timer at most (the loop comes back for the rest).
pub const DUE_HOLDS_PER_PASS: u32 = 100;
/// How often the outbox is checked for effects left by a crash or due for a retry.
const OUTBOX_INTERVAL_MS: i64 = 1_000;
/// How often the claim loop runs the store's health checks (the database file still there).
const STORE_CHECK_MS: i64 = 1_000;
/// Jobs the claim loop takes per transaction at most.
const CLAIM_BATCH_MAX: u32 = 8;
/// Re-reads and re-decides after a lost compare-and-set at most this many times.
const ADVANCE_ATTEMPTS_MAX: u32 = 8;
/// Environment variables every agent and repo command gets (when set), before pass-through.
const BASE_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TERM"];

/// A task to create through the engine.
#[derive(Debug, Clone)]
pub struct NewTaskRequest {
    pub repo: String,
    pub title: String,
    pub body: String,
    pub external_ref: Option<String>,
}

/// A human input (CLI, API, later tracker and Telegram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Approve,
    Answer {
        text: String,
    },
    ConfirmDeploy,
    Retry,
    /// Resume a task paused for budget or quota.
    Resume,
    Stop,
}

impl Input {
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Approve => "approve",
            Input::Answer { .. } => "answer",
            Input::ConfirmDeploy => "confirm_deploy",
            Input::Retry => "retry",
            Input::Resume => "resume",
            Input::Stop => "stop",
        }
    }

    fn event(&self, by: &str) -> Event {
        let by = by.to_string();
        match self {
            Input::Approve => Event::Approved { by },
            Input::Answer { text } => Event::Answered { by, text: text.clone() },
            Input::ConfirmDeploy => Event::DeployConfirmed { by },
            Input::Retry => Event::Retry { by },
            Input::Resume => Event::Resume { by },
            Input::Stop => Event::Stop { by, critical: false, landed: false },
        }
    }
}

/// What an input or job result did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum InputOutcome {
    Applied {
        note: String,
    },
    Suppressed {
        reason: String,
    },
    /// The dedup key was seen before: nothing changed.
    Duplicate,
}

/// The engine: shared by the claim loop, job executors, the HTTP API and the CLI. It reaches the
/// world only through the ports given to its [`EngineBuilder`].
pub struct Engine {
    settings: EngineSettings,
    /// Whether a task reaching done or blocked gets its hand-off written ([`EngineBuilder::write_handoffs`]).
    handoffs: bool,
    sandbox: Option<Arc<Sandbox>>,
    /// The global pipeline, and each repository's own where it names one (resolved once here).
    pipeline: Arc<Pipeline>,
    repo_pipelines: HashMap<String, Arc<Pipeline>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    spawner: Arc<dyn Spawner>,
    vcs: Arc<dyn Vcs>,
    supervisor: Arc<dyn Supervisor>,
    commands: Arc<dyn CommandRunner>,
    agents: Arc<dyn AgentFactory>,
    forge: Arc<dyn Forge>,
    notifier: Arc<dyn Notifier>,
    tracker: Arc<dyn Tracker>,
    webhook_sink: Arc<dyn WebhookSink>,
    pollers: Vec<Arc<dyn TicketPoller>>,
    /// Telegram's live cards and buttons, when configured.
    live: Option<Arc<crate::telegram::LiveUpdates>>,
    /// A ticket poll pass is running (one at a time).
    polling: Arc<AtomicBool>,
    /// A webhook delivery was stored since the loop last looked.
    webhooks_pending: AtomicBool,
    /// Identifies this process as job owner: its instance id when it serves.
    owner: String,
    /// The machine it runs on (instances on one host may stop each other's agents).
    host: String,
    /// When this engine was built (the instance's current run).
    started_at_ms: i64,
    /// Every secret this engine knows, masked in everything it records (SPEC §16).
    redactor: Redactor,
    pub(crate) running: Mutex<HashMap<JobId, watch::Sender<bool>>>,
    /// Repositories whose work-item counter this process has raised past their task branches
    /// ([`Engine::number_past_branches`]).
    numbered: Mutex<std::collections::HashSet<String>>,
    wake: Notify,
    /// The store's change feed said another process stopped or took a running job away: the
    /// loop checks the jobs running here at once instead of at its next once-a-second check.
    jobs_taken: AtomicBool,
    /// This engine wrote a hold with a due time (a quota pause, a monitoring check) since the loop
    /// last read the earliest one: the loop reads it again now rather than at its once-a-second read.
    due_written: AtomicBool,
    /// The claim loop found every job slot taken by jobs running here and did not ask the store:
    /// the next job to end here wakes it.
    claim_deferred: AtomicBool,
    /// Jobs running here whose end is committed (the store no longer counts them against the
    /// limits) while their executor still finishes up: they hold no slot.
    settled: Mutex<std::collections::HashSet<JobId>>,
    /// Why the store can no longer be used (a failed fatal health check); the loop then stops.
    store_lost: Mutex<Option<String>>,
    /// What the reaper's and the reconciler's last passes did.
    maintenance: crate::stats::MaintenanceStats,
    /// `[retention]` and where its run-log walk stopped.
    retention: crate::retention::RetentionState,
    /// The merge queues' depth and pending passes.
    queues: crate::queue::MergeQueues,
    /// The kill switches (`[features]`).
    features: crate::features::Features,
    /// `[usage]` and `[pricing]`, with the price tables they give.
    usage: crate::usage::UsageSettings,
    prices: crate::usage::Prices,
    /// `[retro]`: the retro stage (appended to the pipelines in `build`) and its limits.
    retro: crate::retro::RetroSettings,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("owner", &self.owner).finish()
    }
}

/// Who watches a running job, as this instance sees it ([`Engine::claimant`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimant {
    Mine,
    Unknown,
    /// A live instance, by id.
    Alive(String),
    /// An instance silent past the grace period.
    Dead(baton_store::InstanceRecord),
}

/// Builds an [`Engine`] from its ports. Every port has a real default: the wall clock, tokio,
/// git, `baton shim`, the configured agents, and the built-in local forge, log notifier and
/// local tracker.
pub struct EngineBuilder {
    settings: EngineSettings,
    store: Arc<dyn Store>,
    clock: Option<Arc<dyn Clock>>,
    spawner: Option<Arc<dyn Spawner>>,
    vcs: Option<Arc<dyn Vcs>>,
    supervisor: Option<Arc<dyn Supervisor>>,
    commands: Option<Arc<dyn CommandRunner>>,
    agents: Option<Arc<dyn AgentFactory>>,
    forge: Option<Arc<dyn Forge>>,
    notifier: Option<Arc<dyn Notifier>>,
    tracker: Option<Arc<dyn Tracker>>,
    webhook_sink: Option<Arc<dyn WebhookSink>>,
    pollers: Vec<Arc<dyn TicketPoller>>,
    live: Option<Arc<crate::telegram::LiveUpdates>>,
    owner: Option<String>,
    host: Option<String>,
    secrets: Vec<String>,
    sandbox: Option<Arc<Sandbox>>,
    retention: Option<crate::settings::Retention>,
    features: crate::features::Features,
    usage: crate::usage::UsageSettings,
    handoffs: bool,
    retro: crate::retro::RetroSettings,
}

impl EngineBuilder {
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn spawner(mut self, spawner: Arc<dyn Spawner>) -> Self {
        self.spawner = Some(spawner);
        self
    }

    pub fn vcs(mut self, vcs: Arc<dyn Vcs>) -> Self {
        self.vcs = Some(vcs);
        self
    }

    pub fn supervisor(mut self, supervisor: Arc<dyn Supervisor>) -> Self {
        self.supervisor = Some(supervisor);
        self
    }

    pub fn commands(mut self, commands: Arc<dyn CommandRunner>) -> Self {
        self.commands = Some(commands);
        self
    }

    pub fn agents(mut self, agents: Arc<dyn AgentFactory>) -> Self {
        self.agents = Some(agents);
        self
    }

    pub fn forge(mut self, forge: Arc<dyn Forge>) -> Self {
        self.forge = Some(forge);
        self
    }

    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    pub fn tracker(mut self, tracker: Arc<dyn Tracker>) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// Where parsed webhook events go (default: [`LogSink`], which logs them).
    pub fn webhook_sink(mut self, sink: Arc<dyn WebhookSink>) -> Self {
        self.webhook_sink = Some(sink);
        self
    }

    /// Ticket pollers: what they find goes to the webhook sink as if a webhook had said it
    /// (SPEC §7: a lost webhook costs at most one poll interval).
    pub fn pollers(mut self, pollers: Vec<Arc<dyn TicketPoller>>) -> Self {
        self.pollers = pollers;
        self
    }

    /// Telegram's live cards (a `live_update` outbox row with every transition) and buttons.
    pub fn live_updates(mut self, live: crate::telegram::LiveUpdates) -> Self {
        self.live = Some(Arc::new(live));
        self
    }

    /// Secrets to mask beyond those the engine finds itself (the API token, webhook secrets).
    pub fn secrets(mut self, values: impl IntoIterator<Item = String>) -> Self {
        self.secrets.extend(values);
        self
    }

    /// Baton's agent sandbox. Without one (embedded engines, simulations) agents run unconfined;
    /// the `baton` binary always sets it from `[sandbox]`.
    pub fn sandbox(mut self, sandbox: Arc<Sandbox>) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// How long history is kept (`[retention]`). Without it (embedded engines, simulations)
    /// everything is kept; the `baton` binary always sets it from the configuration.
    pub fn retention(mut self, retention: crate::settings::Retention) -> Self {
        self.retention = Some(retention);
        self
    }

    /// The kill switches (`[features]`). Without them every behaviour is on.
    pub fn features(mut self, features: crate::features::Features) -> Self {
        self.features = features;
        self
    }

    /// The retro stage (`[retro]`): when enabled, every repository whose `retro` switch is on
    /// runs a `retro` stage after its change shipped. Without it no pipeline has one.
    pub fn retro(mut self, retro: crate::retro::RetroSettings) -> Self {
        self.retro = retro;
        self
    }

    /// The read-time category map and a user's pricing file (`[usage]`, `[pricing]`). Without it
    /// the built-in price table and no category map.
    pub fn usage(mut self, usage: crate::usage::UsageSettings) -> Self {
        self.usage = usage;
        self
    }

    /// Write a hand-off (`<data_dir>/handoffs/`) whenever a task reaches done or blocked (an
    /// outbox effect of that transition). Off by default: an engine without a data dir of its own
    /// (the simulation) writes none.
    pub fn write_handoffs(mut self) -> Self {
        self.handoffs = true;
        self
    }

    /// The job-owner name of this process (default `pid:<pid>`).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// The machine this engine reports to the other instances (default: [`local_host`]). Only an
    /// instance on the same machine as an agent signals its process group.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    pub fn build(self) -> Arc<Engine> {
        let mut pipeline = self.settings.effective_pipeline();
        // With `[retro]` on, every repository whose switch is on ends its pipeline with the retro;
        // each repository then gets its own entry, so a switch off for one keeps it out there.
        let retro = self.retro.enabled.then(|| crate::retro::stage(&self.retro, &self.settings.agents));
        let repo_pipelines = self
            .settings
            .repos
            .iter()
            .filter(|repo| repo.pipeline.is_some() || retro.is_some())
            .map(|repo| {
                let own = self.settings.effective_pipeline_for(&repo.name);
                let own = match &retro {
                    Some(stage) if self.features.enabled(crate::features::Feature::Retro, &repo.name) => {
                        crate::retro::with_retro(own, stage)
                    }
                    _ => own,
                };
                (repo.name.clone(), Arc::new(own))
            })
            .collect();
        if let Some(stage) = &retro
            && !self.features.off_everywhere(crate::features::Feature::Retro)
        {
            pipeline = crate::retro::with_retro(pipeline, stage);
        }
        let pipeline = Arc::new(pipeline);
        let redactor = Redactor::new(known_secrets(&self.settings).into_iter().chain(self.secrets));
        let supervisor: Arc<dyn Supervisor> = self.supervisor.unwrap_or_else(|| {
            Arc::new(ShimSupervisor::new(self.settings.baton_exe.clone()).with_redactor(redactor.clone()))
        });
        let commands: Arc<dyn CommandRunner> =
            self.commands.unwrap_or_else(|| Arc::new(SupervisedCommands::new(supervisor.clone())));
        // Every write goes through the redacting store when there is a secret to mask.
        let store: Arc<dyn Store> =
            if redactor.is_empty() { self.store } else { Arc::new(RedactingStore::new(self.store, redactor.clone())) };
        let clock: Arc<dyn Clock> = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        Arc::new(Engine {
            pipeline,
            repo_pipelines,
            store,
            clock: clock.clone(),
            spawner: self.spawner.unwrap_or_else(|| Arc::new(TokioSpawner)),
            vcs: self.vcs.unwrap_or_else(|| Arc::new(GitVcs)),
            supervisor,
            commands,
            agents: self.agents.unwrap_or_else(|| Arc::new(ConfiguredAgents)),
            forge: self.forge.unwrap_or_else(|| Arc::new(LocalForge)),
            notifier: self.notifier.unwrap_or_else(|| Arc::new(LogNotifier)),
            tracker: self.tracker.unwrap_or_else(|| Arc::new(LocalTracker)),
            webhook_sink: self.webhook_sink.unwrap_or_else(|| Arc::new(LogSink)),
            pollers: self.pollers,
            live: self.live,
            polling: Arc::new(AtomicBool::new(false)),
            webhooks_pending: AtomicBool::new(true),
            owner: self.owner.unwrap_or_else(|| format!("pid:{}", std::process::id())),
            host: self.host.unwrap_or_else(local_host),
            started_at_ms: clock.now_ms(),
            redactor,
            sandbox: self.sandbox,
            running: Mutex::new(HashMap::new()),
            numbered: Mutex::new(std::collections::HashSet::new()),
            wake: Notify::new(),
            jobs_taken: AtomicBool::new(false),
            due_written: AtomicBool::new(false),
            claim_deferred: AtomicBool::new(false),
            settled: Mutex::new(std::collections::HashSet::new()),
            store_lost: Mutex::new(None),
            maintenance: crate::stats::MaintenanceStats::default(),
            retention: crate::retention::RetentionState::new(
                self.retention.unwrap_or(crate::settings::Retention::KEEP_ALL),
            ),
            queues: crate::queue::MergeQueues::new(
                self.settings.limits.merge_queue_depth,
                self.settings.limits.merge_queue_depth_max,
            ),
            features: self.features,
            prices: crate::usage::Prices::new(self.usage.user_prices.as_ref()),
            usage: self.usage,
            handoffs: self.handoffs,
            retro: self.retro,
            settings: self.settings,
        })
    }
}

impl Engine {
    /// A builder over `store` with every other port at its real default.
    pub fn builder(settings: EngineSettings, store: Arc<dyn Store>) -> EngineBuilder {
        EngineBuilder {
            settings,
            store,
            clock: None,
            spawner: None,
            vcs: None,
            supervisor: None,
            commands: None,
            agents: None,
            forge: None,
            notifier: None,
            tracker: None,
            webhook_sink: None,
            pollers: Vec::new(),
            live: None,
            owner: None,
            host: None,
            secrets: Vec::new(),
            sandbox: None,
            retention: None,
            features: crate::features::Features::all_on(),
            usage: crate::usage::UsageSettings::default(),
            handoffs: false,
            retro: crate::retro::RetroSettings::default(),
        }
    }

    /// The kill switches: whether an optional behaviour is on for a repository.
    pub fn features(&self) -> &crate::features::Features {
        &self.features
    }

    /// `[retro]`: whether pipelines end with a retro stage, and its limits.
    pub fn retro(&self) -> &crate::retro::RetroSettings {
        &self.retro
    }

    /// The secrets this engine masks (SPEC §16): use it on every text that leaves Baton.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// An engine with every port at its real default.
    pub fn new(settings: EngineSettings, store: Arc<dyn Store>) -> Arc<Engine> {
        Engine::builder(settings, store).build()
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// `[usage]` and `[pricing]` as configured.
    pub fn usage_settings(&self) -> &crate::usage::UsageSettings {
        &self.usage
    }

    /// The built-in price table and, with a user's file, the merged one ([`Engine::prices`] picks).
    pub fn prices_state(&self) -> &crate::usage::Prices {
        &self.prices
    }

    /// Baton's agent sandbox, when this engine was given one.
    pub fn sandbox(&self) -> Option<&Arc<Sandbox>> {
        self.sandbox.as_ref()
    }

    /// The global pipeline (configured stages with the repo-independent defaults applied): the one
    /// of every repository that does not name its own. A task's stages come from
    /// [`Engine::pipeline_for`].
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The pipeline tasks of `repo` run through: its `[pipelines.<name>]` when it names one, else
    /// the global pipeline.
    pub fn pipeline_for(&self, repo: &str) -> &Pipeline {
        self.repo_pipelines.get(repo).unwrap_or(&self.pipeline)
    }

    /// The stage names of `repo`'s pipeline; without a repository, those of the global pipeline
    /// followed by the stages only a repository's own pipeline has (status views and boards).
    pub fn stage_names(&self, repo: Option<&str>) -> Vec<&str> {
        if let Some(repo) = repo {
            return self.pipeline_for(repo).stages.iter().map(|s| s.name.as_str()).collect();
        }
        let mut names: Vec<&str> = self.pipeline.stages.iter().map(|s| s.name.as_str()).collect();
        for pipeline in self.repo_pipelines.values() {
            for stage in &pipeline.stages {
                if !names.contains(&stage.name.as_str()) {
                    names.push(&stage.name);
                }
            }
        }
        names
    }

    /// What the reaper's and the reconciler's passes did, read-only.
    /// The merge queues' scheduler state (depth per repository, pending passes).
    pub fn queues(&self) -> &crate::queue::MergeQueues {
        &self.queues
    }

    pub fn maintenance(&self) -> &crate::stats::MaintenanceStats {
        &self.maintenance
    }

    /// How long history is kept (`[retention]`), with the retention tick's progress.
    pub fn retention(&self) -> &crate::retention::RetentionState {
        &self.retention
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The port background work starts through (the HTTP server's connections use it too).
    pub fn spawner(&self) -> &Arc<dyn Spawner> {
        &self.spawner
    }

    pub(crate) fn webhook_sink(&self) -> &Arc<dyn WebhookSink> {
        &self.webhook_sink
    }

    /// A webhook delivery was stored: the engine loop handles it on its next pass, now.
    pub fn webhook_received(&self) {
        self.webhooks_pending.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Parses and hands to the sink up to one batch of stored webhook deliveries; the engine loop
    /// calls it when woken by [`Engine::webhook_received`] and once a second (tests call it directly).
    pub async fn process_webhooks(&self) -> Result<WebhookPass, EngineError> {
        Ok(crate::webhooks::drain(self).await?)
    }

    /// Runs every ticket poller that is due and hands what each found to the webhook sink, as a
    /// delivery of the poller's source would be; returns how many events were handled. A poller
    /// that fails is logged and backs off by itself. The engine loop calls it once a second
    /// (tests call it directly).
    pub async fn poll_tickets(&self) -> Result<u32, EngineError> {
        let mut handled = 0;
        for poller in &self.pollers {
            let prefix = poller.ref_prefix();
            let live: Vec<String> = self
                .store
                .list_tasks(&TaskFilter { active_only: true, ..TaskFilter::default() })
                .await?
                .into_iter()
                .filter_map(|t| t.external_ref.filter(|r| r.starts_with(&prefix)))
                .collect();
            let now = self.clock.now_ms();
            let events = match poller.poll(now, &live).await {
                Ok(Some(events)) => events,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!("polling {prefix} tickets failed: {error}");
                    continue;
                }
            };
            let delivery = baton_store::DeliveryRecord {
                id: 0,
                source: poller.source().to_string(),
                delivery_id: format!("poll:{now}"),
                event: "poll".into(),
                received_at_ms: now,
                payload: String::new(),
                processed_at_ms: None,
                parsed: None,
                error: None,
            };
            for event in events {
                match self.webhook_sink.handle(self, &delivery, &event).await {
                    Ok(()) => handled += 1,
                    // The next poll finds the ticket again.
                    Err(error) => tracing::warn!("a polled ticket could not be handled: {error}"),
                }
            }
        }
        Ok(handled)
    }

    pub(crate) fn vcs(&self) -> &Arc<dyn Vcs> {
        &self.vcs
    }

    pub(crate) fn supervisor(&self) -> &Arc<dyn Supervisor> {
        &self.supervisor
    }

    pub(crate) fn commands(&self) -> &Arc<dyn CommandRunner> {
        &self.commands
    }

    pub(crate) fn agents(&self) -> &Arc<dyn AgentFactory> {
        &self.agents
    }

    pub(crate) fn forge(&self) -> &Arc<dyn Forge> {
        &self.forge
    }

    pub(crate) fn notifier(&self) -> &Arc<dyn Notifier> {
        &self.notifier
    }

    /// Telegram's live cards and buttons, when configured.
    pub fn live(&self) -> Option<&Arc<crate::telegram::LiveUpdates>> {
        self.live.as_ref()
    }

    pub(crate) fn tracker(&self) -> &Arc<dyn Tracker> {
        &self.tracker
    }

    /// This process's job-owner name.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Records that `state`, just committed, holds with a due time: the loop reads the earliest
    /// due hold again on its next pass (otherwise once a second, for holds other processes write).
    pub(crate) fn note_due(&self, state: &TaskState) {
        if state.hold.due_at_ms().is_some() {
            self.due_written.store(true, Ordering::Release);
        }
    }

    /// Wakes the claim loop (a job became runnable).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The minimal environment for agents and repo commands: a fixed allowlist plus pass-through.
    pub fn minimal_env(&self) -> Vec<(String, String)> {
        BASE_ENV
            .iter()
            .map(|name| name.to_string())
            .chain(self.settings.env_passthrough.iter().cloned())
            .filter_map(|name| std::env::var(&name).ok().map(|value| (name, value)))
            .collect()
    }

    /// Creates a task and enqueues its first stage; returns the stored task with its work-item id.
    pub async fn create_task(&self, request: NewTaskRequest) -> Result<TaskRecord, EngineError> {
        self.create_task_keyed(request, None).await
    }

    /// [`Engine::create_task`] answering the idempotency key `key` (begun with
    /// `Store::begin_idempotent`): the task is recorded under the key in the same transaction.
    pub async fn create_task_keyed(
        &self,
        request: NewTaskRequest,
        key: Option<String>,
    ) -> Result<TaskRecord, EngineError> {
        self.create_task_from(request, key, None, &[]).await
    }

    /// [`Engine::create_task_keyed`] for a task that waits for `depends_on` (SPEC §6.4): the
    /// dependencies are recorded in the task's creating transaction, so its first job is never
    /// claimed before them. Each must exist and not be cancelled.
    pub async fn create_task_depending(
        &self,
        request: NewTaskRequest,
        key: Option<String>,
        depends_on: &[TaskKey],
    ) -> Result<TaskRecord, EngineError> {
        self.create_task_from(request, key, None, depends_on).await
    }

    /// Creates a task held in `state` (a later stage, a hold, no job): a change Baton makes itself,
    /// such as the revert of a degraded deploy, which skips the agent stages. The caller prepares
    /// the task's branch, then releases the hold with an event. With `key` (begun with
    /// `Store::begin_idempotent`), the task is recorded under it in the same transaction, so a
    /// caller carried out again finds the task it filed before.
    pub async fn create_held_task(
        &self,
        request: NewTaskRequest,
        state: TaskState,
        key: Option<String>,
    ) -> Result<TaskRecord, EngineError> {
        if state.hold == baton_domain::Hold::None || self.pipeline_for(&request.repo).stage(&state.stage).is_none() {
            return Err(EngineError::Invalid(format!(
                "a held task needs a hold and a pipeline stage, not {}",
                state.display()
            )));
        }
        self.create_task_from(request, key, Some(state), &[]).await
    }

    async fn create_task_from(
        &self,
        request: NewTaskRequest,
        key: Option<String>,
        start_held: Option<TaskState>,
        depends_on: &[TaskKey],
    ) -> Result<TaskRecord, EngineError> {
        let depends_on = self.dependencies_for_new_task(depends_on).await?;
        let repo = self.settings.repo(&request.repo).ok_or_else(|| {
            let known: Vec<&str> = self.settings.repos.iter().map(|r| r.name.as_str()).collect();
            EngineError::Invalid(format!(
                "unknown repository `{}`; configured: {}",
                request.repo,
                if known.is_empty() {
                    "none (add a [[repos]] entry to baton.toml)".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        let limits = &self.settings.limits;
        let title = request.title.trim();
        text::check_line(title, limits.title_chars_max)
            .map_err(|problem| invalid_input("the title", problem, "limits.title_chars_max"))?;
        text::check_text(&request.body, limits.body_bytes_max)
            .map_err(|problem| invalid_input("the body", problem, "limits.body_bytes_max"))?;
        if let Some(external) = &request.external_ref {
            let max = limits.external_ref_bytes_max;
            let checked = match text::check_line(external, max) {
                Ok(()) if external.len() > max => Err(text::TextProblem::TooLong(max, "bytes")),
                other => other,
            };
            checked
                .map_err(|problem| invalid_input("the external reference", problem, "limits.external_ref_bytes_max"))?;
        }
        let now = self.clock.now_ms();
        let (state, transition) = match start_held {
            // Held at a later stage, no job: whoever created it prepares its change, then starts it.
            Some(state) => (state, Transition::default()),
            None => {
                let pipeline = crate::monitor::pipeline_for(self, &repo.name);
                let first =
                    pipeline.first().ok_or_else(|| EngineError::Invalid("the pipeline has no stages".into()))?;
                let state = TaskState::new(&first.name);
                match baton_domain::decide(&state, &Event::Created, &pipeline, now) {
                    Decision::Apply { effects, .. } => (state, transition_of(&effects, &pipeline)),
                    Decision::Suppress { reason } => return Err(EngineError::Invalid(reason)),
                }
            }
        };
        let new = NewTask {
            repo: repo.name.clone(),
            prefix: repo.prefix.clone(),
            title: title.to_string(),
            body: request.body,
            external_ref: request.external_ref,
            state,
            idempotency_key: key,
            depends_on,
        };
        self.number_past_branches(repo).await;
        let task = self.store.create_task(new, transition, now).await?;
        self.note_due(&task.state);
        self.wake();
        Ok(task)
    }

    /// Once per repository in this process, before its first new task: the work-item counter is
    /// raised past every number a task branch in the repository already carries. A database lost
    /// and started afresh, or restored from an older backup, would hand those numbers out again,
    /// and a new task whose title matched an old one's would find that task's branch — and its
    /// unmerged work — under its own name, then carry it to the default branch. A failure is
    /// logged and tried again at the next new task.
    async fn number_past_branches(&self, repo: &crate::RepoSettings) {
        // A remote repository's clone not made yet has no branches to read: asked again next time.
        if self.numbered.lock().map(|done| done.contains(&repo.name)).unwrap_or(false) || !self.vcs.exists(&repo.path) {
            return;
        }
        let raised = match self.vcs.highest_task_branch_number(&repo.path, &repo.prefix).await {
            Ok(None) => Ok(()),
            Ok(Some(highest)) => {
                let next = i64::try_from(highest.saturating_add(1)).unwrap_or(i64::MAX);
                self.store.raise_work_item_counter(&repo.name, &repo.prefix, next).await.map_err(|e| e.to_string())
            }
            Err(error) => Err(error.to_string()),
        };
        match raised {
            Ok(()) => {
                if let Ok(mut done) = self.numbered.lock() {
                    done.insert(repo.name.clone());
                }
            }
            Err(error) => tracing::warn!(
                repo = %repo.name,
                "reading the task branches to number past them failed (tried again at the next new task): {error}"
            ),
        }
    }

    /// Applies a human input to a task. With a dedup key, a replay changes nothing.
    pub async fn submit(
        &self,
        key: &TaskKey,
        input: Input,
        by: &str,
        dedup_key: Option<String>,
    ) -> Result<InputOutcome, EngineError> {
        if let Input::Answer { text: answer } = &input {
            let max = self.settings.limits.answer_bytes_max;
            if answer.trim().is_empty() {
                return Err(EngineError::Invalid(
                    "the answer is empty; write the answer to the agent's question".into(),
                ));
            }
            text::check_text(answer, max)
                .map_err(|problem| invalid_input("the answer", problem, "limits.answer_bytes_max"))?;
        }
        let task = self.store.task(key).await?.ok_or_else(|| EngineError::NotFound(format!("task {key}")))?;
        if input == Input::ConfirmDeploy
            && task.state.hold == baton_domain::Hold::AwaitingConfirm
            && crate::monitor::revert_unprepared(self, &task).await?
        {
            return Err(EngineError::Invalid(format!(
                "{} is a revert whose branch is still being prepared; confirm it once its timeline says \
                 the branch holds the revert",
                task.work_item_id
            )));
        }
        if input == Input::Retry
            && let Some(refusal) = self.retry_refusal(&task).await?
        {
            return Err(EngineError::Invalid(refusal));
        }
        // Without a caller's key, the input is keyed by what it does to which task version: a
        // replay of the same command on the same state is a duplicate and changes nothing.
        let dedup_key = dedup_key.unwrap_or_else(|| auto_dedup_key(&task, &input));
        let inbox = Some(InboxEntry {
            dedup_key,
            kind: input.kind().to_string(),
            payload: serde_json::json!({ "by": by, "input": format!("{input:?}") }),
        });
        self.apply_event(task.id, &input.event(by), None, inbox).await
    }

    /// Why a human's retry of `task` cannot go on yet, when it cannot: the task is blocked at its
    /// deploy stage with its change landed, and the repository's freeze that holds a deploy of
    /// unknown outcome (one this task's deploy opened or joined, [`crate::monitor::unknown_deploy_freeze`])
    /// is still open. That deploy may still be running on the target, so the retried deploy would
    /// only wait for the unfreeze; the retry is refused instead, naming the order that works. (The
    /// deploy actor still waits, without deploying, for a retry that reaches it another way.)
    async fn retry_refusal(&self, task: &TaskRecord) -> Result<Option<String>, EngineError> {
        if !matches!(task.state.hold, baton_domain::Hold::Blocked { .. }) {
            return Ok(None);
        }
        let at_deploy = self
            .pipeline_for(&task.repo)
            .stage(&task.state.stage)
            .is_some_and(|stage| stage.actor == baton_domain::Actor::Deploy);
        if !at_deploy {
            return Ok(None);
        }
        let Some(freeze) = crate::monitor::unknown_deploy_freeze(self, task)
            .await
            .map_err(|error| EngineError::Io(format!("cannot read the repository's freezes: {error}")))?
        else {
            return Ok(None);
        };
        let Some(head) = self.landed_head(task).await? else {
            return Ok(None);
        };
        Ok(Some(format!(
            "{} is frozen ({}, by {}), and {}'s change {} has landed without a known deploy: check the target, \
             run `baton repo unfreeze {}`, then retry {}",
            task.repo,
            freeze.reason,
            freeze.frozen_by,
            task.work_item_id,
            &head[..head.len().min(10)],
            task.repo,
            task.work_item_id
        )))
    }

    /// Ends `finish.job` as `status` with its result, unless `finish.claimed_by` names a claim the
    /// job no longer runs under (taken over from this instance, queued again or running under
    /// another's claim): then it is left to that claim. `true` when closed here.
    pub(crate) async fn close_job_under_claim(
        &self,
        finish: &JobFinish,
        status: JobStatus,
        now_ms: i64,
    ) -> Result<bool, EngineError> {
        let closed = match finish.claimed_by.as_deref() {
            Some(claimant) => {
                self.store.close_claimed_job(finish.job, claimant, status, finish.result.clone(), now_ms).await?
            }
            None => self.store.close_job(finish.job, status, finish.result.clone(), now_ms).await?,
        };
        Ok(closed)
    }

    /// What a STOP of the task must know (`Event::Stop`): shipped code is never called cancelled
    /// (SPEC §12), and a cancel's effects (its worktree and branch removed) cannot take a change
    /// back off the default branch. Critical (the STOP waits for the step that settles whether
    /// the change landed) when
    /// - the deploy actor runs right now (it may be merging);
    /// - its job waits to run again after a claim that may have merged before it ended (an
    ///   instance killed or declared dead mid-deploy: the job was sent back to the queue);
    /// - a change of a merge-queue batch (not its last) waits while its batch is landing.
    ///
    /// Landed when the default branch (as this instance last read it) already holds the change:
    /// the head its merge gate passed, or for a change of a batch, the batch's commit.
    ///
    /// Idle parking, such as waiting for Confirm Deploy while holding the lease, is neither.
    pub(crate) async fn stop_context(&self, task: &TaskRecord) -> Result<(bool, bool), EngineError> {
        let Some(stage) = self.pipeline_for(&task.repo).stage(&task.state.stage) else {
            return Ok((false, false));
        };
        if stage.actor != baton_domain::Actor::Deploy {
            if !stage.is_merge_gate() {
                return Ok((false, false));
            }
            let Some(entry) = self.store.queue_entry(task.id).await?.filter(crate::queue::is_batch_member) else {
                return Ok((false, false));
            };
            let landing = entry.state == baton_store::QueueState::Landing;
            let landed = match entry.head.as_deref() {
                Some(head) if landing => self.holds(&task.repo, head).await,
                _ => false,
            };
            return Ok((landing, landed));
        }
        if let Some(job) = task.state.job
            && let Some(job) = self.store.job(job).await?
        {
            match job.status {
                JobStatus::Running => return Ok((true, false)),
                JobStatus::Queued if job.started_at_ms.is_some() => return Ok((true, false)),
                _ => {}
            }
        }
        Ok((false, self.landed_head(task).await?.is_some()))
    }

    /// The head the task's merge gate last passed, when the repository's default branch (as this
    /// instance last read it) holds it: the change has landed.
    pub(crate) async fn landed_head(&self, task: &TaskRecord) -> Result<Option<String>, EngineError> {
        let head = executor::retested_head(self.store.as_ref(), task.id).await?;
        Ok(match head {
            Some(head) if self.holds(&task.repo, &head).await => Some(head),
            _ => None,
        })
    }

    /// Whether the repository's default branch, as this instance last read it, holds `head`.
    async fn holds(&self, repo: &str, head: &str) -> bool {
        let Some(repo) = self.settings.repo(repo) else {
            return false;
        };
        let Some(main) = self.vcs.rev(&repo.path, &repo.default_ref()).await else {
            return false;
        };
        main == head || self.vcs.is_ancestor(&repo.path, head, &main).await
    }

    /// Decides `event` for the task and commits it atomically; re-decides after a lost race.
    pub async fn apply_event(
        &self,
        task_id: baton_domain::TaskId,
        event: &Event,
        finish: Option<JobFinish>,
        inbox: Option<InboxEntry>,
    ) -> Result<InputOutcome, EngineError> {
        for _ in 0..ADVANCE_ATTEMPTS_MAX {
            let task = self
                .store
                .task(&TaskKey::Id(task_id))
                .await?
                .ok_or_else(|| EngineError::NotFound(format!("task {task_id}")))?;
            let now = self.clock.now_ms();
            // Whether a STOP must wait is judged on the state it is decided against: a claim of
            // the deploy job bumps the task version, so a STOP read before it loses its CAS here.
            let mut event = event.clone();
            if let Event::Stop { critical, landed, .. } = &mut event {
                (*critical, *landed) = self.stop_context(&task).await?;
            }
            // Nor is a change blocked for a dependency once it is landing or landed: it ships
            // whatever the dependency does (the store refuses the block of a landing batch's
            // change, so deciding it would only lose the race again).
            let shipping =
                matches!(event, Event::DependencyBlocked { .. }) && self.stop_context(&task).await? != (false, false);
            let event = &event;
            let pipeline = crate::monitor::pipeline_for(self, &task.repo);
            let decision = if shipping {
                Decision::Suppress {
                    reason: "dependency block ignored: the change is landing or has landed, which no dependency \
                             can undo"
                        .to_string(),
                }
            } else {
                baton_domain::decide(&task.state, event, &pipeline, now)
            };
            match decision {
                Decision::Suppress { reason } => {
                    // One structured line per late, stale or duplicate caller (SPEC §4.3).
                    tracing::info!(
                        task = %task.work_item_id, caller = %event.caller(), target = event.kind(),
                        stage = %task.state.display(), verdict = "suppressed", "{reason}"
                    );
                    let row = NewEvent {
                        task: task.id,
                        at_ms: now,
                        kind: "suppressed".into(),
                        stage: task.state.stage.clone(),
                        message: format!("{} suppressed: {reason}", event.kind()),
                        detail: serde_json::json!({ "event": event }),
                    };
                    match self.store.record_suppressed(task.id, inbox, row).await {
                        Err(StoreError::Duplicate(_)) => return Ok(InputOutcome::Duplicate),
                        other => other?,
                    }
                    if let Some(finish) = finish {
                        // The result is stale, but the job must not stay `running` (unless it runs
                        // under another instance's claim now: then it is that claim's to end).
                        self.close_job_under_claim(&finish, JobStatus::Cancelled, now).await?;
                    }
                    return Ok(InputOutcome::Suppressed { reason });
                }
                Decision::Apply { next, effects, note } => {
                    let running = if effects.contains(&Effect::StopAgent) {
                        self.running_processes(task.id).await?
                    } else {
                        Vec::new()
                    };
                    let advance = Advance {
                        task: task.id,
                        expected_version: task.version,
                        next: next.clone(),
                        finish_job: finish.clone(),
                        event: NewEvent {
                            task: task.id,
                            at_ms: now,
                            kind: event.kind().to_string(),
                            stage: next.stage.clone(),
                            message: note.clone(),
                            detail: serde_json::json!({ "from": task.state.display(), "to": next.display(), "event": event }),
                        },
                        transition: transition_of(&effects, &pipeline),
                        inbox: inbox.clone(),
                        effects: effects::outbox_rows(
                            &pipeline,
                            &task,
                            &next,
                            &effects,
                            &running,
                            effects::OutboxOptions {
                                hosted_forge: self.settings.repo(&task.repo).is_some_and(|r| r.forge.is_hosted()),
                                live: self.live.is_some(),
                                handoffs: self.handoffs,
                            },
                        ),
                        now_ms: now,
                    };
                    let wrote_effects = !advance.effects.is_empty();
                    let moves_queue = moves_queue(&pipeline, &task.state, &next, &advance.transition);
                    match self.store.advance(advance).await {
                        Ok(_) => {
                            tracing::info!(task = %task.work_item_id, "{note}");
                            self.note_due(&next);
                            // A job's end is committed: its slot is free for the claim loop now,
                            // while this task's queue pass and effects go on.
                            if let Some(finish) = &finish {
                                self.job_settled(finish.job);
                            }
                            // The repository's merge queue may move now (a change entered or left
                            // it, the lease was released with the transition): the next change
                            // starts landing while this task's effects are carried out.
                            if moves_queue {
                                Box::pin(crate::queue::schedule(self, &task.repo)).await;
                            }
                            // The effects are durable now; carry out this task's at once (a worker
                            // picks up whatever a crash here leaves, and any left from before).
                            if wrote_effects {
                                effects::drain(self, Some(task.id)).await;
                            }
                            self.wake();
                            // The journal observes the committed transition last: it cannot fail
                            // it, nor delay the queue or the effects.
                            crate::lessons::observe(self, &task, &next).await;
                            return Ok(InputOutcome::Applied { note });
                        }
                        Err(StoreError::Conflict(why)) => {
                            tracing::debug!(task = %task.work_item_id, "lost the advance race ({why}); deciding again");
                            continue;
                        }
                        Err(StoreError::Duplicate(_)) => return Ok(InputOutcome::Duplicate),
                        Err(other) => return Err(other.into()),
                    }
                }
            }
        }
        Err(EngineError::Invalid(format!(
            "task {task_id} kept changing; gave up after {ADVANCE_ATTEMPTS_MAX} attempts"
        )))
    }

    async fn running_processes(&self, task: baton_domain::TaskId) -> Result<Vec<RunningProcess>, EngineError> {
        let jobs = self.store.jobs_for_task(task).await?;
        Ok(jobs
            .into_iter()
            .filter(|j| j.status == JobStatus::Running)
            .map(|j| RunningProcess { job: j.id, pgid: j.pgid, proc_start: j.proc_start, owner: j.owner })
            .collect())
    }

    /// Asks a job running in this process to stop its agent.
    pub(crate) fn signal_stop(&self, job: JobId) {
        if let Ok(running) = self.running.lock()
            && let Some(sender) = running.get(&job)
        {
            let _ = sender.send(true);
        }
    }

    /// Registers `job` as running here and starts its executor.
    pub fn start_job(self: &Arc<Self>, job: JobRecord, start: Start) {
        let (stop_tx, stop_rx) = watch::channel(false);
        if let Ok(mut running) = self.running.lock() {
            if running.contains_key(&job.id) {
                return;
            }
            running.insert(job.id, stop_tx);
        }
        self.spawner.spawn(Box::pin(executor::execute(self.clone(), job, stop_rx, start)));
    }

    /// Whether something a job started outlived the Baton that started it and must be adopted, not
    /// started again: its agent (running, or ended with a recorded exit), or — for the deploy step,
    /// whose command may never run twice — anything at all (its executor judges on adoption).
    async fn outlives(&self, job: &JobRecord) -> Result<bool, EngineError> {
        let actor = self.pipeline_for(&job.repo).stage(&job.stage).map(|s| s.actor.clone());
        if actor == Some(baton_domain::Actor::Deploy) {
            return Ok(true);
        }
        let runs = self.store.agent_runs(job.task_id).await?;
        let Some(run) = runs.iter().rev().find(|r| r.job_id == job.id) else {
            return Ok(false);
        };
        let alive = job.pgid.is_some_and(|pgid| self.supervisor.is_same_group(pgid, job.proc_start));
        Ok(alive
            || matches!(
                self.supervisor.previous(std::path::Path::new(&run.log_path)),
                baton_runner::Previous::Running(_) | baton_runner::Previous::Exited(_)
            ))
    }

    /// Closes the agent runs of `job` that never recorded their end: the agent died with the Baton
    /// that ran it and left no exit record, so its spend is unknown.
    pub(crate) async fn close_lost_runs(&self, job: JobId, why: &str) -> Result<u32, EngineError> {
        let runs = self.open_runs_of(job).await?;
        self.close_runs_lost(&runs, why).await
    }

    /// The agent runs of `job` that have not recorded their end, as they stand now. Read before
    /// the job goes back to the queue: closing them after the requeue then never closes a run that
    /// the job's next claim (on another instance, a moment later) has started meanwhile.
    async fn open_runs_of(&self, job: JobId) -> Result<Vec<i64>, EngineError> {
        Ok(self.store.open_agent_runs().await?.into_iter().filter(|r| r.job_id == job).map(|r| r.id).collect())
    }

    /// Closes `runs` as lost (those still open); how many it closed.
    async fn close_runs_lost(&self, runs: &[i64], why: &str) -> Result<u32, EngineError> {
        let mut closed = 0;
        for &run in runs {
            if self.store.close_agent_run(run, "lost", why, self.clock.now_ms()).await? {
                closed += 1;
            }
        }
        Ok(closed)
    }

    /// Puts work interrupted by a previous process back in the queue when nothing of it survives
    /// (no agent still running, no recorded agent exit). Jobs whose agent outlived that process are
    /// left `running` for [`Engine::adopt_orphans`]: their agent must not run a second time.
    pub async fn recover(&self) -> Result<u32, EngineError> {
        let mut recovered = 0;
        let instances = self.instances().await?;
        for job in self.store.jobs_with_status(JobStatus::Running).await? {
            match self.claimant(&job, &instances) {
                Claimant::Alive(_) => continue,
                Claimant::Dead(instance) => {
                    recovered += u32::from(self.take_over(&job, &instance).await?);
                    continue;
                }
                Claimant::Mine | Claimant::Unknown => {}
            }
            if self.is_running_here(job.id) || self.outlives(&job).await? {
                continue;
            }
            let lost = self.open_runs_of(job.id).await?;
            if self.store.requeue_job(job.id, job.owner.as_deref(), self.clock.now_ms()).await? {
                tracing::info!(job = %job.id, stage = %job.stage, owner = ?job.owner, "requeued a job interrupted by a restart");
                self.close_runs_lost(&lost, "the agent died with the Baton that ran it and left no exit record")
                    .await?;
                recovered += 1;
            }
        }
        Ok(recovered)
    }

    /// Re-adopts running jobs that no executor of this process watches (their Baton died, or their
    /// executor vanished): the executor waits for the surviving agent or takes its recorded result.
    pub async fn adopt_orphans(self: &Arc<Self>) -> Result<u32, EngineError> {
        let mut adopted = 0;
        let instances = self.instances().await?;
        for job in self.store.jobs_with_status(JobStatus::Running).await? {
            if self.is_running_here(job.id) {
                continue;
            }
            match self.claimant(&job, &instances) {
                // Its instance watches it (on another machine, maybe): never ours to adopt.
                Claimant::Alive(_) => continue,
                // Its agent ran on a machine that went silent: it cannot be watched from here;
                // the stage runs again.
                Claimant::Dead(instance) => {
                    self.take_over(&job, &instance).await?;
                    continue;
                }
                Claimant::Mine | Claimant::Unknown => {}
            }
            // Under the claim as read: of two instances adopting the same orphan, one watches it.
            if !self.store.adopt_job(job.id, job.owner.as_deref(), &self.owner).await? {
                continue;
            }
            tracing::info!(job = %job.id, stage = %job.stage, owner = ?job.owner, "re-adopted an orphaned running job");
            let job = JobRecord { owner: Some(self.owner.clone()), ..job };
            self.start_job(job, Start::Adopt);
            adopted += 1;
        }
        Ok(adopted)
    }

    /// What a claim asks of the store now: the limits, and where the dependency and serial gates
    /// apply (a switch off for a repository, `[features]`, means the claim ignores that gate there).
    pub fn claim_request(&self) -> Claim {
        let repos = &self.settings.repos;
        Claim {
            owner: self.owner.clone(),
            now_ms: self.clock.now_ms(),
            running_max: self.settings.limits.running_max,
            running_per_repo_max: self.settings.limits.running_per_repo_max,
            dependency_free_repos: repos
                .iter()
                .filter(|r| !self.features.enabled(Feature::Dependencies, &r.name))
                .map(|r| r.name.clone())
                .collect(),
            serial_repos: repos
                .iter()
                .filter(|r| r.serial && self.features.enabled(Feature::Serial, &r.name))
                .map(|r| r.name.clone())
                .collect(),
        }
    }

    /// One claim of the claim loop: the next runnable job under the limits, started here.
    /// The claim loop's step: up to `max` runnable jobs under the limits in one transaction (many
    /// jobs due at once cost one commit, not one each), each started here; how many.
    pub async fn claim_batch(self: &Arc<Self>, max: u32) -> Result<usize, EngineError> {
        let claim = self.claim_request();
        let jobs = self.store.claim_jobs(&claim, max).await?;
        let claimed = jobs.len();
        for job in jobs {
            self.start_job(job, Start::Fresh);
        }
        Ok(claimed)
    }

    pub async fn claim_next(self: &Arc<Self>) -> Result<Option<JobRecord>, EngineError> {
        let claim = self.claim_request();
        let job = self.store.claim_job(&claim).await?;
        if let Some(job) = &job {
            self.start_job(job.clone(), Start::Fresh);
        }
        Ok(job)
    }

    /// Whether a claim can take anything: `false` when the jobs running here alone fill
    /// `running_max` (the store counts them, and any elsewhere, against the same limit), so the
    /// store is not asked; the next job to end here wakes the loop ([`Engine::job_left`]).
    fn slots_free_here(&self) -> bool {
        let max = self.settings.limits.running_max as usize;
        let here = || {
            let running = self.running.lock().map(|r| r.len()).unwrap_or(0);
            running.saturating_sub(self.settled.lock().map(|s| s.len()).unwrap_or(0))
        };
        if here() < max {
            return true;
        }
        // Deferred first, then counted again: a job ending between the two either is seen in the
        // count or sees the flag and wakes the loop.
        self.claim_deferred.store(true, Ordering::SeqCst);
        here() < max
    }

    /// The end of `job`, running here, is committed: it no longer holds a slot; the claim loop
    /// may fill it at once.
    fn job_settled(&self, job: JobId) {
        let here = self.running.lock().map(|r| r.contains_key(&job)).unwrap_or(false);
        if here && let Ok(mut settled) = self.settled.lock() {
            settled.insert(job);
        }
        self.claim_deferred.store(false, Ordering::SeqCst);
        self.wake();
    }

    /// A job's executor let it go (`running` no longer holds it): wakes the claim loop if it
    /// skipped a claim because every slot was taken here.
    pub(crate) fn job_left(&self, job: JobId) {
        if let Ok(mut settled) = self.settled.lock() {
            settled.remove(&job);
        }
        if self.claim_deferred.swap(false, Ordering::SeqCst) {
            self.wake();
        }
    }

    /// Records that this instance is alive (`baton serve` does every `heartbeat_secs`).
    pub async fn heartbeat(&self) -> Result<(), EngineError> {
        let beat = baton_store::InstanceRecord {
            id: self.owner.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            started_at_ms: self.started_at_ms,
            heartbeat_at_ms: self.clock.now_ms(),
        };
        Ok(self.store.heartbeat(&beat).await?)
    }

    /// The machine this engine runs on.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The instances sharing the store, by id.
    pub async fn instances(&self) -> Result<HashMap<String, baton_store::InstanceRecord>, EngineError> {
        Ok(self.store.instances().await?.into_iter().map(|i| (i.id.clone(), i)).collect())
    }

    /// Who watches a running job, as this instance sees it: itself, a live instance, a dead one
    /// (silent past `instance_grace_secs`), or nobody known (a job from before instances, or of a
    /// process that never served: a single machine's previous run).
    pub fn claimant(&self, job: &JobRecord, instances: &HashMap<String, baton_store::InstanceRecord>) -> Claimant {
        let Some(owner) = job.owner.as_deref() else { return Claimant::Unknown };
        if owner == self.owner {
            return Claimant::Mine;
        }
        match instances.get(owner) {
            None => Claimant::Unknown,
            Some(instance) => {
                let grace_ms = self.settings.limits.instance_grace_secs as i64 * 1000;
                if instance.is_alive(self.clock.now_ms(), grace_ms) {
                    Claimant::Alive(instance.id.clone())
                } else {
                    Claimant::Dead(instance.clone())
                }
            }
        }
    }

    /// Requeues the running job of a dead instance (guarded on it still running under that
    /// owner's claim): the one case where a stage attempt starts again, on whichever instance
    /// claims it. The dead instance's late writes lose: the next claim moves the task's version,
    /// and its executor finds the job no longer its own. `true` when requeued here.
    async fn take_over(&self, job: &JobRecord, dead: &baton_store::InstanceRecord) -> Result<bool, EngineError> {
        let now = self.clock.now_ms();
        let silent_s = (now - dead.heartbeat_at_ms) / 1000;
        let why = format!(
            "instance {} ({}) has been silent for {silent_s} s (grace {} s)",
            dead.id, dead.host, self.settings.limits.instance_grace_secs
        );
        let stage = self.store.task(&TaskKey::Id(job.task_id)).await?.map(|t| t.state.stage).unwrap_or_default();
        let event = NewEvent {
            task: job.task_id,
            at_ms: now,
            kind: "instance_dead".into(),
            stage,
            message: format!("{why}: job {} ({}) requeued; the stage runs again", job.id, job.stage),
            detail: serde_json::json!({ "instance": dead.id, "host": dead.host, "job": job.id.0, "silent_s": silent_s }),
        };
        // The requeue and its reason commit together, and only while the dead instance's claim
        // stands: another instance may have taken the job over and claimed it since it was read.
        // The runs to close are the dead claim's, read before the job can be claimed again.
        let lost = self.open_runs_of(job.id).await?;
        if !self.store.take_over_job(job.id, &dead.id, now, event).await? {
            return Ok(false);
        }
        tracing::warn!(job = %job.id, stage = %job.stage, "{why}: requeued its job");
        self.close_runs_lost(&lost, &format!("{why}; its agent cannot be watched from here")).await?;
        Ok(true)
    }

    /// Stops the agents of jobs running here that are no longer this instance's: stopped (STOP
    /// applied by another instance cancelled the job) or taken over (this instance was silent
    /// past the grace period and another requeued its job). One indexed read, only while
    /// something runs here; returns how many it stopped.
    pub async fn stop_jobs_taken_away(&self) -> Result<u32, EngineError> {
        let here = self.running_here();
        if here.is_empty() {
            return Ok(0);
        }
        let ours: std::collections::HashSet<JobId> = self
            .store
            .jobs_with_status(JobStatus::Running)
            .await?
            .into_iter()
            .filter(|j| j.owner.as_deref() == Some(self.owner.as_str()) || j.owner.is_none())
            .map(|j| j.id)
            .collect();
        let mut stopped = 0;
        for job in here.into_iter().filter(|j| !ours.contains(j)) {
            // A job that just ended here is already out of the store's running set: only its
            // executor's own finish can be in flight, which a stop signal does not disturb.
            tracing::info!(job = %job, "this job is no longer this instance's (stopped or taken over): stopping it");
            self.signal_stop(job);
            stopped += 1;
        }
        Ok(stopped)
    }

    /// The jobs whose executor runs in this process.
    pub fn running_here(&self) -> Vec<JobId> {
        let mut jobs: Vec<JobId> = self.running.lock().map(|r| r.keys().copied().collect()).unwrap_or_default();
        jobs.sort();
        jobs
    }

    pub fn is_running_here(&self, job: JobId) -> bool {
        self.running.lock().map(|r| r.contains_key(&job)).unwrap_or(false)
    }

    /// Resumes tasks paused on provider quota whose resume time has come, and runs the post-deploy
    /// health checks that are due (`monitor::check`; on this loop, bounded by the command timeout).
    /// Asks the store for the due ones only (`Store::due_holds`, indexed): never lists tasks, so its
    /// cost does not grow with the backlog. At most [`DUE_HOLDS_PER_PASS`] per call; the loop comes
    /// back for more.
    pub async fn resume_due_quota_pauses(&self) -> Result<u32, EngineError> {
        let now = self.clock.now_ms();
        let mut resumed = 0;
        for id in self.store.due_holds(now, DUE_HOLDS_PER_PASS).await? {
            let Some(task) = self.store.task(&TaskKey::Id(id)).await? else { continue };
            if matches!(task.state.hold, baton_domain::Hold::Monitoring { .. }) {
                match crate::monitor::check(self, &task).await {
                    Ok(true) => resumed += 1,
                    Ok(false) => {}
                    Err(error) => tracing::warn!(task = %task.work_item_id, "post-deploy health check failed: {error}"),
                }
                continue;
            }
            if let baton_domain::Hold::PausedQuota { resume_at_ms, .. } = task.state.hold
                && resume_at_ms <= now
                && let InputOutcome::Applied { .. } =
                    self.apply_event(task.id, &Event::Resume { by: "quota timer".into() }, None, None).await?
            {
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// The earliest due hold (`None`: nothing will be due until a new pause); on a failed read,
    /// one timer interval from `now`.
    async fn next_due_ms(&self, now: i64) -> Option<i64> {
        self.store.next_due_ms().await.unwrap_or_else(|error| {
            tracing::warn!("reading the next due hold failed: {error}");
            Some(now + QUOTA_TIMER_MS)
        })
    }

    /// Whether a queued job is due by `now` (one indexed read): the claim query, which walks the
    /// queue in claim order, runs only then. A failed read answers yes (the claim reports it).
    async fn job_due(&self, now: i64) -> bool {
        match self.store.next_job_at_ms().await {
            Ok(next) => next.is_some_and(|at| at <= now),
            Err(_) => true,
        }
    }

    /// Runs the store's health checks; a failed fatal one (the database file deleted or replaced)
    /// is logged once and remembered: [`Engine::run`] then stops and [`Engine::store_lost`] says why.
    pub async fn check_store(&self) -> Vec<baton_store::HealthCheck> {
        let checks = self.store.health().await;
        if let Some(fatal) = checks.iter().find(|c| !c.ok && c.fatal)
            && let Ok(mut lost) = self.store_lost.lock()
            && lost.is_none()
        {
            tracing::error!("the store can no longer be used, stopping: {}: {}", fatal.name, fatal.detail);
            *lost = Some(format!("{}: {}", fatal.name, fatal.detail));
            self.wake.notify_one();
        }
        checks
    }

    /// Why the store can no longer be used, once a health check found it (see [`Engine::check_store`]).
    pub fn store_lost(&self) -> Option<String> {
        self.store_lost.lock().map(|l| l.clone()).unwrap_or(None)
    }

    /// Subscribes to the store's change feed (PostgreSQL's LISTEN/NOTIFY), when it has one: a
    /// background task wakes the loop on every change another process makes — a job queued is
    /// claimed at once, a running job stopped or taken away elsewhere has its agent stopped at
    /// once — rather than at the next poll. It hastens the polling; the polling stays.
    async fn listen_for_changes(self: &Arc<Self>) {
        let mut feed = match self.store.change_feed().await {
            Ok(Some(feed)) => feed,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!("subscribing to the store's changes failed (polling only): {error}");
                return;
            }
        };
        let engine = Arc::downgrade(self);
        let clock = self.clock.clone();
        self.spawner.spawn(Box::pin(async move {
            loop {
                let change = feed.next().await;
                let Some(engine) = engine.upgrade() else { return };
                match change {
                    Ok(baton_store::Change::Stopped) => {
                        engine.jobs_taken.store(true, Ordering::Release);
                        engine.wake.notify_one();
                    }
                    Ok(_) => engine.wake.notify_one(),
                    Err(error) => {
                        // Reconnected by the next call; the polling covers the gap.
                        tracing::warn!("the store's change feed failed (polling meanwhile): {error}");
                        drop(engine);
                        clock.sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }));
    }

    /// The claim loop: recovers interrupted work, then claims runnable jobs under the limits and
    /// runs each on its own task until `shutdown` turns true, or until the store is lost (checked
    /// every second; see [`Engine::check_store`]).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        // Alive before anything else: another instance must not take this one's jobs over while
        // it recovers them.
        if let Err(error) = self.heartbeat().await {
            tracing::error!("recording this instance's heartbeat failed: {error}");
        }
        match self.recover().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("recovered {n} interrupted job(s)"),
            Err(error) => tracing::error!("recovery failed: {error}"),
        }
        if let Err(error) = self.adopt_orphans().await {
            tracing::error!("re-adopting running jobs failed: {error}");
        }
        crate::reaper::sweep_at_start(&self).await;
        self.listen_for_changes().await;
        // The reconciler's first pass looks at every ended job once (later ones only at what ended
        // since): start-up work, done before the loop settles into idling.
        if self.settings.limits.reconciler_interval_secs > 0 {
            crate::reconciler::tick(&self).await;
        }
        // Retention once at start (a Baton restarted daily still prunes), then once an hour.
        crate::retention::tick(&self).await;
        let poll = Duration::from_millis(self.settings.limits.poll_interval_ms.max(10));
        // The quota timer runs only when the earliest due hold has come; the cached time is read
        // again after each pass, after this engine wrote a due hold, and once a second (a hold
        // written by another process).
        let mut quota_check_ms: Option<i64> = Some(i64::MIN);
        let mut quota_known_ms = i64::MIN;
        // Periodic work first runs one interval after start (recovery just ran).
        let mut last_reaper_ms = self.clock.now_ms();
        let mut last_reconciler_ms = last_reaper_ms;
        let mut last_retention_ms = last_reaper_ms;
        let mut last_outbox_ms = i64::MIN;
        let mut last_store_check_ms = i64::MIN;
        let mut last_heartbeat_ms = self.clock.now_ms();
        let heartbeat_ms = self.settings.limits.heartbeat_secs.max(1) as i64 * 1000;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = self.clock.now_ms();
            let taken = self.jobs_taken.swap(false, Ordering::AcqRel);
            if taken || now.saturating_sub(last_store_check_ms) >= STORE_CHECK_MS {
                if !taken {
                    last_store_check_ms = now;
                    self.check_store().await;
                }
                if let Err(error) = self.stop_jobs_taken_away().await {
                    tracing::warn!("checking the jobs running here failed: {error}");
                }
            }
            if now.saturating_sub(last_heartbeat_ms) >= heartbeat_ms {
                last_heartbeat_ms = now;
                if let Err(error) = self.heartbeat().await {
                    tracing::warn!("recording this instance's heartbeat failed: {error}");
                }
            }
            if self.store_lost().is_some() {
                break;
            }
            if self.due_written.swap(false, Ordering::AcqRel) || now.saturating_sub(quota_known_ms) >= QUOTA_TIMER_MS {
                quota_known_ms = now;
                quota_check_ms = self.next_due_ms(now).await;
            }
            if quota_check_ms.is_some_and(|due| due <= now) {
                if let Err(error) = self.resume_due_quota_pauses().await {
                    tracing::error!("resuming quota-paused tasks failed: {error}");
                }
                quota_known_ms = now;
                // A task still due could not be resumed: try again in a timer interval, not at once.
                quota_check_ms =
                    self.next_due_ms(now).await.map(|due| if due <= now { now + QUOTA_TIMER_MS } else { due });
            }
            if self.settings.limits.reaper_interval_secs > 0
                && now.saturating_sub(last_reaper_ms) >= self.settings.limits.reaper_interval_secs as i64 * 1000
            {
                last_reaper_ms = now;
                crate::reaper::tick(&self).await;
            }
            if self.settings.limits.reconciler_interval_secs > 0
                && now.saturating_sub(last_reconciler_ms) >= self.settings.limits.reconciler_interval_secs as i64 * 1000
            {
                last_reconciler_ms = now;
                crate::reconciler::tick(&self).await;
            }
            if now.saturating_sub(last_retention_ms) >= crate::retention::RETENTION_INTERVAL_MS {
                last_retention_ms = now;
                crate::retention::tick(&self).await;
            }
            crate::queue::schedule_kicked(&self).await;
            if self.slots_free_here() && self.job_due(now).await {
                loop {
                    match self.claim_batch(CLAIM_BATCH_MAX).await {
                        // Fewer than asked for: nothing more is runnable under the limits now.
                        Ok(n) if n < CLAIM_BATCH_MAX as usize => break,
                        Ok(_) => {}
                        Err(error) => {
                            tracing::error!("claiming jobs failed: {error}");
                            break;
                        }
                    }
                }
            }
            // New deliveries at once; left-overs (a full batch, a failed sink) once a second.
            if self.webhooks_pending.swap(false, Ordering::AcqRel)
                || now.saturating_sub(last_outbox_ms) >= OUTBOX_INTERVAL_MS
            {
                match self.process_webhooks().await {
                    // A full batch: there may be more, go round again without sleeping.
                    Ok(pass) if pass.handled + pass.failed == crate::webhooks::DELIVERIES_PER_PASS => {
                        self.webhook_received();
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!("processing webhook deliveries failed: {error}"),
                }
            }
            if now.saturating_sub(last_outbox_ms) >= OUTBOX_INTERVAL_MS {
                last_outbox_ms = now;
                effects::drain(&self, None).await;
                // Ticket polls talk to the trackers: off the loop, one pass at a time.
                if !self.pollers.is_empty() && !self.polling.swap(true, Ordering::AcqRel) {
                    let engine = self.clone();
                    self.spawner.spawn(Box::pin(async move {
                        if let Err(error) = engine.poll_tickets().await {
                            tracing::warn!("polling tickets failed: {error}");
                        }
                        engine.polling.store(false, Ordering::Release);
                    }));
                }
                // Telegram presses by long polling (`mode = "poll"`): off the loop, one at a time.
                if let Some(live) = self.live.as_ref().filter(|l| l.polls())
                    && !live.polling.swap(true, Ordering::AcqRel)
                {
                    let engine = self.clone();
                    self.spawner.spawn(Box::pin(async move {
                        if let Err(error) = crate::telegram::poll(&engine).await {
                            tracing::warn!("polling Telegram updates failed: {error}");
                        }
                        if let Some(live) = engine.live() {
                            live.polling.store(false, Ordering::Release);
                        }
                    }));
                }
            }
            tokio::select! {
                _ = self.clock.sleep(poll) => {}
                _ = self.wake.notified() => {}
                _ = self.queues.kicked() => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// The error for input text that failed a check, naming the limit to raise when it was too long.
fn invalid_input(what: &str, problem: text::TextProblem, limit_key: &str) -> EngineError {
    match problem {
        text::TextProblem::Empty => {
            EngineError::Invalid(format!("{what} is empty; give a short summary of the ticket"))
        }
        text::TextProblem::TooLong(..) => {
            EngineError::Invalid(format!("{what} {problem} (shorten it, or raise `{limit_key}` in baton.toml)"))
        }
        text::TextProblem::Forbidden { .. } => EngineError::Invalid(format!("{what} {problem}")),
    }
}

/// The values of every variable that carries a secret: each agent's API-key variable, and every
/// variable passed through to agents or present in Baton's own environment whose name says it
/// holds a key, token, secret or password. (Other passed-through values — `NODE_ENV=production` —
/// are not masked: masking them would garble every log; `server.secret_env` names more.)
fn known_secrets(settings: &EngineSettings) -> Vec<String> {
    let mut names: Vec<String> = settings.env_passthrough.iter().filter(|n| secret_name(n)).cloned().collect();
    for agent in settings.agents.values() {
        names.extend(agent.api_key_env.iter().cloned());
        names.extend(agent.env.iter().filter(|n| secret_name(n)).cloned());
    }
    // A remote repository's token, whatever its variable is called.
    names.extend(settings.repos.iter().filter_map(|repo| repo.credentials_env.clone()));
    names.extend(settings.repos.iter().filter_map(|repo| repo.forge.token_env.clone()));
    let mut values: Vec<String> = names.iter().filter_map(|name| std::env::var(name).ok()).collect();
    values.extend(std::env::vars().filter(|(name, _)| secret_name(name)).map(|(_, value)| value));
    values
}

/// Whether a variable's name says it holds a secret: one of its `_`-separated words is KEY,
/// TOKEN, SECRET, PASSWORD, … (`ANTHROPIC_API_KEY`, `GITHUB_TOKEN`; not `KEYBOARD_LAYOUT`).
fn secret_name(name: &str) -> bool {
    const WORDS: &[&str] = &["KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"];
    name.to_ascii_uppercase().split(['_', '-']).any(|word| WORDS.contains(&word))
}

/// The inbox key of an input given without one: kind, task, task version and (for answers) a
/// digest of the text.
fn auto_dedup_key(task: &TaskRecord, input: &Input) -> String {
    let text = match input {
        Input::Answer { text } => {
            // FNV-1a: a stable digest without a dependency; collisions only merge identical-looking replays.
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in text.bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
            format!(":{hash:016x}")
        }
        _ => String::new(),
    };
    format!("auto:{}:{}:v{}{text}", input.kind(), task.id, task.version)
}

/// Whether a transition from `from` to `to` can move its repository's merge queue: a change
/// entering, in or leaving it (its stage has the merge gate, it waits in the queue, a lease is
/// let go) or a deploy (the default branch moves). One agent stage to the next cannot: no queue
/// pass for it.
fn moves_queue(pipeline: &Pipeline, from: &TaskState, to: &TaskState, transition: &Transition) -> bool {
    let quiet = |state: &TaskState| {
        state.hold != baton_domain::Hold::MergeQueue
            && pipeline
                .stage(&state.stage)
                .is_some_and(|stage| matches!(stage.actor, baton_domain::Actor::Agent { .. }) && !stage.is_merge_gate())
    };
    transition.release_leases || !quiet(from) || !quiet(to)
}

/// The store-side part of a decision's effects. An enqueued job is ranked by its stage's place in
/// `pipeline` (1 for the first stage, 0 for a stage the pipeline does not name), so claims take
/// later stages first: tasks in progress finish before new ones start.
pub fn transition_of(effects: &[Effect], pipeline: &Pipeline) -> Transition {
    let mut transition = Transition::default();
    for effect in effects {
        match effect {
            Effect::EnqueueJob { stage, delay_ms } => {
                transition.enqueue = Some((stage.clone(), *delay_ms as i64));
                transition.rank = stage_rank(pipeline, stage);
            }
            Effect::CancelJobs => transition.cancel_jobs = true,
            Effect::ReleaseLeases => transition.release_leases = true,
            _ => {}
        }
    }
    transition
}

/// The claim rank of a job of `stage`: its 1-based position in the pipeline, 0 when unknown.
fn stage_rank(pipeline: &Pipeline, stage: &str) -> i64 {
    pipeline.stages.iter().position(|s| s.name == stage).map_or(0, |index| index as i64 + 1)
}

pub(crate) fn forge_repo(repo: &crate::settings::RepoSettings) -> ForgeRepo {
    ForgeRepo {
        name: repo.name.clone(),
        path: repo.path.clone(),
        default_branch: repo.default_branch.clone(),
        remote: repo.remote(),
        merge_style: repo.forge.merge_style,
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`), or `localhost` when it cannot be read.
pub fn local_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // One agent stage to the next leaves the merge queue alone; entering the merge gate's stage,
    // waiting in the queue, letting a lease go or a deploy may move it.
    #[test]
    fn only_transitions_near_the_merge_queue_run_a_queue_pass() {
        use baton_domain::{Actor, Hold};
        let pipeline = Pipeline::default_pipeline();
        let agents: Vec<&str> = pipeline
            .stages
            .iter()
            .filter(|s| matches!(s.actor, Actor::Agent { .. }) && !s.is_merge_gate())
            .map(|s| s.name.as_str())
            .collect();
        let gate = pipeline.merge_gate().expect("a merge gate");
        let deploy = pipeline.stages.iter().find(|s| s.actor == Actor::Deploy).expect("a deploy stage");
        let none = Transition::default();
        let (a, b) = (TaskState::new(agents[0]), TaskState::new(agents[1]));
        assert!(!moves_queue(&pipeline, &a, &b, &none), "{} to {}", agents[0], agents[1]);
        assert!(moves_queue(&pipeline, &b, &TaskState::new(&gate.name), &none));
        assert!(moves_queue(&pipeline, &TaskState::new(&deploy.name), &b, &none));
        let parked = TaskState { hold: Hold::MergeQueue, ..b.clone() };
        assert!(moves_queue(&pipeline, &a, &parked, &none));
        assert!(moves_queue(&pipeline, &a, &b, &Transition { release_leases: true, ..Transition::default() }));
        assert!(moves_queue(&pipeline, &a, &TaskState::new("cancelled"), &none), "a stage outside the pipeline");
    }

    // An enqueued job is ranked by its stage's place in the pipeline (later stages claimed first);
    // a stage the pipeline does not name, or no job at all, ranks 0.
    #[test]
    fn transition_ranks_the_enqueued_stage_by_its_place_in_the_pipeline() {
        let pipeline = Pipeline::default_pipeline();
        let enqueue = |stage: &str| vec![Effect::EnqueueJob { stage: stage.into(), delay_ms: 0 }];
        let last = pipeline.stages.last().map(|s| s.name.clone()).expect("the default pipeline has stages");
        assert_eq!(transition_of(&enqueue("analysis"), &pipeline).rank, 1);
        assert_eq!(transition_of(&enqueue("architecture"), &pipeline).rank, 2);
        assert_eq!(transition_of(&enqueue(&last), &pipeline).rank, pipeline.stages.len() as i64);
        assert_eq!(transition_of(&enqueue("nowhere"), &pipeline).rank, 0);
        assert_eq!(transition_of(&[Effect::CancelJobs], &pipeline).rank, 0);
    }
}
