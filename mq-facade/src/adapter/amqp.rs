//! `amqp://USER:PASS@HOST:PORT/VHOST?queue=NAME`: RabbitMQ (AMQP 0-9-1) through `lapin`.
//!
//! Mapping onto the facade:
//!
//! - **send** publishes a persistent message (delivery mode 2, `mandatory`) to a durable
//!   queue on a channel in confirm mode. It returns once the publish is handed to the
//!   connection ([`Durability::Buffered`]); at most `in_flight` publishes wait for their
//!   confirm at a time (a send past that waits for the oldest).
//! - **flush**(`Written` or `Synced`) waits for the broker's confirm of everything sent
//!   before it. RabbitMQ confirms a persistent message on a durable classic or quorum
//!   queue (and a stream) only once it is on disk (fsync'd; on a quorum queue, on a
//!   majority). A nack, a returned (unroutable) message, or a publish whose connection
//!   was lost before its confirm makes `flush` fail with the producer's sequence numbers
//!   of those messages (the [`Receipt::seq`](crate::Receipt::seq) of their sends): they are never silently
//!   dropped, and the caller can send them again.
//! - **recv** reads from a `basic.consume` with manual acknowledgements and a bounded
//!   prefetch; `ack`/`nack` map to `basic.ack`/`basic.nack` (with or without requeue) and
//!   return once the broker has handled them (a `basic.qos` round trip on the channel: AMQP
//!   0-9-1 does not answer an ack, and one still in flight dies with a killed process);
//!   [`Meta::redelivered`](crate::Meta::redelivered) is the broker's redelivered flag.
//! - **options**: `ttl` becomes the per-message `expiration`, `priority` needs a classic
//!   queue declared with `x-max-priority` (URL parameter `max_priority`). No
//!   `ack_timeout` (RabbitMQ 3.10 has only a broker-wide `consumer_timeout`) and no
//!   `DropOldest`: both are `Unsupported`.
//! - **reconnect**: a producer or consumer whose connection broke opens a new one on its
//!   next call (for up to [`RECONNECT_PATIENCE`], within the call's deadline). The broker
//!   requeues what a lost consumer held; tags of the old connection are then unknown.
//! - **`mode=stream`**: a RabbitMQ stream (`x-queue-type: stream`, retention `max_age`),
//!   read over AMQP from `offset=next` (only messages published after the consumer
//!   subscribed, as dsmq), `first` or `last`. Every consumer reads every message
//!   ([`Delivery::Broadcast`]); a receive consumes (the adapter credits the broker at
//!   once) and `nack` is `Unsupported`, since a stream cannot requeue. A consumer that
//!   reconnects resumes after the last offset it received.
//!
//! The adapter runs its connections on one tokio runtime of its own (two worker threads,
//! started on first use), so the synchronous traits work from any thread; from async code
//! wrap the handles in [`crate::Offload`] so that their blocking calls do not hold up a
//! runtime worker.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lapin::ConnectionProperties;
use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};

use crate::open::{Params, invalid};
use crate::{Capabilities, Delivery, Durability, Error, Result};

mod consumer;
mod producer;

pub(crate) use consumer::consumer;
pub(crate) use producer::producer;

const BACKEND: &str = "amqp";
/// RabbitMQ 3.10's default `max_message_size` (128 MiB).
const MAX_MESSAGE_SIZE: usize = 128 << 20;
/// How long a call keeps trying to reach a broker that went away before it gives up.
pub(crate) const RECONNECT_PATIENCE: Duration = Duration::from_secs(60);
/// How long one TCP + AMQP handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `flush` waits for the confirms of a connection that still looks alive.
const CONFIRM_PATIENCE: Duration = Duration::from_secs(60);
/// Heartbeat interval asked of the broker: a dead peer is noticed within about twice this.
const HEARTBEAT_SECS: u16 = 10;

