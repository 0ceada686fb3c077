//! Bad input for the `ddmq` command: wrong flags, missing arguments and paths, permission
//! denied, a full disk, damaged settings. Each case must exit non-zero with a clear error (a
//! usage error: code 2 naming the flag; anything else: code 1 and one line naming the path
//! or field, in the original's words where it has them), never a panic, never a signal; and
//! every message accepted before the disk filled is consumed afterwards.
//!
//! ddmq has no message size or framing to disagree on: every opener reads the queue's
//! settings from its `ddmq.yaml`, so the mismatch case here is a damaged settings file.
//! The permission cases run the command as uid/gid 65534 when the tests run as root. The
//! full-disk case mounts a small tmpfs as root; without root it re-runs itself under
//! `unshare --user --map-root-user --mount`, and fails saying so when neither is possible.

use mq_testkit::hostile as support;

use std::path::Path;

use support::{Case, Expect, args as s, check, full_disk, path_in as at, run};

const BIN: &str = env!("CARGO_BIN_EXE_ddmq");

/// Creates the root `r` with the queue `q`; returns the root.
fn root_with_queue(dir: &Path) -> String {
    let root = at(dir, "r");
    let out = run(BIN, &s(&["create", "-f", &root, "q"]), dir, false);
    assert_eq!(out.code, Some(0), "{out:?}");
    root
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "unknown flag",
            setup: |d| s(&["publish", &at(d, "r"), "q", "m", "--bogus"]),
            expect: Expect::Usage("--bogus"),
            unprivileged: false,
        },
        Case {
            name: "missing arguments",
            setup: |d| s(&["publish", &at(d, "r")]),
            expect: Expect::Usage("<QUEUE>"),
            unprivileged: false,
        },
        Case {
            name: "priority that is not a number",
            setup: |d| s(&["publish", &at(d, "r"), "q", "m", "-p", "high"]),
            expect: Expect::Usage("--priority"),
            unprivileged: false,
        },
        Case {
            name: "count that is not a number",
            setup: |d| s(&["consume", &at(d, "r"), "q", "-n", "all"]),
            expect: Expect::Usage("-n"),
            unprivileged: false,
        },
        Case {
            name: "missing root",
            setup: |d| s(&["publish", &at(d, "missing"), "q", "m"]),
            expect: Expect::Error(&["missing", "does not exist"]),
            unprivileged: false,
        },
        Case {
            name: "root that is not initiated",
            setup: |d| {
                std::fs::create_dir(d.join("r")).expect("mkdir");
                s(&["publish", &at(d, "r"), "q", "m"])
            },
            expect: Expect::Error(&["/r", "not initiated"]),
            unprivileged: false,
        },
        Case {
            name: "missing queue",
            setup: |d| {
                let root = root_with_queue(d);
                s(&["consume", &root, "nosuch"])
            },
            expect: Expect::Error(&["r/nosuch"]),
            unprivileged: false,
        },
        Case {
            name: "create a root where it may not write",
            setup: |d| {
                let ro = d.join("ro");
                std::fs::create_dir(&ro).expect("mkdir");
                support::read_only(&ro);
                s(&["create", "-f", &at(d, "ro/r"), "q"])
            },
            expect: Expect::Error(&["ro/r", "Permission denied"]),
            unprivileged: true,
        },
        Case {
            name: "publish to a queue of another user",
            setup: |d| {
                let root = root_with_queue(d);
                s(&["publish", &root, "q", "m"])
            },
            expect: Expect::Error(&["r/q", "Permission denied"]),
            unprivileged: true,
        },
        Case {
            name: "consume from a queue of another user",
            setup: |d| {
                let root = root_with_queue(d);
                let out = run(BIN, &s(&["publish", "-s", &root, "q", "m"]), d, false);
                assert_eq!(out.code, Some(0), "{out:?}");
                s(&["consume", &root, "q"])
            },
            expect: Expect::Error(&["r/q", "Permission denied"]),
            unprivileged: true,
        },
        Case {
            name: "settings that are not YAML",
            setup: |d| {
                let root = root_with_queue(d);
                std::fs::write(d.join("r/q/ddmq.yaml"), "message_timeout: [1\n").expect("write");
                s(&["publish", &root, "q", "m"])
            },
            expect: Expect::Error(&["r/q/ddmq.yaml", "line 2 column 1"]),
            unprivileged: false,
        },
        Case {
            name: "a setting of the wrong type",
            setup: |d| {
                let root = root_with_queue(d);
                std::fs::write(d.join("r/ddmq.yaml"), "priority: high\n").expect("write");
                s(&["publish", &root, "q", "m"])
            },
            expect: Expect::Error(&["r/ddmq.yaml", "`priority`"]),
            unprivileged: false,
        },
    ]
}

#[test]
fn bad_input_gives_a_clear_error_and_a_non_zero_exit() {
    support::run_cases(BIN, cases());
}

/// Publishes until the disk is full; every publish that succeeded is consumed afterwards,
/// in order, and the failed one is not (nor a torn copy of it).
#[test]
fn a_full_disk_loses_no_accepted_message() {
    full_disk("a_full_disk_loses_no_accepted_message", "64k", |dir| {
        let root = root_with_queue(dir);
        let mut accepted = Vec::new();
        let mut failed = None;
        for i in 0..500 {
            let body = format!("message {i:03}");
            let out = run(BIN, &s(&["publish", "-s", &root, "q", &body]), dir, false);
            if out.code == Some(0) {
                accepted.push(body);
            } else {
                failed = Some(out);
                break;
            }
        }
        let out = failed.expect("the disk never filled");
        check(
            "publish on a full disk",
            &out,
            &Expect::Error(&["r/q", "No space left"]),
        );
        assert!(!accepted.is_empty());
        let broker = ddmq::Broker::open(&root, false).expect("open the root");
        let mut got = Vec::new();
        loop {
            let batch = broker.consume("q", 100).expect("consume");
            if batch.is_empty() {
                break;
            }
            for d in batch {
                got.push(
                    d.message
                        .message
                        .as_str()
                        .expect("a string body")
                        .to_owned(),
                );
                d.ack().expect("ack");
            }
        }
        assert_eq!(got, accepted);
        eprintln!(
            "ddmq full disk: {} messages accepted before ENOSPC, all consumed",
            got.len()
        );
    });
}
