//! Task dependencies and the serial gate, the engine's side (SPEC §6.4). The store's claim does
//! the waiting (a waiting job is skipped without taking a slot); here a dependency is declared —
//! refused when it would close a cycle or wait for a task that can never be done —, withdrawn, and
//! watched by the reconciler's backstop, which blocks every task on a cycle (two declarations
//! racing can still close one) and every task waiting for a cancelled one, with an alert. The
//! queue view asks [`waiting`] what each held task waits for.

use crate::EngineError;
use crate::engine::Engine;
use crate::features::Feature;
use baton_domain::pipeline::{CANCELLED, DONE};
use baton_domain::{Event, Hold, TaskId};
use baton_store::{DependencyRecord, OpenJob, TaskFilter, TaskKey, TaskRecord};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Tasks on cycles or with a cancelled dependency blocked per backstop pass at most.
const BLOCKS_PER_PASS_MAX: usize = 100;

/// The waiting graph: each live task to the tasks it still waits for (dependencies not done).
struct Graph {
    edges: BTreeMap<TaskId, BTreeSet<TaskId>>,
    names: BTreeMap<TaskId, String>,
}

impl Graph {
    fn from_records(records: &[DependencyRecord]) -> Self {
        let mut graph = Graph { edges: BTreeMap::new(), names: BTreeMap::new() };
        for record in records.iter().filter(|r| !r.met()) {
            graph.edges.entry(record.task_id).or_default().insert(record.depends_on);
            graph.names.insert(record.depends_on, record.depends_on_work_item.clone());
        }
        graph
    }

    /// The shortest chain of waits from `from` to `to` (both included), if there is one.
    fn path(&self, from: TaskId, to: TaskId) -> Option<Vec<TaskId>> {
        let mut came_from: BTreeMap<TaskId, TaskId> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(at) = queue.pop_front() {
            if at == to {
                let mut path = vec![to];
                let mut step = to;
                while step != from {
                    step = came_from[&step];
                    path.push(step);
                }
                path.reverse();
                return Some(path);
            }
            for next in self.edges.get(&at).into_iter().flatten() {
                if *next != from && !came_from.contains_key(next) {
                    came_from.insert(*next, at);
                    queue.push_back(*next);
                }
            }
        }
        None
    }

    /// The cycle through `task`, as a closed chain `task → … → task`, if it is on one.
    fn cycle_through(&self, task: TaskId) -> Option<Vec<TaskId>> {
        self.edges.get(&task)?.iter().find_map(|next| {
            let mut chain = self.path(*next, task)?;
            chain.insert(0, task);
            Some(chain)
        })
    }

    fn name(&self, task: TaskId) -> String {
        self.names.get(&task).cloned().unwrap_or_else(|| format!("task {task}"))
    }

    fn render(&self, chain: &[TaskId]) -> String {
        chain.iter().map(|t| self.name(*t)).collect::<Vec<_>>().join(" → ")
    }
}

/// A dependency as declared: the two tasks, and whether it is new.
#[derive(Debug, Clone)]
pub struct Declared {
    pub task: TaskRecord,
    pub depends_on: TaskRecord,
    pub created: bool,
}

impl Engine {
    async fn task_or_not_found(&self, key: &TaskKey) -> Result<TaskRecord, EngineError> {
        self.store().task(key).await?.ok_or_else(|| EngineError::NotFound(format!("task {key}")))
    }

    /// Declares that `task` waits for `depends_on` to be done. Refused (`Refused`, a 409) when it
    /// would close a cycle — the message names it — or when `depends_on` was cancelled; `Invalid`
    /// for a task depending on itself or one that already ended.
    pub async fn declare_dependency(
        &self,
        task: &TaskKey,
        depends_on: &TaskKey,
        by: &str,
    ) -> Result<Declared, EngineError> {
        let dependent = self.task_or_not_found(task).await?;
        let dependency = self.task_or_not_found(depends_on).await?;
        if dependent.id == dependency.id {
            return Err(EngineError::Invalid(format!(
                "{} cannot depend on itself; name another task after `--on`",
                dependent.work_item_id
            )));
        }
        if dependent.state.is_terminal() {
            return Err(EngineError::Invalid(format!(
                "{} is {}: an ended task waits for nothing",
                dependent.work_item_id, dependent.state.stage
            )));
        }
        if dependency.state.stage == CANCELLED {
            return Err(EngineError::Refused(format!(
                "{} was cancelled and will never be done; {} cannot wait for it",
                dependency.work_item_id, dependent.work_item_id
            )));
        }
        if let Some(gate) = self.merge_gate_reached(&dependent) {
            // Its place in the merge queue would hold every change behind it for as long as it waits.
            return Err(EngineError::Refused(format!(
                "{} already reached the merge gate ({gate}); a dependency holds a task only before it \
                 enters the merge queue — stop it and file it again, or let it land",
                dependent.work_item_id
            )));
        }
        let mut graph = Graph::from_records(&self.store().live_dependencies().await?);
        graph.names.insert(dependent.id, dependent.work_item_id.clone());
        graph.names.insert(dependency.id, dependency.work_item_id.clone());
        if let Some(back) = graph.path(dependency.id, dependent.id) {
            let mut cycle = vec![dependent.id];
            cycle.extend(back);
            return Err(EngineError::Refused(format!(
                "{} cannot depend on {}: that closes the dependency cycle {}",
                dependent.work_item_id,
                dependency.work_item_id,
                graph.render(&cycle)
            )));
        }
        let now = self.clock().now_ms();
        let created = self.store().add_dependency(dependent.id, dependency.id, by, now).await?;
        if created {
            tracing::info!(task = %dependent.work_item_id, on = %dependency.work_item_id, %by, "dependency declared");
        }
        Ok(Declared { task: dependent, depends_on: dependency, created })
    }