/// The kind of RabbitMQ queue, from the `mode` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A durable classic queue: priorities, per-message TTL.
    Classic,
    /// A durable quorum queue (Raft-replicated): per-message TTL, no priorities.
    Quorum,
    /// A stream: append-only log, every consumer reads every message.
    Stream,
}

/// Where a stream consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offset {
    /// Only messages published after the consumer subscribed.
    Next,
    /// Everything the stream still retains.
    First,
    /// From the last chunk.
    Last,
}

/// What an `amqp://` URL asks for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    uri: AMQPUri,
    /// `host:port`, for messages.
    address: String,
    pub(crate) queue: String,
    pub(crate) mode: Mode,
    max_priority: Option<u8>,
    prefetch: u16,
    in_flight: usize,
    max_age: Option<String>,
    offset: Offset,
}

/// Parses `amqp://USER:PASS@HOST:PORT/VHOST?queue=NAME&mode=…&max_priority=…&prefetch=…`.
pub(crate) fn parse(raw: &str, url: &url::Url) -> Result<Target> {
    let mut params = Params::new(raw, url)?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            invalid(
                raw,
                "missing broker host: expected amqp://HOST:PORT/VHOST?queue=NAME",
            )
        })?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port().unwrap_or(5672);
    let decode = |what: &str, text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| {
                invalid(
                    raw,
                    format!("the {what} is not valid UTF-8 once percent-decoded"),
                )
            })
    };
    let username = match url.username() {
        "" => "guest".to_owned(),
        user => decode("user name", user)?,
    };
    let password = match url.password() {
        None if url.username().is_empty() => "guest".to_owned(),
        None => String::new(),
        Some(p) => decode("password", p)?,
    };
    let vhost = match url.path() {
        "" | "/" => "/".to_owned(),
        path if path[1..].contains('/') => {
            return Err(invalid(
                raw,
                format!(
                    "unexpected path `{path}`: the path is the virtual host (write `/` inside it as %2f) and the queue is `?queue=NAME`"
                ),
            ));
        }
        path => decode("virtual host", &path[1..])?,
    };
    if url.fragment().is_some() {
        return Err(invalid(raw, "unexpected fragment `#...`"));
    }
    let queue: String = params.take("queue")?.ok_or_else(|| {
        invalid(
            raw,
            "missing parameter `queue` (the queue name: amqp://HOST:PORT/VHOST?queue=NAME)",
        )
    })?;
    if queue.is_empty() || queue.len() > 255 || queue.starts_with("amq.") {
        return Err(invalid(
            raw,
            format!(
                "parameter `queue`: `{queue}` is not a queue name this adapter can declare (1 to 255 bytes, not starting with `amq.`)"
            ),
        ));
    }
    let mode = params.choose(
        "mode",
        &[
            ("classic", Mode::Classic),
            ("quorum", Mode::Quorum),
            ("stream", Mode::Stream),
        ],
    )?;
    let max_priority: Option<u8> = params.take("max_priority")?;
    if let Some(p) = max_priority {
        if mode != Mode::Classic {
            return Err(invalid(
                raw,
                "parameter `max_priority`: RabbitMQ has priorities on classic queues only (mode=classic)",
            ));
        }
        if p == 0 {
            return Err(invalid(raw, "parameter `max_priority`: must be 1 to 255"));
        }
    }
    let prefetch: u16 = params.take("prefetch")?.unwrap_or(100);
    if prefetch == 0 {
        return Err(invalid(
            raw,
            "parameter `prefetch`: must be at least 1 (0 would be unbounded)",
        ));
    }
    let in_flight: usize = params.take("in_flight")?.unwrap_or(1000);
    if in_flight == 0 {
        return Err(invalid(raw, "parameter `in_flight`: must be at least 1"));
    }
    let max_age: Option<String> = params.take("max_age")?;
    if let Some(age) = &max_age {
        if mode != Mode::Stream {
            return Err(invalid(
                raw,
                "parameter `max_age`: retention by age is for streams (mode=stream)",
            ));
        }
        let (digits, unit) = age.split_at(age.len().saturating_sub(1));
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !matches!(unit, "Y" | "M" | "D" | "h" | "m" | "s")
        {
            return Err(invalid(
                raw,
                format!(
                    "parameter `max_age`: `{age}` is not a number followed by one of Y, M, D, h, m, s (e.g. 7D)"
                ),
            ));
        }
    }
    let offset = if mode == Mode::Stream {
        params.choose(
            "offset",
            &[
                ("next", Offset::Next),
                ("first", Offset::First),
                ("last", Offset::Last),
            ],
        )?
    } else {
        if params.take::<String>("offset")?.is_some() {
            return Err(invalid(
                raw,
                "parameter `offset`: a start offset is for streams (mode=stream)",
            ));
        }
        Offset::Next
    };
    params.finish()?;
    let uri = AMQPUri {
        scheme: AMQPScheme::AMQP,
        authority: AMQPAuthority {
            userinfo: AMQPUserInfo { username, password },
            host: host.clone(),
            port,
        },
        vhost,
        query: AMQPQueryString {
            heartbeat: Some(HEARTBEAT_SECS),
            ..AMQPQueryString::default()
        },
    };
    Ok(Target {
        uri,
        address: format!("{host}:{port}"),
        queue,
        mode,
        max_priority,
        prefetch,
        in_flight,
        max_age,
        offset,
    })
}

