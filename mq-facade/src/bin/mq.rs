//! `mq`: send, receive, copy, inspect and benchmark any queue the facade can open, by URL.

#![forbid(unsafe_code)]

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use mq_facade::{Capabilities, Consumer, Delivery, Message, Producer, SendOptions, Wait};

#[derive(Parser)]
#[command(
    name = "mq",
    version,
    about = "Send, receive, copy, inspect and benchmark any queue by URL",
    long_about = "Send, receive, copy, inspect and benchmark any queue by URL.\n\n\
        The URL's scheme picks the backend; every backend compiled into this build works \
        the same way (see `mq info URL` for what one supports).",
    after_help = "URLS:\n  \
        amqp://USER:PASS@HOST:PORT/VHOST?queue=NAME   RabbitMQ (mode=classic|quorum|stream, max_priority=N, prefetch=N)\n  \
        duraqueue:///PATH?size=8MiB                   a durable mmap'd ring file\n  \
        mem://NAME                                    in-process only (useful with `mq bench`)\n  \
        dmq://, ddmq://, dsmq://, shmq://             the other backends, when this build has their adapters\n\n\
        EXIT STATUS: 0 done, 1 error, 2 bad arguments, 3 `recv` timed out before it had N messages.\n\n\
        EXAMPLES:\n  \
        mq send 'amqp://guest:guest@127.0.0.1:5672/%2f?queue=jobs' 'hello'\n  \
        seq 1 100 | mq send 'duraqueue:///var/q/jobs?size=8MiB' -\n  \
        mq recv 'amqp://127.0.0.1/%2f?queue=jobs' -n 10 --timeout 5s --json\n  \
        mq copy 'duraqueue:///var/q/jobs?size=8MiB' 'amqp://127.0.0.1/%2f?queue=jobs'\n  \
        mq bench 'amqp://127.0.0.1/%2f?queue=bench' -n 20000 --producers 16"
)]
struct Cli {
    /// Print JSON (one object per message for `recv`) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send messages: each MSG argument, or with `-` (or none) each line of standard input.
    ///
    /// Returns once everything sent is as durable as the backend gets (flush at its
    /// strongest level: broker-confirmed for amqp, fsync'd for duraqueue).
    Send {
        /// The queue URL.
        url: String,
        /// Messages; `-` or none: read standard input.
        messages: Vec<String>,
        /// With standard input: send all of it as one message instead of one per line.
        #[arg(long)]
        whole: bool,
        /// Priority of every message (0 = lowest; the queue must have priorities).
        #[arg(long)]
        priority: Option<u8>,
        /// Time to live of every message, e.g. 30s, 500ms, 5m.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Receive messages and print them, one per line (raw bytes; --hex or --json for binary).
    ///
    /// Each message is acknowledged once it has been written out, so a message is never
    /// lost between the queue and the output (--no-ack gives it back instead: a peek).
    Recv {
        /// The queue URL.
        url: String,
        /// How many messages to receive.
        #[arg(short = 'n', long, default_value_t = 1)]
        count: u64,
        /// Receive until the queue stays empty for --timeout (default 1s) instead of -n.
        #[arg(long, conflicts_with = "follow")]
        all: bool,
        /// Keep receiving until interrupted (or, with --timeout, until the queue stays quiet
        /// that long).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Give up when no message came for this long (e.g. 5s; default: wait forever).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// Acknowledge each message after printing it (the default).
        #[arg(long, conflicts_with = "no_ack")]
        ack: bool,
        /// Give each message back (nack with requeue) after printing it.
        #[arg(long)]
        no_ack: bool,
        /// Print each payload as one line of lowercase hex.
        #[arg(long)]
        hex: bool,
    },
    /// Move every message from one queue to another (the migration path between backends).
    ///
    /// Messages are sent in batches; a batch's source messages are acknowledged only after
    /// the destination confirmed the whole batch at its strongest durability, so a crash
    /// or error loses nothing (it may repeat the last batch). Stops when the source stays
    /// empty for --idle. From a backend without acknowledgements (see `mq info`) a receive
    /// consumes, so a failure can lose the batch in flight.
    Copy {
        /// The source queue URL.
        from: String,
        /// The destination queue URL.
        to: String,
        /// Stop after this many messages.
        #[arg(short = 'n', long)]
        count: Option<u64>,
        /// Messages per confirmed batch.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Stop when the source has been empty this long.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        idle: Duration,
    },
    /// Show what the queue supports (its capabilities). Opens only a producer, so it takes
    /// no message (on amqp it declares the queue if it does not exist).
    Info {
        /// The queue URL.
        url: String,
    },
    /// Measure confirmed sends per second (P producers, a flush every --batch messages)
    /// and then receive throughput, with a progress bar on a terminal.
    Bench {
        /// The queue URL (use an empty queue: the bench drains it afterwards).
        url: String,
        /// Messages in total.
        #[arg(short = 'n', long, default_value_t = 10_000)]
        count: u64,
        /// Concurrent producers, each with its own handle (connection).
        #[arg(long, default_value_t = 1)]
        producers: u64,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Flush (wait for confirms / fsync) every this many sends per producer.
        #[arg(long, default_value_t = 100)]
        batch: u64,
        /// Skip the receive phase (leaves the messages in the queue).
        #[arg(long)]
        no_recv: bool,
    },
}

/// `500ms`, `2s`, `1.5s`, `5m`, `1h`, or a plain number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 2s, 5m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

type Failure = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mq: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let json = cli.json;
    match cli.command {
        Command::Send {
            url,
            messages,
            whole,
            priority,
            ttl,
        } => send(&url, messages, whole, priority, ttl, json),
        Command::Recv {
            url,
            count,
            all,
            follow,
            timeout,
            ack: _,
            no_ack,
            hex,
        } => {
            let limit = if follow || all { None } else { Some(count) };
            let timeout = match (all, timeout) {
                (true, None) => Some(Duration::from_secs(1)),
                (_, t) => t,
            };
            recv(&url, limit, timeout, no_ack, hex, json)
        }
        Command::Copy {
            from,
            to,
            count,
            batch,
            idle,
        } => copy(&from, &to, count, batch.max(1), idle, json),
        Command::Info { url } => info(&url, json),
        Command::Bench {
            url,
            count,
            producers,
            size,
            batch,
            no_recv,
        } => bench(
            &url,
            count,
            producers.max(1),
            size,
            batch.max(1),
            no_recv,
            json,
        ),
    }
}

