//! The seeded schedule: per seed, draws a world (repositories, limits, fault rate), then picks the
//! next enabled action at random — create, claim, finish a job with a scripted outcome, deliver a
//! result again, a human input (new, replayed or delayed), STOP, time passing, the quota timer,
//! a kill and restart, or a burst of several of these interleaved — checking the invariants after
//! every step. Then it drains (no faults, helpful humans, time advanced) and checks that every
//! task settled.

use crate::check::{Kind, Violation};
use crate::ports::Script;
use crate::report::{Failure, Totals};
use crate::rng::Rng;
use crate::store::{FaultRates, Isolation, Mutation};
use crate::world::{Action, Delivery, Outcome, SentInput, World, WorldConfig, sim_limits};
use baton_domain::{Hold, JobId, TaskId};
use baton_engine::{Clock, Input};
use baton_store::{JobStatus, TaskRecord};
use std::collections::{BTreeMap, BTreeSet};

/// Rounds of the drain before giving up on settling.
const DRAIN_ROUNDS_MAX: u32 = 400;
/// Claims per claim-loop pass in the drain.
const CLAIMS_PER_PASS_MAX: u32 = 16;
/// Results kept for a later duplicate delivery.
const LATE_DELIVERIES_MAX: usize = 8;
/// Human inputs held back for delivery out of order.
const DELAYED_INPUTS_MAX: usize = 8;
/// Human inputs remembered for replays.
const SENT_INPUTS_MAX: usize = 64;
/// Kills per seed at most.
const KILLS_MAX: u32 = 6;
/// Actions that may run concurrently in a burst (numbers as in `Driver::step`'s weights).
const BURST_CHOICES: [usize; 9] = [1, 2, 2, 3, 4, 5, 6, 9, 12];
/// Retries a simulated human grants one blocked task.
const HUMAN_RETRIES_MAX: u32 = 2;
/// Worlds (per mille) whose repositories run the post-deploy monitor.
const MONITORED_WORLDS_PER_MILLE: u32 = 333;
/// Seeds (per mille) whose store runs at READ COMMITTED in a mixed sweep.
const READ_COMMITTED_SEEDS_PER_MILLE: u32 = 250;
/// Kills per seed at most in the middle of a health check or a degraded deploy's effect.
const KILLS_DURING_MAX: u32 = 4;
/// Polls at most of an outbox pass or a health check a kill may cut short.
const KILL_DURING_POLLS_MAX: u64 = 160;
/// Times per run the second instance's process may be stopped ([`World::freeze_peer`]).
const PEER_STOPS_MAX: u64 = 2;
/// Polls after a thaw before the thawed instance's loop runs (its executors carry on meanwhile).
const THAW_LOOP_POLLS_MAX: u64 = 12;

/// What a seed run is asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub tasks_min: u32,
    pub tasks_max: u32,
    pub steps_max: u32,
    /// Inject store and forge faults (per-seed rate).
    pub faults: bool,
    /// Count known engine bugs instead of failing on them.
    pub tolerate_known_bugs: bool,
    pub mutation: Mutation,
    pub skip_recover: bool,
    /// Print every step as it happens.
    pub echo: bool,
    /// Which seeds run the store at READ COMMITTED.
    pub isolation: IsolationMix,
}

/// Which seeds of a sweep run their store at which [`Isolation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationMix {
    /// Every seed serial (SQLite's semantics).
    Serial,
    /// Every seed READ COMMITTED (PostgreSQL's).
    ReadCommitted,
    /// A seeded quarter of the seeds READ COMMITTED, the rest serial.
    #[default]
    Mixed,
}

impl IsolationMix {
    /// Parses `serial`, `rc` or `mixed`.
    pub fn parse(name: &str) -> Option<IsolationMix> {
        match name.to_ascii_lowercase().as_str() {
            "serial" => Some(IsolationMix::Serial),
            "rc" | "read-committed" => Some(IsolationMix::ReadCommitted),
            "mixed" => Some(IsolationMix::Mixed),
            _ => None,
        }
    }

    /// The isolation of `seed` (a stream of its own: the other draws keep their seeds).
    pub fn for_seed(self, seed: u64) -> Isolation {
        match self {
            IsolationMix::Serial => Isolation::Serial,
            IsolationMix::ReadCommitted => Isolation::ReadCommitted,
            IsolationMix::Mixed if Rng::fork(seed, 0x15C0).chance(READ_COMMITTED_SEEDS_PER_MILLE) => {
                Isolation::ReadCommitted
            }
            IsolationMix::Mixed => Isolation::Serial,
        }
    }
}

