//! The front-end/back-end use case: one process offers, another polls the same queue file.
//!
//! - `writer_and_reader_processes_v1` / `_v2`: a writer child (`DuraQueue::open`) offers
//!   20 000 numbered items into a 64 KiB ring, so it fills the ring over and over and waits
//!   for the reader (it backs off while `Error::Full`; the crate refreshes by itself); a
//!   reader child (`DuraQueue::open_reader`, `wait_for_items` + `pop_with`) prints every item.
//!   The parent proves the reader got every item, byte-exact, in order, exactly once, and
//!   that both children exit 0 within a deadline.
//! - `interrupted_poll_keeps_its_record_from_the_writer_v1`: a reader stopped half-way
//!   through a poll (SIGBUS at an exact store) must not have released the record to a
//!   full writer yet.
//! - `locks_allow_one_writer_and_one_reader`: with a writer and a reader open in two other
//!   processes (together: fine), a second writer or reader gets `Error::Locked`, in a third
//!   process and in this one; a killed holder releases its lock.
//!
//! A plain `main` runs the tests (no libtest): `cargo test --test two_process [FILTER]`.
//! The children are this binary again, selected by an environment variable.
//! `DURAQUEUE_TWO_PROCESS_ITEMS` changes the number of items (default 20 000).

// Built with the default libtest harness, only the guard test below exists.
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::panic;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duraqueue::format::{self, Format};
use duraqueue::{DuraQueue, Error, OpenOptions};

/// This file has its own `main`; built with libtest's harness it would run nothing.
#[cfg(test)]
#[test]
fn registered_without_harness() {
    panic!(
        "tests/two_process.rs brings its own main: register it in duraqueue/Cargo.toml as \
         [[test]] name = \"two_process\", harness = false"
    );
}

// ---- test runner --------------------------------------------------------------------------

mod support;

use support::{Trial, format_name, mix, say};

const TRIALS: &[Trial] = &[
    Trial {
        name: "writer_and_reader_processes_v1",
        run: writer_and_reader_processes_v1,
        ignore: None,
    },
    Trial {
        name: "writer_and_reader_processes_v2",
        run: writer_and_reader_processes_v2,
        ignore: None,
    },
    Trial {
        name: "interrupted_poll_keeps_its_record_from_the_writer_v1",
        run: interrupted_poll_keeps_its_record_from_the_writer_v1,
        ignore: None,
    },
    Trial {
        name: "locks_allow_one_writer_and_one_reader",
        run: locks_allow_one_writer_and_one_reader,
        ignore: None,
    },
];

/// The environment variable that turns this binary into a child process of one role.
const ROLE_ENV: &str = "DURAQUEUE_TWO_PROCESS_CHILD";

fn main() -> ExitCode {
    support::main(TRIALS, ROLE_ENV, child_main)
}

// ---- shared helpers -----------------------------------------------------------------------

/// Ring size: small, so that the writer fills it many times over.
const RING: u64 = 64 * 1024;

/// How long the parent lets both children run before it kills them and fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// How long a child works before it gives up (below the parent's deadline).
const CHILD_LIMIT: Duration = Duration::from_secs(100);

/// How long the parent waits for a line from a child.
const LINE_LIMIT: Duration = Duration::from_secs(30);

