//! READ COMMITTED transactions for [`super::SimStore`] in [`Isolation::ReadCommitted`]: a call
//! that the PostgreSQL store runs as several statements becomes a [`Txn`] — a sequence of steps
//! with a yield to the seeded scheduler between them, named locks held to its end, and writes
//! applied all at once when it commits.
//!
//! The model, statement by statement as PostgreSQL runs them:
//!
//! - a step reads the newest committed state (the shared `State`): other calls' writes are
//!   invisible until they commit, and every committed write is visible to the next step;
//! - a call's writes are computed and applied in its commit, under the store's mutex, so others
//!   see all of them or none; a fault before the commit, or a Baton killed in the middle (the
//!   future dropped), discards them and releases every lock ([`Txn`]'s `Drop`);
//! - a row a statement writes is locked ([`LockKey`] `Task`, `Job`, `Lease`, ...) until the end of
//!   the transaction: a second writer waits (a yield loop), then re-evaluates its `WHERE` against
//!   the newest committed row — PostgreSQL's re-check after a row lock wait — so a version
//!   compare-and-set loses and a status guard fails;
//! - transaction-scoped advisory locks (the claim lock, one per lease name, the events lock) are
//!   the same named locks; a wait that would close a cycle fails the call with
//!   [`StoreError::Busy`], as PostgreSQL's deadlock detector would, and so does a wait longer than
//!   [`LOCK_WAIT_POLLS_MAX`] polls (a bound on the simulation, not a PostgreSQL setting). A freed
//!   lock goes to its first waiter, so no waiter starves.
//!
//! Reads of a call's own uncommitted writes happen inside one step (the claim counts the jobs it
//! picked, the advance's commit reads the task it updates), so no overlay of pending rows is kept.
//!
//! [`Isolation::ReadCommitted`]: super::Isolation::ReadCommitted

use super::SimStore;
use crate::sched::yield_once;
use baton_domain::{JobId, TaskId};
use baton_store::{StoreError, StoreResult};

/// Polls a lock wait may last before it fails as PostgreSQL's lock timeout would.
pub(crate) const LOCK_WAIT_POLLS_MAX: u32 = 20_000;
/// Waits-for edges followed when looking for a deadlock (more open calls than this never exist).
const WAIT_CHAIN_MAX: usize = 64;

/// A named lock: a row a statement wrote, or a transaction-scoped advisory lock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LockKey {
    /// `CLAIM_LOCK`: claims take turns, so the running counts they check are exact.
    Claim,
    /// `EVENTS_LOCK`: taken just before an event insert.
    Events,
    /// The advisory lock of one lease name (`hashtextextended('baton-lease:' || name)`).
    LeaseName(String),
    Task(TaskId),
    Job(JobId),
    Lease(String),
    LeaseToken(String),
    /// An inbox row by dedup key (the unique index a concurrent insert waits on).
    Inbox(String),
    /// A work-item counter row `(repo, prefix)`.
    Counter(String, String),
}

/// The locks of every open transaction, and what each waits for (for deadlock detection).
#[derive(Debug, Default)]
pub(crate) struct Locks {
    held: std::collections::BTreeMap<LockKey, u64>,
    waiting: std::collections::BTreeMap<u64, LockKey>,
    /// Waiters per lock in arrival order: a freed lock goes to the first (no waiter starves).
    queues: std::collections::BTreeMap<LockKey, std::collections::VecDeque<u64>>,
    next_txn: u64,
    /// Lock waits so far (a lock was held by another open call when asked for).
    pub(crate) waits: u64,
    /// Calls failed as deadlocked or timed out.
    pub(crate) busy: u64,
    /// Polls a lock wait may last (`None`: [`LOCK_WAIT_POLLS_MAX`]).
    pub(crate) wait_polls: Option<u32>,
}