impl Config {
    /// The default sweep: 3–6 tasks, up to 400 steps, faults on, known engine bugs counted.
    pub fn sweep(seed: u64) -> Self {
        Config {
            seed,
            tasks_min: 3,
            tasks_max: 6,
            steps_max: 400,
            faults: true,
            tolerate_known_bugs: true,
            mutation: Mutation::None,
            skip_recover: false,
            echo: false,
            isolation: IsolationMix::Mixed,
        }
    }
}

/// The post-deploy monitor of a world: off in most, on in a share of the seeds.
#[derive(Debug, Clone, Default)]
struct MonitorDraw {
    window_secs: u64,
    revert_repos: Vec<String>,
    revert_confirm: bool,
    unhealthy_per_mille: u32,
}

impl MonitorDraw {
    /// A third of the worlds watch their deploys for two to five checks (every 30 s, degraded
    /// after two failures in a row) and have unhealthy deploys; each repository reverts a degraded
    /// deploy in most of those, and some reverts wait for a human's confirmation. A stream of its
    /// own: the other draws keep their seeds.
    fn draw(seed: u64, repos: &[String]) -> Self {
        let mut rng = Rng::fork(seed, 0x3071);
        if !rng.chance(MONITORED_WORLDS_PER_MILLE) {
            return MonitorDraw::default();
        }
        MonitorDraw {
            window_secs: rng.range(60, 150),
            revert_repos: repos.iter().filter(|_| rng.chance(700)).cloned().collect(),
            revert_confirm: rng.chance(300),
            unhealthy_per_mille: rng.range(200, 600) as u32,
        }
    }
}

/// How a started job will end, chosen when it is claimed.
#[derive(Debug, Clone)]
struct Plan {
    script: Script,
    ready_at_ms: i64,
}

/// Per-seed knobs drawn from the seed.
#[derive(Debug, Clone)]
struct Params {
    tasks_target: u32,
    stop_weight: u32,
    kill_weight: u32,
    burst_weight: u32,
}

/// Runs one seed; the counts, or the first failure.
pub fn run_seed(config: &Config) -> Result<Totals, Failure> {
    let mut driver = Driver::new(config);
    driver.run()?;
    driver.drain()?;
    Ok(driver.totals())
}

/// Runs `count` seeds from `first`; stops at the first failure.
pub fn sweep(first: u64, count: u64, base: &Config) -> Result<Totals, Failure> {
    let mut totals = Totals::default();
    for seed in first..first.saturating_add(count) {
        let config = Config { seed, ..base.clone() };
        totals.add(&run_seed(&config)?);
    }
    Ok(totals)
}

struct Driver {
    config: Config,
    world: World,
    rng: Rng,
    params: Params,
    plans: BTreeMap<JobId, Plan>,
    late: Vec<Delivery>,
    delayed: Vec<SentInput>,
    sent: Vec<SentInput>,
    retries: BTreeMap<TaskId, u32>,
    keys: u64,
    create_attempts: u32,
    known_bugs: BTreeSet<Kind>,
    known_bug_seen: BTreeSet<String>,
    /// Violations found outside the per-step check (at a restart), reported at the next check.
    pending: Vec<Violation>,
    /// Jobs chosen to finish in the current step.
    finishing: BTreeSet<JobId>,
    kills_mid_effect: u64,
    kills_during: u32,
    /// When the frozen second instance runs again.
    thaw_at_ms: Option<i64>,
}

