//! Benchmarks of `duraqueue` against baselines measured in the same run (spec §5.5).
//!
//! Every criterion group measures the crate and its baseline in the same run, with the
//! same payloads, on files in one temporary directory beside the target directory (so on
//! the workspace's filesystem), and reports their ratio:
//!
//! | group | crate | baseline |
//! | --- | --- | --- |
//! | `durable_offer_64B` | unbatched `offer` of 64 B items (one sync each) | `pwrite` of 160 B at an advancing offset + `fdatasync`, interleaved call by call |
//! | `group_commit_16` | 16 threads calling `SharedWriter::offer_durable` | the raw floor; 16 threads offering through a `Mutex<DuraQueue>` |
//! | `batch_256` | `offer_batch` of 256 × 64 B per commit | the raw floor, interleaved commit by commit |
//! | `page_cache_64B` | `offer_unsynced` (no sync) | the same 160 B records written sequentially through a `BufWriter`, interleaved 4096 at a time |
//! | `recovery_scan` | reopening a full 1 GiB ring (32 MiB in quick mode) of 160 B records (v1, v2) | reading the same file in 1 MiB chunks |
//! | `peek` | zero-copy `peek` of a resident record | copying the 64 bytes into a `Vec` |
//!
//! The floor runs interleaved with the crate's syncs, one floor operation before each
//! offer or commit and timed apart, because a sync's cost drifts with whatever else the
//! disk is doing: measured minutes apart, the same floor varied by a factor of 1.7.
//!
//! Every timing goes through `iter_custom`, which also keeps the samples (and, for the
//! durable cases, the latency of every single call) so that the figures, ratios and
//! percentiles can be computed here, where the baselines are known.
//!
//! The C original cannot run here (its repository has no licence file, spec §5.1); the
//! report lists it as skipped and quotes its published figures in the targets' text.
//!
//! Environment:
//! - `DURAQUEUE_BENCH_QUICK=1`: short warm-up and measurement and a 32 MiB recovery ring (a
//!   smoke run of about 20 s).
//! - `DURAQUEUE_BENCH_REPORT=PATH`: write the `mq_benchkit::Report` (JSON) there (`cargo
//!   xtask bench` reads it and renders `docs/bench.md`).
//! - `DURAQUEUE_BENCH_DIR=DIR`: where to put the temporary directory (default: the target
//!   directory that holds this binary).
//!
//! Run with `cargo bench -p duraqueue --bench duraqueue`, or `cargo xtask bench`.

use std::cell::RefCell;
use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use duraqueue::{AckMode, DuraQueue, Error, Format, OpenOptions, SharedWriter, SyncMode};
use mq_benchkit::{Better, Report, Row, Scenario};

/// Ring size of every queue: large enough that no timed run fills it.
const RING: u64 = 64 << 20;
/// Payload of every item.
const ITEM: usize = 64;
/// A 64-byte item's record: 32 header + 64 payload + 32 padding + 32 footer.
const RECORD: u64 = 160;
/// Producer threads of the group-commit case.
const THREADS: usize = 16;
/// Items per commit of the batch case.
const BATCH: usize = 256;

/// Criterion settings for this run.
#[derive(Debug, Clone, Copy)]
struct Settings {
    quick: bool,
    warm_up: Duration,
    measurement: Duration,
    samples: usize,
    /// Ring size of the recovery case: 1 GiB, 32 MiB in quick mode.
    recovery_ring: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = mq_benchkit::quick("DURAQUEUE_BENCH_QUICK");
        if quick {
            Settings {
                quick,
                warm_up: Duration::from_millis(200),
                measurement: Duration::from_millis(600),
                samples: 10,
                recovery_ring: 32 << 20,
            }
        } else {
            Settings {
                quick,
                warm_up: Duration::from_millis(1000),
                measurement: Duration::from_secs(3),
                samples: 10,
                recovery_ring: 1 << 30,
            }
        }
    }

    fn configure(&self, group: &mut BenchmarkGroup<'_, WallTime>, mode: SamplingMode) {
        group
            .sample_size(self.samples)
            .warm_up_time(self.warm_up)
            .measurement_time(self.measurement)
            .sampling_mode(mode);
    }
}

// ---- samples ----------------------------------------------------------------------------

/// One call of an `iter_custom` routine: `iters` iterations in `elapsed`, and the latency of
/// each operation when they were timed one by one.
#[derive(Debug, Default)]
struct Run {
    iters: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// The runs of one benchmark function, warm-up included.
type Recorder = Rc<RefCell<Vec<Run>>>;

fn recorder() -> Recorder {
    Rc::new(RefCell::new(Vec::new()))
}

/// What one benchmark function measured, from its last `samples` runs (criterion's
/// measurement phase; the runs before are its warm-up).
#[derive(Debug, Clone)]
struct Measured {
    /// Median over the samples of the time per iteration, in seconds.
    per_iter: f64,
    /// Every timed operation's latency in the samples, sorted, in seconds.
    latencies: Vec<f64>,
    /// Iterations in the samples.
    iters: u64,
}

impl Measured {
    fn from_runs(runs: &Recorder, samples: usize) -> Option<Measured> {
        let runs = runs.borrow();
        let measured = &runs[runs.len().saturating_sub(samples)..];
        if measured.is_empty() {
            return None;
        }
        let mut per_iter: Vec<f64> = measured
            .iter()
            .map(|r| r.elapsed.as_secs_f64() / r.iters.max(1) as f64)
            .collect();
        per_iter.sort_by(f64::total_cmp);
        let mut latencies: Vec<f64> = measured
            .iter()
            .flat_map(|r| r.latencies.iter().map(Duration::as_secs_f64))
            .collect();
        latencies.sort_by(f64::total_cmp);
        Some(Measured {
            per_iter: median(&per_iter),
            latencies,
            iters: measured.iter().map(|r| r.iters).sum(),
        })
    }

