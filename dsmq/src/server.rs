//! The server: axum accepts WebSocket upgrades on any path (plus `/healthz` and `/metrics`),
//! one task per connection handles its frames strictly in order, and calls the one store
//! (a single SQLite connection behind a mutex, every hold one short statement).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::watch;

use crate::format::{self, FrameError, Request as Req};
use crate::metrics::Metrics;
use crate::store::{Clock, Limits, Store};
use crate::{Error, Result};

/// Who may stop the server with the `shutdown` action (protocol 1.1 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShutdownPolicy {
    /// Only clients connecting from a loopback address (the default).
    #[default]
    LoopbackOnly,
    /// Any client, as in Python dsmq 1.4.1.
    Anyone,
    /// No client: the action closes the connection with 1008.
    Never,
}

/// The server's settings. Start from `ServerConfig::default()` and change what you need:
///
/// ```
/// use std::time::Duration;
/// let config = dsmq::ServerConfig {
///     ttl: Duration::from_secs(60),
///     ..dsmq::ServerConfig::default()
/// };
/// assert_eq!(config.max_message_bytes, 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a message is kept after it was stored (600 s, as the original promises).
    /// Expired messages are never delivered, whether or not the sweeper has run.
    pub ttl: Duration,
    /// How often expired messages are deleted (1 s).
    pub sweep_interval: Duration,
    /// Largest WebSocket message (the whole JSON request) accepted: 1 MiB. Larger ones close
    /// the connection with 1009.
    pub max_message_bytes: usize,
    /// Most bytes the stored messages may take: 256 MiB. A message counts its text, its
    /// topic twice (row and index) and 64 bytes of row overhead, so long topics and empty
    /// messages are bounded too. Beyond it the oldest messages are evicted (counted in
    /// `dsmq_evicted_total`).
    pub max_stored_bytes: usize,
    /// Most messages held per topic: 100,000; the oldest of the topic are evicted beyond it.
    pub max_messages_per_topic: usize,
    /// Most open WebSocket connections: 1024. More are refused with HTTP 503.
    pub max_connections: usize,
    /// Who may use the `shutdown` action.
    pub allow_shutdown: ShutdownPolicy,
    /// How long a reply may wait for a client that does not read before its connection is
    /// dropped: 30 s.
    pub write_timeout: Duration,
    /// A connection silent this long is sent a ping (30 s): it keeps idle connections open
    /// through NATs and proxies, and a peer that vanished shows as a failed write, which
    /// frees its slot of `max_connections`. A missing pong is not an error (clients that
    /// only read when they `get`, like this crate's, answer pings late). `None`: never ping.
    pub ping_interval: Option<Duration>,
    /// How long a connection may take to send a complete HTTP request (the WebSocket
    /// upgrade, or `GET /metrics`): 30 s. A connection that sends nothing, or half a
    /// request, or idles between keep-alive HTTP requests for longer is closed, so it does
    /// not hold a socket and a task forever. Upgraded WebSocket connections are not subject
    /// to it.
    pub header_timeout: Duration,
    /// The clock expiry reads; [`Clock::manual`] makes retention testable without sleeping.
    pub clock: Clock,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ttl: Duration::from_secs(600),
            sweep_interval: Duration::from_secs(1),
            max_message_bytes: 1 << 20,
            max_stored_bytes: 256 << 20,
            max_messages_per_topic: 100_000,
            max_connections: 1024,
            allow_shutdown: ShutdownPolicy::LoopbackOnly,
            write_timeout: Duration::from_secs(30),
            ping_interval: Some(Duration::from_secs(30)),
            header_timeout: Duration::from_secs(30),
            clock: Clock::system(),
        }
    }
}

/// Runs a server with the default configuration on `addr` until Ctrl-C or SIGTERM.
///
/// ```no_run
/// # async fn f() -> dsmq::Result<()> {
/// dsmq::serve("127.0.0.1:30008").await
/// # }
/// ```
pub async fn serve(addr: impl ToSocketAddrs) -> Result<()> {
    let server = Server::bind(addr, ServerConfig::default()).await?;
    stop_on_signals(server.handle());
    server.run().await
}