impl Driver {
    fn new(config: &Config) -> Self {
        let mut rng = Rng::fork(config.seed, 0xD21E);
        let repos: Vec<String> =
            if rng.chance(500) { vec!["alpha".into()] } else { vec!["alpha".into(), "beta".into()] };
        let running_max = rng.range(1, 3) as u32;
        let per_repo = rng.range(1, 2) as u32;
        let per_mille = if !config.faults || rng.chance(200) { 0 } else { rng.range(5, 40) as u32 };
        let faults = FaultRates { per_mille, reply_lost_per_mille: rng.range(200, 700) as u32 };
        // Half the worlds batch their merge queues (a stream of its own: the other draws keep
        // their seeds).
        let mut batch_rng = Rng::fork(config.seed, 0xBA7C);
        let merge_batch = if batch_rng.chance(500) { 1 } else { batch_rng.range(2, 4) as u32 };
        let mut limits = sim_limits(running_max, per_repo);
        if merge_batch > 1 {
            // A shallow train leaves changes waiting together, which is when batches form.
            limits.merge_queue_depth = batch_rng.range(1, 2) as u32;
        }
        let monitor = MonitorDraw::draw(config.seed, &repos);
        let isolation = config.isolation.for_seed(config.seed);
        let mut world = World::new(WorldConfig {
            seed: config.seed,
            repos,
            limits,
            faults,
            mutation: config.mutation,
            skip_recover: config.skip_recover,
            reuse_owner: false,
            merge_batch,
            monitor_window_secs: monitor.window_secs,
            revert_repos: monitor.revert_repos,
            revert_confirm: monitor.revert_confirm,
            unhealthy_per_mille: monitor.unhealthy_per_mille,
            isolation,
            // PostgreSQL is what several instances share: READ COMMITTED worlds run two.
            peer: isolation == Isolation::ReadCommitted,
        });
        world.arm_faults(per_mille > 0);
        world.echo = config.echo;
        let params = Params {
            tasks_target: rng.range(u64::from(config.tasks_min), u64::from(config.tasks_max)) as u32,
            stop_weight: rng.range(0, 1) as u32,
            kill_weight: rng.range(0, 3) as u32,
            burst_weight: rng.range(2, 6) as u32,
        };
        Driver {
            config: config.clone(),
            world,
            rng,
            params,
            plans: BTreeMap::new(),
            late: Vec::new(),
            delayed: Vec::new(),
            sent: Vec::new(),
            retries: BTreeMap::new(),
            keys: 0,
            create_attempts: 0,
            known_bugs: BTreeSet::new(),
            known_bug_seen: BTreeSet::new(),
            pending: Vec::new(),
            finishing: BTreeSet::new(),
            kills_mid_effect: 0,
            kills_during: 0,
            thaw_at_ms: None,
        }
    }

    fn fresh_key(&mut self) -> String {
        self.keys += 1;
        format!("sim-{}-{}", self.config.seed, self.keys)
    }

    fn check(&mut self) -> Result<(), Failure> {
        let mut found = std::mem::take(&mut self.pending);
        found.extend(self.world.check());
        self.judge(found)
    }

    /// Fails on any violation except the known engine bugs a tolerant sweep only counts.
    fn judge(&mut self, found: Vec<Violation>) -> Result<(), Failure> {
        let mut fatal = Vec::new();
        for violation in found {
            if violation.kind.is_known_engine_bug() && self.config.tolerate_known_bugs {
                self.known_bugs.insert(violation.kind);
                if self.known_bug_seen.insert(violation.message.clone()) {
                    self.world.note(format!("known engine bug (tolerated): {violation}"));
                }
            } else {
                fatal.push(violation);
            }
        }
        if fatal.is_empty() {
            Ok(())
        } else {
            let mut replay = format!("--seed {}", self.config.seed);
            let defaults = Config::sweep(0);
            if self.config.steps_max != defaults.steps_max {
                replay.push_str(&format!(" --steps {}", self.config.steps_max));
            }
            if (self.config.tasks_min, self.config.tasks_max) != (defaults.tasks_min, defaults.tasks_max) {
                replay.push_str(&format!(" --tasks {}-{}", self.config.tasks_min, self.config.tasks_max));
            }
            match self.config.isolation {
                IsolationMix::Mixed => {}
                IsolationMix::Serial => replay.push_str(" --isolation serial"),
                IsolationMix::ReadCommitted => replay.push_str(" --isolation rc"),
            }
            Err(Failure {
                seed: self.config.seed,
                replay,
                step: self.world.counters.steps,
                violations: fatal,
                trace: self.world.trace(),
            })
        }
    }

    fn tasks(&self) -> Vec<TaskRecord> {
        self.world.store.peek_tasks()
    }

    fn run(&mut self) -> Result<(), Failure> {
        for _ in 0..self.config.steps_max {
            self.world.counters.steps += 1;
            self.step();
            self.check()?;
        }
        Ok(())
    }

    /// Jobs this process runs whose scripted end time has come (hung jobs never come).
    fn ready_jobs(&self) -> Vec<JobId> {
        let now = self.world.clock.now_ms();
        self.world
            .running_jobs()
            .iter()
            .map(|r| r.id)
            .filter(|job| self.plans.get(job).is_none_or(|p| p.script != Script::Hang && p.ready_at_ms <= now))
            .collect()
    }

    /// Gives every job this process runs a plan (claimed or adopted), and forgets finished ones.
    fn sync_plans(&mut self) {
        let running: Vec<JobId> = self.world.running_jobs().iter().map(|r| r.id).collect();
        self.plans.retain(|job, _| running.contains(job));
        for job in running {
            if !self.plans.contains_key(&job) {
                let plan = self.plan();
                self.plans.insert(job, plan);
            }
        }
    }

