//! The async client (tokio). It talks to this crate's server and to Python dsmq servers.
//!
//! Every request is one WebSocket message; `get` and `get_latest` wait for their one reply,
//! `put` is not acknowledged (as in the protocol). A connection the server closed is an
//! [`Error::Closed`] with the server's close code and reason, on this call and every later
//! one (the Python 1.4.1 client returns `""` instead). Every request first reads what the
//! server sent unasked, so a `put` on a connection the server already closed fails instead
//! of vanishing. Cancelling a `get` (dropping its future, e.g. in a timeout) after its
//! request went out leaves the reply in flight: the next call is an [`Error::Protocol`]
//! ("out of step") rather than a reply meant for the cancelled `get`; reconnect.

use std::time::{Duration, Instant};

use futures_util::{FutureExt as _, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;

use crate::error::from_ws;
use crate::format::{self, Request};
use crate::{Error, Result};

/// The port Python dsmq uses by default.
pub const DEFAULT_PORT: u16 = 30008;
/// The host Python dsmq uses by default.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// `ws://HOST:PORT/`, with brackets around an IPv6 address.
pub(crate) fn url_of(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("ws://[{host}]:{port}/")
    } else {
        format!("ws://{host}:{port}/")
    }
}

/// The request and the TCP address of a `ws://` URL.
pub(crate) fn target(url: &str) -> Result<(tungstenite::handshake::client::Request, String)> {
    let connect_err = |e: tungstenite::Error| Error::Connect {
        url: url.to_owned(),
        source: Box::new(e),
    };
    let request = url.into_client_request().map_err(connect_err)?;
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        return Err(connect_err(tungstenite::Error::Url(
            tungstenite::error::UrlError::UnsupportedUrlScheme,
        )));
    }
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(80);
    let addr = format!("{host}:{port}");
    Ok((request, addr))
}

/// What a received WebSocket message means for a client waiting for a reply.
pub(crate) enum Incoming {
    Reply(String),
    Closed(Error),
    Ignore,
}

pub(crate) fn incoming(message: Message) -> Incoming {
    match message {
        Message::Text(text) => match format::decode_reply(text.as_bytes()) {
            Ok(reply) => Incoming::Reply(reply),
            Err(e) => Incoming::Closed(Error::Frame(e)),
        },
        Message::Binary(bytes) => match format::decode_reply(&bytes) {
            Ok(reply) => Incoming::Reply(reply),
            Err(e) => Incoming::Closed(Error::Frame(e)),
        },
        Message::Close(frame) => Incoming::Closed(closed(frame)),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Incoming::Ignore,
    }
}

pub(crate) fn closed(frame: Option<CloseFrame>) -> Error {
    match frame {
        Some(f) => Error::Closed {
            code: f.code.into(),
            reason: f.reason.to_string(),
        },
        None => Error::Closed {
            code: 1005,
            reason: "the server closed the connection without a status".into(),
        },
    }
}

/// The same error again, for every call after the connection closed.
pub(crate) fn repeat(e: &Error) -> Error {
    match e {
        Error::Closed { code, reason } => Error::Closed {
            code: *code,
            reason: reason.clone(),
        },
        other => Error::Closed {
            code: 1006,
            reason: other.to_string(),
        },
    }
}

/// Backoff of [`Client::get_wait`]: 1 ms doubling to at most 32 ms.
pub(crate) fn next_pause(pause: Duration) -> Duration {
    (pause * 2).min(Duration::from_millis(32))
}

/// What arrived unasked before a request: nothing to worry about, or why the connection is
/// over (the server's close frame, a lost connection, a reply to no request).
pub(crate) fn unasked(next: Option<tungstenite::Result<Message>>) -> Option<Error> {
    match next {
        None => Some(Error::Closed {
            code: 1006,
            reason: "the server closed the connection".into(),
        }),
        Some(Err(e)) => Some(crate::error::from_ws(e)),
        Some(Ok(m)) => match incoming(m) {
            Incoming::Ignore => None,
            Incoming::Closed(e) => Some(e),
            Incoming::Reply(r) => Some(Error::Protocol(format!(
                "a reply to no request ({r:.40?}); the connection is out of step"
            ))),
        },
    }
}

/// An async connection to a dsmq server.
///
/// ```no_run
/// # async fn f() -> dsmq::Result<()> {
/// let mut mq = dsmq::Client::connect("127.0.0.1", 30008).await?;
/// mq.put("greetings", "hello world!").await?;
/// if let Some(msg) = mq.get_wait("greetings", std::time::Duration::from_secs(1)).await? {
///     println!("{msg}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    closed: Option<Error>,
    /// A request whose reply was not read yet: set while a `get` waits, so a `get` future
    /// dropped before its reply leaves the connection marked as out of step.
    awaiting: bool,
}

impl Client {
    /// Connects to `ws://HOST:PORT/` (no retry).
    pub async fn connect(host: &str, port: u16) -> Result<Client> {
        Client::connect_url(&url_of(host, port)).await
    }