impl Target {
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::minimal(BACKEND);
        caps.max_message_size = Some(MAX_MESSAGE_SIZE);
        caps.durability = Durability::Synced;
        caps.survives_reopen = true;
        caps.cross_process = true;
        match self.mode {
            Mode::Classic | Mode::Quorum => {
                caps.delivery = Delivery::Competing;
                caps.ack = true;
                caps.ttl = true;
                caps.max_priority = self.max_priority;
            }
            Mode::Stream => {
                caps.delivery = Delivery::Broadcast;
            }
        }
        caps
    }

    /// The queue arguments; declaring an existing queue with other ones is refused by the
    /// broker (PRECONDITION_FAILED), which [`map_lapin`] reports as such.
    fn arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        match self.mode {
            Mode::Classic => {}
            Mode::Quorum => {
                args.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString("quorum".into()),
                );
            }
            Mode::Stream => {
                args.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString("stream".into()),
                );
                if let Some(age) = &self.max_age {
                    args.insert(
                        "x-max-age".into(),
                        AMQPValue::LongString(age.as_str().into()),
                    );
                }
            }
        }
        if let Some(p) = self.max_priority {
            args.insert("x-max-priority".into(), AMQPValue::LongInt(i32::from(p)));
        }
        args
    }

    /// Where the broker is, for messages: `amqp://user@host:port/vhost queue NAME`.
    fn describe(&self) -> String {
        format!(
            "queue {} at amqp://{}@{}/{}",
            self.queue, self.uri.authority.userinfo.username, self.address, self.uri.vhost
        )
    }
}

// ---- errors -------------------------------------------------------------------------------

/// The adapter's own failures, carried as the source of [`Error::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AmqpError {
    /// No connection could be made (refused, unreachable, handshake failed).
    #[error("cannot connect to the broker at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: lapin::Error,
    },
    /// The broker refused the user name or password, or the vhost.
    #[error(
        "the broker at {address} refused access for user `{user}` to vhost `{vhost}`: {detail}"
    )]
    AccessRefused {
        address: String,
        user: String,
        vhost: String,
        detail: String,
    },
    /// The queue exists with other arguments (type, priorities, retention).
    #[error(
        "queue {queue} already exists with other arguments than mode/max_priority/max_age of this url: {detail}"
    )]
    QueueMismatch { queue: String, detail: String },
    /// Any other protocol failure, with what the adapter was doing.
    #[error("{context}: {source}")]
    Protocol {
        context: String,
        #[source]
        source: lapin::Error,
    },
}

