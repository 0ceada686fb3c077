//! Crash and concurrency tests with real child processes (this binary re-executed in a
//! role): kill -9 of publishers and consumers at random points loses nothing and never
//! wedges the queue; 8 processes publishing, consuming and cleaning at once deliver every
//! message exactly once. `DDMQ_CRASH_ROUNDS` sets the number of kill rounds (default 3).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use ddmq::{Broker, BrokerOptions, PublishOptions, Requeue};

const ROLE: &str = "DDMQ_TEST_ROLE";

fn rounds() -> u64 {
    std::env::var("DDMQ_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// splitmix64, for reproducible random delays.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A child process, killed and reaped when dropped (also when a test fails).
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(role: &str, root: &Path, arg: &str) -> Kid {
    Kid(Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .env("DDMQ_ROOT", root)
        .env("DDMQ_ARG", arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap())
}

fn lines(kid: &mut Kid) -> Vec<String> {
    let out = kid.0.stdout.take().unwrap();
    BufReader::new(out).lines().map_while(Result::ok).collect()
}

fn child(role: &str) -> ExitCode {
    let root = std::env::var("DDMQ_ROOT").unwrap();
    let arg = std::env::var("DDMQ_ARG").unwrap_or_default();
    let b = Broker::open(&root, false).unwrap();
    let mut out = std::io::stdout().lock();
    match role {
        // Publishes until killed; a line after each publish returned.
        "publisher" => {
            for i in 0.. {
                let body = format!("{arg}-{i}");
                b.publish(
                    "q",
                    body.as_str(),
                    &PublishOptions::new().timeout(1.0).requeue(Requeue::Yes),
                )
                .unwrap();
                writeln!(out, "{body}").unwrap();
                out.flush().unwrap();
            }
        }
        // Consumes until killed: `got X` after the claim, `acked X` after the ack.
        "consumer" => loop {
            for d in b.consume("q", 2).unwrap() {
                let body = d.message.text();
                writeln!(out, "got {body}").unwrap();
                out.flush().unwrap();
                d.ack().unwrap();
                writeln!(out, "acked {body}").unwrap();
                out.flush().unwrap();
            }
        },
        // Publishes 1000, consumes and cleans until the queue is empty; forgets every 50th
        // first delivery (it expires after 1 s and is requeued by someone's clean).
        "worker" => {
            let mut published = 0;
            let mut last_clean = Instant::now();
            let mut quiet_since: Option<Instant> = None;
            loop {
                if published < 1000 {
                    b.publish(
                        "q",
                        format!("{arg}-{published}"),
                        &PublishOptions::new()
                            .timeout(1.0)
                            .requeue(Requeue::Yes)
                            .skip_cleaning(true),
                    )
                    .unwrap();
                    published += 1;
                }
                let batch = b
                    .consume_with("q", 2, &ddmq::ConsumeOptions::default().skip_cleaning(true))
                    .unwrap();
                for d in batch {
                    let body = d.message.text();
                    let n: u64 = body.rsplit('-').next().unwrap().parse().unwrap();
                    if d.message.requeue_counter == 0 && n.is_multiple_of(50) {
                        std::mem::forget(d);
                        continue;
                    }
                    if d.ack().unwrap() == ddmq::AckOutcome::Deleted {
                        writeln!(out, "{body}").unwrap();
                    }
                }
                if last_clean.elapsed() > Duration::from_millis(200) {
                    b.clean("q", true).unwrap();
                    last_clean = Instant::now();
                }
                if published == 1000 {
                    let v = &b.view(Some(&["q"])).unwrap()[0];
                    if v.waiting == 0 && v.at_work == 0 {
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_millis(500) {
                            break;
                        }
                    } else {
                        quiet_since = None;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
        }
        // Cleans until killed.
        "cleaner" => loop {
            b.clean("q", true).unwrap();
        },
        other => panic!("unknown role {other}"),
    }
    ExitCode::SUCCESS
}

fn fresh() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(dir.path(), true).unwrap();
    b.create_queue("q").unwrap();
    (dir, b)
}

/// Everything left: drains the queue after letting claims expire and cleaning.
fn drain(root: &Path) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(2100));
    let b = Broker::open_with(
        root,
        BrokerOptions::default()
            .temp_grace(Duration::ZERO)
            .reap_grace(Duration::ZERO),
    )
    .unwrap();
    b.clean("q", true).unwrap();
    let mut got = Vec::new();
    loop {
        let batch = b.consume("q", 100).unwrap();
        if batch.is_empty() {
            break;
        }
        for d in batch {
            got.push(d.message.text());
            d.ack().unwrap();
        }
    }
    let v = &b.view(None).unwrap()[0];
    assert_eq!((v.waiting, v.at_work), (0, 0), "the queue is wedged");
    let leftovers: Vec<_> = std::fs::read_dir(root.join("q"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".tmp."))
        .collect();
    assert!(
        leftovers.is_empty(),
        "stale temporary files survive a clean: {leftovers:?}"
    );
    got
}

fn kill_publishers() {
    for round in 0..rounds() {
        let (dir, _) = fresh();
        let mut kids: Vec<Kid> = (0..2)
            .map(|k| spawn("publisher", dir.path(), &format!("r{round}k{k}")))
            .collect();
        std::thread::sleep(Duration::from_millis(50 + mix(round) % 300));
        let mut acked = Vec::new();
        for kid in &mut kids {
            kid.0.kill().unwrap();
            kid.0.wait().unwrap();
            acked.extend(lines(kid));
        }
        let got = drain(dir.path());
        let got_set: HashSet<&String> = got.iter().collect();
        assert_eq!(got_set.len(), got.len(), "round {round}: duplicates");
        for a in &acked {
            assert!(got_set.contains(a), "round {round}: published {a} was lost");
        }
        // At most one unacknowledged publish per publisher may have landed.
        assert!(
            got.len() <= acked.len() + kids.len(),
            "round {round}: phantom messages"
        );
    }
}

fn kill_consumers() {
    for round in 0..rounds() {
        let (dir, b) = fresh();
        let all: Vec<String> = (0..3000).map(|i| format!("m{i}")).collect();
        for m in &all {
            b.publish(
                "q",
                m.as_str(),
                &PublishOptions::new()
                    .timeout(1.0)
                    .requeue(Requeue::Yes)
                    .skip_cleaning(true),
            )
            .unwrap();
        }
        let mut kids: Vec<Kid> = (0..3).map(|_| spawn("consumer", dir.path(), "")).collect();
        std::thread::sleep(Duration::from_millis(100 + mix(round + 100) % 400));
        let mut acked = HashSet::new();
        let mut in_flight = HashSet::new();
        for kid in &mut kids {
            kid.0.kill().unwrap();
            kid.0.wait().unwrap();
            for line in lines(kid) {
                if let Some(m) = line.strip_prefix("acked ") {
                    assert!(acked.insert(m.to_owned()), "round {round}: {m} acked twice");
                    in_flight.remove(m);
                } else if let Some(m) = line.strip_prefix("got ") {
                    in_flight.insert(m.to_owned());
                }
            }
        }
        let rest = drain(dir.path());
        for m in &rest {
            assert!(
                !acked.contains(m),
                "round {round}: {m} was acked and delivered again"
            );
        }
        let rest: HashSet<String> = rest.into_iter().collect();
        for m in &all {
            // Killed between its ack and the line saying so: deleted, legitimately.
            assert!(
                acked.contains(m) || rest.contains(m) || in_flight.contains(m),
                "round {round}: {m} lost"
            );
        }
    }
}

fn kill_cleaners() {
    for round in 0..rounds() {
        let (dir, b) = fresh();
        let o = PublishOptions::new()
            .timeout(1.0)
            .requeue(Requeue::Yes)
            .skip_cleaning(true);
        for i in 0..500 {
            b.publish("q", format!("m{i}"), &o).unwrap();
        }
        let claimed = b.consume("q", 500).unwrap();
        assert_eq!(claimed.len(), 500);
        std::mem::forget(claimed);
        std::thread::sleep(Duration::from_millis(2100));
        let mut kids: Vec<Kid> = (0..2).map(|_| spawn("cleaner", dir.path(), "")).collect();
        std::thread::sleep(Duration::from_millis(5 + mix(round + 200) % 150));
        for kid in &mut kids {
            kid.0.kill().unwrap();
            kid.0.wait().unwrap();
        }
        let got = drain(dir.path());
        let distinct: HashSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), 500, "round {round}: lost messages");
        // A cleaner killed between publishing the copy and removing its private file is
        // finished again by the next clean: at most one duplicate per killed cleaner.
        assert!(
            got.len() - distinct.len() <= kids.len(),
            "round {round}: {} duplicates",
            got.len() - distinct.len()
        );
    }
}

fn eight_processes_exactly_once() {
    let (dir, b) = fresh();
    let mut kids: Vec<Kid> = (0..8)
        .map(|k| spawn("worker", dir.path(), &format!("w{k}")))
        .collect();
    let mut acked = Vec::new();
    for kid in &mut kids {
        let out = lines(kid);
        assert!(kid.0.wait().unwrap().success());
        acked.extend(out);
    }
    let distinct: HashSet<&String> = acked.iter().collect();
    assert_eq!(
        distinct.len(),
        acked.len(),
        "{} messages acked twice",
        acked.len() - distinct.len()
    );
    assert_eq!(acked.len(), 8000, "lost messages");
    let v = &b.view(None).unwrap()[0];
    assert_eq!((v.waiting, v.at_work), (0, 0));
}

fn main() -> ExitCode {
    if let Ok(role) = std::env::var(ROLE) {
        return child(&role);
    }
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads.get_or_insert(1);
    let trials: Vec<(&str, fn())> = vec![
        ("kill_publishers_loses_nothing", kill_publishers),
        (
            "kill_consumers_loses_nothing_and_never_wedges",
            kill_consumers,
        ),
        (
            "kill_cleaners_loses_nothing_and_duplicates_at_most_one_each",
            kill_cleaners,
        ),
        (
            "eight_processes_deliver_each_message_exactly_once",
            eight_processes_exactly_once,
        ),
    ];
    let trials = trials
        .into_iter()
        .map(|(name, run)| {
            libtest_mimic::Trial::test(name, move || {
                std::panic::catch_unwind(run).map_err(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default()
                        .into()
                })
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
