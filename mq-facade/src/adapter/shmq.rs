//! `shmq://KEY?words=8&slots=256&mode=blocking|cyclic&format=native|go`: the System V
//! shared-memory ring.
//!
//! `KEY` is the SysV key (`0x5151` or decimal). With `words` and `slots` the queue is created
//! if no segment is at the key (an existing one must have that geometry); without them it is
//! opened. `format` (default native) applies to a queue created; when it is given, an existing
//! queue of the other format is refused. The queue holds fixed-size messages of `8 × words`
//! bytes; the facade frames each payload as a little-endian u64 length followed by the bytes,
//! so payloads of up to `8 × words − 8` bytes fit. `mode=cyclic` makes every send overwrite
//! the oldest message when the queue is full (shmq's shift);
//! `SendOptions::overflow(DropOldest)` does the same per send. Messages live in the segment:
//! they survive the sending process ([`Durability::Written`]), not a reboot. No
//! acknowledgements: a received message is gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use shmq::{Format, Key, Options, Queue};

use crate::open::{Params, invalid, single_name};
use crate::{
    Capabilities, Consumer, Delivery, Durability, Error, Meta, Overflow, Producer, Receipt, Result,
    SendOptions, Tag, Wait,
};

const BACKEND: &str = "shmq";
/// Bytes of the length prefix in each message.
const FRAME: usize = 8;

/// What a `shmq://` URL asks for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) key: Key,
    pub(crate) create: Option<(u32, u32)>,
    pub(crate) cyclic: bool,
    /// `None`: not given (create format N; open any).
    pub(crate) format: Option<Format>,
}

/// Parses `shmq://KEY?words=…&slots=…&mode=blocking|cyclic&format=native|go`.
pub(crate) fn parse(raw: &str, url: &url::Url) -> Result<Target> {
    let mut params = Params::new(raw, url)?;
    let name = single_name(raw, url)?;
    let key: Key = name.parse().map_err(|e| {
        invalid(
            raw,
            format!("key `{name}`: {e} (e.g. shmq://0x5151 or shmq://20817)"),
        )
    })?;
    let words: Option<u32> = params.take("words")?;
    let slots: Option<u32> = params.take("slots")?;
    let create = match (words, slots) {
        (Some(0), _) => {
            return Err(invalid(
                raw,
                "parameter `words` must be at least 2 (one word frames the payload)",
            ));
        }
        (Some(1), _) => {
            return Err(invalid(
                raw,
                "parameter `words` must be at least 2 (one word frames the payload)",
            ));
        }
        (_, Some(0)) => return Err(invalid(raw, "parameter `slots` must be at least 1")),
        (Some(w), Some(s)) => Some((w, s)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                raw,
                "parameters `words` and `slots` go together (both to create, neither to open)",
            ));
        }
    };
    let cyclic = params.choose("mode", &[("blocking", false), ("cyclic", true)])?;
    let format = match params.take::<String>("format")?.as_deref() {
        None => None,
        Some("native") => Some(Format::Native),
        Some("go") => Some(Format::GoCompat),
        Some(other) => {
            return Err(invalid(
                raw,
                format!("parameter `format`: `{other}` is not one of native, go"),
            ));
        }
    };
    params.finish()?;
    Ok(Target {
        key,
        create,
        cyclic,
        format,
    })
}

/// Maps the crate's errors onto the facade's.
fn map_error(e: shmq::Error) -> Error {
    match e {
        shmq::Error::Timeout(key) => Error::Timeout {
            what: format!("the shmq queue at key {key}").into(),
        },
        shmq::Error::Corrupt {
            key,
            field,
            offset,
            detail,
        } => Error::Corrupt {
            location: format!("segment {key} offset {offset}"),
            detail: format!("field `{field}`: {detail}"),
        },
        shmq::Error::SizeMismatch { expected, got } => Error::TooLarge {
            size: got.saturating_sub(FRAME),
            max: expected.saturating_sub(FRAME),
        },
        e @ (shmq::Error::NotFound(_)
        | shmq::Error::AlreadyExists(_)
        | shmq::Error::PermissionDenied(_)
        | shmq::Error::TooLarge(_)
        | shmq::Error::InvalidArgument(_)
        | shmq::Error::Unsupported { .. }
        | shmq::Error::LockStuck { .. }
        | shmq::Error::Revoked(_)
        | shmq::Error::NoFreeKey(_)
        | shmq::Error::Os { .. }) => Error::backend(BACKEND, e),
        other => Error::backend(BACKEND, other),
    }
}

