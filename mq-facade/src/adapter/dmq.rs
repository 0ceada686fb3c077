//! `dmq:///BASE?framing=frames&durability=data`: the two-file queue with a reader-controlled
//! switch.
//!
//! Mapping: every producer is a `dmq::Writer` of its own (any number, in any process);
//! `send` is one append (it survives a crash of this process: [`Durability::Written`]) and
//! `flush(Synced)` syncs the data files. All consumers in one process share the queue's one
//! reader (one per queue across processes: a consumer in a second process gets an error
//! while this one holds it), opened with explicit commit: a delivery is committed once it and
//! every earlier one are acknowledged, so after a crash everything unacknowledged comes
//! again (at least once). `nack(requeue)` hands the message out again from memory, before
//! anything new. The default framing (newlines, as the original) and nulls cannot carry a
//! payload holding their delimiter: such a send is `Unsupported`; `framing=frames` carries any
//! bytes up to 65,533. With `durability=data|full` a send whose sync fails is an error
//! although the record was appended (it may still be delivered; the producer is poisoned).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use dmq::{Commit, Framing, Mark, OpenOptions, Queue, Reader, Watcher};

use crate::open::{Params, local_path};
use crate::{
    Capabilities, Consumer, Delivery, Durability, Error, Meta, Producer, Receipt, Result,
    SendOptions, Tag, Wait,
};

const BACKEND: &str = "dmq";

/// What a `dmq://` URL asks for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) base: PathBuf,
    pub(crate) framing: Framing,
    pub(crate) durability: dmq::Durability,
}

/// Parses `dmq:///BASE?framing=nulls|newlines|frames|raw&durability=pagecache|data|full`.
pub(crate) fn parse(raw: &str, url: &url::Url) -> Result<Target> {
    let mut params = Params::new(raw, url)?;
    let base = local_path(raw, url)?;
    let framing = params.choose(
        "framing",
        &[
            ("newlines", Framing::Newlines),
            ("newline", Framing::Newlines),
            ("nulls", Framing::Nulls),
            ("nul", Framing::Nulls),
            ("frames", Framing::Frames),
            ("checked", Framing::Checked),
            ("raw", Framing::Raw),
        ],
    )?;
    let durability = params.choose(
        "durability",
        &[
            ("pagecache", dmq::Durability::PageCache),
            ("data", dmq::Durability::Data),
            ("full", dmq::Durability::Full),
        ],
    )?;
    params.finish()?;
    Ok(Target {
        base,
        framing,
        durability,
    })
}

/// Maps the crate's errors onto the facade's.
fn map_error(e: dmq::Error) -> Error {
    match e {
        dmq::Error::CorruptMap { path, reason } => Error::Corrupt {
            location: path.display().to_string(),
            detail: reason,
        },
        dmq::Error::Corrupt {
            file,
            offset,
            reason,
        } => Error::Corrupt {
            location: format!("{} offset {offset}", file.display()),
            detail: reason,
        },
        dmq::Error::TornRecord { file, offset } => Error::Corrupt {
            location: format!("{} offset {offset}", file.display()),
            detail: "torn record: the file ends inside it".into(),
        },
        dmq::Error::TooLarge { len, max } => Error::TooLarge { size: len, max },
        dmq::Error::Unsupported(what) => Error::unsupported(BACKEND, what),
        dmq::Error::DelimiterInPayload { framing, at } => Error::unsupported(
            BACKEND,
            format!(
                "a payload holding the {framing} delimiter (at byte {at}) on a {framing} queue: \
                 open it with framing=frames for binary payloads"
            ),
        ),
        e @ (dmq::Error::ReaderBusy { .. }
        | dmq::Error::Full { .. }
        | dmq::Error::PathMismatch { .. }
        | dmq::Error::Poisoned
        | dmq::Error::Io { .. }) => Error::backend(BACKEND, e),
        other => Error::backend(BACKEND, other),
    }
}

