//! The per-repository merge queue's scheduler (SPEC §6.3): which queued change is tested on which
//! base, which one lands, which one is evicted. Event-driven: a pass runs after every transition
//! of a task in the repository, when a merge-gate job has built a change (the next one can build
//! on it), and as a backstop from the reconciler; waiting changes hold no job and write nothing.
//!
//! The train: the first change is tested on the default branch's head, the second on the first's
//! tested head, and so on up to the speculation depth (adaptive: halved on an eviction, one more
//! on every green result, between 1 and `merge_queue_depth_max`). A change lands when its tested
//! base is the default head (everything ahead has landed) and the repository's merge lease is
//! free; it is evicted when its test failed twice on a base whose changes ahead are all green, so
//! it is the culprit. A change whose base is no longer on the train (something ahead was evicted,
//! or the default branch moved) is tested again on the train's base: only what depended on the
//! culprit is re-tested.

use crate::engine::Engine;
use crate::features::Feature;
use baton_domain::{Event, Hold, TaskId};
use baton_store::{LeaseOutcome, QueueChange, QueueEntry, QueueExpect, QueueLanding, QueueState, TaskKey};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use tokio::sync::Notify;

/// The merge queues' in-memory part: the adaptive depth per repository and the repositories
/// whose queue changed since the engine loop last scheduled them.
#[derive(Debug)]
pub struct MergeQueues {
    depth_start: u32,
    depth_max: u32,
    depth: Mutex<HashMap<String, u32>>,
    kicked: Mutex<BTreeSet<String>>,
    wake: Notify,
    /// A pass is running in this process (it drains `kicked` before it stops).
    passing: tokio::sync::Mutex<()>,
}

impl MergeQueues {
    pub fn new(depth_start: u32, depth_max: u32) -> Self {
        let depth_max = depth_max.max(1);
        MergeQueues {
            depth_start: depth_start.clamp(1, depth_max),
            depth_max,
            depth: Mutex::new(HashMap::new()),
            kicked: Mutex::new(BTreeSet::new()),
            wake: Notify::new(),
            passing: tokio::sync::Mutex::new(()),
        }
    }

    /// The current speculation depth of `repo`.
    pub fn depth(&self, repo: &str) -> u32 {
        self.depth.lock().map(|d| d.get(repo).copied().unwrap_or(self.depth_start)).unwrap_or(self.depth_start)
    }

    /// Adapts the depth to a test result: one deeper on green, half as deep on an eviction.
    pub fn record(&self, repo: &str, green: bool) {
        if let Ok(mut depths) = self.depth.lock() {
            let depth = depths.entry(repo.to_string()).or_insert(self.depth_start);
            *depth = if green { (*depth + 1).min(self.depth_max) } else { (*depth / 2).max(1) };
        }
    }

    /// Asks for a pass over `repo`'s queue (the engine loop runs it at once).
    pub fn kick(&self, repo: &str) {
        if let Ok(mut kicked) = self.kicked.lock() {
            kicked.insert(repo.to_string());
        }
        self.wake.notify_one();
    }

    fn take_kicked(&self) -> Vec<String> {
        self.kicked.lock().map(|mut k| std::mem::take(&mut *k).into_iter().collect()).unwrap_or_default()
    }

    /// Resolves when a pass was asked for.
    pub async fn kicked(&self) {
        self.wake.notified().await
    }
}

/// Passes over every repository kicked since the last call (the engine loop).
pub async fn schedule_kicked(engine: &Engine) {
    run_kicked(engine).await;
}

/// Passes over every repository that has a queue (the reconciler's backstop: a wake lost in a
/// crash, or a default branch moved from outside).
pub async fn schedule_all(engine: &Engine) {
    schedule_where(engine, |_| true).await;
}

/// A pass over the queue of every repository with queued changes for which `wanted` holds.
pub async fn schedule_where(engine: &Engine, wanted: impl Fn(&str) -> bool) {
    let Ok(entries) = engine.store().queue_entries(None).await else {
        return;
    };
    for repo in entries.into_iter().map(|e| e.repo).collect::<BTreeSet<String>>() {
        if wanted(&repo) {
            engine.queues().kick(&repo);
        }
    }
    run_kicked(engine).await;
}

/// A pass over `repo`'s queue. At most one pass runs at a time in a process: a pass asked for
/// while another runs is left in the kicked set, which the running one drains before it stops.
/// Never fails: problems are logged and the next pass tries again.
pub async fn schedule(engine: &Engine, repo: &str) {
    engine.queues().kick(repo);
    run_kicked(engine).await;
}

async fn run_kicked(engine: &Engine) {
    let queues = engine.queues();
    let Ok(_guard) = queues.passing.try_lock() else {
        return;
    };
    // Bounded: a pass's own wakes kick the repository again; the engine loop takes the rest.
    for _ in 0..8 {
        let repos = queues.take_kicked();
        if repos.is_empty() {
            break;
        }
        for repo in repos {
            if let Err(error) = pass(engine, &repo).await {
                tracing::warn!(repo, "merge queue pass failed: {error}");
            }
        }
    }
}

/// The queue of `repo` in train order: the landing change, then the changes on the train (being
/// tested or judged) in the order they boarded it, then the waiting ones by priority and entry
/// time (aging), then the evicted ones.
pub fn train_order(entries: Vec<QueueEntry>) -> Vec<QueueEntry> {
    let rank = |e: &QueueEntry| match e.state {
        QueueState::Landing => 0,
        QueueState::Testing | QueueState::Built | QueueState::Green | QueueState::Red => 1,
        QueueState::Waiting => 2,
        QueueState::Evicted => 3,
    };
    let mut ranked: [Vec<QueueEntry>; 4] = Default::default();
    for entry in entries {
        ranked[rank(&entry)].push(entry);
    }
    for group in &mut ranked {
        group.sort_by_key(QueueEntry::order_key);
    }
    let [landing, on_train, waiting, evicted] = ranked;
    let mut ordered = landing;
    ordered.extend(boarding_order(on_train));
    ordered.extend(waiting);
    ordered.extend(evicted);
    ordered
}

