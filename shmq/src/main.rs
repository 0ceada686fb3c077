//! `shmq`: create, inspect, remove and exercise System V shared-memory queues.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use shmq::{Format, Key, Options, Queue};

/// Create, inspect, remove and exercise System V shared-memory queues (format N, and format G
/// shared with the Go library shqueue-go). KEY is a SysV key: 0x5151 or decimal.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// Format N: sequence-numbered slots, futex parking, dead-peer recovery.
    Native,
    /// Format G: byte-compatible with the Go library.
    Go,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Native => Format::Native,
            FormatArg::Go => Format::GoCompat,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a queue (fails if a segment exists at the key). Prints the key.
    Create {
        /// The key; omit it with --unique.
        key: Option<Key>,
        /// Pick a free random key.
        #[arg(long, conflicts_with = "key")]
        unique: bool,
        /// Message size in 64-bit words.
        #[arg(long)]
        words: u32,
        /// Capacity in messages.
        #[arg(long)]
        slots: u32,
        /// Layout.
        #[arg(long, value_enum, default_value = "native")]
        format: FormatArg,
        /// Permission bits, octal.
        #[arg(long, default_value = "600")]
        mode: String,
    },
    /// Show a queue: format, sizes, length, dropped, abandoned, attached processes.
    Info {
        /// The key.
        key: Key,
    },
    /// List the queues (of either format) on this host.
    Ls,
    /// Remove segments (IPC_RMID): they disappear when the last process detaches.
    Rm {
        /// The keys.
        #[arg(required = true)]
        keys: Vec<Key>,
    },
    /// Remove orphaned queues: nobody attached and the creator is dead. Prints their keys.
    Gc,
    /// Enqueue one message: TEXT padded with zero bytes to the message size.
    Send {
        /// The key.
        key: Key,
        /// The message text (at most the message size).
        text: String,
        /// Overwrite the oldest message when full (cyclic) instead of waiting.
        #[arg(long)]
        shift: bool,
        /// Fail at once when full instead of waiting.
        #[arg(long, conflicts_with = "shift")]
        r#try: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, value_parser = secs)]
        timeout: Option<Duration>,
    },
    /// Dequeue messages and print them (trailing zero bytes removed), one per line.
    Recv {
        /// The key.
        key: Key,
        /// How many messages.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Exit at once (status 3) when the queue is empty instead of waiting.
        #[arg(long)]
        r#try: bool,
        /// Give up waiting after this many seconds (status 3).
        #[arg(long, value_parser = secs)]
        timeout: Option<Duration>,
        /// Print hexadecimal bytes instead of text.
        #[arg(long)]
        hex: bool,
    },
    /// Measure between two processes: ping-pong latency (one-way p50/p99/p99.9) and
    /// streaming throughput, against a two-thread cache-line hand-off measured in the same run.
    Bench {
        /// Message size in 64-bit words (8 = 64 bytes).
        #[arg(long, default_value_t = 8)]
        words: u32,
        /// Ring capacity.
        #[arg(long, default_value_t = 256)]
        slots: u32,
        /// Ping-pong round trips.
        #[arg(long, default_value_t = 100_000)]
        rounds: usize,
        /// Streamed messages.
        #[arg(long, default_value_t = 5_000_000)]
        messages: u64,
        /// Park on the futex at once when waiting, instead of spinning.
        #[arg(long)]
        park: bool,
        /// Layout.
        #[arg(long, value_enum, default_value = "native")]
        format: FormatArg,
    },
    /// (internal) the other process of `bench`.
    #[command(hide = true)]
    BenchPeer {
        what: String,
        a: Key,
        b: Key,
        n: u64,
        #[arg(long)]
        park: bool,
    },
}

/// A number of seconds (decimals allowed), 0 or more.
fn secs(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("`{text}` is not a number of seconds (0 or more)"))
}

/// `None` (no deadline) also for a timeout beyond what the clock can represent.
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

