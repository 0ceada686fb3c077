//! Benchmarks of `dmq` against floors measured in the same run (spec §5.4): 64-byte
//! payloads, newline framing, files in a temporary directory beside the target directory.
//!
//! | group | crate | floor |
//! | --- | --- | --- |
//! | `send_64B` | `send` with `WriterSync::Grace` and `Flock` | one raw `write` of the 65-byte record on an `O_APPEND` file (with a `flock` pair for `Flock`) |
//! | `send_batch_1000` | `send_batch` of 1,000 messages (page cache) | one raw `write` of the same 65,000 bytes (a buffered sequential write) |
//! | `drain_backlog` | the reader draining 100,000 queued messages | `read` of the same bytes and a `memchr` split |
//! | `end_to_end_batched` | a writer thread sending batches while the reader drains | — (absolute rate) |
//! | `durable_64B` | `send` with `Durability::Data`; 100 sends + `flush` (group commit) | `write` + `fdatasync` |
//! | latency | a parked reader woken by a send (p50, p99 of 2,000) | — |
//! | recovery | a reader opening a 1 GiB backlog (64 MiB in quick mode) and reading it to the end | `read` of the same data file in 1 MiB chunks and a `memchr` count |
//!
//! Each floor runs interleaved with its subject, chunk by chunk, in the same timed loop, so
//! both see the same machine (a shared machine's load moves figures by factors of two
//! between runs). At the end the ratios to the floors are printed. The C original cannot run
//! here (it has no licence, spec §5.1); its published figures appear in the targets' text.
//!
//! Environment:
//! - `DMQ_BENCH_QUICK=1`: a short run (about 20 s of measuring; the recovery backlog is
//!   64 MiB instead of 1 GiB).
//! - `DMQ_BENCH_REPORT=PATH`: write the `mq_benchkit::Report` (JSON) there; `cargo xtask
//!   bench` reads it.
//!
//! Run with `cargo bench -p dmq --bench dmq`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use dmq::{Commit, Durability, OpenOptions, Queue, Wait, WriterSync};
use mq_benchkit::{Better, Report, Row, Scenario};

const PAYLOAD: [u8; 64] = [b'x'; 64];
const BATCH: usize = 1_000;
const BACKLOG: usize = 100_000;

thread_local! {
    /// Nanoseconds per message of each measured case (the last sample set's mean).
    static RESULTS: RefCell<BTreeMap<&'static str, f64>> = RefCell::default();
}

fn record(name: &'static str, total: Duration, messages: u64) -> Duration {
    RESULTS.with(|r| {
        r.borrow_mut()
            .insert(name, total.as_nanos() as f64 / messages.max(1) as f64)
    });
    total
}

fn bench_dir() -> tempfile::TempDir {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(target).unwrap()
}

fn raw_file(dir: &Path, name: &str) -> (PathBuf, File) {
    let path = dir.join(name);
    let file = File::options()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)
        .unwrap();
    (path, file)
}

fn record_bytes() -> Vec<u8> {
    let mut r = PAYLOAD.to_vec();
    r.push(b'\n');
    r
}

fn quick() -> bool {
    mq_benchkit::quick("DMQ_BENCH_QUICK")
}

fn criterion() -> Criterion {
    let c = Criterion::default().configure_from_args();
    if quick() {
        c.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(800))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(20)
    }
}

/// Runs `n` operations of `subject` interleaved with `n` of `floor`, `chunk` at a time, so
/// both see the same machine; returns (subject, floor) time.
fn interleaved(
    n: u64,
    chunk: u64,
    mut floor: impl FnMut(),
    mut subject: impl FnMut(),
) -> (Duration, Duration) {
    let (mut s, mut f) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0;
    while done < n {
        let k = chunk.min(n - done);
        let t = Instant::now();
        for _ in 0..k {
            floor();
        }
        f += t.elapsed();
        let t = Instant::now();
        for _ in 0..k {
            subject();
        }
        s += t.elapsed();
        done += k;
    }
    (s, f)
}