    /// Operations per second, with `per_iteration` operations in one iteration.
    fn rate(&self, per_iteration: f64) -> f64 {
        per_iteration / self.per_iter
    }

    /// The `p`-quantile (nearest rank) of the single-operation latencies, in seconds.
    fn percentile(&self, p: f64) -> Option<f64> {
        let n = self.latencies.len();
        if n == 0 {
            return None;
        }
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
        Some(self.latencies[rank - 1])
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Runs `op` on `state` `iters` times, timing each call, in chunks of at most `chunk`
/// calls; `room(state, calls)` runs untimed before each chunk (to drain the ring).
///
/// With a `floor`, each call is preceded by one floor operation, timed apart: the baseline
/// then meets the device in the same state as the crate, call by call (the disk may be
/// shared with other work, and its speed drifts). Returns the crate's run and the floor's
/// (empty without a floor); a run's time is the sum of its calls.
fn timed_ops<S>(
    iters: u64,
    chunk: u64,
    state: &mut S,
    mut room: impl FnMut(&mut S, u64),
    mut floor: Option<&mut Floor>,
    mut op: impl FnMut(&mut S),
) -> (Run, Run) {
    let capacity = usize::try_from(iters).unwrap_or(0).min(1 << 22);
    let mut run = Run {
        iters,
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(capacity),
    };
    let mut base = Run {
        iters: if floor.is_some() { iters } else { 0 },
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(if floor.is_some() { capacity } else { 0 }),
    };
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk.max(1));
        room(state, n);
        for _ in 0..n {
            if let Some(floor) = floor.as_deref_mut() {
                let t = Instant::now();
                floor.write_and_sync();
                let took = t.elapsed();
                base.latencies.push(took);
                base.elapsed += took;
            }
            let t = Instant::now();
            op(state);
            let took = t.elapsed();
            run.latencies.push(took);
            run.elapsed += took;
        }
        left -= n;
    }
    (run, base)
}

// ---- fixtures ---------------------------------------------------------------------------

fn item(tag: u8) -> [u8; ITEM] {
    let mut item = [0u8; ITEM];
    for (i, b) in item.iter_mut().enumerate() {
        *b = tag.wrapping_add(i as u8);
    }
    item
}

/// A writer on a new 64 MiB ring whose polls are persisted in bulk (outside the timings).
fn open_queue(dir: &Path, name: &str, sync: SyncMode) -> DuraQueue {
    let options = OpenOptions::new(RING).sync(sync).ack(AckMode::Manual);
    DuraQueue::open_with(dir.join(name), &options).expect("open the queue")
}

/// Polls everything and persists the polls, so that `bytes` more fit.
fn make_room(queue: &mut DuraQueue, bytes: u64) {
    if queue.unused() >= bytes {
        return;
    }
    while queue.poll().expect("poll") {}
    queue.ack().expect("ack the polls");
    assert!(
        queue.unused() >= bytes,
        "the ring cannot hold {bytes} bytes"
    );
}

/// Records that fit in half the ring: the chunk size of the timed runs.
const CHUNK_RECORDS: u64 = RING / 2 / RECORD;

/// The floor: 160 B written at an advancing offset of a file created like a v1 queue file
/// (allocated, ring + 1 bytes), then `fdatasync`.
struct Floor {
    file: File,
    pos: u64,
    record: [u8; RECORD as usize],
}

impl Floor {
    fn new(dir: &Path, name: &str) -> Floor {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join(name))
            .expect("create the floor file");
        file.set_len(RING + 1).expect("size the floor file");
        // A queue file is allocated when it is created; the floor's file must be too, or its
        // writes would pay for block allocation that the queue's do not.
        nix::fcntl::posix_fallocate(&file, 0, (RING + 1) as i64).expect("allocate the floor file");
        file.sync_all().expect("sync the floor file");
        let mut record = [0u8; RECORD as usize];
        record[32..32 + ITEM].copy_from_slice(&item(7));
        Floor {
            file,
            pos: 0,
            record,
        }
    }

    fn write_and_sync(&mut self) {
        if self.pos + RECORD > RING {
            self.pos = 0;
        }
        self.file
            .write_all_at(&self.record, self.pos)
            .expect("pwrite");
        self.file.sync_data().expect("fdatasync");
        self.pos += RECORD;
    }
}

