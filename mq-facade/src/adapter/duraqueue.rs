//! `duraqueue:///PATH?size=8MiB&format=v1&sync=msync`: the mmap'd durable ring.
//!
//! Mapping: `send` appends and publishes a record in the shared mapping (it survives a crash
//! of this process: [`Durability::Written`]); `flush(Synced)` syncs everything sent since the
//! last flush in one call (the original's durable offer); a consumer's `recv` peeks without
//! removing, `ack` polls (durably), `nack(requeue)` lets the record be delivered again.
//!
//! All facade handles on one file in one process share one queue handle, which holds both
//! advisory locks (writer and reader): while this process has a facade handle open on the
//! file, no other process can open it (it gets `Locked`). The crash case of the conformance
//! suite is the other way round: a producer process opens the file, is killed, and its
//! messages are read by the next process that opens it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use duraqueue::{DuraQueue, Format, OpenOptions, Seq, SyncMode};

use crate::open::{Params, invalid, local_path};
use crate::{
    Capabilities, Consumer, Delivery, Durability, Error, Meta, Producer, Receipt, Result,
    SendOptions, Tag, Wait,
};

const BACKEND: &str = "duraqueue";

/// What a `duraqueue://` URL asks for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) format: Format,
    pub(crate) sync: SyncMode,
}

/// Parses `duraqueue:///PATH?size=8MiB&format=v1|v2&sync=msync|fdatasync`.
pub(crate) fn parse(raw: &str, url: &url::Url) -> Result<Target> {
    let mut params = Params::new(raw, url)?;
    let path = local_path(raw, url)?;
    let size = params.take::<String>("size")?.ok_or_else(|| {
        invalid(
            raw,
            "missing parameter `size` (the ring size, e.g. size=8MiB)",
        )
    })?;
    let size =
        duraqueue::parse_size(&size).map_err(|e| invalid(raw, format!("parameter `size`: {e}")))?;
    let format = params.choose("format", &[("v1", Format::V1), ("v2", Format::V2)])?;
    let sync = params.choose(
        "sync",
        &[
            ("msync", SyncMode::Msync),
            ("fdatasync", SyncMode::Fdatasync),
        ],
    )?;
    params.finish()?;
    Ok(Target {
        path,
        size,
        format,
        sync,
    })
}

/// Maps the crate's errors onto the facade's, exhaustively for what has a counterpart.
fn map_error(e: duraqueue::Error) -> Error {
    match e {
        duraqueue::Error::Corrupt {
            path,
            offset,
            detail,
        } => Error::Corrupt {
            location: format!("{} offset {offset}", path.display()),
            detail,
        },
        duraqueue::Error::TooLarge { len, ring, .. } => Error::TooLarge {
            size: usize::try_from(len).unwrap_or(usize::MAX),
            max: usize::try_from(ring.saturating_sub(65)).unwrap_or(usize::MAX),
        },
        other => Error::backend(BACKEND, other),
    }
}

/// Opens the file holding both roles' locks.
///
/// A lock that another handle of this process just released can still be held for a moment:
/// a child process forked by any thread keeps a copy of the file description (and so its
/// open-file-description lock) until it calls `exec`. So `Locked` is retried for up to
/// [`LOCK_PATIENCE`] before it is reported.
fn open_locked(path: &std::path::Path, options: &OpenOptions) -> Result<DuraQueue> {
    let started = Instant::now();
    loop {
        let attempt = DuraQueue::open_with(path, options).and_then(|queue| {
            queue.lock_both_roles()?;
            Ok(queue)
        });
        match attempt {
            Err(duraqueue::Error::Locked { .. }) if started.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.map_err(map_error),
        }
    }
}

/// How long [`open_locked`] waits out a lock held by a child between its fork and its exec.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// One queue handle per file per process, shared by every facade handle on it.
fn registry() -> MutexGuard<'static, HashMap<PathBuf, Weak<Shared>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<Shared>>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    state: Mutex<State>,
    /// Signalled when a record is published, acked or given back in this process.
    changed: Condvar,
}

