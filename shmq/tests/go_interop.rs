//! Interop with the Go original, `shqueue-go` (MIT), built from its unmodified source in the
//! project's shared folder (`shared/originals/shqueue-go`, beside the repository) with Debian's
//! `golang-go` and `golang-golang-x-sys-dev`, offline, in GOPATH mode. The test installs the
//! two packages with apt when `go` is missing (as root), or fails saying how to install them.
//!
//! Cases: Rust creates (format G), Go enqueues by shift/try/block, Rust dequeues; Go creates,
//! Rust enqueues, Go dequeues; the same scripted operations leave byte-identical segments;
//! Rust and Go producers and consumers racing on one cyclic ring.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use shmq::{Format, Key, Options, Queue};
use support::go::{driver, run};
use support::{Cleanup, message, tag_of};

fn go(key: Key, bytes: usize, args: &[&str]) -> Command {
    let mut cmd = Command::new(driver(true));
    cmd.arg(args[0])
        .arg(key.0.to_string())
        .args(&args[1..])
        .env("SHMQ_MSG_BYTES", bytes.to_string());
    cmd
}

fn tags(out: &Output) -> Vec<u64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().expect("a tag per line"))
        .collect()
}

fn go_format() -> Options {
    Options {
        format: Format::GoCompat,
        ..Options::default()
    }
}

/// Format G for the racing cases, which check delivery, not recovery: a live Go holder
/// descheduled on a loaded machine for longer than the default 200 ms stall timeout would
/// give `LockStuck` to the Rust side's try and shift.
fn go_format_patient() -> Options {
    Options {
        stall_timeout: Duration::from_secs(60),
        ..go_format()
    }
}

fn soon() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(60))
}

fn recv_n(q: &Queue, n: usize) -> Vec<u64> {
    let mut buf = vec![0u8; q.msg_bytes()];
    (0..n)
        .map(|_| {
            q.dequeue_block(&mut buf, soon()).expect("dequeue");
            tag_of(&buf)
        })
        .collect()
}

#[test]
fn rust_creates_go_enqueues_rust_dequeues() {
    let q = Queue::create_unique(4, 8, &go_format()).unwrap();
    let _c = Cleanup::new(q.key());
    let b = q.msg_bytes();
    run(
        &mut go(q.key(), b, &["enqueue", "shift", "5", "0"]),
        "go shift",
    );
    run(
        &mut go(q.key(), b, &["enqueue", "try", "3", "100"]),
        "go try",
    );
    assert_eq!(q.len(), 8);
    assert_eq!(recv_n(&q, 8), [0, 1, 2, 3, 4, 100, 101, 102]);
    // Shift into a full ring: the Go side overwrites the oldest.
    run(
        &mut go(q.key(), b, &["enqueue", "shift", "10", "200"]),
        "go shift",
    );
    assert_eq!(recv_n(&q, 8), (202..210).collect::<Vec<_>>());
    // Block: the Go producer waits for room the Rust consumer makes.
    let mut producer = go(q.key(), b, &["enqueue", "block", "40", "300"])
        .spawn()
        .unwrap();
    let got = recv_n(&q, 40);
    assert!(producer.wait().unwrap().success());
    assert_eq!(got, (300..340).collect::<Vec<_>>());
    assert!(q.is_empty());
}

