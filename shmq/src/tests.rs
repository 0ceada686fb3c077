//! Unit and property tests of both ring protocols on heap memory (the same code that runs on
//! a segment).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::format::{LayoutG, LayoutN};
use crate::mem::HeapMem;
use crate::ring_g::RingG;
use crate::ring_n::{Enq, EnqMode, RingError, RingN};
use crate::wait::Tuning;

/// The stall timeout is far above any descheduling on a loaded machine: these tests check
/// delivery, and a live thread preempted inside a critical window must not be revoked
/// (the stuck-peer tests use [`native_short_stall`]).
fn tuning() -> Tuning {
    Tuning {
        spin_for: Duration::from_micros(20),
        max_backoff: Duration::from_micros(50),
        stall_timeout: Duration::from_secs(30),
    }
}

/// Either ring on the heap, behind one interface.
enum Heap {
    N(RingN<HeapMem>),
    G(RingG<HeapMem>),
}

impl Heap {
    fn new(native: bool, words: u32, cap: u32) -> Heap {
        if native {
            let layout = LayoutN::new(words, cap).unwrap();
            let mem = HeapMem::new(layout.size() as usize);
            RingN::init(&mem, layout, std::process::id());
            Heap::N(RingN::new(mem, layout, tuning()))
        } else {
            let layout = LayoutG::new(words, cap).unwrap();
            let mem = HeapMem::new(layout.size() as usize);
            RingG::init(&mem, layout);
            Heap::G(RingG::new(mem, layout, tuning()))
        }
    }
    fn enqueue(&self, msg: &[u8], mode: EnqMode) -> Result<Enq, RingError> {
        match self {
            Heap::N(r) => r.enqueue(msg, mode),
            Heap::G(r) => r.enqueue(msg, mode),
        }
    }
    fn dequeue(&self, buf: &mut [u8], wait: Option<Option<Instant>>) -> Result<bool, RingError> {
        match self {
            Heap::N(r) => r.dequeue(buf, wait),
            Heap::G(r) => r.dequeue(buf, wait),
        }
    }
    fn len(&self) -> u32 {
        match self {
            Heap::N(r) => r.len(),
            Heap::G(r) => r.len(),
        }
    }
}

fn msg(words: u32, tag: u64) -> Vec<u8> {
    (0..words)
        .flat_map(|i| (tag * 1000 + u64::from(i)).to_le_bytes())
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Shift,
    Try,
    Block,
    DeqTry,
    DeqBlock,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Shift),
        Just(Op::Try),
        Just(Op::Block),
        Just(Op::DeqTry),
        Just(Op::DeqBlock)
    ]
}

