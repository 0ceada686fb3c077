//! The `mq` binary: every subcommand on duraqueue and mem (and amqp against a private
//! RabbitMQ when the `amqp` feature is on), its help, its errors and exit codes, and a
//! 10,000-message copy from a duraqueue file to RabbitMQ with nothing lost or repeated.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn mq(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mq"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mq");
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait for mq")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `mq` and expects success; its stdout.
fn ok(args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = mq(args, stdin);
    assert!(
        out.status.success(),
        "mq {args:?} failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn dq(dir: &tempfile::TempDir, name: &str) -> String {
    format!("duraqueue://{}/{name}?size=4MiB", dir.path().display())
}

#[test]
fn help_explains_urls_exit_codes_and_acknowledgement() {
    let help = ok(&["--help"], None);
    for needle in [
        "amqp://USER:PASS@HOST:PORT/VHOST?queue=NAME",
        "duraqueue:///PATH",
        "EXIT STATUS",
        "copy",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}: {help}");
    }
    let recv = ok(&["recv", "--help"], None);
    assert!(
        recv.contains("acknowledged once it has been written out"),
        "{recv}"
    );
    let copy = ok(&["copy", "--help"], None);
    assert!(copy.contains("acknowledged only after"), "{copy}");
}

#[test]
fn bad_urls_and_arguments_are_clear_errors() {
    let out = mq(&["info", "kafka://broker/topic"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .starts_with("mq: invalid queue url `kafka://broker/topic`: unknown scheme `kafka`"),
        "{}",
        text(&out.stderr)
    );
    let out = mq(&["info", "duraqueue:///tmp/x"], None);
    assert!(
        text(&out.stderr).contains("missing parameter `size`"),
        "{}",
        text(&out.stderr)
    );
    let out = mq(&["recv", "mem://q", "--timeout", "soon"], None);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    assert!(
        text(&out.stderr).contains("not a duration"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn send_recv_info_on_a_duraqueue_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = dq(&dir, "q");
    assert_eq!(
        ok(&["send", &url, "one", "two"], None),
        "sent 2 message(s) (synced)\n"
    );
    assert_eq!(
        ok(&["send", &url, "-"], Some(b"three\nfour\r\nfive\n")),
        "sent 3 message(s) (synced)\n"
    );
    let json = ok(
        &["--json", "send", &url, "--whole"],
        Some(b"six\nstill six"),
    );
    assert_eq!(json.trim(), r#"{"durability":"synced","sent":1}"#);

    // --no-ack gives the message back: the next recv sees it again, marked redelivered.
    assert_eq!(ok(&["recv", &url, "--no-ack"], None), "one\n");
    let line = ok(&["recv", &url, "--json"], None);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["payload"], "one");
    assert_eq!(ok(&["recv", &url, "-n", "2"], None), "two\nthree\n");
    assert_eq!(ok(&["recv", &url, "--hex"], None), "666f7572\n");
    assert_eq!(ok(&["recv", &url, "--all"], None), "five\nsix\nstill six\n");

    // --follow with a timeout ends quietly once the queue stays empty that long.
    ok(&["send", &url, "seven", "eight"], None);
    assert_eq!(
        ok(&["recv", &url, "--follow", "--timeout", "300ms"], None),
        "seven\neight\n"
    );

    // Empty: --all ends quietly, -n with a timeout exits 3 and says what it got.
    assert_eq!(ok(&["recv", &url, "--all", "--timeout", "200ms"], None), "");
    let out = mq(&["recv", &url, "-n", "1", "--timeout", "200ms"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("received 0 of 1 message(s)"),
        "{}",
        text(&out.stderr)
    );

    let info = ok(&["info", &url], None);
    assert!(info.contains("backend           duraqueue"), "{info}");
    assert!(info.contains("durability        synced"), "{info}");
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "info", &url], None)).unwrap();
    assert_eq!(info["ack"], true);
    assert_eq!(info["cross_process"], true);
}

#[test]
fn binary_payloads_survive_json_and_hex() {
    let dir = tempfile::tempdir().unwrap();
    let url = dq(&dir, "bin");
    ok(&["send", &url, "--whole"], Some(&[0, 159, 146, 150, 255]));
    let line = ok(&["--json", "recv", &url], None);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["payload_hex"], "009f9296ff");
}

#[test]
fn copy_moves_messages_between_duraqueue_files() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dq(&dir, "from"), dq(&dir, "to"));
    let lines: String = (0..500).map(|i| format!("m{i}\n")).collect();
    ok(&["send", &from, "-"], Some(lines.as_bytes()));
    assert_eq!(
        ok(
            &["copy", &from, &to, "--batch", "64", "--idle", "200ms"],
            None
        ),
        "copied 500 message(s) (synced at the destination)\n"
    );
    assert_eq!(
        ok(&["recv", &from, "--all", "--timeout", "200ms"], None),
        ""
    );
    assert_eq!(
        ok(&["recv", &to, "--all", "--timeout", "200ms"], None),
        lines
    );
    // -n stops early and leaves the rest.
    ok(&["send", &from, "a", "b", "c"], None);
    assert_eq!(
        ok(&["copy", &from, &to, "-n", "2"], None),
        "copied 2 message(s) (synced at the destination)\n"
    );
    assert_eq!(ok(&["recv", &from, "--all"], None), "c\n");
}

