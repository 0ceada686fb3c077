//! The plain data of the contract: how long to wait, how durable, per-message options,
//! what a send returns, what a receive returns, and what a backend can do.

use std::fmt;
use std::time::{Duration, Instant};

/// How long a call may block.
///
/// Timeouts are turned into deadlines on entry ([`Wait::timeout`]), so a call that loops
/// internally (spurious wake-ups, reconnects) never waits longer than asked in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wait {
    /// Do not block: succeed now or report `Full` (send) / `Ok(None)` (receive).
    NoWait,
    /// Block until this instant at the latest.
    Until(Instant),
    /// Block until the operation can complete or the queue is closed.
    Forever,
}

impl Wait {
    /// A deadline `timeout` from now. A timeout too large to represent waits forever.
    pub fn timeout(timeout: Duration) -> Wait {
        Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until)
    }

    /// The deadline, if any: `NoWait` is a deadline of "now".
    pub fn deadline(self) -> Option<Instant> {
        match self {
            Wait::NoWait => Some(Instant::now()),
            Wait::Until(at) => Some(at),
            Wait::Forever => None,
        }
    }

    /// Time left before the deadline: `Some(ZERO)` once it has passed, `None` for `Forever`.
    pub fn remaining(self) -> Option<Duration> {
        self.deadline()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed (always true for `NoWait`, never for `Forever`).
    pub fn expired(self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }
}

/// How far a message has travelled towards stable storage.
///
/// Ordered: `Buffered < Written < Synced`. [`Producer::flush`](crate::Producer::flush) takes
/// the level to reach; [`Capabilities::durability`] is the strongest level a backend reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Durability {
    /// Accepted by the queue and visible to consumers in this process; lost if the process dies.
    Buffered,
    /// Handed to the operating system or a broker: survives a crash of this process,
    /// not a power loss or an OS crash.
    Written,
    /// On stable storage (fsync'd, or confirmed by a broker that syncs before confirming):
    /// survives power loss.
    Synced,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Buffered => "buffered",
            Durability::Written => "written",
            Durability::Synced => "synced",
        })
    }
}

/// What a send does when the queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Overflow {
    /// Wait for room as the call's [`Wait`] says (`Full` for `NoWait`, `Timeout` at the deadline).
    #[default]
    Wait,
    /// Make room by discarding the oldest ready message of the lowest priority (shmq's
    /// cyclic "shift" mode). Never waits.
    DropOldest,
}

/// Per-message options. Build with the methods: `SendOptions::new().priority(5)`.
///
/// A field the backend cannot honour makes the send fail with
/// [`Error::Unsupported`](crate::Error::Unsupported); it is never silently ignored.
/// `SendOptions::default()` asks for nothing and is accepted by every backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SendOptions {
    /// Delivery priority: higher is delivered first; equal priorities keep send order.
    /// `None` is the queue's default (0). Range: `0..=Capabilities::max_priority`.
    pub priority: Option<u8>,
    /// Discard the message if it has not been delivered this long after the send.
    pub ttl: Option<Duration>,
    /// Requeue the message if a consumer holds it this long without `ack` or `nack`.
    pub ack_timeout: Option<Duration>,
    /// What to do when the queue is full.
    pub overflow: Overflow,
}

impl SendOptions {
    /// No options: the queue's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`SendOptions::priority`].
    #[must_use]
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets [`SendOptions::ttl`].
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets [`SendOptions::ack_timeout`].
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = Some(timeout);
        self
    }

    /// Sets [`SendOptions::overflow`].
    #[must_use]
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Checks every field against `caps`; the first one the backend cannot honour is
    /// returned as [`Error::Unsupported`](crate::Error::Unsupported). Adapters call this
    /// first so that no backend forgets a field.
    pub fn check(&self, caps: &Capabilities, backend: &'static str) -> crate::Result<()> {
        let unsupported = |what: String| Err(crate::Error::unsupported(backend, what));
        if let Some(p) = self.priority {
            match caps.max_priority {
                None => return unsupported(format!("priority {p} (this queue has no priorities)")),
                Some(max) if p > max => {
                    return unsupported(format!("priority {p} (this queue allows 0..={max})"));
                }
                Some(_) => {}
            }
        }
        if let Some(ttl) = self.ttl
            && !caps.ttl
        {
            return unsupported(format!("ttl {ttl:?} (messages do not expire)"));
        }
        if let Some(t) = self.ack_timeout
            && !caps.ack_timeout
        {
            return unsupported(format!("ack_timeout {t:?} (no acknowledgement deadlines)"));
        }
        if self.overflow == Overflow::DropOldest && !caps.drop_oldest {
            return unsupported(
                "overflow DropOldest (the queue cannot discard its oldest message)".to_owned(),
            );
        }
        Ok(())
    }
}