fn check_against_model(native: bool, words: u32, cap: u32, ops: &[Op]) {
    let ring = Heap::new(native, words, cap);
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    let mut dropped = 0u64;
    let past = Instant::now();
    let mut buf = vec![0u8; words as usize * 8];
    for (tag, op) in ops.iter().enumerate() {
        let m = msg(words, tag as u64);
        let full = model.len() == cap as usize;
        match op {
            Op::Shift => {
                let got = ring.enqueue(&m, EnqMode::Shift).unwrap();
                if full {
                    model.pop_front();
                    dropped += 1;
                }
                model.push_back(m);
                assert_eq!(got, if full { Enq::Replaced } else { Enq::Stored });
            }
            Op::Try => {
                let got = ring.enqueue(&m, EnqMode::Try).unwrap();
                if full {
                    assert_eq!(got, Enq::Full);
                } else {
                    assert_eq!(got, Enq::Stored);
                    model.push_back(m);
                }
            }
            Op::Block => {
                let got = ring.enqueue(&m, EnqMode::Block(Some(past)));
                if full {
                    assert_eq!(got, Err(RingError::Timeout));
                } else {
                    assert_eq!(got, Ok(Enq::Stored));
                    model.push_back(m);
                }
            }
            Op::DeqTry => {
                let got = ring.dequeue(&mut buf, None).unwrap();
                match model.pop_front() {
                    Some(want) => {
                        assert!(got);
                        assert_eq!(buf, want);
                    }
                    None => assert!(!got),
                }
            }
            Op::DeqBlock => {
                let got = ring.dequeue(&mut buf, Some(Some(past)));
                match model.pop_front() {
                    Some(want) => {
                        assert_eq!(got, Ok(true));
                        assert_eq!(buf, want);
                    }
                    None => assert_eq!(got, Err(RingError::Timeout)),
                }
            }
        }
        assert_eq!(ring.len() as usize, model.len());
        if let Heap::N(r) = &ring {
            assert_eq!(r.dropped(), dropped);
            assert_eq!(r.abandoned(), 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn native_ring_matches_a_vecdeque(cap in 1u32..10, words in 1u32..5, ops in proptest::collection::vec(op(), 0..120)) {
        check_against_model(true, words, cap, &ops);
    }

    #[test]
    fn go_ring_matches_a_vecdeque(cap in 1u32..10, words in 1u32..5, ops in proptest::collection::vec(op(), 0..120)) {
        check_against_model(false, words, cap, &ops);
    }
}

/// Threads on one heap ring: 2 producers × 2 consumers, blocking, no loss, no duplicate,
/// per-producer FIFO, never a torn message.
fn threads_blocking(native: bool) {
    const PER: u64 = 20_000;
    let ring = Arc::new(Heap::new(native, 4, 8));
    let mut producers = Vec::new();
    for p in 0..2u64 {
        let ring = Arc::clone(&ring);
        producers.push(std::thread::spawn(move || {
            for i in 0..PER {
                let tag = (p << 32) | i;
                ring.enqueue(&msg(4, tag), EnqMode::Block(None)).unwrap();
            }
        }));
    }
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let ring = Arc::clone(&ring);
        consumers.push(std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 32];
            for _ in 0..PER {
                ring.dequeue(&mut buf, Some(None)).unwrap();
                let first = u64::from_le_bytes(buf[..8].try_into().unwrap());
                let tag = first / 1000;
                assert_eq!(buf, msg(4, tag), "torn message");
                got.push(tag);
            }
            got
        }));
    }
    for p in producers {
        p.join().unwrap();
    }
    let mut all = Vec::new();
    for c in consumers {
        let got = c.join().unwrap();
        for p in 0..2u64 {
            let mine: Vec<u64> = got.iter().copied().filter(|t| t >> 32 == p).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "per-producer order");
        }
        all.extend(got);
    }
    all.sort_unstable();
    let want: Vec<u64> = (0..2u64)
        .flat_map(|p| (0..PER).map(move |i| (p << 32) | i))
        .collect();
    assert_eq!(all, want);
}

#[test]
fn native_threads_no_loss_no_duplicate() {
    threads_blocking(true);
}

#[test]
fn go_threads_no_loss_no_duplicate() {
    threads_blocking(false);
}

/// A native ring with a short stall timeout, for the stuck-peer cases.
fn native_short_stall(words: u32, cap: u32) -> RingN<HeapMem> {
    let layout = LayoutN::new(words, cap).unwrap();
    let mem = HeapMem::new(layout.size() as usize);
    RingN::init(&mem, layout, std::process::id());
    RingN::new(
        mem,
        layout,
        Tuning {
            stall_timeout: Duration::from_millis(30),
            ..tuning()
        },
    )
}

/// Runs `f` on a thread and fails the test if it does not return within `limit` (a hang
/// guard: the operations under test must return at all, not within a measured time).
fn returns<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || drop(tx.send(f())));
    rx.recv_timeout(limit)
        .expect("the operation never returned (a live peer's stall made it hang)")
}

/// Position `pos` shown as being written by a live process (this one) in its slot.
fn live_writer_at(r: &RingN<HeapMem>, pos: u64) {
    use crate::format::n;
    use crate::mem::Mem;
    let off = r.layout.slot(pos);
    r.mem.u64(off + n::SLOT_SEQ).store(
        (pos << 2) | n::ST_WRITING,
        std::sync::atomic::Ordering::SeqCst,
    );
    r.mem.u64(off + n::SLOT_OWNER).store(
        (u64::from(std::process::id()) << 32) | (pos & 0xffff_ffff),
        std::sync::atomic::Ordering::SeqCst,
    );
}

