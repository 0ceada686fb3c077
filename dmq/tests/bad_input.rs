//! Bad input for the `dmq` command: wrong flags, missing paths, permission denied, a full
//! disk, an existing queue opened with another framing, a damaged map. Each case must exit
//! non-zero with a clear error (a usage error: code 2 naming the flag; anything else: code 1
//! and one line naming the path or field), never a panic, never a signal; and what was
//! accepted before the disk filled is read back afterwards.
//!
//! The permission case runs the command as uid/gid 65534 when the tests run as root (root
//! may write anywhere). The full-disk case mounts a 64 KiB tmpfs as root; without root it
//! re-runs itself under `unshare --user --map-root-user --mount`, and fails saying so when
//! neither is possible.

use mq_testkit::hostile as support;

use support::{Case, Expect, args as s, check, full_disk, path_in as at, run};

const BIN: &str = env!("CARGO_BIN_EXE_dmq");

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "unknown flag",
            setup: |_| s(&["-x"]),
            expect: Expect::Usage("-x"),
            unprivileged: false,
        },
        Case {
            name: "flag missing its value",
            setup: |_| s(&["-r", "-q"]),
            expect: Expect::Usage("-q"),
            unprivileged: false,
        },
        Case {
            name: "unknown framing",
            setup: |_| s(&["-r", "-m", "lines"]),
            expect: Expect::Usage("-m"),
            unprivileged: false,
        },
        Case {
            name: "count not a number",
            setup: |_| s(&["-w", "-n", "many"]),
            expect: Expect::Usage("-n"),
            unprivileged: false,
        },
        Case {
            name: "reader flag without -r",
            setup: |_| s(&["-w", "--nowait"]),
            expect: Expect::Usage("--nowait"),
            unprivileged: false,
        },
        Case {
            name: "no action",
            setup: |_| s(&["-q", "x"]),
            expect: Expect::Usage("-r or -w"),
            unprivileged: false,
        },
        Case {
            name: "missing directory",
            setup: |d| s(&["-q", &at(d, "missing/q"), "-w", "-n", "1"]),
            expect: Expect::Error(&["missing/q0", "No such file"]),
            unprivileged: false,
        },
        Case {
            name: "print a missing queue",
            setup: |d| s(&["-q", &at(d, "q"), "-p"]),
            expect: Expect::Error(&["qmap", "No such file"]),
            unprivileged: false,
        },
        Case {
            name: "permission denied on create",
            setup: |d| {
                let ro = d.join("ro");
                std::fs::create_dir(&ro).expect("mkdir");
                support::read_only(&ro);
                s(&["-q", &at(d, "ro/q"), "-w", "-n", "1"])
            },
            expect: Expect::Error(&["ro/q0", "Permission denied"]),
            unprivileged: true,
        },
        Case {
            name: "permission denied on a queue of another user",
            setup: |d| {
                let out = run(BIN, &s(&["-q", &at(d, "q"), "-w", "-n", "3"]), d, false);
                assert_eq!(out.code, Some(0), "{out:?}");
                s(&["-q", &at(d, "q"), "-r", "--nowait"])
            },
            expect: Expect::Error(&["qmap", "Permission denied"]),
            unprivileged: true,
        },
        Case {
            name: "existing queue, other framing",
            setup: |d| {
                let q = at(d, "q");
                let out = run(
                    BIN,
                    &s(&["-q", &q, "-m", "frames", "-w", "-n", "3"]),
                    d,
                    false,
                );
                assert_eq!(out.code, Some(0), "{out:?}");
                s(&["-q", &q, "-m", "newlines", "-r", "--nowait"])
            },
            expect: Expect::Error(&["qmap", "framing", "frames", "newlines"]),
            unprivileged: false,
        },
        Case {
            name: "truncated map",
            setup: |d| {
                let q = at(d, "q");
                let out = run(BIN, &s(&["-q", &q, "-w", "-n", "3"]), d, false);
                assert_eq!(out.code, Some(0), "{out:?}");
                std::fs::write(d.join("qmap"), [0u8; 100]).expect("damage the map");
                s(&["-q", &q, "-r", "--nowait"])
            },
            expect: Expect::Error(&["qmap", "size is 100 bytes"]),
            unprivileged: false,
        },
        Case {
            name: "position beyond its file",
            setup: |d| {
                let q = at(d, "q");
                let out = run(BIN, &s(&["-q", &q, "-w", "-n", "3"]), d, false);
                assert_eq!(out.code, Some(0), "{out:?}");
                std::fs::write(d.join("q0"), b"1\n").expect("shorten q0");
                let mut map = std::fs::read(d.join("qmap")).expect("the map");
                map[24] = 4; // position: beyond the 2 bytes of q0
                std::fs::write(d.join("qmap"), map).expect("damage the map");
                s(&["-q", &q, "-r", "--nowait"])
            },
            expect: Expect::Error(&["qmap", "position 4 (at offset 24)"]),
            unprivileged: false,
        },
    ]
}

