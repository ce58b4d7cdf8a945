//! `GET /api/events`: the timeline as server-sent events (SPEC §14). Each event's SSE `id` is its
//! event id, so a client that reconnects with `Last-Event-ID` (browsers do it by themselves)
//! resumes exactly after the last event it saw; `?after=ID` starts after a given id, and with
//! neither the stream starts at the newest event (only what happens from now on). `?task=ID`
//! (numeric id or work-item id) keeps one task's events.
//!
//! Each connection reads the store in pages of at most [`EVENTS_PAGE_MAX`] events and holds no
//! more than one page, so its memory is bounded however far behind it starts. Idle connections
//! share one [`LatestEvent`] probe: at most one one-row query per [`POLL_INTERVAL`] for the whole
//! server tells whether anything new happened, and only then does each connection read its page.
//! A comment line every [`KEEP_ALIVE`] keeps proxies from closing an idle stream.
//! Events are masked with the engine's redactor here, because the response middleware never
//! buffers a stream. Reads need a `read` token when `server.read_requires_token` is set — a
//! bearer token, or the dashboard's session cookie (browsers cannot set headers on `EventSource`).

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use baton_domain::TaskId;
use baton_engine::Scope;
use baton_store::{EventRecord, Store, TaskKey};
use futures_util::Stream;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Events read from the store per query; also the most a connection holds at once.
pub const EVENTS_PAGE_MAX: u32 = 100;
/// How often a caught-up connection looks for new events.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often a comment line is sent on an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /api/events` query.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// Start after this event id (a `Last-Event-ID` header wins over it).
    pub after: Option<i64>,
    /// Only this task's events: its numeric id or work-item id.
    pub task: Option<String>,
}

pub(crate) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let _ = state;
    Router::new().route("/events", get(events))
}

async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if !state.observability.events {
        return Err(ApiError::NotFound(
            "the event stream is turned off; set `server.events = true` to serve it".into(),
        ));
    }
    if state.read_requires_token {
        crate::dashboard::reader(&state, &headers, Scope::Read).await?;
    }
    let store = state.engine.store().clone();
    let task = match &query.task {
        Some(key) => Some(
            store
                .task(&TaskKey::parse(key))
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("task {key} does not exist")))?
                .id,
        ),
        None => None,
    };
    let resume =
        headers
            .get("last-event-id")
            .map(|value| {
                value.to_str().ok().and_then(|text| text.trim().parse::<i64>().ok()).filter(|id| *id >= 0).ok_or_else(
                    || ApiError::BadRequest("Last-Event-ID must be the id of an event (a whole number)".into()),
                )
            })
            .transpose()?;
    let cursor = match resume.or(query.after) {
        Some(id) if id < 0 => {
            return Err(ApiError::BadRequest("after must be an event id (a whole number, 0 or more)".into()));
        }
        Some(id) => id,
        None => latest_event_id(store.as_ref()).await?,
    };
    let feed = Feed { state: state.clone(), store, task, cursor, seen: -1, pending: VecDeque::new() };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let record = feed.next().await;
        let event = feed.render(&record);
        Some((Ok(event), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")))
}

/// One connection's position in the timeline and the page it is sending.
struct Feed {
    state: Arc<AppState>,
    store: Arc<dyn Store>,
    task: Option<TaskId>,
    cursor: i64,
    /// Every event up to this id has been read for this connection's filter.
    seen: i64,
    pending: VecDeque<EventRecord>,
}

impl Feed {
    /// The next event after the cursor, waiting (polling) until there is one. A store error is
    /// retried after the poll interval: the stream outlives a busy database.
    async fn next(&mut self) -> EventRecord {
        let clock = self.state.engine.clock().clone();
        loop {
            if let Some(record) = self.pending.pop_front() {
                self.cursor = record.id;
                return record;
            }
            let latest = self.state.dashboard.latest.get(self.store.as_ref(), clock.now_ms()).await;
            if latest <= self.seen.max(self.cursor) {
                clock.sleep(POLL_INTERVAL).await;
                continue;
            }
            match self.store.events(self.task, self.cursor, EVENTS_PAGE_MAX).await {
                Ok(page) => {
                    if (page.len() as u32) < EVENTS_PAGE_MAX {
                        self.seen = latest;
                    }
                    self.pending.extend(page);
                }
                Err(_) => clock.sleep(POLL_INTERVAL).await,
            }
        }
    }

    fn render(&self, record: &EventRecord) -> Event {
        let json = serde_json::to_string(record).unwrap_or_else(|_| "{}".into());
        let masked = self.state.engine.redactor().redact(&json).into_owned();
        Event::default().id(record.id.to_string()).event("timeline").data(masked)
    }
}

/// The newest event id (0 with none), by galloping and bisecting on "is there an event after
/// `x`" — a handful of one-row primary-key reads, however long the timeline.
pub async fn latest_event_id(store: &dyn Store) -> Result<i64, ApiError> {
    let after = |x: i64| async move { store.events(None, x, 1).await.map(|page| !page.is_empty()) };
    if !after(0).await? {
        return Ok(0);
    }
    let (mut low, mut high) = (0_i64, 1024_i64);
    while after(high).await? {
        low = high;
        high = high.saturating_mul(2);
    }
    // Invariant: an event exists after `low`, none after `high`.
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if after(mid).await? {
            low = mid;
        } else {
            high = mid;
        }
    }
    Ok(high)
}

/// The newest event id as last probed, shared by every stream of a server: whoever finds the
/// probe older than [`POLL_INTERVAL`] refreshes it (one query), the others read the number.
#[derive(Debug, Default)]
pub struct LatestEvent {
    id: AtomicI64,
    probed_at_ms: AtomicI64,
}

impl LatestEvent {
    async fn get(&self, store: &dyn Store, now_ms: i64) -> i64 {
        let probed = self.probed_at_ms.load(Ordering::Acquire);
        let stale = now_ms - probed >= POLL_INTERVAL.as_millis() as i64;
        if stale && self.probed_at_ms.compare_exchange(probed, now_ms, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            let known = self.id.load(Ordering::Acquire);
            let newest = if known == 0 {
                latest_event_id(store).await.ok()
            } else {
                match store.events(None, known, EVENTS_PAGE_MAX).await {
                    Ok(page) if page.len() as u32 == EVENTS_PAGE_MAX => latest_event_id(store).await.ok(),
                    Ok(page) => Some(page.last().map_or(known, |e| e.id)),
                    Err(_) => None,
                }
            };
            if let Some(newest) = newest {
                self.id.fetch_max(newest, Ordering::AcqRel);
            }
        }
        self.id.load(Ordering::Acquire)
    }
}