/// What a successful send tells about the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Receipt {
    /// The backend's sequence number or id for the message, where it has one.
    pub seq: Option<u64>,
    /// How durable the message already is when `send` returns (a backend whose offer syncs
    /// reports `Synced`; most report `Buffered` or `Written` and need a `flush`).
    pub durability: Durability,
}

impl Receipt {
    /// A receipt; for adapters.
    pub fn new(seq: Option<u64>, durability: Durability) -> Self {
        Receipt { seq, durability }
    }
}

/// Identifies one delivery to one consumer, for [`Consumer::ack`](crate::Consumer::ack) and
/// [`Consumer::nack`](crate::Consumer::nack). Opaque: only the consumer that returned it
/// understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(u64);

impl Tag {
    /// Wraps a backend's delivery number; for adapters.
    pub const fn from_raw(raw: u64) -> Tag {
        Tag(raw)
    }

    /// The backend's delivery number; for adapters.
    pub const fn into_raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a receive tells about the message besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Meta {
    /// Pass to `ack` / `nack`. On backends without acknowledgements
    /// ([`Capabilities::ack`] false) the message is already consumed and `ack` is a no-op.
    pub tag: Tag,
    /// Whether this message was delivered before (nacked with requeue, ack timeout, or a
    /// consumer that went away without acknowledging).
    pub redelivered: bool,
    /// The priority the message was sent with, where the backend has priorities.
    pub priority: Option<u8>,
    /// The backend's sequence number, as in the [`Receipt`], where it has one.
    pub seq: Option<u64>,
}

impl Meta {
    /// Metadata for a delivery; for adapters.
    pub fn new(tag: Tag) -> Self {
        Meta {
            tag,
            redelivered: false,
            priority: None,
            seq: None,
        }
    }

    /// Sets [`Meta::redelivered`].
    #[must_use]
    pub fn redelivered(mut self, redelivered: bool) -> Self {
        self.redelivered = redelivered;
        self
    }

    /// Sets [`Meta::priority`].
    #[must_use]
    pub fn priority(mut self, priority: Option<u8>) -> Self {
        self.priority = priority;
        self
    }

    /// Sets [`Meta::seq`].
    #[must_use]
    pub fn seq(mut self, seq: Option<u64>) -> Self {
        self.seq = seq;
        self
    }
}

/// A received message: its payload and its [`Meta`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// The bytes as sent.
    pub payload: Vec<u8>,
    /// Tag, redelivery flag, priority, sequence number.
    pub meta: Meta,
}

impl Message {
    /// The delivery tag, for `ack` / `nack`.
    pub fn tag(&self) -> Tag {
        self.meta.tag
    }
}

/// Who receives a message when several consumers read one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// Each message goes to exactly one consumer (a work queue).
    Competing,
    /// Each consumer receives every message sent after it connected (pub/sub, as dsmq).
    Broadcast,
}