fn capabilities(framing: Framing) -> Capabilities {
    let mut caps = Capabilities::minimal(BACKEND);
    caps.delivery = Delivery::Competing;
    caps.ack = true;
    caps.max_message_size = Some(dmq::format::max_payload(framing, 65_535));
    caps.durability = Durability::Synced;
    caps.survives_reopen = true;
    caps.cross_process = true;
    caps
}

/// The consumers of one queue in this process, around its one reader.
fn registry() -> MutexGuard<'static, HashMap<PathBuf, Weak<Shared>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<Shared>>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
struct Shared {
    watcher: Watcher,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    reader: Reader,
    /// Deliveries not yet committed, in order: (seq, mark).
    order: VecDeque<(u64, Mark)>,
    /// Held deliveries: seq -> (consumer, payload kept for a requeue).
    in_flight: HashMap<u64, (u64, Vec<u8>)>,
    /// Acknowledged, waiting for earlier deliveries before the commit.
    acked: BTreeSet<u64>,
    /// Given back: delivered again before anything new.
    given_back: VecDeque<(u64, Vec<u8>)>,
    next_consumer: u64,
}

impl Shared {
    fn open(target: &Target) -> Result<Arc<Shared>> {
        let key = std::path::absolute(&target.base).unwrap_or_else(|_| target.base.clone());
        let mut registry = registry();
        if let Some(shared) = registry.get(&key).and_then(Weak::upgrade) {
            return Ok(shared);
        }
        let queue = open_queue(target)?;
        let reader = queue.reader().map_err(map_error)?;
        let shared = Arc::new(Shared {
            watcher: reader.watcher(),
            state: Mutex::new(State {
                reader,
                order: VecDeque::new(),
                in_flight: HashMap::new(),
                acked: BTreeSet::new(),
                given_back: VecDeque::new(),
                next_consumer: 0,
            }),
        });
        registry.retain(|_, weak| weak.strong_count() > 0);
        registry.insert(key, Arc::downgrade(&shared));
        Ok(shared)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn open_queue(target: &Target) -> Result<Queue> {
    let options = OpenOptions::new()
        .framing(target.framing)
        .durability(target.durability)
        .commit(Commit::Explicit);
    Queue::open_with(&target.base, &options).map_err(map_error)
}

/// Opens a producer.
pub(crate) fn producer(target: &Target) -> Result<Box<dyn Producer>> {
    let queue = open_queue(target)?;
    let writer = queue.writer().map_err(map_error)?;
    Ok(Box::new(DmqProducer {
        caps: capabilities(queue.framing()),
        synced: target.durability != dmq::Durability::PageCache,
        writer,
    }))
}

/// Opens a consumer.
pub(crate) fn consumer(target: &Target) -> Result<Box<dyn Consumer>> {
    let queue = open_queue(target)?;
    let shared = Shared::open(target)?;
    let id = {
        let mut state = shared.lock();
        state.next_consumer += 1;
        state.next_consumer
    };
    Ok(Box::new(DmqConsumer {
        caps: capabilities(queue.framing()),
        shared,
        id,
    }))
}

#[derive(Debug)]
struct DmqProducer {
    writer: dmq::Writer,
    caps: Capabilities,
    synced: bool,
}

impl Producer for DmqProducer {
    fn send_with(&mut self, payload: &[u8], options: &SendOptions, _wait: Wait) -> Result<Receipt> {
        options.check(&self.caps, BACKEND)?;
        self.caps.check_size(payload.len())?;
        // An unbounded queue: a send never waits for room.
        self.writer.send(payload).map_err(map_error)?;
        let level = if self.synced {
            Durability::Synced
        } else {
            Durability::Written
        };
        Ok(Receipt::new(None, level))
    }

    fn flush(&mut self, level: Durability) -> Result<()> {
        self.caps.check_flush(level)?;
        if level == Durability::Synced {
            self.writer.flush().map_err(map_error)?;
        }
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }
}

#[derive(Debug)]
struct DmqConsumer {
    shared: Arc<Shared>,
    id: u64,
    caps: Capabilities,
}

impl DmqConsumer {
    /// Commits the longest acknowledged prefix of the deliveries.
    fn commit_acked(state: &mut State) -> Result<()> {
        let mut last = None;
        while let Some(&(seq, mark)) = state.order.front() {
            if !state.acked.remove(&seq) {
                break;
            }
            state.order.pop_front();
            last = Some(mark);
        }
        match last {
            Some(mark) => state.reader.commit_to(mark).map_err(map_error),
            None => Ok(()),
        }
    }

    fn settle(&self, state: &mut State, tag: Tag) -> Result<(u64, Vec<u8>)> {
        let seq = tag.into_raw();
        match state.in_flight.get(&seq) {
            Some((owner, _)) if *owner == self.id => {}
            _ => return Err(Error::UnknownTag(tag)),
        }
        let (_, payload) = state.in_flight.remove(&seq).unwrap_or_default();
        Ok((seq, payload))
    }
}

impl Consumer for DmqConsumer {
    fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        buf.clear();
        let deadline = wait.deadline();
        loop {
            {
                let mut state = self.shared.lock();
                if let Some((seq, payload)) = state.given_back.pop_front() {
                    buf.extend_from_slice(&payload);
                    state.in_flight.insert(seq, (self.id, payload));
                    return Ok(Some(
                        Meta::new(Tag::from_raw(seq))
                            .redelivered(true)
                            .seq(Some(seq)),
                    ));
                }
                if let Some(m) = state.reader.try_recv().map_err(map_error)? {
                    let mark = m.mark();
                    let seq = mark.seq();
                    buf.extend_from_slice(&m);
                    state.order.push_back((seq, mark));
                    state.in_flight.insert(seq, (self.id, m.into_vec()));
                    return Ok(Some(Meta::new(Tag::from_raw(seq)).seq(Some(seq))));
                }
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Ok(None);
            }
            self.shared.watcher.wait(deadline);
        }
    }

    fn ack(&mut self, tag: Tag) -> Result<()> {
        let mut state = self.shared.lock();
        let (seq, _) = self.settle(&mut state, tag)?;
        state.acked.insert(seq);
        Self::commit_acked(&mut state)
    }

    fn nack(&mut self, tag: Tag, requeue: bool) -> Result<()> {
        if !requeue {
            return self.ack(tag);
        }
        let mut state = self.shared.lock();
        let (seq, payload) = self.settle(&mut state, tag)?;
        state.given_back.push_back((seq, payload));
        drop(state);
        self.shared.watcher.wake();
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }
}

impl Drop for DmqConsumer {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let mut held: Vec<u64> = state
            .in_flight
            .iter()
            .filter(|(_, (owner, _))| *owner == self.id)
            .map(|(seq, _)| *seq)
            .collect();
        held.sort_unstable();
        for seq in held {
            if let Some((_, payload)) = state.in_flight.remove(&seq) {
                state.given_back.push_back((seq, payload));
            }
        }
        drop(state);
        self.shared.watcher.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newline or NUL queue cannot carry a payload holding its delimiter: that is an
    /// unsupported payload for this queue (with the way out), not an opaque backend error.
    #[test]
    fn a_delimiter_in_the_payload_is_unsupported_and_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("dmq://{}/q", dir.path().display());
        let mut producer = crate::open_producer(&url).unwrap();
        match producer.send(b"two\nlines") {
            Err(Error::Unsupported { backend, what }) => {
                assert_eq!(backend, BACKEND);
                assert!(what.contains("framing=frames"), "{what}");
            }
            other => panic!("{other:?}"),
        }
        let url = format!("dmq://{}/b?framing=frames", dir.path().display());
        crate::open_producer(&url)
            .unwrap()
            .send(b"two\nlines")
            .unwrap();
    }
}