fn bench_floor(
    group: &mut BenchmarkGroup<'_, WallTime>,
    settings: Settings,
    dir: &Path,
    file_name: &str,
) -> Option<Measured> {
    let mut floor = Floor::new(dir, file_name);
    let runs = recorder();
    group.bench_function("floor_pwrite160_fdatasync", |b| {
        b.iter_custom(|iters| {
            let (run, _) = timed_ops(
                iters,
                u64::MAX,
                &mut floor,
                |_, _| {},
                None,
                Floor::write_and_sync,
            );
            let elapsed = run.elapsed;
            runs.borrow_mut().push(run);
            elapsed
        });
    });
    Measured::from_runs(&runs, settings.samples)
}

// ---- report rows ------------------------------------------------------------------------

/// One line of a scenario's table: figure, floor, target; becomes a [`Row`] of the report
/// when its figure was measured (criterion's filters may skip a function).
struct Line<'a> {
    measure: &'a str,
    value: Option<f64>,
    unit: &'a str,
    baseline: &'a str,
    baseline_value: Option<f64>,
    target: &'a str,
    pass: Option<bool>,
    headline: bool,
}

impl Line<'_> {
    fn to_row(&self) -> Option<Row> {
        let better = if matches!(self.unit, "µs" | "ns" | "s") {
            Better::Lower
        } else {
            Better::Higher
        };
        let mut row = Row::new(self.measure, self.value?, self.unit, better);
        if let Some(floor) = self.baseline_value {
            row = row.floor(self.baseline, floor);
        }
        if let Some(pass) = self.pass {
            row = row.target(self.target, pass);
        }
        if self.headline {
            row = row.headline();
        }
        Some(row)
    }
}

const NO_ORIGINAL: &str = "the C original (willemt/duraqueue): its repository has no licence \
    file (spec §5.1: nothing of it is vendored; building it is an opt-in interop job), and its \
    source is not reachable from this machine's package registries";

fn scenario(name: &str, title: &str, rows: &[Line<'_>], notes: &[String]) -> Scenario {
    let mut scenario = Scenario::new(name, title);
    scenario.rows = rows.iter().filter_map(Line::to_row).collect();
    scenario.notes = notes.to_vec();
    scenario.skipped.push(NO_ORIGINAL.into());
    scenario
}

fn micros(seconds: Option<f64>) -> Option<f64> {
    seconds.map(|s| s * 1e6)
}

// ---- 1. durable_offer_64B -----------------------------------------------------------------

/// What a paired benchmark function measured: the crate, the floor interleaved with it,
/// and how many operations it made in all (warm-up included).
struct Paired {
    subject: Option<Measured>,
    floor: Option<Measured>,
    operations: u64,
}

fn bench_offer(
    group: &mut BenchmarkGroup<'_, WallTime>,
    settings: Settings,
    dir: &Path,
    id: &str,
    sync: SyncMode,
) -> Paired {
    let mut queue = open_queue(dir, &format!("{id}.queue"), sync);
    let mut floor = Floor::new(dir, &format!("{id}-floor.bin"));
    let payload = item(1);
    let runs = recorder();
    let floor_runs = recorder();
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let (run, base) = timed_ops(
                iters,
                CHUNK_RECORDS,
                &mut queue,
                |q, n| make_room(q, n * RECORD),
                Some(&mut floor),
                |q| {
                    q.offer(&payload).expect("offer");
                },
            );
            let elapsed = run.elapsed;
            runs.borrow_mut().push(run);
            floor_runs.borrow_mut().push(base);
            elapsed
        });
    });
    let operations = queue.next_seq();
    queue.close().expect("close");
    Paired {
        subject: Measured::from_runs(&runs, settings.samples),
        floor: Measured::from_runs(&floor_runs, settings.samples),
        operations,
    }
}

