//! Benchmarks of the dsmq server against floors measured in the same run.
//!
//! | group | what | floor |
//! | --- | --- | --- |
//! | `round_trip` | `put` then `get` of the same 64-byte message on one connection (blocking client) | the same two frames against a null WebSocket server (tokio-tungstenite, no parsing, no storage: answers `{"message": ""}` to every `get`) |
//! | `puts_1`, `puts_50` | 1 or 50 connections each sending puts of 64 bytes, then one `get` so that all are stored | the null server under the same load |
//!
//! When the venv of the interop tests exists (`target/dsmq-interop/venv-1.0.0`, made by
//! `cargo test -p dsmq --test interop_python`), the Python dsmq 1.0.0 server runs the same
//! cases (fewer iterations: it is slow).
//!
//! The summary printed at the end gives p50/p99 of the round trip and puts/s, with the ratios
//! to the floor and to Python.
//!
//! Environment: `DSMQ_BENCH_QUICK=1` for a short run (about 30 s).
//!
//! Run with `cargo bench -p dsmq --bench dsmq`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const MESSAGE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Every round-trip latency, per target name.
type Latencies = Vec<(&'static str, Vec<Duration>)>;

/// A target of the benchmark: a name and a port.
#[derive(Clone)]
struct Target {
    name: &'static str,
    port: u16,
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

struct Python(Child);

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_server() -> Option<(Python, u16, tempfile::TempDir)> {
    let py =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dsmq-interop/venv-1.0.0/bin/python");
    if !py.exists() {
        eprintln!(
            "python 1.0.0 venv not found at {}: run `cargo test -p dsmq --test interop_python` first to compare with it",
            py.display()
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = tempfile::tempdir().ok()?;
    let child = Command::new(py)
        .arg("-c")
        .arg(format!(
            "from dsmq.server import serve; serve(host='127.0.0.1', port={port})"
        ))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let child = Python(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((child, port, dir))
}

fn connect(port: u16) -> dsmq::blocking::Client {
    dsmq::blocking::Client::connect("127.0.0.1", port).expect("connect")
}

/// `clients` connections each put `per_client` messages, then one get; the elapsed time.
fn puts(port: u16, clients: usize, per_client: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let done = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let barrier = barrier.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut client = connect(port);
                let topic = format!("puts-{c}");
                barrier.wait();
                for _ in 0..per_client {
                    client.put(&topic, MESSAGE).unwrap();
                }
                client.get("sync").unwrap();
                done.wait();
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    done.wait();
    let elapsed = started.elapsed();
    for t in threads {
        t.join().unwrap();
    }
    elapsed
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let quick = std::env::var("DSMQ_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let (warm_up, measurement, samples) = if quick {
        (Duration::from_millis(300), Duration::from_secs(1), 10)
    } else {
        (Duration::from_secs(1), Duration::from_secs(4), 30)
    };
    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(warm_up)
        .measurement_time(measurement)
        .sample_size(samples);

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
    let ours = Target {
        name: "dsmq",
        port: server.local_addr().port(),
    };
    let handle = server.handle();
    runtime.spawn(server.run());
    let null_listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let floor = Target {
        name: "null_ws_floor",
        port: null_listener.local_addr().unwrap().port(),
    };
    runtime.spawn(null_server(null_listener));
    let python = python_server();
    let mut targets = vec![ours.clone(), floor.clone()];
    if let Some((_, port, _)) = &python {
        targets.push(Target {
            name: "python_1.0.0",
            port: *port,
        });
    }

    // Round trip: put then get, every latency kept for the percentiles.
    let latencies: Arc<Mutex<Latencies>> = Arc::default();
    {
        let mut group = criterion.benchmark_group("round_trip");
        group.throughput(Throughput::Elements(1));
        for t in &targets {
            let mut client = connect(t.port);
            let kept = latencies.clone();
            let name = t.name;
            group.bench_function(name, move |b| {
                b.iter_custom(|iters| {
                    let mut all = Vec::with_capacity(iters as usize);
                    let started = Instant::now();
                    for _ in 0..iters {
                        let one = Instant::now();
                        client.put("rt", MESSAGE).unwrap();
                        let got = client.get_raw("rt").unwrap();
                        all.push(one.elapsed());
                        std::hint::black_box(got);
                    }
                    let elapsed = started.elapsed();
                    let mut kept = kept.lock().unwrap();
                    match kept.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, v)) => v.extend(all),
                        None => kept.push((name, all)),
                    }
                    elapsed
                });
            });
        }
        group.finish();
    }

    // Throughput of puts with 1 and 50 clients.
    let rates: Arc<Mutex<Vec<(String, f64)>>> = Arc::default();
    for clients in [1usize, 50] {
        let mut group = criterion.benchmark_group(format!("puts_{clients}"));
        group.sample_size(10);
        let per_client = 2000u64;
        for t in &targets {
            let per_client = if t.name.starts_with("python") {
                per_client / 20
            } else {
                per_client
            };
            // Per target: Python sends fewer, and criterion's rate must count what it sent.
            group.throughput(Throughput::Elements(per_client * clients as u64));
            let port = t.port;
            let rates = rates.clone();
            let key = format!("{}/{clients}", t.name);
            group.bench_function(t.name, move |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let elapsed = puts(port, clients, per_client);
                        rates.lock().unwrap().push((
                            key.clone(),
                            (per_client * clients as u64) as f64 / elapsed.as_secs_f64(),
                        ));
                        total += elapsed;
                    }
                    total
                });
            });
        }
        group.finish();
    }

    // Summary with ratios.
    let latencies = latencies.lock().unwrap();
    let lat = |name: &str| -> Option<(Duration, Duration)> {
        let (_, v) = latencies.iter().find(|(n, _)| *n == name)?;
        let mut v = v.clone();
        v.sort();
        Some((percentile(&v, 0.5), percentile(&v, 0.99)))
    };
    println!("\n## dsmq benchmark summary\n");
    println!("| round trip (put + get) | p50 | p99 | p50 / floor |");
    println!("| --- | --- | --- | --- |");
    let floor_p50 = lat(floor.name).map(|l| l.0);
    for t in &targets {
        if let Some((p50, p99)) = lat(t.name) {
            let ratio = floor_p50.map_or(f64::NAN, |f| p50.as_secs_f64() / f.as_secs_f64());
            println!("| {} | {p50:.1?} | {p99:.1?} | {ratio:.2} |", t.name);
        }
    }
    let rates = rates.lock().unwrap();
    let median_rate = |key: &str| -> Option<f64> {
        let mut v: Vec<f64> = rates
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, r)| *r)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    };
    println!(
        "\n| puts/s (64 B) | 1 client | 50 clients | 1 / floor | 50 / floor | 1 / python | 50 / python |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for t in &targets {
        let one = median_rate(&format!("{}/1", t.name));
        let fifty = median_rate(&format!("{}/50", t.name));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let f1 = median_rate(&format!("{}/1", floor.name));
        let f50 = median_rate(&format!("{}/50", floor.name));
        let p1 = median_rate("python_1.0.0/1");
        let p50 = median_rate("python_1.0.0/50");
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} | {} |",
            t.name,
            one.unwrap_or(f64::NAN),
            fifty.unwrap_or(f64::NAN),
            ratio(one, f1),
            ratio(fifty, f50),
            ratio(one, p1),
            ratio(fifty, p50),
        );
    }
    handle.shutdown();
    drop(python);
}