impl Locks {
    /// Whether any open transaction holds a lock.
    pub(crate) fn any_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Whether `txn` waiting for a lock held by `holder` closes a cycle of waits.
    fn closes_cycle(&self, txn: u64, holder: u64) -> bool {
        let mut current = holder;
        for _ in 0..WAIT_CHAIN_MAX {
            if current == txn {
                return true;
            }
            let Some(next) = self.waiting.get(&current).and_then(|key| self.held.get(key)) else {
                return false;
            };
            current = *next;
        }
        false
    }

    fn release(&mut self, txn: u64) {
        self.held.retain(|_, holder| *holder != txn);
        self.stop_waiting(txn);
    }

    fn stop_waiting(&mut self, txn: u64) {
        if let Some(key) = self.waiting.remove(&txn)
            && let Some(queue) = self.queues.get_mut(&key)
        {
            queue.retain(|waiter| *waiter != txn);
            if queue.is_empty() {
                self.queues.remove(&key);
            }
        }
    }

    /// Whether `txn` may take the free lock `key`: nobody waits for it, or `txn` waits first.
    fn first_in_line(&self, key: &LockKey, txn: u64) -> bool {
        self.queues.get(key).and_then(|queue| queue.front()).is_none_or(|first| *first == txn)
    }
}

/// One open READ COMMITTED transaction of a store call; dropping it uncommitted rolls it back.
pub(crate) struct Txn<'a> {
    store: &'a SimStore,
    id: u64,
}

impl<'a> Txn<'a> {
    pub(crate) fn begin(store: &'a SimStore) -> Self {
        let mut state = store.lock();
        state.locks.next_txn += 1;
        Txn { store, id: state.locks.next_txn }
    }

    /// Ends a statement: other calls may run before the next one starts.
    pub(crate) async fn step(&self) {
        yield_once().await;
    }

    /// Takes `key` for the rest of the transaction, waiting while another open call holds it.
    pub(crate) async fn lock(&self, key: LockKey) -> StoreResult<()> {
        let mut waited = false;
        let polls = self.store.lock().locks.wait_polls.unwrap_or(LOCK_WAIT_POLLS_MAX);
        for _ in 0..polls {
            {
                let mut state = self.store.lock();
                let locks = &mut state.locks;
                match locks.held.get(&key).copied() {
                    None if locks.first_in_line(&key, self.id) => {
                        locks.stop_waiting(self.id);
                        locks.held.insert(key, self.id);
                        return Ok(());
                    }
                    Some(holder) if holder == self.id => return Ok(()),
                    holder => {
                        if !waited {
                            waited = true;
                            locks.waits += 1;
                            locks.waiting.insert(self.id, key.clone());
                            locks.queues.entry(key.clone()).or_default().push_back(self.id);
                        }
                        if holder.is_some_and(|holder| locks.closes_cycle(self.id, holder)) {
                            locks.busy += 1;
                            locks.stop_waiting(self.id);
                            return Err(StoreError::Busy(format!(
                                "deadlock detected waiting for {key:?} (simulated READ COMMITTED); the engine retries"
                            )));
                        }
                    }
                }
            }
            yield_once().await;
        }
        let mut state = self.store.lock();
        state.locks.busy += 1;
        state.locks.stop_waiting(self.id);
        Err(StoreError::Busy(format!(
            "lock timeout waiting for {key:?} (simulated READ COMMITTED); the engine retries"
        )))
    }

    /// Takes every key of `keys` in order (sorted, as one statement's rows are locked).
    pub(crate) async fn lock_all(&self, mut keys: Vec<LockKey>) -> StoreResult<()> {
        keys.sort();
        keys.dedup();
        for key in keys {
            self.lock(key).await?;
        }
        Ok(())
    }
}

impl Drop for Txn<'_> {
    /// Commit or rollback: the writes were applied (or not) already; the locks go either way.
    fn drop(&mut self) {
        self.store.lock().locks.release(self.id);
    }
}
