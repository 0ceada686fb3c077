//! The server's behaviour through the wire: the specification's reference exchange byte for
//! byte, eligibility, cursors, retention (with a manual clock), limits, errors, HTTP routes
//! and shutdown.

mod support;

use std::time::Duration;

use dsmq::{Clock, ServerConfig, ShutdownPolicy};
use support::{TestServer, http_get, recv_close, recv_text, send};

const GET_GREETINGS: &str = r#"{"action": "get", "topic": "greetings"}"#;
const EMPTY: &str = r#"{"message": ""}"#;

/// §2.2 of the specification: writer A, reader B, frames compared byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_exchange_byte_for_byte() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut b = server.raw().await;
    let mut a = server.raw().await;
    send(&mut b, GET_GREETINGS).await;
    assert_eq!(recv_text(&mut b).await, EMPTY);
    send(
        &mut a,
        r#"{"action": "put", "topic": "greetings", "message": "hello world!"}"#,
    )
    .await;
    send(
        &mut a,
        r#"{"action": "put", "topic": "greetings", "message": "h\u00e9llo \"2\""}"#,
    )
    .await;
    // A's puts are unacknowledged; a get on A orders them before B's reads.
    send(&mut a, r#"{"action": "get", "topic": "sync"}"#).await;
    assert_eq!(recv_text(&mut a).await, EMPTY);
    send(&mut b, GET_GREETINGS).await;
    assert_eq!(recv_text(&mut b).await, r#"{"message": "hello world!"}"#);
    send(&mut b, GET_GREETINGS).await;
    assert_eq!(
        recv_text(&mut b).await,
        r#"{"message": "h\u00e9llo \"2\""}"#
    );
    send(&mut b, GET_GREETINGS).await;
    assert_eq!(recv_text(&mut b).await, EMPTY);
    send(
        &mut a,
        r#"{"action": "put", "topic": "t2", "message": "x1"}"#,
    )
    .await;
    send(
        &mut a,
        r#"{"action": "put", "topic": "t2", "message": "x2"}"#,
    )
    .await;
    send(&mut a, r#"{"action": "get", "topic": "sync"}"#).await;
    assert_eq!(recv_text(&mut a).await, EMPTY);
    send(&mut b, r#"{"action": "get_latest", "topic": "t2"}"#).await;
    assert_eq!(recv_text(&mut b).await, r#"{"message": "x2"}"#);
    send(&mut b, r#"{"action": "get_latest", "topic": "t2"}"#).await;
    assert_eq!(recv_text(&mut b).await, EMPTY);
    // After get_latest the skipped x1 is not delivered by get either.
    send(&mut b, r#"{"action": "get", "topic": "t2"}"#).await;
    assert_eq!(recv_text(&mut b).await, EMPTY);
    send(&mut a, r#"{"action": "shutdown", "topic": ""}"#).await;
    assert_eq!(recv_close(&mut a).await.0, 1000);
    assert_eq!(recv_close(&mut b).await.0, 1001);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_sees_only_what_is_stored_after_it_connected() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut writer = server.client().await;
    let mut early = server.client().await;
    writer.put("t", "before").await.unwrap();
    assert_eq!(writer.get("t").await.unwrap().as_deref(), Some("before"));
    let mut late = server.client().await;
    writer.put("t", "after").await.unwrap();
    assert_eq!(writer.get("t").await.unwrap().as_deref(), Some("after"));
    assert_eq!(early.get("t").await.unwrap().as_deref(), Some("before"));
    assert_eq!(early.get("t").await.unwrap().as_deref(), Some("after"));
    assert_eq!(late.get("t").await.unwrap().as_deref(), Some("after"));
    assert_eq!(late.get("t").await.unwrap(), None);
    assert_eq!(late.get_raw("t").await.unwrap(), "");
    // Unknown topics and the empty topic.
    assert_eq!(late.get("never-used").await.unwrap(), None);
    writer.put("", "in the empty topic").await.unwrap();
    assert_eq!(
        late.get_wait("", Duration::from_secs(20))
            .await
            .unwrap()
            .as_deref(),
        Some("in the empty topic")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reader_gets_every_message_in_store_order_across_writers() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut r1 = server.client().await;
    let mut r2 = server.client().await;
    let mut w1 = server.client().await;
    let mut w2 = server.client().await;
    for i in 0..50 {
        w1.put("t", &format!("w1-{i}")).await.unwrap();
        w2.put("t", &format!("w2-{i}")).await.unwrap();
        w2.put("other", &format!("o-{i}")).await.unwrap();
    }
    // Round trips make sure both writers' puts are stored.
    w1.get("sync").await.unwrap();
    w2.get("sync").await.unwrap();
    let mut first = Vec::new();
    while let Some(m) = r1.get("t").await.unwrap() {
        first.push(m);
    }
    let mut second = Vec::new();
    while let Some(m) = r2.get("t").await.unwrap() {
        second.push(m);
    }
    assert_eq!(first.len(), 100);
    assert_eq!(first, second, "both readers see the same store order");
    for w in ["w1-", "w2-"] {
        let mine: Vec<&String> = first.iter().filter(|m| m.starts_with(w)).collect();
        let want: Vec<String> = (0..50).map(|i| format!("{w}{i}")).collect();
        assert_eq!(mine, want.iter().collect::<Vec<_>>(), "{w} order");
    }
    assert_eq!(r1.get("other").await.unwrap().as_deref(), Some("o-0"));
    server.stop().await;
}

/// The original orders by timestamp and skips messages stored in the same clock tick: here
/// the clock never moves, and every message still arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_puts_in_one_clock_tick_all_arrive_in_order() {
    let server = TestServer::start(ServerConfig {
        clock: Clock::manual(),
        ..ServerConfig::default()
    })
    .await;
    let mut reader = server.client().await;
    let mut writer = server.client().await;
    for i in 0..1000 {
        writer.put("tick", &i.to_string()).await.unwrap();
    }
    writer.get("sync").await.unwrap();
    for i in 0..1000 {
        assert_eq!(reader.get("tick").await.unwrap(), Some(i.to_string()));
    }
    assert_eq!(reader.get("tick").await.unwrap(), None);
    server.stop().await;
}

/// A server whose clock only the test moves, sweeping every 5 ms.
async fn manual_clock_server() -> (Clock, TestServer) {
    let clock = Clock::manual();
    let server = TestServer::start(ServerConfig {
        clock: clock.clone(),
        sweep_interval: Duration::from_millis(5),
        ..ServerConfig::default()
    })
    .await;
    (clock, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_exact_with_or_without_the_sweeper() {
    let (clock, server) = manual_clock_server().await;
    let mut reader = server.client().await;
    let mut writer = server.client().await;
    writer.put("t", "old").await.unwrap();
    writer.get("sync").await.unwrap();
    clock.advance(Duration::from_millis(599_900));
    writer.put("t", "young").await.unwrap();
    writer.put("t", "young 2").await.unwrap();
    writer.get("sync").await.unwrap();
    // 599.9 s old: still there.
    assert_eq!(reader.get("t").await.unwrap().as_deref(), Some("old"));
    clock.advance(Duration::from_millis(100));
    // "young" is 0.1 s old, "old" would be 600 s: gone, whether swept yet or not.
    let mut late_reader_of_old = server.client().await;
    assert_eq!(late_reader_of_old.get("t").await.unwrap(), None);
    assert_eq!(reader.get("t").await.unwrap().as_deref(), Some("young"));
    clock.advance(Duration::from_secs(600));
    assert_eq!(reader.get("t").await.unwrap(), None, "young 2 expired");
    server.wait_metric("dsmq_expired_total", 3);
    server.wait_metric("dsmq_messages_stored", 0);
    server.wait_metric("dsmq_bytes_stored", 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_evict_the_oldest_and_count_it() {
    // Room for the three messages of "a" (68 bytes each) but not for four 73-byte ones.
    let limit = 3 * cost("a", "a1") + 6;
    assert!(limit < 3 * cost("b", "bbbbbbb"));
    let server = TestServer::start(ServerConfig {
        max_messages_per_topic: 3,
        max_stored_bytes: limit as usize,
        ..ServerConfig::default()
    })
    .await;
    let mut reader = server.client().await;
    let mut writer = server.client().await;
    for i in 1..=5 {
        writer.put("a", &format!("a{i}")).await.unwrap();
    }
    writer.get("sync").await.unwrap();
    for want in ["a3", "a4", "a5"] {
        assert_eq!(reader.get("a").await.unwrap().as_deref(), Some(want));
    }
    assert_eq!(server.metric("dsmq_evicted_total"), 2);
    assert_eq!(server.metric("dsmq_bytes_stored"), 3 * cost("a", "a1"));
    // Three 73-byte messages do not fit beside them: the oldest overall go, then "bbbbbbb".
    for m in ["bbbbbbb", "ccccccc", "ddddddd"] {
        writer.put("b", m).await.unwrap();
    }
    writer.get("sync").await.unwrap();
    assert_eq!(reader.get("a").await.unwrap(), None);
    assert_eq!(reader.get("b").await.unwrap().as_deref(), Some("ccccccc"));
    assert_eq!(reader.get("b").await.unwrap().as_deref(), Some("ddddddd"));
    assert_eq!(server.metric("dsmq_bytes_stored"), 2 * cost("b", "ccccccc"));
    assert_eq!(server.metric("dsmq_messages_stored"), 2);
    assert_eq!(server.metric("dsmq_evicted_total"), 6);
    server.stop().await;
}

/// Every row of §2.3: the close code and reason, the error counted, the server still up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_close_with_a_code_and_reason_and_the_server_stays_up() {
    let server = TestServer::start(ServerConfig {
        max_message_bytes: 1000,
        allow_shutdown: ShutdownPolicy::Never,
        ..ServerConfig::default()
    })
    .await;
    let huge = format!(
        r#"{{"action": "put", "topic": "t", "message": "{}"}}"#,
        "x".repeat(2000)
    );
    let cases: [(&str, u16, &str); 8] = [
        ("{not json", 1007, "invalid JSON:"),
        ("[1]", 1007, "invalid JSON: expected an object"),
        (
            r#"{"action": "get"}"#,
            1007,
            "invalid request: missing `topic`",
        ),
        (
            r#"{"action": "put", "topic": "t", "message": 5}"#,
            1007,
            "invalid request: `message` must be a string",
        ),
        (
            r#"{"action": "peek", "topic": "t"}"#,
            1003,
            r#"unknown action "peek"; expected put, get, get_latest or shutdown"#,
        ),
        (&huge, 1009, "message too big"),
        (
            r#"{"action": "shutdown", "topic": ""}"#,
            1008,
            "shutdown not allowed",
        ),
        ("", 1007, "invalid JSON:"),
    ];
    for (i, (frame, code, reason)) in cases.iter().enumerate() {
        let mut ws = server.raw().await;
        send(&mut ws, frame).await;
        let (got_code, got_reason) = recv_close(&mut ws).await;
        assert_eq!(got_code, *code, "{frame:.60}: {got_reason}");
        assert!(
            got_reason.starts_with(reason),
            "{frame:.60}: reason {got_reason:?}"
        );
        assert_eq!(server.metric("dsmq_protocol_errors_total"), i as u64 + 1);
        // The server is still up and serving.
        let mut c = server.client().await;
        c.put("alive", "yes").await.unwrap();
        assert_eq!(c.get("alive").await.unwrap().as_deref(), Some("yes"));
    }
    // The client surfaces the close as an error, on that call and later ones.
    let mut c = server.client().await;
    let err = c.shutdown_server().await.unwrap_err();
    assert!(
        matches!(&err, dsmq::Error::Closed { code: 1008, reason } if reason.starts_with("shutdown not allowed")),
        "{err}"
    );
    let again = c.get("t").await.unwrap_err();
    assert!(
        matches!(again, dsmq::Error::Closed { code: 1008, .. }),
        "{again}"
    );
    // A binary frame carrying JSON is a request like any other.
    let mut ws = server.raw().await;
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        br#"{"action":"get","topic":"t"}"#.to_vec().into(),
    ))
    .await
    .unwrap();
    assert_eq!(recv_text(&mut ws).await, EMPTY);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_metrics_and_plain_http_elsewhere() {
    let server = TestServer::start(ServerConfig::default()).await;
    let port = server.port;
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/healthz"))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/anything"))
        .await
        .unwrap();
    assert_eq!(status, 426);
    assert!(body.contains("WebSocket"), "{body}");
    let mut reader = server.client().await;
    let mut writer = server.client().await;
    writer.put("t", "héllo").await.unwrap();
    assert_eq!(
        reader
            .get_wait("t", Duration::from_secs(20))
            .await
            .unwrap()
            .as_deref(),
        Some("héllo")
    );
    assert_eq!(reader.get("t").await.unwrap(), None);
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    for line in [
        "# TYPE dsmq_connections gauge",
        "dsmq_connections 2",
        "dsmq_puts_total 1",
        "dsmq_gets_total{result=\"hit\"} 1",
        "dsmq_messages_stored 1",
        "dsmq_bytes_stored 72", // "héllo" in "t": 6 + 2 × 1 + 64
        "dsmq_expired_total 0",
        "dsmq_evicted_total 0",
        "dsmq_protocol_errors_total 0",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "{line:?} missing in\n{body}"
        );
    }
    // A WebSocket on /metrics is a connection like any other.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    send(&mut ws, GET_GREETINGS).await;
    assert_eq!(recv_text(&mut ws).await, EMPTY);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_clients_with_1001_and_refuses_new_ones() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut a = server.raw().await;
    let mut client = server.client().await;
    let handle = server.handle.clone();
    let port = server.port;
    handle.shutdown();
    assert_eq!(
        recv_close(&mut a).await,
        (1001, "server shutting down".into())
    );
    let err = client.get("t").await.unwrap_err();
    assert!(
        matches!(err, dsmq::Error::Closed { code: 1001, .. }),
        "{err}"
    );
    server.stop().await;
    handle.stopped().await;
    assert!(dsmq::Client::connect("127.0.0.1", port).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_with_503() {
    let server = TestServer::start(ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    })
    .await;
    let mut first = server.client().await;
    let _second = server.client().await;
    let err = dsmq::Client::connect("127.0.0.1", server.port)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(server.metric("dsmq_refused_connections_total"), 1);
    first.put("t", "x").await.unwrap();
    first.close().await.unwrap();
    server.wait_metric("dsmq_connections", 1);
    let mut third = server.client().await;
    assert_eq!(third.get("t").await.unwrap(), None);
    server.stop().await;
}

#[test]
fn the_blocking_client_needs_no_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start(ServerConfig::default()));
    let mut reader = dsmq::blocking::Client::connect("127.0.0.1", server.port).unwrap();
    let mut writer = dsmq::blocking::Client::connect("localhost", server.port).unwrap();
    assert_eq!(reader.get("t").unwrap(), None);
    writer.put("t", "one").unwrap();
    writer.put("t", "two").unwrap();
    writer.put("t", "three").unwrap();
    assert_eq!(
        reader
            .get_wait("t", Duration::from_secs(20))
            .unwrap()
            .as_deref(),
        Some("one")
    );
    assert_eq!(reader.get_latest("t").unwrap().as_deref(), Some("three"));
    assert_eq!(reader.get_raw("t").unwrap(), "");
    writer.shutdown_server().unwrap();
    let err = writer.get("t").unwrap_err();
    assert!(
        matches!(err, dsmq::Error::Closed { code: 1000, .. }),
        "{err}"
    );
    let err = reader.get("t").unwrap_err();
    assert!(
        matches!(err, dsmq::Error::Closed { code: 1001, .. }),
        "{err}"
    );
    rt.block_on(server.stop());
}

/// Idle connections are pinged; a client that reads only when it asks still works after
/// many pings, and a raw client sees the pings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_pinged_and_stay_usable() {
    let server = TestServer::start(ServerConfig {
        ping_interval: Some(Duration::from_millis(10)),
        ..ServerConfig::default()
    })
    .await;
    let mut raw = server.raw().await;
    use futures_util::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(20), raw.next())
        .await
        .expect("a ping within 20 s");
    assert!(
        matches!(
            first,
            Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_)))
        ),
        "{first:?}"
    );
    let mut reader = server.client().await;
    let mut writer = server.client().await;
    // Let several pings queue up unread on both clients.
    while server.metric("dsmq_connections") != 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    writer.put("t", "after pings").await.unwrap();
    assert_eq!(
        reader
            .get_wait("t", Duration::from_secs(20))
            .await
            .unwrap()
            .as_deref(),
        Some("after pings")
    );
    server.stop().await;
}

