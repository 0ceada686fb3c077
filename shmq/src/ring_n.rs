//! Protocol N: a bounded MPMC ring with a sequence word per slot; consumers claim after
//! copying, so a delivered message is never torn and a shift never waits for a consumer.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

use crate::format::{LayoutN, MAGIC_N, n};
use crate::hooks;
use crate::mem::{AtomicU64, Mem, fence};
use crate::wait::{Backoff, Stall, Tuning, expired, now, park_timeout, relax};

/// How an enqueue behaves when the queue is full.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EnqMode {
    /// Discard the oldest message.
    Shift,
    /// Report "full".
    Try,
    /// Wait for space until the deadline.
    Block(Option<Instant>),
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enq {
    /// Stored; nothing discarded.
    Stored,
    /// Stored after discarding at least one older message.
    Replaced,
    /// Full (try only); nothing written.
    Full,
}

/// Why a ring operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RingError {
    /// The deadline passed.
    Timeout,
    /// This producer's position was abandoned by a peer.
    Revoked,
    /// A format-G lock held past the stall timeout by a peer we cannot recover.
    LockStuck { offset: usize, word: u64 },
    /// The shared state is impossible.
    Corrupt {
        field: &'static str,
        offset: usize,
        detail: String,
    },
}

/// Spin for `spin_for`, then park.
#[derive(Debug)]
pub(crate) struct Parker {
    started: Option<Instant>,
    spins: u32,
    parking: bool,
}

impl Parker {
    pub(crate) fn new() -> Parker {
        Parker {
            started: None,
            spins: 0,
            parking: false,
        }
    }

    /// In the spin phase: spins (a bounded burst) while `word` still holds `seen`, watching
    /// one cache line only, and returns true. False once the spin phase is over.
    fn spin_on(
        &mut self,
        word: &AtomicU64,
        seen: u64,
        spin_for: Duration,
        deadline: Option<Instant>,
    ) -> Result<bool, RingError> {
        if self.parking || spin_for.is_zero() {
            return Ok(false);
        }
        let t = now();
        if deadline.is_some_and(|d| t >= d) {
            return Err(RingError::Timeout);
        }
        if t.duration_since(*self.started.get_or_insert(t)) >= spin_for {
            self.parking = true;
            return Ok(false);
        }
        for _ in 0..64 {
            if word.load(Relaxed) != seen {
                break;
            }
            relax();
        }
        Ok(true)
    }

    /// True while still in the spin phase.
    fn spinning(&mut self, spin_for: Duration) -> bool {
        if self.parking || spin_for.is_zero() {
            return false;
        }
        self.spins = self.spins.wrapping_add(1);
        if self.spins % 64 != 1 {
            return true;
        }
        let t = now();
        let started = *self.started.get_or_insert(t);
        if t.duration_since(started) >= spin_for {
            self.parking = true;
        }
        !self.parking
    }
}

/// A format-N ring over some memory.
#[derive(Debug)]
pub(crate) struct RingN<M> {
    pub(crate) mem: M,
    pub(crate) layout: LayoutN,
    pub(crate) tuning: Tuning,
    /// A value `head` had (never more than it has now): producers check for room against it
    /// and read the shared `head` (a cache line consumers write) only when it says "full".
    head_hint: AtomicU64,
}

fn split(v: u64) -> (u64, u64) {
    (v >> 2, v & 3)
}

/// Positions at or above this are never reached (2^61 enqueues) and would overflow the
/// arithmetic on `pos << 2` and `pos + 1`: a `head` or `tail` there was written by something
/// other than this protocol. `open` refuses such a header; the ring re-checks on every
/// operation because another process may write anything at any time.
const MAX_POS: u64 = 1 << 61;

fn corrupt_pos(field: &'static str, offset: usize, pos: u64) -> RingError {
    RingError::Corrupt {
        field,
        offset,
        detail: format!("{pos} is beyond any reachable position"),
    }
}

impl<M: Mem> RingN<M> {
    /// A ring over memory holding a valid, initialised queue of `layout`.
    pub(crate) fn new(mem: M, layout: LayoutN, tuning: Tuning) -> RingN<M> {
        RingN {
            mem,
            layout,
            tuning,
            head_hint: AtomicU64::new(0),
        }
    }

