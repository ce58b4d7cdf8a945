//! A tiny deterministic scheduler for the engine's futures: `block_on`, `interleave`, and
//! [`run_with`], which also polls the engine's background work (the executors it spawned).
//!
//! Nothing in the simulated world waits on IO or real timers; `Pending` comes from [`yield_once`]
//! (which the store inserts before each call while interleaving), from a simulated process that
//! has not ended, or from a sleep on the simulated clock. So a no-op waker and a bounded polling
//! loop suffice, and the order in which concurrent futures advance is chosen by the seeded RNG,
//! never by a runtime.

use crate::rng::Rng;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Polls one future at most this many times; more means a future waits on something that never comes.
const POLLS_MAX: u32 = 100_000;

/// A boxed future borrowed for `'a`.
pub type Task<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs `future` to completion on the current thread.
///
/// Panics when the future stays pending for `POLLS_MAX` polls: in the simulation that is a bug
/// (something awaited a timer or IO), not a schedule to explore.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..POLLS_MAX {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
    }
    panic!("a simulated future stayed pending for {POLLS_MAX} polls (did it wait on real time or IO?)");
}

/// Runs `futures` concurrently: each round polls every unfinished future once, in an order the
/// RNG shuffles. Returns the outputs in the input order.
pub fn interleave<'a, T>(futures: Vec<Task<'a, T>>, rng: &mut Rng) -> Vec<T> {
    let mut slots: Vec<Option<Task<'a, T>>> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = slots.iter().map(|_| None).collect();
    let mut cx = Context::from_waker(Waker::noop());
    let mut order: Vec<usize> = (0..slots.len()).collect();
    for _ in 0..POLLS_MAX {
        if slots.iter().all(Option::is_none) {
            break;
        }
        rng.shuffle(&mut order);
        for &index in &order {
            if let Some(future) = slots[index].as_mut()
                && let Poll::Ready(value) = future.as_mut().poll(&mut cx)
            {
                outputs[index] = Some(value);
                slots[index] = None;
            }
        }
    }
    outputs
        .into_iter()
        .map(|o| o.unwrap_or_else(|| panic!("an interleaved future stayed pending for {POLLS_MAX} rounds")))
        .collect()
}

/// Background work: a future the engine spawned (an executor), polled by [`run_with`].
pub type Background = baton_engine::BoxFuture;

/// Runs `futures` to completion, interleaved (in an order the RNG shuffles each round) with the
/// `background` futures and any the `spawned` source yields meanwhile; then polls the background
/// `settle_rounds` more times. Finished background futures are dropped; the rest stay pending.
pub fn run_with<'a, T>(
    futures: Vec<Task<'a, T>>,
    background: &mut Vec<Background>,
    spawned: &dyn Fn() -> Vec<Background>,
    rng: &mut Rng,
    settle_rounds: u32,
) -> Vec<T> {
    let mut slots: Vec<Option<Task<'a, T>>> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = slots.iter().map(|_| None).collect();
    let mut cx = Context::from_waker(Waker::noop());
    let mut settle = 0;
    for _ in 0..POLLS_MAX {
        background.extend(spawned());
        let foreground_done = slots.iter().all(Option::is_none);
        if foreground_done {
            if settle >= settle_rounds {
                break;
            }
            settle += 1;
        }
        // Foreground slots first in index space, background after; one shuffled order.
        let mut order: Vec<usize> = (0..slots.len() + background.len()).collect();
        rng.shuffle(&mut order);
        let mut finished = Vec::new();
        for index in order {
            if index < slots.len() {
                if let Some(future) = slots[index].as_mut()
                    && let Poll::Ready(value) = future.as_mut().poll(&mut cx)
                {
                    outputs[index] = Some(value);
                    slots[index] = None;
                }
            } else {
                let at = index - slots.len();
                if background[at].as_mut().poll(&mut cx).is_ready() {
                    finished.push(at);
                }
            }
        }
        finished.sort_unstable();
        for at in finished.into_iter().rev() {
            drop(background.remove(at));
        }
    }
    outputs
        .into_iter()
        .map(|o| o.unwrap_or_else(|| panic!("a simulated action stayed pending for {POLLS_MAX} rounds")))
        .collect()
}

/// A future that is pending once, then ready: a point where another future may run.
pub fn yield_once() -> YieldOnce {
    YieldOnce { yielded: false }
}

#[derive(Debug)]
pub struct YieldOnce {
    yielded: bool,
}

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            Poll::Ready(())
        } else {
            self.yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    // Two futures that yield between steps run interleaved, in a seed-determined order.
    #[test]
    fn interleave_is_deterministic() {
        let run = |seed| {
            let log = RefCell::new(Vec::new());
            let step = |name: &'static str| {
                let log = &log;
                async move {
                    for i in 0..3 {
                        log.borrow_mut().push(format!("{name}{i}"));
                        yield_once().await;
                    }
                }
            };
            let futures: Vec<Task<'_, ()>> = vec![Box::pin(step("a")), Box::pin(step("b"))];
            interleave(futures, &mut Rng::new(seed));
            log.into_inner()
        };
        assert_eq!(run(3), run(3));
        assert_eq!(run(3).len(), 6);
    }
}