    /// The merge-gate stage `task` is at or past in its repository's pipeline, if any.
    fn merge_gate_reached(&self, task: &TaskRecord) -> Option<String> {
        let pipeline = self.pipeline_for(&task.repo);
        let at = pipeline.stages.iter().position(|s| s.name == task.state.stage)?;
        pipeline.stages[..=at].iter().find(|s| s.is_merge_gate()).map(|s| s.name.clone())
    }

    /// The ids of the tasks a new task is to wait for: each must exist and not be cancelled (a new
    /// task closes no cycle: nothing waits for it yet). Duplicates count once.
    pub(crate) async fn dependencies_for_new_task(&self, keys: &[TaskKey]) -> Result<Vec<TaskId>, EngineError> {
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            let dependency = self.task_or_not_found(key).await?;
            if dependency.state.stage == CANCELLED {
                return Err(EngineError::Refused(format!(
                    "{} was cancelled and will never be done; a new task cannot wait for it",
                    dependency.work_item_id
                )));
            }
            if !ids.contains(&dependency.id) {
                ids.push(dependency.id);
            }
        }
        Ok(ids)
    }

    /// Withdraws a dependency; `false` when there was none. The task's next claim no longer waits
    /// for it (a task blocked for it stays blocked until a human retries it).
    pub async fn withdraw_dependency(&self, task: &TaskKey, depends_on: &TaskKey) -> Result<bool, EngineError> {
        let dependent = self.task_or_not_found(task).await?;
        let dependency = self.task_or_not_found(depends_on).await?;
        let removed = self.store().remove_dependency(dependent.id, dependency.id).await?;
        if removed {
            self.wake();
        }
        Ok(removed)
    }
}

/// The reconciler's dependency backstop: every task on a cycle of waits, and every task waiting
/// for a cancelled task, is blocked with a reason naming the tasks and an alert. Tasks already
/// blocked and repositories with the switch off are left alone. Never fails: problems are logged.
pub async fn backstop(engine: &Engine) -> u32 {
    let features = engine.features();
    if features.off_everywhere(Feature::Dependencies) {
        return 0;
    }
    let records = match engine.store().live_dependencies().await {
        Ok(records) => records,
        Err(error) => {
            tracing::warn!("dependency backstop: cannot read the dependencies: {error}");
            return 0;
        }
    };
    let graph = Graph::from_records(&records);
    let mut problems: BTreeMap<TaskId, String> = BTreeMap::new();
    for task in graph.edges.keys() {
        if let Some(cycle) = graph.cycle_through(*task) {
            problems.insert(
                *task,
                format!(
                    "dependency cycle {}: none of these tasks can start; withdraw one dependency \
                     (`baton task undepend`), then `baton task retry` the blocked tasks",
                    graph.render(&cycle)
                ),
            );
        }
    }
    for record in records.iter().filter(|r| r.depends_on_stage == CANCELLED) {
        problems.entry(record.task_id).or_insert_with(|| {
            format!(
                "waits for {}, which was cancelled and will never be done; withdraw the dependency \
                 (`baton task undepend {} --on {}`), then `baton task retry`",
                record.depends_on_work_item, record.task_id, record.depends_on_work_item
            )
        });
    }
    let mut blocked = 0;
    for (task, reason) in problems.into_iter().take(BLOCKS_PER_PASS_MAX) {
        let Ok(Some(record)) = engine.store().task(&TaskKey::Id(task)).await else {
            continue;
        };
        if record.state.is_terminal()
            || matches!(record.state.hold, Hold::Blocked { .. })
            || !features.enabled(Feature::Dependencies, &record.repo)
        {
            continue;
        }
        match ships_regardless(engine, &record).await {
            Ok(None) => {}
            Ok(Some(why)) => {
                let why = format!("{why}instead of blocking it: {reason}");
                withdraw_from_shipping(engine, &record, &records, &why).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(task = %record.work_item_id, "dependency backstop: {error}");
                continue;
            }
        }
        match engine.apply_event(task, &Event::DependencyBlocked { reason }, None, None).await {
            Ok(_) => {
                blocked += 1;
                tracing::warn!(task = %record.work_item_id, "dependency backstop blocked a task");
            }
            Err(error) => tracing::warn!(task = %record.work_item_id, "dependency backstop failed: {error}"),
        }
    }
    blocked
}

