//! Crash consistency of duraqueue (spec §5.3), for both formats.
//!
//! - **kill -9 of a writer child** (`kill9_*`): a child process offers, commits or polls in a
//!   loop and reports every acknowledged operation on its stdout; the parent kills it with
//!   SIGKILL at a random moment, reopens the queue and proves that recovery delivers exactly
//!   a contiguous run of items, byte-exact and in order, that holds every acknowledged,
//!   unpolled item, at most the one operation in flight beyond it (never a part of a
//!   transaction), and never an acknowledged poll. The same file is used round after round,
//!   so the ring wraps and recovery runs over stale laps and records straddling the ring end.
//! - **a commit killed between two header writes** (`kill_mid_commit_is_all_or_nothing`):
//!   the child dies of SIGBUS at an exact store (a page of the file is cut off under it and
//!   restored afterwards), which shows the one interleaving a random kill almost never hits.
//! - **image mutation sweeps** (`sweep_*`, spec §5.3 S1 and S2): every byte (and, per bit,
//!   every bit) of three 64-byte records is flipped in a copy of the file, and the last
//!   record is torn at every length; opening the copy never panics and never delivers an
//!   item that was not written (v1 only: a flipped payload byte, the format has no checksum).
//! - **bad input files** are refused with a clear error naming the file, never a panic, and
//!   a v2 file with a damaged superblock magic is not taken for a v1 file.
//!
//! Trials marked ignored fail on known bugs of the crate (the reason names the place); run
//! them with `--ignored` or `--include-ignored`.
//!
//! A plain `main` runs the tests (no libtest): `cargo test --test crash [FILTER]`. The child
//! processes are this binary again, selected by an environment variable. The number of kill
//! rounds per test is `DURAQUEUE_CRASH_ROUNDS` (default 20); `DURAQUEUE_CRASH_SEED` fixes
//! the random kill delays (the seed of each run is printed).

// Built with the default libtest harness, only the guard test below exists.
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duraqueue::format::{Format, record_size};
use duraqueue::{DuraQueue, Error, OpenOptions, SharedWriter};

/// This file has its own `main`; built with libtest's harness it would run nothing.
#[cfg(test)]
#[test]
fn registered_without_harness() {
    panic!(
        "tests/crash.rs brings its own main: register it in duraqueue/Cargo.toml as \
         [[test]] name = \"crash\", harness = false"
    );
}

// ---- test runner --------------------------------------------------------------------------

mod support;

use support::{Trial, format_name, mix, say};

const TRIALS: &[Trial] = &[
    Trial {
        name: "kill9_writer_v1",
        run: kill9_writer_v1,
        ignore: None,
    },
    Trial {
        name: "kill9_writer_v2",
        run: kill9_writer_v2,
        ignore: None,
    },
    Trial {
        name: "kill9_during_transactions",
        run: kill9_during_transactions,
        ignore: None,
    },
    Trial {
        name: "kill9_shared_writer_group_commit",
        run: kill9_shared_writer_group_commit,
        ignore: None,
    },
    Trial {
        name: "kill_mid_commit_is_all_or_nothing",
        run: kill_mid_commit_is_all_or_nothing,
        ignore: None,
    },
    Trial {
        name: "sweep_s1_flips_v1",
        run: sweep_s1_flips_v1,
        ignore: None,
    },
    Trial {
        name: "sweep_s1_flips_v2",
        run: sweep_s1_flips_v2,
        ignore: None,
    },
    Trial {
        name: "sweep_s2_torn_last_record",
        run: sweep_s2_torn_last_record,
        ignore: None,
    },
    Trial {
        name: "sweep_s3_s4_torn_sectors",
        run: sweep_s3_s4_torn_sectors,
        ignore: None,
    },
    Trial {
        name: "bad_input_files",
        run: bad_input_files,
        ignore: None,
    },
    Trial {
        name: "v2_damaged_magic_is_not_taken_for_v1",
        run: v2_damaged_magic_is_not_taken_for_v1,
        ignore: None,
    },
];

/// The environment variable that turns this binary into a child process of one role.
const ROLE_ENV: &str = "DURAQUEUE_CRASH_CHILD";

fn main() -> ExitCode {
    support::main(TRIALS, ROLE_ENV, child_main)
}

// ---- shared helpers -----------------------------------------------------------------------

/// Ring of the kill tests: small, so that it wraps many times.
const RING: u64 = 64 * 1024;

/// How long a child may run before it gives up on being killed (a bound, never reached).
const CHILD_LIMIT: Duration = Duration::from_secs(30);

/// How long the parent waits for a child to get ready.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// A small xorshift generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(mix(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The item with sequence number `seq`: 0..=300 bytes, its first bytes the seq (little
/// endian, as many as fit), the rest a pattern derived from the seq.
fn item(seq: u64) -> Vec<u8> {
    let len = (mix(seq) % 301) as usize;
    let mut state = mix(seq ^ 0x5EED_17E5);
    let seq_bytes = seq.to_le_bytes();
    (0..len)
        .map(|i| match seq_bytes.get(i) {
            Some(&b) => b,
            None => {
                state = mix(state);
                state as u8
            }
        })
        .collect()
}

/// The length of the transaction that starts at `first` (1..=20 items).
fn txn_len(first: u64) -> u64 {
    1 + mix(first ^ 0x7A7A) % 20
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("environment variable {name} is not a number"))
}

