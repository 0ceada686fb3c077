//! # duraqueue: an mmap'd durable ring with a mirrored mapping
//!
//! A re-implementation of the C library `willemt/duraqueue`: a queue in one file used as a
//! byte ring, mapped twice back to back so every record is one contiguous slice. `offer`
//! returns only when the item is on stable storage; `peek` borrows the item straight from
//! the mapping (zero copy); reopening after a crash recovers every committed item that was
//! not polled.
//!
//! ```
//! # fn main() -> duraqueue::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! use duraqueue::DuraQueue;
//!
//! let path = dir.path().join("orders.queue");
//! let mut queue = DuraQueue::open(&path, 1 << 16)?; // a ring of 64 KiB, created if missing
//! queue.offer(b"order 1")?;                         // on disk when it returns
//! queue.offer_batch(&[b"order 2", b"order 3"])?;    // two items, one sync
//! assert_eq!(queue.peek(), Some(&b"order 1"[..]));  // a slice of the mapping
//! queue.poll()?;                                    // removed, durably
//! drop(queue);
//!
//! let queue = DuraQueue::open(&path, 1 << 16)?;     // recovery: a scan of the ring
//! assert_eq!(queue.iter().collect::<Vec<_>>(), [&b"order 2"[..], b"order 3"]);
//! # Ok(())
//! # }
//! ```
//!
//! ## Guarantees
//!
//! - **Durable offer**: [`DuraQueue::offer`], [`DuraQueue::offer_batch`], [`Txn::commit`] and
//!   [`SharedWriter::offer_durable`] return `Ok` only after the records are synced
//!   (`msync` of exactly the pages written, or `fdatasync`). A failed sync poisons the
//!   handle: a retried fsync can report success for data that never reached the disk.
//! - **Durable poll**: by default each [`DuraQueue::poll`] is synced before it returns, so a
//!   polled item never comes back after a crash. With [`AckMode::Manual`], polls are
//!   persisted together by [`DuraQueue::ack`], and a crash redelivers un-acked polls.
//! - **Recovery** delivers exactly the chain of consecutive records from the head: every
//!   committed, unpolled record, in order, and nothing else (no stale lap, no record after a
//!   gap, no phantom record inside a payload). In v1 a torn payload cannot be detected (the
//!   format has no checksum); the v2 format checks CRC32C on every header and payload.
//! - **Zero copy**: [`DuraQueue::peek`] and [`DuraQueue::iter`] borrow the handle, so no
//!   slice outlives the record ([`DuraQueue::poll`] needs `&mut`).
//!
//! ## Formats
//!
//! [`Format::V1`] (default) is the C original's format byte for byte: files written by the C
//! library open here, and files written here in v1 open in the C library (within its own
//! limits: ids below 256, no record straddling the ring end). [`Format::V2`] is opt-in: a
//! superblock with the persisted consumer position, 64-bit sequence numbers and CRC32C.
//! See `format` for the byte layouts.
//!
//! ## Writer and reader in different processes
//!
//! The front-end/back-end use case: one process offers, another polls. Each opens the same
//! file ([`DuraQueue::open`] for the writer, [`DuraQueue::open_reader`] for the reader); an
//! advisory lock allows one of each. Both map the file shared, so they see each other's
//! bytes; they coordinate through the file alone:
//!
//! - the writer publishes a record by writing its header last, after payload and footer; the
//!   reader calls [`DuraQueue::refresh`] (or waits with [`DuraQueue::wait_for_items`]) to pick
//!   up records whose header and footer check out;
//! - the reader consumes by zeroing the record's header and footer (v1) or by writing a
//!   superblock checkpoint (v2); the writer learns of the freed space when it refreshes,
//!   which an offer that finds the ring full does by itself.

#![warn(missing_docs)]
// All `unsafe` lives in `sys`; the rest of the crate cannot add any.
#![deny(unsafe_code)]

mod error;
pub mod format;
mod group;
mod queue;
#[allow(unsafe_code)]
mod sys;

pub use error::{Error, Result};
pub use format::Format;
pub use group::SharedWriter;
pub use queue::{AckMode, DuraQueue, OpenOptions, RecoveryReport, Seq, SyncMode, Txn};
#[cfg(feature = "fault-injection")]
pub use sys::fault_injection;

/// Parses a ring size: bytes, or a number with a `K`, `M` or `G` suffix (binary units;
/// `KiB`, `MB` and the like are accepted too). For command lines and URLs.
///
/// ```
/// assert_eq!(duraqueue::parse_size("8MiB"), Ok(8 << 20));
/// assert!(duraqueue::parse_size("8 parsecs").is_err());
/// ```
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 65536, 64K, 8MiB)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use K, M or G)"
            ));
        }
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}
