//! Benchmarks of `ddmq` against baselines measured in the same run (spec §5.5).
//!
//! | group | crate | baseline |
//! | --- | --- | --- |
//! | `publish_consume` | publish N, then consume and ack N (non-durable, defaults) | the raw file operations of the same work (temp + rename in; rename, read, unlink out), and the Python original doing the same (its documented experiment) when its venv exists |
//! | `durable_publish` | `publish` with `Durability::Fsync` | write a temp file + `fdatasync` + `rename` + `fsync` of the directory, interleaved call by call |
//! | `consume_backlog` | `consume(1)` + `ack` with 100 waiting | the same with 100,000 waiting |
//!
//! Environment: `DDMQ_BENCH_QUICK=1` (short runs, N = 1000 instead of 5000);
//! `DDMQ_BENCH_PYTHON=PATH` (a python with ddmq 0.9.14; default: the venv the interop tests
//! make under the target directory, if it exists).
//!
//! Run with `cargo bench -p ddmq --bench ddmq`.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ddmq::{Broker, BrokerOptions, Durability, PublishOptions};

fn quick() -> bool {
    std::env::var_os("DDMQ_BENCH_QUICK").is_some()
}

fn n() -> usize {
    if quick() { 1000 } else { 5000 }
}

fn scratch() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
    fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn config() -> Criterion {
    let c = Criterion::default().configure_from_args();
    if quick() {
        c.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2))
            .sample_size(10)
    } else {
        c.sample_size(10)
    }
}

fn mean(v: &[Duration]) -> f64 {
    v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len().max(1) as f64
}

/// The file-system floor of publishing and consuming `n` messages: per message a temporary
/// file written and renamed in, then renamed into `work/`, read and unlinked (no JSON, no
/// index, no checks).
fn floor_run(n: usize) -> Duration {
    let dir = scratch();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    let body = [b'x'; 250];
    let t = Instant::now();
    for i in 0..n {
        let tmp = dir.path().join(format!(".tmp.{i}"));
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .unwrap();
        f.write_all(&body).unwrap();
        drop(f);
        fs::rename(&tmp, dir.path().join(format!("999.{i}.ddmqx"))).unwrap();
    }
    for i in 0..n {
        let claimed = work.join(format!("1.999.{i}.ddmqx"));
        fs::rename(dir.path().join(format!("999.{i}.ddmqx")), &claimed).unwrap();
        std::hint::black_box(fs::read(&claimed).unwrap());
        fs::remove_file(&claimed).unwrap();
    }
    t.elapsed()
}

fn publish_consume(c: &mut Criterion) {
    let n = n();
    let samples = RefCell::new(Vec::new());
    let floor_samples = RefCell::new(Vec::new());
    let mut g = c.benchmark_group("publish_consume");
    g.bench_function(format!("rust_{n}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // The floor runs right before, timed apart: the disk's speed drifts.
                floor_samples.borrow_mut().push(floor_run(n));
                let dir = scratch();
                let broker = Broker::open(dir.path(), true).unwrap();
                broker.create_queue("q").unwrap();
                let t = Instant::now();
                for i in 0..n {
                    broker
                        .publish("q", format!("message {i}"), &PublishOptions::new())
                        .unwrap();
                }
                for _ in 0..n {
                    for d in broker.consume("q", 1).unwrap() {
                        d.ack().unwrap();
                    }
                }
                let e = t.elapsed();
                samples.borrow_mut().push(e);
                total += e;
            }
            total
        })
    });
    g.finish();
    let rust = mean(&samples.borrow());
    let floor = mean(&floor_samples.borrow());
    println!(
        "publish_consume: rust {n}+{n} in {rust:.3} s = {:.0} pairs/s; file-system floor {floor:.3} s = {:.0} pairs/s; rust takes {:.2}x the floor's time",
        n as f64 / rust,
        n as f64 / floor,
        rust / floor
    );
    let python = std::env::var_os("DDMQ_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/ddmq-py38/venv/bin/python")
        });
    if !python.is_file() {
        println!(
            "publish_consume: no Python original at {} (run the interop tests first); ratio not measured",
            python.display()
        );
        return;
    }
    let dir = scratch();
    let code = format!(
        "import ddmq, time\nb = ddmq.broker({:?}, create=True)\nb.create_queue('q')\nt = time.time()\nfor i in range({n}):\n    b.publish('q', 'message %d' % i)\nfor i in range({n}):\n    m = b.consume('q')\n    b.ack('q', m.filename)\nprint(time.time() - t)\n",
        dir.path().display().to_string()
    );
    let out = std::process::Command::new(&python)
        .args(["-c", &code])
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .unwrap();
    let py: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(f64::NAN);
    println!(
        "publish_consume: python original {n}+{n} in {py:.3} s; rust is {:.0}x faster",
        py / rust
    );
}