    fn step(&mut self) {
        self.thaw_when_due();
        self.sync_plans();
        self.finishing.clear();
        let tasks = self.tasks();
        let waiting: Vec<TaskId> =
            tasks.iter().filter(|t| !t.state.is_terminal() && t.state.hold != Hold::None).map(|t| t.id).collect();
        let ready = self.ready_jobs();
        let monitoring = self.world.store.peek(|s| s.effect_pending("degraded"))
            || tasks.iter().any(|t| matches!(t.state.hold, Hold::Monitoring { .. }));
        let creating = self.create_attempts < self.params.tasks_target;
        let weights = [
            if creating { 6 } else { 0 },                               // 0 create
            8,                                                          // 1 claim
            if ready.is_empty() { 0 } else { 12 },                      // 2 finish
            if self.late.is_empty() { 0 } else { 2 },                   // 3 deliver a result again
            if waiting.is_empty() { 1 } else { 6 },                     // 4 human input
            if self.sent.is_empty() { 0 } else { 1 },                   // 5 replay an input
            if self.delayed.is_empty() { 0 } else { 2 },                // 6 delayed input arrives
            if tasks.is_empty() { 0 } else { self.params.stop_weight }, // 7 STOP
            5,                                                          // 8 time passes
            2,                                                          // 9 quota timer
            if self.world.counters.kills < u64::from(KILLS_MAX) { self.params.kill_weight } else { 0 }, // 10 kill
            self.params.burst_weight,                                   // 11 burst
            2,                                                          // 12 reaper
            1,                                                          // 13 reconciler
            2,                                                          // 14 outbox worker
            if ready.is_empty() { 0 } else { self.params.kill_weight }, // 15 kill a job's process group
            if tasks.len() < 2 { 0 } else { 1 },                        // 16 declare a dependency
            if self.frozen_repos().is_empty() { 0 } else { 1 },         // 17 a human unfreezes
            // 18 a kill in the middle of a health check or a degraded deploy's consequences (a
            // budget of its own: monitoring comes late in a run, after the other kills were spent)
            if monitoring && self.kills_during < KILLS_DURING_MAX { self.params.kill_weight * 2 } else { 0 },
            if self.may_freeze() { 1 } else { 0 }, // 19 the second instance's process stops
        ];
        match self.rng.weighted(&weights) {
            Some(8) => {
                let ms = self.time_step_ms();
                self.world.advance_clock(ms);
            }
            Some(10) => {
                self.plans.clear();
                self.late.clear();
                let zombies = self.world.kill_and_restart();
                self.pending.extend(zombies);
            }
            Some(19) => {
                // Stopped past the grace period: the first instance declares it dead and takes
                // its jobs over; it runs again later, its executors where they were.
                let grace_ms = self.world.settings().limits.instance_grace_secs as i64 * 1000;
                let frozen_ms =
                    grace_ms + self.rng.range(0, 120_000) as i64 - self.rng.range(0, grace_ms as u64 / 2) as i64;
                self.thaw_at_ms = Some(self.world.clock.now_ms() + frozen_ms);
                self.world.freeze_peer();
            }
            Some(18) => {
                self.plans.clear();
                self.late.clear();
                let zombies = self.kill_during_monitor(&tasks);
                self.pending.extend(zombies);
            }
            Some(11) => {
                let count = self.rng.range(2, 3);
                let mut actions = Vec::new();
                for _ in 0..count * 3 {
                    if actions.len() as u64 == count {
                        break;
                    }
                    let stop = self.params.stop_weight > 0 && self.rng.chance(60);
                    let choice = if stop { 7 } else { self.rng.pick(&BURST_CHOICES).copied().unwrap_or(1) };
                    if let Some(action) = self.action_for(choice, &tasks, &waiting, &ready) {
                        actions.push(action);
                    }
                }
                self.perform(actions);
            }
            // With a second instance, both claim loops claim at once (the claim lock is what
            // keeps the limits), the second one a few polls after the first. Now and then a human
            // answers just before: the answer's job may be enqueued between the two claims' reads,
            // so that they pick different jobs.
            Some(1) if self.world.config.peer => {
                let human =
                    if waiting.is_empty() || !self.rng.chance(750) { None } else { self.human_input(&tasks, &waiting) };
                let first = if human.is_some() { self.rng.range(3, 9) as u32 } else { 0 };
                let second = first + self.rng.range(1, 4) as u32;
                let claim = |yields, action| Action::After { yields, action: Box::new(action) };
                let mut actions: Vec<Action> = human.into_iter().map(Action::Submit).collect();
                actions.push(claim(first, Action::Claim));
                actions.push(claim(second, Action::OnPeer(Box::new(Action::Claim))));
                self.perform(actions);
            }
            // The reconciler's pass (with the merge queues' backstop) and the outbox worker run in
            // both instances at once, as each instance's engine loop runs them.
            Some(choice @ (13 | 14)) if self.world.config.peer => {
                if let Some(action) = self.action_for(choice, &tasks, &waiting, &ready) {
                    let yields = self.rng.below(4) as u32;
                    let peer = Action::After { yields, action: Box::new(Action::OnPeer(Box::new(action.clone()))) };
                    self.perform(vec![action, peer]);
                }
            }
            Some(choice) => {
                if let Some(action) = self.action_for(choice, &tasks, &waiting, &ready) {
                    self.perform(vec![action]);
                }
            }
            None => {}
        }
    }

