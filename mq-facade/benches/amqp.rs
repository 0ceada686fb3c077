//! Confirmed sends per second of the `amqp` adapter against raw `lapin` on the same
//! private RabbitMQ node, in the same run, with 1 and with 16 producers.
//!
//! | scenario | facade | baseline (raw lapin) |
//! | --- | --- | --- |
//! | 1 producer, 1,000 in flight | 1 producer: 1,000 × `send` then `flush(Synced)` | 1 channel: 1,000 publishes then `wait_for_confirms` |
//! | 1 producer, each confirmed | 1 producer: `send` + `flush(Synced)` per message | 1 channel: publish and await its confirm per message |
//! | 16 producers | 16 producers (threads, a connection each): N × `send` + `flush` each | 16 connections: N publishes + `wait_for_confirms` each |
//!
//! Raw lapin is the floor-like baseline: what RabbitMQ and its client give without the
//! facade (RabbitMQ is itself the peer, so there is no separate original), and the ratio
//! facade / lapin is the facade's overhead (target ≤ 5%). 64-byte persistent messages to
//! a durable classic queue, purged before every timed batch (outside the timing). Each
//! round times one batch of each side, alternating which goes first, so both see the same
//! broker state; the figures are medians over the rounds. The broker is a private node the
//! bench starts (and installs when missing) through `tests/support/rabbitmq.rs`.
//!
//! Environment:
//! - `AMQP_BENCH_QUICK=1`: about 1.5 s per scenario and 200 messages per producer in the
//!   16-producer case (a smoke run) instead of 8 s and 1,000.
//! - `AMQP_BENCH_REPORT=PATH`: write the `mq_benchkit::Report` (backend `amqp`) there.
//!
//! Run with `cargo bench -p mq-facade --features amqp --bench amqp`.

use std::sync::{Arc, Barrier};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use mq_benchkit::{Better, Report, Row, Scenario};
use mq_facade::{Durability, Producer};

#[path = "support/mod.rs"]
mod support;

#[path = "../tests/support/rabbitmq.rs"]
mod rabbitmq;

use support::{PAYLOAD, interleave};

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

fn main() {
    let quick = mq_benchkit::quick("AMQP_BENCH_QUICK");
    let budget = support::budget(quick, 1.5, 8.0);
    // Messages per producer in the 16-producer case.
    let each16: u64 = if quick { 200 } else { BATCH };
    let broker = rabbitmq::Broker::shared();
    let floor = Floor {
        rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime"),
        uri: format!("amqp://guest:guest@127.0.0.1:{}/%2f", broker.port()),
    };
    let mut report = Report::new(
        "amqp",
        "amqp: RabbitMQ through the facade against raw lapin",
        quick,
    );
    report.command = format!(
        "{}cargo bench -p mq-facade --features amqp --bench amqp",
        if quick { "AMQP_BENCH_QUICK=1 " } else { "" }
    );
    report
        .setting("machine", support::machine())
        .setting("rabbitmq-server", rabbitmq_version())
        .setting("payload", "64 B, persistent, durable classic queue")
        .setting("time per scenario", format!("{budget:?}"));
    let mut scenario = Scenario::new("confirmed_sends", "Confirmed sends, 64 B");
    let baseline = "raw lapin, same broker";
    let mut push = |measure: &str, paired: &support::Paired, headline: bool| {
        let row = Row::new(measure, paired.subject(), "msg/s", Better::Higher)
            .floor(baseline, paired.baseline())
            .target("≤ 5% overhead", paired.ratio() >= 0.95);
        scenario
            .rows
            .push(if headline { row.headline() } else { row });
        scenario
            .notes
            .push(format!("{measure}: {} rounds", paired.rounds()));
    };

    // 1 producer, 1,000 in flight.
    let queue = "bench-in-flight";
    let ch = floor.connect(queue);
    let purge_ch = floor.connect(queue);
    let mut tx = mq_facade::open_producer(&broker.url(queue, "in_flight=1000")).expect("producer");
    let paired = interleave(
        BATCH,
        budget,
        3,
        usize::MAX,
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
        &mut || floor.purge(&purge_ch, queue),
    );
    push(
        "confirmed sends, 1 producer, 1,000 in flight then flush",
        &paired,
        false,
    );

    // 1 producer, every message confirmed before the next.
    let queue = "bench-each";
    let ch = floor.connect(queue);
    let purge_ch = floor.connect(queue);
    let mut tx = mq_facade::open_producer(&broker.url(queue, "")).expect("producer");
    let paired = interleave(
        EACH,
        budget,
        3,
        usize::MAX,
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
        &mut || floor.purge(&purge_ch, queue),
    );
    push(
        "confirmed sends, 1 producer, each confirmed before the next",
        &paired,
        false,
    );

    // 16 producers, each on its own connection.
    let queue = "bench-16";
    let channels: Vec<lapin::Channel> = (0..PRODUCERS).map(|_| floor.connect(queue)).collect();
    let purge_ch = floor.connect(queue);
    let url = broker.url(queue, "in_flight=1000");
    let mut producers: Vec<Box<dyn Producer>> = (0..PRODUCERS)
        .map(|_| mq_facade::open_producer(&url).expect("producer"))
        .collect();
    let paired = interleave(
        each16 * PRODUCERS as u64,
        budget,
        3,
        usize::MAX,
        &mut || {
            floor.rt.block_on(async {
                let tasks: Vec<_> = channels
                    .iter()
                    .map(|ch| {
                        let ch = ch.clone();
                        tokio::spawn(async move {
                            for _ in 0..each16 {
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
            // Timed from before the threads start (as the baseline's tasks); they start together.
            let barrier = Arc::new(Barrier::new(PRODUCERS));
            std::thread::scope(|s| {
                for tx in producers.iter_mut() {
                    let barrier = Arc::clone(&barrier);
                    s.spawn(move || {
                        barrier.wait();
                        for _ in 0..each16 {
                            tx.send(&PAYLOAD).expect("send");
                        }
                        tx.flush(Durability::Synced).expect("flush");
                    });
                }
            });
        },
        &mut || floor.purge(&purge_ch, queue),
    );
    push(
        &format!("confirmed sends, 16 producers × {each16} then flush"),
        &paired,
        true,
    );
    scenario.notes.push(
        "raw lapin is the floor-like baseline: RabbitMQ's and its client's own cost without the facade; RabbitMQ is the peer itself, so there is no separate original".into(),
    );
    report.scenarios.push(scenario);
    support::print(&report);
    support::write_report(&report, "AMQP_BENCH_REPORT");
}

/// The installed RabbitMQ package's version, from dpkg.
fn rabbitmq_version() -> String {
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "rabbitmq-server"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}
