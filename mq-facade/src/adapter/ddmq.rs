//! `ddmq:///ROOT/QUEUE?durability=none|fsync&order=numeric|lexicographic`: the serverless
//! file-per-message queue (one JSON file per message, shared with Python ddmq clients).
//!
//! Mapping: the root and the queue are created when missing. Facade priority `p` (higher
//! first, 0..=255) is ddmq priority `999 - p` (lower first; no priority is the queue's
//! default, 999); requeued copies keep it. `ttl` is kept in an extra JSON key
//! (`ttl_expires_at`, epoch seconds) and an expired message is deleted by the consumer that
//! claims it; `ack_timeout` is the message's `timeout` (fractions of a second kept).
//! Payloads that are UTF-8 are stored as the JSON string, others as hex with
//! `"payload_encoding": "hex"`. A receive claims one message (a rename into `work/`);
//! `ack` deletes it, `nack(requeue)` and a dropped consumer give it back at its old place,
//! counted as a redelivery; an ack or nack after the ack timeout gave the message away is
//! [`Error::UnknownTag`]. Waiting consumers poll (there is no daemon to wake them) and
//! requeue expired claims every 100 ms. With `durability=fsync` every send is synced before
//! it returns (`Synced`); otherwise a send survives a crash of the process (`Written`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ddmq::{Broker, BrokerOptions, Order, PublishOptions, Requeue};
use serde_json::Value;

use crate::open::{Params, invalid, local_path};
use crate::{
    Capabilities, Consumer, Delivery, Durability, Error, Meta, Producer, Receipt, Result,
    SendOptions, Tag, Wait,
};

const BACKEND: &str = "ddmq";
const TTL_KEY: &str = "ttl_expires_at";
const ENCODING_KEY: &str = "payload_encoding";
/// ddmq priority of facade priority 0 (the original's default priority).
const BASE: u64 = 999;
/// How often a waiting consumer requeues expired claims.
const REAP_EVERY: Duration = Duration::from_millis(100);

/// What a `ddmq://` URL asks for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) root: PathBuf,
    pub(crate) queue: String,
    pub(crate) durability: ddmq::Durability,
    pub(crate) order: Order,
}

/// Parses `ddmq:///ROOT/QUEUE?durability=none|fsync&order=numeric|lexicographic`.
pub(crate) fn parse(raw: &str, url: &url::Url) -> Result<Target> {
    let mut params = Params::new(raw, url)?;
    let path = local_path(raw, url)?;
    let queue = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if !ddmq::format::valid_queue_name(&queue) {
        return Err(invalid(
            raw,
            format!(
                "queue name `{queue}`: expected ddmq:///ROOT/QUEUE with QUEUE of letters, digits, `_` and `-`"
            ),
        ));
    }
    let root = path.parent().map(PathBuf::from).unwrap_or_default();
    if root.as_os_str().is_empty() || root == Path::new("/") {
        return Err(invalid(
            raw,
            "missing root directory: expected ddmq:///ROOT/QUEUE",
        ));
    }
    let durability = params.choose(
        "durability",
        &[
            ("none", ddmq::Durability::None),
            ("fsync", ddmq::Durability::Fsync),
        ],
    )?;
    let order = params.choose(
        "order",
        &[
            ("numeric", Order::Numeric),
            ("lexicographic", Order::Lexicographic),
        ],
    )?;
    params.finish()?;
    Ok(Target {
        root,
        queue,
        durability,
        order,
    })
}

/// Maps the crate's errors onto the facade's.
fn map_error(e: ddmq::Error) -> Error {
    match e {
        ddmq::Error::BadMessage { path, detail } => Error::Corrupt {
            location: path.display().to_string(),
            detail,
        },
        ddmq::Error::Settings { path, detail } => Error::Corrupt {
            location: path.display().to_string(),
            detail,
        },
        other => Error::backend(BACKEND, other),
    }
}

