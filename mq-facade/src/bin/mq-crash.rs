//! `mq-crash`: the child processes of `cargo xtask crash --kills N`, which SIGKILLs them at
//! random moments and then audits their logs.
//!
//! Every role speaks only the facade (`open_producer` / `open_consumer` by URL), so each
//! backend is held to the same contract. Each role appends one line per event to its log
//! with a single `write(2)` on an `O_APPEND` file: once the call returns the kernel holds the
//! line, and a SIGKILL of this process cannot take it back (the harness kills processes,
//! never the machine, so the logs need no fsync). Log lines:
//!
//! - producer: `P RUN` (started), `S RUN SEQ` (every message of the run up to SEQ was sent),
//!   `D RUN SEQ` (flush(Synced) returned after them: acknowledged as durable).
//! - consumer: `G RUN SEQ R` (delivered and verified; R = 1 if the backend flagged it
//!   redelivered), then the ack, then `A RUN SEQ` (the ack returned) or `F RUN SEQ` (the
//!   backend refused the ack, e.g. its ack timeout gave the message away); `T LEN WHY` for a
//!   payload that fails verification (torn).
//!
//! A payload is `run u64 | seq u64 | len u32 | body | fnv1a64` (little endian), where `len`
//! is the whole payload's length, the body is derived from (run, seq) and the checksum covers
//! everything before it: a torn, truncated, mixed or corrupted payload fails verification.

#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use mq_facade::{Consumer, Durability, Error, Producer, SendOptions, Wait};

#[derive(Parser)]
#[command(
    name = "mq-crash",
    version,
    about = "Producer and consumer roles for `cargo xtask crash --kills N` (killed with SIGKILL at random moments)"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(clap::Args, Clone)]
struct ProduceArgs {
    /// This producer's run number (unique per process; the orchestrator counts them).
    #[arg(long)]
    run: u64,
    /// The producer's log (appended).
    #[arg(long)]
    producer_log: PathBuf,
    /// Most messages per flush (each batch has 1..=N, chosen from the run and sequence).
    #[arg(long, default_value_t = 8)]
    max_batch: u64,
    /// Ack timeout of every message, in seconds, where the backend supports one (a message
    /// claimed by a killed consumer comes back after it).
    #[arg(long)]
    ack_timeout: Option<f64>,
    /// Pause after each flush, in milliseconds (keeps the backlog bounded).
    #[arg(long, default_value_t = 0)]
    pace_ms: u64,
    /// Stop after this many messages (default: until killed).
    #[arg(long)]
    count: Option<u64>,
}

#[derive(clap::Args, Clone)]
struct ConsumeArgs {
    /// The consumer's log (appended).
    #[arg(long)]
    consumer_log: PathBuf,
    /// Exit (status 0) once no message came for this many seconds (default: until killed).
    #[arg(long)]
    idle: Option<f64>,
}

