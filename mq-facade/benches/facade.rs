//! The facade's dispatch overhead on every local backend: the same operation through the
//! crate's own API and through `mq_facade::open_producer` / `open_consumer`, timed in the
//! same loop.
//!
//! | backend | rows (64-byte payloads) |
//! | --- | --- |
//! | shmq | send + receive pairs (a batch of 256 sends, then 256 receives) |
//! | duraqueue | sends published but not synced; receive + ack (each ack a durable poll); durable send (`offer` / `send` + `flush(Synced)`) |
//! | dmq | send + receive + commit pairs, page cache; durable send (`durability=data`) |
//! | ddmq | publish + consume + ack pairs (`durability=none`) |
//! | dsmq | put + get pairs on an in-process server on 127.0.0.1:0 (a batch of puts, one round trip, then the gets) |
//!
//! Each round times one batch natively and one through the facade, alternating which goes
//! first, so both see the same load, page cache and disk; a row's figure is the facade's
//! median rate, its floor the native median (`ratio` = facade / native, so 1 − ratio is the
//! overhead), and its target the facade's ≤ 5% overhead. The facade side receives with
//! `recv_into` (reusing a buffer, as the native side does). Files live in a temporary
//! directory under the system's temp dir; shared-memory segments are removed once opened.
//!
//! Environment:
//! - `FACADE_BENCH_QUICK=1`: about 1.5 s per row (a smoke run, ~15 s in all) instead of 5 s
//!   (~40 s in all).
//! - `FACADE_BENCH_REPORT=PATH`: write the `mq_benchkit::Report` (backend `facade`) there.
//!
//! Run with `cargo bench -p mq-facade --features shmq,duraqueue,dmq,ddmq,dsmq --bench facade`.

use std::path::Path;
use std::time::Duration;

use mq_benchkit::{Better, Report, Row, Scenario};
use mq_facade::{Consumer, Durability, Producer, Wait};

#[path = "support/mod.rs"]
mod support;

use support::{PAYLOAD, Paired, interleave};

/// The spec's target for the facade's dispatch overhead.
const TARGET: &str = "≤ 5% overhead";

fn main() {
    let quick = mq_benchkit::quick("FACADE_BENCH_QUICK");
    let per_row = support::budget(quick, 1.5, 5.0);
    let dir = tempfile::Builder::new()
        .prefix("mq-facade-bench")
        .tempdir()
        .expect("a temporary directory");
    let mut report = Report::new(
        "facade",
        "mq-facade: each local backend natively and through the facade",
        quick,
    );
    report.command = format!(
        "{}cargo bench -p mq-facade --features shmq,duraqueue,dmq,ddmq,dsmq --bench facade",
        if quick { "FACADE_BENCH_QUICK=1 " } else { "" }
    );
    report
        .setting("machine", support::machine())
        .setting("payload", "64 B")
        .setting("time per row", format!("{per_row:?}"))
        .setting(
            "file system of the queues",
            support::file_system(dir.path()),
        );

    report.scenarios.push(shmq(per_row));
    report.scenarios.push(duraqueue(dir.path(), per_row));
    report.scenarios.push(dmq(dir.path(), per_row));
    report.scenarios.push(ddmq(dir.path(), per_row));
    report.scenarios.push(dsmq(per_row));

    support::print(&report);
    support::write_report(&report, "FACADE_BENCH_REPORT");
}

/// A row: the facade's rate against the native API's, with the overhead target.
fn row(measure: &str, krate: &str, paired: &Paired) -> Row {
    Row::new(measure, paired.subject(), "msg/s", Better::Higher)
        .floor(&format!("native {krate} API"), paired.baseline())
        .target(TARGET, paired.ratio() >= 0.95)
}

fn rounds_note(paired: &[(&str, &Paired)]) -> String {
    let parts: Vec<String> = paired
        .iter()
        .map(|(name, p)| format!("{name}: {} rounds", p.rounds()))
        .collect();
    format!("medians over interleaved rounds ({})", parts.join(", "))
}

fn recv_ack(rx: &mut dyn Consumer, buf: &mut Vec<u8>) {
    let meta = rx
        .recv_into(buf, Wait::Forever)
        .expect("recv")
        .expect("a message");
    rx.ack(meta.tag).expect("ack");
}

