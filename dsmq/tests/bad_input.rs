//! Hostile input against the real `dsmq` binary on a free loopback port: malformed, huge
//! and cut-off frames, ping floods, a thousand idle connections, bad command lines. Each
//! gets a clear answer (a close code and reason, or one line on stderr and a non-zero exit
//! status); the server stays up, serves a normal client throughout, and every message it
//! acknowledged can still be read.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The server's default `max_message_bytes`.
const MAX: usize = 1 << 20;
/// How long any single wait of these tests may take before it fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

fn dsmq_exe() -> &'static str {
    env!("CARGO_BIN_EXE_dsmq")
}

/// The soft and hard limits of open files of this process, the hard one raised to `want`
/// if it is lower (root may), the soft one to `want` (both ends of each test connection
/// are in this machine, the client ends in this process).
fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let hard = if hard < want {
        setrlimit(Resource::RLIMIT_NOFILE, soft, want).unwrap_or_else(|e| {
            panic!("this test needs {want} open files; the hard limit is {hard} (ulimit -Hn) and raising it failed: {e}")
        });
        want
    } else {
        hard
    };
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
    }
    hard
}

/// A `dsmq serve --port 0` child, killed when dropped; its stderr is collected.
struct Served {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// Starts the server with a soft limit of `soft_nofile` open files (through util-linux
    /// `prlimit`, which execs it: the child is the server itself).
    fn start(soft_nofile: u64, hard_nofile: u64) -> Served {
        let hard = if hard_nofile == nix::sys::resource::RLIM_INFINITY {
            "unlimited".to_owned()
        } else {
            hard_nofile.to_string()
        };
        let mut child = Command::new("prlimit")
            .arg(format!("--nofile={soft_nofile}:{hard}"))
            .arg("--")
            .arg(dsmq_exe())
            .args(["serve", "--port", "0"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run prlimit (util-linux: apt-get install util-linux)");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on ws://") {
                    let _ = tx.send(line.clone());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let line = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("the server did not start: {e}; log: {log:?}"));
        let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        Served { child, port, log }
    }

    fn assert_up(&mut self, after: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "the server exited ({status}) after {after}; log:\n{}",
                self.log.lock().unwrap().join("\n")
            );
        }
        let (status, body) = http_get(self.port, "/healthz");
        assert_eq!((status, body.as_str()), (200, "ok"), "after {after}");
    }

    fn metric(&self, name: &str) -> u64 {
        let (_, body) = http_get(self.port, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("metric {name} missing in\n{body}"))
            .trim()
            .parse()
            .unwrap()
    }

    fn wait_metric(&self, name: &str, want: impl Fn(u64) -> bool, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = self.metric(name);
            if want(got) {
                return;
            }
            assert!(Instant::now() < deadline, "{name} is {got}: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's resident memory in MiB.
    fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib / 1024
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET: (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

// ---- a raw WebSocket client: every byte under the test's control ----

const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A TCP connection to the server with the WebSocket upgrade done.
fn upgraded(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap_or_else(|e| {
            panic!("no upgrade response (is the server out of file descriptors?): {e}")
        });
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// The header of a frame from a client: FIN, the RSV bits, the opcode, the length and (when
/// `masked`) a mask key of zeros, so the payload goes out as it is.
fn header(fin: bool, rsv: u8, opcode: u8, masked: bool, len: u64) -> Vec<u8> {
    let mut h = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask = if masked { 0x80 } else { 0 };
    if len < 126 {
        h.push(mask | len as u8);
    } else if len <= u64::from(u16::MAX) {
        h.push(mask | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(mask | 127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    if masked {
        h.extend_from_slice(&[0; 4]);
    }
    h
}

/// A whole, final, masked frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header(true, 0, opcode, true, payload.len() as u64);
    f.extend_from_slice(payload);
    f
}

fn text(payload: &str) -> Vec<u8> {
    frame(TEXT, payload.as_bytes())
}

fn put(topic: &str, message: &str) -> Vec<u8> {
    text(&format!(
        r#"{{"action": "put", "topic": "{topic}", "message": "{message}"}}"#
    ))
}

fn get(topic: &str) -> Vec<u8> {
    text(&format!(r#"{{"action": "get", "topic": "{topic}"}}"#))
}

/// What the server sent on a raw connection.
#[derive(Debug, PartialEq)]
enum Seen {
    Reply(String),
    Close(u16, String),
    /// The connection ended without a close frame.
    End,
}

/// Reads the server's next frame (unmasked); `None` at the end of the connection.
fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    match s.read_exact(&mut h) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!("no frame from the server within {PATIENCE:?}")
        }
        Err(_) => return None,
    }
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).ok()?;
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).ok()?;
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    assert_eq!(h[1] & 0x80, 0, "a masked frame from the server");
    let mut payload = vec![0; usize::try_from(len).unwrap()];
    s.read_exact(&mut payload).ok()?;
    Some((h[0] & 0x0f, payload))
}

/// Sends `bytes` on a new connection (from a thread, so the server's replies are read
/// meanwhile) and returns what the server sent until it closed the connection.
fn exchange(port: u16, bytes: Vec<u8>) -> Vec<Seen> {
    let mut s = upgraded(port);
    let mut w = s.try_clone().unwrap();
    // Write errors are expected: the server may close before it has read everything.
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&bytes);
    });
    let mut seen = Vec::new();
    loop {
        match read_frame(&mut s) {
            None => {
                seen.push(Seen::End);
                break;
            }
            Some((TEXT, p)) => seen.push(Seen::Reply(String::from_utf8(p).unwrap())),
            Some((CLOSE, p)) => {
                let code = if p.len() >= 2 {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    1005
                };
                let reason = String::from_utf8_lossy(p.get(2..).unwrap_or_default()).into_owned();
                seen.push(Seen::Close(code, reason));
                break;
            }
            Some((PING | PONG, _)) => {}
            Some((op, p)) => panic!("unexpected frame {op:#x} from the server: {p:?}"),
        }
    }
    let _ = s.shutdown(Shutdown::Both);
    writer.join().unwrap();
    seen
}

