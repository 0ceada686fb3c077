//! Benchmarks of `shmq` against floors measured in the same run.
//!
//! | measurement | shmq | compared with |
//! | --- | --- | --- |
//! | one-way latency, 64 B and 512 B, spin and park | ping-pong between this process and a child (two queues), p50/p99/p99.9 of half the round trip | two threads handing a counter through one cache line (the hardware floor); format G with a Go echo peer (the original) |
//! | streaming 1 → 1, 64 B and 512 B, 1024 and 65536 slots | a child producer, this process consuming, msgs/s, default options | — |
//! | `shift_into_full_64B` (criterion) | `enqueue_shift` into a full ring whose consumer is stalled | copying the 64 bytes into a buffer |
//!
//! Environment: `SHMQ_BENCH_QUICK=1` for a short run. Run with
//! `cargo bench -p shmq --bench shmq`. The Go rows need `go` (see the interop test); they are
//! reported as missing otherwise.

#[path = "../tests/support/go.rs"]
#[allow(dead_code, unreachable_pub)]
mod go;

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::Criterion;
use shmq::bench::{Latency, cache_line_floor, ping, pong, stream_recv, stream_send};
use shmq::{Format, Key, Options, Queue};

const ROLE: &str = "SHMQ_BENCH_ROLE";

fn quick() -> bool {
    std::env::var("SHMQ_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn options(park: bool, format: Format) -> Options {
    Options {
        format,
        spin_for: if park {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        },
        ..Options::default()
    }
}

/// Two queues, deleted at the end of the bench (also on a panic).
struct Pair(Queue, Queue);

impl Pair {
    fn new(words: u32, slots: u32, o: &Options) -> Pair {
        Pair(
            Queue::create_unique(words, slots, o).unwrap(),
            Queue::create_unique(words, slots, o).unwrap(),
        )
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self.0.delete();
        let _ = self.1.delete();
    }
}

fn peer(role: &str, a: Key, b: Key, n: u64, park: bool) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .env("SHMQ_A", a.0.to_string())
        .env("SHMQ_B", b.0.to_string())
        .env("SHMQ_N", n.to_string())
        .env("SHMQ_PARK", if park { "1" } else { "0" })
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

fn play_peer(role: &str) {
    let var = |k: &str| std::env::var(k).unwrap();
    let o = if role == "stream" {
        Options::default()
    } else {
        options(var("SHMQ_PARK") == "1", Format::Native)
    };
    let a = Queue::open_with(Key(var("SHMQ_A").parse().unwrap()), &o).unwrap();
    let b = Queue::open_with(Key(var("SHMQ_B").parse().unwrap()), &o).unwrap();
    let n: u64 = var("SHMQ_N").parse().unwrap();
    match role {
        "pong" => pong(&a, &b, n as usize).unwrap(),
        "stream" => stream_send(&a, n).unwrap(),
        other => panic!("unknown role {other}"),
    }
}

fn show(d: Duration) -> String {
    format!("{:.0} ns", d.as_secs_f64() * 1e9)
}

fn row(what: &str, l: &Latency, floor: &Latency) {
    println!(
        "| {what} | {} | {} | {} | {:.2}× |",
        show(l.p50),
        show(l.p99),
        show(l.p999),
        l.p50.as_secs_f64() / floor.p50.as_secs_f64()
    );
}

fn latency(words: u32, park: bool, format: Format, rounds: usize) -> Latency {
    let pair = Pair::new(words, 64, &options(park, format));
    let warmup = rounds / 10;
    let mut child = peer(
        "pong",
        pair.0.key(),
        pair.1.key(),
        (rounds + warmup) as u64,
        park,
    );
    let rtts = ping(&pair.0, &pair.1, rounds, warmup).unwrap();
    assert!(child.wait().unwrap().success());
    Latency::from_round_trips(rtts)
}

fn go_latency(words: u32, rounds: usize) -> Option<Latency> {
    if !go::have_go() {
        return None;
    }
    let driver = go::driver(false);
    let pair = Pair::new(words, 64, &options(false, Format::GoCompat));
    let warmup = rounds / 10;
    let mut child = Command::new(driver)
        .args([
            "pong",
            &pair.0.key().0.to_string(),
            &pair.1.key().0.to_string(),
            &(rounds + warmup).to_string(),
        ])
        .env("SHMQ_MSG_BYTES", (words * 8).to_string())
        .spawn()
        .ok()?;
    let rtts = ping(&pair.0, &pair.1, rounds, warmup).unwrap();
    assert!(child.wait().unwrap().success());
    Some(Latency::from_round_trips(rtts))
}

/// Streaming with the default options (spin 20 µs, then park), which is what users get; pure
/// spinning on both sides loses to the scheduler on a machine with more runnable threads
/// than cores.
fn streaming(words: u32, slots: u32, messages: u64) -> f64 {
    let pair = Pair::new(words, slots, &Options::default());
    let mut child = peer("stream", pair.0.key(), pair.1.key(), messages, true);
    let took = stream_recv(&pair.0, messages).unwrap();
    assert!(child.wait().unwrap().success());
    (messages - 1) as f64 / took.as_secs_f64()
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        play_peer(&role);
        return;
    }
    let (rounds, messages) = if quick() {
        (20_000, 1_000_000)
    } else {
        (200_000, 10_000_000)
    };
    let floor = Latency::from_round_trips(cache_line_floor(rounds, rounds / 10));
    println!("\n## one-way latency ({rounds} round trips; ratio = p50 / floor p50)\n");
    println!("| case | p50 | p99 | p99.9 | ratio |");
    println!("| --- | --- | --- | --- | --- |");
    row("cache-line hand-off, two threads (floor)", &floor, &floor);
    for words in [8u32, 64] {
        let bytes = words * 8;
        row(
            &format!("format N, {bytes} B, spin"),
            &latency(words, false, Format::Native, rounds),
            &floor,
        );
        row(
            &format!("format N, {bytes} B, park"),
            &latency(words, true, Format::Native, rounds / 4),
            &floor,
        );
        row(
            &format!("format G (Rust both ends), {bytes} B, spin"),
            &latency(words, false, Format::GoCompat, rounds),
            &floor,
        );
        match go_latency(words, rounds / 4) {
            Some(l) => row(
                &format!("format G, Go echo peer (the original), {bytes} B"),
                &l,
                &floor,
            ),
            None => println!("| format G, Go echo peer, {bytes} B | (go not installed) | | | |"),
        }
    }
    println!(
        "\n## streaming, 1 producer process → 1 consumer process ({messages} messages, default options)\n"
    );
    for words in [8u32, 64] {
        for slots in [1024u32, 65536] {
            println!(
                "- {} B, {slots} slots: {:.2} M msgs/s",
                words * 8,
                streaming(words, slots, messages) / 1e6
            );
        }
    }
    println!();

    let mut c = Criterion::default().configure_from_args();
    if quick() {
        c = c
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(800))
            .sample_size(10);
    }
    let q = Queue::create_unique(8, 64, &Options::default()).unwrap();
    let msg = [7u8; 64];
    let mut copy = [0u8; 64];
    let mut g = c.benchmark_group("shift_into_full_64B");
    g.bench_function("shmq_enqueue_shift", |b| {
        b.iter(|| q.enqueue_shift(black_box(&msg)).unwrap())
    });
    g.bench_function("floor_copy_64B", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&msg));
            black_box(&copy);
        })
    });
    g.finish();
    let _ = q.delete();
    c.final_summary();
}