    /// Writes a fresh queue into zeroed memory: header, every slot's initial sequence word,
    /// and `state = ready` last (release).
    pub(crate) fn init(mem: &M, layout: LayoutN, creator_pid: u32) {
        mem.u64(0).store(u64::from_le_bytes(MAGIC_N), Relaxed);
        mem.u32(n::VERSION).store(crate::format::VERSION_N, Relaxed);
        mem.u32(n::WORDS).store(layout.words, Relaxed);
        mem.u32(n::CAPACITY).store(layout.capacity, Relaxed);
        mem.u32(n::STRIDE).store(layout.stride, Relaxed);
        mem.u32(n::CREATOR_PID).store(creator_pid, Relaxed);
        mem.u64(n::TAIL).store(u64::from(layout.capacity), Relaxed);
        mem.u64(n::HEAD).store(u64::from(layout.capacity), Relaxed);
        for i in 0..layout.capacity {
            mem.u64(layout.slot(u64::from(i)) + n::SLOT_SEQ)
                .store(LayoutN::initial_seq(i), Relaxed);
        }
        mem.u32(n::STATE).store(n::STATE_READY, Release);
    }

    fn cap(&self) -> u64 {
        u64::from(self.layout.capacity)
    }

    /// Messages stored (a snapshot).
    pub(crate) fn len(&self) -> u32 {
        let h = self.mem.u64(n::HEAD).load(SeqCst);
        let t = self.mem.u64(n::TAIL).load(SeqCst);
        t.saturating_sub(h).min(self.cap()) as u32
    }

    /// Messages discarded by shift.
    pub(crate) fn dropped(&self) -> u64 {
        self.mem.u64(n::DROPPED).load(Relaxed)
    }

    /// Positions abandoned by dead or revoked producers.
    pub(crate) fn abandoned(&self) -> u64 {
        self.mem.u64(n::ABANDONED).load(Relaxed)
    }

    /// Enqueues `msg` (exactly `8 × words` bytes; the caller checked).
    pub(crate) fn enqueue(&self, msg: &[u8], mode: EnqMode) -> Result<Enq, RingError> {
        let m = &self.mem;
        let cap = self.cap();
        let head = m.u64(n::HEAD);
        let tail = m.u64(n::TAIL);
        let mut replaced = false;
        let mut parker = Parker::new();
        let t = loop {
            let t = tail.load(SeqCst);
            if t >= MAX_POS {
                return Err(corrupt_pos("tail", n::TAIL, t));
            }
            // Acquire pairs with the release in `fetch_max` below: a hint read here carries
            // the happens-before edge from the consumer's claim of `head`, so this producer's
            // writes to the slot cannot be seen by that consumer's copy.
            if t.wrapping_sub(self.head_hint.load(Acquire)) < cap {
                if tail
                    .compare_exchange_weak(t, t + 1, SeqCst, Relaxed)
                    .is_ok()
                {
                    break t;
                }
                continue;
            }
            let h = head.load(SeqCst);
            if h >= MAX_POS {
                return Err(corrupt_pos("head", n::HEAD, h));
            }
            self.head_hint.fetch_max(h, AcqRel);
            let t = tail.load(SeqCst);
            if t >= MAX_POS {
                return Err(corrupt_pos("tail", n::TAIL, t));
            }
            let used = t.wrapping_sub(h);
            if used >= cap {
                if head.load(SeqCst) != h {
                    continue; // `h` was stale
                }
                if used > cap {
                    return Err(RingError::Corrupt {
                        field: "tail",
                        offset: n::TAIL,
                        detail: format!("tail {t} − head {h} exceeds capacity {cap}"),
                    });
                }
                match mode {
                    EnqMode::Try => return Ok(Enq::Full),
                    EnqMode::Shift => {
                        if head.compare_exchange(h, h + 1, SeqCst, Relaxed).is_ok() {
                            m.u64(n::DROPPED).fetch_add(1, Relaxed);
                            replaced = true;
                        }
                    }
                    EnqMode::Block(deadline) => {
                        self.park(
                            n::SPACE_SEQ,
                            n::PRODUCERS_WAITING,
                            &mut parker,
                            deadline,
                            || tail.load(SeqCst).wrapping_sub(head.load(SeqCst)) < cap,
                        )?;
                    }
                }
                continue;
            }
            if tail
                .compare_exchange_weak(t, t + 1, SeqCst, Relaxed)
                .is_ok()
            {
                break t;
            }
        };
        hooks::hit("n_tail_claimed");
        let wait = match mode {
            EnqMode::Block(deadline) => Some(deadline),
            EnqMode::Shift | EnqMode::Try => None,
        };
        self.write(t, msg, wait)?;
        // Dekker with `park`: publish, full fence, then look for sleepers.
        fence(SeqCst);
        if m.u32(n::CONSUMERS_WAITING).load(SeqCst) > 0 {
            m.u32(n::DATA_SEQ).fetch_add(1, SeqCst);
            m.futex_wake(n::DATA_SEQ);
        }
        Ok(if replaced { Enq::Replaced } else { Enq::Stored })
    }