fn durable_offer(c: &mut Criterion, settings: Settings, dir: &Path) -> Scenario {
    let mut group = c.benchmark_group("durable_offer_64B");
    settings.configure(&mut group, SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));
    let msync = bench_offer(&mut group, settings, dir, "offer_msync", SyncMode::Msync);
    let fdatasync = bench_offer(
        &mut group,
        settings,
        dir,
        "offer_fdatasync",
        SyncMode::Fdatasync,
    );
    group.finish();

    let rate = |m: &Option<Measured>| m.as_ref().map(|m| m.rate(1.0));
    let pct = |m: &Option<Measured>, p| micros(m.as_ref().and_then(|m| m.percentile(p)));
    let ratio_ok = |p: &Paired| match (rate(&p.subject), rate(&p.floor)) {
        (Some(v), Some(f)) => Some(v >= 0.9 * f),
        _ => None,
    };
    let floor_name = "raw pwrite 160 B + fdatasync, interleaved";
    let rows = [
        Line {
            measure: "durable offer, 1 producer, one sync per item (SyncMode::Msync, the default)",
            value: rate(&msync.subject),
            unit: "items/s",
            baseline: floor_name,
            baseline_value: rate(&msync.floor),
            target: "≥ 0.9× floor (the original, published: 10.6–11.5 k/s on a 2-vCPU VM)",
            pass: ratio_ok(&msync),
            headline: true,
        },
        Line {
            measure: "offer p50 latency (Msync)",
            value: pct(&msync.subject, 0.5),
            unit: "µs",
            baseline: "raw pwrite 160 B + fdatasync p50",
            baseline_value: pct(&msync.floor, 0.5),
            target: "≤ 110 µs",
            pass: pct(&msync.subject, 0.5).map(|v| v <= 110.0),
            headline: false,
        },
        Line {
            measure: "offer p99 latency (Msync)",
            value: pct(&msync.subject, 0.99),
            unit: "µs",
            baseline: "raw pwrite 160 B + fdatasync p99",
            baseline_value: pct(&msync.floor, 0.99),
            target: "—",
            pass: None,
            headline: false,
        },
        Line {
            measure: "durable offer, 1 producer, SyncMode::Fdatasync",
            value: rate(&fdatasync.subject),
            unit: "items/s",
            baseline: floor_name,
            baseline_value: rate(&fdatasync.floor),
            target: "≥ 0.9× floor",
            pass: ratio_ok(&fdatasync),
            headline: false,
        },
        Line {
            measure: "offer p50 latency (Fdatasync)",
            value: pct(&fdatasync.subject, 0.5),
            unit: "µs",
            baseline: "raw pwrite 160 B + fdatasync p50",
            baseline_value: pct(&fdatasync.floor, 0.5),
            target: "≤ 110 µs",
            pass: pct(&fdatasync.subject, 0.5).map(|v| v <= 110.0),
            headline: false,
        },
    ];
    let count = |m: &Option<Measured>| m.as_ref().map_or(0, |m| m.iters);
    let mib = |p: &Paired| (p.operations * RECORD) as f64 / f64::from(1 << 20);
    let notes = [
        "One producer, one sync per item, every call timed. Each offer is preceded by one \
         floor operation (160 B `pwrite` at the next offset of a plain file + `fdatasync`), \
         timed apart: floor and crate meet the disk in the same state. Both files are \
         allocated (ring + 1 bytes) and are written from offset 0 on. A 64 B item's record is \
         160 B, so the floor writes 160 B (the same page as 64 B would)."
            .to_owned(),
        format!(
            "Offers in the measurement samples: {} (Msync), {} (Fdatasync); with warm-up the \
             writers went {:.1} MiB and {:.1} MiB into their rings.",
            count(&msync.subject),
            count(&fdatasync.subject),
            mib(&msync),
            mib(&fdatasync),
        ),
    ];
    scenario(
        "durable_offer_64B",
        "Durable offer, 64 B items, one sync per offer",
        &rows,
        &notes,
    )
}

// ---- 2. group_commit_16 -------------------------------------------------------------------

/// Runs `THREADS` threads that each call `offer(thread)` the same number of times, at least
/// `iters` calls in all, each call timed; `room(calls)` runs untimed before each round.
/// The wall time is scaled back to `iters` calls.
fn threaded_run(iters: u64, mut room: impl FnMut(u64), offer: &(dyn Fn(usize) + Sync)) -> Run {
    let threads = THREADS as u64;
    let per_thread = iters.div_ceil(threads).max(1);
    let total = per_thread * threads;
    let mut run = Run {
        iters,
        ..Run::default()
    };
    let mut wall = Duration::ZERO;
    let mut left = per_thread;
    while left > 0 {
        let round = left.min(CHUNK_RECORDS / threads);
        room(round * threads);
        let barrier = Barrier::new(THREADS + 1);
        let (elapsed, latencies) = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        let mut latencies = Vec::with_capacity(round as usize);
                        barrier.wait();
                        for _ in 0..round {
                            let t = Instant::now();
                            offer(thread);
                            latencies.push(t.elapsed());
                        }
                        latencies
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let latencies: Vec<Vec<Duration>> = handles
                .into_iter()
                .map(|h| h.join().expect("producer thread"))
                .collect();
            (start.elapsed(), latencies)
        });
        wall += elapsed;
        run.latencies.extend(latencies.into_iter().flatten());
        left -= round;
    }
    run.elapsed = wall.mul_f64(iters as f64 / total as f64);
    run
}

