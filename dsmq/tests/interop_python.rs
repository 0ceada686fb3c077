//! Wire interop with the original: Python dsmq 1.0.0 and 1.4.1 from the package index.
//!
//! Each version gets a virtual environment cached under the workspace's `target/`
//! (`target/dsmq-interop/venv-<version>`, reused when it already holds that version; set
//! `DSMQ_PY_WHEELHOUSE` to install offline from a directory of wheels). Python is
//! `DSMQ_PYTHON` if set, else a Python >= 3.10 found on this machine (pyenv or `python3`),
//! else Debian's `python3` installed with apt-get.
//!
//! - the Python client against our server (the specification's scenario, plus `get_latest`
//!   and `shutdown_server` on 1.4.1);
//! - our blocking and async clients against the Python server;
//! - the frames the Python client sends, captured by a bare WebSocket server, and the reply
//!   frames the Python server sends, read by a bare WebSocket client, compared byte for byte
//!   with ours (the reference exchange of the specification).

#[path = "support/pyvenv.rs"]
mod pyvenv;
mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dsmq::format::{self, Request};
use tungstenite::Message;

const VERSIONS: [&str; 2] = ["1.0.0", "1.4.1"];

/// The venv's python with `dsmq==version` installed (created once, then reused).
fn venv(version: &str) -> PathBuf {
    pyvenv::venv(version).unwrap_or_else(|e| panic!("{e}"))
}

/// A child process killed (and reaped) when dropped, also when the test fails.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long one Python script may run: the Python client has no timeouts of its own, so a
/// reply that never comes would otherwise hang the test run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

fn python_script(py: &Path, script: &str, args: &[String]) {
    let out_dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let child = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run python");
    let mut child = Reaped(child);
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(child); // killed and reaped if still running
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("python script failed ({s}):\nstdout:\n{stdout}\nstderr:\n{stderr}"),
        None => panic!(
            "python script still running after {SCRIPT_LIMIT:?}; killed\nstdout:\n{stdout}\nstderr:\n{stderr}"
        ),
    }
}

const CLIENT_SCENARIO: &str = r#"
import sys
from dsmq.client import connect
port, version = int(sys.argv[1]), sys.argv[2]
w = connect("127.0.0.1", port)
r = connect("127.0.0.1", port)
assert r.get("greetings") == "", "a fresh reader gets the empty string"
long = "x" * 1000
for m in ["hello world!", 'héllo "2"', long]:
    w.put("greetings", m)
# A round trip on the writer: its puts are stored before the reader asks.
assert w.get("sync") == ""
got = [r.get("greetings") for _ in range(3)]
assert got == ["hello world!", 'héllo "2"', long], got[:2]
assert r.get("greetings") == ""
late = connect("127.0.0.1", port)
assert late.get("greetings") == "", "a later connection sees nothing older"
if version != "1.0.0":
    w.put("t2", "x1")
    w.put("t2", "x2")
    assert w.get("sync") == ""
    assert r.get_latest("t2") == "x2"
    assert r.get_latest("t2") == ""
    assert r.get("t2") == "", "get_latest skipped x1"
    w.shutdown_server()
print("ok")
"#;

#[test]
fn python_clients_against_our_server() {
    for version in VERSIONS {
        let py = venv(version);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt.block_on(support::TestServer::start(dsmq::ServerConfig::default()));
        python_script(
            &py,
            CLIENT_SCENARIO,
            &[server.port.to_string(), version.to_owned()],
        );
        if version == "1.0.0" {
            assert!(!server.handle.is_stopping());
            rt.block_on(server.stop());
        } else {
            // shutdown_server() stopped it (the client is on loopback).
            let handle = server.handle.clone();
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), handle.stopped())
                    .await
                    .expect("the Python client's shutdown stops the server")
            });
            rt.block_on(server.stop());
        }
    }
}