fn send_64b(c: &mut Criterion, dir: &Path) {
    let mut g = c.benchmark_group("send_64B");
    g.throughput(Throughput::Elements(1));
    let rec = record_bytes();
    let (_, raw) = raw_file(dir, "raw");
    for (name, sync) in [("grace", WriterSync::Grace), ("flock", WriterSync::Flock)] {
        let q = Queue::open_with(
            dir.join(format!("send-{name}")),
            &OpenOptions::new().writer_sync(sync),
        )
        .unwrap();
        let mut w = q.writer().unwrap();
        let data0 = File::options().write(true).open(&q.paths()[0]).unwrap();
        let flock = sync == WriterSync::Flock;
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                data0.set_len(0).unwrap();
                raw.set_len(0).unwrap();
                let (subject, floor) = interleaved(
                    n,
                    64,
                    || {
                        if flock {
                            raw.lock_shared().unwrap();
                        }
                        (&raw).write_all(black_box(&rec)).unwrap();
                        if flock {
                            raw.unlock().unwrap();
                        }
                    },
                    || {
                        w.send(black_box(&PAYLOAD)).unwrap();
                    },
                );
                let (s_key, f_key) = if flock {
                    ("send_flock", "raw_write_flock")
                } else {
                    ("send_grace", "raw_write")
                };
                record(f_key, floor, n);
                record(s_key, subject, n)
            })
        });
    }
    g.finish();
}

fn send_batch(c: &mut Criterion, dir: &Path) {
    let mut g = c.benchmark_group("send_batch_1000");
    g.throughput(Throughput::Elements(BATCH as u64));
    let batch: Vec<&[u8]> = vec![&PAYLOAD[..]; BATCH];
    let bytes = record_bytes().repeat(BATCH);
    let (_, raw) = raw_file(dir, "raw-batch");
    let q = Queue::open(dir.join("batch"), None).unwrap();
    let mut w = q.writer().unwrap();
    let data0 = File::options().write(true).open(&q.paths()[0]).unwrap();
    g.bench_function("send_batch", |b| {
        b.iter_custom(|n| {
            data0.set_len(0).unwrap();
            raw.set_len(0).unwrap();
            let (subject, floor) = interleaved(
                n,
                4,
                || (&raw).write_all(black_box(&bytes)).unwrap(),
                || {
                    w.send_batch(black_box(&batch)).unwrap();
                },
            );
            record("raw_batch", floor, n * BATCH as u64);
            record("send_batch", subject, n * BATCH as u64)
        })
    });
    g.finish();
}

fn drain(c: &mut Criterion, dir: &Path) {
    let mut g = c.benchmark_group("drain_backlog");
    g.throughput(Throughput::Elements(BACKLOG as u64));
    g.sample_size(10);
    let batch: Vec<&[u8]> = vec![&PAYLOAD[..]; BATCH];
    let (raw_path, raw) = raw_file(dir, "raw-drain");
    for _ in 0..BACKLOG / BATCH {
        (&raw).write_all(&record_bytes().repeat(BATCH)).unwrap();
    }
    g.bench_function("reader", |b| {
        let mut raw_buf = Vec::new();
        b.iter_custom(|n| {
            let (mut total, mut floor) = (Duration::ZERO, Duration::ZERO);
            for i in 0..n {
                let q = Queue::open_with(
                    dir.join(format!("drain-{i}")),
                    &OpenOptions::new().switch_min_bytes(u64::MAX),
                )
                .unwrap();
                let mut w = q.writer().unwrap();
                for _ in 0..BACKLOG / BATCH {
                    w.send_batch(&batch).unwrap();
                }
                let mut r = q.reader().unwrap();
                let t = Instant::now();
                raw_buf.clear();
                File::open(&raw_path)
                    .unwrap()
                    .read_to_end(&mut raw_buf)
                    .unwrap();
                let count = memchr::memchr_iter(b'\n', &raw_buf).count();
                assert_eq!(black_box(count), BACKLOG);
                floor += t.elapsed();
                let t = Instant::now();
                let mut got = 0;
                let mut buf = Vec::new();
                while r.recv_into(&mut buf, Wait::NoWait).unwrap().is_some() {
                    black_box(&buf);
                    got += 1;
                }
                total += t.elapsed();
                assert_eq!(got, BACKLOG);
                drop(r);
                q.remove().unwrap();
            }
            record("raw_drain", floor, n * BACKLOG as u64);
            record("drain", total, n * BACKLOG as u64)
        })
    });
    g.finish();
}

