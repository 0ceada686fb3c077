//! The one error type of the crate.

use std::path::PathBuf;

/// Every way a duraqueue call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ring size is not a positive multiple of 32 and of the page size, or too large for
    /// the format.
    #[error("invalid ring size {size}: {reason}")]
    InvalidSize {
        /// The size asked for (or found).
        size: u64,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// An existing queue file has another ring size than the one asked for.
    #[error("{path}: the queue file has a ring of {found} bytes, not {expected}")]
    SizeMismatch {
        /// The queue file.
        path: PathBuf,
        /// The size asked for.
        expected: u64,
        /// The size of the file's ring.
        found: u64,
    },

    /// The record does not fit in the free space of the ring now.
    #[error("queue full: a record of {needed} bytes does not fit in the {free} free bytes")]
    Full {
        /// Bytes the record needs (header, payload, padding, footer).
        needed: u64,
        /// Free bytes in the ring.
        free: u64,
    },

    /// The item can never fit: its record is larger than the ring.
    #[error(
        "item of {len} bytes is too large: its record of {record} bytes exceeds the ring of {ring} bytes"
    )]
    TooLarge {
        /// Payload length.
        len: u64,
        /// Record size (payload + padding + 64).
        record: u64,
        /// Ring size.
        ring: u64,
    },

    /// The file's contents fail validation: `offset` is the byte offset in the file.
    #[error("{path}: corrupt data at offset {offset}: {detail}")]
    Corrupt {
        /// The queue file.
        path: PathBuf,
        /// Byte offset in the file.
        offset: u64,
        /// Which field and what was wrong with it.
        detail: String,
    },

    /// Another handle holds the advisory lock this handle needs.
    #[error("{path}: locked by another {role} (one writer and one reader per queue)")]
    Locked {
        /// The queue file.
        path: PathBuf,
        /// `writer` or `reader`.
        role: &'static str,
    },

    /// An earlier sync failed; the handle refuses further writes, because a retried fsync
    /// can report success without the data being on disk.
    #[error("{path}: the handle is poisoned by an earlier failed sync: {cause}")]
    Poisoned {
        /// The queue file.
        path: PathBuf,
        /// The failure that poisoned it.
        cause: String,
    },

    /// An operating-system call failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The queue file.
        path: PathBuf,
        /// What was being done, e.g. `mmap the mirror`.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `Result` with duraqueue's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
