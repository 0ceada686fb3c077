//! `mem://name`: an in-process queue, the reference backend.
//!
//! Bounded, multi-producer / multi-consumer, with acknowledgements, requeue, priorities,
//! per-message TTL, ack timeouts and drop-oldest overflow, so that an application can be
//! tested against the facade without files or servers, and so that the conformance suite
//! has a backend that supports every case.
//!
//! Queues live in a process-wide registry by name: every `open` of the same name reaches
//! the same queue, and messages outlive all handles until [`MemQueue::delete`]. Nothing
//! leaves the process, so the strongest durability is [`Durability::Buffered`].
//!
//! ```
//! use mq_facade::mem::{MemConfig, MemQueue};
//! use mq_facade::{Consumer, Producer, SendOptions, Wait};
//!
//! let queue = MemQueue::open("docs-example", &MemConfig::default()).unwrap();
//! let (mut tx, mut rx) = (queue.producer(), queue.consumer());
//! tx.send(b"low").unwrap();
//! tx.send_with(b"high", &SendOptions::new().priority(5), Wait::Forever).unwrap();
//! let first = rx.recv().unwrap();
//! assert_eq!(first.payload, b"high");
//! rx.ack(first.tag()).unwrap();
//! queue.delete();
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::{
    Capabilities, Consumer, Delivery, Durability, Error, Meta, Overflow, Producer, Receipt, Result,
    SendOptions, Tag, Wait,
};

const BACKEND: &str = "mem";

/// Limits of a `mem` queue, fixed when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemConfig {
    /// Most messages held, ready and unacknowledged together (URL `capacity`).
    pub capacity: usize,
    /// Largest payload in bytes (URL `max_message_size`).
    pub max_message_size: usize,
    /// Highest priority accepted (URL `max_priority`), like AMQP's `x-max-priority`.
    pub max_priority: u8,
}

impl Default for MemConfig {
    /// 10,000 messages of at most 1 MiB, priorities 0..=255.
    fn default() -> Self {
        MemConfig {
            capacity: 10_000,
            max_message_size: 1 << 20,
            max_priority: u8::MAX,
        }
    }
}

impl MemConfig {
    /// Sets [`MemConfig::capacity`].
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`MemConfig::max_message_size`].
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`MemConfig::max_priority`].
    #[must_use]
    pub fn max_priority(mut self, max: u8) -> Self {
        self.max_priority = max;
        self
    }

    /// The capabilities of a queue with this configuration.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            backend: BACKEND,
            delivery: Delivery::Competing,
            ack: true,
            max_priority: Some(self.max_priority),
            ttl: true,
            ack_timeout: true,
            drop_oldest: true,
            capacity: Some(self.capacity),
            max_message_size: Some(self.max_message_size),
            durability: Durability::Buffered,
            survives_reopen: true,
            cross_process: false,
        }
    }
}

/// Some or all limits of a queue to open, as a URL gives them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Requested {
    pub(crate) capacity: Option<usize>,
    pub(crate) max_message_size: Option<usize>,
    pub(crate) max_priority: Option<u8>,
}

impl Requested {
    fn all(config: &MemConfig) -> Self {
        Requested {
            capacity: Some(config.capacity),
            max_message_size: Some(config.max_message_size),
            max_priority: Some(config.max_priority),
        }
    }

    fn or_default(&self) -> MemConfig {
        let d = MemConfig::default();
        MemConfig {
            capacity: self.capacity.unwrap_or(d.capacity),
            max_message_size: self.max_message_size.unwrap_or(d.max_message_size),
            max_priority: self.max_priority.unwrap_or(d.max_priority),
        }
    }

    /// `field existing, not wanted` for each given limit that differs from `existing`.
    fn conflicts(&self, existing: &MemConfig) -> Vec<String> {
        fn check<T: PartialEq + std::fmt::Display>(
            out: &mut Vec<String>,
            field: &str,
            wanted: Option<T>,
            existing: T,
        ) {
            if let Some(wanted) = wanted
                && wanted != existing
            {
                out.push(format!("{field} {existing}, not {wanted}"));
            }
        }
        let mut out = Vec::new();
        check(&mut out, "capacity", self.capacity, existing.capacity);
        check(
            &mut out,
            "max_message_size",
            self.max_message_size,
            existing.max_message_size,
        );
        check(
            &mut out,
            "max_priority",
            self.max_priority,
            existing.max_priority,
        );
        out
    }
}