/// The changes on the train (sorted by `order_key`) in the order they boarded it. A change put on
/// the train is built on the head of the one ahead of it, so it follows that change (or batch)
/// whatever their priorities and entry times: a waiting change with an older entry (sent back to
/// wait, or raised in priority) that boards behind newer ones stays behind them. Sorting it by
/// entry time instead put it ahead of the change it was built on, so every pass found the train
/// broken, and a batch split by it was formed again and broken again without end. A batch moves
/// as one unit, its last change last; a change whose base is no change's head on the train (built
/// on the default head, or on a base no longer on the train) starts a chain, in `order_key` order.
fn boarding_order(on_train: Vec<QueueEntry>) -> Vec<QueueEntry> {
    let mut units: Vec<Vec<QueueEntry>> = Vec::new();
    let mut batch_unit: HashMap<TaskId, usize> = HashMap::new();
    for entry in on_train {
        match entry.batch {
            Some(tail) => match batch_unit.get(&tail) {
                Some(&unit) => units[unit].push(entry),
                None => {
                    batch_unit.insert(tail, units.len());
                    units.push(vec![entry]);
                }
            },
            None => units.push(vec![entry]),
        }
    }
    for unit in &mut units {
        // A batch's last change closes it (its priority may have changed since it was formed).
        unit.sort_by_key(|e| e.batch == Some(e.task));
    }
    let head_of = |unit: &[QueueEntry]| unit.last().and_then(|e| e.head.clone());
    let mut by_head: HashMap<String, usize> = HashMap::new();
    for (k, unit) in units.iter().enumerate() {
        if let Some(head) = head_of(unit) {
            by_head.entry(head).or_insert(k);
        }
    }
    let mut roots = Vec::new();
    let mut followers: Vec<Vec<usize>> = vec![Vec::new(); units.len()];
    for (k, unit) in units.iter().enumerate() {
        let ahead = unit.first().and_then(|e| e.base.as_ref()).and_then(|base| by_head.get(base)).copied();
        match ahead {
            Some(ahead) if ahead != k => followers[ahead].push(k),
            _ => roots.push(k),
        }
    }
    let mut placed = vec![false; units.len()];
    let mut order = Vec::with_capacity(units.len());
    let mut stack: Vec<usize> = roots.into_iter().rev().collect();
    while let Some(k) = stack.pop() {
        if std::mem::replace(&mut placed[k], true) {
            continue;
        }
        order.push(k);
        stack.extend(followers[k].iter().rev().copied());
    }
    // Only a cycle of heads (which git cannot produce) leaves a unit unplaced: kept, in its order.
    order.extend((0..units.len()).filter(|&k| !placed[k]));
    let mut slots: Vec<Option<Vec<QueueEntry>>> = units.into_iter().map(Some).collect();
    order.into_iter().filter_map(|k| slots[k].take()).flatten().collect()
}