    /// A second instance that is running, holding no lock of an open transaction (a process
    /// stopped inside one holds its locks until PostgreSQL ends the idle session, which the store
    /// sets it to do), and stops left this run.
    fn may_freeze(&self) -> bool {
        self.world.config.peer
            && !self.world.peer_is_frozen()
            && self.world.counters.peer_stops < PEER_STOPS_MAX
            && self.world.store.no_locks_held()
    }

    /// Thaws the stopped second instance once its time has come (a restart since started a new one).
    fn thaw_when_due(&mut self) {
        let Some(at) = self.thaw_at_ms else { return };
        if !self.world.peer_is_frozen() {
            self.thaw_at_ms = None;
        } else if self.world.clock.now_ms() >= at {
            self.thaw_at_ms = None;
            let polls = self.rng.below(THAW_LOOP_POLLS_MAX) as u32;
            self.world.thaw_peer(polls);
        }
    }

    fn time_step_ms(&mut self) -> i64 {
        let roll = self.rng.below(100);
        (if roll < 70 {
            self.rng.range(100, 5_000)
        } else if roll < 92 {
            self.rng.range(5_000, 60_000)
        } else {
            self.rng.range(60_000, 600_000)
        }) as i64
    }

    /// The engine action for choice `choice` (numbers as in `step`'s weights), if one applies.
    fn action_for(
        &mut self,
        choice: usize,
        tasks: &[TaskRecord],
        waiting: &[TaskId],
        ready: &[JobId],
    ) -> Option<Action> {
        match choice {
            0 => {
                self.create_attempts += 1;
                let repos = self.world.config.repos.clone();
                let repo = self.rng.pick(&repos)?.clone();
                // Tickets from a tracker carry its id; the same ticket may arrive again (a
                // duplicate while its task lives, a fresh start once it was cancelled).
                let external_ref = match self.rng.below(10) {
                    0..=2 => Some(format!("TRK-{}", self.create_attempts)),
                    3 => Some(format!("TRK-{}", self.rng.range(1, u64::from(self.create_attempts)))),
                    _ => None,
                };
                Some(Action::Create { repo, external_ref })
            }
            1 => Some(Action::Claim),
            2 => {
                let job = *self.rng.pick(ready)?;
                // One executor per job: a burst never finishes the same job twice.
                if !self.finishing.insert(job) {
                    return None;
                }
                let script = self.plans.remove(&job).map_or(Script::Pass, |p| p.script);
                Some(Action::Finish { job, script })
            }
            3 => {
                if self.late.is_empty() {
                    return None;
                }
                let index = self.rng.below(self.late.len() as u64) as usize;
                Some(Action::Deliver(self.late.swap_remove(index)))
            }
            4 => {
                let sent = self.human_input(tasks, waiting)?;
                if self.delayed.len() < DELAYED_INPUTS_MAX && self.rng.chance(200) {
                    self.world.note(format!("human {} on task {} delayed in transit", sent.input.kind(), sent.task));
                    self.delayed.push(sent);
                    return None;
                }
                Some(Action::Submit(sent))
            }
            5 => self.rng.pick(&self.sent).cloned().map(Action::Submit),
            6 => {
                if self.delayed.is_empty() {
                    return None;
                }
                let index = self.rng.below(self.delayed.len() as u64) as usize;
                Some(Action::Submit(self.delayed.swap_remove(index)))
            }
            7 => {
                let task = self.pick_stop_target(tasks)?;
                let key = Some(self.fresh_key());
                Some(Action::Submit(SentInput { task, input: Input::Stop, key }))
            }
            9 => Some(Action::QuotaTimer),
            12 => Some(Action::ReaperTick),
            13 => Some(Action::ReconcilerTick),
            14 => Some(Action::OutboxTick),
            15 => Some(Action::KillGroup { job: *self.rng.pick(ready)? }),
            17 => {
                let repos = self.frozen_repos();
                Some(Action::Unfreeze { repo: self.rng.pick(&repos)?.clone() })
            }
            16 => {
                // Usually a later task waiting for an earlier one; now and then any pair, and
                // rarely one written past the engine's cycle check (a race it cannot see).
                // Dependents are mostly tasks that have not got past their first stage; now and then
                // one parked in the merge queue (declared mid-way: its dependency's cancellation
                // blocks it, unless its change, or its batch's, is landing or has landed).
                let parked = self.rng.chance(200);
                let live: Vec<TaskId> = tasks
                    .iter()
                    .filter(|t| if parked { t.state.hold == Hold::MergeQueue } else { t.state.stage == "analysis" })
                    .map(|t| t.id)
                    .collect();
                let task = *self.rng.pick(&live)?;
                let earlier: Vec<TaskId> = tasks.iter().map(|t| t.id).filter(|id| *id < task).collect();
                let any: Vec<TaskId> = tasks.iter().map(|t| t.id).filter(|id| *id != task).collect();
                let on = if self.rng.chance(800) { *self.rng.pick(&earlier)? } else { *self.rng.pick(&any)? };
                Some(Action::Depend { task, on, unchecked: self.rng.chance(100) })
            }
            _ => None,
        }
    }