fn end_to_end(c: &mut Criterion, dir: &Path) {
    let mut g = c.benchmark_group("end_to_end_batched");
    g.throughput(Throughput::Elements(BACKLOG as u64));
    g.sample_size(10);
    g.bench_function("writer_and_reader", |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for i in 0..n {
                let q = Queue::open_with(
                    dir.join(format!("e2e-{i}")),
                    &OpenOptions::new().switch_grace(Duration::ZERO),
                )
                .unwrap();
                let mut r = q.reader().unwrap();
                let mut w = q.writer().unwrap();
                let t = Instant::now();
                let writer = std::thread::spawn(move || {
                    let batch: Vec<&[u8]> = vec![&PAYLOAD[..]; BATCH];
                    for _ in 0..BACKLOG / BATCH {
                        w.send_batch(&batch).unwrap();
                    }
                });
                let mut got = 0;
                let mut buf = Vec::new();
                while got < BACKLOG {
                    if r.recv_into(&mut buf, Wait::Forever).unwrap().is_some() {
                        got += 1;
                    }
                }
                total += t.elapsed();
                writer.join().unwrap();
                drop(r);
                q.remove().unwrap();
            }
            record("end_to_end", total, n * BACKLOG as u64)
        })
    });
    g.finish();
}

fn durable(c: &mut Criterion, dir: &Path) {
    let mut g = c.benchmark_group("durable_64B");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    let rec = record_bytes();
    let (_, raw) = raw_file(dir, "raw-durable");
    let mut raw_durable = || {
        (&raw).write_all(&rec).unwrap();
        raw.sync_data().unwrap();
    };
    let q = Queue::open_with(
        dir.join("durable"),
        &OpenOptions::new().durability(Durability::Data),
    )
    .unwrap();
    let mut w = q.writer().unwrap();
    g.bench_function("send_data", |b| {
        b.iter_custom(|n| {
            let (subject, floor) = interleaved(n, 1, &mut raw_durable, || {
                w.send(&PAYLOAD).unwrap();
            });
            record("raw_durable", floor, n);
            record("durable_send", subject, n)
        })
    });
    let q = Queue::open(dir.join("group"), None).unwrap();
    let mut w = q.writer().unwrap();
    g.throughput(Throughput::Elements(100));
    g.bench_function("group_commit_100", |b| {
        b.iter_custom(|n| {
            let (subject, floor) = interleaved(n, 1, &mut raw_durable, || {
                for _ in 0..100 {
                    w.send(&PAYLOAD).unwrap();
                }
                w.flush().unwrap();
            });
            record("raw_durable_gc", floor, n);
            record("group_commit", subject, n * 100)
        })
    });
    g.finish();
}

/// Latency of a parked reader: the writer sends a timestamp every 200 µs; the reader, blocked
/// in `recv(Forever)`, notes the delay. Measured apart from criterion to report percentiles.
fn latency(dir: &Path) -> (Duration, Duration) {
    let samples = if quick() { 500 } else { 2_000 };
    let q = Queue::open_with(
        dir.join("latency"),
        &OpenOptions::new().switch_grace(Duration::ZERO),
    )
    .unwrap();
    let mut r = q.reader().unwrap();
    let origin = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut lat = Vec::with_capacity(samples);
        while lat.len() < samples {
            let m = r.recv(Wait::Forever).unwrap().unwrap();
            let now = origin.elapsed().as_nanos() as u64;
            let sent: u64 = std::str::from_utf8(&m).unwrap().parse().unwrap();
            lat.push(Duration::from_nanos(now - sent));
        }
        lat
    });
    let mut w = q.writer().unwrap();
    for _ in 0..samples {
        std::thread::sleep(Duration::from_micros(200));
        let now = origin.elapsed().as_nanos() as u64;
        w.send(now.to_string().as_bytes()).unwrap();
    }
    let mut lat = reader.join().unwrap();
    lat.sort();
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