/// What a message costs against `max_stored_bytes`, as documented on `ServerConfig`: its
/// text, its topic twice (row and index), and 64 bytes of row and index overhead.
fn cost(topic: &str, message: &str) -> u64 {
    (message.len() + 2 * topic.len() + 64) as u64
}

/// Topics and rows take memory too: a flood of empty messages, under long topics or under
/// many short ones, is held to the byte bound like message text is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_counts_topics_and_per_message_overhead() {
    const LIMIT: u64 = 64 << 10;
    let server = TestServer::start(ServerConfig {
        max_stored_bytes: LIMIT as usize,
        ..ServerConfig::default()
    })
    .await;
    let mut reader = server.client().await;
    let mut writer = server.client().await;
    let long_topic = "t".repeat(4096);
    for i in 0..100 {
        writer.put(&format!("{long_topic}{i}"), "").await.unwrap();
    }
    for i in 0..5000 {
        writer.put(&format!("e{i}"), "").await.unwrap();
    }
    writer.put("last", "kept").await.unwrap();
    writer.get("sync").await.unwrap();
    let bytes = server.metric("dsmq_bytes_stored");
    let stored = server.metric("dsmq_messages_stored");
    let evicted = server.metric("dsmq_evicted_total");
    assert!(bytes <= LIMIT, "{bytes} bytes stored, limit {LIMIT}");
    assert_eq!(
        stored + evicted,
        5101,
        "every put stored or counted as evicted"
    );
    assert!(
        stored * cost("e0", "") <= LIMIT,
        "{stored} empty messages held within {LIMIT} bytes"
    );
    // Oldest first: the long topics went, the newest message is there.
    assert_eq!(reader.get(&format!("{long_topic}0")).await.unwrap(), None);
    assert_eq!(reader.get("last").await.unwrap().as_deref(), Some("kept"));
    server.stop().await;
}

