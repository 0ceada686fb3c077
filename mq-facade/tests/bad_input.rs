//! Hostile input to the `mq` command: bad URLs, missing or unusable paths, queues that exist
//! with another geometry, servers that refuse or never answer, wrong flags. Each is a clear
//! error (a non-zero exit status and a message naming what was wrong), within a bounded
//! time, never a panic. Traffic goes only to 127.0.0.1.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one `mq` run may take before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `mq ARGS` with an empty standard input: its output and how long it took.
fn mq(args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mq"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mq");
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), start.elapsed());
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mq {args:?} still runs after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts a failure with `code`, every needle on stderr, no panic; the stderr.
fn fails(args: &[&str], code: i32, needles: &[&str]) -> String {
    let (out, _) = mq(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "mq {args:?}: {err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "mq {args:?}: expected {needle:?} in: {err}"
        );
    }
    assert!(!err.contains("panicked"), "mq {args:?}: {err}");
    err
}

/// Asserts a run-time error: status 1, one line `mq: ...` with every needle.
fn fails_one_line(args: &[&str], needles: &[&str]) {
    let err = fails(args, 1, needles);
    assert!(err.starts_with("mq: "), "mq {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "mq {args:?}: {err}");
}

/// A port with nothing listening on it (bound, then let go).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn wrong_flags_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "Usage: mq"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&["send"], "<URL>"),
        (
            &["send", "mem://q", "--bogus"],
            "unexpected argument '--bogus'",
        ),
        (
            &["send", "mem://q", "x", "--priority", "256"],
            "invalid value '256' for '--priority <PRIORITY>'",
        ),
        (
            &["send", "mem://q", "x", "--ttl", "forever"],
            "`forever` is not a duration",
        ),
        (
            &["send", "mem://q", "x", "--ttl", "5parsecs"],
            "unknown unit `parsecs`",
        ),
        (&["send", "mem://q", "x", "--ttl", "1e300s"], "`1e300s`"),
        (
            &["recv", "mem://q", "-n", "x"],
            "invalid value 'x' for '--count <COUNT>'",
        ),
        (&["recv", "mem://q", "-n", "-1"], "unexpected argument '-1'"),
        (
            &["recv", "mem://q", "--all", "--follow"],
            "cannot be used with",
        ),
        (
            &["recv", "mem://q", "--ack", "--no-ack"],
            "cannot be used with",
        ),
        (
            &["recv", "mem://q", "--timeout", "-5s"],
            "unexpected argument '-5'",
        ),
        (&["copy", "mem://q"], "<TO>"),
        (
            &["copy", "mem://a", "mem://b", "--batch", "many"],
            "invalid value 'many'",
        ),
        (
            &["bench", "mem://q", "--producers", "x"],
            "invalid value 'x'",
        ),
        (&["info"], "<URL>"),
        (
            &["info", "mem://a", "mem://b"],
            "unexpected argument 'mem://b'",
        ),
    ];
    for (args, needle) in cases {
        let err = fails(args, 2, &[needle]);
        assert!(
            err.starts_with("error: ") || args.is_empty(),
            "mq {args:?}: {err}"
        );
    }
}

