//! Proves that the conformance suite catches broken backends.
//!
//! Each broken backend wraps the reference `mem` queue with one flaw (it reorders, loses,
//! duplicates, ignores an option, ...) and names the cases that must fail because of it;
//! the trial `broken::FLAW::CASE` passes only if that case reports a failure. The same
//! cases pass on the unbroken backend (the `conformance` runner shows it), so each failure
//! is the flaw's doing.
//!
//! Legitimate backends that differ from the reference must pass: `small_mem` (room for four
//! messages) and `filelog`, a small durable, cross-process test backend (an append-only file with a
//! persisted read position) that runs the whole suite, so that the crash case
//! (`survives_producer_kill`, which kills a child process) is exercised here; its
//! `lazy-filelog` twin claims durability but keeps sends in memory, and must fail it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use mq_facade::conformance::{self, Harness, MemHarness, Outcome, TestQueue, run_case};
use mq_facade::mem::MemConfig;
use mq_facade::{
    Capabilities, Consumer, Durability, Error, Meta, Producer, Receipt, Result, SendOptions, Tag,
    Wait,
};

/// One way a backend can be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// The consumer swaps adjacent messages.
    Reorders,
    /// The producer silently drops every fifth message.
    Loses,
    /// The producer enqueues every third message twice.
    Duplicates,
    /// Claims no priorities and no TTL, yet accepts both without a word.
    IgnoresUnsupported,
    /// `ack` requeues instead.
    AckRequeues,
    /// `nack(tag, true)` discards instead.
    RequeueDiscards,
    /// `recv_timeout` does not wait.
    IgnoresDeadline,
    /// Claims priorities but drops them.
    DropsPriority,
    /// Claims TTL but drops it.
    DropsTtl,
    /// Truncates payloads at the first NUL byte.
    TruncatesAtNul,
    /// Claims a 1,000-byte limit but does not enforce it.
    NoSizeCheck,
    /// A dropped consumer acknowledges what it held instead of giving it back.
    DropAcks,
}

/// Each flaw with the cases that must catch it.
const FLAWS: &[(Flaw, &[&str])] = &[
    (
        Flaw::Reorders,
        &["fifo_order", "send_batch_in_order", "binary_payloads"],
    ),
    (
        Flaw::Loses,
        &["fifo_order", "producers_consumers", "send_batch_in_order"],
    ),
    (Flaw::Duplicates, &["fifo_order", "producers_consumers"]),
    (Flaw::IgnoresUnsupported, &["unsupported_is_an_error"]),
    (Flaw::AckRequeues, &["ack_prevents_redelivery"]),
    (Flaw::RequeueDiscards, &["nack_requeue_redelivers"]),
    (Flaw::IgnoresDeadline, &["recv_timeout_deadline"]),
    (Flaw::DropsPriority, &["priority_order"]),
    (Flaw::DropsTtl, &["ttl_expiry"]),
    (Flaw::TruncatesAtNul, &["binary_payloads"]),
    (Flaw::NoSizeCheck, &["oversized_rejected"]),
    (Flaw::DropAcks, &["dropped_consumer_gives_back"]),
];

