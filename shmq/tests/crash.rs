//! `kill -9` of a peer inside each critical window (feature `test-hooks`): the child stops at
//! a named hook, the test kills it there, and this process, the survivor, must recover and
//! go on (format N: the dead producer's position is abandoned; format G: the dead Rust
//! holder's locks are taken over). Also: a lock word of a Go holder gives `LockStuck`, not a
//! hang; malformed segments give typed errors. Every segment is removed, also on failure.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmq::{Error, Format, Key, Options, Queue};
use support::{Cleanup, Trial, message, tag_of};

const ROLE: &str = "SHMQ_CRASH_ROLE";

fn soon() -> Option<Instant> {
    // Generous: recovery takes one stall timeout (200 ms); this only bounds a hang.
    Some(Instant::now() + Duration::from_secs(20))
}

fn child_main(role: &str) -> ExitCode {
    let key = Key(std::env::var("SHMQ_KEY").unwrap().parse().unwrap());
    let q = Queue::open(key).expect("open");
    let mut buf = vec![0u8; q.msg_bytes()];
    match role {
        "enqueue" => q
            .enqueue_block(&message(0xdead, q.msg_bytes()), None)
            .expect("enqueue"),
        "dequeue" => {
            q.dequeue_try(&mut buf).expect("dequeue");
        }
        other => panic!("unknown role {other}"),
    }
    // Reaching here means the hook was not hit.
    support::say("NO HOOK");
    ExitCode::FAILURE
}