/// Why `task` ships whatever its dependencies do, as the start of a sentence, or `None` when it
/// does not. A change that is landing (its merge, or its batch's, under way) or has landed: a
/// block now would leave it on the default branch while the task waits for a human (the store
/// refuses the block of a landing batch's change anyway); its next job (the claim waits for
/// dependencies) carries it on to its deploy once they are withdrawn. And the revert of a
/// degraded deploy: the degraded change must leave the default branch, and a revert waits for
/// nothing (the queue pass withdraws its waits too).
async fn ships_regardless(
    engine: &Engine,
    task: &baton_store::TaskRecord,
) -> Result<Option<&'static str>, crate::EngineError> {
    if engine.stop_context(task).await? != (false, false) {
        return Ok(Some(""));
    }
    if crate::monitor::is_revert(engine, task.id).await? {
        return Ok(Some("it reverts a degraded deploy; a revert waits for nothing, "));
    }
    Ok(None)
}

/// Withdraws every dependency of `task` not done — the one the backstop found can never be met (a
/// cancelled task, a cycle of waits) and any other — because its change is landing or has landed
/// and no wait can hold it back any more, with a line on its timeline naming them and why.
async fn withdraw_from_shipping(
    engine: &Engine,
    task: &baton_store::TaskRecord,
    records: &[DependencyRecord],
    reason: &str,
) {
    let mut withdrawn = Vec::new();
    for record in records.iter().filter(|r| r.task_id == task.id && !r.met()) {
        match engine.store().remove_dependency(task.id, record.depends_on).await {
            Ok(true) => withdrawn.push(record.depends_on_work_item.clone()),
            Ok(false) => {}
            Err(error) => tracing::warn!(task = %task.work_item_id, "dependency backstop: withdrawing: {error}"),
        }
    }
    if withdrawn.is_empty() {
        return;
    }
    let message = format!("its wait for {} was withdrawn: {reason}", withdrawn.join(", "));
    let event = baton_store::NewEvent {
        task: task.id,
        at_ms: engine.clock().now_ms(),
        kind: "dependency_withdrawn".into(),
        stage: task.state.stage.clone(),
        message,
        detail: serde_json::json!({ "withdrawn": withdrawn, "by": "dependency backstop" }),
    };
    if let Err(error) = engine.store().append_event(event).await {
        tracing::warn!(task = %task.work_item_id, "dependency backstop: recording the withdrawal: {error}");
    }
    tracing::warn!(task = %task.work_item_id, "dependency backstop withdrew the dependencies of a shipping change");
    engine.wake();
}

/// Withdraws every dependency not done of a change that is landing (it took the merge lease), of
/// a change of a batch that has just landed, before it is woken to carry on towards its deploy, or
/// of the revert a frozen repository waits for (the queue pass calls it for each):
/// the claim holds a job back while its task waits for a dependency, and a landing change held
/// there keeps its queue entry landing, so every change behind it (its dependency too, perhaps)
/// waits for its deploy. Such a wait can only have been declared in a race with the change's
/// arrival at the merge gate (`baton task depend` refuses it after), and a landing change ships
/// whatever its dependencies do. A line on the timeline names what was withdrawn, and `why`.
/// Nothing happens where the `dependencies` switch is off.
pub(crate) async fn withdraw_waits(engine: &Engine, task: TaskId, why: &str) -> Result<(), EngineError> {
    if engine.features().off_everywhere(Feature::Dependencies) {
        return Ok(());
    }
    let store = engine.store();
    let records = store.dependencies(task).await?;
    if records.iter().all(DependencyRecord::met) {
        return Ok(());
    }
    let Some(record) = store.task(&TaskKey::Id(task)).await? else { return Ok(()) };
    if !engine.features().enabled(Feature::Dependencies, &record.repo) {
        return Ok(());
    }
    withdraw_from_shipping(engine, &record, &records, why).await;
    Ok(())
}