/// A handle to a named in-process queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct MemQueue {
    shared: Arc<Shared>,
}

fn registry() -> MutexGuard<'static, HashMap<String, Arc<Shared>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<Shared>>>> = OnceLock::new();
    lock(REGISTRY.get_or_init(Default::default))
}

/// Locks, ignoring poisoning: every critical section leaves `State` consistent before any
/// call that could panic, so a panic elsewhere in a holder's thread cannot tear it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemQueue {
    /// Opens the queue `name`, creating it with `config` if it does not exist.
    ///
    /// Errors if it exists with a different configuration, or if `config.capacity` is 0.
    pub fn open(name: &str, config: &MemConfig) -> Result<MemQueue> {
        MemQueue::open_requested(name, &Requested::all(config))
    }

    /// Opens `name` with only some limits given (as a URL does): a given limit must match an
    /// existing queue; an omitted one takes the existing queue's value, or the default.
    pub(crate) fn open_requested(name: &str, wanted: &Requested) -> Result<MemQueue> {
        let mut registry = registry();
        if let Some(shared) = registry.get(name) {
            let conflicts = wanted.conflicts(&shared.config);
            if !conflicts.is_empty() {
                return Err(Error::backend(
                    BACKEND,
                    format!("queue {name} already exists with {}", conflicts.join(", ")),
                ));
            }
            return Ok(MemQueue {
                shared: Arc::clone(shared),
            });
        }
        let config = wanted.or_default();
        if config.capacity == 0 {
            return Err(Error::backend(
                BACKEND,
                format!("queue {name}: capacity must be at least 1"),
            ));
        }
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            config,
            state: Mutex::new(State::default()),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
        });
        registry.insert(name.to_owned(), Arc::clone(&shared));
        Ok(MemQueue { shared })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A new producer.
    pub fn producer(&self) -> MemProducer {
        MemProducer {
            shared: Arc::clone(&self.shared),
        }
    }

    /// A new consumer. Deliveries it holds unacknowledged when dropped are requeued.
    pub fn consumer(&self) -> MemConsumer {
        let mut state = self.shared.lock();
        let id = state.next_consumer;
        state.next_consumer += 1;
        MemConsumer {
            shared: Arc::clone(&self.shared),
            id,
        }
    }

    /// Messages ready for delivery (expired ones may still be counted until a receive
    /// or a blocked send discards them).
    pub fn ready(&self) -> usize {
        self.shared.lock().ready.len()
    }

    /// Messages delivered and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.shared.lock().in_flight.len()
    }

    /// Closes the queue and removes it from the registry: its messages are dropped, every
    /// handle's calls fail with [`Error::Closed`] (blocked ones wake), and the next `open`
    /// of the name creates a new queue.
    pub fn delete(&self) {
        {
            let mut registry = registry();
            // An older handle must not remove a newer queue of the same name.
            if registry
                .get(&self.shared.name)
                .is_some_and(|current| Arc::ptr_eq(current, &self.shared))
            {
                registry.remove(&self.shared.name);
            }
        }
        let mut state = self.shared.lock();
        state.closed = true;
        state.ready.clear();
        state.in_flight.clear();
        state.wake.all_receivers = true;
        state.wake.all_senders = true;
        self.shared.unlock(state);
    }

    /// The capabilities of every handle of this queue.
    pub fn capabilities(&self) -> Capabilities {
        self.shared.capabilities()
    }
}

#[derive(Debug)]
struct Shared {
    name: String,
    config: MemConfig,
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
}

/// Ready messages are keyed by (priority descending, sequence number): the first entry is
/// the next delivery, and a requeued message goes back to its original place.
type ReadyKey = (Reverse<u8>, u64);