/// Runs `role` in a child that stops at `hook`, then kills it with SIGKILL.
fn kill_inside(cleanup: &mut Cleanup, role: &str, hook: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .env("SHMQ_KEY", cleanup.key.0.to_string())
        .env("SHMQ_TEST_HOOK", hook)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().unwrap();
    cleanup.children.push(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    assert_eq!(
        line.trim(),
        format!("SHMQ_HOOK {hook}"),
        "the child did not stop at the hook"
    );
    let mut child = cleanup.children.pop().unwrap();
    child.kill().expect("kill -9");
    child.wait().expect("reap");
}

fn native(words: u32, cap: u32) -> (Queue, Cleanup) {
    let q = Queue::create_unique(words, cap, &Options::default()).unwrap();
    let c = Cleanup::new(q.key());
    (q, c)
}

fn go(words: u32, cap: u32) -> (Queue, Cleanup) {
    let o = Options {
        format: Format::GoCompat,
        ..Options::default()
    };
    let q = Queue::create_unique(words, cap, &o).unwrap();
    let c = Cleanup::new(q.key());
    (q, c)
}

fn recv(q: &Queue) -> u64 {
    let mut buf = vec![0u8; q.msg_bytes()];
    q.dequeue_block(&mut buf, soon())
        .expect("dequeue after recovery");
    tag_of(&buf)
}

/// Format N: a producer killed at `hook`; the survivor's messages all arrive, in order, and
/// the dead position is counted as abandoned. Then several laps reuse every slot.
fn native_producer_killed_at(hook: &str) {
    let (q, mut cleanup) = native(8, 4);
    let bytes = q.msg_bytes();
    q.enqueue_block(&message(1, bytes), None).unwrap();
    kill_inside(&mut cleanup, "enqueue", hook);
    q.enqueue_block(&message(2, bytes), soon()).unwrap();
    assert_eq!(recv(&q), 1);
    assert_eq!(
        recv(&q),
        2,
        "the survivor's message after the dead producer's position"
    );
    assert_eq!(q.abandoned(), Some(1));
    for lap in 0..3u64 {
        for i in 0..4 {
            q.enqueue_block(&message(100 + lap * 10 + i, bytes), soon())
                .unwrap();
        }
        for i in 0..4 {
            assert_eq!(recv(&q), 100 + lap * 10 + i);
        }
    }
    assert!(q.is_empty());
}

fn native_killed_after_tail_claim() {
    native_producer_killed_at("n_tail_claimed");
}

fn native_killed_after_slot_claim() {
    native_producer_killed_at("n_slot_claimed");
}

fn native_killed_mid_copy() {
    native_producer_killed_at("n_mid_copy");
}

/// Format N, the other side: a producer killed after claiming `tail` with the queue full is
/// recovered by the next producer (who needs that slot), not only by a consumer.
fn native_next_producer_recovers() {
    let (q, mut cleanup) = native(2, 1);
    kill_inside(&mut cleanup, "enqueue", "n_mid_copy");
    // The dead position fills the ring: a shift discards it (or waits for its revocation).
    assert!(q.enqueue_shift(&message(7, q.msg_bytes())).is_ok());
    assert_eq!(recv(&q), 7);
    assert_eq!((q.dropped(), q.abandoned()), (Some(1), Some(1)));
}

/// Format G, enqueue killed holding the header lock (and maybe a slot lock): the survivor
/// takes the locks over; at most the message in flight is lost or garbage.
fn go_enqueue_killed_at(hook: &str, locks: u64) {
    let (q, mut cleanup) = go(4, 3);
    let bytes = q.msg_bytes();
    q.enqueue_block(&message(1, bytes), None).unwrap();
    kill_inside(&mut cleanup, "enqueue", hook);
    assert_eq!(recv(&q), 1);
    // The dead producer had reserved slot 1 (len was raised): drain what is there.
    let mut buf = vec![0u8; bytes];
    while q.dequeue_try(&mut buf).unwrap() {}
    assert_eq!(q.recovered_locks(), locks);
    for i in 0..7u64 {
        q.enqueue_block(&message(10 + i, bytes), soon()).unwrap();
        assert_eq!(recv(&q), 10 + i);
    }
}

fn go_killed_holding_header() {
    go_enqueue_killed_at("g_header_held", 1);
}

fn go_killed_holding_header_and_slot() {
    go_enqueue_killed_at("g_slot_held", 2);
}

/// Format G, a reader killed while copying (it holds the slot lock): the writer that needs
/// the slot takes it over.
fn go_reader_killed_holding_slot() {
    let (q, mut cleanup) = go(4, 2);
    let bytes = q.msg_bytes();
    q.enqueue_block(&message(1, bytes), None).unwrap();
    kill_inside(&mut cleanup, "dequeue", "g_reader_slot_held");
    q.enqueue_block(&message(2, bytes), soon()).unwrap(); // slot 1
    q.enqueue_block(&message(3, bytes), soon()).unwrap(); // slot 0: held by the dead reader
    assert_eq!(q.recovered_locks(), 1);
    assert_eq!(recv(&q), 2);
    assert_eq!(recv(&q), 3);
}

/// A lock word of 1 is a Go holder: it cannot be attributed, so after the stall timeout try
/// operations fail with `LockStuck` and block operations fail at their deadline, never hang.
fn go_holder_gives_lock_stuck() {
    let (q, _cleanup) = go(1, 2);
    shmq::poke(q.key(), 16, &1u64.to_le_bytes()).unwrap();
    let err = q.enqueue_try(&[0u8; 8]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LockStuck {
                word: 1,
                offset: 16,
                ..
            }
        ),
        "{err}"
    );
    let err = q
        // The deadline leaves room to watch the word for a stall timeout (200 ms) even when
        // this process is descheduled for a while on a loaded machine.
        .enqueue_block(&[0u8; 8], Some(Instant::now() + Duration::from_secs(2)))
        .unwrap_err();
    assert!(matches!(err, Error::LockStuck { .. }), "{err}");
    let mut buf = [0u8; 8];
    assert!(matches!(
        q.dequeue_try(&mut buf),
        Err(Error::LockStuck { .. })
    ));
    // The Go peer lets go: everything works again.
    shmq::poke(q.key(), 16, &0u64.to_le_bytes()).unwrap();
    assert!(q.enqueue_try(&[5u8; 8]).unwrap());
    assert!(q.dequeue_try(&mut buf).unwrap());
    assert_eq!(buf, [5u8; 8]);
    assert_eq!(q.recovered_locks(), 0);
}

