//! Shared server state: the script, the request log and the counters of `times`-limited errors.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exchange::{self, Choice, Exchange, TurnKey};
use crate::script::{Conversation, Provider, Script};

/// The request log keeps this many entries, dropping the oldest, so a long-running
/// server does not grow without bound.
pub const REQUEST_LOG_ENTRIES_MAX: usize = 10_000;

/// One request as the server saw and answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// The API it came in on; `None` for unknown routes.
    pub provider: Option<Provider>,
    /// HTTP method.
    pub method: String,
    /// Path with query, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// The model named in the body or path.
    pub model: Option<String>,
    /// The conversation that answered, if one matched.
    pub conversation: Option<String>,
    /// The turn index served (the number of assistant turns in the history).
    pub turn: Option<usize>,
    /// HTTP status of the reply.
    pub status: u16,
    /// The request body as JSON (a string when it was not JSON).
    pub body: Value,
}

/// Cheaply clonable handle on the server's state.
#[derive(Debug, Clone)]
pub struct MockState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conversations: Vec<Conversation>,
    log: Mutex<VecDeque<LoggedRequest>>,
    errors_served: Mutex<HashMap<TurnKey, u32>>,
}

impl MockState {
    /// State serving `script` (already validated by [`Script::from_toml`]).
    pub fn new(script: Script) -> MockState {
        MockState {
            inner: Arc::new(Inner {
                conversations: script.effective_conversations(),
                log: Mutex::new(VecDeque::new()),
                errors_served: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Every logged request, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.inner.log).iter().cloned().collect()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        lock(&self.inner.log).clear();
    }

    pub(crate) fn choose(&self, provider: Provider, exchange: &Exchange) -> Choice {
        exchange::choose(&self.inner.conversations, provider, exchange, |key, times| {
            let mut served = lock(&self.inner.errors_served);
            let count = served.entry(key).or_insert(0);
            if *count < times {
                *count += 1;
                true
            } else {
                false
            }
        })
    }

    pub(crate) fn record(&self, request: LoggedRequest) {
        let mut log = lock(&self.inner.log);
        if log.len() >= REQUEST_LOG_ENTRIES_MAX {
            log.pop_front();
        }
        log.push_back(request);
    }
}

// A panic while holding the lock leaves plain data behind (a log, counters), which
// is still usable, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
