//! Benchmarks of the dsmq server against floors and the Python original measured in the same
//! run, written as an `mq_benchkit::Report`.
//!
//! | scenario | measured | floor (same run) | original (same run) |
//! | --- | --- | --- | --- |
//! | `round_trip` | `put` then `get` of the same 64-byte message on one connection (blocking client): p50, p99 | the same two frames against a null WebSocket server (tokio-tungstenite, no parsing, no storage: answers `{"message": ""}` to every `get`), interleaved in blocks | the Python dsmq 1.0.0 server |
//! | `puts` | 1 or 50 connections each sending puts of 64 bytes, then one `get` so that all are stored: puts/s | the null server under the same load | the Python server, fewer puts |
//! | `memory` | growth of the server process's resident memory (`VmRSS`) from idle to holding N messages of 64 B | the message text itself (64 B a message) | the Python server, same load |
//!
//! The round trips and puts go to a server running in this process (a 2-thread tokio
//! runtime, as the `dsmq` command runs it). Memory is read from `/proc/PID/status` of the
//! `dsmq` command run as a child process (the binary cargo builds for this bench): the
//! child's resident memory is the server's alone, where this process's would mix in the
//! bench's clients and allocator caches.
//!
//! The Python original (dsmq 1.0.0) runs from the venv the interop tests use
//! (`target/dsmq-interop/venv-1.0.0`), made by the same code (`tests/support/pyvenv.rs`) when
//! missing; its set-up time is printed and excluded from the measuring. When it cannot be
//! made, its rows are listed in the scenario's `skipped` with the reason.
//!
//! Environment:
//! - `DSMQ_BENCH_QUICK=1`: a short run (about 20 s of measuring).
//! - `DSMQ_BENCH_REPORT=PATH`: write the JSON report there.
//! - `DSMQ_PYTHON`, `DSMQ_PY_WHEELHOUSE`: as for the interop tests (the Python the venv is
//!   made from; a directory of wheels to install from offline).
//!
//! Run with `cargo bench -p dsmq --bench dsmq`. Nothing here asserts a timing.

#[path = "../tests/support/pyvenv.rs"]
mod pyvenv;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use mq_benchkit::{Better, Report, Row, Scenario};
use tokio_tungstenite::tungstenite::Message;

const MESSAGE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const PYTHON: &str = "Python dsmq 1.0.0 server";
const FLOOR: &str = "null WebSocket server (loopback echo, no parsing, no storage)";

/// Sizes of one run.
struct Plan {
    /// Round trips: time for ours and the floor together, then for Python.
    rt_budget: Duration,
    rt_python_budget: Duration,
    /// Puts per client for (1 client, 50 clients), ours and the floor; Python's; repetitions.
    puts: [u64; 2],
    python_puts: [u64; 2],
    reps: usize,
    python_reps: usize,
    /// Messages held for the memory figure.
    memory_messages: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                rt_budget: Duration::from_secs(3),
                rt_python_budget: Duration::from_secs(1),
                puts: [5_000, 400],
                python_puts: [500, 10],
                reps: 3,
                python_reps: 1,
                memory_messages: 10_000,
            }
        } else {
            Plan {
                rt_budget: Duration::from_secs(16),
                rt_python_budget: Duration::from_secs(4),
                puts: [20_000, 2_000],
                python_puts: [2_000, 40],
                reps: 7,
                python_reps: 3,
                memory_messages: 50_000,
            }
        }
    }
}

