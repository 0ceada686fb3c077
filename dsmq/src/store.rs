//! The message store: one in-memory SQLite connection, the only one, behind a mutex.
//!
//! Every operation holds the lock for one short statement (a batch of puts in one
//! transaction, one indexed lookup, or a bounded chunk of the sweep), so connection tasks
//! call it directly: no lock errors (one connection), no thread hop on the request path, and
//! a connection's frames are still handled strictly in order (a `put` followed by a `get`
//! on one connection sees the put). Ordering is by the `INTEGER PRIMARY KEY`, a sequence
//! number assigned here, never by the clock; the clock only decides expiry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use crate::metrics::Metrics;

/// Where expiry reads the time: the system's monotonic clock, or a clock a test moves.
///
/// ```
/// use std::time::Duration;
/// let clock = dsmq::Clock::manual();
/// clock.advance(Duration::from_secs(601)); // every message older than that is now expired
/// ```
#[derive(Debug, Clone)]
pub struct Clock(ClockKind);

#[derive(Debug, Clone)]
enum ClockKind {
    System(Instant),
    Manual(Arc<AtomicU64>),
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The monotonic system clock (the default).
    pub fn system() -> Clock {
        Clock(ClockKind::System(Instant::now()))
    }

    /// A clock that stands still until [`Clock::advance`] moves it (for tests of retention
    /// that must not depend on how fast the machine is). Clones share the time.
    pub fn manual() -> Clock {
        Clock(ClockKind::Manual(Arc::new(AtomicU64::new(0))))
    }

    /// Moves a manual clock forward; no effect on the system clock.
    pub fn advance(&self, by: Duration) {
        if let ClockKind::Manual(nanos) = &self.0 {
            let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            nanos.fetch_add(by, Ordering::SeqCst);
        }
    }

    /// Seconds since the clock's origin.
    fn now(&self) -> f64 {
        match &self.0 {
            ClockKind::System(origin) => origin.elapsed().as_secs_f64(),
            ClockKind::Manual(nanos) => nanos.load(Ordering::SeqCst) as f64 / 1e9,
        }
    }
}

/// What the store keeps and for how long.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) ttl: Duration,
    pub(crate) max_stored_bytes: usize,
    pub(crate) max_messages_per_topic: usize,
}

/// The handle connection tasks use; clones share the store.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    worker: Arc<Mutex<Worker>>,
    /// The largest id stored so far: a new connection may read only above it.
    last_id: Arc<AtomicI64>,
    /// Every message with a smaller id is gone (expired or evicted).
    first_id: Arc<AtomicI64>,
}

/// The most expired rows deleted under one hold of the lock.
const SWEEP_CHUNK: usize = 1000;

/// What one message counts against `max_stored_bytes` beyond its text and topic: the row's
/// id and time, its two index entries and SQLite's record and page overhead (an estimate,
/// so that empty messages are not free).
pub(crate) const MESSAGE_OVERHEAD: usize = 64;

/// What a message costs against `max_stored_bytes`: its text, its topic twice (the row and
/// the `(topic, id)` index both hold it) and [`MESSAGE_OVERHEAD`].
pub(crate) fn message_cost(topic_len: usize, body_len: usize) -> usize {
    body_len
        .saturating_add(topic_len.saturating_mul(2))
        .saturating_add(MESSAGE_OVERHEAD)
}