    /// STOP prefers the interesting moments: deploy stages and running jobs.
    fn pick_stop_target(&mut self, tasks: &[TaskRecord]) -> Option<TaskId> {
        let deploying: Vec<TaskId> = tasks
            .iter()
            .filter(|t| !t.state.is_terminal() && crate::check::LEASE_STAGES.contains(&t.state.stage.as_str()))
            .map(|t| t.id)
            .collect();
        if !deploying.is_empty() && self.rng.chance(600) {
            return self.rng.pick(&deploying).copied();
        }
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        self.rng.pick(&ids).copied()
    }

    /// What a human does about one task: the right answer for its hold, or now and then a wrong one.
    fn human_input(&mut self, tasks: &[TaskRecord], waiting: &[TaskId]) -> Option<SentInput> {
        let task = match self.rng.pick(waiting) {
            Some(id) if !self.rng.chance(150) => tasks.iter().find(|t| t.id == *id)?,
            _ => self.rng.pick(tasks)?,
        };
        let right = match &task.state.hold {
            Hold::AwaitingApproval => Some(Input::Approve),
            Hold::NeedsInput { .. } => Some(Input::Answer { text: "Use SQLite.".into() }),
            Hold::AwaitingConfirm => Some(Input::ConfirmDeploy),
            Hold::MergeQueue | Hold::Monitoring { .. } => None,
            Hold::PausedBudget { .. } | Hold::PausedQuota { .. } => Some(Input::Resume),
            // A degraded deploy is not retried: the human looks at the incident (redeploying the
            // same head is not what a retry is for).
            Hold::Blocked { reason } if reason.starts_with(baton_domain::DEPLOY_DEGRADED) => None,
            Hold::Blocked { .. } => {
                let retries = self.retries.entry(task.id).or_insert(0);
                if *retries < HUMAN_RETRIES_MAX {
                    *retries += 1;
                    Some(Input::Retry)
                } else {
                    None
                }
            }
            Hold::None => None,
        };
        let wrong = [Input::Approve, Input::ConfirmDeploy, Input::Resume, Input::Retry];
        let input = match right {
            Some(input) if !self.rng.chance(100) => input,
            _ => self.rng.pick(&wrong)?.clone(),
        };
        let key = if self.rng.chance(850) { Some(self.fresh_key()) } else { None };
        let sent = SentInput { task: task.id, input, key };
        if self.sent.len() < SENT_INPUTS_MAX {
            self.sent.push(sent.clone());
        }
        Some(sent)
    }

    fn plan(&mut self) -> Plan {
        let script = match self.rng.weighted(&[650, 100, 80, 60, 50, 30, 30]) {
            Some(1) => Script::GateFail,
            Some(2) => Script::Fail,
            Some(3) => Script::NeedsInput,
            Some(4) => Script::Quota { resets_in_ms: None },
            Some(5) => Script::Quota { resets_in_ms: Some(self.rng.range(1_000, 300_000) as i64) },
            Some(6) => Script::Hang,
            _ => Script::Pass,
        };
        let duration_ms =
            if self.rng.chance(100) { self.rng.range(60_000, 400_000) } else { self.rng.range(0, 20_000) } as i64;
        Plan { script, ready_at_ms: self.world.clock.now_ms() + duration_ms }
    }

