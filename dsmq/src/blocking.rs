//! The blocking client: the same calls as [`crate::client::Client`], on a plain
//! `std::net::TcpStream`, no async runtime needed.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

use crate::client::{Incoming, incoming, next_pause, repeat, target, unasked, url_of};
use crate::error::from_ws;
use crate::format::{self, Request};
use crate::{Error, Result};

/// A blocking connection to a dsmq server.
///
/// ```no_run
/// let mut mq = dsmq::blocking::Client::connect("127.0.0.1", 30008)?;
/// mq.put("greetings", "hello world!")?;
/// let msg: Option<String> = mq.get("greetings")?; // None: nothing eligible
/// # Ok::<(), dsmq::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    ws: WebSocket<TcpStream>,
    closed: Option<Error>,
    /// What [`Client::set_timeout`] set.
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to `ws://HOST:PORT/` (no retry).
    pub fn connect(host: &str, port: u16) -> Result<Client> {
        Client::connect_url(&url_of(host, port))
    }

    /// Connects to a `ws://` URL.
    pub fn connect_url(url: &str) -> Result<Client> {
        Client::connect_inner(url, None)
    }

    /// Connects to `ws://HOST:PORT/`, giving up when the TCP connection, or any read or
    /// write of the WebSocket handshake, takes longer than `timeout`: a host that does not
    /// answer, or a port that accepts and then says nothing, is an [`Error::Connect`]
    /// instead of a wait without end. Later calls have no timeout (see
    /// [`Client::set_timeout`]).
    pub fn connect_timeout(host: &str, port: u16, timeout: Duration) -> Result<Client> {
        Client::connect_inner(&url_of(host, port), Some(timeout))
    }

    fn connect_inner(url: &str, timeout: Option<Duration>) -> Result<Client> {
        use std::net::ToSocketAddrs;
        let (request, addr) = target(url)?;
        let connect_err = |e: tungstenite::Error| Error::Connect {
            url: url.to_owned(),
            source: Box::new(e),
        };
        let io_err = |e: std::io::Error| connect_err(tungstenite::Error::Io(e));
        let stream = match timeout {
            None => TcpStream::connect(&addr).map_err(io_err)?,
            Some(timeout) => {
                // The first address that answers, as `TcpStream::connect` does.
                let mut last = std::io::Error::other(format!("{addr} resolves to no address"));
                let mut found = None;
                for a in addr.to_socket_addrs().map_err(io_err)? {
                    match TcpStream::connect_timeout(&a, timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                found.ok_or_else(|| io_err(last))?
            }
        };
        stream.set_nodelay(true).map_err(io_err)?;
        stream.set_read_timeout(timeout).map_err(io_err)?;
        stream.set_write_timeout(timeout).map_err(io_err)?;
        let (ws, _response) = tungstenite::client(request, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => connect_err(e),
            // A blocking socket only stops half-way when its timeout passed.
            tungstenite::HandshakeError::Interrupted(_) => io_err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no WebSocket handshake reply within {:?}",
                    timeout.unwrap_or_default()
                ),
            )),
        })?;
        ws.get_ref().set_read_timeout(None).map_err(io_err)?;
        ws.get_ref().set_write_timeout(None).map_err(io_err)?;
        Ok(Client {
            ws,
            closed: None,
            timeout: None,
        })
    }

    /// Connects, retrying up to `attempts` times with a pause of 10 ms doubling each time.
    pub fn connect_with_retry(host: &str, port: u16, attempts: u32) -> Result<Client> {
        let mut pause = Duration::from_millis(10);
        let mut attempt = 1;
        loop {
            match Client::connect(host, port) {
                Ok(c) => return Ok(c),
                Err(e) if attempt >= attempts.max(1) => return Err(e),
                Err(_) => {
                    std::thread::sleep(pause);
                    pause *= 2;
                    attempt += 1;
                }
            }
        }
    }

    /// Limits how long a call waits for the server (`None`: forever, the default). A call
    /// that times out is [`Error::Timeout`] and leaves the connection unusable (its reply
    /// may still come): every later call is [`Error::Closed`].
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.ws.get_ref().set_read_timeout(timeout)?;
        self.ws.get_ref().set_write_timeout(timeout)?;
        self.timeout = timeout;
        Ok(())
    }

    /// A tungstenite error of a call: a socket timeout is [`Error::Timeout`].
    fn call_error(&self, e: tungstenite::Error) -> Error {
        use std::io::ErrorKind::{TimedOut, WouldBlock};
        match (&e, self.timeout) {
            (tungstenite::Error::Io(io), Some(t)) if matches!(io.kind(), WouldBlock | TimedOut) => {
                Error::Timeout(t)
            }
            _ => from_ws(e),
        }
    }

    /// Reads, without waiting, what the server sent unasked: a close frame (or a lost
    /// connection) fails the request now, rather than a put the server will never read.
    fn check_unasked(&mut self) -> Result<()> {
        self.ws.get_ref().set_nonblocking(true)?;
        let found = loop {
            match self.ws.read() {
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    break None;
                }
                next => {
                    if let Some(e) = unasked(Some(next)) {
                        break Some(e);
                    }
                }
            }
        };
        self.ws.get_ref().set_nonblocking(false)?;
        match found {
            Some(e) => {
                self.closed = Some(repeat(&e));
                Err(e)
            }
            None => Ok(()),
        }
    }

    fn send(&mut self, request: &Request) -> Result<()> {
        if let Some(e) = &self.closed {
            return Err(repeat(e));
        }
        self.check_unasked()?;
        let text = format::encode_request(request);
        if let Err(e) = self.ws.send(Message::Text(text.into())) {
            let e = self.call_error(e);
            self.closed = Some(repeat(&e));
            return Err(e);
        }
        Ok(())
    }

    fn reply(&mut self) -> Result<String> {
        loop {
            let e = match self.ws.read() {
                Err(e) => self.call_error(e),
                Ok(m) => match incoming(m) {
                    Incoming::Reply(r) => return Ok(r),
                    Incoming::Ignore => continue,
                    Incoming::Closed(e) => e,
                },
            };
            self.closed = Some(repeat(&e));
            return Err(e);
        }
    }

    /// Puts `message` into `topic`. Not acknowledged by the server.
    pub fn put(&mut self, topic: &str, message: &str) -> Result<()> {
        self.send(&Request::Put {
            topic: topic.to_owned(),
            message: message.to_owned(),
        })
    }

    /// The oldest eligible unread message of `topic`, or `None`.
    pub fn get(&mut self, topic: &str) -> Result<Option<String>> {
        Ok(Some(self.get_raw(topic)?).filter(|m| !m.is_empty()))
    }

    /// [`Client::get`] in the original's form: `""` when nothing is eligible.
    pub fn get_raw(&mut self, topic: &str) -> Result<String> {
        self.send(&Request::Get {
            topic: topic.to_owned(),
        })?;
        self.reply()
    }

    /// The newest eligible unread message of `topic` (older unread ones are skipped).
    pub fn get_latest(&mut self, topic: &str) -> Result<Option<String>> {
        self.send(&Request::GetLatest {
            topic: topic.to_owned(),
        })?;
        Ok(Some(self.reply()?).filter(|m| !m.is_empty()))
    }

    /// Like [`Client::get`], but asks again (1 ms pause doubling to 32 ms) until a message
    /// arrives or `timeout` has passed.
    pub fn get_wait(&mut self, topic: &str, timeout: Duration) -> Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(m) = self.get(topic)? {
                return Ok(Some(m));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            std::thread::sleep(pause.min(left));
            pause = next_pause(pause);
        }
    }

    /// Asks the server to stop; waits until it closes this connection.
    pub fn shutdown_server(&mut self) -> Result<()> {
        self.send(&Request::Shutdown {
            topic: String::new(),
        })?;
        match self.reply() {
            // 1001 (going away): a server shutting down, ours or Python's, may close with it;
            // Python servers may also drop the connection without a close frame.
            Err(Error::Closed {
                code: 1000 | 1001 | 1005 | 1006,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
            Ok(reply) => Err(Error::Protocol(format!(
                "unexpected reply {reply:?} to shutdown"
            ))),
        }
    }

    /// Closes the connection with 1000 (normal closure).
    pub fn close(mut self) -> Result<()> {
        if self.closed.is_some() {
            return Ok(());
        }
        self.ws.close(None).map_err(from_ws)?;
        // Wait for the server's close frame (bounded), then drop the socket.
        let _ = self
            .ws
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(1)));
        while self.ws.read().is_ok() {}
        Ok(())
    }
}