/// A put on a connection the server has closed is an error, not a message silently lost
/// (the close frame is waiting in the socket; a put must look before it writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_after_the_server_closed_the_connection_is_an_error() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client().await;
    let port = server.port;
    server.stop().await;
    let err = client.put("t", "lost?").await.unwrap_err();
    assert!(
        matches!(err, dsmq::Error::Closed { code: 1001, .. }),
        "{err}"
    );
    // The blocking client likewise.
    let server = TestServer::start(ServerConfig::default()).await;
    let port2 = server.port;
    assert_ne!(port, 0);
    let mut blocking = tokio::task::spawn_blocking(move || {
        dsmq::blocking::Client::connect("127.0.0.1", port2).unwrap()
    })
    .await
    .unwrap();
    server.stop().await;
    let err = tokio::task::spawn_blocking(move || blocking.put("t", "lost?").unwrap_err())
        .await
        .unwrap();
    assert!(
        matches!(err, dsmq::Error::Closed { code: 1001, .. }),
        "{err}"
    );
}

/// A `get` cancelled (here by a timeout) after its request went out leaves its reply in
/// flight: the next call must not take that reply as its own (it may be another topic's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_get_leaves_the_connection_marked_out_of_step() {
    use futures_util::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // A server that answers each request only once the next one has arrived.
    let slow = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut seen = 0;
        while let Some(Ok(m)) = ws.next().await {
            if m.is_text() {
                seen += 1;
                if seen == 2 {
                    let late = r#"{"message": "the reply to the first get"}"#;
                    let _ = ws
                        .send(tokio_tungstenite::tungstenite::Message::Text(late.into()))
                        .await;
                }
            }
        }
    });
    let mut client = dsmq::Client::connect("127.0.0.1", port).await.unwrap();
    let cancelled = tokio::time::timeout(Duration::from_millis(50), client.get("a")).await;
    assert!(cancelled.is_err(), "the silent server cannot answer");
    let next = tokio::time::timeout(Duration::from_secs(20), client.get("b"))
        .await
        .expect("the next call fails at once");
    match next {
        Err(dsmq::Error::Protocol(why)) => assert!(why.contains("out of step"), "{why}"),
        other => panic!("topic b got {other:?}"),
    }
    drop(client);
    slow.abort();
}