async fn pass(engine: &Engine, repo_name: &str) -> Result<(), crate::EngineError> {
    let store = engine.store();
    let entries = store.queue_entries(Some(repo_name)).await?;
    if entries.is_empty() {
        return Ok(());
    }
    let Some(repo) = engine.settings().repo(repo_name) else {
        return Ok(());
    };
    let Some(main) = engine.vcs().rev(&repo.path, &repo.default_ref()).await else {
        tracing::warn!(repo = repo_name, "merge queue: the default branch `{}` cannot be read", repo.default_branch);
        return Ok(());
    };
    let frozen = crate::monitor::frozen(engine, repo_name).await?.is_some();
    let entries = if frozen {
        // Frozen: only reverts may land. The other changes stay off the train, untouched, so no
        // green change that may not land holds a revert up behind it; after the unfreeze they are
        // tested again on the default head the reverts moved.
        let mut kept = Vec::with_capacity(entries.len());
        for entry in entries {
            if matches!(entry.state, QueueState::Landing | QueueState::Evicted)
                || crate::monitor::may_land(engine, repo_name, entry.task).await?
            {
                kept.push(entry);
            }
        }
        kept
    } else {
        entries
    };
    // A change that waits for a dependency (declared in a race with its reaching the merge gate,
    // which the declaration refuses otherwise) runs no job until the dependency is done: on the
    // train it would hold every change behind it, its dependency perhaps among them. It stays off,
    // untouched, and is tested again on the train's base once the dependency is done. A landing
    // change ships whatever its dependencies do; a batch's changes move with their batch.
    let entries = if engine.features().enabled(Feature::Dependencies, repo_name) {
        let mut waiting: BTreeSet<TaskId> =
            store.live_dependencies().await?.into_iter().filter(|d| !d.met()).map(|d| d.task_id).collect();
        // A change landing on its own (it took the merge lease; its deploy job merges) that waits
        // for one would hold the lease's queue forever, its dependency perhaps behind it: its
        // waits are withdrawn, and it ships. So are a revert's (in a frozen repository every
        // change left on the train is one): a frozen repository stays frozen until it lands, its
        // dependency may well wait for the very change it reverts, and after an unfreeze the
        // degraded change must still leave the default branch, not wait on a task that may never
        // be done (seed 360000686: a revert green in the queue waited for ever on a blocked task).
        let mut withdrawn = Vec::new();
        for entry in entries.iter().filter(|e| waiting.contains(&e.task)) {
            let why = match entry.state {
                QueueState::Landing if entry.batch.is_none() => {
                    "it is landing (it took the merge lease); a landing change ships whatever its dependencies do"
                }
                QueueState::Landing | QueueState::Evicted => continue,
                _ if frozen => "it reverts a degraded deploy in a frozen repository; a revert waits for nothing",
                _ if crate::monitor::is_revert(engine, entry.task).await? => {
                    "it reverts a degraded deploy; a revert waits for nothing"
                }
                _ => continue,
            };
            crate::dependencies::withdraw_waits(engine, entry.task, why).await?;
            withdrawn.push(entry.task);
        }
        // What waited no more takes its place on the train in this very pass.
        for task in withdrawn {
            waiting.remove(&task);
        }
        // A batch none of whose changes is landing, with a change that waits (declared in the same
        // race), would wait for ever: its last change's test covers them all, the claim holds the
        // waiting change's job back, and its dependency may be a change ahead of it in the very
        // batch (seed 240001970). The batch is broken up: its changes wait again, the waiting one
        // off the train until its dependency is done, the others batched anew without it. Its last
        // change goes first, the others only if it did (as when a batch's landing is given up).
        if !frozen && dissolve_waiting_batches(engine, &entries, &waiting).await? {
            engine.queues().kick(repo_name);
            return Ok(());
        }
        let mut entries = entries;
        entries.retain(|e| {
            e.batch.is_some()
                || matches!(e.state, QueueState::Landing | QueueState::Evicted)
                || !waiting.contains(&e.task)
        });
        entries
    } else {
        entries
    };
    let depth = engine.queues().depth(repo_name) as usize;
    let train = train_order(entries);
    let mut base = main.clone();
    let mut in_flight = 0usize;
    let mut ahead_green = true;
    let mut i = 0;
    while let Some(entry) = train.get(i) {
        let on_train = entry.base.as_deref() == Some(base.as_str());
        match entry.state {
            QueueState::Landing => {
                if on_train && let Some(head) = &entry.head {
                    base = head.clone();
                }
                if is_batch_member(entry) {
                    landed_member(engine, repo, &main, entry, &train).await?;
                } else {
                    rewake_parked(engine, entry, "it holds the merge lease: landing").await;
                }
                i += 1;
                continue;
            }
            QueueState::Evicted => {
                rewake_parked(engine, entry, "evicted from the merge queue").await;
                i += 1;
                continue;
            }
            _ => {}
        }
        if in_flight >= depth {
            break;
        }
        in_flight += 1;
        if let Some(tail) = entry.batch {
            // A batch moves as one: its changes are built one on another, the last one tests them all.
            let end = train[i..].iter().position(|e| e.batch != Some(tail)).map_or(train.len(), |n| i + n);
            match walk_batch(engine, &main, &base, &train[i..end], ahead_green).await? {
                Some((head, green)) => {
                    base = head;
                    ahead_green &= green;
                    i = end;
                    continue;
                }
                None => break,
            }
        }
        match (entry.state, on_train, entry.head.clone()) {
            (QueueState::Testing, true, Some(head)) => {
                // Built on the train: the next change can build on it while this one is tested.
                rewake_parked(engine, entry, "tested on the merge queue's train").await;
                ahead_green = false;
                base = head;
            }
            (QueueState::Testing, true, None) => {
                // Not built yet: the changes behind wait for its head.
                rewake_parked(engine, entry, "tested on the merge queue's train").await;
                break;
            }
            (QueueState::Green, true, Some(head)) => {
                if base == main {
                    land(engine, entry, &head).await?;
                }
                base = head;
            }
            (QueueState::Red, true, _) if ahead_green => {
                evict(engine, entry).await?;
                in_flight -= 1;
            }
            (QueueState::Red, true, _) => break,
            _ => {
                // Waiting, or tested on a base no longer on the train: test it on the train's base,
                // alone or with the changes behind it as one batch.
                let cap = repo.merge_batch.max(1).min(entry.split.unwrap_or(u32::MAX).max(1)) as usize;
                let batch: Vec<&QueueEntry> = train[i..]
                    .iter()
                    .take_while(|e| e.batch.is_none() && !matches!(e.state, QueueState::Landing | QueueState::Evicted))
                    .take(cap)
                    .collect();
                if batch.len() > 1 {
                    start_batch(engine, repo, &main, &base, &batch).await?;
                    break;
                }
                let position = in_flight;
                let change = QueueChange {
                    state: QueueState::Testing,
                    base: Some(base.clone()),
                    head: None,
                    fails: 0,
                    reason: None,
                    batch: None,
                    split: entry.split,
                };
                if store.queue_update(entry.task, &QueueExpect::of(entry), &change, engine.clock().now_ms()).await? {
                    let on = if base == main {
                        format!("{} {}", repo.default_branch, short(&base))
                    } else {
                        format!("{} (position {position}, on top of the changes ahead)", short(&base))
                    };
                    wake_parked(engine, entry, &format!("merge queue: tested on {on}")).await;
                }
                break;
            }
        }
        i += 1;
    }
    Ok(())
}

/// Sends every change of each batch that holds a change in `waiting` and none landing back to wait
/// (see [`pass`]); `true` when one was broken up.
async fn dissolve_waiting_batches(
    engine: &Engine,
    entries: &[QueueEntry],
    waiting: &BTreeSet<TaskId>,
) -> Result<bool, crate::EngineError> {
    let in_batch = |tail: TaskId| entries.iter().filter(move |e| e.batch == Some(tail));
    let stuck: BTreeSet<TaskId> = entries
        .iter()
        .filter(|e| waiting.contains(&e.task))
        .filter_map(|e| e.batch)
        .filter(|tail| in_batch(*tail).all(|e| !matches!(e.state, QueueState::Landing | QueueState::Evicted)))
        .collect();
    let store = engine.store();
    let now = engine.clock().now_ms();
    // The stage the timeline line is written at: the merge gate's, where the changes wait.
    let stage = entries.first().map_or_else(String::new, |first| {
        engine.pipeline_for(&first.repo).merge_gate().map(|s| s.name.clone()).unwrap_or_default()
    });
    for tail in &stuck {
        let names: Vec<&str> = in_batch(*tail).map(|e| e.work_item_id.as_str()).collect();
        if let Some(last) = entries.iter().find(|e| e.task == *tail && e.batch == Some(*tail))
            && !store.queue_update(last.task, &QueueExpect::of(last), &QueueChange::waiting(last.split), now).await?
        {
            continue;
        }
        for entry in in_batch(*tail).filter(|e| e.task != *tail) {
            store.queue_update(entry.task, &QueueExpect::of(entry), &QueueChange::waiting(entry.split), now).await?;
        }
        let message = format!(
            "merge queue: the batch of {} is broken up: a change of it waits for a dependency; the others are \
             tested again without it",
            names.join(", ")
        );
        for entry in in_batch(*tail) {
            let event = baton_store::NewEvent {
                task: entry.task,
                at_ms: now,
                kind: "unbatched".into(),
                stage: stage.clone(),
                message: message.clone(),
                detail: serde_json::json!({ "batch": names, "waiting": waiting.contains(&entry.task) }),
            };
            if let Err(error) = store.append_event(event).await {
                tracing::warn!(task = %entry.task, "recording the batch's break-up failed: {error}");
            }
        }
    }
    Ok(!stuck.is_empty())
}

