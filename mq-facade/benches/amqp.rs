//! Confirmed sends per second of the `amqp` adapter against raw `lapin` on the same
//! private RabbitMQ node, in the same run (the floor: what the broker and client give
//! without the facade), with 1 and with 16 producers.
//!
//! | group | facade | floor (raw lapin) |
//! | --- | --- | --- |
//! | `in_flight_1000` | 1 producer: 1,000 × `send` then `flush(Synced)` | 1 channel: 1,000 publishes then `wait_for_confirms` |
//! | `each_confirmed` | 1 producer: `send` + `flush(Synced)` per message | 1 channel: publish and await its confirm per message |
//! | `producers_16` | 16 producers (threads, a connection each): 1,000 × `send` + `flush` each | 16 connections: 1,000 publishes + `wait_for_confirms` each |
//!
//! 64-byte persistent messages to a durable classic queue, purged before every timed
//! batch (outside the timing). Each iteration runs the floor and the facade back to back,
//! timed apart, so both see the same broker state; the ratios printed at the end are of
//! their medians.
//!
//! `AMQP_BENCH_QUICK=1`: short warm-up and measurement (a smoke run). Run with
//! `cargo bench -p mq-facade --features amqp --bench amqp`.

use std::cell::RefCell;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use mq_facade::{Durability, Producer};

#[path = "../tests/support/rabbitmq.rs"]
mod rabbitmq;

const PAYLOAD: [u8; 64] = [b'x'; 64];
const BATCH: u64 = 1000;
const EACH: u64 = 100;
const PRODUCERS: usize = 16;

struct Floor {
    rt: tokio::runtime::Runtime,
    uri: String,
}

impl Floor {
    fn connect(&self, queue: &str) -> lapin::Channel {
        self.rt.block_on(async {
            let conn = Connection::connect(&self.uri, ConnectionProperties::default())
                .await
                .expect("connect");
            let ch = conn.create_channel().await.expect("channel");
            ch.queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare");
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirms");
            std::mem::forget(conn); // lives as long as the bench
            ch
        })
    }

    fn purge(&self, ch: &lapin::Channel, queue: &str) {
        self.rt.block_on(async {
            ch.queue_purge(queue.into(), QueuePurgeOptions::default())
                .await
                .expect("purge")
        });
    }
}

async fn publish(ch: &lapin::Channel, queue: &str) -> lapin::PublisherConfirm {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        &PAYLOAD,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .expect("publish")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn main() {
    let quick = std::env::var("AMQP_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let broker = rabbitmq::Broker::shared();
    let floor = Floor {
        rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime"),
        uri: format!("amqp://guest:guest@127.0.0.1:{}/%2f", broker.port()),
    };
    let mut c = Criterion::default()
        .warm_up_time(if quick {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(2)
        })
        .measurement_time(if quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(8)
        })
        .sample_size(10)
        .configure_from_args();
    // msg/s per iteration: (floor, facade), per group.
    let rates: RefCell<Vec<(&str, f64, f64)>> = RefCell::new(Vec::new());

    // Runs one group: per iteration, purge, time the floor, purge, time the facade.
    let mut pair = |group: &'static str,
                    queue: &str,
                    messages: u64,
                    raw: &mut dyn FnMut(),
                    ours: &mut dyn FnMut()| {
        let purge_ch = floor.connect(queue);
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(messages));
        g.bench_function("floor_vs_facade", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    floor.purge(&purge_ch, queue);
                    let t = Instant::now();
                    raw();
                    let raw_time = t.elapsed();
                    floor.purge(&purge_ch, queue);
                    let t = Instant::now();
                    ours();
                    let our_time = t.elapsed();
                    let n = messages as f64;
                    rates.borrow_mut().push((
                        group,
                        n / raw_time.as_secs_f64(),
                        n / our_time.as_secs_f64(),
                    ));
                    total += our_time;
                }
                total
            })
        });
        g.finish();
    };

    // 1 producer, 1,000 in flight.
    let queue = "bench-in-flight";
    let ch = floor.connect(queue);
    let mut tx = mq_facade::open_producer(&broker.url(queue, "in_flight=1000")).expect("producer");
    pair(
        "in_flight_1000",
        queue,
        BATCH,
        &mut || {
            floor.rt.block_on(async {
                for _ in 0..BATCH {
                    drop(publish(&ch, queue).await);
                }
                ch.wait_for_confirms().await.expect("confirms");
            })
        },
        &mut || {
            for _ in 0..BATCH {
                tx.send(&PAYLOAD).expect("send");
            }
            tx.flush(Durability::Synced).expect("flush");
        },
    );

    // 1 producer, every message confirmed before the next.
    let queue = "bench-each";
    let ch = floor.connect(queue);
    let mut tx = mq_facade::open_producer(&broker.url(queue, "")).expect("producer");
    pair(
        "each_confirmed",
        queue,
        EACH,
        &mut || {
            floor.rt.block_on(async {
                for _ in 0..EACH {
                    let confirm = publish(&ch, queue).await.await.expect("confirm");
                    assert!(confirm.is_ack());
                }
            })
        },
        &mut || {
            for _ in 0..EACH {
                tx.send(&PAYLOAD).expect("send");
                tx.flush(Durability::Synced).expect("flush");
            }
        },
    );

    // 16 producers, each on its own connection.
    let queue = "bench-16";
    let channels: Vec<lapin::Channel> = (0..PRODUCERS).map(|_| floor.connect(queue)).collect();
    let url = broker.url(queue, "in_flight=1000");
    let mut producers: Vec<Box<dyn Producer>> = (0..PRODUCERS)
        .map(|_| mq_facade::open_producer(&url).expect("producer"))
        .collect();
    pair(
        "producers_16",
        queue,
        BATCH * PRODUCERS as u64,
        &mut || {
            floor.rt.block_on(async {
                let tasks: Vec<_> = channels
                    .iter()
                    .map(|ch| {
                        let ch = ch.clone();
                        tokio::spawn(async move {
                            for _ in 0..BATCH {
                                drop(publish(&ch, "bench-16").await);
                            }
                            ch.wait_for_confirms().await.expect("confirms");
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
            })
        },
        &mut || {
            // Timed from before the threads start (as the floor's tasks); they start together.
            let barrier = Arc::new(Barrier::new(PRODUCERS));
            std::thread::scope(|s| {
                for tx in producers.iter_mut() {
                    let barrier = Arc::clone(&barrier);
                    s.spawn(move || {
                        barrier.wait();
                        for _ in 0..BATCH {
                            tx.send(&PAYLOAD).expect("send");
                        }
                        tx.flush(Durability::Synced).expect("flush");
                    });
                }
            });
        },
    );

    println!(
        "\nconfirmed sends/s, medians over every timed batch (floor = raw lapin, same broker, same run):"
    );
    println!("| group | floor msg/s | facade msg/s | facade / floor |");
    println!("| --- | --- | --- | --- |");
    for group in ["in_flight_1000", "each_confirmed", "producers_16"] {
        let (mut raw, mut ours): (Vec<f64>, Vec<f64>) = rates
            .borrow()
            .iter()
            .filter(|(g, _, _)| *g == group)
            .map(|(_, r, o)| (*r, *o))
            .unzip();
        let (raw, ours) = (median(&mut raw), median(&mut ours));
        println!("| {group} | {raw:.0} | {ours:.0} | {:.2} |", ours / raw);
    }
}