#[derive(Subcommand)]
enum Role {
    /// Send verifiable messages in small batches, flush(Synced) after each, log what is durable.
    Produce {
        /// The queue URL.
        url: String,
        #[command(flatten)]
        args: ProduceArgs,
    },
    /// Receive, verify, log, ack, log the ack.
    Consume {
        /// The queue URL.
        url: String,
        #[command(flatten)]
        args: ConsumeArgs,
    },
    /// Both roles in one process, on two threads (for a backend whose handles lock the queue
    /// to one process, as duraqueue's facade adapter does).
    Both {
        /// The queue URL.
        url: String,
        #[command(flatten)]
        produce: ProduceArgs,
        #[command(flatten)]
        consume: ConsumeArgs,
    },
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let result = match Cli::parse().role {
        Role::Produce { url, args } => produce(&url, &args),
        Role::Consume { url, args } => consume(&url, &args),
        Role::Both {
            url,
            produce: p,
            consume: c,
        } => {
            let producer_url = url.clone();
            let producer = std::thread::spawn(move || produce(&producer_url, &p));
            match consume(&url, &c) {
                // The producer may be blocked on a full queue: do not wait for it.
                Err(e) => Err(e),
                Ok(()) => producer
                    .join()
                    .unwrap_or_else(|_| Err("the producer thread panicked".into())),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mq-crash: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An append-only log, one `write(2)` per line.
struct Log {
    file: File,
    path: PathBuf,
}

impl Log {
    fn open(path: &Path) -> Result<Log, Failure> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the log {}: {e}", path.display()))?;
        Ok(Log {
            file,
            path: path.to_owned(),
        })
    }

    fn line(&mut self, text: String) -> Result<(), Failure> {
        let mut line = text.into_bytes();
        line.push(b'\n');
        // One call: a kill lands before or after the line, never inside it.
        self.file
            .write_all(&line)
            .map_err(|e| format!("cannot append to {}: {e}", self.path.display()).into())
    }
}

/// A 64-bit mix of two numbers (splitmix64's finaliser), for lengths, bodies and batch sizes.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(b)
        .wrapping_add(0x6a09_e667_f3bc_c909);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const HEADER: usize = 20;
const TRAILER: usize = 8;

fn body_byte(key: u64, i: usize) -> u8 {
    (key >> ((i % 8) * 8)) as u8 ^ (i as u8).wrapping_mul(31)
}

/// The payload of message `seq` of producer run `run`: 28 to 283 bytes.
fn payload(run: u64, seq: u64) -> Vec<u8> {
    let key = mix(run, seq);
    let body = (key % 256) as usize;
    let len = HEADER + body + TRAILER;
    let mut p = Vec::with_capacity(len);
    p.extend_from_slice(&run.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&(len as u32).to_le_bytes());
    p.extend((0..body).map(|i| body_byte(key, i)));
    let sum = fnv1a64(&p);
    p.extend_from_slice(&sum.to_le_bytes());
    p
}

/// (run, seq) of an intact payload, or why it is torn.
fn verify(p: &[u8]) -> Result<(u64, u64), String> {
    if p.len() < HEADER + TRAILER {
        return Err(format!("too short ({} bytes)", p.len()));
    }
    let word = |at: usize| u64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"));
    let (run, seq) = (word(0), word(8));
    let len = u32::from_le_bytes(p[16..20].try_into().expect("4 bytes")) as usize;
    if len != p.len() {
        return Err(format!("length field {len}, payload {} bytes", p.len()));
    }
    let end = p.len() - TRAILER;
    if word(end) != fnv1a64(&p[..end]) {
        return Err("checksum mismatch".to_owned());
    }
    if p != payload(run, seq).as_slice() {
        return Err(format!("not the payload of run {run} seq {seq}"));
    }
    Ok((run, seq))
}

fn produce(url: &str, args: &ProduceArgs) -> Result<(), Failure> {
    let mut log = Log::open(&args.producer_log)?;
    let run = args.run;
    log.line(format!("P {run}"))?;
    let mut tx = mq_facade::open_producer(url)?;
    let mut options = SendOptions::new();
    if let Some(secs) = args.ack_timeout
        && tx.capabilities().ack_timeout
    {
        options = options.ack_timeout(Duration::from_secs_f64(secs));
    }
    let mut seq = 0u64;
    loop {
        let batch = 1 + mix(run ^ 0x5eed, seq) % args.max_batch.max(1);
        for _ in 0..batch {
            tx.send_with(&payload(run, seq), &options, Wait::Forever)
                .map_err(|e| format!("run {run}: send of seq {seq}: {e}"))?;
            seq += 1;
        }
        log.line(format!("S {run} {}", seq - 1))?;
        tx.flush(Durability::Synced)
            .map_err(|e| format!("run {run}: flush after seq {}: {e}", seq - 1))?;
        log.line(format!("D {run} {}", seq - 1))?;
        if args.count.is_some_and(|n| seq >= n) {
            return Ok(());
        }
        if args.pace_ms > 0 {
            std::thread::sleep(Duration::from_millis(args.pace_ms));
        }
    }
}

fn consume(url: &str, args: &ConsumeArgs) -> Result<(), Failure> {
    let mut log = Log::open(&args.consumer_log)?;
    let mut rx = mq_facade::open_consumer(url)?;
    let idle = args.idle.map(Duration::from_secs_f64);
    let slice = Duration::from_millis(200);
    let mut last = Instant::now();
    loop {
        let wait = idle.map_or(slice, |idle| idle.min(slice));
        let Some(message) = rx.recv_with(Wait::timeout(wait))? else {
            if idle.is_some_and(|idle| last.elapsed() >= idle) {
                return Ok(());
            }
            continue;
        };
        last = Instant::now();
        let tag = message.tag();
        match verify(&message.payload) {
            Ok((run, seq)) => {
                let again = u8::from(message.meta.redelivered);
                log.line(format!("G {run} {seq} {again}"))?;
                match rx.ack(tag) {
                    Ok(()) => log.line(format!("A {run} {seq}"))?,
                    // The backend gave the message away (its ack timeout passed): it comes
                    // again, which is at-least-once, not a duplicate.
                    Err(Error::UnknownTag(_)) => log.line(format!("F {run} {seq}"))?,
                    Err(e) => return Err(format!("ack of run {run} seq {seq}: {e}").into()),
                }
            }
            Err(why) => {
                log.line(format!("T {} {why}", message.payload.len()))?;
                // Settle it so it does not come back forever; it is counted already.
                let _ = rx.ack(tag);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_verify_and_any_damage_is_caught() {
        for (run, seq) in [(0, 0), (1, 2), (7, 123_456), (u64::MAX, 9)] {
            let p = payload(run, seq);
            assert_eq!(verify(&p), Ok((run, seq)));
            assert!(p.len() >= HEADER + TRAILER && p.len() < HEADER + TRAILER + 256);
            for cut in [0, 5, HEADER, p.len() - 1] {
                assert!(verify(&p[..cut]).is_err(), "truncated at {cut}");
            }
            for at in 0..p.len() {
                let mut bad = p.clone();
                bad[at] ^= 0x10;
                assert!(verify(&bad).is_err(), "bit flipped at {at}");
            }
        }
        // Another message's intact payload is not this one's.
        let mut mixed = payload(1, 2);
        mixed[8] = 3;
        assert!(verify(&mixed).is_err());
    }
}
