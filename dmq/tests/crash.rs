//! Crash tests: writer and reader child processes killed with SIGKILL at every failpoint of
//! the switch and of the append, and at random moments; then nothing acknowledged is lost,
//! nothing committed is delivered twice, nothing torn is delivered, and each writer's order
//! holds. With `Commit::OnReceive` readers killed at the switch failpoints and at random:
//! nothing delivered twice, and at most the one message in flight lost per kill. Plus FIFO
//! across 1,000 switches with 4 writers.
//!
//! `DMQ_CRASH_ROUNDS=N` repeats every scenario N times with new seeds (default 1);
//! `DMQ_CRASH_SEED` fixes the first seed.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dmq::{Commit, OpenOptions, Queue, Wait};
use support::{Trial, mix, say};

const ROLE: &str = "DMQ_CRASH_ROLE";
/// Each scenario must finish within this (a bound, not a measurement).
const LIMIT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    support::main(
        &[
            Trial {
                name: "kill_reader_at_each_switch_failpoint",
                run: switch_failpoints,
            },
            Trial {
                name: "kill_writers_at_each_append_failpoint",
                run: append_failpoints,
            },
            Trial {
                name: "kill_everyone_at_random_points",
                run: random_kills,
            },
            Trial {
                name: "kill_on_receive_readers_at_random_points",
                run: on_receive_kills,
            },
            Trial {
                name: "fifo_across_1000_switches_with_4_writers",
                run: fifo_across_switches,
            },
        ],
        ROLE,
        child,
    )
}

fn options() -> OpenOptions {
    // Only this crate's writers (Flock) take part: no grace is needed, and a short one
    // keeps many switches quick. Readers commit explicitly unless the scenario says
    // `DMQ_CRASH_COMMIT=on-receive`.
    let commit = match std::env::var("DMQ_CRASH_COMMIT").as_deref() {
        Ok("on-receive") => Commit::OnReceive,
        _ => Commit::Explicit,
    };
    OpenOptions::new()
        .commit(commit)
        .switch_grace(Duration::from_millis(1))
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child without {name}"))
}

// ---- children ---------------------------------------------------------------------------

