//! # dmq: a durable queue over two alternating data files and a control file
//!
//! A re-implementation of the C/Python "DMQ — Durable Message Queue": one queue is three
//! files beside each other, `BASE0` and `BASE1` (data) and `BASEmap` (the 12,320-byte
//! control file, shared by every process through a mapping). Any number of writers append
//! whole records to the file the map names; the one reader drains the other and decides
//! when writers move, so the two files form a two-slot ring and are reclaimed by truncation.
//! The files are byte-compatible with the original's (see [`format`](mod@format)).
//!
//! ```
//! # fn main() -> dmq::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! use dmq::{Framing, Queue};
//!
//! let queue = Queue::open(dir.path().join("q"), Some(Framing::Newlines))?; // q0, q1, qmap
//! let mut writer = queue.writer()?;
//! writer.send(b"hello")?;
//! writer.send_batch(&[&b"one"[..], b"two"])?; // one write for both
//!
//! let mut reader = queue.reader()?;           // one reader per queue
//! let got: Vec<Vec<u8>> = reader.try_iter().map(|m| m.map(|m| m.to_vec())).collect::<Result<_, _>>()?;
//! assert_eq!(got, [&b"hello"[..], b"one", b"two"]);
//! assert!(reader.try_recv()?.is_none());       // empty, as often as asked
//! # Ok(())
//! # }
//! ```
//!
//! ## Guarantees
//!
//! - **Order**: FIFO per writer, across any number of file switches.
//! - **Delivery**: with [`Commit::OnReceive`] (the original's) a message counts as consumed
//!   when `recv` returns it: at most once. With [`Commit::Explicit`] only
//!   [`Reader::commit`] moves the position: after a crash of the reader, everything not
//!   committed is delivered again (at least once), and a drained file is kept until its
//!   messages are committed.
//! - **Crashes**: every prefix of the switch (truncate, position, readtarget) recovers with
//!   nothing lost or repeated; writers lock their data file ([`WriterSync::Flock`]) so the
//!   reader never truncates a record a writer is still appending.
//! - **Durability**: [`Durability::PageCache`] survives a process crash;
//!   [`Writer::flush`] or [`Durability::Data`]/[`Durability::Full`] sync before returning,
//!   and a failed sync poisons the handle.
//! - **Untrusted files**: maps and data files are validated; bad input is a typed
//!   [`Error`] naming the file, offset and field, never a panic.
//!
//! Blocking receives wake on inotify events of the data files (microseconds), not by
//! polling once a second as the original.

// All `unsafe` lives in `sys`; the rest of the crate cannot add any.
#![deny(unsafe_code)]

mod error;
pub mod format;
mod queue;
#[allow(unsafe_code)]
mod sys;
mod watch;

pub use error::{Error, Result};
pub use format::Framing;
pub use queue::{
    Commit, Durability, MapInfo, Mark, Message, OpenOptions, Queue, Reader, Repair, Wait, Writer,
    WriterSync,
};
pub use watch::Watcher;

#[cfg(feature = "fault-injection")]
pub use sys::fault_injection;