/// What a queue can do. Callers and the conformance suite ask here first instead of
/// probing with sends that fail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend's URL scheme.
    pub backend: &'static str,
    /// Competing consumers or broadcast.
    pub delivery: Delivery,
    /// Deliveries stay held until `ack`; `nack(tag, true)` redelivers; a consumer that goes
    /// away without acknowledging gives its messages back. False: a receive consumes.
    pub ack: bool,
    /// Highest [`SendOptions::priority`] accepted; `None`: no priorities.
    pub max_priority: Option<u8>,
    /// [`SendOptions::ttl`] is honoured.
    pub ttl: bool,
    /// [`SendOptions::ack_timeout`] is honoured.
    pub ack_timeout: bool,
    /// [`Overflow::DropOldest`] is honoured.
    pub drop_oldest: bool,
    /// Most messages the queue holds (ready and unacknowledged); `None`: bounded only by
    /// the backend's storage.
    pub capacity: Option<usize>,
    /// Largest payload accepted, in bytes; `None`: no limit of its own.
    pub max_message_size: Option<usize>,
    /// Strongest level [`Producer::flush`](crate::Producer::flush) reaches.
    pub durability: Durability,
    /// Messages outlive every handle: drop all producers and consumers, open the same URL
    /// again, and unacknowledged messages are still there.
    pub survives_reopen: bool,
    /// Another process can open the same queue (by URL).
    pub cross_process: bool,
}

impl Capabilities {
    /// The least a backend can be: competing consumers, no acks, no options, `Buffered`,
    /// in-process. Adapters start here and switch on what they support.
    pub fn minimal(backend: &'static str) -> Self {
        Capabilities {
            backend,
            delivery: Delivery::Competing,
            ack: false,
            max_priority: None,
            ttl: false,
            ack_timeout: false,
            drop_oldest: false,
            capacity: None,
            max_message_size: None,
            durability: Durability::Buffered,
            survives_reopen: false,
            cross_process: false,
        }
    }

    /// Checks a flush level against [`Capabilities::durability`].
    pub fn check_flush(&self, level: Durability) -> crate::Result<()> {
        if level > self.durability {
            return Err(crate::Error::unsupported(
                self.backend,
                format!(
                    "flush({level}): this queue reaches at most {}",
                    self.durability
                ),
            ));
        }
        Ok(())
    }

    /// Checks a payload size against [`Capabilities::max_message_size`].
    pub fn check_size(&self, size: usize) -> crate::Result<()> {
        match self.max_message_size {
            Some(max) if size > max => Err(crate::Error::TooLarge { size, max }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_timeout_becomes_a_deadline_and_overflow_waits_forever() {
        let before = Instant::now();
        let Wait::Until(at) = Wait::timeout(Duration::from_millis(50)) else {
            panic!("a small timeout must be a deadline");
        };
        assert!(at >= before + Duration::from_millis(50));
        assert_eq!(Wait::timeout(Duration::MAX), Wait::Forever);
        assert!(Wait::NoWait.expired());
        assert!(!Wait::Forever.expired());
        assert_eq!(Wait::Forever.remaining(), None);
    }

    #[test]
    fn send_options_check_names_the_field_the_backend_lacks() {
        let caps = Capabilities::minimal("test");
        let err = SendOptions::new()
            .priority(3)
            .check(&caps, "test")
            .unwrap_err();
        assert!(err.to_string().contains("priority 3"), "{err}");
        let err = SendOptions::new()
            .ttl(Duration::from_secs(1))
            .check(&caps, "test")
            .unwrap_err();
        assert!(err.to_string().contains("ttl"), "{err}");
        let err = SendOptions::new()
            .overflow(Overflow::DropOldest)
            .check(&caps, "test")
            .unwrap_err();
        assert!(err.to_string().contains("DropOldest"), "{err}");
        let err = SendOptions::new()
            .ack_timeout(Duration::from_secs(1))
            .check(&caps, "test")
            .unwrap_err();
        assert!(err.to_string().contains("ack_timeout"), "{err}");
        SendOptions::new().check(&caps, "test").unwrap();

        let caps = Capabilities {
            max_priority: Some(4),
            ..Capabilities::minimal("test")
        };
        SendOptions::new().priority(4).check(&caps, "test").unwrap();
        let err = SendOptions::new()
            .priority(5)
            .check(&caps, "test")
            .unwrap_err();
        assert!(err.to_string().contains("0..=4"), "{err}");
    }

    #[test]
    fn flush_beyond_the_backend_durability_is_unsupported() {
        let caps = Capabilities {
            durability: Durability::Written,
            ..Capabilities::minimal("test")
        };
        caps.check_flush(Durability::Buffered).unwrap();
        caps.check_flush(Durability::Written).unwrap();
        let err = caps.check_flush(Durability::Synced).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported by the test backend: flush(synced): this queue reaches at most written"
        );
    }
}