/// Reserves a free port: bind port 0, read it, let go.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `dsmq.server.serve` of `version` in a fresh working directory (1.4.1 deletes
/// files there) and waits until it accepts connections. The port is reserved by binding
/// port 0 and letting go (Python's `serve` cannot report a port it picked), so another
/// process may take it first: then the server exits and we try another port.
fn python_server(version: &str) -> (Reaped, u16, tempfile::TempDir) {
    let py = venv(version);
    let mut attempt = 1;
    loop {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(&py)
            .arg("-c")
            .arg(format!(
                "from dsmq.server import serve; serve(host='127.0.0.1', port={port})"
            ))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python server");
        let mut child = Reaped(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let exited = loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break None;
            }
            if let Some(status) = child.0.try_wait().unwrap() {
                break Some(status);
            }
            assert!(
                Instant::now() < deadline,
                "the Python {version} server does not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        match exited {
            None => return (child, port, dir),
            Some(status) if attempt < 5 => {
                eprintln!("the Python {version} server on {port} exited ({status}); another port");
                attempt += 1;
            }
            Some(status) => panic!("the Python {version} server exited: {status}"),
        }
    }
}

fn wait_exit(child: &mut Reaped, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{what} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn our_blocking_client_against_python_servers() {
    for version in VERSIONS {
        let (mut child, port, _dir) = python_server(version);
        let mut w = dsmq::blocking::Client::connect("127.0.0.1", port).unwrap();
        let mut r = dsmq::blocking::Client::connect("127.0.0.1", port).unwrap();
        assert_eq!(r.get("greetings").unwrap(), None);
        assert_eq!(r.get_raw("greetings").unwrap(), "");
        let long = "x".repeat(1000);
        for m in ["hello world!", "héllo \"2\"", &long] {
            w.put("greetings", m).unwrap();
        }
        assert_eq!(w.get("sync").unwrap(), None);
        for m in ["hello world!", "héllo \"2\"", &long] {
            assert_eq!(r.get("greetings").unwrap().as_deref(), Some(m), "{version}");
        }
        assert_eq!(r.get("greetings").unwrap(), None);
        let mut late = dsmq::blocking::Client::connect("127.0.0.1", port).unwrap();
        assert_eq!(late.get("greetings").unwrap(), None);
        w.put("waited", "for").unwrap();
        assert_eq!(
            r.get_wait("waited", Duration::from_secs(30))
                .unwrap()
                .as_deref(),
            Some("for")
        );
        if version == "1.0.0" {
            drop(child);
        } else {
            w.put("t2", "x1").unwrap();
            w.put("t2", "x2").unwrap();
            assert_eq!(w.get("sync").unwrap(), None);
            assert_eq!(r.get_latest("t2").unwrap().as_deref(), Some("x2"));
            assert_eq!(r.get_latest("t2").unwrap(), None);
            w.shutdown_server().unwrap();
            wait_exit(&mut child, "the Python 1.4.1 server after shutdown_server");
        }
    }
}

#[test]
fn our_async_client_against_python_servers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for version in VERSIONS {
        let (mut child, port, _dir) = python_server(version);
        rt.block_on(async {
            let mut w = dsmq::Client::connect("127.0.0.1", port).await.unwrap();
            let mut r = dsmq::Client::connect("127.0.0.1", port).await.unwrap();
            assert_eq!(r.get("greetings").await.unwrap(), None);
            for m in ["hello world!", "héllo \"2\"", "\u{1F600}\n\t\u{0}"] {
                w.put("greetings", m).await.unwrap();
            }
            assert_eq!(w.get("sync").await.unwrap(), None);
            for m in ["hello world!", "héllo \"2\"", "\u{1F600}\n\t\u{0}"] {
                assert_eq!(r.get("greetings").await.unwrap().as_deref(), Some(m));
            }
            assert_eq!(r.get("greetings").await.unwrap(), None);
            if version != "1.0.0" {
                w.shutdown_server().await.unwrap();
            }
        });
        if version == "1.0.0" {
            drop(child);
        } else {
            wait_exit(&mut child, "the Python 1.4.1 server after shutdown_server");
        }
    }
}

/// The requests the Python client sends, captured by a bare WebSocket server, are the
/// bytes our client sends (and the specification shows).
#[test]
fn python_client_frames_are_ours_byte_for_byte() {
    for version in VERSIONS {
        let py = venv(version);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let capture = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let mut ws = tungstenite::accept(stream).expect("handshake with the Python client");
            let mut frames = Vec::new();
            loop {
                match ws.read() {
                    Ok(Message::Text(t)) => {
                        let text = t.to_string();
                        let request = format::decode_request(text.as_bytes()).unwrap();
                        if request.expects_reply() {
                            ws.send(Message::Text(format::encode_reply("").into()))
                                .unwrap();
                        }
                        let shutdown = matches!(request, Request::Shutdown { .. });
                        frames.push(text);
                        if shutdown {
                            let _ = ws.close(None);
                        }
                    }
                    Ok(Message::Binary(_)) => panic!("the Python client sent a binary frame"),
                    Ok(_) => {}
                    Err(_) => return frames,
                }
            }
        });
        let script = r#"
