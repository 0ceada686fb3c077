//! `cargo xtask crash --kills N`: one kill -9 harness, from outside, for every durable backend.
//!
//! For each backend a producer and a consumer run as child processes (`mq-crash`, a binary of
//! mq-facade that speaks only the facade). N times, after a random 5–300 ms, one of them is
//! killed with SIGKILL and started again (a new producer is a new run, numbering from 0).
//! Then the producer is stopped, a fresh consumer drains the queue until it stays empty, and
//! the logs of every child are audited: see [`Audit`].

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[path = "../../../mq-facade/tests/support/rabbitmq.rs"]
mod rabbitmq;

/// Shortest and longest time a child runs before a kill.
const KILL_AFTER_MS: (u64, u64) = (5, 300);
/// Ack timeout given to messages where the backend has one (ddmq): a claim held by a killed
/// consumer comes back after it.
const ACK_TIMEOUT_SECS: f64 = 3.0;

/// One durable backend under test.
pub(crate) struct Backend {
    pub(crate) name: &'static str,
    /// Producer and consumer share one process: the backend's facade handles lock the queue
    /// to one process (duraqueue), so the pair is killed together.
    both: bool,
    /// The backend promises FIFO per producer (checked on first deliveries).
    fifo: bool,
    /// How long the final consumer waits for a message before it calls the queue drained.
    drain_idle_secs: f64,
    /// If messages are missing after the drain: how long the backend may park a message
    /// after a crash, by its documentation, before it delivers it again (0: never).
    late_secs: f64,
    /// What it promises, for the report.
    pub(crate) promise: &'static str,
}

pub(crate) const BACKENDS: &[Backend] = &[
    Backend {
        name: "dmq",
        both: false,
        fifo: true,
        drain_idle_secs: 2.0,
        late_secs: 0.0,
        promise: "`dmq:///BASE?framing=frames&durability=data`: flush(Synced) fdatasyncs the \
                  data files; the consumer commits a delivery once it and every earlier one \
                  are acked, so after a crash every unacked message comes again; FIFO across \
                  file switches",
    },
    Backend {
        name: "ddmq",
        both: false,
        fifo: true,
        drain_idle_secs: ACK_TIMEOUT_SECS + 3.0,
        // ddmq's reap_grace (60 s) and the 100 ms reaping of a waiting consumer.
        late_secs: 65.0,
        promise: "`ddmq:///ROOT/QUEUE?durability=fsync`: every send is fsync'd (file and \
                  directory) before it returns; a claim is a rename, an ack an unlink; a claim \
                  of a killed consumer comes back after the message's ack timeout (3 s here) \
                  marked redelivered; order by (priority, per-process increasing number). A \
                  requeue whose process is killed between taking the claim (`work/.reap.*`) and \
                  publishing the copy is finished by a consumer after `reap_grace` (60 s): such \
                  a message is late, not lost, and the harness drains a second time, for 65 s, \
                  when a message is missing after the first drain",
    },
    Backend {
        name: "duraqueue",
        both: true,
        fifo: true,
        drain_idle_secs: 2.0,
        late_secs: 0.0,
        promise: "`duraqueue:///PATH?size=8MiB`: flush(Synced) msyncs every record sent \
                  before it; an ack is a durable poll of the head; recovery keeps the chain of \
                  whole records from the head; FIFO. The facade's handles lock the file to one \
                  process, so producer and consumer are two threads of one child, killed together",
    },
    Backend {
        name: "amqp",
        both: false,
        fifo: true,
        drain_idle_secs: 2.0,
        late_secs: 0.0,
        promise: "`amqp://…?queue=NAME` on a private RabbitMQ node: persistent messages on a \
                  durable classic queue, flush(Synced) waits for publisher confirms (sent once \
                  the message is fsync'd); a killed consumer's unacked messages are requeued \
                  marked redelivered; FIFO except for requeued (redelivered) messages",
    },
];

/// What the harness does, from the command line.
pub(crate) struct Plan {
    pub(crate) kills: u32,
    pub(crate) seed: u64,
    pub(crate) binary: PathBuf,
}