/// A long-lived connection that reads ever new topics (say, one reply topic per request)
/// keeps a read position per topic; positions whose messages have all expired are dropped
/// (they mean no more than "connected at"), so its memory follows the store, not its age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_positions_of_expired_topics_are_let_go() {
    let (clock, server) = manual_clock_server().await;
    let mut reader = server.client().await;
    let mut writer = server.client().await;
    for round in 0..2 {
        for i in 0..300 {
            writer
                .put(&format!("reply-{round}-{i}"), "x")
                .await
                .unwrap();
        }
        writer.get("sync").await.unwrap();
        for i in 0..300 {
            let topic = format!("reply-{round}-{i}");
            assert_eq!(reader.get(&topic).await.unwrap().as_deref(), Some("x"));
        }
        clock.advance(Duration::from_secs(601));
        server.wait_metric("dsmq_messages_stored", 0);
    }
    let held = server.metric("dsmq_cursors");
    assert!(
        held <= 300,
        "{held} read positions held for 300 live topics"
    );
    // Letting go changes nothing a client can see: an old topic is read from its next put.
    writer.put("reply-0-7", "again").await.unwrap();
    writer.get("sync").await.unwrap();
    assert_eq!(
        reader.get("reply-0-7").await.unwrap().as_deref(),
        Some("again")
    );
    assert_eq!(reader.get("reply-0-7").await.unwrap(), None);
    reader.close().await.unwrap();
    writer.close().await.unwrap();
    server.wait_metric("dsmq_connections", 0);
    assert_eq!(server.metric("dsmq_cursors"), 0);
    server.stop().await;
}