/// Number of kill rounds per test.
fn rounds() -> u64 {
    std::env::var("DURAQUEUE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// The seed of a test's random kill delays: `DURAQUEUE_CRASH_SEED` or the clock.
fn seed() -> u64 {
    std::env::var("DURAQUEUE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// A child process that is killed and reaped whatever happens to the test.
struct Reaped(Option<Child>);

impl Reaped {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child already reaped")
    }

    /// Kills (SIGKILL) and reaps the child; whether it was still running.
    fn kill(&mut self) -> bool {
        let child = self.child();
        let running = matches!(child.try_wait(), Ok(None));
        let _ = child.kill();
        let _ = child.wait();
        self.0 = None;
        running
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts this binary as a child of `role`, its stdout piped, with `vars` set.
fn spawn_child(role: &str, vars: &[(&str, String)]) -> (Reaped, ChildStdout) {
    let (child, stdout, _) = spawn_child_with(role, vars, false);
    (child, stdout)
}

/// As [`spawn_child`]; with `faulting`, stdin is piped (returned) and the child runs
/// without core dumps (it is expected to die of SIGBUS).
fn spawn_child_with(
    role: &str,
    vars: &[(&str, String)],
    faulting: bool,
) -> (Reaped, ChildStdout, Option<ChildStdin>) {
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
        .stdin(if faulting {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn the child process");
    let stdout = child.stdout.take().expect("piped stdout");
    let stdin = child.stdin.take();
    (Reaped(Some(child)), stdout, stdin)
}

/// Forwards the complete lines of `stdout` to a channel until EOF; a line cut by the kill
/// (no newline) is dropped.
fn line_reader(stdout: ChildStdout) -> (mpsc::Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.last() == Some(&b'\n') => {
                    line.pop();
                    if tx
                        .send(String::from_utf8_lossy(&line).into_owned())
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => return, // cut by the kill
            }
        }
    });
    (rx, handle)
}

/// Runs one child of `role` until it reports `R` (ready), lets it work for `delay`, kills it
/// with SIGKILL and returns every line it printed after `R`.
fn run_and_kill(role: &str, vars: &[(&str, String)], delay: Duration) -> Vec<String> {
    let (mut child, stdout) = spawn_child(role, vars);
    let (lines, reader) = line_reader(stdout);
    match lines.recv_timeout(READY_LIMIT) {
        Ok(line) if line == "R" => {}
        Ok(line) => panic!("child {role}: expected `R`, got {line:?}"),
        Err(e) => {
            let status = child.child().wait();
            panic!("child {role} never got ready ({e}); exit: {status:?}");
        }
    }
    std::thread::sleep(delay);
    let running = child.kill();
    reader.join().expect("line reader thread");
    let out: Vec<String> = lines.try_iter().collect();
    if let Some(error) = out.iter().find(|l| l.starts_with("E ")) {
        panic!("child {role} reported an error: {error}");
    }
    assert!(
        running,
        "child {role} exited before it was killed; its last lines: {:?}",
        &out[out.len().saturating_sub(3)..]
    );
    out
}

/// Parses `<tag> <n>` lines with the given tag; the numbers must run consecutively from
/// `from`. Returns the end (last + 1, or `from` when there are none).
fn consecutive(lines: &[String], tag: &str, from: u64) -> u64 {
    let mut end = from;
    for line in lines {
        let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) else {
            continue;
        };
        let first: u64 = rest
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert_eq!(first, end, "`{tag}` lines out of order at {line:?}");
        end = match rest.split(' ').nth(1) {
            Some(count) => first + count.parse::<u64>().expect("a count"),
            None => first + 1,
        };
    }
    end
}

/// The items of the queue at `path`, opened as the writer after the child died.
fn recovered(path: &Path, format: Format) -> Vec<Vec<u8>> {
    let queue = DuraQueue::open_with(path, &OpenOptions::new(0).create(false))
        .unwrap_or_else(|e| panic!("reopen after the kill: {e}"));
    assert_eq!(queue.format(), format);
    queue.iter().map(<[u8]>::to_vec).collect()
}

/// Describes recovered items for a failure message: length and the seq they start with.
fn describe(items: &[Vec<u8>]) -> String {
    let show = |it: &Vec<u8>| {
        let mut seq = [0u8; 8];
        let n = it.len().min(8);
        seq[..n].copy_from_slice(&it[..n]);
        format!("{}B:{}", it.len(), u64::from_le_bytes(seq))
    };
    if items.len() <= 12 {
        items.iter().map(show).collect::<Vec<_>>().join(" ")
    } else {
        let head: Vec<_> = items[..6].iter().map(show).collect();
        let tail: Vec<_> = items[items.len() - 6..].iter().map(show).collect();
        format!(
            "{} ... {} ({} items)",
            head.join(" "),
            tail.join(" "),
            items.len()
        )
    }
}

/// Finds the run `first..end` of sequence numbers whose items are exactly `items`, among the
/// allowed first values and ends.
fn match_run(items: &[Vec<u8>], firsts: &[u64], ends: &[u64]) -> Option<(u64, u64)> {
    for &first in firsts {
        for &end in ends {
            if first > end || (end - first) as usize != items.len() {
                continue;
            }
            if items
                .iter()
                .zip(first..end)
                .all(|(it, seq)| *it == item(seq))
            {
                return Some((first, end));
            }
        }
    }
    None
}

// ---- kill -9 of an offering and polling writer -------------------------------------------

fn kill9_writer_v1() {
    kill9_writer(Format::V1);
}

fn kill9_writer_v2() {
    kill9_writer(Format::V2);
}

/// Child `offer-poll`: offers items `DQ_NEXT..` and polls items `DQ_HEAD..` in a random mix,
/// printing `O <seq>` after each acknowledged offer and `P <seq>` after each poll.
fn child_offer_poll() -> Result<(), String> {
    let path = PathBuf::from(std::env::var("DQ_PATH").map_err(|e| e.to_string())?);
    let (mut next, mut head) = (env_u64("DQ_NEXT"), env_u64("DQ_HEAD"));
    let mut queue = DuraQueue::open_with(&path, &OpenOptions::new(RING).create(false))
        .map_err(|e| format!("open: {e}"))?;
    if queue.count() as u64 != next - head {
        return Err(format!(
            "opened with {} items, expected {}",
            queue.count(),
            next - head
        ));
    }
    let mut rng = Rng::new(env_u64("DQ_SEED"));
    say("R");
    let deadline = Instant::now() + CHILD_LIMIT;
    while Instant::now() < deadline {
        let count = queue.count();
        let poll = count > 0 && (count >= 64 || rng.below(3) == 0);
        if !poll {
            match queue.offer(&item(next)) {
                Ok(_) => {
                    say(&format!("O {next}"));
                    next += 1;
                    continue;
                }
                Err(Error::Full { .. }) if count > 0 => {}
                Err(e) => return Err(format!("offer {next}: {e}")),
            }
        }
        let expected = item(head);
        match queue.pop_with(|got| got == expected.as_slice()) {
            Ok(Some(true)) => say(&format!("P {head}")),
            Ok(Some(false)) => return Err(format!("polled item {head} differs")),
            Ok(None) => return Err(format!("poll of item {head}: queue empty")),
            Err(e) => return Err(format!("poll {head}: {e}")),
        }
        head += 1;
    }
    Err("not killed in time".into())
}

fn kill9_writer(format: Format) {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queue");
    DuraQueue::open_with(&path, &OpenOptions::new(RING).format(format))
        .and_then(DuraQueue::close)
        .expect("create the queue");
    let seed = seed();
    let mut rng = Rng::new(seed);
    // The items in the file: `head..next`.
    let (mut head, mut next) = (0u64, 0u64);
    let (mut offered_bytes, mut polls) = (0u64, 0u64);
    let (mut in_flight_offers, mut in_flight_polls) = (0, 0);
    let rounds = rounds();
    for round in 0..rounds {
        let delay = Duration::from_millis(1 + rng.below(50));
        let lines = run_and_kill(
            "offer-poll",
            &[
                ("DQ_PATH", path.display().to_string()),
                ("DQ_NEXT", next.to_string()),
                ("DQ_HEAD", head.to_string()),
                ("DQ_SEED", rng.next().to_string()),
            ],
            delay,
        );
        let offered_end = consecutive(&lines, "O", next);
        let polled_end = consecutive(&lines, "P", head);
        offered_bytes += (next..offered_end)
            .map(|s| record_size(item(s).len() as u64))
            .sum::<u64>();
        polls += polled_end - head;
        let items = recovered(&path, format);
        // The poll in flight may have removed one more item (it was durable, not yet
        // reported), but only an item that had been offered; the offer in flight may have
        // added one.
        let mut firsts = vec![polled_end];
        if polled_end < offered_end {
            firsts.push(polled_end + 1);
        }
        let Some((first, end)) = match_run(&items, &firsts, &[offered_end, offered_end + 1]) else {
            panic!(
                "{} round {round} (seed {seed}, killed after {delay:?}): acknowledged polls \
                 end at {polled_end}, acknowledged offers end at {offered_end}; recovered: {}",
                format_name(format),
                describe(&items)
            );
        };
        in_flight_polls += usize::from(first > polled_end);
        in_flight_offers += usize::from(end > offered_end);
        (head, next) = (first, end);
    }
    println!(
        "    {} kill -9: {rounds} rounds (seed {seed}), {} offers ({:.1} laps of the {} KiB ring), \
         {polls} polls; in flight at the kill and recovered: {in_flight_offers} offers, \
         {in_flight_polls} polls; {:.1} s",
        format_name(format),
        next,
        offered_bytes as f64 / RING as f64,
        RING / 1024,
        started.elapsed().as_secs_f64()
    );
}

// ---- kill -9 during transactions ---------------------------------------------------------

/// Child `txn`: commits transactions of `txn_len(first)` items from `DQ_NEXT` on, printing
/// `C <first> <count>` after each commit, and polls from `DQ_HEAD` (`P <seq>`).
fn child_txn() -> Result<(), String> {
    let path = PathBuf::from(std::env::var("DQ_PATH").map_err(|e| e.to_string())?);
    let (mut next, mut head) = (env_u64("DQ_NEXT"), env_u64("DQ_HEAD"));
    let mut queue = DuraQueue::open_with(&path, &OpenOptions::new(RING).create(false))
        .map_err(|e| format!("open: {e}"))?;
    if queue.count() as u64 != next - head {
        return Err(format!(
            "opened with {} items, expected {}",
            queue.count(),
            next - head
        ));
    }
    let mut rng = Rng::new(env_u64("DQ_SEED"));
    say("R");
    let deadline = Instant::now() + CHILD_LIMIT;
    while Instant::now() < deadline {
        let mut polls = if queue.count() >= 64 {
            1 + rng.below(20)
        } else {
            rng.below(8)
        };
        loop {
            if polls == 0 || queue.count() == 0 {
                break;
            }
            let expected = item(head);
            match queue.pop_with(|got| got == expected.as_slice()) {
                Ok(Some(true)) => say(&format!("P {head}")),
                Ok(Some(false)) => return Err(format!("polled item {head} differs")),
                Ok(None) => return Err(format!("poll of item {head}: queue empty")),
                Err(e) => return Err(format!("poll {head}: {e}")),
            }
            head += 1;
            polls -= 1;
        }
        let len = txn_len(next);
        let mut txn = queue.txn();
        let mut full = false;
        for seq in next..next + len {
            match txn.offer(&item(seq)) {
                Ok(_) => {}
                Err(Error::Full { .. }) => {
                    full = true;
                    break;
                }
                Err(e) => return Err(format!("txn offer {seq}: {e}")),
            }
        }
        if full {
            drop(txn); // rolled back; poll to make room
            if queue.count() == 0 {
                return Err("full with an empty queue".into());
            }
            continue;
        }
        txn.commit().map_err(|e| format!("commit {next}: {e}"))?;
        say(&format!("C {next} {len}"));
        next += len;
    }
    Err("not killed in time".into())
}

fn kill9_during_transactions() {
    for format in [Format::V1, Format::V2] {
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue");
        DuraQueue::open_with(&path, &OpenOptions::new(RING).format(format))
            .and_then(DuraQueue::close)
            .expect("create the queue");
        let seed = seed();
        let mut rng = Rng::new(seed);
        let (mut head, mut next) = (0u64, 0u64);
        let (mut commits, mut in_flight_commits, mut offered_bytes) = (0u64, 0, 0u64);
        let rounds = rounds();
        for round in 0..rounds {
            let delay = Duration::from_millis(1 + rng.below(50));
            let lines = run_and_kill(
                "txn",
                &[
                    ("DQ_PATH", path.display().to_string()),
                    ("DQ_NEXT", next.to_string()),
                    ("DQ_HEAD", head.to_string()),
                    ("DQ_SEED", rng.next().to_string()),
                ],
                delay,
            );
            let committed_end = consecutive(&lines, "C", next);
            let polled_end = consecutive(&lines, "P", head);
            commits += lines.iter().filter(|l| l.starts_with("C ")).count() as u64;
            offered_bytes += (next..committed_end)
                .map(|s| record_size(item(s).len() as u64))
                .sum::<u64>();
            let items = recovered(&path, format);
            let mut firsts = vec![polled_end];
            if polled_end < committed_end {
                firsts.push(polled_end + 1);
            }
            // All or nothing: the transaction in flight is wholly present or wholly absent.
            let in_flight_end = committed_end + txn_len(committed_end);
            let Some((first, end)) = match_run(&items, &firsts, &[committed_end, in_flight_end])
            else {
                panic!(
                    "{} round {round} (seed {seed}, killed after {delay:?}): acknowledged polls \
                     end at {polled_end}, acknowledged commits end at {committed_end}, the \
                     transaction in flight ends at {in_flight_end}; recovered: {}",
                    format_name(format),
                    describe(&items)
                );
            };
            in_flight_commits += usize::from(end > committed_end);
            (head, next) = (first, end);
        }
        println!(
            "    {} kill -9 during transactions: {rounds} rounds (seed {seed}), {commits} \
             commits, {next} items ({:.1} laps); in flight at the kill and recovered whole: \
             {in_flight_commits}; {:.1} s",
            format_name(format),
            offered_bytes as f64 / RING as f64,
            started.elapsed().as_secs_f64()
        );
    }
}

// ---- kill -9 of a group-committing shared writer -----------------------------------------

/// Threads of the shared writer child.
const THREADS: u32 = 8;

/// Ring of the shared-writer test: nothing polls, so it must hold a whole round.
const SHARED_RING: u64 = 8 << 20;

/// Item `i` of thread `t`: thread and index, then a pattern (8..=64 bytes).
fn shared_item(t: u32, i: u32) -> Vec<u8> {
    let key = u64::from(t) << 32 | u64::from(i);
    let len = 8 + (mix(key) % 57) as usize;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&t.to_le_bytes());
    out.extend_from_slice(&i.to_le_bytes());
    let mut state = key;
    out.extend((8..len).map(|_| {
        state = mix(state);
        state as u8
    }));
    out
}

/// Child `shared`: `THREADS` threads offer through one `SharedWriter`, printing `<t> <i>`
/// after each acknowledged offer.
fn child_shared() -> Result<(), String> {
    let path = PathBuf::from(std::env::var("DQ_PATH").map_err(|e| e.to_string())?);
    let queue = DuraQueue::open_with(&path, &OpenOptions::new(SHARED_RING).create(false))
        .map_err(|e| format!("open: {e}"))?;
    let writer = Arc::new(SharedWriter::new(queue));
    say("R");
    let deadline = Instant::now() + CHILD_LIMIT;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || -> Result<(), String> {
                let mut i = 0u32;
                while Instant::now() < deadline {
                    match writer.offer_durable(&shared_item(t, i)) {
                        Ok(_) => say(&format!("{t} {i}")),
                        Err(Error::Full { .. }) => {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                        Err(e) => return Err(format!("thread {t} offer {i}: {e}")),
                    }
                    i += 1;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| "a thread panicked".to_string())??;
    }
    Err("not killed in time".into())
}

fn kill9_shared_writer_group_commit() {
    let started = Instant::now();
    let seed = seed();
    let mut rng = Rng::new(seed);
    let rounds = rounds();
    let (mut acknowledged, mut in_flight) = (0u64, 0u64);
    for round in 0..rounds {
        // Alternate the formats; a fresh file each round.
        let format = if round % 2 == 0 {
            Format::V1
        } else {
            Format::V2
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("queue");
        DuraQueue::open_with(&path, &OpenOptions::new(SHARED_RING).format(format))
            .and_then(DuraQueue::close)
            .expect("create the queue");
        let delay = Duration::from_millis(1 + rng.below(50));
        let lines = run_and_kill("shared", &[("DQ_PATH", path.display().to_string())], delay);
        // Acknowledged items per thread: they must be 0, 1, 2, ... in the order printed.
        let mut acked: BTreeMap<u32, u32> = BTreeMap::new();
        for line in &lines {
            let mut parts = line.split(' ').map(|p| p.parse::<u32>());
            let (Some(Ok(t)), Some(Ok(i)), None) = (parts.next(), parts.next(), parts.next())
            else {
                panic!("bad line {line:?}");
            };
            let count = acked.entry(t).or_default();
            assert_eq!(i, *count, "thread {t} acknowledged out of order");
            *count += 1;
        }
        acknowledged += acked.values().map(|&c| u64::from(c)).sum::<u64>();
        let items = recovered(&path, format);
        let mut present: BTreeMap<u32, u32> = BTreeMap::new();
        for (k, it) in items.iter().enumerate() {
            let word = |at: usize| {
                it.get(at..at + 4)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            };
            let (Some(t), Some(i)) = (word(0), word(4)) else {
                panic!("round {round}: item {k} of {} bytes is no item", it.len());
            };
            assert!(
                t < THREADS && *it == shared_item(t, i),
                "round {round} ({}): item {k} (thread {t}, index {i}) is not what was written",
                format_name(format)
            );
            let count = present.entry(t).or_default();
            assert_eq!(
                i,
                *count,
                "round {round} ({}): thread {t}'s items out of order or with a gap at item {k}",
                format_name(format)
            );
            *count += 1;
        }
        for t in 0..THREADS {
            let (a, p) = (
                acked.get(&t).copied().unwrap_or(0),
                present.get(&t).copied().unwrap_or(0),
            );
            assert!(
                p == a || p == a + 1,
                "round {round} ({}, seed {seed}, killed after {delay:?}): thread {t} had {a} \
                 acknowledged items, {p} recovered",
                format_name(format)
            );
            in_flight += u64::from(p - a);
        }
    }
    println!(
        "    shared writer kill -9: {rounds} rounds (seed {seed}), {acknowledged} acknowledged \
         items all recovered, {in_flight} more in flight recovered; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---- a commit killed between two header writes --------------------------------------

/// Ring of the mid-commit test: two pages; the second is cut off under the child.
const TWO_PAGES: u64 = 8192;

/// Child `txn-commit`: opens the queue, offers and polls `DQ_PRE` (comma-separated payload
/// lengths, may be empty), offers `DQ_SIZES` (item `j` is `j + 0xA0` repeated) in one
/// transaction, prints `R`, and commits when a line arrives on stdin (then prints `C`).
fn child_txn_commit() -> Result<(), String> {
    let path = PathBuf::from(std::env::var("DQ_PATH").map_err(|e| e.to_string())?);
    let sizes = std::env::var("DQ_SIZES").map_err(|e| e.to_string())?;
    let mut queue = DuraQueue::open_with(&path, &OpenOptions::new(TWO_PAGES).create(false))
        .map_err(|e| format!("open: {e}"))?;
    // Items offered and polled first, to move the tail of an empty queue (the cases that
    // use this have no items before).
    let pre = std::env::var("DQ_PRE").unwrap_or_default();
    let pre: Vec<&str> = pre.split(',').filter(|l| !l.is_empty()).collect();
    for len in &pre {
        let len: usize = len.parse().map_err(|_| format!("bad size {len}"))?;
        queue
            .offer(&vec![0x31; len])
            .map_err(|e| format!("offer before: {e}"))?;
    }
    for _ in &pre {
        queue.poll().map_err(|e| format!("poll before: {e}"))?;
    }
    let mut txn = queue.txn();
    for (j, len) in sizes.split(',').enumerate() {
        let len: usize = len.parse().map_err(|_| format!("bad size {len}"))?;
        txn.offer(&txn_item(j, len))
            .map_err(|e| format!("offer {j}: {e}"))?;
    }
    say("R");
    let mut go = String::new();
    std::io::stdin()
        .read_line(&mut go)
        .map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| format!("commit: {e}"))?;
    say("C");
    Ok(())
}

fn txn_item(j: usize, len: usize) -> Vec<u8> {
    vec![0xA0 + j as u8; len]
}

/// A commit publishes its records by writing their held-back headers; a kill between two of
/// those writes must not leave a part of the transaction visible. The kill lands at an
/// exact store: the ring's second page is cut off (truncated) under the child just before
/// it commits, so its first store to that page raises SIGBUS. The page is then restored
/// byte for byte, which leaves the file exactly as the child's memory stood at the fault.
///
/// Cases (ring of 8 KiB, items A and B in one transaction):
/// - a live item before, A's header on page 0, B's on page 1 (the fault hits B's header);
/// - an empty queue, the same layout;
/// - a live item before, A's header on page 1 at the ring end, B wrapped onto page 0;
/// - an empty queue (the child offered and polled two items) with the same layout: the
///   first header is published last, so v2 hides B; in v1 B is a chain of its own (the
///   format keeps no head position), a documented limit that the test accepts for v1 only.
fn kill_mid_commit_is_all_or_nothing() {
    struct Case {
        label: &'static str,
        /// Payload lengths offered (and committed) before, and how many of them are polled.
        before: &'static [usize],
        polled: usize,
        /// Payload lengths the child offers and polls before its transaction.
        child_before: &'static str,
        txn: &'static [usize],
    }
    let cases = [
        Case {
            label: "live item before, A on page 0, B on page 1",
            before: &[3936],
            polled: 0,
            child_before: "",
            txn: &[64, 64],
        },
        Case {
            label: "empty queue, A on page 0, B on page 1",
            before: &[],
            polled: 0,
            child_before: "",
            txn: &[4031, 64],
        },
        Case {
            label: "live item before, A on page 1, B on page 0",
            before: &[3936, 3936],
            polled: 1,
            child_before: "",
            txn: &[64, 64],
        },
        Case {
            label: "empty queue, A on page 1, B on page 0",
            before: &[],
            polled: 0,
            child_before: "3936,3936",
            txn: &[64, 64],
        },
    ];
    let mut failures = Vec::new();
    for format in [Format::V1, Format::V2] {
        for case in &cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("queue");
            let mut queue =
                DuraQueue::open_with(&path, &OpenOptions::new(TWO_PAGES).format(format))
                    .expect("create");
            let before: Vec<Vec<u8>> = (0..case.before.len())
                .map(|i| vec![0x11 + i as u8; case.before[i]])
                .collect();
            for it in &before {
                queue.offer(it).expect("offer before");
            }
            for _ in 0..case.polled {
                assert!(queue.poll().expect("poll before"));
            }
            queue.close().expect("close");

            let sizes: Vec<String> = case.txn.iter().map(usize::to_string).collect();
            let (mut child, stdout, stdin) = spawn_child_with(
                "txn-commit",
                &[
                    ("DQ_PATH", path.display().to_string()),
                    ("DQ_SIZES", sizes.join(",")),
                    ("DQ_PRE", case.child_before.to_string()),
                ],
                true,
            );
            let (lines, reader) = line_reader(stdout);
            let ready = lines.recv_timeout(READY_LIMIT);
            assert_eq!(ready.as_deref(), Ok("R"), "{}: child not ready", case.label);
            // The ring's second page: file bytes from here on.
            let ring_start = if format == Format::V2 { 4096 } else { 0 };
            let cut = ring_start + 4096;
            let saved = std::fs::read(&path).expect("read the file");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open for truncation");
            file.set_len(cut).expect("cut the second page");
            let mut stdin = stdin.expect("piped stdin");
            stdin
                .write_all(b"commit\n")
                .expect("tell the child to commit");
            drop(stdin);
            let deadline = Instant::now() + READY_LIMIT;
            let status = loop {
                if let Some(status) = child.child().try_wait().expect("try_wait") {
                    break status;
                }
                assert!(Instant::now() < deadline, "{}: child hangs", case.label);
                std::thread::sleep(Duration::from_millis(5));
            };
            reader.join().expect("line reader");
            let said: Vec<String> = lines.try_iter().collect();
            assert_eq!(
                status.signal(),
                Some(libc::SIGBUS),
                "{} {}: the commit should fault on the cut page (exit {status}, said {said:?})",
                format_name(format),
                case.label
            );
            file.set_len(saved.len() as u64)
                .expect("restore the length");
            file.write_all_at(&saved[cut as usize..], cut)
                .expect("restore the second page");
            drop(file);

            let items = recovered(&path, format);
            let live = &before[case.polled..];
            let txn: Vec<Vec<u8>> = case
                .txn
                .iter()
                .enumerate()
                .map(|(j, &len)| txn_item(j, len))
                .collect();
            let whole: Vec<Vec<u8>> = live.iter().chain(&txn).cloned().collect();
            let outcome = if items == live {
                "none of the transaction"
            } else if items == whole {
                "all of the transaction"
            } else if format == Format::V1 && live.is_empty() && items == txn[1..] {
                // v1 keeps no head position: on an empty ring the records after the first
                // form a chain of their own (documented limit of the format; v2 is exact).
                "the records after the first (v1 on an empty ring: documented)"
            } else {
                failures.push(format!(
                    "{} {}: {} of {} transaction items recovered after the live ones \
                     (recovered {} items, {} live before)",
                    format_name(format),
                    case.label,
                    items.len().saturating_sub(live.len()),
                    txn.len(),
                    items.len(),
                    live.len()
                ));
                "PART of the transaction"
            };
            println!(
                "    {} {}: killed by SIGBUS mid-commit; recovered {outcome}",
                format_name(format),
                case.label
            );
        }
    }
    assert!(
        failures.is_empty(),
        "a commit killed between two header writes left a partial transaction:\n  {}",
        failures.join("\n  ")
    );
}

// ---- image mutation sweeps (S1, S2) -------------------------------------------------------

/// Ring of the image sweeps: one page.
const IMAGE_RING: u64 = 4096;

/// A queue file with three records of 64-byte payloads.
struct Image {
    bytes: Vec<u8>,
    /// The file offset of every byte of each record, in record order (160 per record).
    records: Vec<Vec<usize>>,
    payloads: Vec<Vec<u8>>,
    label: String,
}

/// Builds the image: at the ring start, or (`straddle`) after 23 consumed records so that
/// the third record runs past the ring end.
fn build_image(dir: &Path, format: Format, straddle: bool) -> Image {
    let label = format!(
        "{} {}",
        format_name(format),
        if straddle { "straddling" } else { "at start" }
    );
    let path = dir.join(label.replace(' ', "-"));
    let mut queue = DuraQueue::open_with(&path, &OpenOptions::new(IMAGE_RING).format(format))
        .expect("create the image queue");
    if straddle {
        for _ in 0..23 {
            queue.offer(&[0x5A; 64]).expect("offer filler");
        }
        for _ in 0..23 {
            assert!(queue.poll().expect("poll filler"));
        }
    }
    let payloads: Vec<Vec<u8>> = (0..3u8)
        .map(|r| {
            (0..64u8)
                .map(|i| r.wrapping_mul(101) ^ i.wrapping_mul(37) ^ 0x42)
                .collect()
        })
        .collect();
    for p in &payloads {
        queue.offer(p).expect("offer");
    }
    let base = if format == Format::V2 { 4096 } else { 0 };
    let records: Vec<Vec<usize>> = queue
        .records()
        .map(|(_, offset, payload)| {
            let size = record_size(payload.len() as u64);
            (0..size)
                .map(|j| (base + (offset - base + j) % IMAGE_RING) as usize)
                .collect()
        })
        .collect();
    queue.close().expect("close");
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.len() == 160));
    if straddle {
        let last = &records[2];
        assert!(
            last[0] > last[159],
            "the third record should straddle the ring end"
        );
    }
    Image {
        bytes: std::fs::read(&path).expect("read the image"),
        records,
        payloads,
        label,
    }
}

/// What opening a damaged copy delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivered {
    /// Exactly the written items `0..k`.
    Prefix(usize),
    /// Written items `start..start + len`, `start > 0`, byte-exact (v1 can lose a damaged
    /// first record: the format keeps no head position).
    LaterRun(usize),
    /// The written items of a run, except one of the same length with other bytes: the
    /// index of that item.
    Modified(usize),
    /// Anything else: items that were never written, duplicates, reordering.
    Corrupt,
}

fn classify(written: &[Vec<u8>], got: &[Vec<u8>]) -> Delivered {
    for start in 0..=written.len() {
        if got.len() <= written.len() - start && got == &written[start..start + got.len()] {
            return if start == 0 || got.is_empty() {
                Delivered::Prefix(got.len())
            } else {
                Delivered::LaterRun(start)
            };
        }
    }
    for start in 0..written.len() {
        if got.len() > written.len() - start {
            continue;
        }
        let run = &written[start..start + got.len()];
        let differing: Vec<usize> = (0..got.len()).filter(|&i| run[i] != got[i]).collect();
        if let [i] = differing[..]
            && run[i].len() == got[i].len()
        {
            return Delivered::Modified(start + i);
        }
    }
    Delivered::Corrupt
}

/// Writes `bytes` to `path`, opens it (no lock, no creation) inside `catch_unwind`.
/// `Err` is a description of an error or a panic.
fn open_copy(path: &Path, bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    std::fs::write(path, bytes).expect("write the damaged copy");
    let opened = panic::catch_unwind(AssertUnwindSafe(|| {
        DuraQueue::open_with(path, &OpenOptions::new(0).create(false).lock(false))
            .map(|q| q.iter().map(<[u8]>::to_vec).collect::<Vec<_>>())
    }));
    match opened {
        Ok(Ok(items)) => Ok(items),
        Ok(Err(e)) => Err(format!("error: {e}")),
        Err(panic) => Err(format!(
            "PANIC: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("?")
        )),
    }
}

/// Counts of one sweep.
#[derive(Default)]
struct Tally {
    cases: usize,
    prefix: [usize; 4],
    later_run: usize,
    /// Payload flips delivered as a modified item (v1: corrupt accepted, no checksum).
    payload_modified: usize,
    /// Failures: anything not allowed.
    bad: Vec<String>,
}

impl Tally {
    fn corrupt_accepted(&self) -> usize {
        self.payload_modified + self.bad.iter().filter(|b| b.contains("corrupt")).count()
    }

    fn summary(&self) -> String {
        format!(
            "{} cases: prefix of 0/1/2/3 items {:?}, later run {}, payload-modified {}, \
             corrupt accepted {}, failures {}",
            self.cases,
            self.prefix,
            self.later_run,
            self.payload_modified,
            self.corrupt_accepted(),
            self.bad.len()
        )
    }

    fn assert_clean(&self, what: &str) {
        assert!(
            self.bad.is_empty(),
            "{what}: {} failures, first ones:\n  {}",
            self.bad.len(),
            self.bad
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}

/// S1: flips each record byte with `mask` (0xff, or each single bit when `bits`) in a copy.
fn flip_sweep(dir: &Path, image: &Image, format: Format, bits: bool) -> Tally {
    let copy = dir.join("copy");
    let masks: Vec<u8> = if bits {
        (0..8).map(|b| 1 << b).collect()
    } else {
        vec![0xff]
    };
    let mut tally = Tally::default();
    for (r, record) in image.records.iter().enumerate() {
        for (j, &at) in record.iter().enumerate() {
            for &mask in &masks {
                tally.cases += 1;
                let mut bytes = image.bytes.clone();
                bytes[at] ^= mask;
                let case = format!(
                    "{}: record {r} byte {j} (file offset {at}) ^ {mask:#04x}",
                    image.label
                );
                let got = match open_copy(&copy, &bytes) {
                    Ok(got) => got,
                    Err(e) => {
                        tally.bad.push(format!("{case}: {e}"));
                        continue;
                    }
                };
                let in_payload = (32..96).contains(&j);
                match (classify(&image.payloads, &got), format) {
                    // v2: the damaged record and everything after it is dropped, nothing else.
                    (Delivered::Prefix(k), Format::V2) if k == r => tally.prefix[k] += 1,
                    (Delivered::Prefix(k), Format::V1) => tally.prefix[k] += 1,
                    (Delivered::LaterRun(_), Format::V1) => tally.later_run += 1,
                    (Delivered::Modified(i), Format::V1) if i == r && in_payload => {
                        tally.payload_modified += 1;
                    }
                    (Delivered::Corrupt | Delivered::Modified(_), _) => tally.bad.push(format!(
                        "{case}: corrupt accepted: {} items delivered",
                        got.len()
                    )),
                    (other, _) => tally.bad.push(format!("{case}: delivered {other:?}")),
                }
            }
        }
    }
    tally
}

fn sweep_s1_flips_v1() {
    let dir = tempfile::tempdir().expect("tempdir");
    for straddle in [false, true] {
        let image = build_image(dir.path(), Format::V1, straddle);
        for bits in [false, true] {
            let tally = flip_sweep(dir.path(), &image, Format::V1, bits);
            println!(
                "    S1 {} {}: {}",
                image.label,
                if bits { "bit flips" } else { "byte flips" },
                tally.summary()
            );
            tally.assert_clean(&image.label);
            assert!(
                tally.payload_modified <= 192 * if bits { 8 } else { 1 },
                "more modified payloads than payload flips"
            );
        }
    }
}

fn sweep_s1_flips_v2() {
    let dir = tempfile::tempdir().expect("tempdir");
    for straddle in [false, true] {
        let image = build_image(dir.path(), Format::V2, straddle);
        for bits in [false, true] {
            let tally = flip_sweep(dir.path(), &image, Format::V2, bits);
            println!(
                "    S1 {} {}: {}",
                image.label,
                if bits { "bit flips" } else { "byte flips" },
                tally.summary()
            );
            tally.assert_clean(&image.label);
            assert_eq!(tally.corrupt_accepted(), 0, "v2 accepted corrupt items");
        }
    }
}

/// S2: the last record persisted only as a prefix of `cut` bytes (the rest zero).
fn sweep_s2_torn_last_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("copy");
    for format in [Format::V1, Format::V2] {
        for straddle in [false, true] {
            let image = build_image(dir.path(), format, straddle);
            let mut tally = Tally::default();
            let last = &image.records[2];
            for cut in 0..=last.len() {
                tally.cases += 1;
                let mut bytes = image.bytes.clone();
                for &at in &last[cut..] {
                    bytes[at] = 0;
                }
                let case = format!("{}: last record cut at {cut}", image.label);
                match open_copy(&copy, &bytes) {
                    Err(e) => tally.bad.push(format!("{case}: {e}")),
                    Ok(got) => match classify(&image.payloads, &got) {
                        Delivered::Prefix(k @ (2 | 3)) => tally.prefix[k] += 1,
                        Delivered::Corrupt | Delivered::Modified(_) => tally.bad.push(format!(
                            "{case}: corrupt accepted: {} items delivered",
                            got.len()
                        )),
                        other => tally.bad.push(format!("{case}: delivered {other:?}")),
                    },
                }
            }
            println!("    S2 {}: {}", image.label, tally.summary());
            tally.assert_clean(&image.label);
            assert_eq!(tally.corrupt_accepted(), 0);
            assert_eq!(tally.prefix[3] + tally.prefix[2], last.len() + 1);
            assert!(
                tally.prefix[3] >= 1,
                "the complete record must be delivered"
            );
        }
    }
}

/// S3 and S4 (spec §5.3): a 1500-byte record whose 512-byte sectors reached the disk in any
/// subset, written over zeros (S3, a fresh ring) or over a consumed older lap (S4). Each
/// subset is a crash image; v2 must deliver the record exactly or not at all, v1 (no
/// checksum) is counted.
fn sweep_s3_s4_torn_sectors() {
    const SECTOR: usize = 512;
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("copy");
    let item = |tag: u8| -> Vec<u8> { (0..1500).map(|i| tag ^ (i as u8)).collect() };
    for format in [Format::V1, Format::V2] {
        for (sweep, laps) in [("S3 over zeros", 0usize), ("S4 over a consumed lap", 3)] {
            let path = dir.path().join(format!("{}-{laps}", format_name(format)));
            let mut queue = DuraQueue::open_with(&path, &OpenOptions::new(4096).format(format))
                .expect("create");
            // Older laps: offered and consumed, so the new record lands on their bytes.
            for lap in 0..laps {
                queue.offer(&item(0x40 + lap as u8)).expect("older offer");
                assert!(queue.poll().expect("older poll"));
            }
            let before = std::fs::read(&path).expect("read before");
            let new = item(0x99);
            queue.offer(&new).expect("the new record");
            queue.close().expect("close");
            let after = std::fs::read(&path).expect("read after");
            let sectors: Vec<usize> = (0..after.len().div_ceil(SECTOR))
                .filter(|&k| {
                    let range = k * SECTOR..((k + 1) * SECTOR).min(after.len());
                    before[range.clone()] != after[range]
                })
                .collect();
            let mut tally = Tally::default();
            for subset in 0u32..1 << sectors.len() {
                tally.cases += 1;
                let mut bytes = before.clone();
                for (bit, &k) in sectors.iter().enumerate() {
                    if subset & (1 << bit) != 0 {
                        let range = k * SECTOR..((k + 1) * SECTOR).min(after.len());
                        bytes[range.clone()].copy_from_slice(&after[range]);
                    }
                }
                let case = format!(
                    "{} {sweep}: sectors {subset:#b} of {sectors:?}",
                    format_name(format)
                );
                match open_copy(&copy, &bytes) {
                    Err(e) => tally.bad.push(format!("{case}: {e}")),
                    Ok(got) => match classify(std::slice::from_ref(&new), &got) {
                        Delivered::Prefix(k @ (0 | 1)) => tally.prefix[k] += 1,
                        Delivered::Modified(_) if format == Format::V1 => {
                            tally.payload_modified += 1
                        }
                        other => tally.bad.push(format!(
                            "{case}: corrupt accepted: {other:?} ({} items)",
                            got.len()
                        )),
                    },
                }
            }
            println!("    {} {sweep}: {}", format_name(format), tally.summary());
            tally.assert_clean(&format!("{} {sweep}", format_name(format)));
            assert_eq!(
                tally.prefix[1],
                1.max(tally.prefix[1]),
                "the whole record is delivered"
            );
            if format == Format::V2 {
                assert_eq!(tally.corrupt_accepted(), 0, "v2 delivers no torn record");
            }
        }
    }
}

// ---- bad input files ----------------------------------------------------------------------

/// Asserts `result` is `Error::Corrupt` (or `Io` when `io`) naming `path`, and returns its
/// message.
fn expect_refused(result: duraqueue::Result<DuraQueue>, path: &Path, io: bool) -> String {
    let error = match result {
        Ok(q) => panic!(
            "{}: opened ({:?}, {} items) instead of failing",
            path.display(),
            q.format(),
            q.count()
        ),
        Err(e) => e,
    };
    let message = error.to_string();
    match &error {
        Error::Corrupt { path: p, .. } if !io => assert_eq!(p, path),
        Error::Io { path: p, .. } if io => assert_eq!(p, path),
        other => panic!("{}: unexpected error {other:?}", path.display()),
    }
    assert!(
        message.contains(&path.display().to_string()),
        "the message does not name the file: {message}"
    );
    message
}

/// Opens `path` every way that must not create it; all must be refused. Never a panic.
fn refused_every_way(path: &Path, io: bool) {
    let attempts: [(&str, OpenOptions); 3] = [
        ("writer", OpenOptions::new(0).create(false)),
        ("reader", OpenOptions::new(0).create(false).reader(true)),
        ("unlocked", OpenOptions::new(0).create(false).lock(false)),
    ];
    for (how, options) in attempts {
        let result = panic::catch_unwind(AssertUnwindSafe(|| DuraQueue::open_with(path, &options)))
            .unwrap_or_else(|_| panic!("{}: open as {how} panicked", path.display()));
        let message = expect_refused(result, path, io);
        if how == "writer" {
            println!("    {message}");
        }
    }
}

/// A v2 queue file with a 4 KiB ring and a few items; returns its bytes.
fn v2_file(path: &Path) -> Vec<u8> {
    let mut queue =
        DuraQueue::open_with(path, &OpenOptions::new(4096).format(Format::V2)).expect("create");
    queue.offer_batch(&[b"one", b"two"]).expect("offer");
    assert!(queue.poll().expect("poll"));
    queue.close().expect("close");
    std::fs::read(path).expect("read")
}

fn bad_input_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    };

    refused_every_way(&file("empty", &[]), false);
    refused_every_way(&file("short", &[b'x'; 20]), false);
    refused_every_way(&file("one-slot", &[0; 32]), false);
    // 8224 is a multiple of 32, not of the page size.
    refused_every_way(&file("not-a-page", &vec![0; 8224 + 1]), false);
    refused_every_way(&dir.path().join("missing"), true);

    // v2: both superblock slots damaged (their CRCs, then their generations).
    let good = v2_file(&dir.path().join("v2-good"));
    for (name, offsets) in [
        ("v2-both-crcs", [60, 512 + 60]),
        ("v2-both-generations", [24, 512 + 24]),
    ] {
        let mut bytes = good.clone();
        for at in offsets {
            bytes[at] ^= 0x01;
        }
        refused_every_way(&file(name, &bytes), false);
    }
    // Either slot alone damaged: the other copy opens the queue. Slot 0 holds the newest
    // checkpoint (generation 2, after the poll); slot 1 the one before it (the poll is
    // delivered again: at-least-once).
    for (at, expected) in [
        (60, &[&b"one"[..], b"two"][..]),
        (512 + 60, &[&b"two"[..]][..]),
    ] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x01;
        let path = file("v2-one-slot", &bytes);
        let queue = DuraQueue::open_with(&path, &OpenOptions::new(0).create(false))
            .unwrap_or_else(|e| panic!("one damaged superblock slot (byte {at}): {e}"));
        assert_eq!(
            queue.iter().collect::<Vec<_>>(),
            expected,
            "damaged byte {at}"
        );
    }
    // v2: truncated below its ring, and below its superblock page.
    refused_every_way(&file("v2-short-ring", &good[..4096 + 2048]), false);
    refused_every_way(&file("v2-short-page", &good[..100]), false);
}