fn shmq(budget: Duration) -> Scenario {
    const SLOTS: u32 = 256;
    let mut scenario = Scenario::new("shmq", "shmq: System V shared-memory ring");
    let options = shmq::Options::default();
    // Natively a slot is the 64-byte message; the facade frames it with an 8-byte length.
    let native = shmq::Queue::create_unique(8, SLOTS, &options).expect("a native shmq queue");
    let for_facade =
        shmq::Queue::create_unique(9, SLOTS, &options).expect("a shmq queue for the facade");
    let url = format!("shmq://{}", for_facade.key());
    let mut tx = mq_facade::open_producer(&url).expect("facade shmq producer");
    let mut rx = mq_facade::open_consumer(&url).expect("facade shmq consumer");
    // Marked for removal now: the kernel frees them when the last handle detaches, even if
    // this bench panics.
    native.delete().expect("remove the native segment");
    for_facade.delete().expect("remove the facade's segment");
    let mut slot = [0u8; 64];
    let mut fbuf = Vec::with_capacity(64);
    let paired = interleave(
        u64::from(SLOTS),
        budget,
        5,
        usize::MAX,
        &mut || {
            for _ in 0..SLOTS {
                native.enqueue_block(&PAYLOAD, None).expect("enqueue");
            }
            for _ in 0..SLOTS {
                native.dequeue_block(&mut slot, None).expect("dequeue");
            }
        },
        &mut || {
            for _ in 0..SLOTS {
                tx.send(&PAYLOAD).expect("send");
            }
            for _ in 0..SLOTS {
                recv_ack(rx.as_mut(), &mut fbuf);
            }
        },
        &mut || {},
    );
    scenario.rows.push(
        row(
            "send + receive pairs, 64 B (batches of 256, one thread)",
            "shmq",
            &paired,
        )
        .headline(),
    );
    scenario.notes.push(rounds_note(&[("pairs", &paired)]));
    scenario
}

fn duraqueue(dir: &Path, budget: Duration) -> Scenario {
    const SIZE: u64 = 64 << 20;
    const SENDS: u64 = 1000;
    const ACKS: u64 = 20;
    const DURABLE: u64 = 20;
    let mut scenario = Scenario::new("duraqueue", "duraqueue: mmap'd durable ring");
    let mut native =
        duraqueue::DuraQueue::open_with(dir.join("native.dq"), &duraqueue::OpenOptions::new(SIZE))
            .expect("a native duraqueue");
    let url = format!("duraqueue://{}?size=64MiB", dir.join("facade.dq").display());
    let mut tx = mq_facade::open_producer(&url).expect("facade duraqueue producer");
    let mut rx = mq_facade::open_consumer(&url).expect("facade duraqueue consumer");
    let (mut nbuf, mut fbuf) = (Vec::with_capacity(64), Vec::with_capacity(64));

    // At most 160 B a record: 150 rounds of 1,000 stay well inside the 64 MiB ring.
    let sends = interleave(
        SENDS,
        budget,
        5,
        150,
        &mut || {
            for _ in 0..SENDS {
                native.offer_unsynced(&PAYLOAD).expect("offer_unsynced");
            }
        },
        &mut || {
            for _ in 0..SENDS {
                tx.send(&PAYLOAD).expect("send");
            }
        },
        &mut || {},
    );
    scenario.rows.push(row(
        "send 64 B, published, not synced (page cache)",
        "duraqueue",
        &sends,
    ));

    // Drains what the sends left: at most one ack per sent message.
    let max_rounds = (sends.rounds() as u64 * SENDS / ACKS) as usize;
    let acks = interleave(
        ACKS,
        budget,
        3,
        max_rounds,
        &mut || {
            for _ in 0..ACKS {
                nbuf.clear();
                nbuf.extend_from_slice(native.peek().expect("a record"));
                native.poll().expect("poll");
            }
        },
        &mut || {
            for _ in 0..ACKS {
                recv_ack(rx.as_mut(), &mut fbuf);
            }
        },
        &mut || {},
    );
    scenario.rows.push(row(
        "receive + ack (each ack a durable poll)",
        "duraqueue",
        &acks,
    ));

    let durable = interleave(
        DURABLE,
        budget,
        3,
        usize::MAX,
        &mut || {
            for _ in 0..DURABLE {
                native.offer(&PAYLOAD).expect("offer");
            }
        },
        &mut || {
            for _ in 0..DURABLE {
                tx.send(&PAYLOAD).expect("send");
                tx.flush(Durability::Synced).expect("flush");
            }
        },
        &mut || {},
    );
    scenario.rows.push(row(
        "durable send, 1 producer (offer / send + flush(Synced))",
        "duraqueue",
        &durable,
    ));
    scenario.notes.push(rounds_note(&[
        ("sends", &sends),
        ("acks", &acks),
        ("durable", &durable),
    ]));
    scenario
        .notes
        .push("default options on both sides: v1 format, msync, every poll durable".into());
    scenario
}

