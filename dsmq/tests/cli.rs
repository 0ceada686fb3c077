//! The `dsmq` binary: serve, put, get (--wait, --latest), tail, shutdown, signals, exit codes.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn dsmq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dsmq"))
}

/// A `dsmq serve --port 0` child, killed when dropped.
struct Served {
    child: Child,
    port: u16,
    log: mpsc::Receiver<String>,
}

impl Served {
    fn start(extra: &[&str]) -> Served {
        let mut child = dsmq()
            .args(["serve", "--port", "0"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dsmq serve");
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut served = Served {
            child,
            port: 0,
            log,
        };
        let line = served.wait_log("listening on ws://");
        let port = line
            .rsplit(':')
            .next()
            .unwrap()
            .trim()
            .parse()
            .expect("port");
        served.port = port;
        served
    }

    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }

    fn port(&self) -> String {
        self.port.to_string()
    }

    /// Waits (bounded) until the server has `n` open connections.
    fn wait_connections(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            if body.lines().any(|l| l == format!("dsmq_connections {n}")) {
                return;
            }
            assert!(Instant::now() < deadline, "never {n} connections:\n{body}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client child (`get --wait`, `tail`), killed and reaped when dropped, also when the
/// test fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a child prints, each waited for at most 30 s (a missing line fails the test
/// instead of hanging it).
fn lines_of(child: &mut Killed) -> impl FnMut() -> String {
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    move || {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("a line within 30 s")
    }
}

fn run(args: &[&str]) -> std::process::Output {
    dsmq().args(args).output().expect("run dsmq")
}

#[test]
fn put_then_get_wait_prints_the_message() {
    let server = Served::start(&[]);
    let port = server.port();
    let getter = dsmq()
        .args(["get", "--port", &port, "greetings", "--wait", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_connections(1);
    let out = run(&["put", "--port", &port, "greetings", "héllo \"world\""]);
    assert!(out.status.success(), "{out:?}");
    let got = getter.wait_with_output().unwrap();
    assert_eq!(got.status.code(), Some(0));
    assert_eq!(String::from_utf8(got.stdout).unwrap(), "héllo \"world\"\n");
}

#[test]
fn a_fresh_get_sees_nothing_and_exits_1() {
    let server = Served::start(&[]);
    let out = run(&["put", "--port", &server.port(), "t", "before"]);
    assert!(out.status.success());
    let out = run(&["get", "--port", &server.port(), "t"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn tail_follows_and_put_reads_stdin() {
    let server = Served::start(&[]);
    let port = server.port();
    let mut tail = Killed(
        dsmq()
            .args(["tail", "--port", &port, "log"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    server.wait_connections(1);
    for m in ["one", "two"] {
        assert!(run(&["put", "--port", &port, "log", m]).status.success());
    }
    let mut put = dsmq()
        .args(["put", "--port", &port, "log", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin
        .take()
        .unwrap()
        .write_all(b"three from stdin")
        .unwrap();
    assert!(put.wait().unwrap().success());
    let mut next_line = lines_of(&mut tail);
    for want in ["one", "two", "three from stdin"] {
        assert_eq!(next_line(), want);
    }
}

#[test]
fn get_latest_skips_to_the_newest() {
    let server = Served::start(&[]);
    let port = server.port();
    let getter = dsmq()
        .args(["get", "--port", &port, "t", "--latest", "--wait", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    server.wait_connections(1);
    // One put of the two may land before the getter's first try; either way it prints one
    // message and exits 0.
    assert!(run(&["put", "--port", &port, "t", "x1"]).status.success());
    let got = getter.wait_with_output().unwrap();
    assert_eq!(got.status.code(), Some(0));
    assert_eq!(String::from_utf8(got.stdout).unwrap(), "x1\n");
}

#[test]
fn shutdown_command_stops_the_server() {
    let mut server = Served::start(&[]);
    let out = run(&["shutdown", "--port", &server.port()]);
    assert!(out.status.success(), "{out:?}");
    assert!(server.wait_exit().success());
    server.wait_log("stopped");
}

#[test]
fn shutdown_is_refused_when_the_policy_says_never() {
    let server = Served::start(&["--allow-shutdown", "never"]);
    let out = run(&["shutdown", "--port", &server.port()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("1008") && err.contains("shutdown not allowed"),
        "{err}"
    );
    // Still serving.
    assert_eq!(
        run(&["get", "--port", &server.port(), "t"]).status.code(),
        Some(1)
    );
}

#[test]
fn sigterm_and_sigint_stop_the_server_gracefully() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut server = Served::start(&[]);
        let pid = Pid::from_raw(i32::try_from(server.child.id()).unwrap());
        kill(pid, signal).unwrap();
        let status = server.wait_exit();
        assert!(status.success(), "{signal}: {status:?}");
        server.wait_log("shutting down");
    }
}

#[test]
fn connection_errors_and_usage_errors_exit_2() {
    // Nothing listens on port 1.
    let out = run(&["get", "--port", "1", "t"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot connect to ws://127.0.0.1:1/"), "{err}");
    let out = run(&["get"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["get", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("only sees messages put after it connected"),
        "{help}"
    );
}
