//! # ddmq: a serverless file-per-message queue, compatible with Python ddmq 0.9.14
//!
//! A broker is a plain directory; each queue is a subdirectory; each message is one JSON
//! file. There is no daemon and no lock: the only coordination is `rename(2)`, so any
//! number of processes on any number of machines sharing the directory (an HPC cluster's
//! network file system) can publish and consume. Files, names and settings are those of the
//! Python original, so Python 0.9.14 clients and this crate can share one root directory.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use ddmq::{Broker, PublishOptions, Requeue};
//!
//! let broker = Broker::open(dir.path(), true)?;          // creates ddmq.yaml if needed
//! broker.create_queue("jobs")?;
//! broker.publish("jobs", "low", &PublishOptions::new().priority(10))?;
//! broker.publish("jobs", "high", &PublishOptions::new().priority(2).requeue(Requeue::Yes))?;
//!
//! let mut batch = broker.consume("jobs", 2)?;              // claims both, in priority order
//! assert_eq!(batch[0].message.message, "high");
//! let high = batch.remove(0);
//! high.nack(None)?;                                        // flagged: published again
//! for d in batch { d.ack()?; }                             // deleted
//! let again = broker.consume("jobs", 1)?;
//! assert!(again[0].redelivered());
//! # Ok::<(), ddmq::Error>(())
//! ```
//!
//! ## Guarantees
//!
//! - **No partial message is ever visible**: a publish writes `Q/.tmp.PID.UUID` and renames it
//!   to `P.N.ddmqID` (Python ignores the temporary name).
//! - **Exactly one claim**: consumers claim by renaming `Q/NAME` to `Q/work/E.NAME`; of any
//!   number of concurrent consumers (threads, processes, machines) exactly one rename wins, a
//!   lost one moves on to the next message, and every claimed message is returned.
//! - **No duplicate requeue**: a cleaner or a nack first renames the claimed file to a private
//!   `work/.reap.UUID.…` name (one winner), replaces its content with the copy, then renames
//!   it into the queue: publishing the copy and removing the private file are one step. A
//!   reaper killed in between leaves the private file (with the old content or the prepared
//!   copy), which the next clean takes over (again by a rename, one winner) and finishes after
//!   [`BrokerOptions::reap_grace`], as its reaper was asked: the message comes back once,
//!   late, never twice.
//! - **Order**: by default priorities compare as numbers (2 before 10), then the queue number
//!   as a decimal (older first), then the id ([`Order::Numeric`]); [`Order::Lexicographic`]
//!   reproduces the original's string sort. Queue numbers are strictly increasing per process.
//! - **Consume does not scale with the backlog** (in one consuming process): waiting names
//!   are kept in an in-memory index per queue, re-read from the directory only when it is
//!   empty, when the directory changed behind this process's back, or now and then as a
//!   safety net (at most about 1% of the time). The first consume after a foreign change (another process's publish or claim)
//!   costs one scan of the directory, so several processes draining one deep queue each scan
//!   it often.
//! - **Durability** ([`Durability::Fsync`]): new files are `fdatasync`ed before their rename
//!   and every changed directory is `fsync`ed before publish, consume, ack, nack and settings
//!   writes return. A failed sync poisons the broker. Default: as the original, no sync.
//! - **Settings writes are atomic**: read-modify-write under an `flock` of the directory, a
//!   unique temporary file, a rename. Where the file system cannot lock a directory (NFS,
//!   Lustre without `-o flock`) the write goes ahead unlocked: still never a partial file, but
//!   two concurrent writers may lose one update, as with the original.
//! - **Integrity**: every message file this crate writes carries a CRC-32C of its content
//!   (the `ddmq_crc32c` key, over a canonical encoding independent of whitespace and key
//!   order; see [`mod@format`]). A file whose content does not match it is treated as one that
//!   does not parse (below). Files without the key (the original's, or older versions of
//!   this crate) are accepted as before, without that protection.
//! - **Untrusted files**: a message file that does not parse is left alone while it is young
//!   (a Python publisher may still be writing it) and moved to `ROOT/.quarantine/QUEUE/` once
//!   older than 5 s, never wedging the queue; an entry that cannot be read at all (a
//!   directory, FIFO or link under a message name, permission denied) is moved there at once.
//!   Errors name the file.
//!
//! See the README for every difference from the original.

#![forbid(unsafe_code)]

mod broker;
mod durable;
mod error;
pub mod format;

pub use broker::{
    AckOutcome, Broker, BrokerOptions, CleanReport, ConsumeOptions, Delivery, PublishOptions,
    PurgeCounts, QueueView,
};
pub use durable::Durability;
pub use error::{Error, Result};
pub use format::{Message, Order, Requeue, Settings};