/// `set_timeout` on the blocking client: a server that does not answer in time is
/// `Error::Timeout` (not a "closed" connection it is not), and the connection, out of step
/// since, is `Closed` from then on.
#[test]
fn a_blocking_call_that_times_out_is_a_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(tcp).unwrap();
        // Read requests, never answer, until the client goes away.
        while ws.read().is_ok() {}
    });
    let mut client = dsmq::blocking::Client::connect("127.0.0.1", port).unwrap();
    client
        .set_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let err = client.get("t").unwrap_err();
    assert!(
        matches!(err, dsmq::Error::Timeout(t) if t == Duration::from_millis(100)),
        "{err:?}"
    );
    let again = client.get("t").unwrap_err();
    assert!(matches!(again, dsmq::Error::Closed { .. }), "{again:?}");
    drop(client);
    silent.join().unwrap();
}

/// A connection that never completes its HTTP request (a slow or stuck client, or one
/// that only opens sockets) is closed after `header_timeout`, like an idle keep-alive
/// HTTP connection: neither holds a socket and a task forever.
#[test]
fn connections_that_never_finish_a_request_are_closed() {
    use std::io::{Read, Write};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start(ServerConfig {
        header_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    }));
    let open = |first: &[u8]| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(first).unwrap();
        s
    };
    let mut silent = open(b"");
    let mut partial = open(b"GET / HTTP/1.1\r\nHost: x\r\n");
    let mut keep_alive = open(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    for (what, s) in [
        ("silent", &mut silent),
        ("partial", &mut partial),
        ("keep-alive", &mut keep_alive),
    ] {
        let mut all = Vec::new();
        let read = s.read_to_end(&mut all);
        assert!(read.is_ok(), "{what}: not closed by the server: {read:?}");
    }
    // WebSocket connections are not HTTP requests once upgraded: they stay.
    let mut ws = dsmq::blocking::Client::connect("127.0.0.1", server.port).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(ws.get("t").unwrap(), None);
    rt.block_on(server.stop());
}
