//! The one error type of the crate.

use crate::format::FrameError;

/// Every way a dsmq call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCP connection or the WebSocket handshake to `url` failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The `ws://` URL.
        url: String,
        /// What went wrong.
        source: Box<tungstenite::Error>,
    },

    /// The connection is closed: by the server with a close frame (`code`, `reason`), or by
    /// the network (`code` 1006, the "abnormal closure" of RFC 6455, with the cause).
    #[error("connection closed (code {code}): {reason}")]
    Closed {
        /// The WebSocket close code, e.g. 1001 when the server shuts down.
        code: u16,
        /// The server's reason, or what happened to the connection.
        reason: String,
    },

    /// The peer sent something the protocol does not allow (a reply that is not
    /// `{"message": ...}`, a reply to nothing).
    #[error("protocol error: {0}")]
    Protocol(String),

    /// A frame failed to decode.
    #[error(transparent)]
    Frame(#[from] FrameError),

    /// The server could not listen on `addr`.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },

    /// An I/O error of the server or a client.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// The in-memory SQLite store failed (it is logged and the request's connection closed
    /// with 1011; nothing is dropped silently).
    #[error("store error: {0}")]
    Store(String),

    /// A client call did not complete in time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.to_string())
    }
}

/// Maps a tungstenite error on an established connection.
pub(crate) fn from_ws(e: tungstenite::Error) -> Error {
    use tungstenite::Error as W;
    match e {
        W::ConnectionClosed | W::AlreadyClosed => Error::Closed {
            code: 1006,
            reason: "the connection is already closed".into(),
        },
        W::Io(io) => Error::Closed {
            code: 1006,
            reason: format!("connection lost: {io}"),
        },
        W::Protocol(p) => Error::Closed {
            code: 1006,
            reason: format!("connection lost: {p}"),
        },
        W::Capacity(c) => Error::Protocol(format!("frame over the size limit: {c}")),
        other => Error::Protocol(other.to_string()),
    }
}