    fn perform(&mut self, actions: Vec<Action>) {
        if actions.is_empty() {
            return;
        }
        for outcome in self.world.run(actions) {
            // Duplicates of results the engine received (a failed delivery is dropped by the
            // executor and left to the reaper, as in `executor::execute`).
            if let Outcome::Finished(_, Some(delivery), Ok(_)) | Outcome::Delivered(delivery, Ok(_)) = outcome
                && self.late.len() < LATE_DELIVERIES_MAX
                && self.rng.chance(150)
            {
                self.late.push(delivery);
            }
        }
    }

    /// Kills Baton in the middle of the degraded deploy's effect still to carry out, or else of the
    /// next health check (time moved to it) — preferring a deploy one failure from degraded, whose
    /// check sets the effect off inline.
    fn kill_during_monitor(&mut self, tasks: &[TaskRecord]) -> Vec<crate::check::Violation> {
        self.kills_during += 1;
        let degrading = self.world.store.peek(|s| s.effect_pending("degraded"));
        let monitored = |failing: bool| {
            tasks
                .iter()
                .filter_map(|t| match t.state.hold {
                    Hold::Monitoring { next_check_ms, failures, .. } if !failing || failures > 0 => Some(next_check_ms),
                    _ => None,
                })
                .min()
        };
        let action = match monitored(true).or_else(|| monitored(false)) {
            Some(at) if !degrading => {
                let now = self.world.clock.now_ms();
                if at > now {
                    self.world.advance_clock(at - now);
                }
                Action::QuotaTimer
            }
            _ => Action::OutboxTick,
        };
        let polls = self.rng.range(1, KILL_DURING_POLLS_MAX) as u32;
        let zombies = self.world.kill_during(action, polls);
        if self.world.store.peek(|s| s.effect_interrupted("degraded")) {
            self.kills_mid_effect += 1;
        }
        zombies
    }

    /// Repositories frozen now.
    fn frozen_repos(&self) -> Vec<String> {
        self.world
            .store
            .peek(|s| s.freezes().iter().filter(|f| f.unfrozen_at_ms.is_none()).map(|f| f.repo.clone()).collect())
    }

    /// In the drain, the human unfreezes a repository once its degraded deploys are dealt with:
    /// no degraded effect is left to carry out and every revert there is done, blocked or stopped.
    fn unfreeze_when_dealt_with(&mut self) {
        if self.world.store.peek(|s| s.effect_pending("degraded")) {
            return;
        }
        for repo in self.frozen_repos() {
            let open_revert = self.tasks().iter().any(|t| {
                t.repo == repo
                    && t.title.starts_with("Revert ")
                    && !t.state.is_terminal()
                    && !matches!(t.state.hold, Hold::Blocked { .. })
            });
            if !open_revert {
                self.world.act(Action::Unfreeze { repo });
            }
        }
    }

    /// No more faults, a restart, helpful humans and passing jobs, time advanced until nothing is
    /// left to do; then every task must be terminal or waiting for a human.
    fn drain(&mut self) -> Result<(), Failure> {
        self.world.arm_faults(false);
        self.world.note("drain: faults off, restart, humans answer everything".into());
        self.plans.clear();
        self.late.clear();
        let zombies = self.world.kill_and_restart();
        self.pending.extend(zombies);
        let delayed = std::mem::take(&mut self.delayed);
        for sent in delayed {
            self.world.act(Action::Submit(sent));
        }
        for _ in 0..DRAIN_ROUNDS_MAX {
            self.world.counters.steps += 1;
            let before = self.progress_mark();
            let running: Vec<JobId> = self.world.running_jobs().iter().map(|r| r.id).collect();
            for job in running {
                self.world.act(Action::Finish { job, script: Script::Pass });
            }
            for task in self.tasks() {
                let input = match task.state.hold {
                    Hold::AwaitingApproval => Input::Approve,
                    Hold::NeedsInput { .. } => Input::Answer { text: "Use SQLite.".into() },
                    Hold::AwaitingConfirm => Input::ConfirmDeploy,
                    Hold::PausedBudget { .. } => Input::Resume,
                    _ => continue,
                };
                if task.state.is_terminal() {
                    continue;
                }
                let key = Some(self.fresh_key());
                self.world.act(Action::Submit(SentInput { task: task.id, input, key }));
            }
            for _ in 0..CLAIMS_PER_PASS_MAX {
                if let Outcome::Claimed(Ok(None)) = self.world.act(Action::Claim) {
                    break;
                }
            }
            self.world.act(Action::QuotaTimer);
            self.world.act(Action::ReaperTick);
            self.world.act(Action::OutboxTick);
            self.world.act(Action::ReconcilerTick);
            self.check()?;
            if self.progress_mark() == before {
                self.unfreeze_when_dealt_with();
            }
            if self.progress_mark() == before {
                match self.next_wake_ms() {
                    Some(at) => {
                        let now = self.world.clock.now_ms();
                        self.world.advance_clock((at - now).max(1));
                    }
                    None => break,
                }
            }
        }
        let mut unsettled = self.world.checker.check_settled(&self.world.store);
        unsettled.extend(self.world.check_cleaned_up());
        unsettled.extend(crate::check::check_reverted(
            &self.world.store,
            &self.world.forge,
            &self.world.config.revert_repos,
        ));
        self.judge(unsettled)
    }