fn child(role: &str) -> ExitCode {
    let base = PathBuf::from(env("DMQ_CRASH_BASE"));
    let queue = Queue::open_with(&base, &options()).expect("open");
    match role {
        "writer" => {
            let name = env("DMQ_CRASH_NAME");
            let count: u64 = env("DMQ_CRASH_COUNT").parse().unwrap();
            let mut writer = queue.writer().expect("writer");
            for seq in 0..count {
                writer
                    .send(format!("{name}-{seq:08}").as_bytes())
                    .expect("send");
                say(&format!("ok {seq}"));
                // Paced, so that the reader catches up and switches often while writers run.
                if seq % 16 == 15 {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            ExitCode::SUCCESS
        }
        "reader" => {
            let log = PathBuf::from(env("DMQ_CRASH_LOG"));
            let inc = env("DMQ_CRASH_INC");
            let every: u64 = env("DMQ_CRASH_COMMIT_EVERY").parse().unwrap();
            let stop = base.with_file_name("stop");
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            let mut reader = queue.reader().expect("reader");
            let mut n = 0u64;
            let mut idle = 0;
            loop {
                match reader
                    .recv_timeout(Duration::from_millis(50))
                    .expect("recv")
                {
                    Some(m) => {
                        idle = 0;
                        let mut line = format!("{inc} ").into_bytes();
                        line.extend_from_slice(&m);
                        line.push(b'\n');
                        // "Processing": one append, then the commit (at least once).
                        log.write_all(&line).unwrap();
                        n += 1;
                        if n.is_multiple_of(every) {
                            reader.commit().expect("commit");
                        }
                    }
                    None => {
                        reader.commit().expect("commit");
                        if stop.exists() {
                            idle += 1;
                            if idle >= 3 {
                                return ExitCode::SUCCESS;
                            }
                        }
                    }
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

// ---- the parent's side --------------------------------------------------------------------

/// A child killed and reaped when dropped, also when a test fails.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Scenario {
    writers: usize,
    per_writer: u64,
    commit_every: u64,
    /// `Commit::OnReceive` readers (at most once) instead of explicit commits.
    on_receive: bool,
    reader_failpoints: &'static [&'static str],
    writer_failpoints: &'static [&'static str],
    random_kills: bool,
    /// Keep sending until at least this many readers crashed.
    min_reader_kills: u64,
    /// ... and this many writers.
    min_writer_kills: u64,
    seed: u64,
}

struct WriterProc {
    proc: Proc,
    name: String,
    id: usize,
    remaining: u64,
}

struct Run {
    dir: tempfile::TempDir,
    base: PathBuf,
    log: PathBuf,
    /// Last acknowledged sequence number per writer incarnation.
    acked: Arc<Mutex<HashMap<String, Option<u64>>>>,
    /// Reader incarnations killed (their numbers).
    killed_readers: HashSet<u64>,
    rng: u64,
    /// Readers commit on receive (at most once).
    on_receive: bool,
}

impl Run {
    fn new(seed: u64) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("q");
        let log = dir.path().join("delivered.log");
        Queue::open_with(&base, &options()).unwrap();
        Run {
            base,
            log,
            dir,
            acked: Arc::default(),
            killed_readers: HashSet::new(),
            rng: seed,
            on_receive: false,
        }
    }

    fn random(&mut self, below: u64) -> u64 {
        self.rng = mix(self.rng);
        self.rng % below.max(1)
    }

    fn command(&self, role: &str, failpoint: Option<(&str, u64)>) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(ROLE, role)
            .env("DMQ_CRASH_BASE", &self.base)
            .env_remove("DMQ_FAILPOINT")
            .env_remove("DMQ_FAILPOINT_HIT")
            .env(
                "DMQ_CRASH_COMMIT",
                if self.on_receive {
                    "on-receive"
                } else {
                    "explicit"
                },
            )
            .stdin(Stdio::null());
        if let Some((name, hit)) = failpoint {
            cmd.env("DMQ_FAILPOINT", name)
                .env("DMQ_FAILPOINT_HIT", hit.to_string());
        }
        cmd
    }

    fn spawn_writer(&mut self, id: usize, inc: u64, count: u64, failpoints: &[&str]) -> WriterProc {
        let name = format!("w{id}.{inc}");
        // Half the incarnations run without a failpoint, so the work always finishes.
        let fp = if failpoints.is_empty() || self.random(2) == 0 {
            None
        } else {
            let at = failpoints[self.random(failpoints.len() as u64) as usize];
            Some((at, 1 + self.random(count.clamp(1, 300))))
        };
        let mut child = self
            .command("writer", fp)
            .env("DMQ_CRASH_NAME", &name)
            .env("DMQ_CRASH_COUNT", count.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        self.acked.lock().unwrap().insert(name.clone(), None);
        let acked = Arc::clone(&self.acked);
        let key = name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(seq) = line.strip_prefix("ok ") {
                    let seq: u64 = seq.parse().unwrap();
                    acked.lock().unwrap().insert(key.clone(), Some(seq));
                }
            }
        });
        WriterProc {
            proc: Proc { child },
            name,
            id,
            remaining: count,
        }
    }

    fn spawn_reader(&mut self, inc: u64, every: u64, failpoints: &[&str], draining: bool) -> Proc {
        // While draining, some incarnations run without a failpoint, so the drain finishes.
        let fp = if failpoints.is_empty() || (draining && self.random(4) == 0) {
            None
        } else {
            let at = failpoints[self.random(failpoints.len() as u64) as usize];
            Some((at, 1 + self.random(8)))
        };
        let child = self
            .command("reader", fp)
            .env("DMQ_CRASH_LOG", &self.log)
            .env("DMQ_CRASH_INC", inc.to_string())
            .env("DMQ_CRASH_COMMIT_EVERY", every.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Proc { child }
    }

    fn acked_count(&self, name: &str) -> u64 {
        self.acked
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .flatten()
            .map_or(0, |s| s + 1)
    }
}

fn run_scenario(s: &Scenario) -> String {
    let mut run = Run::new(s.seed);
    run.on_receive = s.on_receive;
    let started = Instant::now();
    let mut reader_inc = 0u64;
    let mut reader = run.spawn_reader(reader_inc, s.commit_every, s.reader_failpoints, false);
    let mut writer_inc = 0u64;
    let mut writers: Vec<WriterProc> = (0..s.writers)
        .map(|id| {
            writer_inc += 1;
            run.spawn_writer(id, writer_inc, s.per_writer, s.writer_failpoints)
        })
        .collect();
    let mut kills = 0u64;
    let mut writer_kills = 0u64;
    let mut respawns = 0u64;
    loop {
        assert!(
            started.elapsed() < LIMIT,
            "scenario did not finish in {LIMIT:?}"
        );
        if writers.is_empty() {
            if run.killed_readers.len() as u64 >= s.min_reader_kills
                && writer_kills >= s.min_writer_kills
            {
                break;
            }
            // Not enough reader crashes yet: another batch of writers.
            for id in 0..s.writers {
                writer_inc += 1;
                let w = run.spawn_writer(id, writer_inc, s.per_writer, s.writer_failpoints);
                writers.push(w);
            }
        }
        std::thread::sleep(Duration::from_millis(2 + run.random(20)));
        if s.random_kills && run.random(3) == 0 {
            // Kill someone: the reader or a writer.
            let victim = run.random(writers.len() as u64 + 1) as usize;
            if victim == writers.len() {
                let _ = reader.child.kill();
            } else {
                let _ = writers[victim].proc.child.kill();
            }
            kills += 1;
        }
        // Reap and respawn whatever ended.
        if let Some(status) = reader.child.try_wait().unwrap() {
            assert!(status.code().is_none(), "reader exited early: {status}");
            run.killed_readers.insert(reader_inc);
            reader_inc += 1;
            respawns += 1;
            reader = run.spawn_reader(reader_inc, s.commit_every, s.reader_failpoints, false);
        }
        let mut i = 0;
        while i < writers.len() {
            match writers[i].proc.child.try_wait().unwrap() {
                None => i += 1,
                Some(status) if status.success() => {
                    writers.swap_remove(i);
                }
                Some(status) => {
                    assert!(status.code().is_none(), "writer failed: {status}");
                    // Killed: a new incarnation sends what this one did not acknowledge.
                    std::thread::sleep(Duration::from_millis(20)); // let stdout be read
                    let w = writers.swap_remove(i);
                    writer_kills += 1;
                    let left = w.remaining - run.acked_count(&w.name);
                    respawns += 1;
                    if left > 0 {
                        writer_inc += 1;
                        let fresh = run.spawn_writer(w.id, writer_inc, left, s.writer_failpoints);
                        writers.push(fresh);
                    }
                }
            }
        }
    }
    // Writers are done: let the reader drain, then stop (respawning it if it is killed).
    std::fs::write(run.dir.path().join("stop"), b"").unwrap();
    loop {
        assert!(
            started.elapsed() < LIMIT,
            "the reader did not drain in {LIMIT:?}"
        );
        if let Some(status) = reader.child.try_wait().unwrap() {
            if status.success() {
                break;
            }
            run.killed_readers.insert(reader_inc);
            reader_inc += 1;
            reader = run.spawn_reader(reader_inc, s.commit_every, s.reader_failpoints, true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(reader);
    // Nothing left behind the reader's back.
    let queue = Queue::open_with(&run.base, &options()).unwrap();
    let mut last = queue.reader().unwrap();
    let mut rest = Vec::new();
    while let Some(m) = last.recv(Wait::NoWait).unwrap() {
        rest.push(String::from_utf8_lossy(&m).into_owned());
    }
    while let Some(m) = last.try_recv().unwrap() {
        rest.push(String::from_utf8_lossy(&m).into_owned());
    }
    assert!(
        rest.is_empty(),
        "undelivered after the final drain: {rest:?}"
    );
    let summary = if s.on_receive {
        verify_at_most_once(&run)
    } else {
        verify(&run, s.commit_every)
    };
    format!("{summary}; {writer_kills} writer deaths, {kills} random kills, {respawns} respawns")
}

/// Checks the delivery log against what the writers acknowledged.
fn verify(run: &Run, commit_every: u64) -> String {
    let text = std::fs::read_to_string(&run.log).unwrap_or_default();
    // (incarnation, payload) in delivery order.
    let mut lines: Vec<(u64, String)> = Vec::new();
    for line in text.lines() {
        let (inc, payload) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("torn log line {line:?}"));
        lines.push((inc.parse().unwrap(), payload.to_owned()));
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut per_writer: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut redelivered = 0usize;
    let mut i = 0;
    while i < lines.len() {
        let (inc, payload) = (&lines[i].0, lines[i].1.as_str());
        // Parse `w<id>.<inc>-<seq>`: anything else is torn or foreign.
        let (name, seq) = payload
            .split_once('-')
            .filter(|(n, s)| n.starts_with('w') && s.len() == 8)
            .unwrap_or_else(|| panic!("torn or foreign record delivered: {payload:?}"));
        let seq: u64 = seq
            .parse()
            .unwrap_or_else(|_| panic!("torn record delivered: {payload:?}"));
        if seen.contains(payload) {
            // Allowed only at the start of an incarnation after a killed one, for what the
            // killed one delivered after its last commit (at most `commit_every`).
            let first_of_inc = i == 0 || lines[i - 1].0 != *inc;
            let mut j = i;
            let mut k = 0usize;
            while j < lines.len() && lines[j].0 == *inc && seen.contains(lines[j].1.as_str()) {
                j += 1;
                k += 1;
            }
            assert!(
                first_of_inc && run.killed_readers.contains(&(inc - 1)),
                "duplicate delivery of {payload:?} not at a reader restart"
            );
            assert!(
                k as u64 <= commit_every,
                "{k} redelivered after a restart, more than the {commit_every} uncommitted"
            );
            // They were delivered before, consecutively and in this order (by the killed
            // incarnations, after their last commit).
            let again: Vec<&str> = lines[i..j].iter().map(|(_, p)| p.as_str()).collect();
            let first = lines[..i]
                .iter()
                .position(|(_, p)| p == again[0])
                .expect("seen before");
            let before: Vec<&str> = lines[first..i]
                .iter()
                .take(again.len())
                .map(|(_, p)| p.as_str())
                .collect();
            assert_eq!(
                before, again,
                "a redelivered block is not a run of earlier deliveries"
            );
            redelivered += k;
            i = j;
            continue;
        }
        seen.insert(payload);
        let seqs = per_writer.entry(name).or_default();
        if let Some(&last) = seqs.last() {
            assert!(
                seq == last + 1,
                "{name}: {seq} delivered after {last} (gap or reorder)"
            );
        } else {
            assert_eq!(seq, 0, "{name}: first delivery is {seq}");
        }
        seqs.push(seq);
        i += 1;
    }
    // Nothing acknowledged was lost: each writer incarnation's deliveries cover its acks.
    let acked = run.acked.lock().unwrap();
    let mut total_acked = 0;
    for (name, last) in acked.iter() {
        let Some(last) = last else { continue };
        total_acked += last + 1;
        let delivered = per_writer.get(name.as_str()).map_or(0, |s| s.len() as u64);
        assert!(
            delivered > *last,
            "{name}: acknowledged up to {last}, delivered only {delivered}"
        );
    }
    format!(
        "{} delivered ({total_acked} acknowledged), {redelivered} redelivered after {} reader kills",
        seen.len(),
        run.killed_readers.len()
    )
}

/// At most once (`Commit::OnReceive`): nothing is delivered twice, each writer's
/// deliveries keep their order, and no more acknowledged messages are missing than readers
/// were killed (a kill can take the one message its reader had received, and so committed,
/// but not yet logged).
fn verify_at_most_once(run: &Run) -> String {
    let text = std::fs::read_to_string(&run.log).unwrap_or_default();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut per_writer: HashMap<&str, Vec<u64>> = HashMap::new();
    for line in text.lines() {
        let (_, payload) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("torn log line {line:?}"));
        let (name, seq) = payload
            .split_once('-')
            .filter(|(n, s)| n.starts_with('w') && s.len() == 8)
            .unwrap_or_else(|| panic!("torn or foreign record delivered: {payload:?}"));
        let seq: u64 = seq
            .parse()
            .unwrap_or_else(|_| panic!("torn record delivered: {payload:?}"));
        assert!(seen.insert(payload), "{payload:?} delivered twice");
        let seqs = per_writer.entry(name).or_default();
        if let Some(&last) = seqs.last() {
            assert!(seq > last, "{name}: {seq} delivered after {last}");
        }
        seqs.push(seq);
    }
    let acked = run.acked.lock().unwrap();
    let mut missing = 0u64;
    let mut total_acked = 0;
    for (name, last) in acked.iter() {
        let Some(last) = last else { continue };
        total_acked += last + 1;
        let got: HashSet<u64> = per_writer
            .get(name.as_str())
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        missing += (0..=*last).filter(|s| !got.contains(s)).count() as u64;
    }
    let kills = run.killed_readers.len() as u64;
    assert!(
        missing <= kills,
        "{missing} acknowledged messages lost, but only {kills} readers were killed"
    );
    format!(
        "{} delivered ({total_acked} acknowledged), {missing} lost in flight at {kills} reader kills, 0 twice",
        seen.len()
    )
}

fn rounds() -> u64 {
    std::env::var("DMQ_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
}

fn seed() -> u64 {
    std::env::var("DMQ_CRASH_SEED")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

fn each_round(name: &str, scenario: impl Fn(u64) -> Scenario) {
    let first = seed();
    for round in 0..rounds() {
        let s = scenario(mix(first + round));
        let summary = run_scenario(&s);
        eprintln!("{name} round {round} (seed {}): {summary}", s.seed);
    }
}

fn switch_failpoints() {
    each_round("switch failpoints", |seed| Scenario {
        writers: 2,
        per_writer: 3_000,
        commit_every: if seed % 2 == 0 { 1 } else { 7 },
        on_receive: false,
        reader_failpoints: &[
            "switch.after_flip",
            "switch.after_truncate",
            "switch.after_position",
            "switch.after_readtarget",
        ],
        writer_failpoints: &[],
        random_kills: false,
        min_reader_kills: 12,
        min_writer_kills: 0,
        seed,
    });
}

fn append_failpoints() {
    each_round("append failpoints", |seed| Scenario {
        writers: 3,
        per_writer: 2_000,
        commit_every: 1,
        on_receive: false,
        reader_failpoints: &[],
        writer_failpoints: &["append.after_choose", "append.after_write"],
        random_kills: false,
        min_reader_kills: 0,
        min_writer_kills: 12,
        seed,
    });
}

fn random_kills() {
    each_round("random kills", |seed| Scenario {
        writers: 4,
        per_writer: 3_000,
        commit_every: 1 + seed % 5,
        on_receive: false,
        reader_failpoints: &[],
        writer_failpoints: &[],
        random_kills: true,
        min_reader_kills: 3,
        min_writer_kills: 3,
        seed,
    });
}

fn on_receive_kills() {
    each_round("on-receive kills", |seed| Scenario {
        writers: 3,
        per_writer: 2_000,
        commit_every: 1,
        on_receive: true,
        reader_failpoints: &[
            "switch.after_flip",
            "switch.after_truncate",
            "switch.after_position",
            "switch.after_readtarget",
        ],
        writer_failpoints: &[],
        random_kills: true,
        min_reader_kills: 8,
        min_writer_kills: 0,
        seed,
    });
}

fn fifo_across_switches() {
    const WRITERS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("q");
    let opts = OpenOptions::new().switch_grace(Duration::ZERO);
    let queue = Queue::open_with(&base, &opts).unwrap();
    let enough = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            let mut w = queue.writer().unwrap();
            let enough = Arc::clone(&enough);
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !enough.load(std::sync::atomic::Ordering::SeqCst) {
                    w.send(format!("w{id}-{seq:08}").as_bytes()).unwrap();
                    seq += 1;
                    if seq.is_multiple_of(8) {
                        std::thread::yield_now();
                    }
                }
                seq
            })
        })
        .collect();
    let mut reader = queue.reader().unwrap();
    let mut next = [0u64; WRITERS];
    let started = Instant::now();
    let check = |m: &[u8], next: &mut [u64; WRITERS]| {
        let text = std::str::from_utf8(m).unwrap();
        let (w, seq) = text.split_once('-').unwrap();
        let w: usize = w[1..].parse().unwrap();
        let seq: u64 = seq.parse().unwrap();
        assert_eq!(seq, next[w], "writer {w}: got {seq}, expected {}", next[w]);
        next[w] += 1;
    };
    while reader.switches() < 1_000 {
        assert!(
            started.elapsed() < LIMIT,
            "1,000 switches not reached in {LIMIT:?}"
        );
        if let Some(m) = reader.recv_timeout(Duration::from_millis(100)).unwrap() {
            check(&m, &mut next);
        }
    }
    enough.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent: Vec<u64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    while next != *sent.as_slice() {
        assert!(started.elapsed() < LIMIT, "drain not finished in {LIMIT:?}");
        if let Some(m) = reader.recv_timeout(Duration::from_millis(100)).unwrap() {
            check(&m, &mut next);
        }
    }
    assert!(reader.try_recv().unwrap().is_none());
    eprintln!(
        "{} switches, {} messages from {WRITERS} writers, in order",
        reader.switches(),
        sent.iter().sum::<u64>()
    );
}
