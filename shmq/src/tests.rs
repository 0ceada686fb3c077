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

fn tuning() -> Tuning {
    Tuning {
        spin_for: Duration::from_micros(20),
        max_backoff: Duration::from_micros(50),
        stall_timeout: Duration::from_millis(200),
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