/// A v2 file whose superblock magic is damaged must not pass for a v1 file: a v1 writer
/// would then write over the superblock page and lose the queue. With slot 1 intact, the
/// queue opens from it (both copies exist for this) or is refused; with both magics
/// damaged, it is refused.
fn v2_damaged_magic_is_not_taken_for_v1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = v2_file(&dir.path().join("v2-good"));
    let mut failures = Vec::new();
    for (name, offsets, slot1_intact) in [
        ("v2-slot0-magic", &[0usize][..], true),
        ("v2-both-magics", &[0, 512][..], false),
    ] {
        let mut bytes = good.clone();
        for &at in offsets {
            bytes[at] ^= 0x01;
        }
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).expect("write");
        let opened = panic::catch_unwind(AssertUnwindSafe(|| {
            DuraQueue::open_with(&path, &OpenOptions::new(0).create(false))
        }))
        .unwrap_or_else(|_| panic!("{name}: open panicked"));
        match opened {
            Ok(queue) if queue.format() == Format::V2 && slot1_intact => {
                // Slot 1 holds generation 1: before the poll, both items.
                let items: Vec<&[u8]> = queue.iter().collect();
                if items != [&b"one"[..], b"two"] {
                    failures.push(format!("{name}: opened from slot 1 with {items:?}"));
                }
            }
            Ok(queue) => failures.push(format!(
                "{name}: opened as {:?} with a ring of {} bytes and {} items (the v2 items are \
                 gone, and the first v1 offer overwrites the superblock page)",
                queue.format(),
                queue.size(),
                queue.count()
            )),
            Err(e @ Error::Corrupt { .. }) => {
                assert!(e.to_string().contains(&path.display().to_string()));
            }
            Err(e) => failures.push(format!("{name}: unexpected error {e:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- child processes ----------------------------------------------------------------------

fn child_main(role: &str) -> ExitCode {
    let result = match role {
        "offer-poll" => child_offer_poll(),
        "txn" => child_txn(),
        "shared" => child_shared(),
        "txn-commit" => child_txn_commit(),
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