fn floor_once(dir: &Path, i: usize, bytes: &[u8]) -> Duration {
    let t = Instant::now();
    let tmp = dir.join(format!(".floor.{i}"));
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .unwrap();
    f.write_all(bytes).unwrap();
    f.sync_data().unwrap();
    fs::rename(&tmp, dir.join(format!("floor.{i}"))).unwrap();
    File::open(dir).unwrap().sync_all().unwrap();
    t.elapsed()
}

fn durable_publish(c: &mut Criterion) {
    let dir = scratch();
    let floor_dir = dir.path().join("floor");
    fs::create_dir_all(&floor_dir).unwrap();
    let broker = Broker::open_with(
        dir.path(),
        BrokerOptions::default()
            .create(true)
            .durability(Durability::Fsync),
    )
    .unwrap();
    broker.create_queue("q").unwrap();
    let body = "x".repeat(64);
    let sample = ddmq::Message::decode(
        &broker
            .publish("q", body.as_str(), &PublishOptions::new())
            .unwrap()
            .encode(),
    )
    .unwrap()
    .encode();
    let (ours, floor) = (RefCell::new(Vec::new()), RefCell::new(Vec::new()));
    let mut i = 0;
    let mut g = c.benchmark_group("durable_publish");
    g.bench_function("fsync_publish_vs_floor", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                i += 1;
                floor.borrow_mut().push(floor_once(&floor_dir, i, &sample));
                let t = Instant::now();
                broker
                    .publish(
                        "q",
                        body.as_str(),
                        &PublishOptions::new().skip_cleaning(true),
                    )
                    .unwrap();
                let e = t.elapsed();
                ours.borrow_mut().push(e);
                total += e;
            }
            total
        })
    });
    g.finish();
    let (o, f) = (mean(&ours.borrow()), mean(&floor.borrow()));
    println!(
        "durable_publish: {:.0}/s vs floor {:.0}/s (tmp+fdatasync+rename+dir fsync): {:.2}x the floor",
        1.0 / o,
        1.0 / f,
        f / o
    );
}

fn consume_backlog(c: &mut Criterion) {
    let (mut means, mut medians, mut first_scan) = (Vec::new(), Vec::new(), Vec::new());
    let mut g = c.benchmark_group("consume_backlog");
    for backlog in [100usize, 100_000] {
        let dir = scratch();
        let broker = Broker::open(dir.path(), true).unwrap();
        broker.create_queue("q").unwrap();
        let o = PublishOptions::new().skip_cleaning(true);
        for i in 0..backlog {
            broker.publish("q", format!("m{i}"), &o).unwrap();
        }
        // Steady state: the first consume builds the index from the directory (one full
        // scan, O(backlog)); it is timed apart.
        let t = Instant::now();
        broker
            .consume("q", 1)
            .unwrap()
            .pop()
            .unwrap()
            .ack()
            .unwrap();
        first_scan.push(t.elapsed());
        let samples = RefCell::new(Vec::new());
        g.bench_function(format!("consume_ack_at_{backlog}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let d = broker.consume("q", 1).unwrap().pop().unwrap();
                    d.ack().unwrap();
                    let e = t.elapsed();
                    total += e;
                    samples.borrow_mut().push(e);
                    // Keep the backlog (outside the timing).
                    broker.publish("q", "refill", &o).unwrap();
                }
                total
            })
        });
        let mut sorted = samples.borrow().clone();
        sorted.sort();
        medians.push(
            sorted
                .get(sorted.len() / 2)
                .copied()
                .unwrap_or_default()
                .as_secs_f64(),
        );
        means.push(mean(&samples.borrow()));
    }
    g.finish();
    println!(
        "consume_backlog: mean {:.1} µs at 100, {:.1} µs at 100,000: ratio {:.2}; median {:.1} µs vs {:.1} µs: ratio {:.2}; first consume (index build) {:?} at 100, {:?} at 100,000",
        means[0] * 1e6,
        means[1] * 1e6,
        means[1] / means[0],
        medians[0] * 1e6,
        medians[1] * 1e6,
        medians[1] / medians[0],
        first_scan[0],
        first_scan[1],
    );
}

criterion_group! {
    name = benches;
    config = config();
    targets = publish_consume, durable_publish, consume_backlog
}
criterion_main!(benches);