/// Number of items the writer offers.
fn items() -> u64 {
    std::env::var("DURAQUEUE_TWO_PROCESS_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// Item `i`: its number (8 bytes, little endian), then 0..200 bytes derived from it.
fn item(i: u64) -> Vec<u8> {
    let len = 8 + (mix(i) % 200) as usize;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&i.to_le_bytes());
    let mut state = i;
    out.extend((8..len).map(|_| {
        state = mix(state);
        state as u8
    }));
    out
}

/// A child process that is killed and reaped whatever happens to the test.
struct Reaped {
    child: Option<Child>,
    role: String,
}

impl Reaped {
    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already reaped")
    }

    /// Waits for the child to exit, up to `until`; `None` if it is still running then.
    fn wait_until(&mut self, until: Instant) -> Option<ExitStatus> {
        loop {
            match self.child().try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(e) => panic!("wait for child {}: {e}", self.role),
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills (SIGKILL) and reaps the child.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A started child: the process, its stdin (if piped) and the lines of its stdout.
struct Started {
    process: Reaped,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl Started {
    /// The next line, waiting at most `LINE_LIMIT`.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(LINE_LIMIT) {
            Ok(line) => line,
            Err(e) => {
                let status = self.process.wait_until(Instant::now());
                panic!(
                    "no line from child {} ({e}); exit status: {status:?}",
                    self.process.role
                )
            }
        }
    }

    /// Every line printed, once the child is gone (after `wait_until` or `kill`).
    fn all_lines(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("line reader thread");
        }
        self.lines.try_iter().collect()
    }
}

/// Starts this binary as a child of `role` with `vars` set; stdout piped, stdin piped when
/// `stdin` (the child then lives until it is closed).
fn spawn_child(role: &str, vars: &[(&str, String)], stdin: bool) -> Started {
    spawn_child_with(role, vars, stdin, false)
}

/// As [`spawn_child`]; with `faulting`, the child runs without core dumps (it is expected
/// to die of SIGBUS).
fn spawn_child_with(role: &str, vars: &[(&str, String)], stdin: bool, faulting: bool) -> Started {
    let exe = std::env::current_exe().expect("current_exe");
    let mut command = if faulting {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg("ulimit -c 0; exec \"$0\"").arg(exe);
        sh
    } else {
        Command::new(exe)
    };
    command
        .env(ROLE_ENV, role)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn the child process");
    let stdout = child.stdout.take().expect("piped stdout");
    let child_stdin = child.stdin.take();
    let (lines, reader) = line_reader(stdout);
    Started {
        process: Reaped {
            child: Some(child),
            role: role.to_string(),
        },
        stdin: child_stdin,
        lines,
        reader: Some(reader),
    }
}

/// Forwards the complete lines of `stdout` to a channel until EOF.
fn line_reader(stdout: ChildStdout) -> (mpsc::Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx
                        .send(String::from_utf8_lossy(&line).into_owned())
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    (rx, handle)
}

/// Creates the queue file with `format` and closes it.
fn create(path: &Path, format: Format) {
    DuraQueue::open_with(path, &OpenOptions::new(RING).format(format))
        .and_then(DuraQueue::close)
        .expect("create the queue");
}

// ---- writer and reader processes ----------------------------------------------------------

fn writer_and_reader_processes_v1() {
    writer_and_reader_processes(Format::V1);
}

fn writer_and_reader_processes_v2() {
    writer_and_reader_processes(Format::V2);
}

/// Child `writer`: offers items `0..DQ_ITEMS`, backing off while the ring is full.
fn child_writer() -> Result<(), String> {
    let (path, n) = (env_path()?, env_u64("DQ_ITEMS")?);
    let mut queue = DuraQueue::open(&path, RING).map_err(|e| format!("open: {e}"))?;
    let deadline = Instant::now() + CHILD_LIMIT;
    let mut full = 0u64;
    for i in 0..n {
        let it = item(i);
        loop {
            match queue.offer(&it) {
                Ok(_) => break,
                Err(Error::Full { .. }) => {
                    full += 1;
                    if Instant::now() >= deadline {
                        return Err(format!("item {i}: the ring stayed full"));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(format!("offer {i}: {e}")),
            }
        }
    }
    queue.close().map_err(|e| format!("close: {e}"))?;
    say(&format!("done {full}"));
    Ok(())
}

/// Child `reader`: receives `DQ_ITEMS` items, printing `I <n>` for each that is exactly
/// item `n`, `X <len>` for anything else.
fn child_reader() -> Result<(), String> {
    let (path, n) = (env_path()?, env_u64("DQ_ITEMS")?);
    let mut queue = DuraQueue::open_reader(&path).map_err(|e| format!("open_reader: {e}"))?;
    let deadline = Instant::now() + CHILD_LIMIT;
    let (mut received, mut waits) = (0u64, 0u64);
    while received < n {
        if Instant::now() >= deadline {
            return Err(format!("received {received} of {n} items"));
        }
        let ready = queue
            .wait_for_items(Some(Duration::from_millis(200)))
            .map_err(|e| format!("wait_for_items: {e}"))?;
        waits += 1;
        if !ready {
            continue;
        }
        let got = queue
            .pop_with(|bytes| {
                let number = bytes
                    .first_chunk::<8>()
                    .map(|b| u64::from_le_bytes(*b))
                    .filter(|&i| bytes == item(i).as_slice());
                match number {
                    Some(i) => format!("I {i}"),
                    None => format!("X {}", bytes.len()),
                }
            })
            .map_err(|e| format!("pop_with after {received} items: {e}"))?;
        if let Some(line) = got {
            say(&line);
            received += 1;
        }
    }
    say(&format!("done {waits}"));
    Ok(())
}

fn writer_and_reader_processes(format: Format) {
    let started = Instant::now();
    let n = items();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queue");
    create(&path, format);
    let vars = [
        ("DQ_PATH", path.display().to_string()),
        ("DQ_ITEMS", n.to_string()),
    ];
    let mut reader = spawn_child("reader", &vars, false);
    let mut writer = spawn_child("writer", &vars, false);
    let deadline = started + DEADLINE;
    let writer_status = writer.process.wait_until(deadline);
    let reader_status = reader.process.wait_until(deadline);
    if writer_status.is_none() || reader_status.is_none() {
        writer.process.kill();
        reader.process.kill();
    }
    let writer_lines = writer.all_lines();
    let reader_lines = reader.all_lines();
    let received = reader_lines.iter().filter(|l| l.starts_with("I ")).count();
    let mut analysis = analyse(&reader_lines);
    if format == Format::V1 {
        for missing in missing_items(&reader_lines).into_iter().take(3) {
            analysis += &format!("\n    item {missing}: {}", find_record_v1(&path, missing));
        }
    }
    assert!(
        writer_status.is_some() && reader_status.is_some(),
        "{}: not done within {DEADLINE:?} (writer exited: {writer_status:?}, reader exited: \
         {reader_status:?}, {received} of {n} items received: {}); both killed",
        format_name(format),
        analysis
    );

    for (who, lines) in [("writer", &writer_lines), ("reader", &reader_lines)] {
        if let Some(error) = lines.iter().find(|l| l.starts_with("E ")) {
            panic!(
                "{}: the {who} failed: {error}\n    what the reader received: {analysis}",
                format_name(format)
            );
        }
    }

    // Every item, in order, exactly once, byte-exact.
    let mut expected = 0u64;
    for line in &reader_lines {
        if let Some(number) = line.strip_prefix("I ") {
            let i: u64 = number.parse().expect("a number");
            assert_eq!(
                i,
                expected,
                "{}: the reader got item {i} where item {expected} was due",
                format_name(format)
            );
            expected += 1;
        } else {
            assert!(
                line.starts_with("done "),
                "{}: the reader got something that was never offered, after item {expected}: \
                 {line}",
                format_name(format)
            );
        }
    }
    assert_eq!(
        expected,
        n,
        "{}: the reader got {expected} of {n} items",
        format_name(format)
    );
    let (writer_status, reader_status) = (writer_status.unwrap(), reader_status.unwrap());
    assert!(writer_status.success(), "writer exited {writer_status}");
    assert!(reader_status.success(), "reader exited {reader_status}");

    // Nothing is left, and nothing consumed comes back on reopen.
    let queue = DuraQueue::open_with(&path, &OpenOptions::new(0).create(false))
        .expect("reopen after both children");
    assert_eq!(queue.count(), 0, "items left after the reader consumed all");
    let fulls = writer_lines
        .iter()
        .find_map(|l| l.strip_prefix("done "))
        .unwrap_or("?");
    let waits = reader_lines
        .iter()
        .find_map(|l| l.strip_prefix("done "))
        .unwrap_or("?");
    println!(
        "    {}: {n} items through a {} KiB ring in {:.1} s; the writer found the ring full \
         {fulls} times, the reader waited {waits} times",
        format_name(format),
        RING / 1024,
        started.elapsed().as_secs_f64()
    );
}

// ---- a reader's poll interrupted half-way -------------------------------------------

/// Ring of the interrupted-poll test: two pages; the second is cut off under the reader.
const TWO_PAGES: u64 = 8192;

/// Child `poll-once`: opens the queue as its reader, prints `R`, and polls one item when a
/// line arrives on stdin (then prints `P <result>`).
fn child_poll_once() -> Result<(), String> {
    let path = env_path()?;
    let mut queue = DuraQueue::open_reader(&path).map_err(|e| format!("open_reader: {e}"))?;
    say("R");
    let mut go = String::new();
    std::io::stdin()
        .read_line(&mut go)
        .map_err(|e| e.to_string())?;
    let polled = queue.poll();
    say(&format!("P {polled:?}"));
    Ok(())
}

/// v1: a reader consumes a record by zeroing its header and its footer, and a writer that
/// finds the ring full reuses a record's bytes once it sees the record consumed. While the
/// reader is still writing to a record (the reader process is merely slow: preempted, or
/// waiting on a page fault), the writer must not take it back: the reader's remaining
/// stores would land in the writer's new record.
///
/// The reader child is stopped at an exact store: the head record has its header on the
/// ring's first page and its footer on the second, and the second page is cut off
/// (truncated) under the reader just before it polls, so its first store to that page
/// raises SIGBUS. The page is then restored byte for byte, which leaves the file exactly
/// as the reader's memory stood at that store. A writer handle, opened before and full,
/// then offers an item the size of the head record: it must still find the ring full.
fn interrupted_poll_keeps_its_record_from_the_writer_v1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queue");
    let mut writer = DuraQueue::open_with(&path, &OpenOptions::new(TWO_PAGES)).expect("create");
    // R0 fills 0..4032 and is consumed; R1 (96 bytes, a record of 192) spans 4032..4224:
    // header on page 0, footer on page 1. Then 64-byte items fill the ring.
    writer.offer(&[1; 3936]).expect("offer R0");
    writer.offer(&[2; 96]).expect("offer R1");
    assert!(writer.poll().expect("poll R0"));
    assert_eq!(writer.records().next().map(|(_, at, _)| at), Some(4032));
    let mut fillers = 0;
    loop {
        match writer.offer(&[3; 64]) {
            Ok(_) => fillers += 1,
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    assert!(fillers > 0 && writer.unused() < 192);

    let mut reader = spawn_child_with(
        "poll-once",
        &[("DQ_PATH", path.display().to_string())],
        true,
        true,
    );
    assert_eq!(reader.line(), "R", "the reader could not open the queue");
    let saved = std::fs::read(&path).expect("read the file");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open for truncation");
    let cut = TWO_PAGES / 2;
    file.set_len(cut).expect("cut the second page");
    let mut stdin = reader.stdin.take().expect("piped stdin");
    stdin.write_all(b"poll\n").expect("tell the reader to poll");
    drop(stdin);
    let status = reader
        .process
        .wait_until(Instant::now() + LINE_LIMIT)
        .expect("the reader exits");
    let said = reader.all_lines();
    assert_eq!(
        status.signal(),
        Some(libc::SIGBUS),
        "the poll should fault on the cut page (exit {status}, said {said:?})"
    );
    file.set_len(saved.len() as u64)
        .expect("restore the length");
    file.write_all_at(&saved[cut as usize..], cut)
        .expect("restore the second page");

    let header_intact = std::fs::read(&path).expect("read")[4032..4032 + 16] == [b'x'; 16];
    let new_item = [4u8; 96];
    match writer.offer(&new_item) {
        Err(Error::Full { .. }) => {}
        Ok(_) => {
            // What the reader's pending store (the zeroed footer of R1) does to the new record.
            let at = writer
                .records()
                .find(|&(_, _, item)| item == new_item)
                .map(|(_, at, _)| at);
            file.write_all_at(&[0; 32], 4192)
                .expect("the pending store");
            let after = DuraQueue::open_with(&path, &OpenOptions::new(0).create(false).lock(false))
                .expect("reopen");
            let delivered = after.iter().any(|item| item == new_item);
            panic!(
                "the writer reused the record the reader was still consuming (its header {}, \
                 its footer not yet zeroed): the writer's new record went to file offset {at:?}, \
                 and the reader's pending store (32 zeros at 4192, R1's footer) lands in it; \
                 after that store, recovery delivers {} items, {} the new one",
                if header_intact { "intact" } else { "zeroed" },
                after.count(),
                if delivered { "including" } else { "WITHOUT" }
            );
        }
        Err(e) => panic!("offer: {e}"),
    }
}

/// The numbers below the highest received that the reader never received.
fn missing_items(reader_lines: &[String]) -> Vec<u64> {
    let got: std::collections::BTreeSet<u64> = reader_lines
        .iter()
        .filter_map(|l| l.strip_prefix("I ")?.parse().ok())
        .collect();
    let max = got.last().copied().unwrap_or(0);
    (0..max).filter(|i| !got.contains(i)).collect()
}

/// v1: finds the record of item `missing` in the ring (a header whose payload starts with
/// its number) and tells which bytes differ from a correct encoding of it.
fn find_record_v1(path: &Path, missing: u64) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return "file unreadable".into();
    };
    let n = bytes.len() / 32 * 32;
    let view: Vec<u8> = [&bytes[..n], &bytes[..n]].concat();
    let expected = item(missing);
    for at in (0..n).step_by(32) {
        let Some(header) = format::decode_frame(Format::V1, &view[at..]) else {
            continue;
        };
        if header.footer || view.get(at + 32..at + 40) != Some(&expected[..8]) {
            continue;
        }
        let size = format::record_size(u64::from(header.len)) as usize;
        if header.len as usize != expected.len() {
            return format!(
                "header at file offset {at} with id {} has len {}, not {}",
                header.seq,
                header.len,
                expected.len()
            );
        }
        let mut good = vec![0u8; size];
        format::encode_record(Format::V1, header.seq, &expected, &mut good);
        let found = &view[at..at + size];
        let mut ranges = Vec::new();
        let mut i = 0;
        while i < size {
            if found[i] == good[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i < size && found[i] != good[i] {
                i += 1;
            }
            let zeros = found[start..i].iter().all(|&b| b == 0);
            ranges.push(format!(
                "record bytes {start}..{i} (file {}..{}){}",
                (at + start) % n,
                (at + i - 1) % n + 1,
                if zeros { " are zero" } else { " differ" }
            ));
        }
        return format!(
            "record at file offset {at} (id {}, {size} bytes): {}",
            header.seq,
            if ranges.is_empty() {
                "intact".to_string()
            } else {
                ranges.join(", ")
            }
        );
    }
    "no header with its number in the ring".into()
}

/// Describes what the reader received against `0, 1, 2, ...`: count, first deviation,
/// missing numbers, duplicates, items that were never offered.
fn analyse(reader_lines: &[String]) -> String {
    let got: Vec<u64> = reader_lines
        .iter()
        .filter_map(|l| l.strip_prefix("I ")?.parse().ok())
        .collect();
    let unknown = reader_lines.iter().filter(|l| l.starts_with("X ")).count();
    let Some(&max) = got.iter().max() else {
        return format!("no items ({unknown} never offered)");
    };
    let mut seen = vec![0u32; max as usize + 1];
    for &i in &got {
        seen[i as usize] += 1;
    }
    let missing: Vec<u64> = (0..=max).filter(|&i| seen[i as usize] == 0).collect();
    let duplicates = seen.iter().filter(|&&c| c > 1).count();
    let deviation = got
        .iter()
        .enumerate()
        .find(|&(at, &i)| i != at as u64)
        .map_or("none".to_string(), |(at, i)| {
            format!("position {at} got item {i}")
        });
    format!(
        "{} items, highest {max}; first deviation from 0, 1, 2, ...: {deviation}; missing: \
         {:?}{}; duplicated: {duplicates}; never offered: {unknown}",
        got.len(),
        &missing[..missing.len().min(10)],
        if missing.len() > 10 { " ..." } else { "" }
    )
}

// ---- locks --------------------------------------------------------------------------------

/// Opens the queue at `path` in `role` (`writer` or `reader`).
fn open_role(path: &Path, role: &str) -> duraqueue::Result<DuraQueue> {
    match role {
        "writer" => DuraQueue::open(path, RING),
        _ => DuraQueue::open_reader(path),
    }
}

/// Child `hold`: opens the queue in role `DQ_ROLE`, prints `held` and keeps it open until
/// its stdin closes.
fn child_hold() -> Result<(), String> {
    let path = env_path()?;
    let role = std::env::var("DQ_ROLE").map_err(|e| e.to_string())?;
    let queue = open_role(&path, &role).map_err(|e| format!("open as {role}: {e}"))?;
    say("held");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    queue.close().map_err(|e| e.to_string())
}

/// Child `try`: tries to open the queue as writer, then as reader; prints one line each:
/// `<role> ok`, `<role> locked <role in the error>` or `<role> error <message>`.
fn child_try() -> Result<(), String> {
    let path = env_path()?;
    for role in ["writer", "reader"] {
        match open_role(&path, role) {
            Ok(queue) => {
                say(&format!("{role} ok"));
                drop(queue);
            }
            Err(Error::Locked { role: held, .. }) => say(&format!("{role} locked {held}")),
            Err(e) => say(&format!("{role} error {e}")),
        }
    }
    Ok(())
}

/// Runs a `try` child; its two lines.
fn try_in_another_process(path: &Path) -> [String; 2] {
    let mut child = spawn_child("try", &[("DQ_PATH", path.display().to_string())], false);
    let lines = [child.line(), child.line()];
    let status = child
        .process
        .wait_until(Instant::now() + LINE_LIMIT)
        .expect("the try child exits");
    assert!(status.success(), "try child exited {status}");
    lines
}

/// Starts a `hold` child in `role` and waits until it holds the queue.
fn hold(path: &Path, role: &str) -> Started {
    let mut child = spawn_child(
        "hold",
        &[
            ("DQ_PATH", path.display().to_string()),
            ("DQ_ROLE", role.to_string()),
        ],
        true,
    );
    let line = child.line();
    assert_eq!(line, "held", "the {role} holder could not open the queue");
    child
}

/// Asserts `result` is `Error::Locked` for `role`, naming `path`.
fn expect_locked(result: duraqueue::Result<DuraQueue>, path: &Path, role: &str) {
    match result {
        Err(e @ Error::Locked { .. }) => {
            let message = e.to_string();
            let Error::Locked { path: p, role: r } = e else {
                unreachable!()
            };
            assert_eq!((p.as_path(), r), (path, role));
            assert!(
                message.contains(&path.display().to_string()),
                "the message does not name the file: {message}"
            );
        }
        Err(e) => panic!("second {role}: expected Error::Locked, got {e:?}"),
        Ok(_) => panic!("a second {role} opened the queue"),
    }
}

fn locks_allow_one_writer_and_one_reader() {
    for format in [Format::V1, Format::V2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue");
        create(&path, format);

        // A writer and a reader in two processes, at the same time: fine.
        let mut writer = hold(&path, "writer");
        let mut reader = hold(&path, "reader");

        // A second writer and a second reader: locked, in a third process and in this one.
        assert_eq!(
            try_in_another_process(&path),
            ["writer locked writer", "reader locked reader"]
        );
        expect_locked(DuraQueue::open(&path, RING), &path, "writer");
        expect_locked(DuraQueue::open_reader(&path), &path, "reader");
        expect_locked(
            DuraQueue::open_with(&path, &OpenOptions::new(0).create(false)),
            &path,
            "writer",
        );

        // A writer killed with SIGKILL releases its lock; the reader still holds its own.
        writer.process.kill();
        assert_eq!(
            try_in_another_process(&path),
            ["writer ok", "reader locked reader"]
        );

        // A reader that closes releases its lock.
        drop(reader.stdin.take());
        let status = reader
            .process
            .wait_until(Instant::now() + LINE_LIMIT)
            .expect("the reader holder exits when its stdin closes");
        assert!(status.success(), "reader holder exited {status}");
        assert_eq!(try_in_another_process(&path), ["writer ok", "reader ok"]);

        // One writer and one reader handle in this process; a second writer handle is refused.
        let own_writer = DuraQueue::open(&path, RING).expect("writer");
        let own_reader = DuraQueue::open_reader(&path).expect("reader");
        expect_locked(DuraQueue::open(&path, RING), &path, "writer");
        drop((own_writer, own_reader));
        println!("    {}: locks as expected", format_name(format));
    }
}

// ---- child processes ----------------------------------------------------------------------

fn env_path() -> Result<PathBuf, String> {
    std::env::var("DQ_PATH")
        .map(PathBuf::from)
        .map_err(|e| format!("DQ_PATH: {e}"))
}

fn env_u64(name: &str) -> Result<u64, String> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("environment variable {name} is not a number"))
}

fn child_main(role: &str) -> ExitCode {
    let result = match role {
        "writer" => child_writer(),
        "reader" => child_reader(),
        "hold" => child_hold(),
        "try" => child_try(),
        "poll-once" => child_poll_once(),
        other => Err(format!("unknown child role {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("E {e}"));
            eprintln!("child {role}: {e}");
            ExitCode::from(2)
        }
    }
}