/// One malformed input: the bytes sent after a valid put and get, and the close expected.
struct Malformed {
    name: &'static str,
    bytes: Vec<u8>,
    /// Replies expected before the close, besides the one to the leading get.
    replies: usize,
    code: u16,
    reason: &'static str,
}

fn malformed_cases() -> Vec<Malformed> {
    let case = |name, bytes, code, reason| Malformed {
        name,
        bytes,
        replies: 0,
        code,
        reason,
    };
    let mut fragments = header(false, 0, TEXT, true, 600 << 10);
    fragments.extend(std::iter::repeat_n(b' ', 600 << 10));
    fragments.extend(header(true, 0, CONT, true, 600 << 10));
    fragments.extend(std::iter::repeat_n(b' ', 600 << 10));
    let mut ping_flood = Vec::new();
    for i in 0..20_000 {
        ping_flood.extend(frame(if i % 2 == 0 { PING } else { PONG }, &[b'p'; 125]));
    }
    ping_flood.extend(get("nothing"));
    ping_flood.extend(text("{not json"));
    let mut unmasked = header(true, 0, TEXT, false, 2);
    unmasked.extend_from_slice(b"{}");
    let mut interleaved = header(false, 0, TEXT, true, 1);
    interleaved.push(b'{');
    interleaved.extend(text("}"));
    let mut fragmented_ping = header(false, 0, PING, true, 1);
    fragmented_ping.push(b'p');
    vec![
        case("invalid JSON", text("{not json"), 1007, "invalid JSON:"),
        case("an empty text frame", text(""), 1007, "invalid JSON:"),
        case("a JSON array", text("[1, 2]"), 1007, "invalid JSON:"),
        case("JSON null", text("null"), 1007, "invalid JSON:"),
        case("a JSON string", text(r#""get""#), 1007, "invalid JSON:"),
        case(
            "JSON nested 100,000 deep",
            text(&"[".repeat(100_000)),
            1007,
            "invalid JSON:",
        ),
        case(
            "a lone surrogate",
            text(r#"{"action": "get", "topic": "\ud800"}"#),
            1007,
            "invalid JSON:",
        ),
        case(
            "trailing garbage",
            text(r#"{"action": "get", "topic": "t"} x"#),
            1007,
            "invalid JSON:",
        ),
        case(
            "a text frame that is not UTF-8",
            frame(TEXT, b"{\"action\": \"get\", \"topic\": \"\xff\"}"),
            1007,
            "invalid JSON:",
        ),
        case(
            "a binary frame that is not UTF-8",
            frame(BINARY, b"{\"action\": \"get\", \"topic\": \"\xc3\x28\"}"),
            1007,
            "invalid JSON:",
        ),
        case(
            "binary garbage",
            frame(BINARY, &[0, 1, 2, 0xff, 0xfe]),
            1007,
            "invalid JSON:",
        ),
        case(
            "an action that is a number",
            text(r#"{"action": 1, "topic": "t"}"#),
            1007,
            "invalid request: `action` must be a string",
        ),
        case(
            "a message that is a number",
            text(r#"{"action": "put", "topic": "t", "message": 5}"#),
            1007,
            "invalid request: `message` must be a string",
        ),
        case(
            "a message that is null",
            text(r#"{"action": "put", "topic": "t", "message": null}"#),
            1007,
            "invalid request: `message` must be a string",
        ),
        case(
            "a topic that is a list",
            text(r#"{"action": "get", "topic": ["t"]}"#),
            1007,
            "invalid request: `topic` must be a string",
        ),
        case(
            "a shutdown topic that is a number",
            text(r#"{"action": "shutdown", "topic": 5}"#),
            1007,
            "invalid request: `topic` must be a string",
        ),
        case(
            "an empty object",
            text("{}"),
            1007,
            "invalid request: missing `action`",
        ),
        case(
            "no topic",
            text(r#"{"action": "get"}"#),
            1007,
            "invalid request: missing `topic`",
        ),
        case(
            "a put without a message",
            text(r#"{"action": "put", "topic": "t"}"#),
            1007,
            "invalid request: missing `message`",
        ),
        case(
            "an unknown action",
            text(r#"{"action": "delete", "topic": "t"}"#),
            1003,
            "unknown action \"delete\"; expected put, get, get_latest or shutdown",
        ),
        case(
            "an action in capitals",
            text(r#"{"action": "GET", "topic": "t"}"#),
            1003,
            "unknown action \"GET\"",
        ),
        case(
            "a frame header claiming 1 TiB",
            header(true, 0, TEXT, true, 1 << 40),
            1009,
            "message too big: the limit is 1048576 bytes",
        ),
        case(
            "a frame header one byte over the limit",
            header(true, 0, BINARY, true, MAX as u64 + 1),
            1009,
            "message too big",
        ),
        case(
            "two fragments of 600 KiB",
            fragments,
            1009,
            "message too big",
        ),
        Malformed {
            name: "20,000 pings and pongs",
            bytes: ping_flood,
            replies: 1,
            code: 1007,
            reason: "invalid JSON:",
        },
        case(
            "a reserved bit",
            {
                let mut f = header(true, 0b100, TEXT, true, 2);
                f.extend_from_slice(b"{}");
                f
            },
            1002,
            "protocol error:",
        ),
        case(
            "a reserved data opcode",
            frame(0x3, b"{}"),
            1002,
            "protocol error:",
        ),
        case(
            "a reserved control opcode",
            frame(0xB, b""),
            1002,
            "protocol error:",
        ),
        case(
            "a continuation without a start",
            frame(CONT, b"{}"),
            1002,
            "protocol error:",
        ),
        case(
            "a new message inside a fragmented one",
            interleaved,
            1002,
            "protocol error:",
        ),
        case("an unmasked frame", unmasked, 1002, "protocol error:"),
        case(
            "a ping of 126 bytes",
            frame(PING, &[0; 126]),
            1002,
            "protocol error:",
        ),
        case(
            "a fragmented ping",
            fragmented_ping,
            1002,
            "protocol error:",
        ),
        case(
            "a close frame of one byte",
            frame(CLOSE, &[3]),
            1002,
            "protocol error:",
        ),
    ]
}

/// One connection cut short: the bytes sent before the client vanishes, starting with a
/// complete put of the case's name into topic `cut`.
struct Cut {
    name: &'static str,
    bytes: Vec<u8>,
}

fn cut_cases() -> Vec<Cut> {
    let with_put = |name: &'static str, rest: Vec<u8>| {
        let mut bytes = put("cut", name);
        bytes.extend(rest);
        Cut { name, bytes }
    };
    let mut mid_payload = header(true, 0, TEXT, true, 100);
    mid_payload.extend_from_slice(&[b' '; 10]);
    let mut big_partial = header(true, 0, TEXT, true, MAX as u64);
    big_partial.extend(std::iter::repeat_n(b' ', 64 << 10));
    let mut fragment = header(false, 0, TEXT, true, 1);
    fragment.push(b'{');
    vec![
        with_put("in a frame header", vec![0x81]),
        with_put("in the extended length", vec![0x81, 0xFF, 0, 0]),
        with_put("in the mask key", vec![0x81, 0x85, 1, 2]),
        with_put("in a payload", mid_payload),
        with_put("64 KiB into a 1 MiB frame", big_partial),
        with_put("between the fragments of a message", fragment),
        with_put("after a close frame", frame(CLOSE, &1000u16.to_be_bytes())),
        with_put("at once", Vec::new()),
    ]
}

/// A normal client's put acknowledged by a get on the same connection: the server handles
/// a connection's frames in order, so the reply means the put is stored.
fn acked_put(w: &mut dsmq::blocking::Client, acked: &mut Vec<String>, message: String) {
    w.put("acked", &message).expect("put");
    assert_eq!(w.get("sync").expect("sync get"), None);
    acked.push(message);
}

/// Reads every eligible message of `topic` on `r`.
fn drain(r: &mut dsmq::blocking::Client, topic: &str) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(m) = r.get(topic).expect("get") {
        got.push(m);
    }
    got
}

#[test]
fn the_server_refuses_hostile_input_stays_up_and_loses_no_acknowledged_message() {
    const IDLE: usize = 1000;
    const SILENT: usize = 50;
    // The client ends of the idle connections are in this process; the server gets a low
    // soft limit, as on a default system, which it must lift itself.
    let hard = raise_nofile(4096);
    let mut server = Served::start(256, hard);
    let port = server.port;
    let connect = || dsmq::blocking::Client::connect("127.0.0.1", port).expect("connect");
    let mut reader = connect();
    let mut writer = connect();
    let mut acked = Vec::new();

    for i in 0..10 {
        acked_put(&mut writer, &mut acked, format!("before {i}"));
    }
    // A request of exactly the limit is accepted.
    let skeleton = dsmq::format::encode_request(&dsmq::format::Request::Put {
        topic: "acked".into(),
        message: String::new(),
    });
    acked_put(&mut writer, &mut acked, "x".repeat(MAX - skeleton.len()));

    // Malformed frames: each closes its connection with its code and reason, after the
    // reply to the get before it; the put before it is stored.
    let cases = malformed_cases();
    for case in &cases {
        let mut bytes = put("bad-input", case.name);
        bytes.extend(get("nothing"));
        bytes.extend_from_slice(&case.bytes);
        let seen = exchange(port, bytes);
        let empty = Seen::Reply(r#"{"message": ""}"#.into());
        let replies = seen.iter().take_while(|s| **s == empty).count();
        assert_eq!(replies, 1 + case.replies, "{}: {seen:?}", case.name);
        match seen.last() {
            Some(Seen::Close(code, reason))
                if *code == case.code && reason.starts_with(case.reason) =>
            {
                assert!(reason.len() <= 123, "{}: {reason}", case.name);
            }
            _ => panic!(
                "{}: expected close {} {:?}, got {seen:?}",
                case.name, case.code, case.reason
            ),
        }
        server.assert_up(case.name);
        acked_put(&mut writer, &mut acked, format!("after {}", case.name));
    }
    server.wait_metric(
        "dsmq_protocol_errors_total",
        |n| n == cases.len() as u64,
        "one per malformed case",
    );

    // Whole frames of 4 MiB, eight at once: refused after their header, so the server
    // never holds them. The close may be lost to the reset that a close with unread bytes
    // causes; the server's memory is checked at the end.
    let big: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut f = header(true, 0, TEXT, true, 4 << 20);
                f.extend(std::iter::repeat_n(b'x', 4 << 20));
                exchange(port, f)
            })
        })
        .collect();
    for seen in big {
        let seen = seen.join().unwrap();
        match &seen[..] {
            [Seen::Close(1009, reason)] if reason.starts_with("message too big") => {}
            [Seen::End] => {}
            other => panic!("a 4 MiB frame: {other:?}"),
        }
    }
    server.assert_up("frames of 4 MiB");
    acked_put(&mut writer, &mut acked, "after frames of 4 MiB".into());

    // Connections cut short, in the handshake or in a frame.
    for cut in cut_cases() {
        let mut s = upgraded(port);
        s.write_all(&cut.bytes).unwrap();
        drop(s);
        server.assert_up(cut.name);
        acked_put(&mut writer, &mut acked, format!("after cut {}", cut.name));
    }
    for partial in [
        &b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"",
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(partial).unwrap();
        drop(s);
        server.assert_up("a handshake cut short");
    }
    // Not HTTP at all, and a header larger than any request: an HTTP error, then closed.
    for junk in [
        b"\x00\x01\x02 garbage\r\n\r\n".to_vec(),
        [
            &b"GET / HTTP/1.1\r\nX-Big: "[..],
            &vec![b'a'; 2 << 20],
            b"\r\n\r\n",
        ]
        .concat(),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer_thread = std::thread::spawn(move || {
            let _ = w.write_all(&junk);
        });
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        writer_thread.join().unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{answer}"
        );
        server.assert_up("a request that is not HTTP");
    }

    // A thousand idle WebSocket connections and some that never finish their HTTP request:
    // a new client still gets through and the acknowledged puts go on.
    let idle: Vec<TcpStream> = (0..IDLE).map(|_| upgraded(port)).collect();
    let silent: Vec<TcpStream> = (0..SILENT)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    server.wait_metric(
        "dsmq_connections",
        |n| n == IDLE as u64 + 2,
        "the idle connections and the two clients",
    );
    // Idle connections hold little: no buffer sized for the largest request.
    let rss = server.rss_mib();
    eprintln!("the server's resident memory with {IDLE} idle connections: {rss} MiB");
    assert!(rss < 96, "{IDLE} idle connections take {rss} MiB");
    let mut newcomer = connect();
    newcomer.put("newcomer", "hello").unwrap();
    for i in 0..100 {
        acked_put(&mut writer, &mut acked, format!("among the idle {i}"));
    }
    assert_eq!(
        drain(&mut newcomer, "acked"),
        acked[acked.len() - 100..],
        "a client connected among the idle ones"
    );
    // The idle connections are still served too.
    let mut some = idle[IDLE / 2].try_clone().unwrap();
    some.write_all(&get("acked")).unwrap();
    assert_eq!(
        read_frame(&mut some),
        Some((TEXT, br#"{"message": "among the idle 0"}"#.to_vec()))
    );
    drop((idle, silent, some, newcomer));
    server.wait_metric(
        "dsmq_connections",
        |n| n == 2,
        "the idle connections are let go",
    );
    server.assert_up("a thousand idle connections");

    // Nothing acknowledged is lost, nothing is duplicated, the order is kept; the puts
    // that came before a bad frame or a cut are stored too.
    assert_eq!(drain(&mut reader, "acked"), acked);
    assert_eq!(
        drain(&mut reader, "bad-input"),
        cases.iter().map(|c| c.name).collect::<Vec<_>>()
    );
    assert_eq!(
        drain(&mut reader, "cut"),
        cut_cases().iter().map(|c| c.name).collect::<Vec<_>>()
    );
    let rss = server.rss_mib();
    eprintln!("the server's resident memory after the abuse: {rss} MiB");
    assert!(rss < 128, "the server holds {rss} MiB after the abuse");
    let log = server.log.lock().unwrap().join("\n");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains("accept failed"),
        "out of file descriptors:\n{log}"
    );

    // And it still stops cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(server.child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

/// Runs `dsmq ARGS`, failing the test if it takes longer than `PATIENCE`.
fn run(args: &[&str]) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(dsmq_exe())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dsmq {args:?} still runs after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.code(), reading.join().unwrap(), start.elapsed())
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
fn bad_command_lines_and_unreachable_servers_are_one_clear_line_and_exit_2() {
    let closed = closed_port().to_string();
    // Accepts connections (the kernel does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port().to_string();
    // Answers HTTP that is not a WebSocket upgrade.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_port = plain.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        for mut s in plain.incoming().map_while(Result::ok) {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        }
    });
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();

    // (arguments, what the message must say). Usage errors are clap's: the first line
    // names the problem, then the usage.
    let usage: &[(&[&str], &str)] = &[
        (&[], "Usage: dsmq"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&["serve", "--bogus"], "unexpected argument '--bogus'"),
        (
            &["serve", "--port", "70000"],
            "invalid value '70000' for '--port <PORT>'",
        ),
        (
            &["serve", "--port", "abc"],
            "invalid value 'abc' for '--port <PORT>'",
        ),
        (&["serve", "--port", "-1"], "unexpected argument '-1'"),
        (
            &["serve", "--allow-shutdown", "maybe"],
            "invalid value 'maybe'",
        ),
        (&["serve", "--max-message-bytes", "0"], "must be at least 1"),
        (&["serve", "--max-connections", "0"], "must be at least 1"),
        (&["serve", "--ttl-secs", "soon"], "invalid value 'soon'"),
        (
            &["put", "t"],
            "the following required arguments were not provided",
        ),
        (&["get", "t", "--wait", "-1"], "unexpected argument '-1'"),
        (
            &["get", "t", "--wait=-1"],
            "not a number of seconds (0 or more)",
        ),
        (&["get", "t", "--wait", "nan"], "not a number of seconds"),
        (
            &["get", "t", "--wait", "soon"],
            "`soon` is not a number of seconds",
        ),
        (
            &["get", "t", "--follow", "--wait", "1"],
            "cannot be used with",
        ),
        (
            &["get", "t", "--connect-timeout", "0"],
            "must be more than 0 seconds",
        ),
        (&["shutdown", "extra"], "unexpected argument 'extra'"),
    ];
    for (args, needle) in usage {
        let (code, err, _) = run(args);
        assert_eq!(code, Some(2), "dsmq {args:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(err.contains(needle), "dsmq {args:?}: {err}");
        assert!(
            first.starts_with("error:") || args.is_empty(),
            "dsmq {args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "dsmq {args:?}: {err}");
    }

    // Run-time errors: one line `dsmq: ...` naming the address and the cause.
    let url = |p: &str| format!("cannot connect to ws://127.0.0.1:{p}/");
    let refused = "Connection refused";
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec!["get", "--port", &closed, "t"],
            vec![url(&closed), refused.into()],
        ),
        (vec!["get", "--port", "0", "t"], vec![url("0")]),
        (
            vec!["put", "--port", &closed, "t", "m"],
            vec![url(&closed), refused.into()],
        ),
        (
            vec!["tail", "--port", &closed, "t"],
            vec![url(&closed), refused.into()],
        ),
        (
            vec!["shutdown", "--port", &closed],
            vec![url(&closed), refused.into()],
        ),
        (
            vec![
                "get",
                "--port",
                &silent_port,
                "--connect-timeout",
                "0.5",
                "t",
            ],
            vec![
                url(&silent_port),
                "no WebSocket handshake reply within 500ms".into(),
            ],
        ),
        (
            vec![
                "put",
                "--port",
                &silent_port,
                "--connect-timeout",
                "0.5",
                "t",
                "m",
            ],
            vec![
                url(&silent_port),
                "no WebSocket handshake reply within 500ms".into(),
            ],
        ),
        (
            vec!["get", "--port", &plain_port, "t"],
            vec![url(&plain_port), "200".into()],
        ),
        (
            vec!["serve", "--port", &busy_port],
            vec![
                format!("cannot listen on 127.0.0.1:{busy_port}"),
                "in use".into(),
            ],
        ),
    ];
    for (args, needles) in &cases {
        let (code, err, took) = run(args);
        assert_eq!(code, Some(2), "dsmq {args:?}: {err}");
        // `serve` may log before it fails; the error is its last line.
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("dsmq: "), "dsmq {args:?}: {err}");
        for needle in needles {
            assert!(last.contains(needle.as_str()), "dsmq {args:?}: {err}");
        }
        if args[0] != "serve" {
            assert_eq!(err.lines().count(), 1, "dsmq {args:?}: {err}");
        }
        assert!(!err.contains("panicked"), "dsmq {args:?}: {err}");
        assert!(
            took < Duration::from_secs(10),
            "dsmq {args:?} took {took:?}"
        );
    }
    drop((silent, busy));
}
