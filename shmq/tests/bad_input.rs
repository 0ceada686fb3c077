//! Hostile input to the `shmq` command: wrong flags, invalid keys, a key taken by a queue of
//! another geometry or format, a segment it may not attach, corrupt headers. Each is a clear
//! error (a non-zero exit status and a message naming what was wrong), never a panic. Every
//! segment a test creates is removed, also when it fails.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use shmq::Key;

fn shmq_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmq"))
}

/// Runs `cmd`, failing the test if it takes longer than 30 s.
fn run(mut cmd: Command) -> Output {
    let start = Instant::now();
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // A copied binary may be busy for a moment (see `mq_testkit::hostile::spawn`).
    let mut child = mq_testkit::hostile::spawn(&mut cmd).expect("run shmq");
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still runs after 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn shmq(args: &[&str]) -> Output {
    let mut cmd = shmq_cmd();
    cmd.args(args);
    run(cmd)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that `out` is a failure whose stderr contains every needle, and no panic.
fn fails(what: &str, out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    if out.status.success() {
        // A `create` that should have failed: remove what it made before failing the test.
        if let Ok(key) = String::from_utf8_lossy(&out.stdout).trim().parse::<Key>() {
            let _ = shmq::remove(key);
        }
    }
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "{what}: expected {needle:?} in: {err}"
        );
    }
    assert!(!err.contains("panicked"), "{what}: {err}");
}

/// Asserts a run-time error: status 1 and one line `shmq: ...` with every needle.
fn fails_one_line(what: &str, out: &Output, needles: &[&str]) {
    fails(what, out, 1, needles);
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
    assert!(err.starts_with("shmq: "), "{what}: {err}");
}

/// Queues created by this process for a test, deleted when dropped (also when the test
/// fails). Created here rather than by `shmq create`, so their creator is alive and a
/// concurrent `shmq gc` leaves them alone.
#[derive(Default)]
struct Segments(Vec<shmq::Queue>);

impl Segments {
    fn create(&mut self, words: u32, slots: u32, format: shmq::Format, mode: u32) -> Key {
        let options = shmq::Options {
            format,
            mode,
            ..shmq::Options::default()
        };
        let q = shmq::Queue::create_unique(words, slots, &options).expect("create a queue");
        let key = q.key();
        self.0.push(q);
        key
    }
}

impl Drop for Segments {
    fn drop(&mut self) {
        for q in &self.0 {
            let _ = q.delete();
        }
    }
}

