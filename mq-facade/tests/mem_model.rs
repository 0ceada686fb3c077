//! Model test of the `mem` backend: random sends (with priorities and drop-oldest overflow),
//! receives, acks, nacks and consumer drops, checked step by step against a plain model
//! (a `Vec` of ready messages and a list of deliveries held per consumer).

use std::collections::HashMap;

use mq_facade::mem::{MemConfig, MemQueue};
use mq_facade::{Consumer, Error, Overflow, Producer, SendOptions, Tag, Wait};
use proptest::prelude::*;

const CAPACITY: usize = 6;
const CONSUMERS: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Send {
        priority: u8,
        drop_oldest: bool,
    },
    Recv {
        consumer: usize,
    },
    Ack {
        consumer: usize,
        nth: usize,
    },
    Nack {
        consumer: usize,
        nth: usize,
        requeue: bool,
    },
    DropConsumer {
        consumer: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, any::<bool>()).prop_map(|(priority, drop_oldest)| Op::Send { priority, drop_oldest }),
        3 => (0..CONSUMERS).prop_map(|consumer| Op::Recv { consumer }),
        2 => (0..CONSUMERS, any::<usize>()).prop_map(|(consumer, nth)| Op::Ack { consumer, nth }),
        1 => (0..CONSUMERS, any::<usize>(), any::<bool>())
            .prop_map(|(consumer, nth, requeue)| Op::Nack { consumer, nth, requeue }),
        1 => (0..CONSUMERS).prop_map(|consumer| Op::DropConsumer { consumer }),
    ]
}

/// A message in the model: (priority, sequence number, redelivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    priority: u8,
    seq: u64,
    redelivered: bool,
}

#[derive(Debug, Default)]
struct Model {
    ready: Vec<Entry>,
    held: HashMap<usize, Vec<(Tag, Entry)>>,
    next_seq: u64,
}

impl Model {
    fn held_count(&self) -> usize {
        self.held.values().map(Vec::len).sum()
    }

    /// The next delivery: highest priority, then lowest sequence number.
    fn next_index(&self) -> Option<usize> {
        (0..self.ready.len())
            .min_by_key(|&i| (std::cmp::Reverse(self.ready[i].priority), self.ready[i].seq))
    }

    /// The drop-oldest victim: lowest priority, then lowest sequence number.
    fn victim_index(&self) -> Option<usize> {
        (0..self.ready.len()).min_by_key(|&i| (self.ready[i].priority, self.ready[i].seq))
    }

    fn requeue(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        self.ready.push(entry);
    }
}

fn payload(seq: u64) -> Vec<u8> {
    seq.to_le_bytes().to_vec()
}

fn run(ops: &[Op], case: u64) -> Result<(), TestCaseError> {
    let queue = MemQueue::open(
        &format!("mem-model-{}-{case}", std::process::id()),
        &MemConfig::default().capacity(CAPACITY).max_priority(2),
    )
    .unwrap();
    let mut tx = queue.producer();
    let mut consumers: Vec<_> = (0..CONSUMERS).map(|_| queue.consumer()).collect();
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Send {
                priority,
                drop_oldest,
            } => {
                let seq = model.next_seq;
                let mut options = SendOptions::new().priority(priority);
                if drop_oldest {
                    options = options.overflow(Overflow::DropOldest);
                }
                let result = tx.send_with(&payload(seq), &options, Wait::NoWait);
                let total = model.ready.len() + model.held_count();
                let fits = total < CAPACITY;
                let victim = if !fits && drop_oldest {
                    model.victim_index()
                } else {
                    None
                };
                if fits || victim.is_some() {
                    if let Some(i) = victim {
                        model.ready.remove(i);
                    }
                    prop_assert!(result.is_ok(), "step {step}: send failed: {result:?}");
                    model.ready.push(Entry {
                        priority,
                        seq,
                        redelivered: false,
                    });
                    model.next_seq += 1;
                } else {
                    prop_assert!(
                        matches!(result, Err(Error::Full { .. })),
                        "step {step}: expected Full, got {result:?}"
                    );
                    // The real queue did not take a sequence number either.
                }
            }
            Op::Recv { consumer } => {
                let got = consumers[consumer].try_recv().unwrap();
                match model.next_index() {
                    None => prop_assert!(got.is_none(), "step {step}: model empty, got {got:?}"),
                    Some(i) => {
                        let entry = model.ready.remove(i);
                        let got = got.ok_or_else(|| {
                            TestCaseError::fail(format!("step {step}: expected seq {}", entry.seq))
                        })?;
                        prop_assert_eq!(&got.payload, &payload(entry.seq), "step {}", step);
                        prop_assert_eq!(got.meta.redelivered, entry.redelivered, "step {}", step);
                        prop_assert_eq!(got.meta.priority, Some(entry.priority), "step {}", step);
                        model
                            .held
                            .entry(consumer)
                            .or_default()
                            .push((got.tag(), entry));
                    }
                }
            }
            Op::Ack { consumer, nth } | Op::Nack { consumer, nth, .. } => {
                let held = model.held.entry(consumer).or_default();
                if held.is_empty() {
                    continue;
                }
                let (tag, entry) = held.remove(nth % held.len());
                match *op {
                    Op::Nack { requeue, .. } => {
                        consumers[consumer].nack(tag, requeue).unwrap();
                        if requeue {
                            model.requeue(entry);
                        }
                    }
                    _ => consumers[consumer].ack(tag).unwrap(),
                }
                prop_assert!(
                    matches!(consumers[consumer].ack(tag), Err(Error::UnknownTag(_))),
                    "step {step}: a settled tag must be unknown"
                );
            }
            Op::DropConsumer { consumer } => {
                consumers[consumer] = queue.consumer();
                for (_, entry) in model.held.remove(&consumer).unwrap_or_default() {
                    model.requeue(entry);
                }
            }
        }
        prop_assert_eq!(
            queue.ready(),
            model.ready.len(),
            "ready after step {}: {:?}",
            step,
            op
        );
        prop_assert_eq!(
            queue.unacked(),
            model.held_count(),
            "unacked after step {}: {:?}",
            step,
            op
        );
    }
    queue.delete();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mem_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static CASE: AtomicU64 = AtomicU64::new(0);
        run(&ops, CASE.fetch_add(1, Ordering::Relaxed))?;
    }
}
