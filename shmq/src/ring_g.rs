//! Protocol G: the Go library's two-lock protocol (header lock, then slot lock), followed
//! exactly so Go peers can share the queue, with identifiable lock words for dead-peer
//! recovery.

use std::sync::atomic::AtomicU64 as LocalCounter;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Instant;

use crate::format::{LayoutG, MAGIC_G, g};
use crate::hooks;
use crate::mem::Mem;
use crate::ring_n::{Enq, EnqMode, RingError};
use crate::wait::{Backoff, Stall, Tuning, expired};

/// High half of a lock word stored by a Rust peer; the low half is its pid.
const RUST_HOLDER: u64 = 1 << 32;

/// How long a lock acquisition may wait.
#[derive(Debug, Clone, Copy)]
enum LockWait {
    /// Until the holder looks stuck (stall timeout): try and shift operations.
    Stall,
    /// Until the deadline: block operations.
    Until(Option<Instant>),
}

/// A format-G ring over some memory.
#[derive(Debug)]
pub(crate) struct RingG<M> {
    pub(crate) mem: M,
    pub(crate) layout: LayoutG,
    pub(crate) tuning: Tuning,
    recovered: LocalCounter,
}

impl<M: Mem> RingG<M> {
    pub(crate) fn new(mem: M, layout: LayoutG, tuning: Tuning) -> RingG<M> {
        RingG {
            mem,
            layout,
            tuning,
            recovered: LocalCounter::new(0),
        }
    }

    /// Writes a fresh queue's header into zeroed memory, the magic last.
    pub(crate) fn init(mem: &M, layout: LayoutG) {
        mem.u32(g::CAPACITY).store(layout.capacity, Relaxed);
        mem.u32(g::MSG_BYTES).store(layout.msg_bytes, Relaxed);
        mem.u32(g::START).store(0, Relaxed);
        mem.u32(g::LEN).store(0, Relaxed);
        mem.u64(0).store(u64::from_le_bytes(MAGIC_G), SeqCst);
    }

    /// Locks recovered from dead holders by this handle.
    pub(crate) fn recovered_locks(&self) -> u64 {
        self.recovered.load(Relaxed)
    }

    /// Messages stored (a snapshot, read without the lock as Go does).
    pub(crate) fn len(&self) -> u32 {
        self.mem.u32(g::LEN).load(SeqCst).min(self.layout.capacity)
    }

    fn lock(&self, off: usize, wait: LockWait) -> Result<(), RingError> {
        let word = self.mem.u64(off);
        let me = RUST_HOLDER | u64::from(self.mem.pid());
        let mut stall = Stall::new();
        let mut backoff = Backoff::new();
        let mut stuck = None;
        loop {
            let v = match word.compare_exchange(0, me, SeqCst, SeqCst) {
                Ok(_) => return Ok(()),
                Err(v) => v,
            };
            if stall.stuck(v, self.tuning.stall_timeout) {
                if v >> 32 == 1 && !self.mem.pid_alive(v as u32) {
                    // A dead Rust holder: take the lock over from it.
                    if word.compare_exchange(v, me, SeqCst, SeqCst).is_ok() {
                        self.recovered.fetch_add(1, Relaxed);
                        if off == g::HDR_LOCK {
                            self.repair_header();
                        }
                        return Ok(());
                    }
                    stall.reset();
                    continue;
                }
                stuck = Some(v);
                if let LockWait::Stall = wait {
                    return Err(RingError::LockStuck {
                        offset: off,
                        word: v,
                    });
                }
            }
            if let LockWait::Until(deadline) = wait
                && expired(deadline)
            {
                return Err(match stuck {
                    Some(word) => RingError::LockStuck { offset: off, word },
                    None => RingError::Timeout,
                });
            }
            backoff.pause(self.tuning.max_backoff);
        }
    }

    /// While polling `len` without the lock: if the header lock has shown the same holder
    /// for the stall timeout, try to take it over (a dead Rust holder) and let it go again,
    /// so that a queue whose producer (or consumer) died holding the lock comes back even
    /// when only pollers are left.
    fn check_header_lock(&self, stall: &mut Stall) {
        let v = self.mem.u64(g::HDR_LOCK).load(SeqCst);
        if v == 0 {
            stall.reset();
        } else if stall.stuck(v, self.tuning.stall_timeout)
            && v >> 32 == 1
            && !self.mem.pid_alive(v as u32)
            && self.lock(g::HDR_LOCK, LockWait::Stall).is_ok()
        {
            self.unlock(g::HDR_LOCK);
            stall.reset();
        }
    }

    fn unlock(&self, off: usize) {
        self.mem.u64(off).store(0, SeqCst);
    }

    /// After taking the header lock over from a dead holder: bring `start` and `len` back in
    /// range (at most the message in flight is lost, repeated or torn).
    fn repair_header(&self) {
        let cap = self.layout.capacity;
        let start = self.mem.u32(g::START);
        let len = self.mem.u32(g::LEN);
        if start.load(Relaxed) >= cap {
            start.store(0, Relaxed);
        }
        if len.load(Relaxed) > cap {
            len.store(cap, Relaxed);
        }
    }