/// The base `head` was built and tested on, when the entry records it for a change tested alone:
/// its head is then one commit whose parent is that base (a batch's commit is not: `None`).
pub fn tested_base(entry: &QueueEntry, head: &str) -> Option<String> {
    (entry.batch.is_none() && entry.head.as_deref() == Some(head)).then(|| entry.base.clone()).flatten()
}

/// The commit a landing change's `head` sits on, as the merge gate's landing check and the deploy
/// both need it: recorded with a change tested alone (no git asked), else git's parent of the
/// head — of the batch's commit in the repository for a batch's last change, of the worktree's
/// `HEAD` otherwise (no entry any more).
pub(crate) async fn landing_base(
    vcs: &dyn baton_runner::Vcs,
    repo: &std::path::Path,
    worktree: &std::path::Path,
    entry: Option<&QueueEntry>,
    head: &str,
    batch_tail: bool,
) -> Option<String> {
    if let Some(base) = entry.and_then(|entry| tested_base(entry, head)) {
        return Some(base);
    }
    if batch_tail { vcs.rev(repo, &format!("{head}^")).await } else { vcs.rev(worktree, "HEAD^").await }
}

/// Whether the entry is a change of a batch other than its last.
pub fn is_batch_member(entry: &QueueEntry) -> bool {
    entry.batch.is_some_and(|tail| tail != entry.task)
}

/// Puts `changes` (consecutive in the queue, at least two) on the train as one batch on `base`:
/// every one is built on the one ahead, and the last one's test covers them all. The first is
/// woken to build now; each next one gets its base when the one ahead is built.
async fn start_batch(
    engine: &Engine,
    repo: &crate::settings::RepoSettings,
    main: &str,
    base: &str,
    changes: &[&QueueEntry],
) -> Result<(), crate::EngineError> {
    let store = engine.store();
    let Some(tail) = changes.last().map(|e| e.task) else {
        return Ok(());
    };
    let mut assigned: Vec<&QueueEntry> = Vec::new();
    for (k, entry) in changes.iter().enumerate() {
        let change = QueueChange {
            state: QueueState::Testing,
            base: (k == 0).then(|| base.to_string()),
            head: None,
            fails: 0,
            reason: None,
            batch: Some(tail),
            split: entry.split,
        };
        if !store.queue_update(entry.task, &QueueExpect::of(entry), &change, engine.clock().now_ms()).await? {
            // Changed meanwhile: undo what was assigned; the next pass forms the batch again.
            for done in assigned {
                let expect = QueueExpect {
                    state: QueueState::Testing,
                    base: (done.task == changes[0].task).then(|| base.to_string()),
                };
                store
                    .queue_update(done.task, &expect, &QueueChange::waiting(done.split), engine.clock().now_ms())
                    .await?;
            }
            engine.queues().kick(&repo.name);
            return Ok(());
        }
        assigned.push(entry);
    }
    let names: Vec<&str> = changes.iter().map(|e| e.work_item_id.as_str()).collect();
    let on = if base == main { format!("{} {}", repo.default_branch, short(base)) } else { short(base).to_string() };
    wake_parked(
        engine,
        changes[0],
        &format!("merge queue: batch of {} ({}) tested as one on {on}", changes.len(), names.join(", ")),
    )
    .await;
    Ok(())
}

/// One batch on the train, ahead of it `base`. `Some((head, green))`: the batch is built (its last
/// change's head, which the next change builds on) and whether it is green; `None`: the pass stops
/// here (a change is being built, the batch is red or was broken up).
async fn walk_batch(
    engine: &Engine,
    main: &str,
    base: &str,
    unit: &[QueueEntry],
    ahead_green: bool,
) -> Result<Option<(String, bool)>, crate::EngineError> {
    let store = engine.store();
    let (Some(first), Some(last)) = (unit.first(), unit.last()) else {
        return Ok(None);
    };
    // A batch is at least two changes: a last change left alone in its batch (the others were
    // sent back to wait) has the whole batch's commit as its head, and waits again too.
    let complete = Some(last.task) == first.batch && unit.len() > 1;
    let mut cur = base.to_string();
    for entry in unit {
        let is_tail = entry.batch == Some(entry.task);
        match (entry.state, entry.base.as_deref(), entry.head.clone()) {
            _ if !complete => break,
            (QueueState::Testing, None, _) => {
                // The change ahead in the batch is built: this one builds on it.
                let change = QueueChange { base: Some(cur.clone()), ..QueueChange::from(entry) };
                if store.queue_update(entry.task, &QueueExpect::of(entry), &change, engine.clock().now_ms()).await? {
                    wake_parked(engine, entry, &format!("merge queue: built on {} in its batch", short(&cur))).await;
                }
                return Ok(None);
            }
            (_, Some(b), _) if b != cur => break,
            (QueueState::Testing, Some(_), None) => {
                // Being built. Woken again on every pass: a wake sent while its job was still
                // finishing (it entered the queue a moment ago) found nothing parked and was lost.
                rewake_parked(engine, entry, &format!("merge queue: built on {} in its batch", short(&cur))).await;
                return Ok(None);
            }
            (QueueState::Built | QueueState::Testing, Some(_), Some(head)) if !is_tail => cur = head,
            (QueueState::Testing, Some(_), Some(head)) => {
                rewake_parked(engine, entry, "merge queue: testing its batch").await;
                return Ok(Some((head, false)));
            }
            (QueueState::Green, Some(_), Some(head)) if is_tail => {
                if base == main {
                    land_batch(engine, unit, &head).await?;
                }
                return Ok(Some((head, true)));
            }
            (QueueState::Red, Some(_), _) if is_tail => {
                if ahead_green {
                    split(engine, unit, base).await?;
                }
                return Ok(None);
            }
            _ => break,
        }
    }
    // The batch no longer fits the train (its last change left, or something ahead moved, or a
    // change of it could not be built on the one ahead): its changes wait again and are tested
    // anew — a batch with a change that failed its build is formed again only up to that change,
    // so it is not formed, and failed, again and again.
    let red_member = unit.iter().position(|e| e.state == QueueState::Red && e.batch != Some(e.task));
    for (k, entry) in unit.iter().enumerate() {
        let split = match red_member {
            Some(red) if k == 0 && red > 0 => Some(entry.split.map_or(red as u32, |s| s.min(red as u32))),
            _ => entry.split,
        };
        store
            .queue_update(entry.task, &QueueExpect::of(entry), &QueueChange::waiting(split), engine.clock().now_ms())
            .await?;
    }
    engine.queues().kick(&first.repo);
    Ok(None)
}