fn group_commit(c: &mut Criterion, settings: Settings, dir: &Path) -> Scenario {
    let items: Vec<[u8; ITEM]> = (0..THREADS).map(|t| item(t as u8)).collect();
    let mut group = c.benchmark_group("group_commit_16");
    settings.configure(&mut group, SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));

    let floor = bench_floor(&mut group, settings, dir, "floor-2.bin");

    let writer = SharedWriter::new(open_queue(dir, "group.queue", SyncMode::Msync));
    let group_runs = recorder();
    group.bench_function("shared_writer_offer_durable", |b| {
        b.iter_custom(|iters| {
            let run = threaded_run(
                iters,
                |n| writer.with_queue(|q| make_room(q, n * RECORD)),
                &|t| {
                    writer.offer_durable(&items[t]).expect("offer_durable");
                },
            );
            let elapsed = run.elapsed;
            group_runs.borrow_mut().push(run);
            elapsed
        });
    });
    drop(writer);
    let grouped = Measured::from_runs(&group_runs, settings.samples);

    let locked = Mutex::new(open_queue(dir, "mutex.queue", SyncMode::Msync));
    let mutex_runs = recorder();
    group.bench_function("mutex_unbatched_offer", |b| {
        b.iter_custom(|iters| {
            let run = threaded_run(
                iters,
                |n| make_room(&mut locked.lock().expect("lock"), n * RECORD),
                &|t| {
                    locked
                        .lock()
                        .expect("lock")
                        .offer(&items[t])
                        .expect("offer");
                },
            );
            let elapsed = run.elapsed;
            mutex_runs.borrow_mut().push(run);
            elapsed
        });
    });
    drop(locked);
    let mutexed = Measured::from_runs(&mutex_runs, settings.samples);
    group.finish();

    let rate = |m: &Option<Measured>| m.as_ref().map(|m| m.rate(1.0));
    let pct = |m: &Option<Measured>, p| micros(m.as_ref().and_then(|m| m.percentile(p)));
    let rows = [
        Line {
            measure: "group commit: 16 producer threads, SharedWriter::offer_durable",
            value: rate(&grouped),
            unit: "items/s",
            baseline: "raw pwrite 160 B + fdatasync (1 thread)",
            baseline_value: rate(&floor),
            target: "≥ 250 k/s",
            pass: rate(&grouped).map(|v| v >= 250e3),
            headline: true,
        },
        Line {
            measure: "group commit offer_durable p99 latency",
            value: pct(&grouped, 0.99),
            unit: "µs",
            baseline: "raw pwrite 160 B + fdatasync p99",
            baseline_value: pct(&floor, 0.99),
            target: "≤ 1000 µs",
            pass: pct(&grouped, 0.99).map(|v| v <= 1000.0),
            headline: false,
        },
        Line {
            measure: "group commit offer_durable p50 latency",
            value: pct(&grouped, 0.5),
            unit: "µs",
            baseline: "raw pwrite 160 B + fdatasync p50",
            baseline_value: pct(&floor, 0.5),
            target: "—",
            pass: None,
            headline: false,
        },
        Line {
            measure: "16 threads, Mutex<DuraQueue> + offer",
            value: rate(&mutexed),
            unit: "items/s",
            baseline: "raw pwrite 160 B + fdatasync (1 thread)",
            baseline_value: rate(&floor),
            target: "—",
            pass: None,
            headline: false,
        },
    ];
    let count = |m: &Option<Measured>| m.as_ref().map_or(0, |m| m.latencies.len());
    let ceiling = rate(&floor).map_or_else(
        || "unknown".to_owned(),
        |f| format!("{:.0} k/s", f * THREADS as f64 / 1e3),
    );
    let notes = [
        format!(
            "Ceiling: each thread has one offer in flight, so one flush covers at most {THREADS} \
             offers; at the floor's sync rate that is at most {ceiling} with {THREADS} threads."
        ),
        format!(
            "16 producer threads released together by a barrier; latency = one call, timed by the \
         calling thread; percentiles over every call of criterion's measurement samples \
         (group commit: {} calls, mutex: {} calls). SharedWriter without max_delay. \
         Against 16 threads offering through a Mutex<DuraQueue> (one sync per offer): {}.",
            count(&grouped),
            count(&mutexed),
            match (rate(&grouped), rate(&mutexed)) {
                (Some(g), Some(m)) => format!("{:.2}×", g / m),
                _ => "not measured".to_owned(),
            }
        ),
    ];
    scenario(
        "group_commit_16",
        "Group commit, 16 producer threads, 64 B items",
        &rows,
        &notes,
    )
}

// ---- 3. batch_256 -------------------------------------------------------------------------

fn batch(c: &mut Criterion, settings: Settings, dir: &Path) -> Scenario {
    let mut group = c.benchmark_group("batch_256");
    settings.configure(&mut group, SamplingMode::Flat);
    group.throughput(Throughput::Elements(BATCH as u64));

    let mut queue = open_queue(dir, "batch.queue", SyncMode::Msync);
    let mut floor = Floor::new(dir, "batch-floor.bin");
    let items: Vec<[u8; ITEM]> = (0..BATCH).map(|i| item(i as u8)).collect();
    let batch_bytes = BATCH as u64 * RECORD;
    let runs = recorder();
    let floor_runs = recorder();
    group.bench_function("offer_batch_256", |b| {
        b.iter_custom(|iters| {
            let (run, base) = timed_ops(
                iters,
                CHUNK_RECORDS / BATCH as u64,
                &mut queue,
                |q, n| make_room(q, n * batch_bytes),
                Some(&mut floor),
                |q| {
                    q.offer_batch(&items).expect("offer_batch");
                },
            );
            let elapsed = run.elapsed;
            runs.borrow_mut().push(run);
            floor_runs.borrow_mut().push(base);
            elapsed
        });
    });
    let written = queue.next_seq() * RECORD;
    queue.close().expect("close");
    group.finish();
    let batched = Measured::from_runs(&runs, settings.samples);
    let floor = Measured::from_runs(&floor_runs, settings.samples);

    let floor_rate = floor.as_ref().map(|m| m.rate(1.0));
    let batch_rate = batched.as_ref().map(|m| m.rate(BATCH as f64));
    let pct = |m: &Option<Measured>, p| micros(m.as_ref().and_then(|m| m.percentile(p)));
    let rows = [
        Line {
            measure: "offer_batch, 256 × 64 B per commit",
            value: batch_rate,
            unit: "items/s",
            baseline: "raw pwrite 160 B + fdatasync, interleaved",
            baseline_value: floor_rate,
            target: "≥ 1 M/s (the original, published: 0.97–1.10 M/s at 256 per commit)",
            pass: batch_rate.map(|v| v >= 1e6),
            headline: false,
        },
        Line {
            measure: "offer_batch commit latency p50",
            value: pct(&batched, 0.5),
            unit: "µs",
            baseline: "raw pwrite 160 B + fdatasync p50",
            baseline_value: pct(&floor, 0.5),
            target: "—",
            pass: None,
            headline: false,
        },
    ];
    let notes = [format!(
        "One producer; one sync covers 256 records (40 KiB, 10–11 pages); each commit is \
         preceded by one floor operation, timed apart. Commits in the measurement samples: \
         {}; with warm-up the writer went {:.0} MiB through the ring (drained, untimed, \
         whenever the next chunk would not fit).",
        batched.as_ref().map_or(0, |m| m.iters),
        written as f64 / f64::from(1 << 20),
    )];
    scenario(
        "batch_256",
        "Explicit batches: offer_batch of 256 items",
        &rows,
        &notes,
    )
}