#[derive(Debug)]
struct State {
    queue: DuraQueue,
    /// Deliveries held, by consumer id.
    in_flight: HashMap<Seq, u64>,
    /// Acknowledged but not yet polled, because an older delivery is still held.
    acked: BTreeSet<Seq>,
    /// Delivered before and given back: the next delivery is marked redelivered.
    given_back: HashSet<Seq>,
    next_consumer: u64,
    /// Handles waiting in [`Shared::pause`]: a change wakes them only when there are some,
    /// because a condvar's notify is a system call even when nobody waits.
    waiters: usize,
}

impl Shared {
    fn open(target: &Target) -> Result<Arc<Shared>> {
        let key = std::path::absolute(&target.path).unwrap_or_else(|_| target.path.clone());
        let mut registry = registry();
        if let Some(shared) = registry.get(&key).and_then(Weak::upgrade) {
            let size = shared.lock().queue.size();
            if size != target.size {
                return Err(Error::backend(
                    BACKEND,
                    format!(
                        "{} is open in this process with a ring of {size} bytes, not {}",
                        key.display(),
                        target.size
                    ),
                ));
            }
            return Ok(shared);
        }
        let options = OpenOptions::new(target.size)
            .format(target.format)
            .sync(target.sync);
        let queue = open_locked(&target.path, &options)?;
        let shared = Arc::new(Shared {
            path: key.clone(),
            state: Mutex::new(State {
                queue,
                in_flight: HashMap::new(),
                acked: BTreeSet::new(),
                given_back: HashSet::new(),
                next_consumer: 0,
                waiters: 0,
            }),
            changed: Condvar::new(),
        });
        registry.retain(|_, weak| weak.strong_count() > 0);
        registry.insert(key, Arc::downgrade(&shared));
        Ok(shared)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a change made through this process's handles until `deadline`. Nothing
    /// else can change the queue: the shared handle holds both advisory locks.
    fn pause<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        // Counted under the lock: a change made after this sees the waiter and wakes it.
        state.waiters += 1;
        let mut state = match deadline {
            None => self.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
            Some(at) => {
                self.changed
                    .wait_timeout(state, at.saturating_duration_since(Instant::now()))
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
        state.waiters -= 1;
        state
    }

    /// Releases the lock after a change and wakes the handles waiting for one, if any.
    fn publish_change(&self, state: MutexGuard<'_, State>) {
        let waiting = state.waiters > 0;
        drop(state);
        if waiting {
            self.changed.notify_all();
        }
    }

    fn capabilities(state: &State) -> Capabilities {
        let mut caps = Capabilities::minimal(BACKEND);
        caps.delivery = Delivery::Competing;
        caps.ack = true;
        caps.max_message_size = usize::try_from(state.queue.max_item_len()).ok();
        caps.durability = Durability::Synced;
        caps.survives_reopen = true;
        caps.cross_process = true;
        caps
    }
}

/// Opens a producer.
pub(crate) fn producer(target: &Target) -> Result<Box<dyn Producer>> {
    Ok(Box::new(DuraProducer {
        shared: Shared::open(target)?,
    }))
}

/// Opens a consumer.
pub(crate) fn consumer(target: &Target) -> Result<Box<dyn Consumer>> {
    let shared = Shared::open(target)?;
    let id = {
        let mut state = shared.lock();
        state.next_consumer += 1;
        state.next_consumer
    };
    Ok(Box::new(DuraConsumer { shared, id }))
}

#[derive(Debug)]
struct DuraProducer {
    shared: Arc<Shared>,
}

impl Producer for DuraProducer {
    fn send_with(&mut self, payload: &[u8], options: &SendOptions, wait: Wait) -> Result<Receipt> {
        let mut state = self.shared.lock();
        let caps = Shared::capabilities(&state);
        options.check(&caps, BACKEND)?;
        caps.check_size(payload.len())?;
        let deadline = wait.deadline();
        loop {
            match state.queue.offer_unsynced(payload) {
                Ok(seq) => {
                    self.shared.publish_change(state);
                    return Ok(Receipt::new(Some(seq), Durability::Written));
                }
                Err(duraqueue::Error::Full { needed, free }) => {
                    if wait == Wait::NoWait {
                        return Err(Error::Full {
                            queue: self.shared.path.display().to_string(),
                            capacity: usize::try_from(state.queue.size()).unwrap_or(usize::MAX),
                        });
                    }
                    if deadline.is_some_and(|at| Instant::now() >= at) {
                        return Err(Error::Timeout {
                            what: format!(
                                "{needed} free bytes in {} ({free} free)",
                                self.shared.path.display()
                            )
                            .into(),
                        });
                    }
                    state = self.shared.pause(state, deadline);
                }
                Err(e) => return Err(map_error(e)),
            }
        }
    }

    fn flush(&mut self, level: Durability) -> Result<()> {
        let mut state = self.shared.lock();
        Shared::capabilities(&state).check_flush(level)?;
        if level == Durability::Synced {
            // One sync covers every record published so far, ours and other producers'.
            state.queue.sync_published().map_err(map_error)?;
        }
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        Shared::capabilities(&self.shared.lock())
    }
}

#[derive(Debug)]
struct DuraConsumer {
    shared: Arc<Shared>,
    id: u64,
}

impl DuraConsumer {
    /// Takes `tag` out of this consumer's in-flight deliveries: its sequence number.
    fn settle(&self, state: &mut State, tag: Tag) -> Result<Seq> {
        let seq = tag.into_raw();
        if state.in_flight.get(&seq) != Some(&self.id) {
            return Err(Error::UnknownTag(tag));
        }
        state.in_flight.remove(&seq);
        Ok(seq)
    }
}

impl Consumer for DuraConsumer {
    fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        buf.clear();
        let deadline = wait.deadline();
        let mut state = self.shared.lock();
        loop {
            let State {
                queue,
                in_flight,
                acked,
                given_back,
                ..
            } = &mut *state;
            let next = queue
                .records()
                .find(|(seq, _, _)| !in_flight.contains_key(seq) && !acked.contains(seq));
            if let Some((seq, _, payload)) = next {
                buf.extend_from_slice(payload);
                in_flight.insert(seq, self.id);
                let redelivered = given_back.remove(&seq);
                return Ok(Some(
                    Meta::new(Tag::from_raw(seq))
                        .redelivered(redelivered)
                        .seq(Some(seq)),
                ));
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Ok(None);
            }
            state = self.shared.pause(state, deadline);
        }
    }

    fn ack(&mut self, tag: Tag) -> Result<()> {
        let mut state = self.shared.lock();
        let seq = self.settle(&mut state, tag)?;
        state.acked.insert(seq);
        // Poll from the head while the head is acknowledged: polls are strictly in order.
        while let Some(head) = state.queue.peek_seq() {
            if !state.acked.remove(&head) {
                break;
            }
            state.queue.poll().map_err(map_error)?;
        }
        self.shared.publish_change(state);
        Ok(())
    }

    fn nack(&mut self, tag: Tag, requeue: bool) -> Result<()> {
        if !requeue {
            return self.ack(tag);
        }
        let mut state = self.shared.lock();
        let seq = self.settle(&mut state, tag)?;
        state.given_back.insert(seq);
        self.shared.publish_change(state);
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        Shared::capabilities(&self.shared.lock())
    }
}

impl Drop for DuraConsumer {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let held: Vec<Seq> = state
            .in_flight
            .iter()
            .filter(|(_, owner)| **owner == self.id)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in held {
            state.in_flight.remove(&seq);
            state.given_back.insert(seq);
        }
        self.shared.publish_change(state);
    }
}
