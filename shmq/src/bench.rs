//! Measurement helpers shared by `shmq bench` and the criterion bench (feature `cli`): a
//! ping-pong between two queues, a streaming run, and the hardware floor they are compared
//! with, a cache-line hand-off between two threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Queue, Result};

/// Percentiles of one-way latency (half a round trip).
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
}

impl Latency {
    /// One-way percentiles from round-trip samples.
    pub fn from_round_trips(mut rtts: Vec<Duration>) -> Latency {
        rtts.sort_unstable();
        let at = |q: f64| {
            let i = ((rtts.len() as f64 - 1.0) * q).round() as usize;
            rtts.get(i).copied().unwrap_or_default() / 2
        };
        Latency {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        }
    }
}

/// The client side of a ping-pong: sends on `out`, waits for the echo on `back`, `rounds`
/// times after `warmup` unmeasured rounds. Returns the round-trip times.
pub fn ping(out: &Queue, back: &Queue, rounds: usize, warmup: usize) -> Result<Vec<Duration>> {
    let mut msg = vec![0u8; out.msg_bytes()];
    let mut buf = vec![0u8; back.msg_bytes()];
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..rounds + warmup {
        msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let t = Instant::now();
        out.enqueue_block(&msg, None)?;
        back.dequeue_block(&mut buf, None)?;
        let rtt = t.elapsed();
        if i >= warmup {
            rtts.push(rtt);
        }
    }
    Ok(rtts)
}

/// The server side of a ping-pong: echoes `rounds` messages from `input` to `output`.
pub fn pong(input: &Queue, output: &Queue, rounds: usize) -> Result<()> {
    let mut buf = vec![0u8; input.msg_bytes()];
    for _ in 0..rounds {
        input.dequeue_block(&mut buf, None)?;
        output.enqueue_block(&buf, None)?;
    }
    Ok(())
}

/// Sends `count` messages as fast as the queue takes them (blocking when full).
pub fn stream_send(q: &Queue, count: u64) -> Result<()> {
    let mut msg = vec![0u8; q.msg_bytes()];
    for i in 0..count {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        q.enqueue_block(&msg, None)?;
    }
    Ok(())
}

/// Receives `count` messages; returns the time from the first to the last.
pub fn stream_recv(q: &Queue, count: u64) -> Result<Duration> {
    let mut buf = vec![0u8; q.msg_bytes()];
    q.dequeue_block(&mut buf, None)?;
    let t = Instant::now();
    for _ in 1..count {
        q.dequeue_block(&mut buf, None)?;
    }
    Ok(t.elapsed())
}

/// The floor: two threads hand a counter back and forth through one cache line, `rounds`
/// round trips after `warmup`. Returns the round-trip times.
pub fn cache_line_floor(rounds: usize, warmup: usize) -> Vec<Duration> {
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Arc::new(Line(AtomicU64::new(0)));
    let total = (rounds + warmup) as u64;
    let peer = {
        let line = Arc::clone(&line);
        std::thread::spawn(move || {
            for i in 0..total {
                while line.0.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                line.0.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..total {
        let t = Instant::now();
        line.0.store(2 * i + 1, Ordering::Release);
        while line.0.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
        if i >= warmup as u64 {
            rtts.push(t.elapsed());
        }
    }
    let _ = peer.join();
    rtts
}