#[test]
fn bad_urls_name_the_bad_part() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "kafka://broker/topic".into(),
            vec!["unknown scheme `kafka` (known: mem, dmq, ddmq, dsmq, shmq, duraqueue, amqp)"],
        ),
        (
            "not a url".into(),
            vec![
                "invalid queue url `not a url`",
                "relative URL without a base",
            ],
        ),
        ("".into(), vec!["invalid queue url ``"]),
        (
            "mem://".into(),
            vec!["missing queue name: expected mem://NAME"],
        ),
        (
            "mem://q?capacity=ten".into(),
            vec!["parameter `capacity`: `ten` is not a valid"],
        ),
        (
            "mem://q?colour=blue".into(),
            vec!["unknown parameter `colour`"],
        ),
        (
            "mem://q?capacity=1&capacity=2".into(),
            vec!["parameter `capacity` given twice"],
        ),
        (
            "mem://q/extra".into(),
            vec!["unexpected path `/extra` after the queue name"],
        ),
        (
            "mem://user@q".into(),
            vec!["a queue name takes no port, user or password"],
        ),
        (
            format!("duraqueue://{d}/q"),
            vec!["missing parameter `size`"],
        ),
        (
            format!("duraqueue://{d}/q?size=lots"),
            vec!["parameter `size`", "lots"],
        ),
        (
            format!("duraqueue://{d}/q?size=8MiB&sync=maybe"),
            vec!["parameter `sync`", "maybe"],
        ),
        (
            "duraqueue:///?size=8MiB".into(),
            vec!["missing file path: expected duraqueue:///absolute/path"],
        ),
        (
            "duraqueue://host/q?size=8MiB".into(),
            vec!["unexpected host `host`: a local file is duraqueue:///absolute/path"],
        ),
        (
            format!("dmq://{d}/q?framing=morse"),
            vec!["parameter `framing`: `morse` is not one of"],
        ),
        (
            format!("dmq://{d}/q?durability=forever"),
            vec!["parameter `durability`: `forever` is not one of"],
        ),
        ("ddmq:///".into(), vec!["missing file path"]),
        (
            format!("ddmq://{d}/q?order=random"),
            vec!["parameter `order`: `random` is not one of"],
        ),
        (
            "dsmq://127.0.0.1:99999/t".into(),
            vec!["invalid port number"],
        ),
        (
            "dsmq://127.0.0.1:1/t?encoding=rot13".into(),
            vec!["parameter `encoding`: `rot13` is not one of"],
        ),
        (
            "shmq://xyz?words=2&slots=2".into(),
            vec!["key `xyz`", "e.g. shmq://0x5151"],
        ),
        (
            "shmq://0?words=2&slots=2".into(),
            vec!["key `0`", "IPC_PRIVATE"],
        ),
        (
            "shmq://0x5151?words=2".into(),
            vec!["parameters `words` and `slots` go together"],
        ),
        (
            "shmq://0x5151?words=1&slots=2".into(),
            vec!["parameter `words` must be at least 2"],
        ),
        (
            "shmq://0x5151?words=2&slots=0".into(),
            vec!["parameter `slots` must be at least 1"],
        ),
        (
            "shmq://0x5151?words=2&slots=2&format=json".into(),
            vec!["parameter `format`: `json` is not one of native, go"],
        ),
        ("amqp://guest:s3cret@127.0.0.1:1/%2f".into(), vec!["queue"]),
        (
            "amqp://guest:s3cret@127.0.0.1:1/%2f?queue=q&mode=weird".into(),
            vec!["parameter `mode`", "weird"],
        ),
        (
            "amqp://guest:s3cret@127.0.0.1:1/%2f?queue=q&prefetch=-1".into(),
            vec!["parameter `prefetch`"],
        ),
    ];
    for (url, needles) in &cases {
        for command in ["info", "recv"] {
            let args = [command, url.as_str()];
            fails_one_line(&args, &[&["invalid queue url"], &needles[..]].concat());
            let (out, _) = mq(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !err.contains("s3cret"),
                "a password in an error message: {err}"
            );
        }
    }
    // Nothing was created by the refused URLs.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn missing_and_unusable_paths_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let f = file.display().to_string();
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            format!("duraqueue://{d}/no/such/dir/q?size=4MiB"),
            vec![
                format!("{d}/no/such/dir/q"),
                "No such file or directory".into(),
            ],
        ),
        (
            format!("duraqueue://{f}/q?size=4MiB"),
            vec![format!("{f}/q"), "Not a directory".into()],
        ),
        (format!("duraqueue://{d}?size=4MiB"), vec![d.clone()]),
        (
            format!("dmq://{d}/no/such/dir/base"),
            vec![
                format!("{d}/no/such/dir/base"),
                "No such file or directory".into(),
            ],
        ),
        (
            format!("dmq://{f}/base"),
            vec![format!("{f}/base"), "Not a directory".into()],
        ),
        // ddmq creates its root when missing: the error is the creation's.
        (
            format!("ddmq://{f}/q"),
            vec![f.clone(), "File exists".into()],
        ),
    ];
    for (url, needles) in &cases {
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        for command in ["send", "recv"] {
            let mut args = vec![command, url.as_str()];
            if command == "send" {
                args.push("x");
            }
            fails_one_line(&args, &needles);
        }
    }
}

