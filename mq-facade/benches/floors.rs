//! The machine's floors: the cheapest way this machine can do each kind of work a queue
//! does, measured with the standard library (and tokio-tungstenite for the WebSocket), so
//! every backend's figure can be read against them.
//!
//! | scenario | what one operation is |
//! | --- | --- |
//! | `handoff` | a 64-bit store seen by a spinning thread, which answers with a store (a cache line moving between cores and back) |
//! | `wake` | `Thread::unpark` of a parked thread, which answers with an unpark (std parks with a futex on Linux) |
//! | `fdatasync` | `pwrite` of 64 B into an allocated file, then `fdatasync` |
//! | `rename` | a temp file written with 64 B, fsync'd, renamed over the target, then the directory fsync'd |
//! | `websocket` | a 64 B binary message to a loopback WebSocket echo server and back (tokio-tungstenite both ends, in process) |
//! | `seq_write` | 64 MiB written in 4 KiB buffered writes to a new file, no sync (the page cache) |
//!
//! Files live in a directory under the system's temp dir. Each scenario measures for a fixed
//! time (`FLOORS_BENCH_QUICK=1`: about 2 s, 13 s in all; otherwise about 8 s). The JSON report
//! goes to the path in `FLOORS_BENCH_REPORT`. Run it with
//! `cargo bench -p mq-facade --bench floors`, or all benches with `cargo xtask bench`.
//! Nothing here asserts a timing.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use mq_benchkit::{Better, Report, Row, Scenario};
use tokio_tungstenite::tungstenite::Message;

const REPORT_VAR: &str = "FLOORS_BENCH_REPORT";
const QUICK_VAR: &str = "FLOORS_BENCH_QUICK";
const PAYLOAD: [u8; 64] = [b'x'; 64];
/// Latency samples kept per scenario, at most (the time budget usually ends a run first).
const MAX_SAMPLES: usize = 2_000_000;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; any other run (`cargo test --benches`) is a smoke run.
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let quick = mq_benchkit::quick(QUICK_VAR);
    let budget = if smoke {
        Duration::from_millis(50)
    } else if quick {
        Duration::from_millis(2_000)
    } else {
        Duration::from_millis(8_000)
    };
    let started = Instant::now();
    let mut report = Report::new(
        "floors",
        "floors: the machine's cheapest way to do each kind of queue work",
        quick,
    );
    report.command = format!(
        "{}cargo bench -p mq-facade --bench floors",
        if quick { "FLOORS_BENCH_QUICK=1 " } else { "" }
    );
    report.setting("time per scenario", format!("{} s", budget.as_secs_f64()));
    report.setting("payload", "64 B");
    let dir = tempfile::Builder::new()
        .prefix("floors-bench")
        .tempdir_in(std::env::temp_dir())?;

    report.scenarios.push(handoff(budget));
    eprintln!("floors: handoff done");
    report.scenarios.push(wake(budget));
    eprintln!("floors: wake done");
    report.scenarios.push(fdatasync(dir.path(), budget)?);
    eprintln!("floors: fdatasync done");
    report.scenarios.push(rename(dir.path(), budget)?);
    eprintln!("floors: rename done");
    report.scenarios.push(websocket(budget)?);
    eprintln!("floors: websocket done");
    report.scenarios.push(seq_write(dir.path(), budget)?);
    eprintln!("floors: seq_write done");

    report.setting(
        "measuring time",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    print!("{}", summary(&report));
    if !smoke {
        report.write_if_requested(REPORT_VAR)?;
    }
    Ok(())
}

/// A plain-text table of the figures, for the terminal.
fn summary(report: &Report) -> String {
    let mut out = String::new();
    for scenario in &report.scenarios {
        for row in &scenario.rows {
            out.push_str(&format!(
                "{:<12} {:<55} {:>14.2} {}\n",
                scenario.name, row.measure, row.value, row.unit
            ));
        }
    }
    out
}

/// The `p`-quantile (0 ≤ p ≤ 1) of sorted samples.
fn quantile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[index.min(sorted.len() - 1)] as f64
}