#[derive(Debug, Default)]
struct State {
    ready: BTreeMap<ReadyKey, Entry>,
    in_flight: HashMap<u64, InFlight>,
    /// (deadline, tag) of deliveries sent with an ack timeout; entries whose tag was settled
    /// meanwhile are skipped when they come up, and swept when they outnumber live ones.
    ack_deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Ready entries that carry a TTL; lets a blocked send skip the expiry scan.
    ready_with_ttl: usize,
    next_seq: u64,
    next_tag: u64,
    next_consumer: u64,
    closed: bool,
    /// Wake-ups owed by the changes made under the current lock; paid by `Shared::unlock`.
    wake: Wake,
}

/// Whom to notify once the lock is released. Every state change that can end a wait
/// records its wake-up here, so no path can forget one.
#[derive(Debug, Default)]
struct Wake {
    /// Messages made ready: one receiver each.
    receivers: usize,
    /// Every receiver must recompute its timer (an earlier ack deadline appeared).
    all_receivers: bool,
    /// Room freed: one sender each.
    senders: usize,
    /// Every sender must recompute its timer (a message with a TTL became ready).
    all_senders: bool,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    priority: u8,
    payload: Vec<u8>,
    expires: Option<Instant>,
    ack_timeout: Option<Duration>,
    redelivered: bool,
}

impl Entry {
    fn key(&self) -> ReadyKey {
        (Reverse(self.priority), self.seq)
    }

    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

#[derive(Debug)]
struct InFlight {
    entry: Entry,
    consumer: u64,
}

impl State {
    fn held(&self) -> usize {
        self.ready.len() + self.in_flight.len()
    }

    fn push_ready(&mut self, entry: Entry) {
        if entry.expires.is_some() {
            self.ready_with_ttl += 1;
            // Its expiry frees room: blocked senders must wake for it.
            self.wake.all_senders = true;
        }
        self.wake.receivers += 1;
        self.ready.insert(entry.key(), entry);
    }

    fn pop_ready(&mut self) -> Option<Entry> {
        let (_, entry) = self.ready.pop_first()?;
        if entry.expires.is_some() {
            self.ready_with_ttl -= 1;
        }
        Some(entry)
    }

    fn requeue(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        self.push_ready(entry);
    }

    /// Removes a delivery for good (ack, nack without requeue): its room is free.
    fn forget(&mut self, _held: InFlight) {
        self.wake.senders += 1;
        // Deadlines of settled tags are skipped lazily; sweep them when they pile up.
        if self.ack_deadlines.len() > 2 * self.in_flight.len() + 64 {
            let live = &self.in_flight;
            self.ack_deadlines
                .retain(|Reverse((_, tag))| live.contains_key(tag));
        }
    }

    fn hold(&mut self, tag: u64, entry: Entry, consumer: u64, now: Instant) {
        if let Some(at) = entry.ack_timeout.and_then(|t| now.checked_add(t)) {
            if self
                .earliest_ack_deadline()
                .is_none_or(|earliest| at < earliest)
            {
                // Waiting receivers set their timers by the earliest deadline.
                self.wake.all_receivers = true;
            }
            self.ack_deadlines.push(Reverse((at, tag)));
        }
        self.in_flight.insert(tag, InFlight { entry, consumer });
    }

    /// Gives back deliveries whose ack deadline passed.
    fn requeue_overdue(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, tag))) = self.ack_deadlines.peek() {
            if deadline > now {
                break;
            }
            self.ack_deadlines.pop();
            if let Some(held) = self.in_flight.remove(&tag) {
                self.requeue(held.entry);
            }
        }
    }

    /// Drops expired ready messages.
    fn discard_expired(&mut self, now: Instant) {
        if self.ready_with_ttl == 0 {
            return;
        }
        let before = self.ready.len();
        self.ready.retain(|_, entry| !entry.expired(now));
        let discarded = before - self.ready.len();
        self.ready_with_ttl -= discarded;
        self.wake.senders += discarded;
    }

    /// Drops the oldest ready message of the lowest priority (room for the caller's send).
    fn discard_oldest(&mut self) {
        let Some((&(lowest, _), _)) = self.ready.last_key_value() else {
            return;
        };
        // The last key has the lowest priority; the first key of that priority is its oldest.
        let Some((&oldest, _)) = self.ready.range((lowest, 0)..).next() else {
            return;
        };
        if let Some(entry) = self.ready.remove(&oldest)
            && entry.expires.is_some()
        {
            self.ready_with_ttl -= 1;
        }
    }

    /// The earliest TTL deadline of a ready message (a scan, done only by blocked sends).
    fn earliest_expiry(&self) -> Option<Instant> {
        if self.ready_with_ttl == 0 {
            return None;
        }
        self.ready.values().filter_map(|entry| entry.expires).min()
    }

    fn earliest_ack_deadline(&self) -> Option<Instant> {
        self.ack_deadlines.peek().map(|Reverse((at, _))| *at)
    }
}

