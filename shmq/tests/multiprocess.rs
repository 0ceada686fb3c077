//! Producers and consumers in separate processes (this binary re-executes itself as each
//! child): blocking 2 × 2 with no loss and no duplicate, cyclic stress with no torn message,
//! and `gc` of a dead creator's orphan. Every test removes its segment, also on failure.
//!
//! `SHMQ_MP_MESSAGES` sets the messages per producer (default 1 M: 2 producers × 2
//! consumers × 1 M in format N; a tenth in format G, whose protocol sleeps while polling;
//! half of that in the cyclic tests).

mod support;

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use shmq::{Format, Key, Options, Queue};
use support::{Cleanup, Trial, message, tag_of};

const ROLE: &str = "SHMQ_MP_ROLE";
const WORDS: u32 = 8;
const POISON: u64 = 1 << 63;

fn per_producer(format: Format) -> u64 {
    let default = 1_000_000;
    let n = std::env::var("SHMQ_MP_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    match format {
        Format::Native => n,
        // The Go protocol sleeps while polling: a tenth is enough to exercise it.
        _ => (n / 10).max(1000),
    }
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} not set"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

fn tag(producer: u64, i: u64) -> u64 {
    ((producer + 1) << 40) | i
}

fn child(role: &str) -> ExitCode {
    let key = Key(std::env::var("SHMQ_KEY")
        .expect("SHMQ_KEY")
        .parse()
        .expect("SHMQ_KEY is a key"));
    // These tests check delivery, not recovery: on a loaded machine a live child can be
    // descheduled for longer than the default 200 ms stall timeout inside a critical window
    // and would be revoked (or see `LockStuck`), so the children allow far more.
    let patient = Options {
        stall_timeout: Duration::from_secs(60),
        ..Options::default()
    };
    let q = Queue::open_with(key, &patient).expect("open the test queue");
    let bytes = q.msg_bytes();
    match role {
        "producer" => {
            let id = env_u64("SHMQ_ID");
            let count = env_u64("SHMQ_COUNT");
            let shift = std::env::var("SHMQ_SHIFT").is_ok();
            for i in 0..count {
                let m = message(tag(id, i), bytes);
                if shift {
                    q.enqueue_shift(&m).expect("enqueue_shift");
                } else {
                    q.enqueue_block(&m, Some(Instant::now() + Duration::from_secs(120)))
                        .expect("enqueue_block");
                }
            }
            if !shift {
                q.enqueue_block(&message(POISON | id, bytes), None)
                    .expect("poison");
            }
        }
        "consumer" => {
            let out = PathBuf::from(std::env::var("SHMQ_OUT").expect("SHMQ_OUT"));
            let stop = std::env::var("SHMQ_STOP").ok().map(PathBuf::from);
            let mut buf = vec![0u8; bytes];
            let mut got: Vec<u64> = Vec::new();
            let mut last = [None::<u64>; 2];
            loop {
                let have = match &stop {
                    None => {
                        q.dequeue_block(&mut buf, Some(Instant::now() + Duration::from_secs(120)))
                            .expect("dequeue_block");
                        true
                    }
                    Some(stop) => {
                        let stopping = stop.exists();
                        if q.dequeue_try(&mut buf).expect("dequeue_try") {
                            true
                        } else if stopping {
                            break;
                        } else {
                            std::thread::yield_now();
                            false
                        }
                    }
                };
                if !have {
                    continue;
                }
                let t = tag_of(&buf);
                if t & POISON != 0 {
                    break;
                }
                let p = ((t >> 40) - 1) as usize;
                assert!(
                    last[p].is_none_or(|l| l < t),
                    "producer {p}: {t:#x} after {:#x}",
                    last[p].unwrap_or(0)
                );
                last[p] = Some(t);
                got.push(t);
            }
            let bytes: Vec<u8> = got.iter().flat_map(|t| t.to_le_bytes()).collect();
            std::fs::write(&out, bytes).expect("write the consumer's record");
        }
        other => panic!("unknown role {other}"),
    }
    ExitCode::SUCCESS
}

fn spawn(cleanup: &mut Cleanup, role: &str, env: &[(&str, String)]) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, role)
        .env("SHMQ_KEY", cleanup.key.0.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cleanup.children.push(cmd.spawn().expect("spawn a child"));
}