    /// Writes position `t`, which this producer owns through `tail`. Waiting for the previous
    /// lap of the slot is bounded: `wait` is `Some(deadline)` for a blocking enqueue (until the
    /// deadline), `None` for try and shift (until the stall timeout, when the slow writer is
    /// alive and cannot be revoked: `LockStuck`). A producer that gives up leaves position `t`
    /// unclaimed; the next consumer or producer that needs it marks it abandoned after the
    /// stall timeout, as for a producer that died before claiming its slot.
    fn write(&self, t: u64, msg: &[u8], wait: Option<Option<Instant>>) -> Result<(), RingError> {
        let m = &self.mem;
        let off = self.layout.slot(t);
        let seq = m.u64(off + n::SLOT_SEQ);
        let need = t.wrapping_sub(self.cap());
        let mut stall = Stall::new();
        let mut backoff = Backoff::new();
        loop {
            let v = seq.load(Acquire);
            let (p, st) = split(v);
            if p == need && (st == n::ST_READY || st == n::ST_ABANDONED) {
                if seq
                    .compare_exchange(v, (t << 2) | n::ST_WRITING, Acquire, Relaxed)
                    .is_ok()
                {
                    break;
                }
                continue;
            }
            if p >= t {
                return Err(RingError::Revoked);
            }
            // The producer of the previous lap is mid-copy, or has not claimed the slot yet.
            if self.stalled(&mut stall, off, v, need, wait.is_none())? {
                continue;
            }
            if let Some(deadline) = wait
                && expired(deadline)
            {
                return Err(RingError::Timeout);
            }
            backoff.pause(self.tuning.max_backoff);
        }
        hooks::hit("n_slot_claimed");
        m.u64(off + n::SLOT_OWNER)
            .store((u64::from(m.pid()) << 32) | (t & 0xffff_ffff), Relaxed);
        let mut words = msg.chunks_exact(8);
        let half = self.layout.words as usize / 2;
        for (i, chunk) in words.by_ref().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            m.u64(off + n::SLOT_DATA + 8 * i)
                .store(u64::from_le_bytes(w), Relaxed);
            if i + 1 == half {
                hooks::hit("n_mid_copy");
            }
        }
        seq.compare_exchange(
            (t << 2) | n::ST_WRITING,
            (t << 2) | n::ST_READY,
            SeqCst,
            Relaxed,
        )
        .map(drop)
        .map_err(|_| RingError::Revoked)
    }

    /// The slot at `off` has shown `v` while position `need` waits on it: once that lasted
    /// the stall timeout, revokes a dead (or never started) writer (`Ok(true)`: look again),
    /// or, when `give_up` (try and shift), reports a live writer that stays in the way.
    fn stalled(
        &self,
        stall: &mut Stall,
        off: usize,
        v: u64,
        need: u64,
        give_up: bool,
    ) -> Result<bool, RingError> {
        if !stall.stuck(v, self.tuning.stall_timeout) {
            return Ok(false);
        }
        if self.revoke(off, v, need) {
            stall.reset();
            return Ok(true);
        }
        if give_up {
            // A live writer, stopped or very slow: try and shift do not wait for it.
            return Err(RingError::LockStuck {
                offset: off + n::SLOT_SEQ,
                word: v,
            });
        }
        Ok(false)
    }

    /// Marks stuck position `need` (or the older one holding its slot) abandoned, if the
    /// slot's sequence word `v` shows a dead writer or a position never claimed.
    fn revoke(&self, off: usize, v: u64, need: u64) -> bool {
        let m = &self.mem;
        let (p, st) = split(v);
        let new = if st == n::ST_WRITING {
            if p > need {
                return false;
            }
            let owner = m.u64(off + n::SLOT_OWNER).load(Acquire);
            let (pid, pos) = ((owner >> 32) as u32, owner & 0xffff_ffff);
            if pos == p & 0xffff_ffff && m.pid_alive(pid) {
                return false; // a live writer, just slow
            }
            (p << 2) | n::ST_ABANDONED
        } else if p + self.cap() <= need {
            ((p + self.cap()) << 2) | n::ST_ABANDONED
        } else {
            return false;
        };
        if m.u64(off + n::SLOT_SEQ)
            .compare_exchange(v, new, SeqCst, Relaxed)
            .is_err()
        {
            return false;
        }
        m.u64(n::ABANDONED).fetch_add(1, Relaxed);
        fence(SeqCst);
        for (word, count) in [
            (n::DATA_SEQ, n::CONSUMERS_WAITING),
            (n::SPACE_SEQ, n::PRODUCERS_WAITING),
        ] {
            if m.u32(count).load(SeqCst) > 0 {
                m.u32(word).fetch_add(1, SeqCst);
                m.futex_wake(word);
            }
        }
        true
    }

    /// Dequeues into `buf` (exactly `8 × words` bytes). `wait`: `None` for try, `Some(deadline)`
    /// to block. `Ok(false)` only for try on an empty queue.
    pub(crate) fn dequeue(
        &self,
        buf: &mut [u8],
        wait: Option<Option<Instant>>,
    ) -> Result<bool, RingError> {
        let m = &self.mem;
        let head = m.u64(n::HEAD);
        let tail = m.u64(n::TAIL);
        let mut parker = Parker::new();
        let mut stall = Stall::new();
        let mut backoff = Backoff::new();
        loop {
            let h = head.load(SeqCst);
            if h >= MAX_POS {
                return Err(corrupt_pos("head", n::HEAD, h));
            }
            let off = self.layout.slot(h);
            let seq = m.u64(off + n::SLOT_SEQ);
            let v = seq.load(SeqCst);
            let (p, st) = split(v);
            if p != h || st == n::ST_WRITING {
                // Not published (yet): look at `tail` (a line producers write) only now.
                if tail.load(SeqCst) <= h {
                    let Some(deadline) = wait else {
                        return Ok(false);
                    };
                    if parker.spin_on(seq, v, self.tuning.spin_for, deadline)? {
                        continue;
                    }
                    self.park(
                        n::DATA_SEQ,
                        n::CONSUMERS_WAITING,
                        &mut parker,
                        deadline,
                        || tail.load(SeqCst) != h,
                    )?;
                    continue;
                }
            }
            if p == h && st == n::ST_READY {
                for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
                    let w = m.u64(off + n::SLOT_DATA + 8 * i).load(Relaxed);
                    chunk.copy_from_slice(&w.to_le_bytes());
                }
                // Success proves no producer touched the slot during the copy: it would have
                // needed `head > h` first.
                if head.compare_exchange(h, h + 1, SeqCst, Relaxed).is_ok() {
                    self.notify_space();
                    return Ok(true);
                }
                continue;
            }
            if p == h && st == n::ST_ABANDONED {
                if head.compare_exchange(h, h + 1, SeqCst, Relaxed).is_ok() {
                    self.notify_space();
                }
                continue;
            }
            if p > h {
                if head.load(SeqCst) == h {
                    // A producer reuses a slot only after `head` passed it.
                    return Err(RingError::Corrupt {
                        field: "seq",
                        offset: off + n::SLOT_SEQ,
                        detail: format!("slot shows position {p} while head is still {h}"),
                    });
                }
                continue; // `h` was stale
            }
            // Position `h` is being written, or its producer has not claimed the slot yet.
            if self.stalled(&mut stall, off, v, h, wait.is_none())? {
                continue;
            }
            match wait {
                None => backoff.pause(self.tuning.max_backoff),
                Some(deadline) => {
                    self.park(
                        n::DATA_SEQ,
                        n::CONSUMERS_WAITING,
                        &mut parker,
                        deadline,
                        || seq.load(SeqCst) != v || head.load(SeqCst) != h,
                    )?;
                }
            }
        }
    }

    fn notify_space(&self) {
        let m = &self.mem;
        fence(SeqCst);
        if m.u32(n::PRODUCERS_WAITING).load(SeqCst) > 0 {
            m.u32(n::SPACE_SEQ).fetch_add(1, SeqCst);
            m.futex_wake(n::SPACE_SEQ);
        }
    }

    /// One step of waiting for `ready`, signalled on futex `word` whose sleepers are counted
    /// in `count`: spin during `spin_for`, then park (Dekker: count up, re-check, sleep).
    fn park(
        &self,
        word: usize,
        count: usize,
        parker: &mut Parker,
        deadline: Option<Instant>,
        ready: impl Fn() -> bool,
    ) -> Result<(), RingError> {
        if expired(deadline) {
            return Err(RingError::Timeout);
        }
        if parker.spinning(self.tuning.spin_for) {
            relax();
            return Ok(());
        }
        let m = &self.mem;
        m.u32(count).fetch_add(1, SeqCst);
        fence(SeqCst);
        let v = m.u32(word).load(SeqCst);
        if !ready() {
            m.futex_wait(word, v, park_timeout(deadline, self.tuning.stall_timeout));
        }
        m.u32(count).fetch_sub(1, SeqCst);
        Ok(())
    }
}