/// The earlier of two optional instants (`None` = never).
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Releases the lock, then pays the wake-ups the changes made under it owe.
    fn unlock(&self, mut state: MutexGuard<'_, State>) {
        let wake = std::mem::take(&mut state.wake);
        drop(state);
        if wake.all_receivers {
            self.not_empty.notify_all();
        } else {
            for _ in 0..wake.receivers {
                self.not_empty.notify_one();
            }
        }
        if wake.all_senders {
            self.not_full.notify_all();
        } else {
            for _ in 0..wake.senders {
                self.not_full.notify_one();
            }
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.config.capabilities()
    }

    fn closed_error(&self) -> Error {
        Error::Closed {
            queue: self.name.clone(),
            reason: "deleted".into(),
        }
    }

    /// Waits on `condvar` until `until` (or forever), returning the guard. Wake-ups owed
    /// by this holder's changes are paid first: a waiter must never sit on them.
    fn wait<'a>(
        &'a self,
        condvar: &Condvar,
        mut state: MutexGuard<'a, State>,
        until: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        if wake_owed(&state.wake) {
            self.unlock(state);
            state = self.lock();
            // Something may have changed while unlocked: let the caller look again.
            return state;
        }
        match until {
            None => condvar
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            Some(at) => {
                condvar
                    .wait_timeout(state, at.saturating_duration_since(Instant::now()))
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0
            }
        }
    }

    fn send(&self, payload: &[u8], options: &SendOptions, wait: Wait) -> Result<Receipt> {
        let caps = self.capabilities();
        options.check(&caps, BACKEND)?;
        caps.check_size(payload.len())?;
        let deadline = wait.deadline();
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(self.closed_error());
            }
            if state.held() >= self.config.capacity {
                state.discard_expired(Instant::now());
            }
            if state.held() >= self.config.capacity && options.overflow == Overflow::DropOldest {
                state.discard_oldest();
            }
            if state.held() < self.config.capacity {
                break;
            }
            if wait == Wait::NoWait || options.overflow == Overflow::DropOldest {
                self.unlock(state);
                return Err(Error::Full {
                    queue: self.name.clone(),
                    capacity: self.config.capacity,
                });
            }
            if deadline.is_some_and(|at| at <= Instant::now()) {
                self.unlock(state);
                return Err(Error::Timeout {
                    what: format!("room in queue {}", self.name).into(),
                });
            }
            // Wake when the first held message expires too: that frees room.
            let until = earliest(deadline, state.earliest_expiry());
            state = self.wait(&self.not_full, state, until);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let now = Instant::now();
        state.push_ready(Entry {
            seq,
            priority: options.priority.unwrap_or(0),
            payload: payload.to_vec(),
            expires: options.ttl.and_then(|ttl| now.checked_add(ttl)),
            ack_timeout: options.ack_timeout,
            redelivered: false,
        });
        self.unlock(state);
        Ok(Receipt::new(Some(seq), Durability::Buffered))
    }

    fn recv(&self, consumer: u64, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        buf.clear();
        let deadline = wait.deadline();
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(self.closed_error());
            }
            let now = Instant::now();
            state.requeue_overdue(now);
            while let Some(entry) = state.pop_ready() {
                if entry.expired(now) {
                    state.wake.senders += 1;
                    continue;
                }
                // This receiver takes one of the messages it would otherwise wake others for.
                state.wake.receivers = state.wake.receivers.saturating_sub(1);
                let tag = state.next_tag;
                state.next_tag += 1;
                buf.extend_from_slice(&entry.payload);
                let meta = Meta::new(Tag::from_raw(tag))
                    .redelivered(entry.redelivered)
                    .priority(Some(entry.priority))
                    .seq(Some(entry.seq));
                state.hold(tag, entry, consumer, now);
                self.unlock(state);
                return Ok(Some(meta));
            }
            if deadline.is_some_and(|at| at <= now) {
                self.unlock(state);
                return Ok(None);
            }
            // Wake for the next ack deadline too: it may requeue a message for us.
            let until = earliest(deadline, state.earliest_ack_deadline());
            state = self.wait(&self.not_empty, state, until);
        }
    }

    fn settle(&self, consumer: u64, tag: Tag, requeue: bool) -> Result<()> {
        let mut state = self.lock();
        if state.closed {
            return Err(self.closed_error());
        }
        let raw = tag.into_raw();
        let held = match state.in_flight.remove(&raw) {
            Some(held) if held.consumer == consumer => held,
            Some(foreign) => {
                state.in_flight.insert(raw, foreign);
                return Err(Error::UnknownTag(tag));
            }
            None => return Err(Error::UnknownTag(tag)),
        };
        if requeue {
            state.requeue(held.entry);
        } else {
            state.forget(held);
        }
        self.unlock(state);
        Ok(())
    }

    fn release_consumer(&self, consumer: u64) {
        let mut state = self.lock();
        let tags: Vec<u64> = state
            .in_flight
            .iter()
            .filter(|(_, held)| held.consumer == consumer)
            .map(|(tag, _)| *tag)
            .collect();
        for tag in &tags {
            if let Some(held) = state.in_flight.remove(tag) {
                state.requeue(held.entry);
            }
        }
        self.unlock(state);
    }
}