/// A null WebSocket server: answers every frame that asks for a reply with `{"message": ""}`.
async fn null_server(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m
                    && t.as_str().starts_with(r#"{"action": "get"#)
                    && ws
                        .send(Message::Text(r#"{"message": ""}"#.into()))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// A server child process, killed and reaped when dropped.
struct ChildServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Starts `cmd` (with its port as the last argument already set) and waits until it listens.
fn start(mut cmd: Command, port: u16, what: &str) -> Result<ChildServer, String> {
    // Python dsmq 1.4 deletes files in its working directory: give it an empty one.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let child = cmd
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let mut server = ChildServer {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("{what} exited at start ({status})"));
        }
        if Instant::now() > deadline {
            return Err(format!("{what} did not listen on port {port} within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

fn python_server(py: &Path) -> Result<ChildServer, String> {
    let port = free_port()?;
    let mut cmd = Command::new(py);
    cmd.arg("-c").arg(format!(
        "from dsmq.server import serve; serve(host='127.0.0.1', port={port})"
    ));
    start(cmd, port, PYTHON)
}

fn rust_server_process() -> Result<ChildServer, String> {
    let exe = option_env!("CARGO_BIN_EXE_dsmq")
        .ok_or("the `dsmq` command is not built (the `cli` feature is off)")?;
    let port = free_port()?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()]);
    start(cmd, port, "the dsmq command")
}

fn connect(port: u16) -> Result<dsmq::blocking::Client, String> {
    let mut c = dsmq::blocking::Client::connect("127.0.0.1", port).map_err(|e| e.to_string())?;
    // Bounded: the Python server stalls on its lock retries.
    c.set_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    Ok(c)
}

/// `n` put + get round trips on `client`, each timed.
fn round_trips(
    client: &mut dsmq::blocking::Client,
    n: usize,
    out: &mut Vec<Duration>,
) -> Result<(), String> {
    for _ in 0..n {
        let t = Instant::now();
        client.put("rt", MESSAGE).map_err(|e| e.to_string())?;
        let got = client.get_raw("rt").map_err(|e| e.to_string())?;
        out.push(t.elapsed());
        std::hint::black_box(got);
    }
    Ok(())
}

/// `clients` connections each put `per_client` messages, then one get; the elapsed time.
fn puts(port: u16, clients: usize, per_client: u64) -> Result<Duration, String> {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let barrier = barrier.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let client = connect(port);
                // Everyone meets the barrier, also a client that failed to connect.
                barrier.wait();
                let mut client = client?;
                let topic = format!("puts-{c}");
                for _ in 0..per_client {
                    client.put(&topic, MESSAGE).map_err(|e| e.to_string())?;
                }
                client.get("sync").map_err(|e| e.to_string())?;
                Ok(())
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut result = Ok(());
    for t in threads {
        let r = t.join().unwrap_or_else(|_| Err("a client panicked".into()));
        result = result.and(r);
    }
    let elapsed = started.elapsed();
    result.map(|()| elapsed)
}

/// `n` with thousands separators (`10,000`).
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

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn round_trip(
    plan: &Plan,
    ours: u16,
    floor: u16,
    python: &Result<ChildServer, String>,
) -> Scenario {
    let mut sc = Scenario::new(
        "round_trip",
        "put → get round trip, 64 B, one connection (blocking client)",
    );
    let (mut o, mut f) = (Vec::new(), Vec::new());
    let mut oc = connect(ours).expect("connect to the in-process server");
    let mut fc = connect(floor).expect("connect to the null server");
    // Warm up both connections, then alternate in blocks so drift hits both alike.
    round_trips(&mut oc, 100, &mut Vec::new()).unwrap();
    round_trips(&mut fc, 100, &mut Vec::new()).unwrap();
    let started = Instant::now();
    while started.elapsed() < plan.rt_budget {
        round_trips(&mut oc, 100, &mut o).unwrap();
        round_trips(&mut fc, 100, &mut f).unwrap();
    }
    let py = python.as_ref().map_err(Clone::clone).and_then(|server| {
        let mut c = connect(server.port)?;
        round_trips(&mut c, 20, &mut Vec::new())?;
        let mut v = Vec::new();
        let started = Instant::now();
        while started.elapsed() < plan.rt_python_budget {
            round_trips(&mut c, 20, &mut v)?;
        }
        Ok(v)
    });
    let (o50, o99) = (us(percentile(&o, 0.5)), us(percentile(&o, 0.99)));
    let mut p50 = Row::new("put → get round trip, p50", o50, "µs", Better::Lower)
        .floor(FLOOR, us(percentile(&f, 0.5)));
    let mut p99 = Row::new("put → get round trip, p99", o99, "µs", Better::Lower)
        .floor(FLOOR, us(percentile(&f, 0.99)));
    match &py {
        Ok(v) => {
            let (y50, y99) = (us(percentile(v, 0.5)), us(percentile(v, 0.99)));
            p50 = p50.original(PYTHON, y50).target(
                "≤ the Python 1.0.0 server's (spec: about 0.3 ms)",
                o50 <= y50,
            );
            p99 = p99.original(PYTHON, y99).target(
                "≤ the Python 1.0.0 server's (spec: about 0.4 ms)",
                o99 <= y99,
            );
            sc.notes.push(format!(
                "{} round trips with dsmq and {} with the null server, alternating in blocks of 100; {} with Python",
                o.len(),
                f.len(),
                v.len()
            ));
        }
        Err(e) => {
            p50 = p50.target("≤ 0.3 ms, the Python 1.0.0 server's (spec)", o50 <= 300.0);
            p99 = p99.target("≤ 0.4 ms, the Python 1.0.0 server's (spec)", o99 <= 400.0);
            sc.skipped.push(format!("{PYTHON}: {e}"));
        }
    }
    sc.rows.push(p50.headline());
    sc.rows.push(p99);
    sc
}

fn put_rates(plan: &Plan, ours: u16, floor: u16, python: &Result<ChildServer, String>) -> Scenario {
    let mut sc = Scenario::new("puts", "puts/s, 64 B, with 1 and with 50 connections");
    for (i, clients) in [1usize, 50].into_iter().enumerate() {
        let per = plan.puts[i];
        let total = (per * clients as u64) as f64;
        let (mut o, mut f) = (Vec::new(), Vec::new());
        for _ in 0..plan.reps {
            let d = puts(ours, clients, per).expect("puts to the in-process server");
            o.push(total / d.as_secs_f64());
            let d = puts(floor, clients, per).expect("puts to the null server");
            f.push(total / d.as_secs_f64());
        }
        let rate = median(o);
        let mut row = Row::new(
            &format!(
                "puts/s, {clients} connection{}",
                if clients == 1 { "" } else { "s" }
            ),
            rate,
            "msg/s",
            Better::Higher,
        )
        .floor(FLOOR, median(f));
        let py = python.as_ref().map_err(Clone::clone).and_then(|server| {
            let per = plan.python_puts[i];
            let mut v = Vec::new();
            for _ in 0..plan.python_reps {
                let d = puts(server.port, clients, per)?;
                v.push((per * clients as u64) as f64 / d.as_secs_f64());
            }
            Ok(median(v))
        });
        match py {
            Ok(y) => {
                row = row
                    .original(PYTHON, y)
                    .target("≥ the Python 1.0.0 server's (spec)", rate >= y);
            }
            Err(e) => sc
                .skipped
                .push(format!("{PYTHON}, {clients} connection(s): {e}")),
        }
        if clients == 50 {
            row = row.headline();
        }
        sc.rows.push(row);
        sc.notes.push(format!(
            "{clients} connection(s): {per} puts each for dsmq and the floor (median of {}), {} each for Python (median of {})",
            plan.reps, plan.python_puts[i], plan.python_reps
        ));
    }
    sc.notes.push(
        "Python 1.0.0 does not acknowledge puts and under concurrent writers retries on \"database table is locked\", then drops puts silently: its rate counts what was sent"
            .to_string(),
    );
    sc
}

/// Resident and peak resident memory of `pid`, in bytes.
fn rss(pid: u32) -> Result<(u64, u64), String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| format!("{path}: no {name} line in kB"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// (idle RSS, RSS holding `n` messages, peak RSS) of `server`.
fn load_memory(server: &ChildServer, n: usize) -> Result<(u64, u64, u64), String> {
    let mut c = connect(server.port)?;
    // Idle, but with one connection served and the store set up.
    c.put("warm", MESSAGE).map_err(|e| e.to_string())?;
    c.get("warm").map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(200));
    let (idle, _) = rss(server.child.id())?;
    for i in 0..n {
        c.put(&format!("mem-{}", i % 10), MESSAGE)
            .map_err(|e| e.to_string())?;
        if i % 1000 == 999 {
            // Keep the server's input bounded (and Python's unacknowledged puts in step).
            c.get("sync").map_err(|e| e.to_string())?;
        }
    }
    c.get("sync").map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    let (held, peak) = rss(server.child.id())?;
    Ok((idle, held, peak))
}

fn memory(plan: &Plan, python: Option<&Path>, python_err: Option<&str>) -> Scenario {
    let n = plan.memory_messages;
    let mut sc = Scenario::new(
        "memory",
        &format!(
            "Server memory at steady state, holding {} messages of 64 B",
            thousands(n)
        ),
    );
    let ours = rust_server_process().and_then(|s| load_memory(&s, n));
    let py = match (python, python_err) {
        (Some(py), _) => python_server(py).and_then(|s| load_memory(&s, n)),
        (None, e) => Err(e.unwrap_or("not installed").to_string()),
    };
    let (idle, held, peak) = match ours {
        Ok(v) => v,
        Err(e) => {
            println!("memory: not measured: {e}");
            sc.skipped.push(format!("dsmq server process: {e}"));
            return sc;
        }
    };
    let per = held.saturating_sub(idle) as f64 / n as f64;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut per_row = Row::new(
        "resident memory per message held (RSS growth / messages)",
        per,
        "B",
        Better::Lower,
    )
    .floor("the message text itself", MESSAGE.len() as f64);
    let mut total = Row::new(
        &format!("server resident memory holding {} messages", thousands(n)),
        mib(held),
        "MiB",
        Better::Lower,
    );
    match py {
        Ok((pidle, pheld, ppeak)) => {
            per_row = per_row.original(PYTHON, pheld.saturating_sub(pidle) as f64 / n as f64);
            total = total.original(PYTHON, mib(pheld));
            sc.notes.push(format!(
                "Python: {:.1} MiB idle, {:.1} MiB holding, peak {:.1} MiB",
                mib(pidle),
                mib(pheld),
                mib(ppeak)
            ));
        }
        Err(e) => sc.skipped.push(format!("{PYTHON}: {e}")),
    }
    sc.rows.push(total.headline());
    sc.rows.push(per_row);
    sc.notes.push(format!(
        "VmRSS of the server process from /proc (the `dsmq serve` command as a child, and the Python server), after one put + get (idle: {:.1} MiB) and after {n} puts to 10 topics and a get (peak VmHWM {:.1} MiB)",
        mib(idle),
        mib(peak)
    ));
    sc
}

fn print(sc: &Scenario, took: Duration) {
    println!("\n{sc}  ({took:.1?})");
}

fn main() {
    let quick = mq_benchkit::quick("DSMQ_BENCH_QUICK");
    let plan = Plan::new(quick);
    let mut report = Report::new(
        "dsmq",
        "dsmq: WebSocket pub/sub server on in-memory SQLite (Python dsmq compatible)",
        quick,
    );
    report.command = if quick {
        "DSMQ_BENCH_QUICK=1 cargo bench -p dsmq --bench dsmq".into()
    } else {
        "cargo bench -p dsmq --bench dsmq".into()
    };
    report
        .setting("message", "64 B")
        .setting("server", "in-process, 2-thread tokio runtime, loopback")
        .setting(
            "memory load",
            format!("{} messages", thousands(plan.memory_messages)),
        );

    let setup = Instant::now();
    let venv = pyvenv::venv("1.0.0");
    println!(
        "python original: venv ready in {:.1?} (not measured){}",
        setup.elapsed(),
        venv.as_ref()
            .err()
            .map(|e| format!("; cannot install it: {e}"))
            .unwrap_or_default()
    );
    report.setting(
        "python original",
        format!(
            "dsmq 1.0.0 venv (set up in {:.1} s, outside the measuring)",
            setup.elapsed().as_secs_f64()
        ),
    );

    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime
        .block_on(dsmq::Server::bind(
            "127.0.0.1:0",
            dsmq::ServerConfig::default(),
        ))
        .unwrap();
    let ours = server.local_addr().port();
    let handle = server.handle();
    runtime.spawn(server.run());
    let null_listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let floor = null_listener.local_addr().unwrap().port();
    runtime.spawn(null_server(null_listener));
    let python = venv.clone().and_then(|py| python_server(&py));

    let t = Instant::now();
    let sc = round_trip(&plan, ours, floor, &python);
    print(&sc, t.elapsed());
    report.scenarios.push(sc);
    let t = Instant::now();
    let sc = put_rates(&plan, ours, floor, &python);
    print(&sc, t.elapsed());
    report.scenarios.push(sc);
    drop(python);
    handle.shutdown();
    let t = Instant::now();
    let sc = memory(
        &plan,
        venv.as_ref().ok().map(|p| p.as_path()),
        venv.as_ref().err().map(String::as_str),
    );
    print(&sc, t.elapsed());
    report.scenarios.push(sc);
    println!(
        "\ndsmq bench: {:.1?} of measuring (the venv set-up excluded)",
        started.elapsed()
    );
    if let Err(e) = report.write_if_requested("DSMQ_BENCH_REPORT") {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
