//! Counters and gauges of the server, rendered as Prometheus text on `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server's counters (monotonic) and gauges (current values).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections: AtomicU64,
    pub(crate) puts_total: AtomicU64,
    pub(crate) gets_hit: AtomicU64,
    pub(crate) gets_empty: AtomicU64,
    pub(crate) messages_stored: AtomicU64,
    pub(crate) bytes_stored: AtomicU64,
    pub(crate) expired_total: AtomicU64,
    pub(crate) evicted_total: AtomicU64,
    pub(crate) protocol_errors_total: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) refused_connections_total: AtomicU64,
    pub(crate) cursors: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition (version 0.0.4).
    pub(crate) fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(1536);
        let mut one = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        one(
            "dsmq_connections",
            "gauge",
            "Open WebSocket connections.",
            &[("", get(&self.connections))],
        );
        one(
            "dsmq_puts_total",
            "counter",
            "Messages stored.",
            &[("", get(&self.puts_total))],
        );
        one(
            "dsmq_gets_total",
            "counter",
            "get and get_latest requests answered, by whether a message was found.",
            &[
                ("{result=\"hit\"}", get(&self.gets_hit)),
                ("{result=\"empty\"}", get(&self.gets_empty)),
            ],
        );
        one(
            "dsmq_messages_stored",
            "gauge",
            "Messages held in the store.",
            &[("", get(&self.messages_stored))],
        );
        one(
            "dsmq_bytes_stored",
            "gauge",
            "Bytes the stored messages count against max_stored_bytes (text, topic twice, 64 per message).",
            &[("", get(&self.bytes_stored))],
        );
        one(
            "dsmq_expired_total",
            "counter",
            "Messages deleted because they reached the retention time.",
            &[("", get(&self.expired_total))],
        );
        one(
            "dsmq_evicted_total",
            "counter",
            "Messages deleted early to stay within max_stored_bytes or max_messages_per_topic.",
            &[("", get(&self.evicted_total))],
        );
        one(
            "dsmq_protocol_errors_total",
            "counter",
            "Connections closed because of a malformed, unknown, oversized or refused request.",
            &[("", get(&self.protocol_errors_total))],
        );
        one(
            "dsmq_store_errors_total",
            "counter",
            "Store operations that failed (logged; the connection is closed with 1011).",
            &[("", get(&self.store_errors))],
        );
        one(
            "dsmq_refused_connections_total",
            "counter",
            "Connections refused with 503 because max_connections were open.",
            &[("", get(&self.refused_connections_total))],
        );
        one(
            "dsmq_cursors",
            "gauge",
            "Read positions (connection, topic) held; those of expired topics are let go.",
            &[("", get(&self.cursors))],
        );
        out
    }
}