/// Calls [`ServerHandle::shutdown`] on the first SIGINT (Ctrl-C) or SIGTERM. The handlers
/// are installed before this returns. Must be called within a tokio runtime.
pub fn stop_on_signals(handle: ServerHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        let (mut interrupt, mut terminate) = match streams {
            (Ok(i), Ok(t)) => (i, t),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot listen for SIGINT/SIGTERM: {e}");
                return;
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            }
            handle.shutdown();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C: shutting down");
            handle.shutdown();
        }
    });
}

/// A bound server, not yet running. [`Server::run`] serves until [`ServerHandle::shutdown`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> dsmq::Result<()> {
/// let server = dsmq::Server::bind("127.0.0.1:0", dsmq::ServerConfig::default()).await?;
/// let addr = server.local_addr();
/// let handle = server.handle();
/// let running = tokio::spawn(server.run());
///
/// let mut reader = dsmq::Client::connect("127.0.0.1", addr.port()).await?;
/// let mut writer = dsmq::Client::connect("127.0.0.1", addr.port()).await?;
/// writer.put("greetings", "hello world!").await?;
/// assert_eq!(reader.get("greetings").await?.as_deref(), Some("hello world!"));
/// assert_eq!(reader.get("greetings").await?, None);
///
/// handle.shutdown();
/// running.await.unwrap()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// Stops a running server; clone it freely.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    stop: watch::Sender<bool>,
    stopped: watch::Sender<bool>,
}

impl ServerHandle {
    /// Starts a graceful stop: no new connections, the request being handled on each
    /// connection finishes, then every connection is closed with 1001 ("going away").
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Whether [`ServerHandle::shutdown`] was called (or a client's `shutdown` accepted).
    pub fn is_stopping(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Waits until the server has stopped and every connection is closed.
    pub async fn stopped(&self) {
        let mut rx = self.inner.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

#[derive(Debug)]
struct Shared {
    config: ServerConfig,
    store: Store,
    metrics: Arc<Metrics>,
    handle: ServerHandle,
    /// Signalled when the last connection task ends.
    idle: tokio::sync::Notify,
}

impl Server {
    /// Listens on `addr` (port 0 picks a free port) and starts the store.
    pub async fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> Result<Server> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: "an address that does not resolve".into(),
                source,
            })?
            .collect();
        let listener = TcpListener::bind(&addrs[..])
            .await
            .map_err(|source| Error::Bind {
                addr: addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                source,
            })?;
        let addr = listener.local_addr()?;
        let metrics = Arc::new(Metrics::default());
        let store = Store::start(
            Limits {
                ttl: config.ttl,
                max_stored_bytes: config.max_stored_bytes,
                max_messages_per_topic: config.max_messages_per_topic.max(1),
            },
            config.clock.clone(),
            Arc::clone(&metrics),
        )?;
        let handle = ServerHandle {
            inner: Arc::new(HandleInner {
                stop: watch::channel(false).0,
                stopped: watch::channel(false).0,
            }),
        };
        Ok(Server {
            listener,
            addr,
            shared: Arc::new(Shared {
                config,
                store,
                metrics,
                handle,
                idle: tokio::sync::Notify::new(),
            }),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> ServerHandle {
        self.shared.handle.clone()
    }

    /// Serves until [`ServerHandle::shutdown`] (or an accepted `shutdown` request), then
    /// waits for every connection to close (at most 10 s).
    pub async fn run(self) -> Result<()> {
        let Server {
            listener,
            addr,
            shared,
        } = self;
        tracing::info!("dsmq listening on ws://{addr}");
        let sweeper = tokio::spawn(sweep(Arc::clone(&shared)));
        let app = Router::new()
            .fallback(entry)
            .with_state(Arc::clone(&shared));
        // Our own accept loop rather than `axum::serve`: hyper's header read timeout needs
        // a timer, which `axum::serve` does not give it.
        let mut http = tokio::task::JoinSet::new();
        let mut stop = shared.handle.inner.stop.subscribe();
        loop {
            let accepted = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                Some(_) = http.join_next(), if !http.is_empty() => continue,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, the condition may pass.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(
                app.clone().layer(axum::Extension(ConnectInfo(peer))),
            );
            let header_timeout = shared.config.header_timeout;
            let mut stop = shared.handle.inner.stop.subscribe();
            http.spawn(async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout);
                let conn = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .with_upgrades();
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    served = conn.as_mut() => {
                        if let Err(e) = served {
                            tracing::debug!("{peer}: http: {e}");
                        }
                        return;
                    }
                    _ = stop.wait_for(|s| *s) => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            });
        }
        drop(listener);
        sweeper.abort();
        // HTTP requests in flight finish (bounded); upgraded connections are separate tasks.
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while http.join_next().await.is_some() {}
        })
        .await;
        http.abort_all();
        // Connection tasks see the stop signal and close with 1001.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let idle = shared.idle.notified();
            let open = shared.metrics.connections.load(Ordering::SeqCst);
            if open == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                tracing::warn!("{open} connections still open 10 s after shutdown; leaving them");
                break;
            }
        }
        tracing::info!("dsmq on {addr} stopped");
        shared.handle.inner.stopped.send_replace(true);
        Ok(())
    }
}