fn dmq(dir: &Path, budget: Duration) -> Scenario {
    const PAIRS: u64 = 500;
    const DURABLE: u64 = 20;
    let mut scenario = Scenario::new("dmq", "dmq: two files and a map");
    let open = |name: &str, durability: dmq::Durability| {
        let queue = dmq::Queue::open_with(
            dir.join(name),
            &dmq::OpenOptions::new()
                .framing(dmq::Framing::Frames)
                .durability(durability)
                .commit(dmq::Commit::Explicit),
        )
        .expect("a native dmq queue");
        let writer = queue.writer().expect("writer");
        (queue, writer)
    };
    let facade = |name: &str, durability: &str| {
        format!(
            "dmq://{}?framing=frames&durability={durability}",
            dir.join(name).display()
        )
    };
    let (queue, mut writer) = open("native-dmq", dmq::Durability::PageCache);
    let mut reader = queue.reader().expect("reader");
    let url = facade("facade-dmq", "pagecache");
    let mut tx = mq_facade::open_producer(&url).expect("facade dmq producer");
    let mut rx = mq_facade::open_consumer(&url).expect("facade dmq consumer");
    let (mut nbuf, mut fbuf) = (Vec::with_capacity(64), Vec::with_capacity(64));
    let pairs = interleave(
        PAIRS,
        budget,
        5,
        usize::MAX,
        &mut || {
            for _ in 0..PAIRS {
                writer.send(&PAYLOAD).expect("send");
            }
            for _ in 0..PAIRS {
                let m = reader.try_recv().expect("recv").expect("a message");
                nbuf.clear();
                nbuf.extend_from_slice(&m);
                reader.commit_to(m.mark()).expect("commit");
            }
        },
        &mut || {
            for _ in 0..PAIRS {
                tx.send(&PAYLOAD).expect("send");
            }
            for _ in 0..PAIRS {
                recv_ack(rx.as_mut(), &mut fbuf);
            }
        },
        &mut || {},
    );
    scenario.rows.push(
        row(
            "send + receive + commit pairs, 64 B, page cache (batches of 500)",
            "dmq",
            &pairs,
        )
        .headline(),
    );

    let (_durable_queue, mut durable_writer) = open("native-dmq-data", dmq::Durability::Data);
    let mut durable_tx =
        mq_facade::open_producer(&facade("facade-dmq-data", "data")).expect("facade dmq producer");
    let durable = interleave(
        DURABLE,
        budget,
        3,
        usize::MAX,
        &mut || {
            for _ in 0..DURABLE {
                durable_writer.send(&PAYLOAD).expect("send");
            }
        },
        &mut || {
            for _ in 0..DURABLE {
                durable_tx.send(&PAYLOAD).expect("send");
            }
        },
        &mut || {},
    );
    scenario.rows.push(row(
        "durable send, 1 producer (durability=data: each send synced)",
        "dmq",
        &durable,
    ));
    scenario
        .notes
        .push(rounds_note(&[("pairs", &pairs), ("durable", &durable)]));
    scenario
        .notes
        .push("frames framing, explicit commit on both sides (as the facade opens it)".into());
    scenario
}

