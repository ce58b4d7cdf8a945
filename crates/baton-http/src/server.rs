//! The accept loop behind `baton serve`: hyper's HTTP/1 connections with the limits an exposed
//! server needs, serving [`hardened_app`] (the API behind the `Host`/`Origin` guard).
//!
//! - **Connection limit** (`server.max_connections`): a semaphore permit is taken *before*
//!   `accept`, so at the limit the loop stops accepting and new connections wait in the kernel's
//!   listen backlog (which costs Baton no memory) until a connection ends; they are then served
//!   normally. Closing them at once instead would turn a burst of honest clients into errors and
//!   would not help against slow clients either, whose slots free only when their timeouts fire.
//! - **Header timeout** (`server.header_timeout_secs`): hyper's HTTP/1 header-read timer. It runs
//!   from the moment the connection waits for a request head, so it bounds a slowloris client
//!   (a partial header and nothing more) and also an idle keep-alive connection between requests.
//! - **Idle timeout** (`server.idle_timeout_secs`): a connection on which no byte moves either way
//!   this long is closed: a stalled request body, a client that stopped reading its answer.
//! - **Graceful shutdown**: when `shutdown` resolves the loop stops accepting, every connection
//!   finishes its in-flight request and closes, and [`serve_with`] returns once all have.
//!
//! Connections run through the engine's `Spawner` port, and the idle timer reads the engine's
//! `Clock`: this crate starts no task and reads no time on its own.

use crate::guard::{HostAllowlist, guard};
use crate::{AppState, app};
use axum::Router;
use baton_engine::Clock;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Default of `server.max_connections`.
pub const MAX_CONNECTIONS_DEFAULT: usize = 512;
/// Default of `server.header_timeout_secs`.
pub const HEADER_TIMEOUT_SECS_DEFAULT: u64 = 10;
/// Default of `server.idle_timeout_secs`.
pub const IDLE_TIMEOUT_SECS_DEFAULT: u64 = 60;
/// Largest accepted `server.max_connections` (permits are counted in `u32`; file descriptors run
/// out long before).
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;
/// Largest request head (and read buffer) per connection: bounds memory per slow client.
const READ_BUFFER_BYTES_MAX: usize = 64 * 1024;
/// Pause after a failed `accept` (out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The limits of [`serve_with`] (the `[server]` configuration keys).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// Names added to the `Host` allowlist (`server.allowed_hosts`).
    pub allowed_hosts: Vec<String>,
    /// Counters the server keeps while it runs (tests and benchmarks read them).
    pub stats: Arc<ServerStats>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_connections: MAX_CONNECTIONS_DEFAULT,
            header_timeout: Duration::from_secs(HEADER_TIMEOUT_SECS_DEFAULT),
            idle_timeout: Duration::from_secs(IDLE_TIMEOUT_SECS_DEFAULT),
            allowed_hosts: Vec::new(),
            stats: Arc::default(),
        }
    }
}

/// What the accept loop has done so far.
#[derive(Debug, Default)]
pub struct ServerStats {
    accepted: AtomicU64,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    closed_idle: AtomicU64,
}

impl ServerStats {
    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
    /// The most connections ever open at once.
    pub fn peak_open(&self) -> usize {
        self.peak_open.load(Ordering::SeqCst)
    }
    /// Connections closed by the idle timeout.
    pub fn closed_idle(&self) -> u64 {
        self.closed_idle.load(Ordering::SeqCst)
    }
}

/// [`app`] behind the `Host`/`Origin` guard: what `baton serve` answers with.
pub fn hardened_app(state: AppState, allowlist: HostAllowlist) -> Router {
    app(state).layer(axum::middleware::from_fn_with_state(Arc::new(allowlist), guard))
}

/// Serves [`hardened_app`] on `listener` with `settings` until `shutdown` resolves, then lets
/// in-flight requests finish. The allowlist holds the loopback names, the listener's address and
/// `settings.allowed_hosts`; an entry that does not parse is an `InvalidInput` error.
pub async fn serve_with<F>(
    listener: TcpListener,
    state: AppState,
    settings: ServerSettings,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let allowlist = HostAllowlist::new(listener.local_addr().ok(), &settings.allowed_hosts)
        .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, format!("server.allowed_hosts: {why}")))?;
    let clock = state.engine.clock().clone();
    let spawner = state.engine.spawner().clone();
    let router = hardened_app(state, allowlist);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true)
        // A client may close its sending side after its last request (`printf ... | nc`) and
        // still be answered, every pipelined request included; timeouts bound it as any other.
        .half_close(true)
        .max_buf_size(READ_BUFFER_BYTES_MAX);
    let max = settings.max_connections.clamp(1, MAX_CONNECTIONS_LIMIT);
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    tracing::warn!("accepting a connection failed: {error}");
                    clock.sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let stats = settings.stats.clone();
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let open = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak_open.fetch_max(open, Ordering::SeqCst);
        let connection = Connection {
            http: http.clone(),
            router: router.clone(),
            clock: clock.clone(),
            idle_timeout: settings.idle_timeout,
            stop: stop_rx.clone(),
            stats,
        };
        spawner.spawn(Box::pin(async move {
            connection.run(stream).await;
            // The socket is closed before the slot frees, so a waiting client never overlaps it.
            drop(permit);
        }));
    }
    let _ = stop_tx.send(true);
    drop(listener);
    // Every connection holds one permit until it ends: having them all back means all ended.
    let _ = permits.acquire_many(max as u32).await;
    Ok(())
}

/// One accepted connection and what it needs.
struct Connection {
    http: hyper::server::conn::http1::Builder,
    router: Router,
    clock: Arc<dyn Clock>,
    idle_timeout: Duration,
    stop: watch::Receiver<bool>,
    stats: Arc<ServerStats>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        let last_activity = Arc::new(AtomicI64::new(self.clock.now_ms()));
        let io = Activity { inner: stream, clock: self.clock.clone(), last_ms: last_activity.clone() };
        let service = TowerToHyperService::new(self.router.clone());
        let conn = self.http.serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let idle_ms = i64::try_from(self.idle_timeout.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut stopping = *self.stop.borrow();
        if stopping {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            let quiet_ms = self.clock.now_ms().saturating_sub(last_activity.load(Ordering::SeqCst));
            if quiet_ms >= idle_ms {
                self.stats.closed_idle.fetch_add(1, Ordering::SeqCst);
                break;
            }
            let wait = Duration::from_millis((idle_ms - quiet_ms) as u64);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!("connection ended: {error}");
                    }
                    break;
                }
                _ = self.clock.sleep(wait) => {}
                changed = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
        self.stats.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A stream that records when a byte last moved either way (the idle timeout's measure).
struct Activity {
    inner: TcpStream,
    clock: Arc<dyn Clock>,
    last_ms: Arc<AtomicI64>,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.clock.now_ms(), Ordering::SeqCst);
    }
}

impl AsyncRead for Activity {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        result
    }
}

impl AsyncWrite for Activity {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