// ---- 4. page_cache_64B --------------------------------------------------------------------

/// Items per interleaved chunk of the page-cache case.
const PAGE_CHUNK: u64 = 4096;

/// The page-cache floor: the same 160 B records written sequentially through a 64 KiB
/// `BufWriter` to a plain file of the ring's size, wrapping at its end like the ring.
struct BufferedFloor {
    out: BufWriter<File>,
    pos: u64,
    record: [u8; RECORD as usize],
}

impl BufferedFloor {
    fn new(dir: &Path, name: &str) -> BufferedFloor {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(name))
            .expect("create the buffered floor file");
        file.set_len(RING + 1)
            .expect("size the buffered floor file");
        let mut record = [0u8; RECORD as usize];
        record[32..32 + ITEM].copy_from_slice(&item(7));
        BufferedFloor {
            out: BufWriter::with_capacity(64 << 10, file),
            pos: 0,
            record,
        }
    }

    /// Writes `n` records and flushes them to the page cache.
    fn write(&mut self, n: u64) {
        if self.pos + n * RECORD > RING {
            self.out.seek(SeekFrom::Start(0)).expect("seek");
            self.pos = 0;
        }
        for _ in 0..n {
            self.out.write_all(&self.record).expect("write");
        }
        self.out.flush().expect("flush");
        self.pos += n * RECORD;
    }
}

fn page_cache(c: &mut Criterion, settings: Settings, dir: &Path) -> Scenario {
    let mut group = c.benchmark_group("page_cache_64B");
    settings.configure(&mut group, SamplingMode::Flat);
    group.throughput(Throughput::Elements(1));
    let mut queue = open_queue(dir, "unsynced.queue", SyncMode::Msync);
    let mut floor = BufferedFloor::new(dir, "buffered-floor.bin");
    let payload = item(3);
    let runs = recorder();
    let floor_runs = recorder();
    group.bench_function("offer_unsynced", |b| {
        b.iter_custom(|iters| {
            let (mut run, mut base) = (Run::default(), Run::default());
            run.iters = iters;
            base.iters = iters;
            let mut left = iters;
            while left > 0 {
                let n = left.min(PAGE_CHUNK);
                make_room(&mut queue, n * RECORD);
                let t = Instant::now();
                floor.write(n);
                base.elapsed += t.elapsed();
                let t = Instant::now();
                for _ in 0..n {
                    queue
                        .offer_unsynced(black_box(&payload))
                        .expect("offer_unsynced");
                }
                run.elapsed += t.elapsed();
                left -= n;
            }
            let elapsed = run.elapsed;
            runs.borrow_mut().push(run);
            floor_runs.borrow_mut().push(base);
            elapsed
        });
    });
    group.finish();
    queue.close().expect("close");
    let subject = Measured::from_runs(&runs, settings.samples);
    let floor = Measured::from_runs(&floor_runs, settings.samples);
    let rate = |m: &Option<Measured>| m.as_ref().map(|m| m.rate(1.0));
    let rows = [Line {
        measure: "page-cache offer (offer_unsynced: published, not synced), 1 producer",
        value: rate(&subject),
        unit: "items/s",
        baseline: "buffered sequential write of the same 160 B records (64 KiB BufWriter)",
        baseline_value: rate(&floor),
        target: "—",
        pass: None,
        headline: true,
    }];
    let notes = [format!(
        "No sync: the cost of getting each record into the shared mapping (page cache) and \
         publishing it. Interleaved {PAGE_CHUNK} items at a time: the floor writes and flushes \
         {PAGE_CHUNK} records of 160 B to a plain file, then the queue takes {PAGE_CHUNK} \
         offers; the ring is drained untimed when the next chunk would not fit. {} B/s at the \
         crate's rate. The spec gives no target for this case.",
        rate(&subject).map_or_else(|| "—".to_owned(), |r| format!("{:.0}", r * RECORD as f64)),
    )];
    scenario(
        "page_cache_64B",
        "Page-cache (non-durable) offers, 64 B items",
        &rows,
        &notes,
    )
}

// ---- 5. recovery_scan ---------------------------------------------------------------------

