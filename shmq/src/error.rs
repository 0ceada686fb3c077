//! The crate's single error type.

use std::io;

use crate::Key;

/// Everything that can go wrong with a queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No segment exists at the key (or it was deleted).
    #[error("no shared-memory segment at key {0}")]
    NotFound(Key),
    /// `create` found a segment already at the key; it never reuses or removes one.
    #[error("a shared-memory segment already exists at key {0}")]
    AlreadyExists(Key),
    /// The segment's permissions do not let this process attach it read-write.
    #[error("permission denied on the shared-memory segment at key {0}")]
    PermissionDenied(Key),
    /// The size arithmetic overflows, or the kernel refuses the size (above `SHMMAX`).
    #[error("queue too large: {0}")]
    TooLarge(String),
    /// An argument out of range (zero words or capacity, key 0).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A message or buffer whose length is not the queue's message size.
    #[error("message size mismatch: the queue holds messages of {expected} bytes, got {got}")]
    SizeMismatch {
        /// The queue's message size in bytes.
        expected: usize,
        /// The length passed in.
        got: usize,
    },
    /// The segment's content is malformed (it is untrusted input).
    #[error("corrupt segment at key {key}: field `{field}` at offset {offset}: {detail}")]
    Corrupt {
        /// The segment's key.
        key: Key,
        /// The field that is wrong.
        field: &'static str,
        /// Its byte offset in the segment.
        offset: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// Not a queue of a format this crate knows (magic or version).
    #[error("unsupported segment at key {key}: {detail}")]
    Unsupported {
        /// The segment's key.
        key: Key,
        /// What was found.
        detail: String,
    },
    /// The deadline passed before the operation could complete.
    #[error("timed out waiting on the queue at key {0}")]
    Timeout(Key),
    /// A peer that cannot be recovered (a Go process, or a live one) stayed in the way for
    /// longer than the stall timeout: format G, a lock it holds; format N, a slot it is still
    /// writing (the word is the slot's sequence word). Try and shift operations give it after
    /// the stall timeout, format-G block operations at their deadline (format N: `Timeout`).
    /// The message was not enqueued or dequeued (a format-N shift may already have discarded
    /// the oldest one).
    #[error(
        "peer stuck in the queue at key {key}: word {word:#x} at offset {offset} unchanged for longer than the stall timeout"
    )]
    LockStuck {
        /// The segment's key.
        key: Key,
        /// Offset of the lock word (format G) or slot sequence word (format N).
        offset: usize,
        /// The value it held.
        word: u64,
    },
    /// This producer's position was declared abandoned by a peer (it stalled for longer than
    /// the stall timeout); the message was not enqueued.
    #[error(
        "enqueue revoked in the queue at key {0}: this producer stalled past the stall timeout"
    )]
    Revoked(Key),
    /// `find_free_key` found no free key within its bound.
    #[error("no free System V key found after {0} random probes")]
    NoFreeKey(u32),
    /// Any other operating-system error, with the operation that failed.
    #[error("{op} on key {key}: {source}")]
    Os {
        /// The system call or step.
        op: &'static str,
        /// The key involved.
        key: Key,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