async fn sweep(shared: Arc<Shared>) {
    let mut tick =
        tokio::time::interval(shared.config.sweep_interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.sweep()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("sweep failed: {e}"),
            Err(_) => return,
        }
    }
}

/// Every request: `/healthz`, `/metrics`, or a WebSocket upgrade on any path.
async fn entry(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !upgrade {
        return match (&parts.method, parts.uri.path()) {
            (&Method::GET, "/healthz") => "ok".into_response(),
            (&Method::GET, "/metrics") => (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                shared.metrics.render(),
            )
                .into_response(),
            _ => (
                StatusCode::UPGRADE_REQUIRED,
                [(header::UPGRADE, "websocket")],
                "this is a dsmq server: connect with a WebSocket client (ws://HOST:PORT/); \
                 GET /healthz and /metrics are plain HTTP\n",
            )
                .into_response(),
        };
    }
    if shared.handle.is_stopping() {
        return (StatusCode::SERVICE_UNAVAILABLE, "dsmq is shutting down\n").into_response();
    }
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &shared).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    // Count the connection now, so concurrent upgrades cannot exceed the limit.
    let open = shared.metrics.connections.fetch_add(1, Ordering::SeqCst);
    let guard = ConnectionGuard(Arc::clone(&shared));
    if open >= shared.config.max_connections as u64 {
        shared
            .metrics
            .refused_connections_total
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!("refusing {peer}: {open} connections open (max_connections)");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("dsmq: too many connections ({open} open, max_connections)\n"),
        )
            .into_response();
    }
    // Eligibility starts here, before the handshake completes: anything stored after the
    // client sees the connection open is visible to it.
    let start_id = shared.store.last_id();
    let limit = shared.config.max_message_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        // tungstenite allocates its read buffer up front (128 KiB by default): 1024 idle
        // connections would hold 128 MiB. Requests are small; a large one takes more reads.
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            Connection {
                socket,
                shared: Arc::clone(&guard.0),
                peer,
                start_id,
                cursors: HashMap::new(),
                prune_at: PRUNE_MIN,
                stashed: None,
            }
            .run()
            .await;
            drop(guard);
        })
}

/// Decrements the connection count when a connection (or a failed upgrade) ends.
struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.metrics.connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

struct Connection {
    socket: WebSocket,
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Only messages with a larger id are eligible.
    start_id: i64,
    /// The id of the last message read, per topic (absent: `start_id`).
    cursors: HashMap<String, i64>,
    /// Positions of topics whose messages are all gone are dropped when `cursors` grows
    /// to this many (then twice what is left, at least [`PRUNE_MIN`]).
    prune_at: usize,
    /// An event read ahead while collecting puts, to handle next.
    stashed: Option<Option<Result<Message, axum::Error>>>,
}

/// Bytes each connection reads at a time (and holds while idle).
const READ_BUFFER: usize = 8 << 10;

/// The fewest read positions a connection keeps before letting go of stale ones.
const PRUNE_MIN: usize = 64;

/// The most puts sent to the store as one command.
const PUT_BATCH: usize = 256;
/// Puts stop being collected into one command beyond this many bytes of text (topics and
/// messages).
const PUT_BATCH_BYTES: usize = 1 << 20;

/// What to do after a frame.
enum Next {
    Continue,
    Close(u16, String),
}