/// A green batch on the default head: its last change takes the merge lease and lands the batch's
/// one commit; the other changes follow it as landed once the default branch holds that commit.
/// They are marked first (a crash then leaves them landing beside a tail that is not, which the
/// next pass sends back to wait); if the lease is busy they go back to built.
async fn land_batch(engine: &Engine, unit: &[QueueEntry], head: &str) -> Result<(), crate::EngineError> {
    let store = engine.store();
    let Some((tail, members)) = unit.split_last() else {
        return Ok(());
    };
    let mut marked = Vec::new();
    for member in members {
        let change =
            QueueChange { state: QueueState::Landing, head: Some(head.to_string()), ..QueueChange::from(member) };
        if !store.queue_update(member.task, &QueueExpect::of(member), &change, engine.clock().now_ms()).await? {
            break;
        }
        marked.push(member);
    }
    if marked.len() == members.len() && land(engine, tail, head).await? {
        return Ok(());
    }
    for member in marked {
        let expect = QueueExpect { state: QueueState::Landing, base: member.base.clone() };
        store.queue_update(member.task, &expect, &QueueChange::from(member), engine.clock().now_ms()).await?;
    }
    Ok(())
}

/// A landing change of a batch other than its last: woken once the default branch holds the
/// batch's commit (its own landing); sent back to wait when the batch's landing was given up.
async fn landed_member(
    engine: &Engine,
    repo: &crate::settings::RepoSettings,
    main: &str,
    entry: &QueueEntry,
    train: &[QueueEntry],
) -> Result<(), crate::EngineError> {
    let Some(head) = entry.head.as_deref() else {
        return Ok(());
    };
    if main == head || engine.vcs().is_ancestor(&repo.path, head, main).await {
        let why = format!("its batch landed as {}; a landed change waits for nothing before its deploy", short(head));
        crate::dependencies::withdraw_waits(engine, entry.task, &why).await?;
        rewake_parked(engine, entry, &format!("merge queue: its batch landed as {}", short(head))).await;
        return Ok(());
    }
    let tail_landing = train.iter().any(|e| Some(e.task) == entry.batch && e.state == QueueState::Landing);
    if tail_landing {
        return Ok(());
    }
    // The batch's landing was given up (a crash between marking its changes and the tail taking
    // the lease): the whole batch waits again, its last change too — its recorded head is the
    // batch's commit, which must never land without every change of the batch landing with it.
    // The last change goes first, and the others only if it did: a pass elsewhere may be landing
    // the batch right now (its changes marked, the tail about to take the lease), and then the
    // tail's entry is no longer as read here — sending only the others back would let the tail
    // land their changes in its commit while they wait to be tested again.
    let store = engine.store();
    let now = engine.clock().now_ms();
    let members: Vec<&QueueEntry> = train.iter().filter(|e| e.batch == entry.batch).collect();
    if let Some(tail) = members.iter().find(|e| Some(e.task) == entry.batch)
        && !store.queue_update(tail.task, &QueueExpect::of(tail), &QueueChange::waiting(tail.split), now).await?
    {
        engine.queues().kick(&repo.name);
        return Ok(());
    }
    for member in members.iter().filter(|e| Some(e.task) != entry.batch) {
        store.queue_update(member.task, &QueueExpect::of(member), &QueueChange::waiting(member.split), now).await?;
    }
    engine.queues().kick(&repo.name);
    Ok(())
}

/// A red batch whose changes ahead are green holds the culprit: it is split in two halves, each
/// tested as a batch of its own (the second on top of the first), until the culprit is a batch of
/// one and is evicted. Every step is recorded on each change's timeline.
async fn split(engine: &Engine, unit: &[QueueEntry], base: &str) -> Result<(), crate::EngineError> {
    let store = engine.store();
    let first_half = unit.len().div_ceil(2);
    let names: Vec<&str> = unit.iter().map(|e| e.work_item_id.as_str()).collect();
    let (left, right) = names.split_at(first_half);
    let why = unit.last().and_then(|e| e.reason.as_deref()).and_then(|r| r.lines().next()).unwrap_or("its test failed");
    let message = format!(
        "merge queue: the batch of {} ({}) is red on top of {}: {why}; split into {} and {} to find the culprit",
        unit.len(),
        names.join(", "),
        short(base),
        span(left),
        span(right)
    );
    for (k, entry) in unit.iter().enumerate() {
        let cap = if k < first_half { first_half } else { unit.len() - first_half } as u32;
        if !store
            .queue_update(
                entry.task,
                &QueueExpect::of(entry),
                &QueueChange::waiting(Some(cap)),
                engine.clock().now_ms(),
            )
            .await?
        {
            continue;
        }
        let task = store.task(&TaskKey::Id(entry.task)).await?;
        store
            .append_event(baton_store::NewEvent {
                task: entry.task,
                at_ms: engine.clock().now_ms(),
                kind: "bisect".into(),
                stage: task.map(|t| t.state.stage).unwrap_or_default(),
                message: message.clone(),
                detail: serde_json::json!({ "batch": names, "base": base, "halves": [left, right] }),
            })
            .await?;
    }
    engine.queues().record(&unit[0].repo, false);
    engine.queues().kick(&unit[0].repo);
    Ok(())
}