fn wait_all(cleanup: &mut Cleanup, limit: Duration) {
    let until = Instant::now() + limit;
    for c in &mut cleanup.children {
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                assert!(status.success(), "a child failed: {status}");
                break;
            }
            assert!(
                Instant::now() < until,
                "children still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    cleanup.children.clear();
}

fn out_file(key: Key, n: usize) -> PathBuf {
    std::env::temp_dir().join(format!("shmq-mp-{}-{}-{n}", std::process::id(), key.0))
}

fn read_tags(path: &PathBuf) -> Vec<u64> {
    let bytes = std::fs::read(path).expect("a consumer's record");
    let _ = std::fs::remove_file(path);
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn options(format: Format) -> Options {
    Options {
        format,
        ..Options::default()
    }
}

fn two_by_two_blocking(format: Format) {
    let q = Queue::create_unique(WORDS, 64, &options(format)).unwrap();
    let mut cleanup = Cleanup::new(q.key());
    let n = per_producer(format);
    for c in 0..2 {
        spawn(
            &mut cleanup,
            "consumer",
            &[("SHMQ_OUT", out_file(q.key(), c).display().to_string())],
        );
    }
    for p in 0..2u64 {
        spawn(
            &mut cleanup,
            "producer",
            &[("SHMQ_ID", p.to_string()), ("SHMQ_COUNT", n.to_string())],
        );
    }
    wait_all(&mut cleanup, Duration::from_secs(600));
    let mut all: Vec<u64> = (0..2)
        .flat_map(|c| read_tags(&out_file(q.key(), c)))
        .collect();
    all.sort_unstable();
    let expected: Vec<u64> = (0..2)
        .flat_map(|p| (0..n).map(move |i| tag(p, i)))
        .collect();
    assert_eq!(all.len(), expected.len(), "delivered count");
    assert!(all == expected, "lost or duplicated messages");
    assert_eq!(q.len(), 0);
    if format == Format::Native {
        assert_eq!((q.dropped(), q.abandoned()), (Some(0), Some(0)));
    }
}

fn native_two_by_two_blocking() {
    two_by_two_blocking(Format::Native);
}

fn go_two_by_two_blocking() {
    two_by_two_blocking(Format::GoCompat);
}

fn cyclic_stress(format: Format) {
    let q = Queue::create_unique(WORDS, 4, &options(format)).unwrap();
    let mut cleanup = Cleanup::new(q.key());
    let n = per_producer(format) / 2;
    let stop =
        std::env::temp_dir().join(format!("shmq-mp-stop-{}-{}", std::process::id(), q.key().0));
    let _ = std::fs::remove_file(&stop);
    for c in 0..2 {
        spawn(
            &mut cleanup,
            "consumer",
            &[
                ("SHMQ_OUT", out_file(q.key(), c).display().to_string()),
                ("SHMQ_STOP", stop.display().to_string()),
            ],
        );
    }
    let mut producers = Cleanup::new(q.key());
    for p in 0..2u64 {
        spawn(
            &mut producers,
            "producer",
            &[
                ("SHMQ_ID", p.to_string()),
                ("SHMQ_COUNT", n.to_string()),
                ("SHMQ_SHIFT", "1".into()),
            ],
        );
    }
    wait_all(&mut producers, Duration::from_secs(600));
    std::fs::write(&stop, b"stop").unwrap();
    wait_all(&mut cleanup, Duration::from_secs(120));
    let _ = std::fs::remove_file(&stop);
    let mut all: Vec<u64> = (0..2)
        .flat_map(|c| read_tags(&out_file(q.key(), c)))
        .collect();
    let delivered = all.len() as u64;
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, delivered, "a message was delivered twice");
    assert_eq!(q.len(), 0);
    if format == Format::Native {
        assert_eq!(q.abandoned(), Some(0));
        assert_eq!(
            delivered + q.dropped().unwrap(),
            2 * n,
            "delivered + dropped must equal sent"
        );
    }
    assert!(delivered > 0);
}

fn native_cyclic_stress_never_torn() {
    cyclic_stress(Format::Native);
}

fn go_cyclic_stress_never_torn() {
    cyclic_stress(Format::GoCompat);
}

fn gc_removes_a_dead_creators_orphan() {
    // A live creator's detached segment is not touched.
    let mine = Queue::create_unique(1, 1, &Options::default()).unwrap();
    let _mine_cleanup = Cleanup::new(mine.key());
    let mine_key = mine.key();
    mine.close().unwrap();
    // The orphan: created by a child that exits without deleting it.
    let child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "create-orphan")
        .stdout(Stdio::piped())
        .output()
        .expect("run the orphan's creator");
    assert!(child.status.success(), "orphan creator failed");
    let line = String::from_utf8_lossy(&child.stdout).into_owned();
    let key = Key(line
        .trim()
        .strip_prefix("KEY ")
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("no key in {line:?}")));
    let _orphan_cleanup = Cleanup::new(key);
    let removed = shmq::gc().unwrap();
    assert!(removed.contains(&key), "gc removed {removed:?}, not {key}");
    assert!(
        !removed.contains(&mine_key),
        "gc removed a live creator's segment"
    );
    assert!(matches!(Queue::open(key), Err(shmq::Error::NotFound(_))));
    Queue::open(mine_key).expect("the live creator's queue is still there");
}

fn child_main(role: &str) -> ExitCode {
    if role == "create-orphan" {
        let q = Queue::create_unique(2, 2, &Options::default()).expect("create");
        q.enqueue_try(&[1u8; 16]).expect("enqueue");
        support::say(&format!("KEY {}", q.key().0));
        q.close().expect("close");
        return ExitCode::SUCCESS;
    }
    child(role)
}

fn main() -> ExitCode {
    support::main(
        &[
            Trial {
                name: "native_two_by_two_blocking_no_loss_no_duplicate",
                run: native_two_by_two_blocking,
            },
            Trial {
                name: "go_two_by_two_blocking_no_loss_no_duplicate",
                run: go_two_by_two_blocking,
            },
            Trial {
                name: "native_cyclic_stress_never_torn",
                run: native_cyclic_stress_never_torn,
            },
            Trial {
                name: "go_cyclic_stress_never_torn",
                run: go_cyclic_stress_never_torn,
            },
            Trial {
                name: "gc_removes_a_dead_creators_orphan",
                run: gc_removes_a_dead_creators_orphan,
            },
        ],
        ROLE,
        child_main,
    )
}
