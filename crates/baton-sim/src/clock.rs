//! The simulated clock: time moves only when the simulator advances it.

use baton_engine::{BoxFuture, Clock};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// Where simulated time starts (2027-01-15, an arbitrary fixed instant).
pub const EPOCH_MS: i64 = 1_800_000_000_000;

/// A [`Clock`] the simulator moves forward; shared by the engine, the store and the forge.
#[derive(Debug)]
pub struct SimClock {
    now_ms: Arc<AtomicI64>,
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock { now_ms: Arc::new(AtomicI64::new(EPOCH_MS)) }
    }
}

/// A sleep on simulated time: ready once the simulator moved the clock past its deadline.
struct SimSleep {
    now_ms: Arc<AtomicI64>,
    until_ms: i64,
}

impl Future for SimSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.now_ms.load(Ordering::SeqCst) >= self.until_ms {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
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

    fn sleep(&self, duration: Duration) -> BoxFuture {
        let until_ms = self.now_ms().saturating_add(duration.as_millis() as i64);
        Box::pin(SimSleep { now_ms: self.now_ms.clone(), until_ms })
    }
}