fn main() -> ExitCode {
    let file_logs: Vec<Arc<dyn Harness>> = vec![
        Arc::new(FileLogHarness { lazy: false }),
        Arc::new(FileLogHarness { lazy: true }),
    ];
    if let Some(code) = conformance::run_if_child(&file_logs) {
        return code;
    }
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for &(flaw, must_fail) in FLAWS {
        let harness = Arc::new(Broken::new(flaw));
        for &name in must_fail {
            let harness = Arc::clone(&harness);
            trials.push(Trial::test(
                format!("broken::{flaw:?}::{name}"),
                move || expect_failure(harness.as_ref(), name),
            ));
        }
    }
    // Correct backends unlike mem must pass every case that applies to them: a durable
    // cross-process one, and mem with room for only four messages.
    let small_mem: Arc<dyn Harness> = Arc::new(MemHarness::with_config(
        MemConfig::default()
            .capacity(4)
            .max_message_size(1024)
            .max_priority(3),
    ));
    for (label, harness) in [
        ("filelog", Arc::clone(&file_logs[0])),
        ("small_mem", small_mem),
    ] {
        for case in conformance::cases() {
            let harness = Arc::clone(&harness);
            let not_applicable = case.applies(&harness.capabilities()).is_err();
            let trial = Trial::test(format!("{label}::{}", case.name), move || {
                let row = run_case(case, harness.as_ref());
                match row.outcome {
                    Outcome::Fail => Err(row.detail.into()),
                    Outcome::Pass | Outcome::NotApplicable => Ok(()),
                }
            });
            trials.push(trial.with_ignored_flag(not_applicable));
        }
    }
    let lazy = Arc::clone(&file_logs[1]);
    trials.push(Trial::test(
        "broken::lazy_filelog::survives_producer_kill",
        move || expect_failure(lazy.as_ref(), "survives_producer_kill"),
    ));
    libtest_mimic::run(&args, trials).exit_code()
}

fn expect_failure(harness: &dyn Harness, case_name: &str) -> Result<(), Failed> {
    let case = conformance::cases()
        .iter()
        .find(|c| c.name == case_name)
        .ok_or_else(|| format!("no case named {case_name}"))?;
    let row = run_case(case, harness);
    match row.outcome {
        Outcome::Fail => {
            eprintln!("caught as expected: {}", row.detail);
            Ok(())
        }
        Outcome::Pass => Err(format!("{case_name} passed a backend that is broken").into()),
        Outcome::NotApplicable => {
            Err(format!("{case_name} is n/a for the broken backend: {}", row.detail).into())
        }
    }
}

// ---- the flawed wrappers around mem ----------------------------------------------------------

struct Broken {
    flaw: Flaw,
    inner: MemHarness,
}

impl Broken {
    fn new(flaw: Flaw) -> Self {
        let config = MemConfig::default()
            .capacity(1000)
            .max_message_size(64 << 10)
            .max_priority(9);
        Broken {
            flaw,
            inner: MemHarness::with_config(config),
        }
    }
}

impl Harness for Broken {
    fn name(&self) -> &str {
        "broken"
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        match self.flaw {
            Flaw::IgnoresUnsupported => {
                caps.max_priority = None;
                caps.ttl = false;
            }
            Flaw::NoSizeCheck => caps.max_message_size = Some(1000),
            _ => {}
        }
        caps
    }

    fn queue(&self) -> Result<Box<dyn TestQueue>> {
        Ok(Box::new(BrokenQueue {
            flaw: self.flaw,
            caps: self.capabilities(),
            inner: self.inner.queue()?,
        }))
    }
}

struct BrokenQueue {
    flaw: Flaw,
    caps: Capabilities,
    inner: Box<dyn TestQueue>,
}

impl TestQueue for BrokenQueue {
    fn producer(&self) -> Result<Box<dyn Producer>> {
        Ok(Box::new(BrokenProducer {
            flaw: self.flaw,
            caps: self.caps.clone(),
            inner: self.inner.producer()?,
            sent: 0,
        }))
    }

    fn consumer(&self) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(BrokenConsumer {
            flaw: self.flaw,
            caps: self.caps.clone(),
            inner: self.inner.consumer()?,
            stash: None,
            held: Vec::new(),
        }))
    }
}

struct BrokenProducer {
    flaw: Flaw,
    caps: Capabilities,
    inner: Box<dyn Producer>,
    sent: u64,
}

impl Producer for BrokenProducer {
    fn send_with(&mut self, payload: &[u8], options: &SendOptions, wait: Wait) -> Result<Receipt> {
        self.sent += 1;
        let mut options = options.clone();
        match self.flaw {
            Flaw::Loses if self.sent.is_multiple_of(5) => {
                return Ok(Receipt::new(None, Durability::Buffered));
            }
            Flaw::Duplicates if self.sent.is_multiple_of(3) => {
                self.inner.send_with(payload, &options, wait)?;
            }
            Flaw::DropsPriority => options.priority = None,
            Flaw::DropsTtl => options.ttl = None,
            _ => {}
        }
        self.inner.send_with(payload, &options, wait)
    }