fn wake_owed(wake: &Wake) -> bool {
    wake.all_receivers || wake.all_senders || wake.receivers > 0 || wake.senders > 0
}

/// The producer of a [`MemQueue`].
#[derive(Debug)]
pub struct MemProducer {
    shared: Arc<Shared>,
}

impl Producer for MemProducer {
    fn send_with(&mut self, payload: &[u8], options: &SendOptions, wait: Wait) -> Result<Receipt> {
        self.shared.send(payload, options, wait)
    }

    fn flush(&mut self, level: Durability) -> Result<()> {
        // Sends are visible to consumers when they return: nothing is buffered.
        self.shared.capabilities().check_flush(level)?;
        if self.shared.lock().closed {
            return Err(self.shared.closed_error());
        }
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        self.shared.capabilities()
    }
}

/// The consumer of a [`MemQueue`]. Dropping it requeues what it holds unacknowledged.
#[derive(Debug)]
pub struct MemConsumer {
    shared: Arc<Shared>,
    id: u64,
}

impl Consumer for MemConsumer {
    fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        self.shared.recv(self.id, buf, wait)
    }

    fn ack(&mut self, tag: Tag) -> Result<()> {
        self.shared.settle(self.id, tag, false)
    }

    fn nack(&mut self, tag: Tag, requeue: bool) -> Result<()> {
        self.shared.settle(self.id, tag, requeue)
    }

    fn capabilities(&self) -> Capabilities {
        self.shared.capabilities()
    }
}