/// Malformed segments: typed errors, never a panic.
fn malformed_segments_are_refused() {
    let (q, _c) = native(2, 4);
    let key = q.key();
    let open_err = || Queue::open(key).unwrap_err();
    shmq::poke(key, 8, &[2, 0, 0, 0, 1, 0, 0, 0]).unwrap(); // version 2, state 1
    assert!(matches!(open_err(), Error::Unsupported { .. }));
    shmq::poke(key, 8, &[1, 0, 0, 0, 7, 0, 0, 0]).unwrap(); // state 7
    assert!(matches!(open_err(), Error::Corrupt { field: "state", .. }));
    shmq::poke(key, 8, &[1, 0, 0, 0, 1, 0, 0, 0]).unwrap();
    shmq::poke(key, 16, &[2, 0, 0, 0, 0xff, 0xff, 0, 0]).unwrap(); // capacity 65535
    assert!(matches!(
        open_err(),
        Error::Corrupt {
            field: "capacity",
            ..
        }
    ));
    shmq::poke(key, 16, &[2, 0, 0, 0, 4, 0, 0, 0]).unwrap();
    shmq::poke(key, 64, &100u64.to_le_bytes()).unwrap(); // tail far beyond head
    assert!(matches!(open_err(), Error::Corrupt { field: "tail", .. }));
    shmq::poke(key, 64, &4u64.to_le_bytes()).unwrap();
    Queue::open(key).expect("repaired");
    shmq::poke(key, 0, b"garbage!").unwrap();
    assert!(matches!(open_err(), Error::Unsupported { .. }));

    let (g, _c) = go(2, 4);
    shmq::poke(g.key(), 24, &[9, 0, 0, 0, 0, 0, 0, 0]).unwrap(); // start 9 ≥ 4
    assert!(matches!(
        Queue::open(g.key()),
        Err(Error::Corrupt { field: "start", .. })
    ));
    // An attached handle sees the corruption as an error too, not an out-of-bounds access.
    assert!(matches!(
        g.enqueue_try(&[0u8; 16]),
        Err(Error::Corrupt { field: "start", .. })
    ));
    shmq::poke(g.key(), 24, &[0, 0, 0, 0, 5, 0, 0, 0]).unwrap(); // len 5 > 4
    let mut buf = [0u8; 16];
    assert!(matches!(
        g.dequeue_try(&mut buf),
        Err(Error::Corrupt { field: "len", .. })
    ));
    shmq::poke(g.key(), 8, &[4, 0, 0, 0, 12, 0, 0, 0]).unwrap(); // msg_bytes 12
    assert!(matches!(
        Queue::open(g.key()),
        Err(Error::Corrupt {
            field: "msg_bytes",
            ..
        })
    ));
}

fn main() -> ExitCode {
    support::main(
        &[
            Trial {
                name: "native_killed_after_tail_claim",
                run: native_killed_after_tail_claim,
            },
            Trial {
                name: "native_killed_after_slot_claim",
                run: native_killed_after_slot_claim,
            },
            Trial {
                name: "native_killed_mid_copy",
                run: native_killed_mid_copy,
            },
            Trial {
                name: "native_next_producer_recovers",
                run: native_next_producer_recovers,
            },
            Trial {
                name: "go_killed_holding_header",
                run: go_killed_holding_header,
            },
            Trial {
                name: "go_killed_holding_header_and_slot",
                run: go_killed_holding_header_and_slot,
            },
            Trial {
                name: "go_reader_killed_holding_slot",
                run: go_reader_killed_holding_slot,
            },
            Trial {
                name: "go_holder_gives_lock_stuck",
                run: go_holder_gives_lock_stuck,
            },
            Trial {
                name: "malformed_segments_are_refused",
                run: malformed_segments_are_refused,
            },
        ],
        ROLE,
        child_main,
    )
}