#[test]
fn bad_input_gives_a_clear_error_and_a_non_zero_exit() {
    support::run_cases(BIN, cases());
}

/// Writes numbers until the disk is full, reads back every one that was accepted, then
/// (once the reader has reclaimed the drained file) writes and reads again: nothing
/// accepted is lost, nothing torn is left to merge with later records.
#[test]
fn a_full_disk_loses_no_accepted_message() {
    full_disk("a_full_disk_loses_no_accepted_message", "64k", |dir| {
        let q = at(dir, "q");
        let out = run(BIN, &s(&["-q", &q, "-w", "-n", "1000000"]), dir, false);
        check("write until full", &out, &Expect::Error(&["q0", "append"]));
        assert!(
            out.stderr.contains("No space left") || out.stderr.contains("short write"),
            "{out:?}"
        );
        let read = run(
            BIN,
            &s(&["-q", &q, "-r", "--nowait", "--print"]),
            dir,
            false,
        );
        assert_eq!(read.code, Some(0), "{read:?}");
        let got: Vec<u64> = read
            .stdout
            .lines()
            .map(|l| l.parse().unwrap_or_else(|_| panic!("not a number: {l:?}")))
            .collect();
        assert!(got.len() > 100, "only {} messages fit", got.len());
        let want: Vec<u64> = (1..=got.len() as u64).collect();
        assert_eq!(got, want, "the accepted messages, in order, each once");
        eprintln!(
            "dmq full disk: {} messages accepted before ENOSPC, all read back",
            got.len()
        );
        // The next reader finishes the switch (q0 is truncated: space again).
        let read = run(
            BIN,
            &s(&["-q", &q, "-r", "--nowait", "--print"]),
            dir,
            false,
        );
        assert_eq!((read.code, read.stdout.as_str()), (Some(0), ""), "{read:?}");
        let out = run(BIN, &s(&["-q", &q, "-w", "-n", "3"]), dir, false);
        assert_eq!(out.code, Some(0), "{out:?}");
        let read = run(
            BIN,
            &s(&["-q", &q, "-r", "--nowait", "--print"]),
            dir,
            false,
        );
        assert_eq!(
            (read.code, read.stdout.as_str()),
            (Some(0), "1\n2\n3\n"),
            "{read:?}"
        );
    });
}

/// A file-size limit (`ulimit -f`) cuts a write short inside a record: the partial record is
/// taken back, so the file ends at a record boundary and the next writer's records do not
/// merge with it.
#[test]
fn a_short_write_leaves_no_partial_record() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let q = at(dir.path(), "q");
    // The queue exists first (its map alone is over the limit); the shell ignores SIGXFSZ
    // so that a write beyond the limit is the error EFBIG, as for a quota.
    let out = run(BIN, &s(&["-q", &q, "-w", "-n", "0"]), dir.path(), false);
    assert_eq!(out.code, Some(0), "{out:?}");
    let script = format!("trap '' XFSZ; ulimit -f 1; exec {BIN} -q {q} -w -");
    // Records of 7 bytes: the 512-byte limit falls inside the 74th.
    let lines: String = (0..200).map(|i| format!("rec{i:03}\n")).collect();
    let out = support::run_with(
        "sh",
        &s(&["-c", &script]),
        dir.path(),
        false,
        Some(lines.as_bytes()),
    );
    check(
        "write past the size limit",
        &out,
        &Expect::Error(&["q0", "short write", "taken back"]),
    );
    let len = std::fs::metadata(dir.path().join("q0")).expect("q0").len();
    assert!(len < 512, "{len}");
    let read = run(
        BIN,
        &s(&["-q", &q, "-r", "--nowait", "--print"]),
        dir.path(),
        false,
    );
    assert_eq!(read.code, Some(0), "{read:?}");
    let got: Vec<String> = read.stdout.lines().map(str::to_owned).collect();
    let want: Vec<String> = (0..got.len()).map(|i| format!("rec{i:03}")).collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 73);
    assert_eq!(len as usize, got.iter().map(|l| l.len() + 1).sum::<usize>());
}
