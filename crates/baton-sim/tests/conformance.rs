//! The store conformance suite (`baton_store::conformance`) on the simulation's in-memory store,
//! faults off: the store every simulated world runs on keeps the same contract as SQLite and
//! PostgreSQL.

#![allow(clippy::unwrap_used)]

use baton_sim::{FaultRates, Mutation, SimClock, SimStore};
use baton_store::Store;
use baton_store::conformance::Harness;
use std::sync::Arc;

/// One in-memory store; "reopening" it hands out the same store, as a restart over a durable
/// database would find the same rows.
struct Memory {
    store: Arc<SimStore>,
}

#[async_trait::async_trait]
impl Harness for Memory {
    async fn open(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn set_work_item_counter(&self, repo: &str, prefix: &str, next: i64) {
        assert!(self.store.set_work_item_counter(repo, prefix, next as u32), "no counter for ({repo}, {prefix})");
    }
}

async fn fresh() -> ((), Memory, Arc<dyn Store>) {
    let rates = FaultRates { per_mille: 0, reply_lost_per_mille: 0 };
    let store = Arc::new(SimStore::new(Arc::new(SimClock::default()), 1, rates, Mutation::default()));
    let harness = Memory { store };
    let store = harness.open().await;
    ((), harness, store)
}

baton_store::conformance_tests!(fresh);

/// The same suite with the store at READ COMMITTED: the calls PostgreSQL runs as several
/// statements interleave step by step under its locks, and the store keeps the same contract
/// (the suite's races run on several threads at once).
mod read_committed {
    use super::*;
    use baton_sim::Isolation;

    async fn fresh() -> ((), Memory, Arc<dyn Store>) {
        let rates = FaultRates { per_mille: 0, reply_lost_per_mille: 0 };
        let store = Arc::new(SimStore::new(Arc::new(SimClock::default()), 1, rates, Mutation::default()));
        store.set_isolation(Isolation::ReadCommitted);
        // The suite's races run on real threads: a lock holder may wait for a CPU far longer than
        // the simulation's rounds (no lock timeout within the tests' own time limits).
        store.set_lock_wait_polls(u32::MAX);
        let harness = Memory { store };
        let store = harness.open().await;
        ((), harness, store)
    }

    baton_store::conformance_tests!(fresh);
}
