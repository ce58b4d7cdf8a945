//! The simulated clock: time moves only when the simulator advances it.

use baton_engine::Clock;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where simulated time starts (2027-01-15, an arbitrary fixed instant).
pub const EPOCH_MS: i64 = 1_800_000_000_000;

/// A [`Clock`] the simulator moves forward; shared by the engine, the store and the forge.
#[derive(Debug)]
pub struct SimClock {
    now_ms: AtomicI64,
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock { now_ms: AtomicI64::new(EPOCH_MS) }
    }
}

impl SimClock {
    /// Moves time forward by `ms` (never backward).
    pub fn advance_ms(&self, ms: i64) {
        self.now_ms.fetch_add(ms.max(0), Ordering::SeqCst);
    }

    /// Milliseconds since the simulation began.
    pub fn elapsed_ms(&self) -> i64 {
        self.now_ms() - EPOCH_MS
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