fn wait_options(park: bool) -> Options {
    Options {
        spin_for: if park {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        },
        ..Options::default()
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Cmd::Create {
            key,
            unique,
            words,
            slots,
            format,
            mode,
        } => {
            let o = Options {
                format: format.into(),
                mode: u32::from_str_radix(&mode, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| {
                        format!("--mode {mode}: not octal permission bits (000 to 777)")
                    })?,
                ..Options::default()
            };
            let q = match (key, unique) {
                (Some(key), false) => match Queue::create_with(key, words, slots, &o) {
                    Err(shmq::Error::AlreadyExists(key)) => {
                        return Err(already_exists(key, words, slots, o.format).into());
                    }
                    other => other?,
                },
                (None, true) => Queue::create_unique(words, slots, &o)?,
                _ => return Err("give a KEY or --unique".into()),
            };
            println!("{}", q.key());
        }
        Cmd::Info { key } => {
            let q = Queue::open(key)?;
            println!("key          {}", q.key());
            println!("format       {}", q.format());
            println!(
                "message      {} bytes ({} words)",
                q.msg_bytes(),
                q.msg_bytes() / 8
            );
            println!("capacity     {}", q.capacity());
            println!("length       {}", q.len());
            let or_na = |v: Option<u64>| v.map_or("n/a (format G)".to_owned(), |v| v.to_string());
            println!("dropped      {}", or_na(q.dropped()));
            println!("abandoned    {}", or_na(q.abandoned()));
            println!(
                "attached     {} (besides this command)",
                q.attached()?.saturating_sub(1)
            );
            println!("creator pid  {}", q.creator_pid()?);
        }
        Cmd::Ls => {
            println!(
                "{:<12} {:>8} {:<7} {:>10} {:>9} {:>8} creator",
                "key", "id", "format", "bytes", "attached", "pid"
            );
            for s in shmq::list()? {
                println!(
                    "{:<12} {:>8} {:<7} {:>10} {:>9} {:>8} {}",
                    s.key.to_string(),
                    s.id,
                    s.format.to_string(),
                    s.size,
                    s.attached,
                    s.creator_pid,
                    if s.creator_alive { "alive" } else { "dead" }
                );
            }
        }
        Cmd::Rm { keys } => {
            for key in keys {
                shmq::remove(key)?;
            }
        }
        Cmd::Gc => {
            for key in shmq::gc()? {
                println!("{key}");
            }
        }
        Cmd::Send {
            key,
            text,
            shift,
            r#try,
            timeout,
        } => {
            let q = Queue::open(key)?;
            if text.len() > q.msg_bytes() {
                return Err(format!(
                    "message of {} bytes does not fit the queue's {}-byte messages",
                    text.len(),
                    q.msg_bytes()
                )
                .into());
            }
            let mut msg = vec![0u8; q.msg_bytes()];
            msg[..text.len()].copy_from_slice(text.as_bytes());
            if shift {
                if q.enqueue_shift(&msg)? == shmq::Shift::ReplacedOldest {
                    eprintln!("the queue was full: the oldest message was discarded");
                }
            } else if r#try {
                if !q.enqueue_try(&msg)? {
                    eprintln!("the queue at key {key} is full");
                    return Ok(ExitCode::from(3));
                }
            } else {
                q.enqueue_block(&msg, deadline(timeout))?;
            }
        }
        Cmd::Recv {
            key,
            count,
            r#try,
            timeout,
            hex,
        } => {
            let q = Queue::open(key)?;
            let mut buf = vec![0u8; q.msg_bytes()];
            let until = deadline(timeout);
            for _ in 0..count {
                let got = if r#try {
                    q.dequeue_try(&mut buf)?
                } else {
                    match q.dequeue_block(&mut buf, until) {
                        Ok(()) => true,
                        Err(shmq::Error::Timeout(_)) => false,
                        Err(e) => return Err(e.into()),
                    }
                };
                if !got {
                    eprintln!("the queue at key {key} is empty");
                    return Ok(ExitCode::from(3));
                }
                let end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                if hex {
                    let h: Vec<String> = buf[..end].iter().map(|b| format!("{b:02x}")).collect();
                    println!("{}", h.join(""));
                } else {
                    println!("{}", String::from_utf8_lossy(&buf[..end]));
                }
            }
        }
        Cmd::Bench {
            words,
            slots,
            rounds,
            messages,
            park,
            format,
        } => bench(words, slots, rounds, messages, park, format.into())?,
        Cmd::BenchPeer {
            what,
            a,
            b,
            n,
            park,
        } => {
            let o = wait_options(park);
            let (qa, qb) = (Queue::open_with(a, &o)?, Queue::open_with(b, &o)?);
            match what.as_str() {
                "pong" => shmq::bench::pong(&qa, &qb, n as usize)?,
                "stream" => shmq::bench::stream_send(&qa, n)?,
                other => return Err(format!("unknown bench peer role {other}").into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Why `create` found its key taken: what the queue there differs in, field by field, or
/// what else is there.
fn already_exists(key: Key, words: u32, slots: u32, format: Format) -> String {
    let q = match Queue::open(key) {
        Ok(q) => q,
        Err(e) => return format!("a segment that is not a usable queue is at key {key}: {e}"),
    };
    let mut differ = Vec::new();
    if q.msg_bytes() != words as usize * 8 {
        differ.push(format!(
            "--words {}, not {words} (messages of {} bytes)",
            q.msg_bytes() / 8,
            q.msg_bytes()
        ));
    }
    if q.capacity() != slots {
        differ.push(format!("--slots {}, not {slots}", q.capacity()));
    }
    if q.format() != format {
        differ.push(format!("--format {}, not {format}", q.format()));
    }
    if differ.is_empty() {
        format!(
            "a queue already exists at key {key} (with the same geometry; `shmq rm {key}` removes it)"
        )
    } else {
        format!(
            "a different queue already exists at key {key}: it has {}",
            differ.join(", ")
        )
    }
}

fn bench(
    words: u32,
    slots: u32,
    rounds: usize,
    messages: u64,
    park: bool,
    format: Format,
) -> Result<(), Box<dyn std::error::Error>> {
    let o = Options {
        format,
        ..wait_options(park)
    };
    /// Deletes the queue when the bench ends, also on an error.
    struct Deleting(Queue);
    impl Drop for Deleting {
        fn drop(&mut self) {
            let _ = self.0.delete();
        }
    }
    let ping = Deleting(Queue::create_unique(words, slots, &o)?);
    let pong = Deleting(Queue::create_unique(words, slots, &o)?);
    let (ping, pong) = (&ping.0, &pong.0);
    let warmup = rounds / 10;
    let exe = std::env::current_exe()?;
    let peer = |what: &str, a: Key, b: Key, n: u64| -> std::io::Result<std::process::Child> {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "bench-peer",
            what,
            &a.to_string(),
            &b.to_string(),
            &n.to_string(),
        ]);
        if park {
            cmd.arg("--park");
        }
        cmd.stdin(Stdio::null()).spawn()
    };
    let floor =
        shmq::bench::Latency::from_round_trips(shmq::bench::cache_line_floor(rounds, warmup));
    /// Kills and reaps the peer if the bench stops early (an error): it would otherwise wait
    /// on the deleted queues for ever.
    struct Peer(std::process::Child);
    impl Peer {
        fn finish(mut self) -> std::io::Result<()> {
            let status = self.0.wait()?;
            std::mem::forget(self);
            if status.success() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "the bench peer failed: {status}"
                )))
            }
        }
    }
    impl Drop for Peer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Peer(peer(
        "pong",
        ping.key(),
        pong.key(),
        (rounds + warmup) as u64,
    )?);
    let lat =
        shmq::bench::Latency::from_round_trips(shmq::bench::ping(ping, pong, rounds, warmup)?);
    child.finish()?;
    let child = Peer(peer("stream", ping.key(), pong.key(), messages)?);
    let took = shmq::bench::stream_recv(ping, messages)?;
    child.finish()?;
    let rate = (messages - 1) as f64 / took.as_secs_f64();
    println!(
        "{} bytes, {} slots, format {format}, {} mode",
        words * 8,
        slots,
        if park { "park" } else { "spin" }
    );
    println!(
        "one-way latency   p50 {:>9.0?}  p99 {:>9.0?}  p99.9 {:>9.0?}",
        lat.p50, lat.p99, lat.p999
    );
    println!(
        "cache-line floor  p50 {:>9.0?}  p99 {:>9.0?}  p99.9 {:>9.0?}",
        floor.p50, floor.p99, floor.p999
    );
    println!(
        "ratio to floor    p50 {:>9.2}x",
        lat.p50.as_secs_f64() / floor.p50.as_secs_f64().max(1e-9)
    );
    println!("streaming         {:.2} M msgs/s", rate / 1e6);
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shmq: {e}");
            ExitCode::FAILURE
        }
    }
}
