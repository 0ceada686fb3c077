//! # dsmq: the dead simple message queue, in Rust
//!
//! A central exchange for messages between processes on many machines: a WebSocket server
//! that keeps messages by topic in an in-memory SQLite database, and clients that `put`
//! and `get`. Wire-compatible with the Python package `dsmq` (1.0.0, and the `get_latest`
//! and `shutdown` actions of 1.4.x): Python clients talk to this server, and these clients
//! to a Python server.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> dsmq::Result<()> {
//! use dsmq::{Client, Server, ServerConfig};
//!
//! let server = Server::bind("127.0.0.1:0", ServerConfig::default()).await?;
//! let port = server.local_addr().port();
//! let stop = server.handle();
//! tokio::spawn(server.run());
//!
//! let mut reader = Client::connect("127.0.0.1", port).await?; // sees what comes after this
//! let mut writer = Client::connect("127.0.0.1", port).await?;
//! writer.put("greetings", "hello world!").await?;
//! writer.put("greetings", "hello again").await?;
//! assert_eq!(reader.get_wait("greetings", std::time::Duration::from_secs(5)).await?.as_deref(), Some("hello world!"));
//! assert_eq!(reader.get("greetings").await?.as_deref(), Some("hello again"));
//! assert_eq!(reader.get("greetings").await?, None); // the protocol's ""
//! stop.shutdown();
//! stop.stopped().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Behaviour (the original's, kept)
//!
//! - **One-to-many**: reading never removes a message; every connection has its own read
//!   position per topic, so every reader sees every message once.
//! - **Only what comes after you**: a connection sees only messages stored after it was
//!   accepted. Reconnecting starts over.
//! - **Oldest first** per topic, in the order the server stored them; `get_latest` jumps to
//!   the newest and skips the rest.
//! - **`""` means nothing**: the protocol cannot tell an empty message from none; the
//!   clients' `get` returns `None` for both (`get_raw` keeps the `""`).
//! - **Retention**: a message lives 600 s ([`ServerConfig::ttl`]), then it is gone.
//! - **`put` is not acknowledged.**
//!
//! ## Guarantees (better than the original)
//!
//! - Ordering by a sequence number, not by timestamps: many puts in one clock tick are all
//!   delivered, in order (the original skips messages with equal timestamps).
//! - One SQLite connection, the only one, serializes every operation: no "database is locked"
//!   errors and no silently dropped puts under concurrent clients (the original loses most of
//!   them). A failed store operation closes the connection with 1011 and is counted.
//! - Exact retention whatever the traffic, bounded memory ([`ServerConfig::max_stored_bytes`],
//!   [`ServerConfig::max_messages_per_topic`]: oldest evicted first, counted).
//! - Bad requests close the connection with a specific close code and reason (see
//!   [`format`](mod@format)); the server stays up. Size and connection limits; `GET /healthz` and
//!   Prometheus `GET /metrics` on the same port; graceful stop on SIGINT/SIGTERM, through
//!   [`ServerHandle::shutdown`], or the `shutdown` action when [`ShutdownPolicy`] allows.
//! - Nothing touches the filesystem.

#![forbid(unsafe_code)]

pub mod blocking;
pub mod client;
mod error;
pub mod format;
mod metrics;
mod server;
mod store;

pub use client::Client;
pub use error::{Error, Result};
pub use server::{Server, ServerConfig, ServerHandle, ShutdownPolicy, serve, stop_on_signals};
pub use store::Clock;