fn open(target: &Target) -> Result<Broker> {
    let opts = BrokerOptions::default()
        .create(true)
        .durability(target.durability)
        .order(target.order);
    let broker = Broker::open_with(&target.root, opts).map_err(map_error)?;
    match broker.create_queue(&target.queue) {
        Ok(()) | Err(ddmq::Error::QueueExists { .. }) => Ok(broker),
        Err(e) => Err(map_error(e)),
    }
}

fn capabilities(target: &Target) -> Capabilities {
    let mut caps = Capabilities::minimal(BACKEND);
    caps.delivery = Delivery::Competing;
    caps.ack = true;
    caps.max_priority = Some(u8::MAX);
    caps.ttl = true;
    caps.ack_timeout = true;
    caps.durability = match target.durability {
        ddmq::Durability::Fsync => Durability::Synced,
        _ => Durability::Written,
    };
    caps.survives_reopen = true;
    caps.cross_process = true;
    caps
}

fn epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Opens a producer.
pub(crate) fn producer(target: &Target) -> Result<Box<dyn Producer>> {
    Ok(Box::new(DdmqProducer {
        broker: open(target)?,
        target: target.clone(),
    }))
}

/// Opens a consumer.
pub(crate) fn consumer(target: &Target) -> Result<Box<dyn Consumer>> {
    Ok(Box::new(DdmqConsumer {
        broker: open(target)?,
        target: target.clone(),
        held: HashMap::new(),
        next_tag: 0,
        last_reap: None,
    }))
}

#[derive(Debug)]
struct DdmqProducer {
    broker: Broker,
    target: Target,
}

impl Producer for DdmqProducer {
    fn send_with(&mut self, payload: &[u8], options: &SendOptions, _wait: Wait) -> Result<Receipt> {
        let caps = capabilities(&self.target);
        options.check(&caps, BACKEND)?;
        let mut o = PublishOptions::new().skip_cleaning(true);
        let priority = options.priority.map(|p| BASE - u64::from(p));
        if let Some(p) = priority {
            o = o.priority(p);
        }
        // Requeued copies keep the priority (an int `requeue` is the requeue priority).
        o = o.requeue(match priority {
            Some(p) if p > 0 => Requeue::AtPriority(p),
            _ => Requeue::Yes,
        });
        if let Some(t) = options.ack_timeout {
            o = o.timeout(t.as_secs_f64().max(0.001));
        }
        if let Some(ttl) = options.ttl {
            o = o.extra(TTL_KEY, Value::from(epoch_secs() + ttl.as_secs_f64()));
        }
        let body = match std::str::from_utf8(payload) {
            Ok(text) => Value::String(text.to_owned()),
            Err(_) => {
                o = o.extra(ENCODING_KEY, Value::from("hex"));
                let mut hex = String::with_capacity(payload.len() * 2);
                for b in payload {
                    hex.push_str(&format!("{b:02x}"));
                }
                Value::String(hex)
            }
        };
        self.broker
            .publish(&self.target.queue, body, &o)
            .map_err(map_error)?;
        Ok(Receipt::new(None, caps.durability))
    }

    fn flush(&mut self, level: Durability) -> Result<()> {
        // Every send is already as durable as the queue gets.
        capabilities(&self.target).check_flush(level)
    }

    fn capabilities(&self) -> Capabilities {
        capabilities(&self.target)
    }
}

#[derive(Debug)]
struct DdmqConsumer {
    broker: Broker,
    target: Target,
    held: HashMap<u64, ddmq::Delivery>,
    next_tag: u64,
    last_reap: Option<Instant>,
}

fn decode_payload(m: &ddmq::Message) -> Result<Vec<u8>> {
    let text = m.text();
    let hex = m
        .extra
        .iter()
        .any(|(k, v)| k == ENCODING_KEY && v.as_str() == Some("hex"));
    if !hex {
        return Ok(text.into_bytes());
    }
    let corrupt = || Error::Corrupt {
        location: m.filename.clone(),
        detail: "`message` is not the hex its `payload_encoding` says".into(),
    };
    if !text.len().is_multiple_of(2) {
        return Err(corrupt());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(text.get(i..i + 2).ok_or_else(corrupt)?, 16).map_err(|_| corrupt())
        })
        .collect()
}