    /// What changes when the drain makes progress: commits, running jobs, outbox, open runs.
    fn progress_mark(&self) -> (usize, Vec<JobId>, usize) {
        let commits = self.world.store.commits().len();
        let running = self.world.running_jobs().iter().map(|r| r.id).collect();
        let pending = self.world.store.peek(|s| s.outbox.iter().filter(|(r, _)| r.done_at_ms.is_none()).count());
        (commits, running, pending)
    }

    /// When something becomes runnable next: a queued job's `available_at` or a quota resume time.
    fn next_wake_ms(&self) -> Option<i64> {
        let now = self.world.clock.now_ms();
        let mut next: Option<i64> = None;
        // A job held back by its task's dependencies wakes when they are done, not at its time.
        let held: std::collections::BTreeSet<TaskId> = self.world.store.peek(|s| {
            s.dependencies
                .keys()
                .filter(|(_, on)| s.tasks.get(on).is_none_or(|t| t.state.stage != baton_domain::pipeline::DONE))
                .map(|(task, _)| *task)
                .collect()
        });
        for task in self.tasks() {
            // A quota pause's end, or a monitored deploy's next health check: the engine's timer
            // resumes a pause whatever the task waits for next.
            if let Some(due) = task.state.hold.due_at_ms() {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
            if held.contains(&task.id) {
                continue;
            }
            for job in self.world.store.peek_jobs(task.id) {
                if job.status == JobStatus::Queued && task.state.job == Some(job.id) {
                    next = Some(next.map_or(job.available_at_ms, |n| n.min(job.available_at_ms)));
                }
            }
        }
        // An outbox effect waiting out its backoff, or the claim of a worker that died with it.
        let effects = self.world.store.peek(|s| s.next_effect_ms());
        if let Some(at) = effects {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        next.map(|at| at.max(now + 1))
    }

    fn totals(&self) -> Totals {
        let counters = self.world.counters;
        let tasks = self.tasks();
        let mut totals = Totals {
            seeds: 1,
            steps: counters.steps,
            kills: counters.kills,
            faults: self.world.store.fault_counts().total(),
            tasks: tasks.len() as u64,
            checks: self.world.checker.checks,
            merges: self.world.forge.merges(),
            batch_merges: self.world.forge.batch_merges(),
            done: tasks.iter().filter(|t| t.state.stage == "done").count() as u64,
            cancelled: tasks.iter().filter(|t| t.state.stage == "cancelled").count() as u64,
            blocked: tasks.iter().filter(|t| matches!(t.state.hold, Hold::Blocked { .. })).count() as u64,
            bursts: counters.bursts,
            results_applied: counters.results_applied,
            results_suppressed: counters.results_suppressed,
            duplicates: counters.inputs_duplicate,
            engine_errors: counters.engine_errors,
            monitored_seeds: u64::from(self.world.config.monitor_window_secs > 0),
            degraded: tasks.iter().filter(|t| t.title.starts_with("Incident: ")).count() as u64,
            freezes: self.world.store.peek(|s| s.freezes().len()) as u64,
            reverts_done: tasks.iter().filter(|t| t.title.starts_with("Revert ") && t.state.stage == "done").count()
                as u64,
            kills_mid_effect: self.kills_mid_effect,
            read_committed_seeds: u64::from(self.world.config.isolation == Isolation::ReadCommitted),
            peer_claims: counters.peer_claims,
            peer_stops: counters.peer_stops,
            lock_waits: self.world.store.lock_waits().0,
            lock_busy: self.world.store.lock_waits().1,
            ..Totals::default()
        };
        for kind in &self.known_bugs {
            totals.known_bugs.insert(format!("{kind:?}"), 1);
            totals.known_bug_seeds.insert(format!("{kind:?}"), self.config.seed);
        }
        totals
    }
}