fn ddmq(dir: &Path, budget: Duration) -> Scenario {
    const PAIRS: u64 = 50;
    let mut scenario = Scenario::new("ddmq", "ddmq: one file per message");
    let broker = ddmq::Broker::open_with(
        dir.join("native-ddmq"),
        ddmq::BrokerOptions::default()
            .create(true)
            .durability(ddmq::Durability::None),
    )
    .expect("a native ddmq root");
    broker.create_queue("q").expect("a native ddmq queue");
    let options = ddmq::PublishOptions::new()
        .skip_cleaning(true)
        .requeue(ddmq::Requeue::Yes);
    let url = format!(
        "ddmq://{}/q?durability=none",
        dir.join("facade-ddmq").display()
    );
    let mut tx = mq_facade::open_producer(&url).expect("facade ddmq producer");
    let mut rx = mq_facade::open_consumer(&url).expect("facade ddmq consumer");
    let text = std::str::from_utf8(&PAYLOAD).expect("ASCII");
    let (mut nbuf, mut fbuf) = (Vec::with_capacity(64), Vec::with_capacity(64));
    let pairs = interleave(
        PAIRS,
        budget,
        3,
        usize::MAX,
        &mut || {
            for _ in 0..PAIRS {
                broker
                    .publish("q", serde_json::Value::from(text), &options)
                    .expect("publish");
            }
            for _ in 0..PAIRS {
                let d = broker
                    .consume("q", 1)
                    .expect("consume")
                    .pop()
                    .expect("a message");
                nbuf.clear();
                nbuf.extend_from_slice(d.message.text().as_bytes());
                d.ack().expect("ack");
            }
        },
        &mut || {
            for _ in 0..PAIRS {
                tx.send(&PAYLOAD).expect("send");
            }
            for _ in 0..PAIRS {
                recv_ack(rx.as_mut(), &mut fbuf);
            }
        },
        &mut || {},
    );
    scenario.rows.push(row(
        "publish + consume + ack pairs, 64 B, durability=none (batches of 50)",
        "ddmq",
        &pairs,
    ));
    scenario.notes.push(rounds_note(&[("pairs", &pairs)]));
    scenario
}

fn dsmq(budget: Duration) -> Scenario {
    const PAIRS: u64 = 100;
    /// The topic the flush round trip reads, as the facade's: nobody writes to it.
    const FLUSH_TOPIC: &str = "\u{0}dsmq-facade-flush";
    let mut scenario = Scenario::new("dsmq", "dsmq: WebSocket server (in-process)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let server = rt
        .block_on(dsmq::Server::bind(
            "127.0.0.1:0",
            dsmq::ServerConfig::default(),
        ))
        .expect("a dsmq server on 127.0.0.1:0");
    let port = server.local_addr().port();
    let handle = server.handle();
    rt.spawn(server.run());
    let connect = || dsmq::blocking::Client::connect("127.0.0.1", port).expect("connect");
    let (mut put, mut get) = (connect(), connect());
    let url = format!("dsmq://127.0.0.1:{port}/facade");
    let mut tx = mq_facade::open_producer(&url).expect("facade dsmq producer");
    let mut rx = mq_facade::open_consumer(&url).expect("facade dsmq consumer");
    let text = std::str::from_utf8(&PAYLOAD).expect("ASCII");
    let (mut nbuf, mut fbuf) = (Vec::with_capacity(64), Vec::with_capacity(64));
    let pairs = interleave(
        PAIRS,
        budget,
        3,
        usize::MAX,
        &mut || {
            for _ in 0..PAIRS {
                put.put("native", text).expect("put");
            }
            put.get_raw(FLUSH_TOPIC).expect("round trip");
            for _ in 0..PAIRS {
                let got = get.get("native").expect("get").expect("a message");
                nbuf.clear();
                nbuf.extend_from_slice(got.as_bytes());
            }
        },
        &mut || {
            for _ in 0..PAIRS {
                tx.send(&PAYLOAD).expect("send");
            }
            tx.flush(Durability::Written).expect("flush");
            for _ in 0..PAIRS {
                recv_ack(rx.as_mut(), &mut fbuf);
            }
        },
        &mut || {},
    );
    scenario.rows.push(
        row(
            "put + get pairs, 64 B (batches of 100 puts, a round trip, 100 gets)",
            "dsmq",
            &pairs,
        )
        .headline(),
    );
    scenario.notes.push(rounds_note(&[("pairs", &pairs)]));
    scenario
        .notes
        .push("blocking clients, one connection each way, on 127.0.0.1".into());
    drop((tx, rx, put, get));
    handle.shutdown();
    scenario
}