    /// Connects to a `ws://` URL.
    pub async fn connect_url(url: &str) -> Result<Client> {
        let (request, addr) = target(url)?;
        let connect_err = |e: tungstenite::Error| Error::Connect {
            url: url.to_owned(),
            source: Box::new(e),
        };
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|e| connect_err(tungstenite::Error::Io(e)))?;
        stream
            .set_nodelay(true)
            .map_err(|e| connect_err(tungstenite::Error::Io(e)))?;
        let (ws, _response) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(connect_err)?;
        Ok(Client {
            ws,
            closed: None,
            awaiting: false,
        })
    }

    /// Connects, retrying up to `attempts` times with a pause of 10 ms doubling each time
    /// (as the Python 1.4.1 client does).
    pub async fn connect_with_retry(host: &str, port: u16, attempts: u32) -> Result<Client> {
        let mut pause = Duration::from_millis(10);
        let mut attempt = 1;
        loop {
            match Client::connect(host, port).await {
                Ok(c) => return Ok(c),
                Err(e) if attempt >= attempts.max(1) => return Err(e),
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
            }
        }
    }

    async fn send(&mut self, request: &Request) -> Result<()> {
        if self.awaiting && self.closed.is_none() {
            let e = Error::Protocol(
                "a get was cancelled before its reply arrived; the connection is out of step \
                 (reconnect)"
                    .into(),
            );
            self.closed = Some(repeat(&e));
            return Err(e);
        }
        if let Some(e) = &self.closed {
            return Err(repeat(e));
        }
        // A close frame (or a lost connection) already received: fail now, rather than
        // write a put the server will never read.
        loop {
            while let Some(next) = self.ws.next().now_or_never() {
                if let Some(e) = unasked(next) {
                    self.closed = Some(repeat(&e));
                    return Err(e);
                }
            }
            // The runtime may not have noticed yet what the socket holds: ask the socket.
            if !self.socket_has_input() {
                break;
            }
            if let Some(e) = unasked(self.ws.next().await) {
                self.closed = Some(repeat(&e));
                return Err(e);
            }
        }
        self.awaiting = request.expects_reply();
        let text = format::encode_request(request);
        if let Err(e) = self.ws.send(Message::Text(text.into())).await {
            let e = from_ws(e);
            self.closed = Some(repeat(&e));
            return Err(e);
        }
        Ok(())
    }

    async fn reply(&mut self) -> Result<String> {
        loop {
            let next = self.ws.next().await;
            self.awaiting = false;
            let e = match next {
                None => Error::Closed {
                    code: 1006,
                    reason: "the server closed the connection".into(),
                },
                Some(Err(e)) => from_ws(e),
                Some(Ok(m)) => match incoming(m) {
                    Incoming::Reply(r) => return Ok(r),
                    Incoming::Ignore => {
                        self.awaiting = true;
                        continue;
                    }
                    Incoming::Closed(e) => e,
                },
            };
            self.closed = Some(repeat(&e));
            return Err(e);
        }
    }

    /// Whether the socket holds unread bytes or the end of the stream (or an error), asked
    /// of the socket itself, without waiting.
    fn socket_has_input(&self) -> bool {
        #[cfg(unix)]
        {
            use nix::sys::socket::{MsgFlags, recv};
            use std::os::fd::AsRawFd as _;
            let fd = self.ws.get_ref().as_raw_fd();
            let mut byte = [0u8; 1];
            match recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => false,
                Ok(_) | Err(_) => true,
            }
        }
        #[cfg(not(unix))]
        {
            false
        }
    }

    /// Puts `message` into `topic` (created if new). Not acknowledged by the server.
    pub async fn put(&mut self, topic: &str, message: &str) -> Result<()> {
        self.send(&Request::Put {
            topic: topic.to_owned(),
            message: message.to_owned(),
        })
        .await
    }

    /// The oldest eligible message of `topic` not yet read on this connection, or `None`
    /// (the protocol's `""`: an empty message reads as `None` too).
    pub async fn get(&mut self, topic: &str) -> Result<Option<String>> {
        Ok(Some(self.get_raw(topic).await?).filter(|m| !m.is_empty()))
    }

    /// [`Client::get`] in the original's form: `""` when nothing is eligible.
    pub async fn get_raw(&mut self, topic: &str) -> Result<String> {
        self.send(&Request::Get {
            topic: topic.to_owned(),
        })
        .await?;
        self.reply().await
    }

    /// The newest eligible unread message of `topic`; older unread ones are skipped for
    /// this connection. Needs a server speaking protocol 1.4 (this crate, Python ≥ 1.4.0).
    pub async fn get_latest(&mut self, topic: &str) -> Result<Option<String>> {
        self.send(&Request::GetLatest {
            topic: topic.to_owned(),
        })
        .await?;
        Ok(Some(self.reply().await?).filter(|m| !m.is_empty()))
    }

    /// Like [`Client::get`], but asks again (1 ms pause doubling to 32 ms) until a message
    /// arrives or `timeout` has passed.
    pub async fn get_wait(&mut self, topic: &str, timeout: Duration) -> Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(m) = self.get(topic).await? {
                return Ok(Some(m));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = next_pause(pause);
        }
    }

    /// Asks the server to stop (protocol 1.1; refused with 1008 unless the server's policy
    /// allows this client). Waits until the server closes this connection.
    pub async fn shutdown_server(&mut self) -> Result<()> {
        self.send(&Request::Shutdown {
            topic: String::new(),
        })
        .await?;
        self.awaiting = true;
        match self.reply().await {
            // 1001 (going away): a server shutting down, ours or Python's, may close with it.
            Err(Error::Closed {
                code: 1000 | 1001, ..
            }) => Ok(()),
            // Python servers drop the connection without a close frame.
            Err(Error::Closed {
                code: 1005 | 1006, ..
            }) => Ok(()),
            Err(e) => Err(e),
            Ok(reply) => Err(Error::Protocol(format!(
                "unexpected reply {reply:?} to shutdown"
            ))),
        }
    }

    /// Closes the connection with 1000 (normal closure).
    pub async fn close(mut self) -> Result<()> {
        if self.closed.is_some() {
            return Ok(());
        }
        self.ws.close(None).await.map_err(from_ws)
    }
}
