//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

use crate::Framing;

/// Every way a dmq call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The map file fails validation (size, targets, mode, paths, or a position that
    /// contradicts the data files). Nothing was changed; see [`crate::Queue::repair`].
    #[error("{path}: corrupt map: {reason}")]
    CorruptMap {
        /// The map file.
        path: PathBuf,
        /// Which field and what was wrong with it.
        reason: String,
    },

    /// A data file holds bytes that are not a record of the queue's framing.
    #[error("{file}: corrupt record at offset {offset}: {reason}")]
    Corrupt {
        /// The data file.
        file: PathBuf,
        /// Byte offset of the record in the file.
        offset: u64,
        /// What was wrong.
        reason: String,
    },

    /// At a switch point a data file ends in an incomplete record (no terminator, or a
    /// frame shorter than its header says). [`crate::Reader::skip_torn`] drops it.
    #[error("{file}: torn record at offset {offset}: the file ends inside it")]
    TornRecord {
        /// The data file.
        file: PathBuf,
        /// Byte offset where the incomplete record starts.
        offset: u64,
    },

    /// The payload exceeds the largest record this queue accepts; nothing was written.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// Largest payload accepted.
        max: usize,
    },

    /// The payload contains the framing's delimiter, which would split it into several
    /// messages; nothing was written.
    #[error("payload contains the {framing} delimiter at byte {at}, which would split it")]
    DelimiterInPayload {
        /// The queue's framing.
        framing: Framing,
        /// Index of the first delimiter in the payload.
        at: usize,
    },

    /// The operation is not possible here (receiving from a raw queue, an unsupported host).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),

    /// Another reader holds the queue (its lock on the map file).
    #[error("{map}: another reader holds this queue")]
    ReaderBusy {
        /// The map file.
        map: PathBuf,
    },

    /// The unread backlog would exceed `max_backlog_bytes`; nothing was written.
    #[error("queue full: {backlog} unread bytes plus {len} would exceed the limit of {max}")]
    Full {
        /// Unread bytes in the data files.
        backlog: u64,
        /// Bytes of the rejected write.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// A path stored in the map names another existing file than the one derived from the
    /// basepath.
    #[error("{map}: stored {field} `{stored}` is another file than `{expected}`")]
    PathMismatch {
        /// The map file.
        map: PathBuf,
        /// `path0`, `path1` or `pathmap`.
        field: &'static str,
        /// The path stored in the map.
        stored: PathBuf,
        /// The path derived from the basepath.
        expected: PathBuf,
    },

    /// A previous sync or write of this handle failed; it accepts nothing more (a retried
    /// fsync can report success for data that never reached the disk).
    #[error("handle poisoned by an earlier failed sync or write: reopen the queue")]
    Poisoned,

    /// An I/O call failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

/// `Result<T, dmq::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the operation and file to an `io::Error`.
pub(crate) fn io_err(op: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}