    fn flush(&mut self, level: Durability) -> Result<()> {
        self.inner.flush(level)
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }
}

struct BrokenConsumer {
    flaw: Flaw,
    caps: Capabilities,
    inner: Box<dyn Consumer>,
    stash: Option<(Vec<u8>, Meta)>,
    held: Vec<Tag>,
}

impl Consumer for BrokenConsumer {
    fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        let wait = match (self.flaw, wait) {
            (Flaw::IgnoresDeadline, Wait::Until(_)) => Wait::NoWait,
            _ => wait,
        };
        if let Some((payload, meta)) = self.stash.take() {
            *buf = payload;
            return Ok(Some(meta));
        }
        let Some(meta) = self.inner.recv_into(buf, wait)? else {
            return Ok(None);
        };
        self.held.push(meta.tag);
        match self.flaw {
            Flaw::Reorders => {
                let mut second = Vec::new();
                if let Some(next) = self.inner.recv_into(&mut second, Wait::NoWait)? {
                    self.held.push(next.tag);
                    self.stash = Some((std::mem::replace(buf, second), meta));
                    return Ok(Some(next));
                }
            }
            Flaw::TruncatesAtNul => {
                if let Some(nul) = buf.iter().position(|&b| b == 0) {
                    buf.truncate(nul);
                }
            }
            _ => {}
        }
        Ok(Some(meta))
    }

    fn ack(&mut self, tag: Tag) -> Result<()> {
        self.held.retain(|t| *t != tag);
        match self.flaw {
            Flaw::AckRequeues => self.inner.nack(tag, true),
            _ => self.inner.ack(tag),
        }
    }

    fn nack(&mut self, tag: Tag, requeue: bool) -> Result<()> {
        self.held.retain(|t| *t != tag);
        match self.flaw {
            Flaw::RequeueDiscards => self.inner.nack(tag, false),
            _ => self.inner.nack(tag, requeue),
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }
}

impl Drop for BrokenConsumer {
    fn drop(&mut self) {
        if self.flaw == Flaw::DropAcks {
            for tag in std::mem::take(&mut self.held) {
                let _ = self.inner.ack(tag);
            }
        }
    }
}

// ---- filelog: a small durable cross-process test backend ---------------------------------------

/// An append-only log `DIR/log` of `[len: u32 LE][payload]` records and a read position in
/// `DIR/pos` (u64 LE), both guarded by advisory file locks. Without acks: a receive consumes.
struct FileLogHarness {
    /// Claims `Synced` but keeps sends in memory until dropped.
    lazy: bool,
}

const MAX_MESSAGE: usize = 1 << 20;

impl Harness for FileLogHarness {
    fn name(&self) -> &str {
        if self.lazy { "lazy-filelog" } else { "filelog" }
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::minimal("filelog");
        caps.durability = Durability::Synced;
        caps.survives_reopen = true;
        caps.cross_process = true;
        caps.max_message_size = Some(MAX_MESSAGE);
        caps
    }

    fn queue(&self) -> Result<Box<dyn TestQueue>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mq-facade-filelog-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(io)?;
        Ok(Box::new(FileLogQueue {
            dir,
            lazy: self.lazy,
        }))
    }

    fn open_producer_at(&self, address: &str) -> Result<Box<dyn Producer>> {
        open_file_producer(Path::new(address), self.lazy)
    }
}

fn io(e: std::io::Error) -> Error {
    Error::backend("filelog", e)
}

struct FileLogQueue {
    dir: PathBuf,
    lazy: bool,
}

impl Drop for FileLogQueue {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestQueue for FileLogQueue {
    fn producer(&self) -> Result<Box<dyn Producer>> {
        open_file_producer(&self.dir, self.lazy)
    }