#[test]
fn wrong_flags_and_invalid_keys_are_usage_errors() {
    let mut segments = Segments::default();
    let key = segments.create(2, 2, shmq::Format::Native, 0o600);
    let k = key.to_string();
    // (arguments, what stderr must say): clap's usage errors, status 2.
    let cases: &[(&[&str], &str)] = &[
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&["create", "--unique", "--words", "2"], "--slots <SLOTS>"),
        (
            &["create", "--unique", "--words", "x", "--slots", "2"],
            "invalid value 'x' for '--words <WORDS>'",
        ),
        (
            &["create", "--unique", "--words", "-2", "--slots", "2"],
            "unexpected argument '-2'",
        ),
        (
            &[
                "create",
                "--unique",
                "--words",
                "2",
                "--slots",
                "4294967296",
            ],
            "invalid value '4294967296'",
        ),
        (
            &["create", &k, "--unique", "--words", "2", "--slots", "2"],
            "cannot be used with",
        ),
        (
            &[
                "create", "--unique", "--words", "2", "--slots", "2", "--format", "java",
            ],
            "invalid value 'java'",
        ),
        (&["info"], "<KEY>"),
        (
            &["info", "xyz"],
            "invalid value 'xyz' for '<KEY>': invalid argument: a key is a decimal or 0x-hexadecimal 32-bit number",
        ),
        (
            &["info", "0x"],
            "a key is a decimal or 0x-hexadecimal 32-bit number",
        ),
        (
            &["info", "0x1ffffffff"],
            "a key is a decimal or 0x-hexadecimal 32-bit number",
        ),
        (
            &["info", "4294967296"],
            "a key is a decimal or 0x-hexadecimal 32-bit number",
        ),
        (&["info", "0"], "key 0 is IPC_PRIVATE"),
        (&["rm"], "<KEYS>"),
        (&["send", &k], "<TEXT>"),
        (
            &["send", &k, "x", "--shift", "--try"],
            "cannot be used with",
        ),
        (
            &["send", &k, "x", "--timeout", "soon"],
            "`soon` is not a number of seconds",
        ),
        (
            &["recv", &k, "--timeout=-1"],
            "`-1` is not a number of seconds (0 or more)",
        ),
        (
            &["recv", &k, "--timeout", "inf"],
            "`inf` is not a number of seconds",
        ),
        (
            &["recv", &k, "--timeout", "1e300"],
            "`1e300` is not a number of seconds",
        ),
        (
            &["recv", &k, "--timeout", "nan"],
            "`nan` is not a number of seconds",
        ),
        (&["recv", &k, "--count", "-1"], "unexpected argument '-1'"),
    ];
    for (args, needle) in cases {
        let out = shmq(args);
        fails(&format!("shmq {args:?}"), &out, 2, &[needle]);
        assert!(
            stderr(&out).starts_with("error: "),
            "shmq {args:?}: {}",
            stderr(&out)
        );
    }
    // Run-time errors: status 1, one line.
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["create", "--unique", "--words", "0", "--slots", "2"],
            &["invalid argument"],
        ),
        (
            &["create", "--unique", "--words", "2", "--slots", "0"],
            &["invalid argument"],
        ),
        (
            &[
                "create",
                "--unique",
                "--words",
                "4294967295",
                "--slots",
                "4294967295",
            ],
            &["queue too large"],
        ),
        (
            &[
                "create", "--unique", "--words", "2", "--slots", "2", "--mode", "8",
            ],
            &["--mode 8: not octal"],
        ),
        (
            &[
                "create", "--unique", "--words", "2", "--slots", "2", "--mode", "1777",
            ],
            &["--mode 1777: not octal permission bits (000 to 777)"],
        ),
        (
            &["create", "--words", "2", "--slots", "2"],
            &["give a KEY or --unique"],
        ),
        (
            &["send", &k, "seventeen bytes!!"],
            &["message of 17 bytes does not fit the queue's 16-byte messages"],
        ),
    ];
    for (args, needles) in cases {
        fails_one_line(&format!("shmq {args:?}"), &shmq(args), needles);
    }
    // A generous timeout is a deadline, not a panic: the queue has a message, so it returns.
    assert!(shmq(&["send", &k, "hi"]).status.success());
    let out = shmq(&["recv", &k, "--timeout", "1e18"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let out = shmq(&["recv", &k, "--timeout", "0"]);
    fails(
        "recv with timeout 0 on an empty queue",
        &out,
        3,
        &["is empty"],
    );
}

#[test]
fn a_missing_segment_is_named() {
    let key = shmq::find_free_key().unwrap().to_string();
    for args in [
        vec!["info", &key],
        vec!["send", &key, "x"],
        vec!["recv", &key, "--try"],
        vec!["rm", &key],
    ] {
        fails_one_line(
            &format!("shmq {args:?}"),
            &shmq(&args),
            &[&format!("no shared-memory segment at key {key}")],
        );
    }
}

#[test]
fn a_key_taken_by_another_queue_names_each_field_that_differs() {
    let mut segments = Segments::default();
    let key = segments.create(2, 4, shmq::Format::Native, 0o600);
    let go = segments.create(2, 4, shmq::Format::GoCompat, 0o600);
    let (k, g) = (key.to_string(), go.to_string());
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["create", &k, "--words", "4", "--slots", "4"],
            &[
                "a different queue already exists at key",
                "--words 2, not 4 (messages of 16 bytes)",
            ],
        ),
        (
            &["create", &k, "--words", "2", "--slots", "8"],
            &["--slots 4, not 8"],
        ),
        (
            &[
                "create", &k, "--words", "2", "--slots", "4", "--format", "go",
            ],
            &["--format native, not go"],
        ),
        (
            &["create", &g, "--words", "3", "--slots", "5"],
            &[
                "--words 2, not 3",
                "--slots 4, not 5",
                "--format go, not native",
            ],
        ),
        (
            &["create", &k, "--words", "2", "--slots", "4"],
            &["a queue already exists at key", "same geometry", "shmq rm"],
        ),
    ];
    for (args, needles) in cases {
        let out = shmq(args);
        fails_one_line(&format!("shmq {args:?}"), &out, needles);
        assert!(stderr(&out).contains(&k) || stderr(&out).contains(&g));
    }
    // The queues are untouched.
    let info = String::from_utf8(shmq(&["info", &k]).stdout).unwrap();
    assert!(info.contains("message      16 bytes (2 words)"), "{info}");
    assert!(info.contains("capacity     4"), "{info}");
}