/// A task whose next job the claim holds back, and for what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waiting {
    pub task: i64,
    pub work_item_id: String,
    pub repo: String,
    pub stage: String,
    /// `dependencies` (tasks not done yet), `serial` (an earlier unfinished task of the repository)
    /// or `frozen` (a serial repository's first stage while the repository is frozen).
    pub gate: String,
    /// The work items it waits for.
    pub waits_for: Vec<String>,
}

/// What each queued job in `open` waits for: unmet dependencies, or in a serial repository the
/// earlier unfinished tasks ahead of a first stage (the same rules as the store's claim, with the
/// switches). Reads the live dependencies and each serial repository's live tasks.
pub async fn waiting(engine: &Engine, open: &[OpenJob]) -> Result<Vec<Waiting>, EngineError> {
    let claim = engine.claim_request();
    let queued: Vec<&OpenJob> = open.iter().filter(|o| o.job.status == baton_store::JobStatus::Queued).collect();
    let mut unmet: BTreeMap<TaskId, Vec<String>> = BTreeMap::new();
    if !engine.features().off_everywhere(Feature::Dependencies) {
        for record in engine.store().live_dependencies().await? {
            if record.depends_on_stage != DONE {
                unmet.entry(record.task_id).or_default().push(record.depends_on_work_item);
            }
        }
    }
    let mut ahead: BTreeMap<String, Vec<(TaskId, String)>> = BTreeMap::new();
    for repo in &claim.serial_repos {
        let filter = TaskFilter { active_only: true, repo: Some(repo.clone()), ..TaskFilter::default() };
        let mut live: Vec<(TaskId, String)> =
            engine.store().list_tasks(&filter).await?.into_iter().map(|t| (t.id, t.work_item_id)).collect();
        live.sort();
        ahead.insert(repo.clone(), live);
    }
    // A serial repository's first stages also wait while it is frozen.
    let frozen: Vec<baton_store::RepoFreeze> = if claim.serial_repos.is_empty() {
        Vec::new()
    } else {
        engine.store().repo_freezes().await?.into_iter().filter(|f| claim.serial_repos.contains(&f.repo)).collect()
    };
    let mut waiting = Vec::new();
    for open in queued {
        let job = &open.job;
        let entry = |gate: &str, waits_for: Vec<String>| Waiting {
            task: job.task_id.0,
            work_item_id: open.work_item_id.clone(),
            repo: job.repo.clone(),
            stage: job.stage.clone(),
            gate: gate.to_string(),
            waits_for,
        };
        if let Some(on) = unmet.get(&job.task_id).filter(|_| !claim.dependency_free_repos.contains(&job.repo)) {
            waiting.push(entry("dependencies", on.clone()));
        } else if job.rank <= 1
            && let Some(freeze) = frozen.iter().find(|f| f.repo == job.repo)
        {
            let by = freeze.task.map_or_else(|| freeze.frozen_by.clone(), |t| format!("task {}", t.0));
            waiting.push(entry("frozen", vec![format!("unfreeze (frozen by {by}: {})", freeze.reason)]));
        } else if job.rank <= 1
            && let Some(live) = ahead.get(&job.repo)
        {
            let earlier: Vec<String> =
                live.iter().filter(|(id, _)| *id < job.task_id).map(|(_, w)| w.clone()).collect();
            if !earlier.is_empty() {
                waiting.push(entry("serial", earlier));
            }
        }
    }
    Ok(waiting)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(task: i64, on: i64, stage: &str) -> DependencyRecord {
        DependencyRecord {
            task_id: TaskId(task),
            depends_on: TaskId(on),
            depends_on_work_item: format!("T-{on}"),
            depends_on_stage: stage.into(),
            created_at_ms: 0,
            created_by: "ann".into(),
        }
    }

    // A chain of waits is found with its tasks in order; a done dependency ends the wait, so a
    // "cycle" through it is none.
    #[test]
    fn graph_finds_cycles_through_waiting_tasks_only() {
        let graph = Graph::from_records(&[record(1, 2, "analysis"), record(2, 3, "analysis"), record(3, 1, "review")]);
        assert_eq!(graph.render(&graph.cycle_through(TaskId(1)).unwrap()), "T-1 → T-2 → T-3 → T-1");
        assert!(graph.cycle_through(TaskId(2)).is_some());
        let broken = Graph::from_records(&[record(1, 2, "analysis"), record(2, 1, "done")]);
        assert!(broken.cycle_through(TaskId(1)).is_none());
        assert_eq!(broken.path(TaskId(1), TaskId(2)), Some(vec![TaskId(1), TaskId(2)]));
        assert_eq!(broken.path(TaskId(2), TaskId(1)), None);
    }
}
