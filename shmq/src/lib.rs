//! # shmq: a System V shared-memory queue of fixed-size messages
//!
//! A queue of `capacity` messages of `8 × words` bytes in one SysV shared-memory segment,
//! shared by any number of producer and consumer processes on one host. Re-implements the Go
//! library `shqueue-go`, can share a queue with it ([`Format::GoCompat`], byte-compatible),
//! and adds a native layout ([`Format::Native`], the default) without the original's
//! weaknesses.
//!
//! ```
//! use shmq::{Options, Queue, Shift};
//!
//! let q = Queue::create_unique(2, 4, &Options::default())?; // 16-byte messages, 4 slots
//! let other = Queue::open(q.key())?; // another process would do this
//! other.enqueue_block(&[7u8; 16], None)?;
//! let mut buf = [0u8; 16];
//! q.dequeue_block(&mut buf, None)?;
//! assert_eq!(buf, [7u8; 16]);
//! for i in 0..5u8 {
//!     let shift = q.enqueue_shift(&[i; 16])?; // cyclic: the fifth replaces the oldest
//!     assert_eq!(shift == Shift::ReplacedOldest, i == 4);
//! }
//! assert!(q.dequeue_try(&mut buf)?);
//! assert_eq!(buf, [1u8; 16]);
//! assert_eq!(q.dropped(), Some(1));
//! q.delete()?; // the key is free now; the segment goes when the last process detaches
//! # other.close()?;
//! q.close()?;
//! # Ok::<(), shmq::Error>(())
//! ```
//!
//! ## Guarantees
//!
//! * FIFO over the whole queue; any number of producers and consumers in any processes.
//! * Format N: a delivered message is never torn, also in cyclic use (consumers copy, then
//!   claim with a CAS that fails if the slot was reused); `enqueue_shift` never waits for a
//!   consumer; waiting spins for [`Options::spin_for`], then parks on a shared futex (no CPU
//!   while idle); a producer killed mid-operation is detected after
//!   [`Options::stall_timeout`] and its position skipped ([`Queue::abandoned`]). Behind a
//!   live producer stuck mid-copy, try and shift give [`Error::LockStuck`] after the stall
//!   timeout and blocking operations return at their deadline.
//! * Format G follows the Go library's lock protocol exactly. Rust peers write identifiable
//!   lock words, so a lock held by a dead Rust process is recovered; a lock held by a Go
//!   process past the stall timeout gives [`Error::LockStuck`] instead of a hang.
//! * The segment is untrusted input: `open` validates every field, and operations check the
//!   shared indices; malformed content is [`Error::Corrupt`], never a panic.
//! * `create` never reuses or removes an existing segment ([`Error::AlreadyExists`]).
//!
//! All `unsafe` code lives in one private module (`sys`); payloads are copied as 64-bit
//! atomic words, so racing copies are defined behaviour.

#![deny(unsafe_code)]
#![cfg_attr(loom, allow(dead_code))]

#[cfg(not(loom))]
mod error;
pub mod format;
mod hooks;
mod mem;
mod ring_g;
mod ring_n;
mod wait;

#[cfg(all(not(loom), feature = "cli"))]
pub mod bench;
#[cfg(not(loom))]
mod queue;
#[cfg(not(loom))]
#[allow(unsafe_code)]
mod sys;

#[cfg(not(loom))]
pub use error::{Error, Result};
#[cfg(all(not(loom), feature = "test-hooks"))]
#[doc(hidden)]
pub use queue::poke;
#[cfg(not(loom))]
pub use queue::{
    Format, Key, Options, Queue, SegmentInfo, Shift, find_free_key, gc, list, remove, snapshot,
};

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;
