//! The one error type of the crate.

use std::path::PathBuf;

/// Every way a ddmq call can fail. Per-file races (a file another process took or removed
/// first) are never errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The root directory does not exist.
    #[error("{}: the root directory does not exist", root.display())]
    RootMissing {
        /// The root asked for.
        root: PathBuf,
    },
    /// The root directory exists but has no `ddmq.yaml`.
    #[error("{}: the root directory exists but is not initiated (no ddmq.yaml)", root.display())]
    RootUninitiated {
        /// The root asked for.
        root: PathBuf,
    },
    /// The queue directory is missing or lacks `ddmq.yaml` or `work/`.
    #[error("{}: the queue does not exist", path.display())]
    QueueMissing {
        /// The queue directory.
        path: PathBuf,
    },
    /// `create_queue` of a complete queue.
    #[error("{}: the queue already exists", path.display())]
    QueueExists {
        /// The queue directory.
        path: PathBuf,
    },
    /// A queue name outside `^[a-zA-Z0-9_-]+$`.
    #[error("invalid queue name {name:?}: use letters, digits, `_` and `-`")]
    InvalidQueueName {
        /// The name given.
        name: String,
    },
    /// `delete_queue` without `force` found entries ddmq did not write.
    #[error("{}: not deleted, it holds files ddmq did not write: {}", path.display(), files.join(", "))]
    ForeignFiles {
        /// The queue directory.
        path: PathBuf,
        /// The foreign entries (relative to the queue directory).
        files: Vec<String>,
    },
    /// A message file that is not a message (corrupt JSON, empty, wrong types).
    #[error("{}: bad message file: {detail}", path.display())]
    BadMessage {
        /// The file.
        path: PathBuf,
        /// What was wrong, naming the field.
        detail: String,
    },
    /// A name that is not a message name where one is required.
    #[error("{name:?} is not a ddmq message name: {detail}")]
    BadName {
        /// The name or path given.
        name: String,
        /// Why.
        detail: String,
    },
    /// A `ddmq.yaml` that cannot be read or has a key of the wrong type.
    #[error("{}: bad settings: {detail}", path.display())]
    Settings {
        /// The settings file.
        path: PathBuf,
        /// What was wrong, naming the key.
        detail: String,
    },
    /// An option out of range (e.g. `Requeue::AtPriority(0)`, which the format cannot hold).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`rename`, `read`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
