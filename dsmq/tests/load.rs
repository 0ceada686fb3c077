//! Load and fault tests, loopback only and bounded: concurrent clients lose and duplicate
//! nothing, 1,000 idle connections, a client that never reads, retention and memory bounds
//! under load. `DSMQ_LOAD_MESSAGES` (default 40) sets the messages each of the 50 clients
//! puts.

mod support;

use std::collections::HashSet;
use std::io::Write as _;
use std::time::Duration;

use dsmq::{Clock, ServerConfig};
use support::TestServer;

fn per_client() -> usize {
    std::env::var("DSMQ_LOAD_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

/// 50 clients connect, then each puts its messages into one shared topic while reading it.
/// Every client must read every message exactly once, each writer's messages in order (the
/// Python server loses most of them here: "database table is locked").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_lose_and_duplicate_nothing() {
    const CLIENTS: usize = 50;
    let each = per_client();
    let server = TestServer::start(ServerConfig::default()).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(server.client().await);
    }
    // Everyone is connected before the first put: every message is eligible for everyone.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, mut client)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut got = Vec::new();
                for i in 0..each {
                    client.put("load", &format!("{c:02}-{i:05}")).await.unwrap();
                    if let Some(m) = client.get("load").await.unwrap() {
                        got.push(m);
                    }
                }
                barrier.wait().await; // every put was sent...
                client.get("sync").await.unwrap(); // ...and, after this round trip, stored
                barrier.wait().await;
                while let Some(m) = client.get("load").await.unwrap() {
                    got.push(m);
                }
                got
            })
        })
        .collect();
    for (c, task) in tasks.into_iter().enumerate() {
        let got = task.await.unwrap();
        assert_eq!(
            got.len(),
            CLIENTS * each,
            "client {c} read {} messages",
            got.len()
        );
        let distinct: HashSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), got.len(), "client {c} read duplicates");
        let mut last = vec![None; CLIENTS];
        for m in &got {
            let (w, i) = m.split_once('-').unwrap();
            let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
            assert!(
                last[w].is_none_or(|l| l < i),
                "client {c}: writer {w} out of order"
            );
            last[w] = Some(i);
        }
    }
    assert_eq!(
        server.metric("dsmq_puts_total"),
        (CLIENTS * each) as u64,
        "every put stored"
    );
    server.stop().await;
}