    fn consumer(&self) -> Result<Box<dyn Consumer>> {
        let open = |name: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.dir.join(name))
                .map_err(io)
        };
        Ok(Box::new(FileLogConsumer {
            log: open("log")?,
            pos: open("pos")?,
            next_tag: 0,
        }))
    }

    fn address(&self) -> Option<String> {
        self.dir.to_str().map(str::to_owned)
    }
}

fn open_file_producer(dir: &Path, lazy: bool) -> Result<Box<dyn Producer>> {
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("log"))
        .map_err(io)?;
    Ok(Box::new(FileLogProducer {
        log,
        lazy,
        pending: Vec::new(),
    }))
}

struct FileLogProducer {
    log: File,
    lazy: bool,
    pending: Vec<u8>,
}

impl FileLogProducer {
    fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.log.lock().map_err(io)?;
        let written = self.log.write_all(&self.pending);
        let _ = self.log.unlock();
        written.map_err(io)?;
        self.pending.clear();
        Ok(())
    }
}

impl Producer for FileLogProducer {
    fn send_with(&mut self, payload: &[u8], options: &SendOptions, _wait: Wait) -> Result<Receipt> {
        let caps = FileLogHarness { lazy: self.lazy }.capabilities();
        options.check(&caps, "filelog")?;
        caps.check_size(payload.len())?;
        let len = u32::try_from(payload.len()).expect("checked against MAX_MESSAGE");
        self.pending.extend_from_slice(&len.to_le_bytes());
        self.pending.extend_from_slice(payload);
        if !self.lazy {
            self.write_pending()?;
        }
        Ok(Receipt::new(None, Durability::Written))
    }

    fn flush(&mut self, level: Durability) -> Result<()> {
        self.capabilities().check_flush(level)?;
        if self.lazy {
            return Ok(()); // The flaw: claims the level without writing anything.
        }
        if level == Durability::Synced {
            self.log.sync_data().map_err(io)?;
        }
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        FileLogHarness { lazy: self.lazy }.capabilities()
    }
}

impl Drop for FileLogProducer {
    fn drop(&mut self) {
        let _ = self.write_pending();
    }
}

struct FileLogConsumer {
    log: File,
    pos: File,
    next_tag: u64,
}

impl FileLogConsumer {
    /// Takes the record at the shared read position, if it is complete.
    fn take(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        self.pos.lock().map_err(io)?;
        let taken = self.take_locked(buf);
        let _ = self.pos.unlock();
        taken
    }

    fn take_locked(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        let mut raw = [0u8; 8];
        let read = self.pos.read_at(&mut raw, 0).map_err(io)?;
        let offset = if read == 8 {
            u64::from_le_bytes(raw)
        } else {
            0
        };
        let end = self.log.metadata().map_err(io)?.len();
        if end < offset + 4 {
            return Ok(false);
        }
        let mut len = [0u8; 4];
        self.log.read_exact_at(&mut len, offset).map_err(io)?;
        let len = u64::from(u32::from_le_bytes(len));
        if end < offset + 4 + len {
            return Ok(false); // A record still being written, or torn by a crash.
        }
        buf.resize(
            usize::try_from(len).map_err(|e| Error::backend("filelog", e))?,
            0,
        );
        self.log.seek(SeekFrom::Start(offset + 4)).map_err(io)?;
        self.log.read_exact(buf).map_err(io)?;
        self.pos
            .write_all_at(&(offset + 4 + len).to_le_bytes(), 0)
            .map_err(io)?;
        Ok(true)
    }
}

impl Consumer for FileLogConsumer {
    fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        let deadline = wait.deadline();
        loop {
            buf.clear();
            if self.take(buf)? {
                self.next_tag += 1;
                return Ok(Some(Meta::new(Tag::from_raw(self.next_tag))));
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn ack(&mut self, _tag: Tag) -> Result<()> {
        Ok(()) // Without acks a receive consumes; ack has nothing to do.
    }

    fn nack(&mut self, _tag: Tag, _requeue: bool) -> Result<()> {
        Err(Error::unsupported(
            "filelog",
            "nack: a receive consumes the message",
        ))
    }

    fn capabilities(&self) -> Capabilities {
        FileLogHarness { lazy: false }.capabilities()
    }
}