/// Creates a ring of `ring` bytes in `format` filled with 64 B items until it is full;
/// returns the number of records.
fn fill(path: &Path, format: Format, ring: u64) -> usize {
    let options = OpenOptions::new(ring).format(format);
    let mut queue = DuraQueue::open_with(path, &options).expect("open the ring to fill");
    let mut count = 0usize;
    loop {
        match queue.offer_unsynced(&item(count as u8)) {
            Ok(_) => count += 1,
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("fill: {e}"),
        }
    }
    queue.sync_published().expect("sync the filled ring");
    queue.close().expect("close");
    count
}

fn recovery(c: &mut Criterion, settings: Settings, dir: &Path) -> Scenario {
    let files = [
        ("v1", dir.join("full-v1.queue"), Format::V1),
        ("v2", dir.join("full-v2.queue"), Format::V2),
    ];
    let ring = settings.recovery_ring;
    let filling = Instant::now();
    let counts: Vec<usize> = files.iter().map(|(_, p, f)| fill(p, *f, ring)).collect();
    eprintln!(
        "filled two rings of {} MiB in {:.1} s",
        ring >> 20,
        filling.elapsed().as_secs_f64()
    );
    let mut chunk = vec![0u8; 1 << 20];

    let mut group = c.benchmark_group("recovery_scan");
    settings.configure(&mut group, SamplingMode::Flat);
    group.throughput(Throughput::Bytes(ring));
    let mut results = Vec::new();
    for ((name, path, _), &count) in files.iter().zip(&counts) {
        let file_len = std::fs::metadata(path).expect("stat").len();
        let read_runs = recorder();
        group.bench_function(format!("read_file_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut run = Run {
                    iters,
                    ..Run::default()
                };
                for _ in 0..iters {
                    let start = Instant::now();
                    let mut file = File::open(path).expect("open the ring file");
                    let mut read = 0u64;
                    loop {
                        let n = file.read(&mut chunk).expect("read the ring file");
                        if n == 0 {
                            break;
                        }
                        read += black_box(&chunk[..n]).len() as u64;
                    }
                    run.elapsed += start.elapsed();
                    assert_eq!(read, file_len);
                }
                let elapsed = run.elapsed;
                read_runs.borrow_mut().push(run);
                elapsed
            });
        });
        let open_runs = recorder();
        let report = RefCell::new(None);
        group.bench_function(format!("reopen_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut run = Run {
                    iters,
                    ..Run::default()
                };
                for _ in 0..iters {
                    let start = Instant::now();
                    let queue = DuraQueue::open_with(path, &OpenOptions::new(0).create(false))
                        .expect("reopen the full ring");
                    run.elapsed += start.elapsed();
                    assert_eq!(queue.count(), count, "recovery lost records");
                    *report.borrow_mut() = Some(queue.recovery_report().clone());
                    drop(queue);
                }
                let elapsed = run.elapsed;
                open_runs.borrow_mut().push(run);
                elapsed
            });
        });
        results.push((
            *name,
            file_len,
            count,
            Measured::from_runs(&read_runs, settings.samples),
            Measured::from_runs(&open_runs, settings.samples),
            report.into_inner(),
        ));
    }
    group.finish();

    let size = if ring >= 1 << 30 {
        format!("{} GiB", ring >> 30)
    } else {
        format!("{} MiB", ring >> 20)
    };
    let quick_text = if settings.quick {
        " (quick mode; the full run uses 1 GiB)"
    } else {
        ""
    };
    let mut measures = Vec::new();
    let mut notes = Vec::new();
    for (name, file_len, count, read, open, report) in &results {
        let gbs = |m: &Option<Measured>, bytes: u64| m.as_ref().map(|m| m.rate(bytes as f64 / 1e9));
        let secs = |m: &Option<Measured>| m.as_ref().map(|m| m.per_iter);
        measures.push((
            format!("reopen a full {size} {name} ring (recovery scan){quick_text}, throughput"),
            gbs(open, ring),
            "GB/s",
            format!("read of the same file in 1 MiB chunks ({file_len} B)"),
            gbs(read, *file_len),
            "≥ 1 GB/s",
            gbs(open, ring).map(|v| v >= 1.0),
        ));
        measures.push((
            format!("reopen a full {size} {name} ring (recovery scan){quick_text}, time"),
            secs(open),
            "s",
            format!("read of the same file in 1 MiB chunks ({file_len} B)"),
            secs(read),
            "—",
            None,
        ));
        let records_per_s = open.as_ref().map_or(0.0, |m| m.rate(*count as f64));
        notes.push(format!(
            "{name}: {count} records of 160 B in a ring of {ring} B; {:.2} M records/s; \
             recovery report: {}.",
            records_per_s / 1e6,
            report.as_ref().map_or_else(
                || "not run".to_owned(),
                |r| format!(
                    "delivered {}, discarded {}, bytes scanned {}",
                    r.delivered, r.discarded, r.bytes_scanned
                )
            )
        ));
    }
    notes.push(
        "Page cache warm (the files were just written); figure = ring bytes ÷ time of \
         DuraQueue::open_with (open, lock, map twice, scan, index), the handle dropped untimed; \
         median over criterion's samples. The original, published: 20 000 records in \
         0.109–0.114 s (≈ 5.5 µs each)."
            .to_owned(),
    );
    if settings.quick {
        notes.push("Quick mode: a 32 MiB ring instead of 1 GiB.".to_owned());
    }
    let rows: Vec<Line<'_>> = measures
        .iter()
        .map(
            |(measure, value, unit, baseline, baseline_value, target, pass)| Line {
                measure,
                value: *value,
                unit,
                baseline,
                baseline_value: *baseline_value,
                target,
                pass: *pass,
                headline: false,
            },
        )
        .collect();
    scenario(
        "recovery_scan",
        &format!("Recovery: reopening a full {size} ring of 160 B records"),
        &rows,
        &notes,
    )
}