#[test]
fn native_try_operations_are_bounded_by_a_live_stalled_writer() {
    use crate::format::n;
    use crate::mem::Mem;
    use std::sync::atomic::Ordering::SeqCst;
    // Capacity 1: a live producer (stopped, say by a debugger) is mid-copy at position 1.
    let r = Arc::new(native_short_stall(1, 1));
    r.mem.u64(n::TAIL).store(2, SeqCst);
    live_writer_at(&r, 1);
    // dequeue_try must not spin forever behind it.
    let r2 = Arc::clone(&r);
    let got = returns(Duration::from_secs(20), move || {
        r2.dequeue(&mut [0u8; 8], None)
    });
    assert!(
        matches!(got, Err(RingError::LockStuck { .. })),
        "dequeue_try behind a stalled writer: {got:?}"
    );
    // A shift discards position 1 and then needs its slot for position 2: bounded too.
    let r2 = Arc::clone(&r);
    let got = returns(Duration::from_secs(20), move || {
        r2.enqueue(&msg(1, 7), EnqMode::Shift)
    });
    assert!(
        matches!(got, Err(RingError::LockStuck { .. })),
        "shift behind a stalled writer: {got:?}"
    );
    // A blocking enqueue honours its deadline even after it has claimed a position.
    r.mem
        .u64(n::HEAD)
        .store(r.mem.u64(n::TAIL).load(SeqCst), SeqCst);
    let r2 = Arc::clone(&r);
    let got = returns(Duration::from_secs(20), move || {
        r2.enqueue(
            &msg(1, 8),
            EnqMode::Block(Some(Instant::now() + Duration::from_millis(50))),
        )
    });
    assert!(
        matches!(
            got,
            Err(RingError::Timeout) | Err(RingError::LockStuck { .. })
        ),
        "block behind a stalled writer: {got:?}"
    );
    // The live writer finishes: the two positions given up (2 and 3) are skipped after the
    // stall timeout, and the queue works again.
    r.mem
        .u64(r.layout.slot(1) + n::SLOT_SEQ)
        .store((1 << 2) | n::ST_READY, SeqCst);
    let r2 = Arc::clone(&r);
    returns(Duration::from_secs(20), move || {
        let deadline = Some(Instant::now() + Duration::from_secs(10));
        let r3 = Arc::clone(&r2);
        let consumer = std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            r3.dequeue(&mut buf, Some(deadline)).map(|_| buf)
        });
        r2.enqueue(&msg(1, 9), EnqMode::Block(deadline)).unwrap();
        let buf = consumer.join().unwrap().unwrap();
        assert_eq!(buf.to_vec(), msg(1, 9));
        assert_eq!(r2.abandoned(), 2);
    });
}

#[test]
fn native_positions_from_a_corrupt_header_give_corrupt_not_a_panic() {
    use crate::format::n;
    use crate::mem::Mem;
    use std::sync::atomic::Ordering::SeqCst;
    for (head, tail) in [
        (u64::MAX, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (1 << 62, 1 << 62),
    ] {
        let r = native_short_stall(1, 2);
        r.mem.u64(n::HEAD).store(head, SeqCst);
        r.mem.u64(n::TAIL).store(tail, SeqCst);
        let e = r.enqueue(&msg(1, 1), EnqMode::Try);
        assert!(
            matches!(e, Err(RingError::Corrupt { .. })),
            "{head} {tail}: {e:?}"
        );
        let d = r.dequeue(&mut [0u8; 8], None);
        assert!(
            matches!(d, Err(RingError::Corrupt { .. })),
            "{head} {tail}: {d:?}"
        );
    }
}

#[test]
fn native_slot_ahead_of_head_gives_corrupt_not_a_busy_loop() {
    use crate::format::n;
    use crate::mem::Mem;
    use std::sync::atomic::Ordering::SeqCst;
    // Slot of position `head` claims a later lap while `head` stays put: no protocol step
    // writes that (a producer reuses a slot only after `head` passed it).
    let r = Arc::new(native_short_stall(1, 2));
    r.mem.u64(n::TAIL).store(3, SeqCst);
    r.mem
        .u64(r.layout.slot(2) + n::SLOT_SEQ)
        .store((4 << 2) | n::ST_READY, SeqCst);
    for wait in [None, Some(Some(Instant::now() + Duration::from_secs(5)))] {
        let r2 = Arc::clone(&r);
        let got = returns(Duration::from_secs(20), move || {
            r2.dequeue(&mut [0u8; 8], wait)
        });
        assert!(matches!(got, Err(RingError::Corrupt { .. })), "{got:?}");
    }
}