impl Drop for MemConsumer {
    fn drop(&mut self) {
        self.shared.release_consumer(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn queue(name: &str, config: MemConfig) -> MemQueue {
        let q = MemQueue::open(&format!("mem-unit-{name}"), &config).unwrap();
        assert_eq!(q.ready() + q.unacked(), 0, "a test queue starts empty");
        q
    }

    #[test]
    fn reopen_with_another_config_is_an_error_naming_both() {
        let q = queue("reopen-config", MemConfig::default().capacity(5));
        let err = MemQueue::open(q.name(), &MemConfig::default().capacity(6)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.ends_with("already exists with capacity 5, not 6"),
            "{text}"
        );
        q.delete();
    }

    #[test]
    fn zero_capacity_is_rejected() {
        let err = MemQueue::open("mem-unit-zero", &MemConfig::default().capacity(0)).unwrap_err();
        assert!(
            err.to_string().contains("capacity must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn delete_wakes_blocked_receivers_with_closed() {
        let q = queue("delete-wakes", MemConfig::default());
        let mut rx = q.consumer();
        let waiter = std::thread::spawn(move || rx.recv());
        std::thread::sleep(Duration::from_millis(50));
        q.delete();
        let err = waiter.join().unwrap().unwrap_err();
        assert!(matches!(err, Error::Closed { .. }), "{err}");
        let mut tx = q.producer();
        assert!(matches!(tx.send(b"x"), Err(Error::Closed { .. })));
    }

    #[test]
    fn drop_oldest_discards_the_oldest_of_the_lowest_priority() {
        let q = queue("drop-oldest", MemConfig::default().capacity(3));
        let mut tx = q.producer();
        let shift = SendOptions::new().overflow(Overflow::DropOldest);
        tx.send_with(b"p1-a", &shift.clone().priority(1), Wait::NoWait)
            .unwrap();
        tx.send_with(b"p0-a", &shift, Wait::NoWait).unwrap();
        tx.send_with(b"p0-b", &shift, Wait::NoWait).unwrap();
        tx.send_with(b"p0-c", &shift, Wait::NoWait).unwrap();
        let mut rx = q.consumer();
        let got: Vec<Vec<u8>> = rx.try_iter().map(|m| m.unwrap().payload).collect();
        assert_eq!(got, [&b"p1-a"[..], b"p0-b", b"p0-c"]);
        q.delete();
    }

    #[test]
    fn drop_oldest_with_only_unacked_messages_is_full_not_a_loss() {
        let q = queue("drop-oldest-unacked", MemConfig::default().capacity(1));
        let mut tx = q.producer();
        tx.send(b"held").unwrap();
        let mut rx = q.consumer();
        let held = rx.try_recv().unwrap().unwrap();
        let shift = SendOptions::new().overflow(Overflow::DropOldest);
        let err = tx.send_with(b"new", &shift, Wait::Forever).unwrap_err();
        assert!(matches!(err, Error::Full { capacity: 1, .. }), "{err}");
        rx.ack(held.tag()).unwrap();
        q.delete();
    }

    #[test]
    fn expired_messages_free_room_for_a_blocked_send() {
        let q = queue("expired-room", MemConfig::default().capacity(1));
        let mut tx = q.producer();
        tx.send_with(
            b"old",
            &SendOptions::new().ttl(Duration::from_millis(20)),
            Wait::NoWait,
        )
        .unwrap();
        let started = Instant::now();
        tx.send_timeout(b"new", Duration::from_secs(60)).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the blocked send must wake when the message expires, not at its deadline"
        );
        let mut rx = q.consumer();
        assert_eq!(rx.try_recv().unwrap().unwrap().payload, b"new");
        q.delete();
    }

    #[test]
    fn another_consumer_cannot_settle_my_delivery() {
        let q = queue("foreign-tag", MemConfig::default());
        q.producer().send(b"x").unwrap();
        let (mut mine, mut other) = (q.consumer(), q.consumer());
        let m = mine.try_recv().unwrap().unwrap();
        assert!(matches!(other.ack(m.tag()), Err(Error::UnknownTag(t)) if t == m.tag()));
        mine.ack(m.tag()).unwrap();
        assert!(
            matches!(mine.ack(m.tag()), Err(Error::UnknownTag(_))),
            "double ack"
        );
        q.delete();
    }

    #[test]
    fn a_batch_that_fills_the_queue_says_how_many_went() {
        let q = queue("partial-batch", MemConfig::default().capacity(2));
        let mut tx = q.producer();
        let batch: [&[u8]; 3] = [b"a", b"b", b"c"];
        let err = tx
            .send_batch(&batch, &SendOptions::new(), Wait::NoWait)
            .unwrap_err();
        match err {
            Error::PartialBatch {
                sent: 2,
                total: 3,
                source,
            } => {
                assert!(
                    matches!(*source, Error::Full { capacity: 2, .. }),
                    "{source}"
                );
            }
            other => panic!("expected PartialBatch, got {other}"),
        }
        assert_eq!(q.ready(), 2);
        // A batch whose first message fails reports that error plainly.
        let err = tx
            .send_batch(&batch, &SendOptions::new(), Wait::NoWait)
            .unwrap_err();
        assert!(matches!(err, Error::Full { .. }), "{err}");
        q.delete();
    }

    #[test]
    fn the_blocking_iterator_ends_after_the_queue_is_closed() {
        let q = queue("iter-closed", MemConfig::default());
        let mut tx = q.producer();
        tx.send(b"one").unwrap();
        tx.send(b"two").unwrap();
        let mut rx = q.consumer();
        let closer = {
            let q = q.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                q.delete();
            })
        };
        let items: Vec<Result<Message>> = rx.iter().collect();
        closer.join().unwrap();
        assert_eq!(items.len(), 3, "two messages, then the error: {items:?}");
        assert_eq!(items[0].as_ref().unwrap().payload, b"one");
        assert_eq!(items[1].as_ref().unwrap().payload, b"two");
        assert!(matches!(items[2], Err(Error::Closed { .. })));
    }

    /// Far beyond any wake-up the tests below expect: a waiter that is not woken
    /// sleeps this long and fails the test.
    const NEVER: Duration = Duration::from_secs(30);

    #[test]
    fn an_ack_timeout_wakes_a_consumer_that_was_already_waiting() {
        // Two consumers wait; the send wakes one, which holds the message without acking
        // (its handle stays alive). The other slept before the ack deadline existed and
        // must still be woken by it.
        let q = queue("ack-timeout-waiter", MemConfig::default());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let mut rx = q.consumer();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let got = rx.recv_timeout(NEVER).unwrap();
                    (rx, got, started.elapsed())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let timeout = SendOptions::new().ack_timeout(Duration::from_millis(100));
        q.producer()
            .send_with(b"x", &timeout, Wait::NoWait)
            .unwrap();
        let results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        let mut redelivered = results
            .iter()
            .filter_map(|(_, got, waited)| Some((got.as_ref()?, waited)))
            .filter(|(got, _)| got.meta.redelivered);
        let (_, waited) = redelivered.next().expect("one waiter gets the redelivery");
        assert!(*waited < NEVER / 2, "woken only after {waited:?}");
        q.delete();
    }

    #[test]
    fn a_requeued_message_with_a_ttl_wakes_a_blocked_sender_when_it_expires() {
        let q = queue("ttl-requeue-sender", MemConfig::default().capacity(1));
        let mut tx = q.producer();
        tx.send_with(
            b"short",
            &SendOptions::new().ttl(Duration::from_millis(200)),
            Wait::NoWait,
        )
        .unwrap();
        let mut rx = q.consumer();
        let held = rx.try_recv().unwrap().unwrap();
        let mut blocked = q.producer();
        let sender = std::thread::spawn(move || {
            let started = Instant::now();
            let sent = blocked.send_timeout(b"next", NEVER);
            (sent, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        rx.nack(held.tag(), true).unwrap();
        let (sent, waited) = sender.join().unwrap();
        sent.unwrap();
        assert!(
            waited < NEVER / 2,
            "the expiry woke the sender only after {waited:?}"
        );
        q.delete();
    }

    #[test]
    fn settled_ack_deadlines_do_not_pile_up() {
        let q = queue("deadline-sweep", MemConfig::default());
        let mut tx = q.producer();
        let mut rx = q.consumer();
        let options = SendOptions::new().ack_timeout(Duration::from_secs(3600));
        for _ in 0..1000 {
            tx.send_with(b"x", &options, Wait::NoWait).unwrap();
            let m = rx.try_recv().unwrap().unwrap();
            rx.ack(m.tag()).unwrap();
        }
        assert!(q.shared.lock().ack_deadlines.len() <= 64 + 1);
        q.delete();
    }
}