// ---- 6. peek ------------------------------------------------------------------------------

fn peek(c: &mut Criterion, settings: Settings, dir: &Path) -> Scenario {
    let mut queue = DuraQueue::open(dir.join("peek.queue"), 1 << 20).expect("open");
    let payload = item(5);
    queue.offer(&payload).expect("offer");
    let first = queue.peek().expect("a resident record");
    let zero_copy = first == payload
        && queue.peek().map(<[u8]>::as_ptr) == Some(first.as_ptr())
        && queue.iter().next().map(<[u8]>::as_ptr) == Some(first.as_ptr());

    let mut group = c.benchmark_group("peek");
    settings.configure(&mut group, SamplingMode::Auto);
    group.throughput(Throughput::Elements(1));
    let peek_runs = recorder();
    group.bench_function("peek_zero_copy", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(black_box(&queue).peek());
            }
            let elapsed = start.elapsed();
            peek_runs.borrow_mut().push(Run {
                iters,
                elapsed,
                latencies: Vec::new(),
            });
            elapsed
        });
    });
    let copy_runs = recorder();
    group.bench_function("copy_64B_to_vec", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(black_box(first).to_vec());
            }
            let elapsed = start.elapsed();
            copy_runs.borrow_mut().push(Run {
                iters,
                elapsed,
                latencies: Vec::new(),
            });
            elapsed
        });
    });
    group.finish();
    let peeked = Measured::from_runs(&peek_runs, settings.samples);
    let copied = Measured::from_runs(&copy_runs, settings.samples);

    let ns = |m: &Option<Measured>| m.as_ref().map(|m| m.per_iter * 1e9);
    let rows = [Line {
        measure: "peek of a resident 64 B record",
        value: ns(&peeked),
        unit: "ns",
        baseline: "copy the 64 B into a new Vec",
        baseline_value: ns(&copied),
        target: "≤ 100 ns, zero copies",
        pass: ns(&peeked).map(|v| v <= 100.0 && zero_copy),
        headline: false,
    }];
    let notes = [format!(
        "Median time per call over criterion's samples (a single call is too short to time). \
         Zero copy: {} (the slice points into the mapping: the same address on every peek \
         and in iter()).",
        if zero_copy { "yes" } else { "NO" }
    )];
    scenario("peek", "Zero-copy peek of a resident record", &rows, &notes)
}

// ---- main ---------------------------------------------------------------------------------

/// Where the temporary directory goes: `DURAQUEUE_BENCH_DIR`, or the target directory that
/// holds this binary (`target/release/deps/duraqueue-…`), on the workspace's filesystem.
fn scratch_parent() -> PathBuf {
    if let Some(dir) = std::env::var_os("DURAQUEUE_BENCH_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
}

fn main() {
    let settings = Settings::from_env();
    let parent = scratch_parent();
    let dir = tempfile::Builder::new()
        .prefix("duraqueue-bench-")
        .tempdir_in(&parent)
        .expect("create the temporary directory");
    let mut criterion = Criterion::default()
        .sample_size(settings.samples)
        .warm_up_time(settings.warm_up)
        .measurement_time(settings.measurement)
        .configure_from_args();

    let started = Instant::now();
    let mut report = Report::new(
        "duraqueue",
        "duraqueue: mmap'd durable ring with a header and footer per record",
        settings.quick,
    );
    report.command = format!(
        "{}cargo bench -p duraqueue --bench duraqueue",
        if settings.quick {
            "DURAQUEUE_BENCH_QUICK=1 "
        } else {
            ""
        }
    );
    report
        .setting("item", format!("{ITEM} B (records of {RECORD} B)"))
        .setting("ring", format!("{} MiB", RING >> 20))
        .setting(
            "recovery ring",
            format!("{} MiB", settings.recovery_ring >> 20),
        )
        .setting(
            "criterion",
            format!(
                "warm-up {:?}, measurement {:?}, {} samples",
                settings.warm_up, settings.measurement, settings.samples
            ),
        )
        .setting("files", "a temporary directory beside the target directory");
    type Case = fn(&mut Criterion, Settings, &Path) -> Scenario;
    let cases: [Case; 6] = [
        durable_offer,
        group_commit,
        batch,
        page_cache,
        recovery,
        peek,
    ];
    for case in cases {
        let scenario = case(&mut criterion, settings, dir.path());
        // A progress line on stderr, so a slow phase shows.
        eprintln!(
            "[{:6.1} s] {}",
            started.elapsed().as_secs_f64(),
            scenario.name
        );
        report.scenarios.push(scenario);
    }
    criterion.final_summary();
    report.setting(
        "measuring took",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    if let Err(e) = report.write_if_requested("DURAQUEUE_BENCH_REPORT") {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