#[test]
fn an_existing_queue_of_another_geometry_is_refused_with_both_values() {
    let key = shmq::find_free_key().unwrap();
    /// Removes the segment whatever happens.
    struct Removing(shmq::Key);
    impl Drop for Removing {
        fn drop(&mut self) {
            let _ = shmq::remove(self.0);
        }
    }
    let _removing = Removing(key);
    let url = |words: u32, slots: u32, format: &str| {
        format!("shmq://{key}?words={words}&slots={slots}{format}")
    };
    let (out, _) = mq(&["send", &url(2, 4, ""), "hello"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fails_one_line(&["send", &url(4, 4, ""), "x"], &["`words` 2, not 4"]);
    fails_one_line(
        &["recv", &url(2, 8, ""), "--timeout", "1s"],
        &["`slots` 4, not 8"],
    );
    fails_one_line(
        &["info", &url(3, 5, "")],
        &["`words` 2, not 3 and `slots` 4, not 5"],
    );
    fails_one_line(
        &["info", &url(2, 4, "&format=go")],
        &["`format` native, not go"],
    );
    // A payload larger than the messages.
    fails_one_line(&["send", &url(2, 4, ""), "more than eight"], &["15", "8"]);
    // The queue is untouched.
    let (out, _) = mq(&["recv", &format!("shmq://{key}"), "--timeout", "5s"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
}

#[test]
fn unreachable_servers_fail_in_bounded_time() {
    let closed = closed_port();
    // Accepts connections (the kernel does, into the backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let quiet = silent.local_addr().unwrap().port();
    let cases: Vec<(String, Vec<String>, Duration)> = vec![
        (
            format!("dsmq://127.0.0.1:{closed}/t"),
            vec![
                format!("ws://127.0.0.1:{closed}/"),
                "Connection refused".into(),
            ],
            Duration::from_secs(5),
        ),
        (
            format!("dsmq://127.0.0.1:{quiet}/t"),
            vec![
                format!("ws://127.0.0.1:{quiet}/"),
                "no WebSocket handshake reply within 10s".into(),
            ],
            Duration::from_secs(30),
        ),
        (
            format!("amqp://guest:guest@127.0.0.1:{closed}/%2f?queue=q"),
            vec![format!("127.0.0.1:{closed}"), "refused".into()],
            Duration::from_secs(5),
        ),
        (
            format!("amqp://guest:guest@127.0.0.1:{quiet}/%2f?queue=q"),
            vec![format!("127.0.0.1:{quiet}")],
            Duration::from_secs(40),
        ),
    ];
    // In parallel: the silent ones take their connect timeouts.
    let runs: Vec<_> = cases
        .into_iter()
        .flat_map(|(url, needles, bound)| {
            ["send", "recv"].map(|command| {
                let (url, needles) = (url.clone(), needles.clone());
                std::thread::spawn(move || {
                    let mut args = vec![command, url.as_str()];
                    if command == "send" {
                        args.push("x");
                    }
                    let (out, took) = mq(&args);
                    (
                        args.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        out,
                        took,
                        needles,
                        bound,
                    )
                })
            })
        })
        .collect();
    for run in runs {
        let (args, out, took, needles, bound) = run.join().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "mq {args:?}: {err}");
        assert!(
            err.starts_with("mq: ") && err.lines().count() == 1,
            "mq {args:?}: {err}"
        );
        for needle in &needles {
            assert!(
                err.contains(needle.as_str()),
                "mq {args:?}: expected {needle:?} in: {err}"
            );
        }
        assert!(took < bound, "mq {args:?} took {took:?}");
    }
    drop(silent);
}

#[test]
fn odd_but_valid_counts_do_not_panic() {
    for args in [
        vec!["bench", "mem://b0", "-n", "0"],
        vec!["bench", "mem://b1", "-n", "1", "--size", "0"],
        vec![
            "bench",
            "mem://b2",
            "-n",
            "3",
            "--producers",
            "0",
            "--batch",
            "0",
        ],
        vec!["recv", "mem://r", "-n", "0"],
        vec![
            "copy", "mem://a", "mem://b", "--batch", "0", "--idle", "10ms",
        ],
    ] {
        let (out, _) = mq(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "mq {args:?}: {err}");
        assert!(!err.contains("panicked"), "mq {args:?}: {err}");
    }
}

#[test]
fn paths_and_segments_this_user_may_not_use_are_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // /proc/self belongs to the effective user.
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    assert_eq!(
        uid, 0,
        "this test makes files as root and runs mq as nobody: run it as root (CI does)"
    );
    // A copy of the binary that nobody may run, wherever the build directory is.
    let bin = tempfile::tempdir().unwrap();
    let exe = bin.path().join("mq");
    std::fs::copy(env!("CARGO_BIN_EXE_mq"), &exe).unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A directory only root may enter, and a readable one holding a file only root may use.
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let p = private.path().display().to_string();
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = open.path().display().to_string();
    let (out, _) = mq(&["send", &format!("duraqueue://{o}/q?size=4MiB"), "x"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(
        open.path().join("q"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let segment = shmq::Queue::create_unique(2, 2, &shmq::Options::default()).unwrap();
    /// Removes the segment whatever happens.
    struct Deleting(shmq::Queue);
    impl Drop for Deleting {
        fn drop(&mut self) {
            let _ = self.0.delete();
        }
    }
    let key = segment.key();
    let _segment = Deleting(segment);
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            format!("duraqueue://{p}/q?size=4MiB"),
            vec![format!("{p}/q"), "Permission denied".into()],
        ),
        (
            format!("duraqueue://{o}/q?size=4MiB"),
            vec![format!("{o}/q"), "Permission denied".into()],
        ),
        (
            format!("dmq://{p}/base"),
            vec![format!("{p}/base"), "Permission denied".into()],
        ),
        (
            format!("ddmq://{p}/root/q"),
            vec![format!("{p}/root"), "Permission denied".into()],
        ),
        (
            format!("shmq://{key}"),
            vec![format!(
                "permission denied on the shared-memory segment at key {key}"
            )],
        ),
    ];
    for (url, needles) in &cases {
        for command in ["send", "recv"] {
            let mut args = vec![command, url.as_str()];
            if command == "send" {
                args.push("x");
            }
            let mut cmd = Command::new(&exe);
            cmd.args(&args)
                .uid(65534)
                .gid(65534)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            // The fresh copy may be busy for a moment (see `mq_testkit::hostile::spawn`).
            let mut child = mq_testkit::hostile::spawn(&mut cmd).unwrap();
            let start = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if start.elapsed() > PATIENCE {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("mq {args:?} as nobody still runs after {PATIENCE:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "mq {args:?} as nobody: {err}");
            assert!(
                err.starts_with("mq: ") && err.lines().count() == 1,
                "mq {args:?}: {err}"
            );
            for needle in needles {
                assert!(
                    err.contains(needle.as_str()),
                    "mq {args:?}: expected {needle:?} in: {err}"
                );
            }
        }
    }
    // Nothing was created in the private directory.
    assert_eq!(std::fs::read_dir(private.path()).unwrap().count(), 0);
}
