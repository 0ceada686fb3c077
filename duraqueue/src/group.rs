//! Group commit: many threads offer durably through one writer, sharing syncs.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::Result;
use crate::queue::{DuraQueue, Seq};

/// A writer that many threads share (`Arc`-able). Each [`offer_durable`] appends under a
/// short lock and waits only for the sync that covers its record: the first waiter that
/// finds no sync in flight becomes the leader and syncs everything appended so far in one
/// call, outside the lock, while later offers append and join the next sync.
///
/// [`offer_durable`]: SharedWriter::offer_durable
///
/// ```
/// # fn main() -> duraqueue::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::sync::Arc;
/// use duraqueue::{DuraQueue, SharedWriter};
///
/// let queue = DuraQueue::open(dir.path().join("q"), 1 << 20)?;
/// let writer = Arc::new(SharedWriter::new(queue));
/// let threads: Vec<_> = (0..4)
///     .map(|t| {
///         let writer = Arc::clone(&writer);
///         std::thread::spawn(move || writer.offer_durable(format!("from {t}").as_bytes()))
///     })
///     .collect();
/// for t in threads {
///     t.join().unwrap()?;
/// }
/// assert_eq!(writer.with_queue(|q| q.count()), 4);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SharedWriter {
    state: Mutex<State>,
    synced: Condvar,
    /// How long a leader waits for more offers before it syncs (0: sync at once).
    max_delay: Duration,
}

#[derive(Debug)]
struct State {
    queue: DuraQueue,
    /// Logical end of what is on stable storage.
    durable_end: u64,
    flushing: bool,
    /// Why the queue is poisoned, once a shared sync failed.
    failed: Option<String>,
}

impl SharedWriter {
    /// Shares `queue` (opened as the writer) between threads.
    pub fn new(queue: DuraQueue) -> Self {
        SharedWriter::with_max_delay(queue, Duration::ZERO)
    }

    /// As [`SharedWriter::new`], with a leader that lingers up to `max_delay` (keep it
    /// within a millisecond) to put more offers into its sync.
    pub fn with_max_delay(queue: DuraQueue, max_delay: Duration) -> Self {
        let durable_end = queue.synced_position();
        SharedWriter {
            state: Mutex::new(State {
                queue,
                durable_end,
                flushing: false,
                failed: None,
            }),
            synced: Condvar::new(),
            max_delay,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `item` and returns its sequence number once it is on stable storage.
    pub fn offer_durable(&self, item: &[u8]) -> Result<Seq> {
        let mut state = self.lock();
        if let Some(cause) = &state.failed {
            return Err(state.queue.poisoned_error(cause));
        }
        let (seq, end) = state.queue.append_published(item)?;
        loop {
            if state.durable_end >= end {
                return Ok(seq);
            }
            if let Some(cause) = &state.failed {
                return Err(state.queue.poisoned_error(cause));
            }
            if state.flushing {
                state = self
                    .synced
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            // Lead: sync everything appended so far, outside the lock.
            state.flushing = true;
            if !self.max_delay.is_zero() {
                drop(state);
                std::thread::sleep(self.max_delay);
                state = self.lock();
            }
            let (from, to) = (state.durable_end, state.queue.tail_position());
            let sync = state.queue.range_sync(from, to);
            drop(state);
            let result = sync();
            state = self.lock();
            state.flushing = false;
            match result {
                Ok(()) => {
                    state.durable_end = state.durable_end.max(to);
                    state.queue.mark_durable_up_to(to);
                }
                Err(e) => {
                    let cause = e.to_string();
                    state.queue.poison(&cause);
                    state.failed = Some(cause);
                }
            }
            self.synced.notify_all();
        }
    }

    /// Runs `f` with the queue under the lock (to peek, poll or inspect).
    pub fn with_queue<R>(&self, f: impl FnOnce(&mut DuraQueue) -> R) -> R {
        f(&mut self.lock().queue)
    }

    /// The queue back, once no other thread shares the writer.
    pub fn into_inner(self) -> DuraQueue {
        self.state
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .queue
    }
}

impl From<SharedWriter> for DuraQueue {
    fn from(writer: SharedWriter) -> Self {
        writer.into_inner()
    }
}

// Threads share it: it must stay `Send + Sync`.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<SharedWriter>();
};