/// Messages a broker did not confirm: nacked, returned as unroutable, or sent on a
/// connection that was lost before their confirm came. The source of the
/// [`Error::Backend`] that [`Producer::flush`](crate::Producer::flush) returns then; find it with
/// `source.downcast_ref::<Unconfirmed>()`.
///
/// Each is named by the [`Receipt::seq`](crate::Receipt::seq) its send returned. They were not silently
/// dropped: they may or may not be in the queue, and sending them again gives
/// at-least-once delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} message(s) not confirmed by the broker (producer seq {}): {reason}; they may or may not be in the queue: send them again", .seqs.len(), show_seqs(.seqs))]
pub struct Unconfirmed {
    seqs: Vec<u64>,
    reason: String,
}

impl Unconfirmed {
    /// The [`Receipt::seq`](crate::Receipt::seq) of each message, ascending.
    pub fn seqs(&self) -> &[u64] {
        &self.seqs
    }

    /// Why the first of them failed, e.g. `nacked by the broker`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

fn show_seqs(seqs: &[u64]) -> String {
    // Runs of consecutive numbers as ranges: `3..=7, 9`.
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}..={}", seqs[i], seqs[j])
        } else {
            seqs[i].to_string()
        });
        i = j + 1;
        if parts.len() == 8 && i < seqs.len() {
            parts.push("…".to_owned());
            break;
        }
    }
    parts.join(", ")
}

/// Maps a lapin error during `context` onto the facade's error.
fn map_lapin(target: &Target, context: &str, e: lapin::Error) -> Error {
    if let lapin::ErrorKind::ProtocolError(amqp) = e.kind() {
        match amqp.kind() {
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
            | AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
                return Error::backend(
                    BACKEND,
                    AmqpError::AccessRefused {
                        address: target.address.clone(),
                        user: target.uri.authority.userinfo.username.clone(),
                        vhost: target.uri.vhost.clone(),
                        detail: amqp.get_message().to_string(),
                    },
                );
            }
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
                if context.starts_with("declare") =>
            {
                return Error::backend(
                    BACKEND,
                    AmqpError::QueueMismatch {
                        queue: target.queue.clone(),
                        detail: amqp.get_message().to_string(),
                    },
                );
            }
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => {
                return Error::Closed {
                    queue: target.describe(),
                    reason: format!("{context}: {}", amqp.get_message()).into(),
                };
            }
            _ => {}
        }
    }
    Error::backend(
        BACKEND,
        AmqpError::Protocol {
            context: format!("{context} ({})", target.describe()),
            source: e,
        },
    )
}

/// Whether `e` means the connection (not the request) failed, so a new one may help.
fn is_connection_loss(e: &lapin::Error) -> bool {
    match e.kind() {
        lapin::ErrorKind::IOError(_)
        | lapin::ErrorKind::MissingHeartbeatError
        | lapin::ErrorKind::InvalidChannelState(..)
        | lapin::ErrorKind::InvalidConnectionState(_) => true,
        lapin::ErrorKind::ProtocolError(amqp) => matches!(
            amqp.kind(),
            AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED)
        ),
        _ => false,
    }
}

// ---- the runtime --------------------------------------------------------------------------

fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("mq-amqp")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::backend(BACKEND, format!("cannot start the tokio runtime: {e}")))
}

/// Runs `fut` to completion on this thread, in the context of the adapter's runtime (whose
/// workers drive the sockets and timers). Unlike `Runtime::block_on` this works from any
/// thread, also one inside another tokio runtime (where it blocks that thread, as any
/// synchronous call does: from async code prefer [`crate::Offload`]).
fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    let _context = runtime()?.enter();
    Ok(futures_lite::future::block_on(fut))
}

