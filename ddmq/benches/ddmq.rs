//! Benchmarks of `ddmq` against floors and the Python original measured in the same run
//! (spec §5.5), written as an `mq_benchkit::Report`.
//!
//! | scenario | measured | floor (same run) | original (same run) |
//! | --- | --- | --- | --- |
//! | `publish_consume` | publish N, then consume + ack N (non-durable, defaults): pairs/s and seconds | the raw file operations of the same work (temp + rename in; rename, read, unlink out), run right before each repetition | Python ddmq 0.9.14 running its documented experiment (N publish + N consume) |
//! | `durable_publish` | `publish` with `Durability::Fsync`, 64 B: rate and p50 | temp file + `fdatasync` + `rename` + `fsync` of the directory, interleaved call by call | none: 0.9.14 never fsyncs |
//! | `consume_backlog` | `consume(1)` + `ack` at 100 and at 100,000 waiting: p50 | rename + read + unlink of one message file, interleaved (at 100); the latency at 100 (at 100,000) | — |
//!
//! The Python original is a CPython 3.8 venv with ddmq 0.9.14, made by the same code as the
//! interop tests (`tests/support/py38.rs`) under the target directory when it is missing; its
//! set-up time is printed and excluded from the measuring. When it cannot be made, its rows
//! are listed in the scenario's `skipped` with the reason.
//!
//! Environment:
//! - `DDMQ_BENCH_QUICK=1`: a short run (N = 500 instead of 5000, one repetition, a backlog of 5,000
//!   instead of 100,000, fewer samples; about 20 s of measuring).
//! - `DDMQ_BENCH_REPORT=PATH`: write the JSON report there.
//! - `DDMQ_BENCH_PYTHON=PATH`: a python with ddmq 0.9.14 to use instead of the venv.
//! - `DDMQ_PYTHON38=PATH`: the CPython 3.8 the venv is made from (default: the newest 3.8
//!   under `~/.pyenv/versions`).
//!
//! Run with `cargo bench -p ddmq --bench ddmq`. Nothing here asserts a timing.

#[path = "../tests/support/py38.rs"]
mod py38;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ddmq::{Broker, BrokerOptions, Durability, PublishOptions};
use mq_benchkit::{Better, Report, Row, Scenario};

/// Sizes of one run.
struct Plan {
    quick: bool,
    /// Messages of the publish-then-consume experiment.
    n: usize,
    /// Repetitions of it (the median is reported).
    reps: usize,
    /// Time spent on durable publishes (ours and the floor together), and their most.
    durable_budget: Duration,
    durable_max: usize,
    /// The large backlog, and how many consumes are timed at each backlog.
    backlog: usize,
    consume_samples: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                quick,
                n: 500,
                reps: 1,
                durable_budget: Duration::from_secs(2),
                durable_max: 2_000,
                backlog: 5_000,
                consume_samples: 100,
            }
        } else {
            Plan {
                quick,
                n: 5000,
                reps: 5,
                durable_budget: Duration::from_secs(20),
                durable_max: 20_000,
                backlog: 100_000,
                consume_samples: 3_000,
            }
        }
    }
}

fn scratch() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

/// `n` with thousands separators (`100,000`).
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn median(v: &[Duration]) -> Duration {
    percentile(v, 0.5)
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / (v.len().max(1) as u32)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
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

fn rust_run(n: usize) -> Duration {
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
    t.elapsed()
}

/// The Python interpreter with ddmq 0.9.14: `DDMQ_BENCH_PYTHON`, else the interop tests'
/// venv, installed when missing. Prints how long the set-up took.
fn python(report: &mut Report) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("DDMQ_BENCH_PYTHON") {
        report.setting("python original", "DDMQ_BENCH_PYTHON");
        return Ok(PathBuf::from(p));
    }
    let t = Instant::now();
    let got = py38::install();
    let took = t.elapsed();
    println!(
        "python original: venv ready in {took:.1?} (not measured){}",
        got.as_ref()
            .err()
            .map(|e| format!("; cannot install it: {e}"))
            .unwrap_or_default()
    );
    report.setting(
        "python original",
        format!(
            "CPython 3.8 venv with ddmq 0.9.14 (set up in {:.1} s, outside the measuring)",
            took.as_secs_f64()
        ),
    );
    got
}