    /// Reads `start` and `len` under the header lock, validated; unlocks on error.
    fn header(&self) -> Result<(u32, u32), RingError> {
        let cap = self.layout.capacity;
        let start = self.mem.u32(g::START).load(Relaxed);
        let len = self.mem.u32(g::LEN).load(Relaxed);
        let bad = if start >= cap {
            Some(("start", g::START, format!("{start} ≥ capacity {cap}")))
        } else if len > cap {
            Some(("len", g::LEN, format!("{len} > capacity {cap}")))
        } else {
            None
        };
        match bad {
            Some((field, offset, detail)) => {
                self.unlock(g::HDR_LOCK);
                Err(RingError::Corrupt {
                    field,
                    offset,
                    detail,
                })
            }
            None => Ok((start, len)),
        }
    }

    fn set_header(&self, start: u32, len: u32) {
        self.mem.u32(g::START).store(start, Relaxed);
        self.mem.u32(g::LEN).store(len, Relaxed);
    }

    /// Enqueues `msg` (exactly `msg_bytes`; the caller checked).
    pub(crate) fn enqueue(&self, msg: &[u8], mode: EnqMode) -> Result<Enq, RingError> {
        let cap = self.layout.capacity;
        let wait = match mode {
            EnqMode::Block(deadline) => LockWait::Until(deadline),
            _ => LockWait::Stall,
        };
        let mut backoff = Backoff::new();
        let mut stall = Stall::new();
        loop {
            if let EnqMode::Block(deadline) = mode {
                // Poll `len` without the lock, as a hint (the Go peers do the same).
                if self.mem.u32(g::LEN).load(SeqCst) >= cap {
                    if expired(deadline) {
                        return Err(RingError::Timeout);
                    }
                    self.check_header_lock(&mut stall);
                    backoff.pause(self.tuning.max_backoff);
                    continue;
                }
            }
            self.lock(g::HDR_LOCK, wait)?;
            let (start, len) = self.header()?;
            let w = ((u64::from(start) + u64::from(len)) % u64::from(cap)) as u32;
            let replaced = if len < cap {
                self.set_header(start, len + 1);
                false
            } else {
                match mode {
                    EnqMode::Try => {
                        self.unlock(g::HDR_LOCK);
                        return Ok(Enq::Full);
                    }
                    EnqMode::Block(_) => {
                        self.unlock(g::HDR_LOCK);
                        continue;
                    }
                    EnqMode::Shift => {
                        self.set_header((start + 1) % cap, len);
                        true
                    }
                }
            };
            hooks::hit("g_header_held");
            let slot = self.layout.slot_lock(w);
            if let Err(e) = self.lock(slot, wait) {
                self.set_header(start, len);
                self.unlock(g::HDR_LOCK);
                return Err(e);
            }
            hooks::hit("g_slot_held");
            let data = self.layout.slot_data(w);
            for (i, chunk) in msg.chunks_exact(8).enumerate() {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                self.mem
                    .u64(data + 8 * i)
                    .store(u64::from_le_bytes(b), Relaxed);
            }
            self.unlock(g::HDR_LOCK);
            self.unlock(slot);
            return Ok(if replaced { Enq::Replaced } else { Enq::Stored });
        }
    }

    /// Dequeues into `buf`. `wait`: `None` for try, `Some(deadline)` to block.
    pub(crate) fn dequeue(
        &self,
        buf: &mut [u8],
        wait: Option<Option<Instant>>,
    ) -> Result<bool, RingError> {
        let cap = self.layout.capacity;
        let lock_wait = match wait {
            Some(deadline) => LockWait::Until(deadline),
            None => LockWait::Stall,
        };
        let mut backoff = Backoff::new();
        let mut stall = Stall::new();
        loop {
            if let Some(deadline) = wait
                && self.mem.u32(g::LEN).load(SeqCst) == 0
            {
                if expired(deadline) {
                    return Err(RingError::Timeout);
                }
                self.check_header_lock(&mut stall);
                backoff.pause(self.tuning.max_backoff);
                continue;
            }
            self.lock(g::HDR_LOCK, lock_wait)?;
            let (start, len) = self.header()?;
            if len == 0 {
                self.unlock(g::HDR_LOCK);
                if wait.is_none() {
                    return Ok(false);
                }
                continue;
            }
            self.set_header((start + 1) % cap, len - 1);
            let slot = self.layout.slot_lock(start);
            if let Err(e) = self.lock(slot, lock_wait) {
                self.set_header(start, len);
                self.unlock(g::HDR_LOCK);
                return Err(e);
            }
            self.unlock(g::HDR_LOCK);
            hooks::hit("g_reader_slot_held");
            let data = self.layout.slot_data(start);
            for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
                let w = self.mem.u64(data + 8 * i).load(Relaxed);
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            self.unlock(slot);
            return Ok(true);
        }
    }
}