impl DdmqConsumer {
    fn try_take(&mut self, buf: &mut Vec<u8>) -> Result<Option<Meta>> {
        if self.last_reap.is_none_or(|t| t.elapsed() >= REAP_EVERY) {
            self.last_reap = Some(Instant::now());
            self.broker
                .reap_expired(&self.target.queue)
                .map_err(map_error)?;
        }
        loop {
            let Some(d) = self
                .broker
                .consume(&self.target.queue, 1)
                .map_err(map_error)?
                .pop()
            else {
                return Ok(None);
            };
            let expired = d
                .message
                .extra
                .iter()
                .any(|(k, v)| k == TTL_KEY && v.as_f64().is_some_and(|at| at < epoch_secs()));
            if expired {
                d.ack().map_err(map_error)?;
                continue;
            }
            let payload = match decode_payload(&d.message) {
                Ok(p) => p,
                Err(e) => {
                    d.nack(Some(false)).map_err(map_error)?;
                    return Err(e);
                }
            };
            buf.extend_from_slice(&payload);
            self.next_tag += 1;
            let priority = BASE
                .checked_sub(d.message.priority)
                .and_then(|p| u8::try_from(p).ok());
            let meta = Meta::new(Tag::from_raw(self.next_tag))
                .redelivered(d.redelivered())
                .priority(priority);
            self.held.insert(self.next_tag, d);
            return Ok(Some(meta));
        }
    }

    fn take(&mut self, tag: Tag) -> Result<ddmq::Delivery> {
        self.held
            .remove(&tag.into_raw())
            .ok_or(Error::UnknownTag(tag))
    }
}

/// The claimed file is gone: its ack timeout passed and a cleaner gave the message to
/// another consumer (or deleted it). The ack or nack did nothing, which the caller must learn.
fn settled(tag: Tag, outcome: ddmq::Result<ddmq::AckOutcome>) -> Result<()> {
    match outcome.map_err(map_error)? {
        ddmq::AckOutcome::Missing => Err(Error::UnknownTag(tag)),
        _ => Ok(()),
    }
}

impl Consumer for DdmqConsumer {
    fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        buf.clear();
        let deadline = wait.deadline();
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(meta) = self.try_take(buf)? {
                return Ok(Some(meta));
            }
            let now = Instant::now();
            let left = match deadline {
                Some(at) if now >= at => return Ok(None),
                Some(at) => at - now,
                None => Duration::MAX,
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    fn ack(&mut self, tag: Tag) -> Result<()> {
        settled(tag, self.take(tag)?.ack())
    }

    fn nack(&mut self, tag: Tag, requeue: bool) -> Result<()> {
        let d = self.take(tag)?;
        let outcome = if requeue {
            d.release()
        } else {
            d.nack(Some(false))
        };
        settled(tag, outcome)
    }

    fn capabilities(&self) -> Capabilities {
        capabilities(&self.target)
    }
}

impl Drop for DdmqConsumer {
    fn drop(&mut self) {
        for (_, d) in self.held.drain() {
            // Best effort: what cannot be given back now is requeued by its ack timeout.
            let _ = d.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_after_the_ack_timeout_gave_the_message_away_is_an_unknown_tag() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("ddmq://{}/root/q", dir.path().display());
        let mut tx = crate::open_producer(&url).unwrap();
        let mut late = crate::open_consumer(&url).unwrap();
        let mut other = crate::open_consumer(&url).unwrap();
        let options = SendOptions::new().ack_timeout(Duration::from_millis(50));
        tx.send_with(b"slow", &options, Wait::NoWait).unwrap();
        let first = late.recv().unwrap();
        let again = other
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .expect("redelivered after the ack timeout");
        assert!(again.meta.redelivered);
        // The late ack cannot keep its promise (the message is out again): it says so.
        assert!(matches!(late.ack(first.tag()), Err(Error::UnknownTag(_))));
        assert!(matches!(
            late.nack(first.tag(), true),
            Err(Error::UnknownTag(_))
        ));
        other.ack(again.tag()).unwrap();
        assert!(other.try_recv().unwrap().is_none());
    }
}