/// Runs the original's documented experiment with `n` messages; the elapsed time (measured
/// by Python around the two loops, as the documentation does).
fn python_run(python: &Path, n: usize) -> Result<Duration, String> {
    let dir = scratch();
    let code = format!(
        "import ddmq, time\nb = ddmq.broker({:?}, create=True)\nb.create_queue('q')\nt = time.time()\nfor i in range({n}):\n    b.publish('q', 'message %d' % i)\nfor i in range({n}):\n    m = b.consume('q')\n    b.ack('q', m.filename)\nprint(time.time() - t)\n",
        dir.path().display().to_string()
    );
    let mut child = Command::new(python)
        .args(["-c", &code])
        .env("PYTHONWARNINGS", "ignore")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    // Bounded: the original drains in quadratic time (spec: 120 s for 10,000).
    let limit = Duration::from_secs(if n <= 1000 { 120 } else { 600 });
    let deadline = Instant::now() + limit;
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not finish within {limit:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "the experiment failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("the experiment printed {text:?}, not a number of seconds"))
}

fn publish_consume(plan: &Plan, python: Result<PathBuf, String>) -> Scenario {
    let n = plan.n;
    let mut sc = Scenario::new(
        "publish_consume",
        &format!(
            "Publish {}, then consume + ack them (non-durable, defaults)",
            thousands(n)
        ),
    );
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..plan.reps {
        // The floor runs right before, timed apart: the disk's speed drifts.
        floor.push(floor_run(n));
        ours.push(rust_run(n));
    }
    let (o, f) = (median(&ours), median(&floor));
    let python = python.and_then(|py| python_run(&py, n));
    let floor_name = "file ops of the same work (temp + rename in; rename, read, unlink out)";
    let original_name = format!("Python ddmq 0.9.14, its documented experiment ({n} + {n})");
    let pairs = n as f64 / o.as_secs_f64();
    let mut rate = Row::new(
        &format!("publish + consume + ack, {n} messages"),
        pairs,
        "pairs/s",
        Better::Higher,
    )
    .floor(floor_name, n as f64 / f.as_secs_f64());
    let mut secs = Row::new(
        &format!("the documented experiment: {n} publish, then {n} consume + ack"),
        o.as_secs_f64(),
        "s",
        Better::Lower,
    )
    .floor(floor_name, f.as_secs_f64());
    let mut hundredfold = None;
    match &python {
        Ok(py) => {
            rate = rate.original(&original_name, n as f64 / py.as_secs_f64());
            secs = secs.original(&original_name, py.as_secs_f64());
            hundredfold = Some(py.as_secs_f64() / o.as_secs_f64() >= 100.0);
        }
        Err(e) => {
            println!("publish_consume: the Python original is skipped: {e}");
            sc.skipped
                .push(format!("Python ddmq 0.9.14 (the original): {e}"));
        }
    }
    sc.rows.push(
        rate.target(
            "≥ 11 k pairs/s and ≥ 100× the original (spec §5.5)",
            pairs >= 11_000.0 && hundredfold != Some(false),
        )
        .headline(),
    );
    sc.rows.push(secs);
    sc.notes.push(format!(
        "median of {} runs, each right after its floor run; the original runs once (its drain is quadratic: the spec measured 38.5–41.9 s for 5000 + 5000)",
        plan.reps
    ));
    sc
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

fn durable_publish(plan: &Plan) -> Scenario {
    let mut sc = Scenario::new(
        "durable_publish",
        "Durable publish (Durability::Fsync), 64 B, one publisher",
    );
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
    let o = PublishOptions::new().skip_cleaning(true);
    // The floor writes a file of the size ours writes.
    let sample = broker.publish("q", body.as_str(), &o).unwrap().encode();
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while started.elapsed() < plan.durable_budget && ours.len() < plan.durable_max {
        floor.push(floor_once(&floor_dir, ours.len(), &sample));
        let t = Instant::now();
        broker.publish("q", body.as_str(), &o).unwrap();
        ours.push(t.elapsed());
    }
    let floor_name = "temp file + fdatasync + rename + fsync of the directory";
    let rate = 1.0 / mean(&ours).as_secs_f64();
    let floor_rate = 1.0 / mean(&floor).as_secs_f64();
    sc.rows.push(
        Row::new("durable publish, 64 B", rate, "msg/s", Better::Higher)
            .floor(floor_name, floor_rate)
            .target(
                "≥ 0.9× the floor (spec §5.5: ≥ 2.7 k/s on its machine)",
                rate >= 0.9 * floor_rate,
            )
            .headline(),
    );
    let (p50, fp50) = (us(median(&ours)), us(median(&floor)));
    sc.rows.push(
        Row::new("durable publish, 64 B, p50", p50, "µs", Better::Lower)
            .floor(floor_name, fp50)
            .target(
                "p50 ≤ 1.1× the floor's (spec §5.5: ≤ 370 µs vs 336 µs)",
                p50 <= 1.1 * fp50,
            ),
    );
    sc.notes.push(format!(
        "{} publishes, each right after one floor operation of the same file size ({} B), on the target directory's file system",
        ours.len(),
        sample.len()
    ));
    sc.notes
        .push("no original: ddmq 0.9.14 never fsyncs".to_string());
    sc
}

/// Consume latencies at one backlog.
struct Consumed {
    /// consume(1) + ack, each.
    ours: Vec<Duration>,
    /// The floor operation, each (when asked for).
    floors: Vec<Duration>,
    /// The first consume (the index build).
    first: Duration,
    /// Publishing the backlog.
    fill: Duration,
}

/// Times `samples` consume(1) + ack at a steady `backlog`, refilling outside the timing;
/// with `floor`, one rename + read + unlink of a message file in a directory of the same
/// size right before each.
fn consume_at(backlog: usize, samples: usize, floor: bool) -> Consumed {
    let dir = scratch();
    let broker = Broker::open(dir.path(), true).unwrap();
    broker.create_queue("q").unwrap();
    let o = PublishOptions::new().skip_cleaning(true);
    let t = Instant::now();
    for i in 0..backlog {
        broker.publish("q", format!("m{i}"), &o).unwrap();
    }
    let fill = t.elapsed();
    let floor_dir = dir.path().join("floor");
    let work = floor_dir.join("work");
    let mut next = 0;
    if floor {
        fs::create_dir_all(&work).unwrap();
        for _ in 0..backlog {
            fs::write(floor_dir.join(format!("999.{next}.ddmqx")), [b'x'; 250]).unwrap();
            next += 1;
        }
    }
    // Steady state: the first consume builds the index from the directory (one full scan,
    // O(backlog)); it is timed apart.
    let t = Instant::now();
    broker
        .consume("q", 1)
        .unwrap()
        .pop()
        .unwrap()
        .ack()
        .unwrap();
    let first = t.elapsed();
    let (mut ours, mut floors) = (Vec::new(), Vec::new());
    for i in 0..samples {
        if floor {
            let name = format!("999.{i}.ddmqx");
            let claimed = work.join(format!("1.{name}"));
            let t = Instant::now();
            fs::rename(floor_dir.join(&name), &claimed).unwrap();
            std::hint::black_box(fs::read(&claimed).unwrap());
            fs::remove_file(&claimed).unwrap();
            floors.push(t.elapsed());
            fs::write(floor_dir.join(format!("999.{next}.ddmqx")), [b'x'; 250]).unwrap();
            next += 1;
        }
        let t = Instant::now();
        let d = broker.consume("q", 1).unwrap().pop().unwrap();
        d.ack().unwrap();
        ours.push(t.elapsed());
        // Keep the backlog (outside the timing).
        broker.publish("q", "refill", &o).unwrap();
    }
    Consumed {
        ours,
        floors,
        first,
        fill,
    }
}

fn consume_backlog(plan: &Plan) -> Scenario {
    let big = thousands(plan.backlog);
    let mut sc = Scenario::new(
        "consume_backlog",
        "Consume latency: consume(1) + ack at a steady backlog",
    );
    let Consumed {
        ours: small,
        floors: floor,
        first: first_small,
        ..
    } = consume_at(100, plan.consume_samples, true);
    let Consumed {
        ours: large,
        first: first_large,
        fill,
        ..
    } = consume_at(plan.backlog, plan.consume_samples, false);
    let (s50, f50, l50) = (us(median(&small)), us(median(&floor)), us(median(&large)));
    sc.rows.push(
        Row::new(
            "consume(1) + ack at 100 waiting, p50",
            s50,
            "µs",
            Better::Lower,
        )
        .floor(
            "rename + read + unlink of one message file (100 waiting)",
            f50,
        ),
    );
    let quick = if plan.quick {
        " (quick run; the full run: 100,000)"
    } else {
        ""
    };
    sc.rows.push(
        Row::new(
            &format!("consume(1) + ack at {big} waiting, p50{quick}"),
            l50,
            "µs",
            Better::Lower,
        )
        .floor("consume(1) + ack at 100 waiting, p50", s50)
        .target(
            "≤ 2× the latency at 100 waiting (spec §5.5)",
            l50 <= 2.0 * s50,
        )
        .headline(),
    );
    sc.notes.push(format!(
        "{} consumes at each backlog, refilled by one publish after each (outside the timing; publishing the {big} took {:.1} s); p99 {:.1} µs at 100, {:.1} µs at {big}",
        plan.consume_samples,
        fill.as_secs_f64(),
        us(percentile(&small, 0.99)),
        us(percentile(&large, 0.99)),
    ));
    sc.notes.push(format!(
        "the first consume builds the index with one directory scan, timed apart: {:.2} ms at 100, {:.1} ms at {big}",
        first_small.as_secs_f64() * 1e3,
        first_large.as_secs_f64() * 1e3,
    ));
    sc.notes.push(
        "the original is not measured here: its drain is quadratic (spec §5.5: 1000 in 2.3 s, 10,000 in 119.8 s)"
            .to_string(),
    );
    sc
}

fn print(sc: &Scenario, took: Duration) {
    println!("\n{sc}  ({took:.1?})");
}

fn main() {
    let quick = mq_benchkit::quick("DDMQ_BENCH_QUICK");
    let plan = Plan::new(quick);
    let mut report = Report::new(
        "ddmq",
        "ddmq: serverless file-per-message queue (Python ddmq 0.9.14 compatible)",
        quick,
    );
    report.command = if quick {
        "DDMQ_BENCH_QUICK=1 cargo bench -p ddmq --bench ddmq".into()
    } else {
        "cargo bench -p ddmq --bench ddmq".into()
    };
    report
        .setting("experiment size N", plan.n)
        .setting("large backlog", thousands(plan.backlog))
        .setting("files", "on the target directory's file system");
    let python = python(&mut report);
    let started = Instant::now();
    let t = Instant::now();
    let sc = publish_consume(&plan, python);
    print(&sc, t.elapsed());
    report.scenarios.push(sc);
    let t = Instant::now();
    let sc = durable_publish(&plan);
    print(&sc, t.elapsed());
    report.scenarios.push(sc);
    let t = Instant::now();
    let sc = consume_backlog(&plan);
    print(&sc, t.elapsed());
    report.scenarios.push(sc);
    println!(
        "\nddmq bench: {:.1?} of measuring (the venv set-up excluded)",
        started.elapsed()
    );
    if let Err(e) = report.write_if_requested("DDMQ_BENCH_REPORT") {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