impl Connection {
    async fn run(mut self) {
        let mut stop = self.shared.handle.inner.stop.subscribe();
        tracing::debug!("{}: connected", self.peer);
        let ping_interval = self.shared.config.ping_interval;
        loop {
            let idle = async {
                match ping_interval {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            let received = match self.stashed.take() {
                Some(event) => event,
                None => tokio::select! {
                    biased;
                    () = async { drop(stop.wait_for(|s| *s).await) } => {
                        self.close(format::CLOSE_GOING_AWAY, "server shutting down").await;
                        break;
                    }
                    received = self.socket.recv() => received,
                    () = idle => {
                        let ping = Message::Ping(axum::body::Bytes::from_static(b"dsmq"));
                        let sent = tokio::time::timeout(
                            self.shared.config.write_timeout,
                            self.socket.send(ping),
                        )
                        .await;
                        if !matches!(sent, Ok(Ok(()))) {
                            tracing::debug!("{}: ping failed; connection dropped", self.peer);
                            break;
                        }
                        continue;
                    }
                },
            };
            let next = match received {
                None => break,
                Some(Ok(Message::Text(text))) => self.frame(text.as_str().as_bytes()).await,
                Some(Ok(Message::Binary(bytes))) => self.frame(&bytes).await,
                Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Next::Continue,
                Some(Err(e)) => match self.read_error(&e) {
                    Some(next) => next,
                    None => {
                        tracing::debug!("{}: connection lost: {e}", self.peer);
                        break;
                    }
                },
            };
            match next {
                Next::Continue => {}
                Next::Close(code, reason) => {
                    if code != format::CLOSE_NORMAL {
                        self.shared
                            .metrics
                            .protocol_errors_total
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("{}: closing with {code}: {reason}", self.peer);
                    }
                    self.close(code, &reason).await;
                    break;
                }
            }
        }
        self.shared
            .metrics
            .cursors
            .fetch_sub(self.cursors.len() as u64, Ordering::Relaxed);
        tracing::debug!("{}: disconnected", self.peer);
    }

    /// Remembers that `topic` was read up to `id`, letting go of the positions whose
    /// messages are all gone once there are many (they mean no more than `start_id`).
    fn advance(&mut self, topic: String, id: i64) {
        let metrics = &self.shared.metrics;
        if self.cursors.insert(topic, id).is_none() {
            metrics.cursors.fetch_add(1, Ordering::Relaxed);
        }
        if self.cursors.len() >= self.prune_at {
            let first = self.shared.store.first_id();
            let before = self.cursors.len();
            self.cursors.retain(|_, read| *read >= first);
            let after = self.cursors.len();
            metrics
                .cursors
                .fetch_sub((before - after) as u64, Ordering::Relaxed);
            self.prune_at = (2 * after).max(PRUNE_MIN);
        }
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: format::close_reason(reason).into(),
        };
        let sent = tokio::time::timeout(
            Duration::from_secs(1),
            self.socket.send(Message::Close(Some(frame))),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        // The closing handshake: wait (briefly) for the client's close, reading past what
        // it sent meanwhile. Closing the socket with its requests unread would reset the
        // connection, and the client could lose our close frame, and its reason, to the reset.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(message)) = self.socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    async fn frame(&mut self, frame: &[u8]) -> Next {
        let request = match format::decode_request(frame) {
            Ok(r) => r,
            Err(e) => return self.bad_frame(frame, &e),
        };
        match request {
            Req::Put { topic, message } => {
                // Consecutive puts that have already arrived go to the store as one
                // command (one channel send, one transaction). Whatever else arrives is
                // kept for the main loop, so frames are still handled strictly in order.
                // Topics count too: a frame may be a 1 MiB topic and an empty message.
                let mut bytes = topic.len() + message.len();
                let mut puts = vec![(topic, message)];
                while puts.len() < PUT_BATCH && bytes < PUT_BATCH_BYTES {
                    let Some(event) = self.socket.recv().now_or_never() else {
                        break;
                    };
                    let decoded = match &event {
                        Some(Ok(Message::Text(t))) => format::decode_request(t.as_str().as_bytes()),
                        Some(Ok(Message::Binary(b))) => format::decode_request(b),
                        _ => {
                            self.stashed = Some(event);
                            break;
                        }
                    };
                    match decoded {
                        Ok(Req::Put { topic, message }) => {
                            bytes += topic.len() + message.len();
                            puts.push((topic, message));
                        }
                        _ => {
                            // Handled (and its error reported) by the main loop.
                            self.stashed = Some(event);
                            break;
                        }
                    }
                }
                if let Err(e) = self.shared.store.put(puts) {
                    return self.store_failed(&e);
                }
                Next::Continue
            }
            Req::Get { topic } => self.get(topic, false).await,
            Req::GetLatest { topic } => self.get(topic, true).await,
            Req::Shutdown { .. } => {
                let allowed = match self.shared.config.allow_shutdown {
                    ShutdownPolicy::Anyone => true,
                    ShutdownPolicy::LoopbackOnly => {
                        self.peer.ip().is_loopback() || self.peer.ip().to_canonical().is_loopback()
                    }
                    ShutdownPolicy::Never => false,
                };
                if !allowed {
                    return Next::Close(
                        format::CLOSE_POLICY,
                        format!(
                            "shutdown not allowed (policy {:?}) from {}",
                            self.shared.config.allow_shutdown,
                            self.peer.ip()
                        ),
                    );
                }
                tracing::info!("{}: shutdown requested", self.peer);
                self.shared.handle.shutdown();
                Next::Close(format::CLOSE_NORMAL, "server shutting down".into())
            }
        }
    }

    async fn get(&mut self, topic: String, latest: bool) -> Next {
        let after = self.cursors.get(&topic).copied().unwrap_or(self.start_id);
        let found = match self.shared.store.get(&topic, after, latest) {
            Ok(found) => found,
            Err(e) => return self.store_failed(&e),
        };
        let metrics = &self.shared.metrics;
        let reply = match found {
            Some((id, body)) => {
                metrics.gets_hit.fetch_add(1, Ordering::Relaxed);
                self.advance(topic, id);
                format::encode_reply(&body)
            }
            None => {
                metrics.gets_empty.fetch_add(1, Ordering::Relaxed);
                format::encode_reply("")
            }
        };
        match tokio::time::timeout(
            self.shared.config.write_timeout,
            self.socket.send(Message::Text(reply.into())),
        )
        .await
        {
            Ok(Ok(())) => Next::Continue,
            Ok(Err(e)) => {
                tracing::debug!("{}: reply not sent: {e}", self.peer);
                Next::Close(format::CLOSE_NORMAL, String::new())
            }
            Err(_) => Next::Close(
                format::CLOSE_POLICY,
                format!(
                    "the client did not read its replies for {:?}",
                    self.shared.config.write_timeout
                ),
            ),
        }
    }

    /// What to answer a frame the WebSocket layer refused: a close code the client can act
    /// on, rather than a silent drop. `None`: the connection itself is gone.
    fn read_error(&self, e: &axum::Error) -> Option<Next> {
        use tungstenite::Error as W;
        use tungstenite::error::ProtocolError as P;
        let source = std::error::Error::source(e)?.downcast_ref::<W>()?;
        Some(match source {
            W::Capacity(_) => Next::Close(
                format::CLOSE_TOO_BIG,
                format!(
                    "message too big: the limit is {} bytes",
                    self.shared.config.max_message_bytes
                ),
            ),
            W::Utf8(_) => Next::Close(
                format::CLOSE_INVALID_PAYLOAD,
                "invalid JSON: a text frame that is not UTF-8".into(),
            ),
            // The peer vanished without a close frame: nobody to tell.
            W::Protocol(P::ResetWithoutClosingHandshake) => return None,
            W::Protocol(p) => Next::Close(format::CLOSE_PROTOCOL, format!("protocol error: {p}")),
            _ => return None,
        })
    }

    fn bad_frame(&self, frame: &[u8], e: &FrameError) -> Next {
        tracing::debug!("{}: bad frame {}", self.peer, format::Shown(frame));
        Next::Close(e.close_code(), e.close_reason())
    }

    fn store_failed(&self, e: &Error) -> Next {
        // Counted in `dsmq_store_errors_total` by the store.
        tracing::error!("{}: {e}", self.peer);
        Next::Close(format::CLOSE_INTERNAL, format!("internal error: {e}"))
    }
}
