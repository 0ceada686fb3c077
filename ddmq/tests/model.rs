//! Model test: random publish / consume / ack / nack / release sequences against an
//! in-memory model of the queue (numeric priority order, FIFO within a priority, requeue
//! priorities and limits, give-back at the old place). No message is lost or duplicated,
//! and every consume returns exactly what the model says.

use ddmq::{AckOutcome, Broker, Delivery, PublishOptions, Requeue};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Publish {
        priority: Option<u64>,
        requeue: u8,
        limit: u64,
    },
    Consume(usize),
    Ack(usize),
    NackByFlag(usize),
    NackRequeue(usize),
    NackDelete(usize),
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (proptest::option::of(0u64..12), 0u8..4, 0u64..3)
            .prop_map(|(priority, requeue, limit)| Op::Publish { priority, requeue, limit }),
        2 => (1usize..4).prop_map(Op::Consume),
        1 => any::<usize>().prop_map(Op::Ack),
        1 => any::<usize>().prop_map(Op::NackByFlag),
        1 => any::<usize>().prop_map(Op::NackRequeue),
        1 => any::<usize>().prop_map(Op::NackDelete),
        1 => any::<usize>().prop_map(Op::Release),
    ]
}

/// A message of the model.
#[derive(Debug, Clone)]
struct M {
    body: String,
    priority: u64,
    seq: u64,
    requeue: Requeue,
    limit: Option<u64>,
    counter: u64,
}

#[derive(Default)]
struct Model {
    waiting: Vec<M>,
    seq: u64,
}

impl Model {
    fn push(&mut self, mut m: M, keep_place: bool) {
        if !keep_place {
            self.seq += 1;
            m.seq = self.seq;
        }
        self.waiting.push(m);
        self.waiting.sort_by_key(|m| (m.priority, m.seq));
    }

    fn requeue(&mut self, m: &M) {
        let priority = match m.requeue {
            Requeue::AtPriority(p) => p,
            _ => 999, // requeue_prio 0 means the queue priority
        };
        self.push(
            M {
                priority,
                counter: m.counter + 1,
                ..m.clone()
            },
            false,
        );
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(dir.path(), true).unwrap();
    b.create_queue("q").unwrap();
    let mut model = Model::default();
    let mut held: Vec<(Delivery, M)> = Vec::new();
    let mut n = 0;
    for op in ops {
        match op {
            Op::Publish {
                priority,
                requeue,
                limit,
            } => {
                n += 1;
                let body = format!("m{n}");
                let requeue = match requeue {
                    0 => Requeue::No,
                    1 => Requeue::Yes,
                    r => Requeue::AtPriority(u64::from(r) * 3),
                };
                let mut o = PublishOptions::new().skip_cleaning(true).requeue(requeue);
                if let Some(p) = priority {
                    o = o.priority(p);
                }
                if limit > 0 {
                    o = o.requeue_limit(limit);
                }
                b.publish("q", body.as_str(), &o).unwrap();
                let m = M {
                    body,
                    priority: priority.unwrap_or(999),
                    seq: 0,
                    requeue,
                    limit: Some(limit).filter(|l| *l > 0),
                    counter: 0,
                };
                model.push(m, false);
            }
            Op::Consume(k) => {
                let got = b.consume("q", k).unwrap();
                let want: Vec<M> = model.waiting.drain(..k.min(model.waiting.len())).collect();
                let got_bodies: Vec<String> = got.iter().map(|d| d.message.text()).collect();
                let want_bodies: Vec<String> = want.iter().map(|m| m.body.clone()).collect();
                prop_assert_eq!(&got_bodies, &want_bodies);
                for (d, m) in got.into_iter().zip(want) {
                    prop_assert_eq!(d.message.requeue_counter, m.counter);
                    prop_assert_eq!(d.message.priority, m.priority);
                    held.push((d, m));
                }
            }
            Op::Ack(i)
            | Op::NackByFlag(i)
            | Op::NackRequeue(i)
            | Op::NackDelete(i)
            | Op::Release(i)
                if !held.is_empty() =>
            {
                let (d, m) = held.remove(i % held.len());
                let out = match op {
                    Op::Ack(_) => d.ack(),
                    Op::NackByFlag(_) => d.nack(None),
                    Op::NackRequeue(_) => d.nack(Some(true)),
                    Op::NackDelete(_) => d.nack(Some(false)),
                    _ => d.release(),
                }
                .unwrap();
                let requeued = match op {
                    Op::Ack(_) | Op::NackDelete(_) => false,
                    Op::NackRequeue(_) => true,
                    Op::NackByFlag(_) => {
                        m.requeue != Requeue::No && m.limit.is_none_or(|l| m.counter < l)
                    }
                    _ => {
                        model.push(
                            M {
                                counter: m.counter + 1,
                                ..m.clone()
                            },
                            true,
                        );
                        prop_assert!(matches!(out, AckOutcome::Requeued { .. }), "{:?}", out);
                        continue;
                    }
                };
                if requeued {
                    prop_assert!(matches!(out, AckOutcome::Requeued { .. }), "{:?}", out);
                    model.requeue(&m);
                } else {
                    prop_assert_eq!(out, AckOutcome::Deleted);
                }
            }
            _ => {}
        }
    }
    // Everything left comes out in the model's order.
    let rest: Vec<String> = b
        .consume("q", 10_000)
        .unwrap()
        .iter()
        .map(|d| d.message.text())
        .collect();
    let want: Vec<String> = model.waiting.iter().map(|m| m.body.clone()).collect();
    prop_assert_eq!(rest, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn the_queue_behaves_as_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