/// `fut` bounded by `deadline` (`None`: unbounded); `Err(())` when the deadline passed.
async fn until<F: Future>(deadline: Option<Instant>, fut: F) -> std::result::Result<F::Output, ()> {
    match deadline {
        None => Ok(fut.await),
        Some(at) => tokio::time::timeout_at(at.into(), fut)
            .await
            .map_err(|_| ()),
    }
}

/// The earlier of the call's deadline and the reconnect patience from now.
fn reconnect_deadline(deadline: Option<Instant>) -> Instant {
    let patience = Instant::now() + RECONNECT_PATIENCE;
    deadline.map_or(patience, |d| d.min(patience))
}

// ---- connections --------------------------------------------------------------------------

/// One connection with one channel, the queue declared on it.
struct Link {
    connection: lapin::Connection,
    channel: lapin::Channel,
}

impl Link {
    fn alive(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    async fn close(self) {
        // A channel and connection that are already gone fail to close: nothing to do.
        let _ = self.channel.close(200, "bye".into()).await;
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// Opens a connection and a channel and declares the queue, trying again until `deadline`
/// while the broker is unreachable (a refused login or a mismatching queue fails at once).
async fn connect(target: &Target, deadline: Instant) -> Result<Link> {
    let mut pause = Duration::from_millis(50);
    loop {
        let last = match connect_once(target).await {
            Ok(link) => return Ok(link),
            Err((e, retry)) if retry => e,
            Err((e, _)) => return Err(e),
        };
        if Instant::now() + pause >= deadline {
            return Err(last);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

async fn connect_once(target: &Target) -> std::result::Result<Link, (Error, bool)> {
    let properties = ConnectionProperties::default().with_connection_name("mq-facade".into());
    let connected = tokio::time::timeout(
        CONNECT_TIMEOUT,
        lapin::Connection::connect_uri(target.uri.clone(), properties),
    )
    .await;
    let connection = match connected {
        Err(_) => {
            return Err((
                Error::Timeout {
                    what: format!("a connection to the broker at {}", target.address).into(),
                },
                true,
            ));
        }
        Ok(Err(e)) => {
            let mapped = map_lapin(target, "connect", e.clone());
            let retry = !matches!(&mapped, Error::Backend { source, .. } if source.downcast_ref::<AmqpError>().is_some_and(|a| matches!(a, AmqpError::AccessRefused { .. })));
            let mapped = if retry {
                Error::backend(
                    BACKEND,
                    AmqpError::Connect {
                        address: target.address.clone(),
                        source: e,
                    },
                )
            } else {
                mapped
            };
            return Err((mapped, retry));
        }
        Ok(Ok(c)) => c,
    };
    let fail = |context: &'static str| {
        move |e: lapin::Error| {
            let retry = is_connection_loss(&e);
            (map_lapin(target, context, e), retry)
        }
    };
    let channel = connection
        .create_channel()
        .await
        .map_err(fail("open a channel"))?;
    let declared = channel
        .queue_declare(
            target.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            target.arguments(),
        )
        .await;
    if let Err(e) = declared {
        let _ = connection.close(200, "bye".into()).await;
        return Err(fail("declare the queue")(e));
    }
    Ok(Link {
        connection,
        channel,
    })
}

/// Closes a link gracefully (the broker handles every frame sent before the close),
/// waiting at most 5 s for a broker that does not answer.
fn close_soon(link: Link) {
    let _ = block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), link.close()).await;
    });
}

/// Header carrying a message's expiry (ms since the Unix epoch, the sender's clock).
const EXPIRES_AT: &str = "x-mq-expires-at";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_print_as_ranges() {
        assert_eq!(show_seqs(&[1, 2, 3, 5, 7, 8]), "1..=3, 5, 7..=8");
        assert_eq!(show_seqs(&[4]), "4");
        let many: Vec<u64> = (0..40).map(|i| i * 2).collect();
        assert!(show_seqs(&many).ends_with(", …"), "{}", show_seqs(&many));
    }
}