#[test]
fn info_and_bench_on_mem() {
    let info = ok(&["info", "mem://cli-info?capacity=5"], None);
    assert!(info.contains("backend           mem"), "{info}");
    assert!(info.contains("capacity          5"), "{info}");
    let report = ok(
        &[
            "--json",
            "bench",
            "mem://cli-bench",
            "-n",
            "2000",
            "--producers",
            "4",
            "--batch",
            "50",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(v["messages"], 2000);
    assert_eq!(v["producers"], 4);
    assert!(
        v["confirmed_sends_per_sec"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(v["recv_per_sec"].as_f64().unwrap() > 0.0, "{report}");
}

#[cfg(feature = "amqp")]
#[path = "support/rabbitmq.rs"]
mod rabbitmq;

#[cfg(feature = "amqp")]
mod amqp {
    use super::*;

    #[test]
    fn copy_moves_ten_thousand_messages_from_duraqueue_to_rabbitmq() {
        let broker = crate::rabbitmq::Broker::shared();
        let dir = tempfile::tempdir().unwrap();
        let from = dq(&dir, "jobs");
        let to = broker.url("cli-copy", "");
        let lines: String = (0..10_000).map(|i| format!("job-{i:05}\n")).collect();
        assert_eq!(
            ok(&["send", &from, "-"], Some(lines.as_bytes())),
            "sent 10000 message(s) (synced)\n"
        );
        assert_eq!(
            ok(
                &["copy", &from, &to, "--batch", "500", "--idle", "500ms"],
                None
            ),
            "copied 10000 message(s) (synced at the destination)\n"
        );
        assert_eq!(
            ok(&["recv", &from, "--all", "--timeout", "200ms"], None),
            ""
        );
        let got = ok(&["recv", &to, "--all", "--timeout", "2s"], None);
        let got: Vec<&str> = got.lines().collect();
        let distinct: HashSet<&str> = got.iter().copied().collect();
        assert_eq!(distinct.len(), got.len(), "duplicates in the destination");
        assert_eq!(got.len(), 10_000, "lost {}", 10_000 - got.len());
        let want: Vec<String> = (0..10_000).map(|i| format!("job-{i:05}")).collect();
        assert_eq!(got, want, "in order");
    }

    #[test]
    fn send_recv_info_on_rabbitmq() {
        let broker = crate::rabbitmq::Broker::shared();
        let url = broker.url("cli-basic", "max_priority=3");
        assert_eq!(
            ok(&["send", &url, "--priority", "1", "low"], None),
            "sent 1 message(s) (synced)\n"
        );
        assert_eq!(
            ok(&["send", &url, "--priority", "3", "high"], None),
            "sent 1 message(s) (synced)\n"
        );
        let out = mq(&["send", &url, "--priority", "9", "too high"], None);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("priority 9 (this queue allows 0..=3)"),
            "{}",
            text(&out.stderr)
        );
        let first = ok(&["--json", "recv", &url, "--no-ack"], None);
        let v: serde_json::Value = serde_json::from_str(first.trim()).unwrap();
        assert_eq!(
            (v["payload"].as_str(), v["priority"].as_u64()),
            (Some("high"), Some(3))
        );
        let again = ok(&["--json", "recv", &url], None);
        let v: serde_json::Value = serde_json::from_str(again.trim()).unwrap();
        assert_eq!(
            (v["payload"].as_str(), v["redelivered"].as_bool()),
            (Some("high"), Some(true))
        );
        assert_eq!(ok(&["recv", &url, "--all"], None), "low\n");
        let info = ok(&["info", &url], None);
        assert!(info.contains("backend           amqp"), "{info}");
        assert!(info.contains("max_priority      3"), "{info}");
        let stream = ok(
            &[
                "--json",
                "bench",
                &broker.url("cli-bench-stream", "mode=stream"),
                "-n",
                "300",
            ],
            None,
        );
        let v: serde_json::Value = serde_json::from_str(stream.trim()).unwrap();
        assert!(v["recv_per_sec"].as_f64().unwrap() > 0.0, "{stream}");
        let report = ok(
            &[
                "--json",
                "bench",
                &broker.url("cli-bench", ""),
                "-n",
                "500",
                "--producers",
                "2",
            ],
            None,
        );
        let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
        assert_eq!(
            (v["messages"].as_u64(), v["durability"].as_str()),
            (Some(500), Some("synced"))
        );
    }

    #[test]
    fn unreachable_brokers_and_refused_logins_are_clear_errors() {
        let broker = crate::rabbitmq::Broker::shared();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let out = mq(
            &["info", &format!("amqp://127.0.0.1:{port}/%2f?queue=q")],
            None,
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr)
                .contains(&format!("cannot connect to the broker at 127.0.0.1:{port}")),
            "{}",
            text(&out.stderr)
        );
        let url = broker
            .url("cli-auth", "")
            .replace("guest:guest", "guest:nope");
        let out = mq(&["recv", &url], None);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("refused access for user `guest`"),
            "{}",
            text(&out.stderr)
        );
    }
}
