//! loom models of both protocols (`RUSTFLAGS="--cfg loom" cargo test -p shmq --lib --release`).
//!
//! Capacity 2 (or 1), 2-word messages whose words both equal the message's tag. Invariants:
//! no torn message, no duplicate, per-producer FIFO, and `delivered + dropped + left == sent`.
//! The futex is modelled with a mutex and a condition variable, so a lost wake-up is reported
//! by loom as a deadlock.

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;

use crate::format::{LayoutG, LayoutN};
use crate::mem::HeapMem;
use crate::ring_g::RingG;
use crate::ring_n::{Enq, EnqMode, RingN};
use crate::wait::Tuning;

fn tuning() -> Tuning {
    Tuning {
        spin_for: Duration::ZERO,
        max_backoff: Duration::ZERO,
        stall_timeout: Duration::from_secs(3600),
    }
}

fn msg(tag: u64) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&tag.to_le_bytes());
    m[8..].copy_from_slice(&tag.to_le_bytes());
    m
}

fn tag_of(buf: &[u8; 16]) -> u64 {
    let a = u64::from_le_bytes(buf[..8].try_into().unwrap());
    let b = u64::from_le_bytes(buf[8..].try_into().unwrap());
    assert_eq!(a, b, "torn message: words {a:#x} and {b:#x}");
    a
}

fn ring_n(cap: u32) -> RingN<HeapMem> {
    let layout = LayoutN::new(2, cap).unwrap();
    let mem = HeapMem::new(layout.size() as usize);
    RingN::init(&mem, layout, std::process::id());
    RingN::new(mem, layout, tuning())
}

fn check(delivered: &mut Vec<u64>, sent: &[u64], dropped: u64) {
    let mut seen = delivered.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen.len(),
        delivered.len(),
        "duplicate delivery: {delivered:?}"
    );
    for producer in [1u64, 2] {
        let mine: Vec<u64> = delivered
            .iter()
            .copied()
            .filter(|t| t >> 8 == producer)
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "producer order: {delivered:?}"
        );
    }
    assert!(
        delivered.iter().all(|t| sent.contains(t)),
        "phantom message"
    );
    assert_eq!(
        delivered.len() as u64 + dropped,
        sent.len() as u64,
        "delivered {delivered:?} + dropped {dropped} ≠ sent {sent:?}"
    );
}

/// Format N: a shifting producer, a trying producer, a consumer thread and the main thread
/// consuming, on a ring of 2.
#[test]
fn native_shift_try_two_consumers() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let ring = Arc::new(ring_n(2));
        let r1 = Arc::clone(&ring);
        let p1 = thread::spawn(move || {
            let mut sent = Vec::new();
            for i in 0..2 {
                let t = (1 << 8) | i;
                r1.enqueue(&msg(t), EnqMode::Shift).unwrap();
                sent.push(t);
            }
            sent
        });
        let r2 = Arc::clone(&ring);
        let p2 = thread::spawn(move || {
            let t = 2 << 8;
            match r2.enqueue(&msg(t), EnqMode::Try).unwrap() {
                Enq::Full => vec![],
                _ => vec![t],
            }
        });
        let r3 = Arc::clone(&ring);
        let c1 = thread::spawn(move || {
            let mut buf = [0u8; 16];
            let mut got = Vec::new();
            if r3.dequeue(&mut buf, None).unwrap() {
                got.push(tag_of(&buf));
            }
            got
        });
        let mut buf = [0u8; 16];
        let mut mine = Vec::new();
        if ring.dequeue(&mut buf, None).unwrap() {
            mine.push(tag_of(&buf));
        }
        let mut sent = p1.join().unwrap();
        sent.extend(p2.join().unwrap());
        let theirs = c1.join().unwrap();
        let mut drained = Vec::new();
        while ring.dequeue(&mut buf, None).unwrap() {
            drained.push(tag_of(&buf));
        }
        // FIFO across the two phases: what the racing consumers took is older than anything
        // of the same producer still left for the drain (which `check` sees in its order).
        // (The two racing consumers' takes have no order between them.)
        let mut early: Vec<u64> = theirs.iter().chain(&mine).copied().collect();
        early.sort_unstable();
        for e in &early {
            assert!(
                drained.iter().all(|d| d >> 8 != e >> 8 || d > e),
                "{e:#x} delivered while an older message of its producer waited: {drained:?}"
            );
        }
        let mut delivered = early;
        delivered.extend(drained);
        check(&mut delivered, &sent, ring.dropped());
        assert_eq!(ring.abandoned(), 0);
    });
}