impl Store {
    /// Opens the in-memory database.
    pub(crate) fn start(
        limits: Limits,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> crate::Result<Store> {
        let db = Connection::open_in_memory()?;
        db.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA temp_store = MEMORY;
             CREATE TABLE messages (
                 id INTEGER PRIMARY KEY,
                 topic TEXT NOT NULL,
                 body TEXT NOT NULL,
                 stored_at REAL NOT NULL
             );
             CREATE INDEX messages_topic_id ON messages (topic, id);
             CREATE INDEX messages_stored_at ON messages (stored_at);",
        )?;
        let last_id = Arc::new(AtomicI64::new(0));
        let first_id = Arc::new(AtomicI64::new(1));
        let worker = Worker {
            db,
            limits,
            clock,
            metrics,
            last_id: Arc::clone(&last_id),
            first_id: Arc::clone(&first_id),
            per_topic: HashMap::new(),
            bytes: 0,
            count: 0,
        };
        Ok(Store {
            worker: Arc::new(Mutex::new(worker)),
            last_id,
            first_id,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Worker> {
        // A panic while holding the lock leaves SQLite consistent (each statement is
        // atomic); keep serving.
        self.worker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The largest id stored so far.
    pub(crate) fn last_id(&self) -> i64 {
        self.last_id.load(Ordering::SeqCst)
    }

    /// Every message with an id below this one is gone. Deletion goes oldest first (expiry
    /// by store time, eviction by id), so a read position below it means no more than
    /// "connected at": a connection may forget it.
    pub(crate) fn first_id(&self) -> i64 {
        self.first_id.load(Ordering::SeqCst)
    }

    /// Stores `puts` (topic, text) in order, in one transaction.
    pub(crate) fn put(&self, puts: Vec<(String, String)>) -> crate::Result<()> {
        let mut worker = self.lock();
        let in_txn = puts.len() > 1;
        if in_txn {
            worker.db.execute_batch("BEGIN")?;
        }
        let mut result = Ok(());
        for (topic, body) in puts {
            if let Err(e) = worker.put(topic, body) {
                result = Err(e);
                break;
            }
        }
        if in_txn {
            // What was inserted before a failure stays: it was accepted in order.
            let committed = worker.db.execute_batch("COMMIT");
            if result.is_ok() {
                result = committed;
            }
        }
        worker.publish_gauges();
        result.map_err(|e| {
            worker.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
            crate::Error::from(e)
        })
    }

    /// The first (or, with `latest`, the last) eligible message of `topic` with an id above
    /// `after`: its id and text.
    pub(crate) fn get(
        &self,
        topic: &str,
        after: i64,
        latest: bool,
    ) -> crate::Result<Option<(i64, String)>> {
        let worker = self.lock();
        worker.get(topic, after, latest).map_err(|e| {
            worker.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
            crate::Error::from(e)
        })
    }

    /// Deletes every expired message, a chunk per hold of the lock.
    pub(crate) fn sweep(&self) -> crate::Result<()> {
        loop {
            let mut worker = self.lock();
            let deleted = worker.sweep(SWEEP_CHUNK)?;
            worker.publish_gauges();
            if deleted < SWEEP_CHUNK as u64 {
                return Ok(());
            }
        }
    }
}

#[derive(Debug)]
struct Worker {
    db: Connection,
    limits: Limits,
    clock: Clock,
    metrics: Arc<Metrics>,
    last_id: Arc<AtomicI64>,
    first_id: Arc<AtomicI64>,
    /// Messages stored per topic (for `max_messages_per_topic`).
    per_topic: HashMap<String, usize>,
    /// What the stored messages cost against `max_stored_bytes` ([`message_cost`]).
    bytes: usize,
    /// Messages stored.
    count: usize,
}

impl Worker {
    fn publish_gauges(&self) {
        self.metrics
            .messages_stored
            .store(self.count as u64, Ordering::Relaxed);
        self.metrics
            .bytes_stored
            .store(self.bytes as u64, Ordering::Relaxed);
    }

    fn put(&mut self, topic: String, body: String) -> rusqlite::Result<()> {
        let len = message_cost(topic.len(), body.len());
        // Make room first: oldest of the topic, then oldest overall.
        let in_topic = self.per_topic.get(&topic).copied().unwrap_or(0);
        if in_topic >= self.limits.max_messages_per_topic {
            let excess = in_topic + 1 - self.limits.max_messages_per_topic;
            let mut evicted = 0;
            for _ in 0..excess {
                let oldest: Option<i64> = self
                    .db
                    .prepare_cached("SELECT min(id) FROM messages WHERE topic = ?1")?
                    .query_row(params![topic], |row| row.get(0))?;
                let Some(oldest) = oldest else { break };
                evicted += self.delete_rows(
                    "DELETE FROM messages WHERE id = ?1 RETURNING topic, octet_length(topic), octet_length(body)",
                    params![oldest],
                )?;
            }
            self.metrics
                .evicted_total
                .fetch_add(evicted, Ordering::Relaxed);
        }
        while self.count > 0 && self.bytes + len > self.limits.max_stored_bytes {
            let evicted = self.delete_rows(
                "DELETE FROM messages WHERE id = (SELECT min(id) FROM messages)
                 RETURNING topic, octet_length(topic), octet_length(body)",
                [],
            )?;
            self.metrics
                .evicted_total
                .fetch_add(evicted, Ordering::Relaxed);
        }
        let now = self.clock.now();
        // Ids are assigned here, strictly increasing for the life of the server (SQLite
        // would reuse the ids of deleted rows; AUTOINCREMENT costs a table update per put).
        let id = self.last_id.load(Ordering::Relaxed) + 1;
        let mut stmt = self.db.prepare_cached(
            "INSERT INTO messages (id, topic, body, stored_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        stmt.execute(params![id, topic, body, now])?;
        self.last_id.store(id, Ordering::SeqCst);
        *self.per_topic.entry(topic).or_insert(0) += 1;
        self.bytes += len;
        self.count += 1;
        self.metrics.puts_total.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs a `DELETE ... RETURNING topic, octet_length(topic), octet_length(body)` and
    /// updates the counters.
    fn delete_rows(&mut self, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<u64> {
        let mut stmt = self.db.prepare_cached(sql)?;
        let mut rows = stmt.query(p)?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let topic: String = row.get(0)?;
            let topic_len: i64 = row.get(1)?;
            let body_len: i64 = row.get(2)?;
            let len = message_cost(topic_len as usize, body_len as usize);
            self.bytes = self.bytes.saturating_sub(len);
            self.count = self.count.saturating_sub(1);
            if let Some(c) = self.per_topic.get_mut(&topic) {
                *c -= 1;
                if *c == 0 {
                    self.per_topic.remove(&topic);
                }
            }
            n += 1;
        }
        drop(rows);
        drop(stmt);
        if n > 0 {
            let first: Option<i64> = self
                .db
                .prepare_cached("SELECT min(id) FROM messages")?
                .query_row([], |row| row.get(0))?;
            let first = first.unwrap_or(self.last_id.load(Ordering::SeqCst) + 1);
            self.first_id.store(first, Ordering::SeqCst);
        }
        Ok(n)
    }

    fn get(
        &self,
        topic: &str,
        after: i64,
        latest: bool,
    ) -> rusqlite::Result<Option<(i64, String)>> {
        let oldest_alive = self.clock.now() - self.limits.ttl.as_secs_f64();
        let sql = if latest {
            "SELECT id, body FROM messages WHERE topic = ?1 AND id > ?2 AND stored_at > ?3
             ORDER BY id DESC LIMIT 1"
        } else {
            "SELECT id, body FROM messages WHERE topic = ?1 AND id > ?2 AND stored_at > ?3
             ORDER BY id LIMIT 1"
        };
        let mut stmt = self.db.prepare_cached(sql)?;
        stmt.query_row(params![topic, after, oldest_alive], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
    }

    fn sweep(&mut self, chunk: usize) -> rusqlite::Result<u64> {
        let oldest_alive = self.clock.now() - self.limits.ttl.as_secs_f64();
        let expired = self.delete_rows(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE stored_at <= ?1
             ORDER BY stored_at LIMIT ?2) RETURNING topic, octet_length(topic), octet_length(body)",
            params![oldest_alive, chunk as i64],
        )?;
        if expired > 0 {
            tracing::debug!("store: {expired} expired messages deleted");
        }
        self.metrics
            .expired_total
            .fetch_add(expired, Ordering::Relaxed);
        Ok(expired)
    }
}