#[test]
fn corrupt_headers_are_named_by_field_and_offset() {
    use shmq::Format::{GoCompat, Native};
    /// What is broken, the format, the offset and word poked, what the error must say.
    type Case<'a> = (&'a str, shmq::Format, usize, [u8; 8], &'a [&'a str]);
    let cases: &[Case<'_>] = &[
        (
            "magic",
            Native,
            0,
            *b"garbage!",
            &["unsupported segment at key"],
        ),
        (
            "zeroed magic",
            GoCompat,
            0,
            [0; 8],
            &[
                "corrupt segment at key",
                "field `magic` at offset 0: all zero",
            ],
        ),
        (
            "version",
            Native,
            8,
            [9, 0, 0, 0, 1, 0, 0, 0],
            &["unsupported segment", "version"],
        ),
        (
            "state",
            Native,
            8,
            [1, 0, 0, 0, 7, 0, 0, 0],
            &["corrupt segment at key", "field `state` at offset"],
        ),
        (
            "capacity beyond the segment",
            Native,
            16,
            [2, 0, 0, 0, 0xff, 0xff, 0, 0],
            &["corrupt segment at key", "field `capacity` at offset"],
        ),
        (
            "tail far beyond head",
            Native,
            64,
            100u64.to_le_bytes(),
            &["corrupt segment at key", "field `tail` at offset 64"],
        ),
        (
            "go start beyond capacity",
            GoCompat,
            24,
            [9, 0, 0, 0, 0, 0, 0, 0],
            &["corrupt segment at key", "field `start` at offset"],
        ),
        (
            "go len beyond capacity",
            GoCompat,
            24,
            [0, 0, 0, 0, 5, 0, 0, 0],
            &["corrupt segment at key", "field `len` at offset"],
        ),
        (
            "go message size not whole words",
            GoCompat,
            8,
            [4, 0, 0, 0, 12, 0, 0, 0],
            &["corrupt segment at key", "field `msg_bytes` at offset"],
        ),
    ];
    for (what, format, offset, bytes, needles) in cases {
        let mut segments = Segments::default();
        let key = segments.create(2, 4, *format, 0o600);
        let k = key.to_string();
        shmq::poke(key, *offset, bytes).unwrap();
        for args in [
            vec!["info", &k],
            vec!["send", &k, "x", "--try"],
            vec!["recv", &k, "--try"],
        ] {
            let out = shmq(&args);
            fails_one_line(&format!("{what}: shmq {args:?}"), &out, needles);
            assert!(stderr(&out).contains(&k), "{what}: {}", stderr(&out));
        }
        // `ls` lists queues by their magic: still there unless the magic is what broke.
        let ls = shmq(&["ls"]);
        assert!(ls.status.success(), "{what}: {}", stderr(&ls));
        let listed = String::from_utf8(ls.stdout).unwrap().contains(&k);
        assert_eq!(listed, *offset != 0, "{what}");
        // And it can be removed.
        let out = shmq(&["rm", &k]);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
    }
}

#[test]
fn a_segment_this_user_may_not_attach_is_permission_denied() {
    use std::os::unix::process::CommandExt;
    let mut segments = Segments::default();
    // /proc/self belongs to the effective user.
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    assert_eq!(
        uid, 0,
        "this test creates a segment as root and runs shmq as nobody: run it as root (CI does)"
    );
    // Root may attach anything; the owner is root, the mode 0600, the command runs as
    // nobody (uid 65534).
    let key = segments.create(2, 2, shmq::Format::Native, 0o600);
    let k = key.to_string();
    // A copy of the binary that nobody may run, wherever the build directory is.
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("shmq");
    std::fs::copy(env!("CARGO_BIN_EXE_shmq"), &exe).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [
        vec!["info", &k],
        vec!["send", &k, "x"],
        vec!["recv", &k, "--try"],
        vec!["rm", &k],
    ] {
        let mut cmd = Command::new(&exe);
        cmd.args(&args);
        cmd.uid(65534).gid(65534);
        let out = run(cmd);
        fails_one_line(
            &format!("shmq {args:?}"),
            &out,
            &[&format!(
                "permission denied on the shared-memory segment at key {k}"
            )],
        );
    }
    // Nothing was changed: the owner still sees an empty queue.
    let info = String::from_utf8(shmq(&["info", &k]).stdout).unwrap();
    assert!(info.contains("length       0"), "{info}");
}
