//! Bad input for the `duraqueue` command: wrong flags, missing paths, permission denied, a
//! full disk, an existing queue opened with another ring size or format, a damaged file.
//! Each case must exit non-zero with a clear error (a usage error: code 2 naming the flag;
//! anything else: code 1 and one line naming the path or field), never a panic, never a
//! signal (a store through the mapping into a hole on a full disk would be SIGBUS); and
//! what was accepted before the disk filled is read back afterwards.
//!
//! The permission cases run the command as uid/gid 65534 when the tests run as root. The
//! full-disk cases mount a small tmpfs as root; without root they re-run themselves under
//! `unshare --user --map-root-user --mount`, and fail saying so when neither is possible.

use mq_testkit::hostile as support;

use std::path::Path;

use support::{Case, Expect, args as s, check, full_disk, path_in as at, run};

const BIN: &str = env!("CARGO_BIN_EXE_duraqueue");

/// Creates `q` in `dir` with a 64 KiB ring in `format`.
fn create(dir: &Path, format: &str) -> String {
    let q = at(dir, "q");
    let out = run(
        BIN,
        &s(&["create", &q, "--size", "64K", "--format", format]),
        dir,
        false,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    q
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "no command",
            setup: |_| s(&[]),
            expect: Expect::Usage("<COMMAND>"),
            unprivileged: false,
        },
        Case {
            name: "unknown command",
            setup: |_| s(&["frob", "q"]),
            expect: Expect::Usage("frob"),
            unprivileged: false,
        },
        Case {
            name: "unknown flag",
            setup: |_| s(&["info", "q", "--bogus"]),
            expect: Expect::Usage("--bogus"),
            unprivileged: false,
        },
        Case {
            name: "missing size",
            setup: |_| s(&["create", "q"]),
            expect: Expect::Usage("--size"),
            unprivileged: false,
        },
        Case {
            name: "size that is not a size",
            setup: |_| s(&["create", "q", "--size", "12x"]),
            expect: Expect::Usage("--size"),
            unprivileged: false,
        },
        Case {
            name: "unknown format",
            setup: |_| s(&["create", "q", "--size", "64K", "--format", "v3"]),
            expect: Expect::Usage("--format"),
            unprivileged: false,
        },
        Case {
            name: "count that is not a number",
            setup: |_| s(&["poll", "q", "-n", "all"]),
            expect: Expect::Usage("--count"),
            unprivileged: false,
        },
        Case {
            name: "size not a multiple of the page",
            setup: |d| s(&["create", &at(d, "q"), "--size", "1000"]),
            expect: Expect::Error(&["invalid ring size 1000"]),
            unprivileged: false,
        },
        Case {
            name: "info of a missing file",
            setup: |d| s(&["info", &at(d, "missing")]),
            expect: Expect::Error(&["missing", "No such file"]),
            unprivileged: false,
        },
        Case {
            name: "poll of a missing file",
            setup: |d| s(&["poll", &at(d, "missing")]),
            expect: Expect::Error(&["missing", "No such file"]),
            unprivileged: false,
        },
        Case {
            name: "offer into a missing directory",
            setup: |d| s(&["offer", &at(d, "missing/q"), "--size", "64K", "x"]),
            expect: Expect::Error(&["missing/q", "No such file"]),
            unprivileged: false,
        },
        Case {
            name: "create where it may not write",
            setup: |d| {
                let ro = d.join("ro");
                std::fs::create_dir(&ro).expect("mkdir");
                support::read_only(&ro);
                s(&["create", &at(d, "ro/q"), "--size", "64K"])
            },
            expect: Expect::Error(&["ro/q", "Permission denied"]),
            unprivileged: true,
        },
        Case {
            name: "offer to a queue of another user",
            setup: |d| {
                let q = create(d, "v2");
                s(&["offer", &q, "x"])
            },
            expect: Expect::Error(&["/q", "Permission denied"]),
            unprivileged: true,
        },
        Case {
            name: "existing queue, other ring size",
            setup: |d| {
                let q = create(d, "v1");
                s(&["offer", &q, "--size", "128K", "x"])
            },
            expect: Expect::Error(&["/q", "ring of 65536 bytes, not 131072"]),
            unprivileged: false,
        },
        Case {
            name: "existing queue, created again in another format",
            setup: |d| {
                let q = create(d, "v1");
                s(&["create", &q, "--size", "64K", "--format", "v2"])
            },
            expect: Expect::Error(&["/q", "already exists"]),
            unprivileged: false,
        },
        Case {
            name: "a file that is no queue",
            setup: |d| {
                std::fs::write(d.join("q"), b"not a queue").expect("write");
                s(&["poll", &at(d, "q")])
            },
            expect: Expect::Error(&["/q"]),
            unprivileged: false,
        },
        Case {
            name: "a v2 superblock damaged in both copies",
            setup: |d| {
                let q = create(d, "v2");
                let mut bytes = std::fs::read(&q).expect("read");
                bytes[8] ^= 1;
                bytes[512 + 8] ^= 1;
                std::fs::write(&q, bytes).expect("damage");
                s(&["poll", &q])
            },
            expect: Expect::Error(&["/q", "offset"]),
            unprivileged: false,
        },
    ]
}