/// Samples in nanoseconds from `op` run until `budget` has passed, sorted, and the time the
/// runs took.
fn sample(budget: Duration, mut op: impl FnMut() -> Result<()>) -> Result<(Vec<u64>, Duration)> {
    // A short warm-up: page faults, lazy allocation, the first futex wait.
    for _ in 0..10 {
        op()?;
    }
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < budget && samples.len() < MAX_SAMPLES {
        let t = Instant::now();
        op()?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    let took = started.elapsed();
    samples.sort_unstable();
    Ok((samples, took))
}

/// Spins until `cell` holds `value`; false if `stop` was raised first. Yields after a while
/// so a descheduled peer can run on a busy machine (the figure is then the scheduler's).
fn wait_for(cell: &AtomicU64, value: u64, stop: &AtomicBool) -> bool {
    let mut spins = 0u32;
    loop {
        if cell.load(Ordering::Acquire) == value {
            return true;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            if spins >= 1 << 10 {
                thread::yield_now();
            }
        } else {
            std::hint::spin_loop();
        }
    }
}

fn handoff(budget: Duration) -> Scenario {
    let ball = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // The peer answers every odd value with the next even one.
    let peer = {
        let (ball, stop) = (Arc::clone(&ball), Arc::clone(&stop));
        thread::spawn(move || {
            let mut expect = 1;
            while wait_for(&ball, expect, &stop) {
                ball.store(expect + 1, Ordering::Release);
                expect += 2;
            }
        })
    };
    let never = AtomicBool::new(false);
    let mut next = 1;
    let (samples, _) = sample(budget, || {
        ball.store(next, Ordering::Release);
        wait_for(&ball, next + 1, &never);
        next += 2;
        Ok(())
    })
    .expect("the hand-off cannot fail");
    stop.store(true, Ordering::Relaxed);
    let _ = peer.join();
    let mut scenario = Scenario::new("handoff", "Cache-line hand-off between two threads");
    let one_way: Vec<u64> = samples.iter().map(|ns| ns / 2).collect();
    scenario.rows.push(Row::new(
        "cache-line hand-off, one-way p50",
        quantile(&one_way, 0.5),
        "ns",
        Better::Lower,
    ));
    scenario.rows.push(Row::new(
        "cache-line hand-off, one-way p99",
        quantile(&one_way, 0.99),
        "ns",
        Better::Lower,
    ));
    scenario.notes.push(format!(
        "one-way = round trip ÷ 2, {} round trips each timed with one clock read; the \
         threads spin, then yield after 1k spins (on a busy machine the tail is the \
         scheduler's)",
        samples.len()
    ));
    scenario
}

fn wake(budget: Duration) -> Scenario {
    let turn = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let main = thread::current();
    let peer = {
        let (turn, stop) = (Arc::clone(&turn), Arc::clone(&stop));
        thread::spawn(move || {
            let mut expect = 1;
            loop {
                // park() may return spuriously: the counter says whose turn it is.
                while turn.load(Ordering::Acquire) != expect {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    thread::park();
                }
                turn.store(expect + 1, Ordering::Release);
                main.unpark();
                expect += 2;
            }
        })
    };
    let mut next = 1;
    let (samples, _) = sample(budget, || {
        turn.store(next, Ordering::Release);
        peer.thread().unpark();
        while turn.load(Ordering::Acquire) != next + 1 {
            thread::park();
        }
        next += 2;
        Ok(())
    })
    .expect("parking cannot fail");
    stop.store(true, Ordering::Release);
    peer.thread().unpark();
    let _ = peer.join();
    let one_way: Vec<u64> = samples.iter().map(|ns| ns / 2).collect();
    let mut scenario = Scenario::new("wake", "Futex wake: park/unpark between two threads");
    scenario.rows.push(Row::new(
        "futex wake (park/unpark), one-way p50",
        quantile(&one_way, 0.5),
        "ns",
        Better::Lower,
    ));
    scenario.rows.push(Row::new(
        "futex wake (park/unpark), one-way p99",
        quantile(&one_way, 0.99),
        "ns",
        Better::Lower,
    ));
    scenario.notes.push(format!(
        "one-way = round trip ÷ 2 over {} round trips; std's park/unpark is a futex wait/wake \
         on Linux",
        samples.len()
    ));
    scenario
}

fn fdatasync(dir: &Path, budget: Duration) -> Result<Scenario> {
    let path = dir.join("fdatasync.dat");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    // Allocated and synced first, so each fdatasync flushes data, not a size change.
    file.write_all_at(&[0; 4096], 0)?;
    file.sync_all()?;
    let mut i = 0u64;
    let (samples, took) = sample(budget, || {
        file.write_all_at(&PAYLOAD, (i % 64) * 64)?;
        file.sync_data()?;
        i += 1;
        Ok(())
    })?;
    let mut scenario = Scenario::new("fdatasync", "pwrite + fdatasync of 64 B");
    scenario.rows.push(Row::new(
        "pwrite + fdatasync of 64 B",
        samples.len() as f64 / took.as_secs_f64(),
        "ops/s",
        Better::Higher,
    ));
    scenario.rows.push(Row::new(
        "pwrite + fdatasync of 64 B, p50",
        quantile(&samples, 0.5) / 1e3,
        "µs",
        Better::Lower,
    ));
    scenario.notes.push(format!(
        "{} writes at offsets within the first 4 KiB of a preallocated file, one thread",
        samples.len()
    ));
    Ok(scenario)
}

fn rename(dir: &Path, budget: Duration) -> Result<Scenario> {
    let temp = dir.join("item.tmp");
    let dir_handle = File::open(dir)?;
    let mut i = 0u64;
    let (samples, took) = sample(budget, || {
        let mut file = File::create(&temp)?;
        file.write_all(&PAYLOAD)?;
        file.sync_all()?;
        std::fs::rename(&temp, dir.join(format!("item-{}", i % 16)))?;
        dir_handle.sync_all()?;
        i += 1;
        Ok(())
    })?;
    let mut scenario = Scenario::new(
        "rename",
        "Temp file + fsync + rename + fsync of the directory",
    );
    scenario.rows.push(Row::new(
        "temp file + fsync + rename + dir fsync",
        samples.len() as f64 / took.as_secs_f64(),
        "ops/s",
        Better::Higher,
    ));
    scenario.rows.push(Row::new(
        "temp file + fsync + rename + dir fsync, p50",
        quantile(&samples, 0.5) / 1e3,
        "µs",
        Better::Lower,
    ));
    scenario.notes.push(format!(
        "{} publishes of a 64 B file, renamed over one of 16 names, one thread",
        samples.len()
    ));
    Ok(scenario)
}

fn websocket(budget: Duration) -> Result<Scenario> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let samples = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let mut ws = tokio_tungstenite::accept_async(stream).await?;
            while let Some(message) = ws.next().await {
                let message = message?;
                if message.is_close() {
                    break;
                }
                if message.is_binary() {
                    ws.send(message).await?;
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(format!("ws://{address}/"), None, true)
                .await?;
        for _ in 0..100 {
            round_trip(&mut ws).await?;
        }
        let mut samples = Vec::new();
        let started = Instant::now();
        while started.elapsed() < budget && samples.len() < MAX_SAMPLES {
            samples.push(round_trip(&mut ws).await?);
        }
        ws.close(None).await?;
        drop(ws);
        server
            .await?
            .map_err(|error| format!("the echo server failed: {error}"))?;
        samples.sort_unstable();
        Ok::<_, Box<dyn std::error::Error>>(samples)
    })?;
    let mut scenario = Scenario::new("websocket", "Loopback WebSocket echo");
    scenario.rows.push(Row::new(
        "loopback websocket echo, round trip p50",
        quantile(&samples, 0.5) / 1e3,
        "µs",
        Better::Lower,
    ));
    scenario.rows.push(Row::new(
        "loopback websocket echo, round trip p99",
        quantile(&samples, 0.99) / 1e3,
        "µs",
        Better::Lower,
    ));
    scenario.notes.push(format!(
        "{} round trips of a 64 B binary message on 127.0.0.1, TCP_NODELAY, client and \
         server in one process on a 2-worker tokio runtime",
        samples.len()
    ));
    Ok(scenario)
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One echo round trip, in nanoseconds.
async fn round_trip(ws: &mut Client) -> Result<u64> {
    let t = Instant::now();
    ws.send(Message::binary(PAYLOAD.to_vec())).await?;
    match ws.next().await {
        Some(Ok(message)) if message.is_binary() => {}
        other => return Err(format!("the echo server answered {other:?}").into()),
    }
    Ok(t.elapsed().as_nanos() as u64)
}

fn seq_write(dir: &Path, budget: Duration) -> Result<Scenario> {
    const TOTAL: usize = 64 << 20;
    const WRITE: usize = 4096;
    let chunk = vec![b'x'; WRITE];
    let path = dir.join("sequential.dat");
    let mut rates = Vec::new();
    let started = Instant::now();
    // At least three files, so the median means something.
    while rates.len() < 3 || started.elapsed() < budget {
        let t = Instant::now();
        let mut file = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        for _ in 0..TOTAL / WRITE {
            file.write_all(&chunk)?;
        }
        file.flush()?;
        let seconds = t.elapsed().as_secs_f64();
        drop(file);
        std::fs::remove_file(&path)?;
        rates.push(TOTAL as f64 / seconds / 1e6);
        if rates.len() >= 1000 {
            break;
        }
    }
    rates.sort_by(f64::total_cmp);
    let mut scenario = Scenario::new("seq_write", "Buffered sequential write");
    scenario.rows.push(Row::new(
        "buffered sequential write (page cache), median",
        rates[rates.len() / 2],
        "MB/s",
        Better::Higher,
    ));
    scenario.notes.push(format!(
        "{} files of 64 MiB, written in 4 KiB writes through a 1 MiB BufWriter, no sync; \
         MB = 10⁶ B",
        rates.len()
    ));
    Ok(scenario)
}