/// Raises the soft limit of open files to what `want` connections need (both ends are in
/// this process), within the hard limit.
fn raise_nofile(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < want {
        assert!(
            hard >= want,
            "1,000 idle connections need {want} open files; the hard limit is {hard} (ulimit -Hn)"
        );
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_and_the_server_still_serves() {
    const IDLE: usize = 1000;
    raise_nofile(2 * IDLE as u64 + 256);
    let server = TestServer::start(ServerConfig {
        max_connections: IDLE + 2,
        ..ServerConfig::default()
    })
    .await;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(server.client().await);
    }
    let port = server.port;
    let open = tokio::task::spawn_blocking(move || support::http_get(port, "/metrics").1)
        .await
        .unwrap();
    assert!(
        open.lines()
            .any(|l| l == format!("dsmq_connections {IDLE}")),
        "{open}"
    );
    let mut reader = server.client().await;
    let mut writer = server.client().await;
    writer.put("t", "through").await.unwrap();
    assert_eq!(
        reader
            .get_wait("t", Duration::from_secs(30))
            .await
            .unwrap()
            .as_deref(),
        Some("through")
    );
    // The idle ones still work, and each saw the put (they connected before it).
    for c in idle.iter_mut().step_by(97) {
        assert_eq!(c.get("t").await.unwrap().as_deref(), Some("through"));
    }
    // One over the limit is refused, the rest are unaffected.
    assert!(dsmq::Client::connect("127.0.0.1", port).await.is_err());
    drop(idle);
    server.stop().await;
}

/// A client that asks for big replies and never reads them: its connection is dropped after
/// the write timeout; other clients are served meanwhile and memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_stall_the_others() {
    let server = TestServer::start(ServerConfig {
        write_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    })
    .await;
    let port = server.port;
    // The stuck client: connected before the big messages, so all are eligible for it.
    let stuck = tokio::task::spawn_blocking(move || {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}/"), stream).unwrap();
        ws
    })
    .await
    .unwrap();
    let mut writer = server.client().await;
    let big = "b".repeat(512 << 10);
    for _ in 0..64 {
        writer.put("big", &big).await.unwrap();
    }
    writer.get("sync").await.unwrap();
    // 64 gets = 32 MiB of replies, far more than the socket buffers hold; never read.
    let mut stuck = tokio::task::spawn_blocking(move || {
        let mut ws = stuck;
        let get = br#"{"action": "get", "topic": "big"}"#;
        for _ in 0..64 {
            let frame = tungstenite::Message::Binary(get.to_vec().into());
            if ws.write(frame).is_err() {
                break;
            }
        }
        let _ = ws.flush();
        let _ = ws.get_mut().flush();
        ws
    })
    .await
    .unwrap();
    // Others are served while it is stuck.
    let mut other = server.client().await;
    writer.put("small", "served").await.unwrap();
    assert_eq!(
        other
            .get_wait("small", Duration::from_secs(30))
            .await
            .unwrap()
            .as_deref(),
        Some("served")
    );
    // The server gives up on the stuck connection (3 = stuck, writer, other).
    server.wait_metric("dsmq_connections", 2);
    assert!(server.metric("dsmq_protocol_errors_total") >= 1);
    let _ = stuck.get_mut().set_nonblocking(true);
    drop(stuck);
    server.stop().await;
}

/// Retention and the byte limit hold under a stream of puts: the store never exceeds its
/// bound, evicts oldest first, and everything is expired once the clock passes the ttl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_memory_bounds_hold_under_load() {
    const LIMIT: u64 = 256 << 10;
    let clock = Clock::manual();
    let server = TestServer::start(ServerConfig {
        clock: clock.clone(),
        max_stored_bytes: LIMIT as usize,
        sweep_interval: Duration::from_millis(5),
        ..ServerConfig::default()
    })
    .await;
    let mut reader = server.client().await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let port = server.port;
            let clock = clock.clone();
            tokio::spawn(async move {
                let mut c = dsmq::Client::connect("127.0.0.1", port).await.unwrap();
                let body = "m".repeat(1000);
                for i in 0..500 {
                    c.put("flood", &format!("{w}-{i:04}-{body}")).await.unwrap();
                    if i % 100 == 0 {
                        clock.advance(Duration::from_secs(1));
                        c.get("sync").await.unwrap();
                    }
                }
                c.get("sync").await.unwrap();
            })
        })
        .collect();
    let mut max_seen = 0;
    for w in writers {
        while !w.is_finished() {
            max_seen = max_seen.max(server.metric("dsmq_bytes_stored"));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        w.await.unwrap();
    }
    max_seen = max_seen.max(server.metric("dsmq_bytes_stored"));
    assert!(max_seen <= LIMIT, "{max_seen} bytes stored, limit {LIMIT}");
    let evicted = server.metric("dsmq_evicted_total");
    let stored = server.metric("dsmq_messages_stored");
    assert_eq!(
        evicted + stored,
        2000,
        "every put is stored or counted as evicted"
    );
    // The reader gets what is left, oldest first: the newest `stored` messages.
    let mut read = 0;
    while reader.get("flood").await.unwrap().is_some() {
        read += 1;
    }
    assert_eq!(read, stored);
    // Past the ttl everything is gone.
    clock.advance(Duration::from_secs(601));
    server.wait_metric("dsmq_messages_stored", 0);
    server.wait_metric("dsmq_bytes_stored", 0);
    assert_eq!(server.metric("dsmq_expired_total"), stored);
    server.stop().await;
}
