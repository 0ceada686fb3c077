//! The one error type of the facade.

use std::borrow::Cow;

use crate::Tag;

/// Every way a facade call can fail.
///
/// Each adapter maps its backend's own error enum onto these variants exhaustively, so a
/// caller can react to `Full`, `Timeout` or `Closed` the same way whatever the backend.
/// Messages are lowercase and name what was wrong (the URL part, the size, the tag).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend cannot honour what was asked: a [`SendOptions`](crate::SendOptions) field,
    /// a [`Durability`](crate::Durability) level, or an operation such as `nack` with requeue.
    /// Never silently ignored: see [`Capabilities`](crate::Capabilities) to ask first.
    #[error("unsupported by the {backend} backend: {what}")]
    Unsupported {
        /// The backend's URL scheme, e.g. `mem`.
        backend: &'static str,
        /// What was asked for, e.g. `priority 7 (this queue allows 0..=4)`.
        what: Cow<'static, str>,
    },

    /// A `Wait::Until` deadline passed before the operation could complete (a send to a full
    /// queue, a connection). An empty queue is not a timeout: receive returns `Ok(None)`.
    #[error("timed out after waiting for {what}")]
    Timeout {
        /// What the call was waiting for, e.g. `room in queue orders`.
        what: Cow<'static, str>,
    },

    /// A `Wait::NoWait` send found the queue at capacity. Nothing was enqueued.
    #[error("queue {queue} is full ({capacity} messages)")]
    Full {
        /// The queue's name.
        queue: String,
        /// Its capacity in messages.
        capacity: usize,
    },

    /// The queue was deleted, the server went away, or the handle was closed. Nothing
    /// further will succeed on this handle.
    #[error("queue {queue} is closed: {reason}")]
    Closed {
        /// The queue's name or address.
        queue: String,
        /// Why, e.g. `deleted` or `connection reset by peer`.
        reason: Cow<'static, str>,
    },

    /// Data read back from a file, shared memory or the network failed validation.
    /// `location` names the file, offset or frame; `detail` the field and its bad value.
    #[error("corrupt data at {location}: {detail}")]
    Corrupt {
        /// Where: `orders.q1 offset 4096`, `segment 0x5151 slot 3`, `frame 12`.
        location: String,
        /// What: `record length 4294967295 exceeds the file size 65536`.
        detail: String,
    },

    /// The payload is larger than the queue accepts. Nothing was enqueued.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The largest payload the queue accepts.
        max: usize,
    },

    /// An `ack` or `nack` named a tag this consumer does not hold: never delivered to it,
    /// or already acknowledged, or requeued after its ack timeout.
    #[error(
        "unknown delivery tag {0}: not held by this consumer (already acked, requeued, or never delivered)"
    )]
    UnknownTag(Tag),

    /// A queue URL could not be understood. `reason` names the bad part.
    #[error("invalid queue url `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What was wrong, e.g. `parameter capacity: \`ten\` is not a number`.
        reason: String,
    },

    /// The URL names a backend that this build of `mq-facade` cannot open.
    #[error("backend `{scheme}` is not available in this build: {hint}")]
    BackendUnavailable {
        /// The URL scheme.
        scheme: String,
        /// How to get it, e.g. `enable the \`mem\` feature of mq-facade`.
        hint: Cow<'static, str>,
    },

    /// `send_batch` failed part-way: the first `sent` messages were enqueued, the rest were not.
    #[error("batch stopped after {sent} of {total} messages: {source}")]
    PartialBatch {
        /// Messages enqueued before the failure, in order.
        sent: usize,
        /// Messages in the batch.
        total: usize,
        /// Why the next one failed.
        source: Box<Error>,
    },

    /// Any other failure of the backend (I/O, protocol), with its own error as the source.
    #[error("{backend} backend: {source}")]
    Backend {
        /// The backend's URL scheme.
        backend: &'static str,
        /// The backend's own error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// Shorthand for [`Error::Unsupported`].
    pub fn unsupported(backend: &'static str, what: impl Into<Cow<'static, str>>) -> Self {
        Error::Unsupported {
            backend,
            what: what.into(),
        }
    }

    /// Shorthand for [`Error::Backend`].
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }

    /// Whether retrying the same call later may succeed (`Full`, `Timeout`).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Full { .. } | Error::Timeout { .. })
    }
}

/// `Result` with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