fn open(target: &Target) -> Result<Queue> {
    let Some((words, slots)) = target.create else {
        return Queue::open(target.key).map_err(map_error);
    };
    let options = Options {
        format: target.format.unwrap_or_default(),
        ..Options::default()
    };
    match Queue::create_with(target.key, words, slots, &options) {
        Err(shmq::Error::AlreadyExists(_)) => {
            let q = Queue::open(target.key).map_err(map_error)?;
            if let Some(format) = target.format
                && q.format() != format
            {
                return Err(Error::backend(
                    BACKEND,
                    format!(
                        "the queue at key {} has `format` {}, not {format}",
                        target.key,
                        q.format()
                    ),
                ));
            }
            // Each parameter that differs, with the queue's value and the URL's.
            let mut differ = Vec::new();
            if q.msg_bytes() != words as usize * 8 {
                differ.push(format!("`words` {}, not {words}", q.msg_bytes() / 8));
            }
            if q.capacity() != slots {
                differ.push(format!("`slots` {}, not {slots}", q.capacity()));
            }
            if !differ.is_empty() {
                return Err(Error::backend(
                    BACKEND,
                    format!(
                        "the queue at key {} has {}",
                        target.key,
                        differ.join(" and ")
                    ),
                ));
            }
            Ok(q)
        }
        other => other.map_err(map_error),
    }
}

fn capabilities(q: &Queue) -> Capabilities {
    let mut caps = Capabilities::minimal(BACKEND);
    caps.delivery = Delivery::Competing;
    caps.drop_oldest = true;
    caps.capacity = Some(q.capacity() as usize);
    caps.max_message_size = Some(q.msg_bytes() - FRAME);
    caps.durability = Durability::Written;
    caps.survives_reopen = true;
    caps.cross_process = true;
    caps
}

/// Opens a producer.
pub(crate) fn producer(target: &Target) -> Result<Box<dyn Producer>> {
    let queue = open(target)?;
    Ok(Box::new(ShmProducer {
        frame: vec![0; queue.msg_bytes()],
        queue,
        cyclic: target.cyclic,
    }))
}

/// Opens a consumer.
pub(crate) fn consumer(target: &Target) -> Result<Box<dyn Consumer>> {
    let queue = open(target)?;
    Ok(Box::new(ShmConsumer {
        frame: vec![0; queue.msg_bytes()],
        queue,
    }))
}

#[derive(Debug)]
struct ShmProducer {
    queue: Queue,
    cyclic: bool,
    frame: Vec<u8>,
}

impl Producer for ShmProducer {
    fn send_with(&mut self, payload: &[u8], options: &SendOptions, wait: Wait) -> Result<Receipt> {
        let caps = capabilities(&self.queue);
        options.check(&caps, BACKEND)?;
        caps.check_size(payload.len())?;
        self.frame.fill(0);
        self.frame[..FRAME].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        self.frame[FRAME..FRAME + payload.len()].copy_from_slice(payload);
        if self.cyclic || options.overflow == Overflow::DropOldest {
            self.queue.enqueue_shift(&self.frame).map_err(map_error)?;
        } else {
            match wait {
                Wait::NoWait => {
                    if !self.queue.enqueue_try(&self.frame).map_err(map_error)? {
                        return Err(Error::Full {
                            queue: format!("shmq {}", self.queue.key()),
                            capacity: self.queue.capacity() as usize,
                        });
                    }
                }
                wait => self
                    .queue
                    .enqueue_block(&self.frame, wait.deadline())
                    .map_err(map_error)?,
            }
        }
        Ok(Receipt::new(None, Durability::Written))
    }

    fn flush(&mut self, level: Durability) -> Result<()> {
        // Every send is in the segment when it returns.
        capabilities(&self.queue).check_flush(level)
    }

    fn capabilities(&self) -> Capabilities {
        capabilities(&self.queue)
    }
}

#[derive(Debug)]
struct ShmConsumer {
    queue: Queue,
    frame: Vec<u8>,
}

fn next_tag() -> Tag {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    Tag::from_raw(NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Consumer for ShmConsumer {
    fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        buf.clear();
        let got = match wait {
            Wait::NoWait => self.queue.dequeue_try(&mut self.frame),
            wait => {
                let deadline: Option<Instant> = wait.deadline();
                match self.queue.dequeue_block(&mut self.frame, deadline) {
                    Ok(()) => Ok(true),
                    Err(shmq::Error::Timeout(_)) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
        .map_err(map_error)?;
        if !got {
            return Ok(None);
        }
        let mut len = [0u8; FRAME];
        len.copy_from_slice(&self.frame[..FRAME]);
        let len = u64::from_le_bytes(len);
        let max = self.frame.len() - FRAME;
        if len > max as u64 {
            return Err(Error::Corrupt {
                location: format!("segment {} (a message)", self.queue.key()),
                detail: format!(
                    "length prefix {len} exceeds the {max} payload bytes of a slot: not written through the facade"
                ),
            });
        }
        buf.extend_from_slice(&self.frame[FRAME..FRAME + len as usize]);
        Ok(Some(Meta::new(next_tag())))
    }

    fn ack(&mut self, _tag: Tag) -> Result<()> {
        // Without acknowledgements a received message is already gone: acking it is a no-op.
        Ok(())
    }

    fn nack(&mut self, tag: Tag, requeue: bool) -> Result<()> {
        if requeue {
            return Err(Error::unsupported(
                BACKEND,
                format!("nack with requeue of {tag:?}: shmq has no acknowledgements"),
            ));
        }
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        capabilities(&self.queue)
    }
}