/// splitmix64: small, seedable, good enough to pick moments and victims.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// One backend's result: the audit plus what the run itself saw.
#[derive(Debug, Default, Clone)]
pub(crate) struct Outcome {
    pub(crate) backend: &'static str,
    pub(crate) kills: u32,
    pub(crate) audit: Audit,
    /// Children that exited on their own (an error), with the last lines of their stderr.
    pub(crate) child_errors: Vec<String>,
    pub(crate) seconds: f64,
}

impl Outcome {
    pub(crate) fn failed(&self) -> bool {
        let a = &self.audit;
        a.lost + a.duplicated + a.torn + a.order_violations > 0 || !self.child_errors.is_empty()
    }
}

/// The children of one backend, their logs and how to start them.
struct Children<'a> {
    plan: &'a Plan,
    backend: &'a Backend,
    url: String,
    dir: PathBuf,
    producer: Option<Child>,
    consumer: Option<Child>,
    next_run: u64,
    errors: Vec<String>,
}

impl Children<'_> {
    fn producer_log(&self) -> PathBuf {
        self.dir.join("producer.log")
    }

    fn consumer_log(&self) -> PathBuf {
        self.dir.join("consumer.log")
    }

    fn stderr_file(&self, role: &str) -> Result<Stdio> {
        let path = self.dir.join(format!("{role}.stderr"));
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Stdio::from(file))
    }

    fn command(&self, role: &str) -> Result<Command> {
        let mut command = Command::new(&self.plan.binary);
        command
            .arg(role)
            .arg(&self.url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.stderr_file(role)?);
        Ok(command)
    }

    fn producer_args(&mut self, command: &mut Command) {
        command
            .arg("--run")
            .arg(self.next_run.to_string())
            .arg("--producer-log")
            .arg(self.producer_log())
            .arg("--ack-timeout")
            .arg(ACK_TIMEOUT_SECS.to_string());
        self.next_run += 1;
    }

    fn start_producer(&mut self) -> Result<()> {
        let role = if self.backend.both { "both" } else { "produce" };
        let mut command = self.command(role)?;
        self.producer_args(&mut command);
        if self.backend.both {
            command.arg("--consumer-log").arg(self.consumer_log());
        }
        self.producer = Some(
            command
                .spawn()
                .with_context(|| format!("cannot start {}", self.plan.binary.display()))?,
        );
        Ok(())
    }

    fn start_consumer(&mut self, idle: Option<f64>) -> Result<Child> {
        let mut command = self.command("consume")?;
        command.arg("--consumer-log").arg(self.consumer_log());
        if let Some(idle) = idle {
            command.arg("--idle").arg(idle.to_string());
        }
        command
            .spawn()
            .with_context(|| format!("cannot start {}", self.plan.binary.display()))
    }

    /// Runs a fresh consumer until the queue stays empty for `idle` seconds.
    fn drain(&mut self, idle: f64) -> Result<()> {
        let mut drain = self.start_consumer(Some(idle))?;
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            if let Some(status) = drain.try_wait()? {
                if !status.success() {
                    let tail = last_lines(&self.dir.join("consume.stderr"), 3);
                    self.errors
                        .push(format!("the drain failed ({status}): {tail}"));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                kill(Some(drain))?;
                self.errors
                    .push("the drain did not finish within 900 s".to_owned());
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts a child that exited by itself, recording why.
    fn check(&mut self) -> Result<()> {
        for producer in [true, false] {
            let slot = if producer {
                &mut self.producer
            } else {
                &mut self.consumer
            };
            let Some(child) = slot.as_mut() else { continue };
            if let Some(status) = child.try_wait()? {
                *slot = None;
                let role = if producer { "producer" } else { "consumer" };
                let file = if producer && self.backend.both {
                    "both"
                } else if producer {
                    "produce"
                } else {
                    "consume"
                };
                let tail = last_lines(&self.dir.join(format!("{file}.stderr")), 3);
                self.errors
                    .push(format!("{role} exited by itself ({status}): {tail}"));
                if producer {
                    self.start_producer()?;
                } else {
                    self.consumer = Some(self.start_consumer(None)?);
                }
            }
        }
        Ok(())
    }
}

fn kill(child: Option<Child>) -> Result<()> {
    if let Some(mut child) = child {
        child.kill().context("cannot SIGKILL a child")?; // SIGKILL on Unix
        child.wait().context("cannot reap a child")?;
    }
    Ok(())
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Runs one backend: N kills, the drain, the audit.
pub(crate) fn run_backend(
    plan: &Plan,
    backend: &Backend,
    broker: Option<&Broker>,
    rng: &mut Rng,
) -> Result<Outcome> {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!(
        "mq-crash-{}-{}-{}",
        std::process::id(),
        backend.name,
        plan.seed
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let url = match backend.name {
        "dmq" => format!(
            "dmq://{}?framing=frames&durability=data",
            dir.join("queue").display()
        ),
        "ddmq" => format!(
            "ddmq://{}?durability=fsync",
            dir.join("root/crash").display()
        ),
        "duraqueue" => format!("duraqueue://{}?size=8MiB", dir.join("queue.ring").display()),
        "amqp" => broker
            .context("the amqp backend needs the broker")?
            .url(&format!("crash-{}-{}", std::process::id(), plan.seed), ""),
        other => bail!("no URL for backend {other}"),
    };
    let mut children = Children {
        plan,
        backend,
        url,
        dir: dir.clone(),
        producer: None,
        consumer: None,
        next_run: 0,
        errors: Vec::new(),
    };
    children.start_producer()?;
    if !backend.both {
        children.consumer = Some(children.start_consumer(None)?);
    }
    let mut progress = Instant::now();
    for k in 0..plan.kills {
        std::thread::sleep(Duration::from_millis(
            rng.between(KILL_AFTER_MS.0, KILL_AFTER_MS.1),
        ));
        children.check()?;
        if backend.both || rng.next().is_multiple_of(2) {
            kill(children.producer.take())?;
            children.start_producer()?;
        } else {
            kill(children.consumer.take())?;
            children.consumer = Some(children.start_consumer(None)?);
        }
        if progress.elapsed() > Duration::from_secs(10) {
            eprintln!("    {}: {} of {} kills", backend.name, k + 1, plan.kills);
            progress = Instant::now();
        }
    }
    children.check()?;
    // Stop the producer (another kill, not counted: the run is over), then drain.
    kill(children.producer.take())?;
    kill(children.consumer.take())?;
    children.drain(backend.drain_idle_secs)?;
    let mut audit = Audit::of(
        &children.producer_log(),
        &children.consumer_log(),
        backend.fifo,
    )?;
    if audit.lost > 0 && backend.late_secs > 0.0 {
        // A message a backend parks for a while after a crash (ddmq: a requeue whose
        // reaper was killed mid-way is finished after its grace) is late, not lost.
        eprintln!(
            "    {}: {} missing after the drain; draining again for {} s",
            backend.name, audit.lost, backend.late_secs
        );
        children.drain(backend.late_secs)?;
        audit = Audit::of(
            &children.producer_log(),
            &children.consumer_log(),
            backend.fifo,
        )?;
    }
    let outcome = Outcome {
        backend: backend.name,
        kills: plan.kills,
        audit,
        child_errors: children.errors,
        seconds: started.elapsed().as_secs_f64(),
    };
    if outcome.failed() {
        eprintln!("    {}: logs kept in {}", backend.name, dir.display());
    } else {
        let _ = fs::remove_dir_all(&dir);
    }
    Ok(outcome)
}

/// The verdict on one backend's logs.
///
/// - `sent`: messages the producers sent (per run, the highest sequence logged as sent or
///   delivered, plus one).
/// - `durable`: messages whose flush(Synced) returned (per run, up to the last `D` line).
/// - `delivered`: distinct messages the consumers received intact.
/// - `lost`: durable but never delivered.
/// - `duplicated`: delivered again after an ack of it had returned.
/// - `redelivered`: delivered again when no ack of it had returned (a kill came between
///   delivery and ack, or the backend refused a late ack): at-least-once, allowed.
/// - `torn`: payloads that failed verification (length, checksum or content).
/// - `order_violations`: first deliveries (neither seen before nor flagged redelivered by the
///   backend) of a run with a lower sequence than an earlier first delivery of that run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Audit {
    pub(crate) sent: u64,
    pub(crate) durable: u64,
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) redelivered: u64,
    pub(crate) torn: u64,
    pub(crate) order_violations: u64,
    /// A few examples of each kind of failure, for the report.
    pub(crate) examples: Vec<String>,
}

impl Audit {
    fn of(producer_log: &Path, consumer_log: &Path, fifo: bool) -> Result<Audit> {
        let producer = read_lines(producer_log)?;
        let consumer = read_lines(consumer_log)?;
        Audit::from_lines(&producer, &consumer, fifo)
    }

    /// Audits log lines; order is checked only if the backend promises FIFO (`fifo`).
    fn from_lines(producer: &[String], consumer: &[String], fifo: bool) -> Result<Audit> {
        let mut audit = Audit::default();
        // Per run: highest sequence sent, highest durable.
        let mut sent: HashMap<u64, u64> = HashMap::new();
        let mut durable: HashMap<u64, u64> = HashMap::new();
        for (i, line) in producer.iter().enumerate() {
            let f: Vec<&str> = line.split(' ').collect();
            let num = |k: usize| -> Result<u64> {
                f.get(k).and_then(|v| v.parse().ok()).with_context(|| {
                    format!("producer log line {}: bad field {k}: {line:?}", i + 1)
                })
            };
            match f[0] {
                "P" => {
                    num(1)?;
                }
                "S" => {
                    let e = sent.entry(num(1)?).or_default();
                    *e = (*e).max(num(2)? + 1);
                }
                "D" => {
                    let e = durable.entry(num(1)?).or_default();
                    *e = (*e).max(num(2)? + 1);
                }
                _ => bail!("producer log line {}: unknown record {line:?}", i + 1),
            }
        }
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        let mut acked: HashSet<(u64, u64)> = HashSet::new();
        let mut first_max: HashMap<u64, u64> = HashMap::new();
        for (i, line) in consumer.iter().enumerate() {
            let f: Vec<&str> = line.splitn(3, ' ').collect();
            let num = |k: usize| -> Result<u64> {
                f.get(k)
                    .and_then(|v| v.split(' ').next())
                    .and_then(|v| v.parse().ok())
                    .with_context(|| {
                        format!("consumer log line {}: bad field {k}: {line:?}", i + 1)
                    })
            };
            match f[0] {
                "G" => {
                    let id = (num(1)?, num(2)?);
                    let flagged = f.get(2).is_some_and(|rest| rest.ends_with(" 1"));
                    let e = sent.entry(id.0).or_default();
                    *e = (*e).max(id.1 + 1);
                    if !seen.insert(id) {
                        if acked.contains(&id) {
                            audit.duplicated += 1;
                            audit.example(format!(
                                "duplicated: run {} seq {} delivered again after its ack returned (consumer log line {})",
                                id.0,
                                id.1,
                                i + 1
                            ));
                        } else {
                            audit.redelivered += 1;
                        }
                    } else if fifo && !flagged {
                        let max = first_max.entry(id.0).or_insert(id.1);
                        if id.1 < *max {
                            audit.order_violations += 1;
                            audit.example(format!(
                                "order: run {} seq {} first delivered after seq {} (consumer log line {})",
                                id.0,
                                id.1,
                                *max,
                                i + 1
                            ));
                        } else {
                            *max = id.1;
                        }
                    }
                }
                "A" => {
                    acked.insert((num(1)?, num(2)?));
                }
                "F" => {
                    num(2)?;
                }
                "T" => {
                    audit.torn += 1;
                    audit.example(format!("torn: {line} (consumer log line {})", i + 1));
                }
                _ => bail!("consumer log line {}: unknown record {line:?}", i + 1),
            }
        }
        audit.sent = sent.values().sum();
        audit.durable = durable.values().sum();
        audit.delivered = seen.len() as u64;
        let mut runs: Vec<_> = durable.iter().collect();
        runs.sort();
        for (run, count) in runs {
            for seq in 0..*count {
                if !seen.contains(&(*run, seq)) {
                    audit.lost += 1;
                    audit.example(format!(
                        "lost: run {run} seq {seq} was acknowledged as durable, never delivered"
                    ));
                }
            }
        }
        Ok(audit)
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 10 {
            self.examples.push(text);
        }
    }
}

/// The whole lines of a log (a last line cut short by a kill mid-write is dropped: it has no
/// newline). A missing log is empty.
fn read_lines(path: &Path) -> Result<Vec<String>> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut lines = Vec::new();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    while reader
        .read_line(&mut line)
        .with_context(|| format!("cannot read {}", path.display()))?
        > 0
    {
        if line.ends_with('\n') {
            lines.push(line.trim_end().to_owned());
        }
        line.clear();
    }
    Ok(lines)
}

pub(crate) use rabbitmq::Broker;

/// Starts the private RabbitMQ node the amqp backend runs against.
pub(crate) fn start_broker() -> Result<Broker> {
    Broker::start().map_err(|e| anyhow::anyhow!("cannot start RabbitMQ: {e}"))
}

/// The table, as Markdown.
pub(crate) fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    out.push_str("| backend | kills | sent | durable-acked | delivered | lost | duplicated | redelivered | torn | order violations | child errors | seconds |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for o in outcomes {
        let a = &o.audit;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            o.backend,
            o.kills,
            a.sent,
            a.durable,
            a.delivered,
            a.lost,
            a.duplicated,
            a.redelivered,
            a.torn,
            a.order_violations,
            o.child_errors.len(),
            o.seconds
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn the_audit_tells_loss_duplicates_redeliveries_torn_and_order_apart() {
        let producer = lines("P 0\nS 0 3\nD 0 3\nP 1\nS 1 1\nD 1 1\nS 1 4");
        // Run 0: 0..=3 durable; 1 delivered, acked, delivered again (duplicate); 2 delivered,
        // killed before its ack, delivered again (redelivery); 3 never delivered (lost).
        // Run 1: 1 before 0 as a first delivery (order), 0 flagged redelivered is exempt.
        let consumer = lines(
            "G 0 0 0\nA 0 0\nG 0 1 0\nA 0 1\nG 0 2 0\nG 0 1 0\nG 0 2 1\nA 0 2\n\
             G 1 1 0\nA 1 1\nG 1 0 0\nA 1 0\nT 12 checksum mismatch\nG 1 4 0",
        );
        let a = Audit::from_lines(&producer, &consumer, true).unwrap();
        assert_eq!(a.sent, 4 + 5);
        assert_eq!(a.durable, 4 + 2);
        assert_eq!(a.delivered, 3 + 3);
        assert_eq!(a.lost, 1, "{a:?}");
        assert_eq!(a.duplicated, 1);
        assert_eq!(a.redelivered, 1);
        assert_eq!(a.torn, 1);
        assert_eq!(a.order_violations, 1);
        assert!(
            a.examples
                .iter()
                .any(|e| e.starts_with("lost: run 0 seq 3"))
        );

        // A redelivery flagged by the backend does not count against order.
        let consumer = lines("G 2 5 0\nG 2 3 1\nG 2 6 0");
        let a = Audit::from_lines(&[], &consumer, true).unwrap();
        assert_eq!(a.order_violations, 0);
        // Nor does anything on a backend without FIFO.
        let consumer = lines("G 2 5 0\nG 2 3 0");
        assert_eq!(
            Audit::from_lines(&[], &consumer, true)
                .unwrap()
                .order_violations,
            1
        );
        assert_eq!(
            Audit::from_lines(&[], &consumer, false)
                .unwrap()
                .order_violations,
            0
        );
    }

    #[test]
    fn a_damaged_log_is_an_error_naming_the_line() {
        let e = Audit::from_lines(&lines("S 0 x"), &[], true).unwrap_err();
        assert!(format!("{e:#}").contains("producer log line 1"), "{e:#}");
        let e = Audit::from_lines(&[], &lines("G 0 0 0\nZ"), true).unwrap_err();
        assert!(format!("{e:#}").contains("consumer log line 2"), "{e:#}");
    }
}