fn span(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [first, .., last] => format!("{first}..{last}"),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

/// The first green change sits on the default head: it takes the merge lease and its task is
/// woken to land.
async fn land(engine: &Engine, entry: &QueueEntry, head: &str) -> Result<bool, crate::EngineError> {
    // A frozen repository lands nothing but its revert; the change stays green and waits.
    if !crate::monitor::may_land(engine, &entry.repo, entry.task).await? {
        return Ok(false);
    }
    let landing = QueueLanding {
        task: entry.task,
        job: None,
        expect: QueueExpect { state: QueueState::Green, base: entry.base.clone() },
        change: QueueChange {
            state: QueueState::Landing,
            head: Some(head.to_string()),
            reason: None,
            ..QueueChange::from(entry)
        },
        lease: crate::gates::merge_lease_name(&entry.repo),
        ttl_ms: engine.settings().limits.lease_ttl_secs as i64 * 1000,
    };
    // The grant and the move to landing commit together: a change that moved meanwhile takes
    // nothing, so the lease is never held for a change that is not landing.
    match engine.store().queue_land(&landing, engine.clock().now_ms()).await? {
        Some(LeaseOutcome::Acquired { .. }) => {
            wake_parked(engine, entry, &format!("merge queue: {} is green on the default head; landing", short(head)))
                .await;
            Ok(true)
        }
        Some(LeaseOutcome::Busy { .. }) | None => Ok(false),
    }
}

/// A change red on a base whose changes ahead are all green is the culprit: its task is woken to
/// roll back with the reason; the changes behind it are tested again without it.
async fn evict(engine: &Engine, entry: &QueueEntry) -> Result<(), crate::EngineError> {
    let expect = QueueExpect { state: QueueState::Red, base: entry.base.clone() };
    let change = QueueChange { state: QueueState::Evicted, ..QueueChange::from(entry) };
    if engine.store().queue_update(entry.task, &expect, &change, engine.clock().now_ms()).await? {
        engine.queues().record(&entry.repo, false);
        wake_parked(engine, entry, "evicted from the merge queue: its test failed on top of green changes").await;
    }
    Ok(())
}

/// Wakes the entry's task when it is parked in the queue (a task running its merge-gate job
/// reads the entry itself when the test ends).
async fn wake_parked(engine: &Engine, entry: &QueueEntry, why: &str) {
    let Ok(Some(task)) = engine.store().task(&TaskKey::Id(entry.task)).await else {
        return;
    };
    if task.state.hold != Hold::MergeQueue || !is_queue_stage(engine, &task.repo, &task.state.stage) {
        return;
    }
    wake(engine, entry.task, why).await;
}

/// Wakes the task of `entry`, as this pass read it, if it is parked in the merge queue and its
/// entry is still as read: the pass wakes changes it finds in a state that needs their job (a
/// wake lost in a crash, or sent while the job was still finishing). A change whose own job moved
/// it on since the pass read the queue (built, tested green) is left alone — its move kicked a
/// new pass — instead of being run again for nothing.
async fn rewake_parked(engine: &Engine, entry: &QueueEntry, why: &str) {
    let Ok(Some(task)) = engine.store().task(&TaskKey::Id(entry.task)).await else {
        return;
    };
    if task.state.hold != Hold::MergeQueue || !is_queue_stage(engine, &task.repo, &task.state.stage) {
        return;
    }
    let Ok(Some(now)) = engine.store().queue_entry(entry.task).await else {
        return;
    };
    if (now.state, &now.base, &now.head, now.batch) != (entry.state, &entry.base, &entry.head, entry.batch) {
        return;
    }
    wake(engine, entry.task, why).await;
}

fn is_queue_stage(engine: &Engine, repo: &str, stage: &str) -> bool {
    engine.pipeline_for(repo).stage(stage).is_some_and(|s| s.is_merge_gate())
}

async fn wake(engine: &Engine, task: TaskId, why: &str) {
    let event = Event::QueueTurn { why: why.to_string() };
    if let Err(error) = Box::pin(engine.apply_event(task, &event, None, None)).await {
        tracing::warn!(task = %task, "waking a task in the merge queue failed: {error}");
    }
}

/// One repository's merge queue as humans see it (`/api/queue`, `baton status`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueView {
    pub repo: String,
    /// The speculation depth now (adaptive).
    pub depth: u32,
    /// The changes in train order: the landing one first.
    pub entries: Vec<QueueViewEntry>,
}

/// One change in a merge queue.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueViewEntry {
    /// 1 = next to land.
    pub position: u32,
    pub task: i64,
    pub work_item_id: String,
    /// `waiting`, `testing`, `green`, `red`, `landing` or `evicted`.
    pub state: String,
    /// What it is tested on: the default head, or the change ahead's tested head.
    pub base: Option<String>,
    pub head: Option<String>,
    pub priority: i64,
    pub entered_at_ms: i64,
    /// How long it has been in the queue.
    pub waited_ms: i64,
    pub reason: Option<String>,
}