/// Either protocol, for the models both run.
trait Ring: Send + Sync + 'static {
    fn enqueue(&self, msg: &[u8], mode: EnqMode) -> Enq;
    fn dequeue(&self, buf: &mut [u8], wait: Option<Option<std::time::Instant>>) -> bool;
}

impl Ring for RingN<HeapMem> {
    fn enqueue(&self, msg: &[u8], mode: EnqMode) -> Enq {
        RingN::enqueue(self, msg, mode).unwrap()
    }
    fn dequeue(&self, buf: &mut [u8], wait: Option<Option<std::time::Instant>>) -> bool {
        RingN::dequeue(self, buf, wait).unwrap()
    }
}

impl Ring for RingG<HeapMem> {
    fn enqueue(&self, msg: &[u8], mode: EnqMode) -> Enq {
        RingG::enqueue(self, msg, mode).unwrap()
    }
    fn dequeue(&self, buf: &mut [u8], wait: Option<Option<std::time::Instant>>) -> bool {
        RingG::dequeue(self, buf, wait).unwrap()
    }
}

fn ring_g(cap: u32) -> RingG<HeapMem> {
    let layout = LayoutG::new(2, cap).unwrap();
    let mem = HeapMem::new(layout.size() as usize);
    RingG::init(&mem, layout);
    RingG::new(mem, layout, tuning())
}

/// A blocking producer and a blocking consumer on a ring of 1: both wait in turn; a lost
/// wake-up deadlocks.
fn block_both_sides<R: Ring>(make: fn() -> R, preemptions: usize) {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(preemptions);
    model.check(move || {
        let ring = Arc::new(make());
        let r1 = Arc::clone(&ring);
        let p = thread::spawn(move || {
            for i in 0..2 {
                r1.enqueue(&msg((1 << 8) | i), EnqMode::Block(None));
            }
        });
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        for _ in 0..2 {
            assert!(ring.dequeue(&mut buf, Some(None)));
            got.push(tag_of(&buf));
        }
        p.join().unwrap();
        assert_eq!(got, vec![1 << 8, (1 << 8) | 1]);
    });
}

/// Format N blocking: the producer waits for space and the consumer parks on the futex.
#[test]
fn native_block_park_wakes() {
    block_both_sides(|| ring_n(1), 3);
}

/// Format G blocking on both sides.
#[test]
fn go_locks_block_both_sides() {
    block_both_sides(|| ring_g(1), 2);
}

/// Format G: the two-lock protocol, a shifting producer against a consumer, ring of 1 (so the
/// writer needs the slot the reader copies).
#[test]
fn go_locks_shift_against_reader() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let ring = Arc::new(ring_g(1));
        let r1 = Arc::clone(&ring);
        let p = thread::spawn(move || {
            let mut dropped = 0;
            for i in 0..2 {
                if Ring::enqueue(&*r1, &msg((1 << 8) | i), EnqMode::Shift) == Enq::Replaced {
                    dropped += 1;
                }
            }
            dropped
        });
        let mut buf = [0u8; 16];
        let mut delivered = Vec::new();
        if Ring::dequeue(&*ring, &mut buf, None) {
            delivered.push(tag_of(&buf));
        }
        let dropped = p.join().unwrap();
        while Ring::dequeue(&*ring, &mut buf, None) {
            delivered.push(tag_of(&buf));
        }
        check(&mut delivered, &[1 << 8, (1 << 8) | 1], dropped);
    });
}