fn send(
    url: &str,
    messages: Vec<String>,
    whole: bool,
    priority: Option<u8>,
    ttl: Option<Duration>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let mut tx = mq_facade::open_producer(url)?;
    let mut options = SendOptions::new();
    options.priority = priority;
    options.ttl = ttl;
    let mut sent = 0u64;
    let mut one = |payload: &[u8]| -> Result<(), Failure> {
        tx.send_with(payload, &options, Wait::Forever)?;
        sent += 1;
        Ok(())
    };
    if messages.is_empty() || messages == ["-"] {
        let stdin = std::io::stdin();
        if whole {
            let mut all = Vec::new();
            stdin.lock().read_to_end(&mut all)?;
            one(&all)?;
        } else {
            for line in stdin.lock().split(b'\n') {
                let mut line = line?;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                one(&line)?;
            }
        }
    } else {
        for m in &messages {
            one(m.as_bytes())?;
        }
    }
    let level = tx.capabilities().durability;
    tx.flush(level)?;
    let mut out = std::io::stdout().lock();
    if json {
        let report = serde_json::json!({ "sent": sent, "durability": level.to_string() });
        writeln!(out, "{report}")?;
    } else {
        writeln!(out, "sent {sent} message(s) ({level})")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn recv(
    url: &str,
    limit: Option<u64>,
    timeout: Option<Duration>,
    no_ack: bool,
    hex: bool,
    json: bool,
) -> Result<ExitCode, Failure> {
    let mut rx = mq_facade::open_consumer(url)?;
    let mut out = std::io::stdout().lock();
    let mut received = 0u64;
    while limit.is_none_or(|n| received < n) {
        let wait = timeout.map_or(Wait::Forever, Wait::timeout);
        let Some(message) = rx.recv_with(wait)? else {
            if limit.is_none() {
                break; // --all or --follow: the queue stayed quiet for --timeout
            }
            let wanted = limit.map_or("more".to_owned(), |n| n.to_string());
            eprintln!(
                "mq: received {received} of {wanted} message(s): none came within {:?}",
                timeout.unwrap_or_default()
            );
            return Ok(ExitCode::from(3));
        };
        print_message(&mut out, &message, hex, json)?;
        // Written out before it is settled: an output error leaves it in the queue.
        out.flush()?;
        if no_ack {
            if rx.capabilities().ack {
                rx.nack(message.tag(), true)?;
            }
        } else {
            rx.ack(message.tag())?;
        }
        received += 1;
    }
    Ok(ExitCode::SUCCESS)
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_message(out: &mut impl Write, m: &Message, hex: bool, json: bool) -> std::io::Result<()> {
    if json {
        let mut object = serde_json::json!({
            "redelivered": m.meta.redelivered,
            "priority": m.meta.priority,
            "seq": m.meta.seq,
        });
        match std::str::from_utf8(&m.payload) {
            Ok(text) if !hex => object["payload"] = text.into(),
            _ => object["payload_hex"] = hex_string(&m.payload).into(),
        }
        writeln!(out, "{object}")
    } else if hex {
        writeln!(out, "{}", hex_string(&m.payload))
    } else {
        out.write_all(&m.payload)?;
        out.write_all(b"\n")
    }
}

fn copy(
    from: &str,
    to: &str,
    limit: Option<u64>,
    batch: usize,
    idle: Duration,
    json: bool,
) -> Result<ExitCode, Failure> {
    let mut rx = mq_facade::open_consumer(from)?;
    let mut tx = mq_facade::open_producer(to)?;
    let source_acks = rx.capabilities().ack;
    let dest = tx.capabilities();
    let level = dest.durability;
    let progress = progress_bar(limit, "copied");
    let mut copied = 0u64;
    let mut pending: Vec<mq_facade::Tag> = Vec::with_capacity(batch);
    let mut done = false;
    while !done {
        // One batch: receive, send; then flush the destination, then ack the source.
        while pending.len() < batch && limit.is_none_or(|n| copied + (pending.len() as u64) < n) {
            let Some(m) = rx.recv_with(Wait::timeout(idle))? else {
                done = true;
                break;
            };
            let mut options = SendOptions::new();
            options.priority = m
                .meta
                .priority
                .filter(|p| dest.max_priority.is_some_and(|max| *p <= max));
            if let Err(e) = tx.send_with(&m.payload, &options, Wait::Forever) {
                give_back(rx.as_mut(), &pending, m.tag(), source_acks);
                return Err(format!("after {copied} message(s): send: {e}").into());
            }
            pending.push(m.tag());
        }
        if limit.is_some_and(|n| copied + pending.len() as u64 >= n) {
            done = true;
        }
        if pending.is_empty() {
            break;
        }
        if let Err(e) = tx.flush(level) {
            let last = pending.pop().expect("not empty");
            give_back(rx.as_mut(), &pending, last, source_acks);
            return Err(format!(
                "after {copied} message(s): the destination did not confirm the last batch ({e}); its {} source message(s) were given back",
                pending.len() + 1
            )
            .into());
        }
        for tag in pending.drain(..) {
            rx.ack(tag)?;
            copied += 1;
        }
        progress.set_position(copied);
    }
    progress.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({ "copied": copied, "durability": level.to_string() })
        )?;
    } else {
        writeln!(
            out,
            "copied {copied} message(s) ({level} at the destination)"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Gives the source messages of a failed batch back, so that none is lost.
fn give_back(rx: &mut dyn Consumer, pending: &[mq_facade::Tag], last: mq_facade::Tag, acks: bool) {
    if !acks {
        return;
    }
    for tag in pending.iter().chain([&last]) {
        let _ = rx.nack(*tag, true);
    }
}

fn capabilities_json(caps: &Capabilities) -> serde_json::Value {
    serde_json::json!({
        "backend": caps.backend,
        "delivery": format!("{:?}", caps.delivery).to_lowercase(),
        "ack": caps.ack,
        "max_priority": caps.max_priority,
        "ttl": caps.ttl,
        "ack_timeout": caps.ack_timeout,
        "drop_oldest": caps.drop_oldest,
        "capacity": caps.capacity,
        "max_message_size": caps.max_message_size,
        "durability": caps.durability.to_string(),
        "survives_reopen": caps.survives_reopen,
        "cross_process": caps.cross_process,
    })
}

fn info(url: &str, json: bool) -> Result<ExitCode, Failure> {
    let tx = mq_facade::open_producer(url)?;
    let caps = tx.capabilities();
    let value = capabilities_json(&caps);
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        let show = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "-".to_owned(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let serde_json::Value::Object(map) = &value {
            for key in [
                "backend",
                "delivery",
                "ack",
                "max_priority",
                "ttl",
                "ack_timeout",
                "drop_oldest",
                "capacity",
                "max_message_size",
                "durability",
                "survives_reopen",
                "cross_process",
            ] {
                writeln!(out, "{key:<17} {}", show(&map[key]))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = match len {
        Some(_) => format!("{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}})"),
        None => format!("{{spinner}} {{pos}} {what} ({{per_sec}})"),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// The value at quantile `q` of sorted `values`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn bench(
    url: &str,
    count: u64,
    producers: u64,
    size: usize,
    batch: u64,
    no_recv: bool,
    json: bool,
) -> Result<ExitCode, Failure> {
    let payload = Arc::new(vec![b'x'; size]);
    // Open every handle before the clock starts: connections are not throughput.
    let handles: Vec<Box<dyn Producer>> = (0..producers)
        .map(|_| mq_facade::open_producer(url))
        .collect::<Result<_, _>>()?;
    let caps = handles[0].capabilities();
    let level = caps.durability;
    // On a broadcast queue (a stream) a consumer sees only what is sent after it subscribed.
    let mut early_rx = match caps.delivery {
        Delivery::Broadcast if !no_recv => Some(mq_facade::open_consumer(url)?),
        _ => None,
    };
    let progress = progress_bar(Some(count), "sent");
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = handles
        .into_iter()
        .enumerate()
        .map(|(p, mut tx)| {
            let share = count / producers + u64::from((p as u64) < count % producers);
            let (payload, sent, progress) =
                (Arc::clone(&payload), Arc::clone(&sent), progress.clone());
            std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                let mut flushes = Vec::new();
                let mut unflushed = 0;
                for i in 0..share {
                    tx.send(&payload)
                        .map_err(|e| format!("producer {p}, send {i}: {e}"))?;
                    unflushed += 1;
                    if unflushed == batch || i + 1 == share {
                        let t = Instant::now();
                        tx.flush(level)
                            .map_err(|e| format!("producer {p}, flush: {e}"))?;
                        flushes.push(t.elapsed());
                        progress.inc(unflushed);
                        sent.fetch_add(unflushed, Ordering::Relaxed);
                        unflushed = 0;
                    }
                }
                Ok(flushes)
            })
        })
        .collect();
    let mut flushes = Vec::new();
    for t in threads {
        flushes.extend(t.join().map_err(|_| "a producer thread panicked")??);
    }
    let send_time = started.elapsed();
    progress.finish_and_clear();
    flushes.sort();
    let confirmed = sent.load(Ordering::Relaxed);
    let send_rate = confirmed as f64 / send_time.as_secs_f64();

    let mut recv_rate = None;
    if !no_recv {
        let mut rx = match early_rx.take() {
            Some(rx) => rx,
            None => mq_facade::open_consumer(url)?,
        };
        let progress = progress_bar(Some(confirmed), "received");
        let started = Instant::now();
        let mut got = 0u64;
        while got < confirmed {
            let Some(m) = rx.recv_with(Wait::timeout(Duration::from_secs(10)))? else {
                return Err(
                    format!("received {got} of {confirmed} messages: none for 10 s").into(),
                );
            };
            rx.ack(m.tag())?;
            got += 1;
            if got.is_multiple_of(256) {
                progress.set_position(got);
            }
        }
        progress.finish_and_clear();
        recv_rate = Some(got as f64 / started.elapsed().as_secs_f64());
    }
    let mut out = std::io::stdout().lock();
    let (p50, p99) = (quantile(&flushes, 0.5), quantile(&flushes, 0.99));
    if json {
        let report = serde_json::json!({
            "url": url,
            "messages": confirmed,
            "producers": producers,
            "size": size,
            "batch": batch,
            "durability": level.to_string(),
            "confirmed_sends_per_sec": send_rate.round(),
            "flush_p50_ms": p50.as_secs_f64() * 1e3,
            "flush_p99_ms": p99.as_secs_f64() * 1e3,
            "recv_per_sec": recv_rate.map(f64::round),
        });
        writeln!(out, "{report}")?;
    } else {
        writeln!(
            out,
            "sent     {confirmed} x {size} B with {producers} producer(s), flush({level}) every {batch}: {send_rate:.0} msg/s in {send_time:.2?}"
        )?;
        writeln!(
            out,
            "flush    p50 {p50:.2?}  p99 {p99:.2?}  ({} flushes)",
            flushes.len()
        )?;
        if let Some(rate) = recv_rate {
            writeln!(out, "received {confirmed} with ack: {rate:.0} msg/s")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_common_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(
            parse_duration("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn quantiles_pick_from_sorted_values() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