#[test]
fn bad_input_gives_a_clear_error_and_a_non_zero_exit() {
    support::run_cases(BIN, cases());
}

/// Fills the rest of the file system under `dir` with one file.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut filler = std::fs::File::create(dir.join("filler")).expect("a filler file");
    let block = vec![0xAAu8; 4096];
    while filler.write_all(&block).is_ok() {}
    assert!(filler.write_all(&block).is_err(), "the disk is full");
}

/// A ring larger than the free space is refused at creation, and nothing is left behind;
/// a sparse file of the C original's format larger than the free space is refused by a
/// writer before it maps it (a store into a hole there would be SIGBUS).
#[test]
fn a_ring_larger_than_the_free_space_is_refused_not_a_sigbus() {
    full_disk(
        "a_ring_larger_than_the_free_space_is_refused_not_a_sigbus",
        "256k",
        |dir| {
            let big = at(dir, "big");
            let out = run(BIN, &s(&["create", &big, "--size", "1M"]), dir, false);
            check(
                "create beyond the free space",
                &out,
                &Expect::Error(&["big", "reserve", "No space left"]),
            );
            assert!(
                !dir.join("big").exists(),
                "a half-made queue file was left behind"
            );

            let sparse = dir.join("sparse");
            std::fs::File::create(&sparse)
                .and_then(|f| f.set_len((1 << 20) + 1))
                .expect("a sparse v1 file");
            let item = "x".repeat(200);
            let items: Vec<String> = std::iter::once("offer".to_owned())
                .chain([sparse.display().to_string()])
                .chain(std::iter::repeat_n(item, 2000))
                .collect();
            let out = run(BIN, &items, dir, false);
            check(
                "offer into a sparse file",
                &out,
                &Expect::Error(&["sparse", "reserve", "No space left"]),
            );
        },
    );
}

/// A ring created before the disk filled keeps taking and giving items: its space was
/// reserved at creation. Every item accepted comes back, in order.
#[test]
fn a_full_disk_loses_no_accepted_item() {
    full_disk("a_full_disk_loses_no_accepted_item", "256k", |dir| {
        let q = at(dir, "q");
        let out = run(
            BIN,
            &s(&["create", &q, "--size", "64K", "--format", "v2"]),
            dir,
            false,
        );
        assert_eq!(out.code, Some(0), "{out:?}");
        let first: Vec<String> = (0..100).map(|i| format!("item-{i}")).collect();
        let offer = |items: &[String]| {
            let mut args = s(&["offer", &q]);
            args.extend(items.iter().cloned());
            run(BIN, &args, dir, false)
        };
        let out = offer(&first);
        assert_eq!(out.code, Some(0), "{out:?}");
        fill(dir);
        let second: Vec<String> = (100..200).map(|i| format!("item-{i}")).collect();
        let out = offer(&second);
        assert_eq!(out.code, Some(0), "offer on a full disk: {out:?}");
        let out = run(BIN, &s(&["poll", &q]), dir, false);
        assert_eq!(out.code, Some(0), "{out:?}");
        let got: Vec<&str> = out.stdout.lines().collect();
        let want: Vec<&str> = first.iter().chain(&second).map(String::as_str).collect();
        assert_eq!(got, want);
        eprintln!(
            "duraqueue full disk: {} items offered and polled, 100 of them after the disk filled",
            got.len()
        );
    });
}
