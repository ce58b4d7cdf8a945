//! Time and background work: all time in the engine comes through [`Clock`] (the current time and
//! sleeping), and every background task starts through [`Spawner`], so a simulation can replace
//! both with its own time and its own scheduler.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A future the engine can hand to a port.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Completes once `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> BoxFuture;
}

/// The real wall clock and tokio's timers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place allowed to read the system clock
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }

    #[allow(clippy::disallowed_methods)] // the one place allowed to start a timer
    fn sleep(&self, duration: Duration) -> BoxFuture {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Starts background work (one job's executor, the outbox worker).
pub trait Spawner: Send + Sync {
    fn spawn(&self, work: BoxFuture);
}

/// The real spawner: a tokio task on the current runtime.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioSpawner;

impl Spawner for TokioSpawner {
    #[allow(clippy::disallowed_methods)] // the one place allowed to spawn a task
    fn spawn(&self, work: BoxFuture) {
        tokio::spawn(work);
    }
}