import sys
from dsmq.client import connect
c = connect("127.0.0.1", int(sys.argv[1]))
c.put("greetings", "hello world!")
c.put("greetings", 'héllo "2"')
assert c.get("greetings") == ""
if sys.argv[2] != "1.0.0":
    assert c.get_latest("t2") == ""
    c.shutdown_server()
else:
    c.websocket.close()
"#;
        python_script(&py, script, &[port.to_string(), version.to_owned()]);
        let frames = capture.join().unwrap();
        let mut expected = vec![
            Request::Put {
                topic: "greetings".into(),
                message: "hello world!".into(),
            },
            Request::Put {
                topic: "greetings".into(),
                message: "héllo \"2\"".into(),
            },
            Request::Get {
                topic: "greetings".into(),
            },
        ];
        if version != "1.0.0" {
            expected.push(Request::GetLatest { topic: "t2".into() });
            expected.push(Request::Shutdown {
                topic: String::new(),
            });
        }
        let expected: Vec<String> = expected.iter().map(format::encode_request).collect();
        assert_eq!(frames, expected, "Python {version} client frames");
        // And they are the specification's reference frames.
        assert_eq!(
            frames[1],
            r#"{"action": "put", "topic": "greetings", "message": "h\u00e9llo \"2\""}"#
        );
    }
}

/// The replies of the Python server, read by a bare client, are the bytes our server sends.
#[test]
fn python_server_replies_are_ours_byte_for_byte() {
    for version in VERSIONS {
        let (child, port, _dir) = python_server(version);
        let connect = || {
            let (ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/")).unwrap();
            ws
        };
        let mut reader = connect();
        let mut writer = connect();
        let ask = |ws: &mut tungstenite::WebSocket<_>, text: &str| -> String {
            ws.send(Message::Text(text.to_owned().into())).unwrap();
            match ws.read().unwrap() {
                Message::Text(t) => t.to_string(),
                other => panic!("expected a text reply, got {other:?}"),
            }
        };
        let get = r#"{"action": "get", "topic": "greetings"}"#;
        assert_eq!(ask(&mut reader, get), format::encode_reply(""));
        let tricky = "h\u{e9}llo \"2\" \u{1F600}\t\\";
        let put = format::encode_request(&Request::Put {
            topic: "greetings".into(),
            message: tricky.into(),
        });
        writer.send(Message::Text(put.into())).unwrap();
        assert_eq!(
            ask(&mut writer, r#"{"action": "get", "topic": "sync"}"#),
            format::encode_reply("")
        );
        let reply = ask(&mut reader, get);
        assert_eq!(reply, format::encode_reply(tricky), "Python {version}");
        assert_eq!(reply, r#"{"message": "h\u00e9llo \"2\" \ud83d\ude00\t\\"}"#);
        drop(child);
    }
}

/// The original closes the connection with 1011 ("internal error") on a frame that is not
/// JSON, with no reason a client could act on; this server says 1007 and what was wrong.
#[test]
fn malformed_frames_python_says_1011_we_say_1007_with_a_reason() {
    let close_of = |port: u16| -> (u16, String) {
        let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/")).unwrap();
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
            tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        ws.send(Message::Text("{not json".into())).unwrap();
        loop {
            match ws.read() {
                Ok(Message::Close(Some(f))) => return (f.code.into(), f.reason.to_string()),
                Ok(Message::Close(None)) => return (1005, String::new()),
                Ok(_) => {}
                Err(e) => panic!("no close frame: {e}"),
            }
        }
    };
    for version in VERSIONS {
        let (_child, port, _dir) = python_server(version);
        let (code, _) = close_of(port);
        assert_eq!(code, 1011, "Python {version}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(support::TestServer::start(dsmq::ServerConfig::default()));
    let (code, reason) = close_of(server.port);
    assert_eq!(code, 1007);
    assert!(
        reason.starts_with("invalid JSON: key must be a string"),
        "{reason}"
    );
    rt.block_on(server.stop());
}