/// What the recovery case measured: seconds per repetition (subject, floor) and the size.
struct Recovery {
    bytes: u64,
    messages: usize,
    subject: Vec<f64>,
    floor: Vec<f64>,
}

/// A reader catching up: a backlog of `bytes` is written (untimed); then, `reps` times, the
/// floor reads the data file in 1 MiB chunks and counts the newlines, and a fresh
/// `Queue::open_with` + `reader()` receives every message. The reader commits nothing
/// (`Commit::Explicit`), so each repetition finds the same backlog.
fn recovery(dir: &Path, bytes: u64, reps: usize) -> Recovery {
    let base = dir.join("recovery");
    let opts = OpenOptions::new()
        .switch_min_bytes(u64::MAX)
        .commit(Commit::Explicit);
    let q = Queue::open_with(&base, &opts).unwrap();
    let batch: Vec<&[u8]> = vec![&PAYLOAD[..]; BATCH];
    let batches = bytes.div_ceil(record_bytes().len() as u64 * BATCH as u64);
    let mut w = q.writer().unwrap();
    for _ in 0..batches {
        w.send_batch(&batch).unwrap();
    }
    drop(w);
    let data = q.paths()[0].clone();
    drop(q);
    let size = std::fs::metadata(&data).unwrap().len();
    let messages = batches as usize * BATCH;
    let mut out = Recovery {
        bytes: size,
        messages,
        subject: Vec::new(),
        floor: Vec::new(),
    };
    let mut chunk = vec![0u8; 1 << 20];
    let mut buf = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let mut file = File::open(&data).unwrap();
        let mut lines = 0;
        loop {
            let n = file.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            lines += memchr::memchr_iter(b'\n', &chunk[..n]).count();
        }
        out.floor.push(t.elapsed().as_secs_f64());
        assert_eq!(black_box(lines), messages);

        let t = Instant::now();
        let q = Queue::open_with(&base, &opts.clone().create(false)).unwrap();
        let mut r = q.reader().unwrap();
        let mut got = 0;
        while r.recv_into(&mut buf, Wait::NoWait).unwrap().is_some() {
            black_box(&buf);
            got += 1;
        }
        out.subject.push(t.elapsed().as_secs_f64());
        assert_eq!(got, messages, "the reader did not catch up");
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const NO_ORIGINAL: &str = "the C original (rzachariassen/dmq): it has no licence (spec §5.1: \
    nothing of it may be built or vendored here) and its source is not reachable from this \
    machine's package registries";

fn main() {
    let quick = quick();
    let started = Instant::now();
    let dir = bench_dir();
    let mut c = criterion();
    send_64b(&mut c, dir.path());
    send_batch(&mut c, dir.path());
    drain(&mut c, dir.path());
    end_to_end(&mut c, dir.path());
    durable(&mut c, dir.path());
    let (p50, p99) = latency(dir.path());
    let (recovery_bytes, reps) = if quick {
        (64u64 << 20, 2)
    } else {
        (1u64 << 30, 3)
    };
    let rec = recovery(dir.path(), recovery_bytes, reps);
    c.final_summary();

    let r = RESULTS.with(|r| r.borrow().clone());
    let rate = |k: &str| 1e9 / r[k];
    let show = |per_s: f64| {
        if per_s >= 1e6 {
            format!("{:.2} M msgs/s", per_s / 1e6)
        } else {
            format!("{:.1} k msgs/s", per_s / 1e3)
        }
    };
    println!(
        "\n## dmq figures (64-byte payloads, newline framing; ratios against floors of this run)\n"
    );
    println!("| measure | crate | floor | ratio |");
    println!("| --- | --- | --- | --- |");
    let row = |what: &str, k: &str, f: &str| {
        if !(r.contains_key(k) && r.contains_key(f)) {
            return; // filtered out
        }
        println!(
            "| {what} | {} | {} | {:.2}× |",
            show(rate(k)),
            show(rate(f)),
            rate(k) / rate(f)
        )
    };
    row(
        "send, WriterSync::Grace vs raw write",
        "send_grace",
        "raw_write",
    );
    row(
        "send, WriterSync::Flock vs raw write + flock",
        "send_flock",
        "raw_write_flock",
    );
    row(
        "send_batch(1000) vs one raw write of the batch",
        "send_batch",
        "raw_batch",
    );
    row(
        "reader draining a backlog vs read + memchr split",
        "drain",
        "raw_drain",
    );
    if r.contains_key("end_to_end") {
        println!(
            "| writer + reader at once, batched | {} | — | — |",
            show(rate("end_to_end"))
        );
    }
    row(
        "durable send (fdatasync each) vs write + fdatasync",
        "durable_send",
        "raw_durable",
    );
    row(
        "100 sends + flush vs write + fdatasync per message",
        "group_commit",
        "raw_durable",
    );
    println!("| parked reader latency | p50 {p50:?}, p99 {p99:?} | — | — |");
    let (rec_s, rec_floor_s) = (median(rec.subject.clone()), median(rec.floor.clone()));
    let mib = rec.bytes as f64 / f64::from(1 << 20);
    println!(
        "| reader catching up on {mib:.0} MiB | {rec_s:.3} s ({:.2} GB/s) | {rec_floor_s:.3} s | {:.2}× |",
        rec.bytes as f64 / rec_s / 1e9,
        rec_s / rec_floor_s
    );

    // ---- the report ----
    let mut report = Report::new(
        "dmq",
        "dmq: durable queue over two alternating data files and a control file",
        quick,
    );
    report.command = format!(
        "{}cargo bench -p dmq --bench dmq",
        if quick { "DMQ_BENCH_QUICK=1 " } else { "" }
    );
    report
        .setting("payload", "64 B, newline framing (65 B records)")
        .setting("files", "a temporary directory beside the target directory")
        .setting("recovery backlog", format!("{mib:.0} MiB"));
    // A row from two RESULTS keys (messages/s), when both ran (criterion filters may drop them).
    let pair = |measure: &str, k: &str, floor_name: &str, f: &str| -> Option<Row> {
        (r.contains_key(k) && r.contains_key(f))
            .then(|| Row::new(measure, rate(k), "msg/s", Better::Higher).floor(floor_name, rate(f)))
    };

    let mut durable = Scenario::new("durable_64B", "Durable sends, 64 B payloads");
    let floor_name = "write 65 B (O_APPEND) + fdatasync, interleaved";
    durable.rows.extend(
        pair(
            "send with Durability::Data (fdatasync per send), 1 producer",
            "durable_send",
            floor_name,
            "raw_durable",
        )
        .map(Row::headline),
    );
    durable.rows.extend(
        pair(
            "group commit: 100 sends + one flush, 1 producer",
            "group_commit",
            "write 65 B + fdatasync per message, interleaved (one per 100 sends)",
            "raw_durable",
        )
        .map(Row::headline),
    );
    durable.notes.push(
        "One producer; the floor runs interleaved with the sends (one floor operation before \
         each send, or before each 100 sends + flush), so both meet the disk in the same state. \
         Figures: the mean of criterion's last sample."
            .into(),
    );
    durable.skipped.push(NO_ORIGINAL.into());
    report.scenarios.push(durable);

    let mut page = Scenario::new(
        "page_cache_64B",
        "Page-cache (non-durable) sends, 64 B payloads",
    );
    let ratio_target = |row: Row, text: &str| {
        let pass = row.ratio.is_some_and(|x| x >= 0.9);
        row.target(text, pass)
    };
    page.rows.extend(
        pair(
            "send, WriterSync::Grace (one write per message)",
            "send_grace",
            "raw write of the 65 B record, O_APPEND",
            "raw_write",
        )
        .map(|row| {
            ratio_target(
                row,
                "≥ 0.9× the raw write (original, published: ≈ 0.99 M msgs/s on a 2-vCPU VM)",
            )
            .headline()
        }),
    );
    page.rows.extend(
        pair(
            "send, WriterSync::Flock",
            "send_flock",
            "raw write + flock pair",
            "raw_write_flock",
        )
        .map(|row| ratio_target(row, "≥ 0.9× the raw write + flock")),
    );
    page.rows.extend(
        pair(
            "send_batch of 1,000 messages",
            "send_batch",
            "one buffered sequential write of the same 65,000 B",
            "raw_batch",
        )
        .map(|row| {
            let pass = row.value >= 5e6;
            row.target("≥ 5 M msgs/s", pass)
        }),
    );
    page.notes.push(
        "No sync: the figures are the cost of getting the bytes into the page cache. Each floor \
         runs interleaved with its subject, 64 operations (4 batches) at a time."
            .into(),
    );
    page.skipped.push(NO_ORIGINAL.into());
    report.scenarios.push(page);

    let mut reader = Scenario::new("reader", "Reader: draining, end to end, wake-up latency");
    reader.rows.extend(
        pair(
            "reader draining a backlog of 100,000 messages",
            "drain",
            "read of the same bytes + memchr split",
            "raw_drain",
        )
        .map(|row| {
            let pass = row.value >= 14e6;
            row.target("≥ 14 M msgs/s (the original's published figure)", pass)
        }),
    );
    if r.contains_key("end_to_end") {
        let v = rate("end_to_end");
        reader.rows.push(
            Row::new(
                "writer + reader at once, batches of 1,000",
                v,
                "msg/s",
                Better::Higher,
            )
            .target("batched ≥ 5 M msgs/s end to end", v >= 5e6),
        );
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    reader.rows.push(
        Row::new(
            "parked reader woken by a send, p50",
            us(p50),
            "µs",
            Better::Lower,
        )
        .target(
            "p50 ≤ 60 µs parked (original, published: 0.30–0.80 s)",
            us(p50) <= 60.0,
        ),
    );
    reader.rows.push(Row::new(
        "parked reader woken by a send, p99",
        us(p99),
        "µs",
        Better::Lower,
    ));
    reader.notes.push(format!(
        "Latency: a writer sends a timestamp every 200 µs, {} times; the reader waits in \
         recv(Wait::Forever) with switch_grace(0). No floor rows for end to end and latency.",
        if quick { 500 } else { 2_000 }
    ));
    reader.skipped.push(NO_ORIGINAL.into());
    report.scenarios.push(reader);

    let mut recovery = Scenario::new(
        "recovery",
        &format!("Recovery: a reader catching up on a {mib:.0} MiB backlog"),
    );
    let size_text = if quick {
        format!("{mib:.0} MiB (quick mode; the full run uses 1 GiB)")
    } else {
        format!("{mib:.0} MiB")
    };
    let floor_name = "read of the data file in 1 MiB chunks + memchr count";
    let gbs = |s: f64| rec.bytes as f64 / s / 1e9;
    recovery.rows.push(
        Row::new(
            &format!("open + reader + receive every message of {size_text}, throughput"),
            gbs(rec_s),
            "GB/s",
            Better::Higher,
        )
        .floor(floor_name, gbs(rec_floor_s)),
    );
    recovery.rows.push(
        Row::new(
            &format!("open + reader + receive every message of {size_text}, time"),
            rec_s,
            "s",
            Better::Lower,
        )
        .floor(floor_name, rec_floor_s),
    );
    recovery.notes.push(format!(
        "{} messages of 65 B ({} B) written untimed by send_batch; then {reps} repetitions, \
         each the floor then the reader, median reported. The reader uses Commit::Explicit and \
         commits nothing, so every repetition finds the same backlog (drain_backlog measures \
         the default commit-on-receive). Page cache warm (the file was just written).",
        rec.messages, rec.bytes
    ));
    if quick {
        recovery
            .notes
            .push("Quick mode: a 64 MiB backlog instead of 1 GiB.".into());
    }
    recovery.skipped.push(NO_ORIGINAL.into());
    report.scenarios.push(recovery);

    report.setting(
        "measuring took",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    if let Err(e) = report.write_if_requested("DMQ_BENCH_REPORT") {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
