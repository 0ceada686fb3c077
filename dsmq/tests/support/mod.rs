//! Shared by the integration tests: an in-process server on a free loopback port, raw
//! WebSocket and HTTP helpers.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use dsmq::{Server, ServerConfig, ServerHandle};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

pub type Raw =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A server running on 127.0.0.1 on a free port; stopped when dropped.
pub struct TestServer {
    pub port: u16,
    pub handle: ServerHandle,
    pub task: Option<tokio::task::JoinHandle<dsmq::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> TestServer {
        let server = Server::bind("127.0.0.1:0", config).await.expect("bind");
        let port = server.local_addr().port();
        let handle = server.handle();
        let task = tokio::spawn(server.run());
        TestServer {
            port,
            handle,
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    pub async fn client(&self) -> dsmq::Client {
        dsmq::Client::connect("127.0.0.1", self.port)
            .await
            .expect("connect")
    }

    pub async fn raw(&self) -> Raw {
        let (ws, _) = tokio_tungstenite::connect_async(self.url())
            .await
            .expect("raw connect");
        ws
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("the server stops within 20 s")
                .expect("server task")
                .expect("server run");
        }
    }

    /// The value of one metric line (`name` with its labels) from `GET /metrics`.
    pub fn metric(&self, name: &str) -> u64 {
        let (_, body) = http_get(self.port, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("metric {name} missing in\n{body}"))
            .trim()
            .parse()
            .expect("a number")
    }

    /// Waits (bounded) until `metric` reaches `want`.
    pub fn wait_metric(&self, name: &str, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.metric(name);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is {got}, expected {want}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Sends a text frame.
pub async fn send(ws: &mut Raw, text: &str) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

/// The next text frame, exactly.
pub async fn recv_text(ws: &mut Raw) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame within 20 s")
        {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The close frame the server sends next: (code, reason).
pub async fn recv_close(ws: &mut Raw) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame within 20 s")
        {
            Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A plain HTTP/1.1 GET: (status code, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {out:?}"));
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}