/// Every repository's merge queue, from one indexed read.
pub async fn views(engine: &Engine) -> Result<Vec<QueueView>, crate::EngineError> {
    let now = engine.clock().now_ms();
    let mut by_repo: std::collections::BTreeMap<String, Vec<QueueEntry>> = std::collections::BTreeMap::new();
    for entry in engine.store().queue_entries(None).await? {
        by_repo.entry(entry.repo.clone()).or_default().push(entry);
    }
    Ok(by_repo
        .into_iter()
        .map(|(repo, entries)| QueueView {
            depth: engine.queues().depth(&repo),
            entries: train_order(entries)
                .into_iter()
                .enumerate()
                .map(|(i, e)| QueueViewEntry {
                    position: i as u32 + 1,
                    task: e.task.0,
                    work_item_id: e.work_item_id,
                    state: e.state.as_str().to_string(),
                    base: e.base,
                    head: e.head,
                    priority: e.priority,
                    entered_at_ms: e.entered_at_ms,
                    waited_ms: now.saturating_sub(e.entered_at_ms),
                    reason: e.reason,
                })
                .collect(),
            repo,
        })
        .collect())
}

/// Sets the merge-queue priority of a queued change (higher lands sooner; each point is worth ten
/// minutes of waiting), recorded on the task's timeline with who set it. An error names what to
/// do when the task is not in a merge queue.
pub async fn set_priority(
    engine: &Engine,
    key: &TaskKey,
    priority: i64,
    by: &str,
) -> Result<String, crate::EngineError> {
    let store = engine.store();
    let name = match key {
        TaskKey::Id(id) => id.to_string(),
        TaskKey::WorkItem(w) => w.clone(),
    };
    let task = store.task(key).await?.ok_or_else(|| crate::EngineError::NotFound(format!("task {name}")))?;
    if !store.set_queue_priority(task.id, priority).await? {
        return Err(crate::EngineError::Invalid(format!(
            "{} is not in a merge queue (it is at {}); a priority applies while a change waits there — \
             `baton status` lists the queues",
            task.work_item_id,
            task.state.display()
        )));
    }
    let note = format!("merge queue priority set to {priority} by {by}");
    store
        .append_event(baton_store::NewEvent {
            task: task.id,
            at_ms: engine.clock().now_ms(),
            kind: "queue_priority".into(),
            stage: task.state.stage.clone(),
            message: note.clone(),
            detail: serde_json::json!({ "priority": priority, "by": by }),
        })
        .await?;
    engine.queues().kick(&task.repo);
    schedule(engine, &task.repo).await;
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_store::{QUEUE_PRIORITY_STEP_MS, task_holder};

    fn entry(task: i64, state: QueueState, entered_at_ms: i64, priority: i64) -> QueueEntry {
        QueueEntry {
            task: TaskId(task),
            work_item_id: format!("T-{task}"),
            repo: "app".into(),
            priority,
            entered_at_ms,
            state,
            base: None,
            head: None,
            fails: 0,
            reason: None,
            updated_at_ms: entered_at_ms,
            batch: None,
            split: None,
        }
    }

    fn order(entries: Vec<QueueEntry>) -> Vec<i64> {
        train_order(entries).into_iter().map(|e| e.task.0).collect()
    }

    // Landing first, then the changes on the train in their order, then the waiting ones by
    // entry time pulled forward by priority: a priority point is worth ten minutes of waiting.
    #[test]
    fn train_order_keeps_the_train_and_ages_priorities() {
        let minute = 60_000;
        let entries = vec![
            entry(1, QueueState::Waiting, 0, 0),
            entry(2, QueueState::Testing, 50 * minute, 0),
            entry(3, QueueState::Waiting, 5 * minute, 1),
            entry(4, QueueState::Landing, 60 * minute, 0),
            entry(5, QueueState::Waiting, 30 * minute, 2),
            entry(6, QueueState::Green, 40 * minute, 0),
        ];
        // 3: 5 min - 10 min = -5 min; 1: 0; 5: 30 - 20 = 10 min.
        assert_eq!(order(entries), vec![4, 6, 2, 3, 1, 5]);
        // Aging: a priority-1 newcomer overtakes an old change only if it came within ten minutes.
        let old = entry(1, QueueState::Waiting, 0, 0);
        let late = entry(2, QueueState::Waiting, QUEUE_PRIORITY_STEP_MS + 1, 1);
        assert_eq!(order(vec![old.clone(), late]), vec![1, 2]);
        let soon = entry(3, QueueState::Waiting, QUEUE_PRIORITY_STEP_MS - 1, 1);
        assert_eq!(order(vec![old, soon]), vec![3, 1]);
    }

    fn on(mut entry: QueueEntry, base: Option<&str>, head: Option<&str>, batch: Option<i64>) -> QueueEntry {
        entry.base = base.map(str::to_string);
        entry.head = head.map(str::to_string);
        entry.batch = batch.map(TaskId);
        entry
    }

    // A change that boards behind others follows the change it is built on, whatever its entry
    // time: here the batch of 3 and 5 was formed behind 4 (3 and 5 were waiting while 4 boarded)
    // though 3 entered no later than 4. Sorted by entry time, 4 split the batch, the pass broke the
    // batch up and formed it again behind 4, and so on without end (simulation seed 275832).
    #[test]
    fn a_change_that_boarded_behind_another_stays_behind_it() {
        let entries = vec![
            on(entry(5, QueueState::Testing, 0, 0), None, None, Some(5)),
            on(entry(3, QueueState::Built, 0, 0), Some("c53"), Some("c60"), Some(5)),
            on(entry(4, QueueState::Green, 0, 0), Some("c19"), Some("c53"), None),
            on(entry(2, QueueState::Landing, 0, 0), Some("c9"), Some("c19"), None),
            entry(1, QueueState::Waiting, 0, 0),
        ];
        assert_eq!(order(entries), vec![2, 4, 3, 5, 1]);
        // A chain of changes tested alone, whatever their priorities; a change on a base no longer
        // on the train starts a chain of its own, in entry order.
        let minute = 60_000;
        let entries = vec![
            on(entry(7, QueueState::Testing, 3 * minute, 0), Some("h8"), None, None),
            on(entry(8, QueueState::Green, 2 * minute, 0), Some("h6"), Some("h8"), None),
            on(entry(6, QueueState::Green, minute, 0), Some("main"), Some("h6"), None),
            on(entry(9, QueueState::Testing, 0, 5), Some("h6"), None, None),
            on(entry(10, QueueState::Red, 4 * minute, 0), Some("old-main"), None, None),
        ];
        assert_eq!(order(entries), vec![6, 9, 8, 7, 10]);
    }

    /// A new task of `app`, entered in its merge queue (waiting).
    async fn queued_task(engine: &Engine, title: &str) -> TaskId {
        let task = crate::testing::task(engine, title).await;
        assert!(engine.store().queue_enter(task, "app", 0, engine.clock().now_ms()).await.expect("entered"));
        task
    }

    /// Moves `task`'s entry, as it stands, to `change`.
    async fn set(engine: &Engine, task: TaskId, change: QueueChange) -> QueueEntry {
        let store = engine.store();
        let now = engine.clock().now_ms();
        let read = store.queue_entry(task).await.expect("read").expect("an entry");
        assert!(store.queue_update(task, &QueueExpect::of(&read), &change, now).await.expect("updated"));
        store.queue_entry(task).await.expect("read").expect("an entry")
    }

    // A batch whose landing looks given up is sent back tail first, and its other changes only if
    // the tail's entry was still as read: here another pass marked the tail landing after this one
    // read the queue, and the batch's other changes must stay landing with it — sent back to
    // wait, they would land in the tail's commit while waiting to be tested again.
    #[tokio::test]
    async fn a_batch_given_up_goes_back_only_if_its_tail_was_not_taken_meanwhile() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let engine = crate::testing::engine_in(dir.path()).await;
        let repo = engine.settings().repo("app").expect("the repository").clone();
        let (a, b, tail) =
            (queued_task(&engine, "a").await, queued_task(&engine, "b").await, queued_task(&engine, "c").await);
        let in_batch = |state: QueueState| QueueChange {
            state,
            base: Some("base".into()),
            head: Some("batch-commit".into()),
            batch: Some(tail),
            ..QueueChange::waiting(None)
        };
        let train = vec![
            set(&engine, a, in_batch(QueueState::Landing)).await,
            set(&engine, b, in_batch(QueueState::Landing)).await,
            set(&engine, tail, in_batch(QueueState::Green)).await,
        ];
        // Another pass takes the tail to landing after this pass read the train.
        set(&engine, tail, in_batch(QueueState::Landing)).await;
        landed_member(&engine, &repo, "main-head", &train[0], &train).await.expect("a pass");
        for task in [a, b, tail] {
            let entry = engine.store().queue_entry(task).await.expect("read").expect("an entry");
            assert_eq!(entry.state, QueueState::Landing, "{task:?} was sent back while its batch lands");
        }
        // Read as it stands (the tail green again, nothing landing): the whole batch goes back.
        set(&engine, tail, in_batch(QueueState::Green)).await;
        let mut train = Vec::new();
        for task in [a, b, tail] {
            train.push(engine.store().queue_entry(task).await.expect("read").expect("an entry"));
        }
        landed_member(&engine, &repo, "main-head", &train[0], &train).await.expect("a pass");
        for task in [a, b, tail] {
            let entry = engine.store().queue_entry(task).await.expect("read").expect("an entry");
            assert_eq!(entry.state, QueueState::Waiting, "{task:?} was not sent back with its batch");
        }
    }

    // A pass that takes the lease for a green change which changed since the pass read it (built
    // on a new base meanwhile) gives the lease back: a lease kept for a change that is not landing
    // would stop every other merge of the repository until it expired.
    #[tokio::test]
    async fn land_gives_the_lease_back_when_the_change_moved_since_it_was_read() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let engine = crate::testing::engine_in(dir.path()).await;
        let store = engine.store();
        let task = queued_task(&engine, "one").await;
        let now = engine.clock().now_ms();
        let green_on = |base: &str| QueueChange {
            state: QueueState::Green,
            base: Some(base.into()),
            head: Some("h1".into()),
            ..QueueChange::waiting(None)
        };
        let read = store.queue_entry(task).await.expect("read").expect("an entry");
        assert!(store.queue_update(task, &QueueExpect::of(&read), &green_on("b1"), now).await.expect("updated"));
        let green = store.queue_entry(task).await.expect("read").expect("an entry");
        // Built again on another base after the pass read it: the pass's entry is stale.
        assert!(store.queue_update(task, &QueueExpect::of(&green), &green_on("b2"), now).await.expect("updated"));
        let lease = crate::gates::merge_lease_name("app");
        assert!(!land(&engine, &green, "h1").await.expect("a pass"), "a stale entry does not land");
        let other = task_holder(TaskId(task.0 + 1000));
        let taken = store.acquire_lease(&lease, &other, 60_000, now).await.expect("a lease read");
        assert!(matches!(taken, LeaseOutcome::Acquired { .. }), "the lease was kept: {taken:?}");
        store.release_lease(&lease, &other).await.expect("released");
        // The entry as it stands lands, and then the lease is its.
        let current = store.queue_entry(task).await.expect("read").expect("an entry");
        assert!(land(&engine, &current, "h1").await.expect("a pass"), "the current entry lands");
        let taken = store.acquire_lease(&lease, &other, 60_000, now).await.expect("a lease read");
        assert!(matches!(taken, LeaseOutcome::Busy { .. }), "the landing change holds the lease: {taken:?}");
        let landing = store.queue_entry(task).await.expect("read").expect("an entry");
        assert_eq!(landing.state, QueueState::Landing);
    }

    // One deeper per green result up to the maximum; half as deep per eviction, never below 1.
    #[test]
    fn depth_adapts_between_one_and_the_maximum() {
        let queues = MergeQueues::new(3, 5);
        assert_eq!(queues.depth("app"), 3);
        for _ in 0..4 {
            queues.record("app", true);
        }
        assert_eq!(queues.depth("app"), 5);
        assert_eq!(queues.depth("other"), 3, "each repository adapts on its own");
        queues.record("app", false);
        assert_eq!(queues.depth("app"), 2);
        queues.record("app", false);
        queues.record("app", false);
        assert_eq!(queues.depth("app"), 1);
        assert_eq!(MergeQueues::new(0, 0).depth("x"), 1, "a zero depth still tests one change");
    }
}