#[test]
fn go_creates_rust_enqueues_go_dequeues() {
    let key = shmq::find_free_key().unwrap();
    let _c = Cleanup::new(key);
    run(&mut go(key, 32, &["create", "4", "8"]), "go create");
    let q = Queue::open(key).unwrap();
    assert_eq!(
        (q.format(), q.msg_bytes(), q.capacity()),
        (Format::GoCompat, 32, 8)
    );
    for t in 0..5 {
        q.enqueue_shift(&message(t, 32)).unwrap();
    }
    for t in 100..103 {
        assert!(q.enqueue_try(&message(t, 32)).unwrap());
    }
    assert!(!q.enqueue_try(&message(999, 32)).unwrap(), "full");
    let out = run(&mut go(key, 32, &["dequeue", "try", "8"]), "go dequeue");
    assert_eq!(tags(&out), [0, 1, 2, 3, 4, 100, 101, 102]);
    for t in 200..210 {
        q.enqueue_shift(&message(t, 32)).unwrap();
    }
    let out = run(&mut go(key, 32, &["dequeue", "try", "8"]), "go dequeue");
    assert_eq!(tags(&out), (202..210).collect::<Vec<_>>());
    let consumer = go(key, 32, &["dequeue", "block", "40"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for t in 300..340 {
        q.enqueue_block(&message(t, 32), soon()).unwrap();
    }
    let out = consumer.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(tags(&out), (300..340).collect::<Vec<_>>());
}

#[test]
fn same_operations_leave_byte_identical_segments() {
    let go_key = shmq::find_free_key().unwrap();
    let _c1 = Cleanup::new(go_key);
    run(&mut go(go_key, 16, &["create", "2", "3"]), "go create");
    run(&mut go(go_key, 16, &["script"]), "go script");
    let q = Queue::create_unique(2, 3, &go_format()).unwrap();
    let _c2 = Cleanup::new(q.key());
    let mut buf = [0u8; 16];
    for t in 0..5 {
        q.enqueue_shift(&message(t, 16)).unwrap();
    }
    q.dequeue_try(&mut buf).unwrap();
    q.enqueue_try(&message(100, 16)).unwrap();
    q.dequeue_try(&mut buf).unwrap();
    q.dequeue_try(&mut buf).unwrap();
    q.enqueue_block(&message(200, 16), None).unwrap();
    let ours = shmq::snapshot(q.key()).unwrap();
    let theirs = shmq::snapshot(go_key).unwrap();
    assert_eq!(ours.len(), 32 + 24 * 3);
    assert_eq!(
        ours, theirs,
        "format G layout differs from the Go library's"
    );
}

#[test]
fn rust_and_go_race_on_a_cyclic_ring() {
    const N: u64 = 20_000;
    let q = Queue::create_unique(4, 4, &go_format_patient()).unwrap();
    let cleanup = Cleanup::new(q.key());
    let b = q.msg_bytes();
    let stop = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("shmq-go-stop-{}", q.key().0));
    let _ = std::fs::remove_file(&stop);
    let go_consumer = go(q.key(), b, &["consume", stop.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first = (1u64 << 40).to_string();
    let mut go_producer = go(q.key(), b, &["enqueue", "shift", &N.to_string(), &first])
        .spawn()
        .unwrap();
    let ours = std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            let mut buf = vec![0u8; b];
            let mut got = Vec::new();
            loop {
                let stopping = stop.exists();
                if q.dequeue_try(&mut buf).unwrap() {
                    got.push(tag_of(&buf));
                } else if stopping {
                    return got;
                }
            }
        });
        for i in 0..N {
            q.enqueue_shift(&message((2 << 40) | i, b)).unwrap();
        }
        assert!(go_producer.wait().unwrap().success(), "go producer");
        std::fs::write(&stop, b"stop").unwrap();
        consumer.join().unwrap()
    });
    let out = go_consumer.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&stop);
    assert!(
        out.status.success(),
        "go consumer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = tags(&out);
    for got in [&ours, &theirs] {
        for p in [1u64, 2] {
            let mine: Vec<u64> = got.iter().copied().filter(|t| t >> 40 == p).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "per-producer order");
        }
    }
    let mut all: Vec<u64> = ours.iter().chain(&theirs).copied().collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a message delivered twice");
    assert!(n > 0 && n as u64 <= 2 * N);
    assert!(
        all.iter()
            .all(|t| matches!(t >> 40, 1 | 2) && t & 0xff_ffff_ffff < N)
    );
    drop(cleanup);
}

/// A format-G header lock left by a dead Rust process, while a Go producer waits on it: the
/// Rust consumer takes the lock over after the stall timeout, and the Go producer goes on.
#[cfg(feature = "test-hooks")]
#[test]
fn dead_rust_holder_recovered_while_go_waits() {
    let q = Queue::create_unique(4, 4, &go_format()).unwrap();
    let mut cleanup = Cleanup::new(q.key());
    let b = q.msg_bytes();
    // A pid that existed and is gone: a child that has exited and been reaped.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let held = (1u64 << 32) | u64::from(dead_pid);
    shmq::poke(q.key(), 16, &held.to_le_bytes()).unwrap();
    // Kept in the guard: were the lock never recovered, the Go producer would spin forever.
    cleanup.children.push(
        go(q.key(), b, &["enqueue", "block", "10", "500"])
            .spawn()
            .unwrap(),
    );
    let got = recv_n(&q, 10);
    let mut producer = cleanup.children.pop().unwrap();
    assert!(producer.wait().unwrap().success(), "go producer");
    assert_eq!(got, (500..510).collect::<Vec<_>>());
    assert_eq!(q.recovered_locks(), 1);
}
