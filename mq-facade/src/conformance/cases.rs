//! The cases, as a table, and the checks behind them.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::child::{flushed_payload, spawn_flush_and_kill, unflushed_payload};
use super::{Case, Failure, Harness};
use crate::{
    Capabilities, Consumer, Delivery, Durability, Error, Message, Overflow, Producer, SendOptions,
    Wait,
};

/// How long a case waits for a message it expects (generous: a loaded CI machine, a broker).
const PATIENCE: Duration = Duration::from_secs(10);
/// How long a case waits to be sure that nothing more arrives.
const SETTLE: Duration = Duration::from_millis(300);
/// How long consumers wait for more after the producers finished and nothing came.
const QUIET: Duration = Duration::from_secs(3);
/// The most messages a case puts in one queue at once.
const FILL: usize = 200;

/// Every case of the suite, in table order.
pub fn cases() -> &'static [Case] {
    CASES
}

static CASES: &[Case] = &[
    Case {
        name: "capabilities_agree",
        summary: "producer and consumer report the capabilities the harness announced",
        applies: always,
        check: capabilities_agree,
    },
    Case {
        name: "fifo_order",
        summary: "messages of one producer arrive in send order, each once",
        applies: always,
        check: fifo_order,
    },
    Case {
        name: "empty_try_recv_is_none",
        summary: "try_recv on an empty queue is Ok(None), not an error",
        applies: always,
        check: empty_try_recv_is_none,
    },
    Case {
        name: "recv_timeout_deadline",
        summary: "recv_timeout returns None after its timeout, and a message that arrives meanwhile at once",
        applies: always,
        check: recv_timeout_deadline,
    },
    Case {
        name: "binary_payloads",
        summary: "the empty message, all 256 byte values and NUL/newline runs round-trip intact",
        applies: always,
        check: binary_payloads,
    },
    Case {
        name: "send_batch_in_order",
        summary: "send_batch enqueues every message in order with one receipt each",
        applies: always,
        check: send_batch_in_order,
    },
    Case {
        name: "oversized_rejected",
        summary: "a payload over max_message_size is TooLarge and nothing is enqueued; max itself passes",
        applies: has_max_message_size,
        check: oversized_rejected,
    },
    Case {
        name: "full_queue",
        summary: "a full queue gives Full to try_send and Timeout to send_timeout, room after an ack",
        applies: has_small_capacity,
        check: full_queue,
    },
    Case {
        name: "flush_levels",
        summary: "flush succeeds up to the backend's durability and is Unsupported above it",
        applies: always,
        check: flush_levels,
    },
    Case {
        name: "unsupported_is_an_error",
        summary: "every send option the backend lacks, and nack on a backend without acks, is Unsupported",
        applies: lacks_something,
        check: unsupported_is_an_error,
    },
    Case {
        name: "ack_prevents_redelivery",
        summary: "an acknowledged message is never delivered again, even to a new consumer",
        applies: has_ack,
        check: ack_prevents_redelivery,
    },
    Case {
        name: "nack_requeue_redelivers",
        summary: "nack with requeue delivers again marked redelivered; nack without requeue discards",
        applies: has_ack,
        check: nack_requeue_redelivers,
    },
    Case {
        name: "dropped_consumer_gives_back",
        summary: "messages a dropped consumer held unacknowledged wake a waiting consumer",
        applies: has_ack,
        check: dropped_consumer_gives_back,
    },
    Case {
        name: "requeue_wakes_a_waiting_consumer",
        summary: "a nack with requeue wakes a consumer already blocked in recv",
        applies: has_ack,
        check: requeue_wakes_a_waiting_consumer,
    },
    Case {
        name: "blocked_send_wakes",
        summary: "a send blocked on a full queue returns as soon as an ack makes room",
        applies: has_small_capacity,
        check: blocked_send_wakes,
    },
    Case {
        name: "reopen_keeps_messages",
        summary: "dropping every handle and reopening keeps unconsumed and unacknowledged messages",
        applies: survives_reopen,
        check: reopen_keeps_messages,
    },
    Case {
        name: "survives_producer_kill",
        summary: "messages flushed by a producer process survive its kill -9, in order, untorn",
        applies: survives_kill,
        check: survives_producer_kill,
    },
    Case {
        name: "producers_consumers",
        summary: "3 producers x 3 consumers lose and duplicate nothing, each producer's order kept",
        applies: always,
        check: producers_consumers,
    },
    Case {
        name: "priority_order",
        summary: "higher priority first, send order within a priority",
        applies: has_priorities,
        check: priority_order,
    },
    Case {
        name: "ttl_expiry",
        summary: "a message past its ttl is never delivered; others are",
        applies: has_ttl,
        check: ttl_expiry,
    },
    Case {
        name: "ack_timeout_requeues",
        summary: "a delivery held past its ack_timeout goes to a waiting consumer, marked redelivered",
        applies: has_ack_timeout,
        check: ack_timeout_requeues,
    },
    Case {
        name: "drop_oldest_overflow",
        summary: "with Overflow::DropOldest a full queue discards its oldest message instead of blocking",
        applies: has_drop_oldest,
        check: drop_oldest_overflow,
    },
];

// ---- applicability ----------------------------------------------------------------------

fn always(_: &Capabilities) -> Result<(), &'static str> {
    Ok(())
}

fn need(ok: bool, reason: &'static str) -> Result<(), &'static str> {
    if ok { Ok(()) } else { Err(reason) }
}

fn has_max_message_size(c: &Capabilities) -> Result<(), &'static str> {
    need(
        c.max_message_size.is_some_and(|m| m <= 64 << 20),
        "no message size limit (or one over 64 MiB)",
    )
}

fn has_small_capacity(c: &Capabilities) -> Result<(), &'static str> {
    need(
        c.capacity.is_some_and(|n| n <= 100_000),
        "unbounded queue (or capacity over 100,000)",
    )
}

fn lacks_something(c: &Capabilities) -> Result<(), &'static str> {
    need(
        !unsupported_options(c).is_empty() || !c.ack,
        "the backend supports every option",
    )
}

fn has_ack(c: &Capabilities) -> Result<(), &'static str> {
    need(
        c.ack && c.delivery == Delivery::Competing,
        "no acknowledgements on competing consumers",
    )
}

fn survives_reopen(c: &Capabilities) -> Result<(), &'static str> {
    need(
        c.survives_reopen && c.delivery == Delivery::Competing && c.capacity.is_none_or(|n| n >= 3),
        "messages do not outlive their handles (on a competing queue of 3 or more)",
    )
}

fn survives_kill(c: &Capabilities) -> Result<(), &'static str> {
    need(
        c.cross_process
            && c.survives_reopen
            && c.delivery == Delivery::Competing
            && c.durability >= Durability::Written,
        "not durable across processes",
    )
}

fn has_priorities(c: &Capabilities) -> Result<(), &'static str> {
    need(
        c.max_priority.is_some_and(|m| m >= 2) && c.capacity.is_none_or(|n| n >= 6),
        "no priorities (or room for fewer than 6 messages)",
    )
}

fn has_ttl(c: &Capabilities) -> Result<(), &'static str> {
    need(c.ttl, "no per-message ttl")
}

fn has_ack_timeout(c: &Capabilities) -> Result<(), &'static str> {
    need(
        c.ack && c.ack_timeout && c.delivery == Delivery::Competing,
        "no ack timeouts",
    )
}

fn has_drop_oldest(c: &Capabilities) -> Result<(), &'static str> {
    need(
        c.drop_oldest && c.capacity.is_some_and(|n| n <= 100_000),
        "no drop-oldest overflow on a bounded queue",
    )
}

// ---- helpers ------------------------------------------------------------------------------

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(Failure(format!($($fmt)+)));
        }
    };
}

fn show(payload: &[u8]) -> String {
    if payload.len() > 48 {
        return format!(
            "{} bytes starting {:?}",
            payload.len(),
            String::from_utf8_lossy(&payload[..32])
        );
    }
    format!("{:?}", String::from_utf8_lossy(payload))
}

/// Receives one message, waiting up to [`PATIENCE`].
fn expect_message(rx: &mut dyn Consumer, what: &str) -> Result<Message, Failure> {
    rx.recv_timeout(PATIENCE)?
        .ok_or_else(|| Failure(format!("{what}: nothing arrived within {PATIENCE:?}")))
}

/// Receives `expected` in order, acknowledging each.
fn expect_sequence(rx: &mut dyn Consumer, expected: &[Vec<u8>]) -> Result<(), Failure> {
    for (i, want) in expected.iter().enumerate() {
        let got = expect_message(rx, &format!("message {i} ({})", show(want)))?;
        ensure!(
            got.payload == *want,
            "message {i}: expected {}, got {}",
            show(want),
            show(&got.payload)
        );
        rx.ack(got.tag())?;
    }
    Ok(())
}

/// Fails if any message arrives within [`SETTLE`].
fn expect_empty(rx: &mut dyn Consumer, why: &str) -> Result<(), Failure> {
    if let Some(extra) = rx.recv_timeout(SETTLE)? {
        return Err(Failure(format!(
            "{why}, but {} arrived",
            show(&extra.payload)
        )));
    }
    Ok(())
}

/// Sends with a deadline, so a backend that never makes room fails the case instead of
/// hanging it.
fn send(tx: &mut dyn Producer, payload: &[u8]) -> Result<(), Failure> {
    tx.send_timeout(payload, PATIENCE)
        .map(drop)
        .map_err(|e| Failure(format!("send {}: {e}", show(payload))))
}

/// Sends `messages` and receives them back in order, in chunks that fit the queue.
fn round_trip(
    caps: &Capabilities,
    tx: &mut dyn Producer,
    rx: &mut dyn Consumer,
    messages: &[Vec<u8>],
) -> Result<(), Failure> {
    for chunk in messages.chunks(fill(caps, messages.len()).max(1)) {
        for m in chunk {
            send(tx, m)?;
        }
        expect_sequence(rx, chunk)?;
    }
    Ok(())
}

/// A consumer blocked in `recv_timeout` on another thread; join with [`joined`].
type Waiting =
    std::thread::JoinHandle<(Box<dyn Consumer>, crate::Result<Option<Message>>, Duration)>;

fn wait_in_thread(mut rx: Box<dyn Consumer>) -> Waiting {
    std::thread::spawn(move || {
        let started = Instant::now();
        let got = rx.recv_timeout(PATIENCE * 3);
        (rx, got, started.elapsed())
    })
}

/// The message the waiting consumer got, which must come within [`PATIENCE`].
fn joined(waiting: Waiting, what: &str) -> Result<(Box<dyn Consumer>, Message), Failure> {
    let (rx, got, waited) = waiting
        .join()
        .map_err(|_| Failure("a consumer thread panicked".into()))?;
    let got = got?.ok_or_else(|| Failure(format!("{what}: the waiting consumer got nothing")))?;
    ensure!(
        waited < PATIENCE,
        "{what}: the waiting consumer was woken only after {waited:?}"
    );
    Ok((rx, got))
}

/// Lets a thread that was just spawned reach its blocking call.
fn let_it_block() {
    std::thread::sleep(Duration::from_millis(100));
}

fn numbered(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i:05}").into_bytes())
        .collect()
}

/// How many messages a case may put in the queue at once.
fn fill(c: &Capabilities, want: usize) -> usize {
    c.capacity.map_or(want, |cap| cap.min(want))
}

/// The options `c` lacks, each with a name for messages.
fn unsupported_options(c: &Capabilities) -> Vec<(&'static str, SendOptions)> {
    let mut lacking = Vec::new();
    match c.max_priority {
        None => lacking.push(("priority 1", SendOptions::new().priority(1))),
        Some(max) if max < u8::MAX => {
            lacking.push((
                "priority above max_priority",
                SendOptions::new().priority(max + 1),
            ));
        }
        Some(_) => {}
    }
    if !c.ttl {
        lacking.push(("ttl", SendOptions::new().ttl(Duration::from_secs(60))));
    }
    if !c.ack_timeout {
        lacking.push((
            "ack_timeout",
            SendOptions::new().ack_timeout(Duration::from_secs(60)),
        ));
    }
    if !c.drop_oldest {
        lacking.push((
            "overflow DropOldest",
            SendOptions::new().overflow(Overflow::DropOldest),
        ));
    }
    lacking
}

// ---- the checks ---------------------------------------------------------------------------

fn capabilities_agree(h: &dyn Harness) -> Result<(), Failure> {
    let q = h.queue()?;
    let announced = h.capabilities();
    let producer = q.producer()?.capabilities();
    let consumer = q.consumer()?.capabilities();
    ensure!(
        producer == announced,
        "producer reports {producer:?}, harness announced {announced:?}"
    );
    ensure!(
        consumer == announced,
        "consumer reports {consumer:?}, harness announced {announced:?}"
    );
    Ok(())
}

fn fifo_order(h: &dyn Harness) -> Result<(), Failure> {
    let q = h.queue()?;
    let mut rx = q.consumer()?;
    let mut tx = q.producer()?;
    let messages = numbered("fifo", FILL);
    round_trip(&h.capabilities(), tx.as_mut(), rx.as_mut(), &messages)?;
    expect_empty(rx.as_mut(), "every message was received once")
}

fn empty_try_recv_is_none(h: &dyn Harness) -> Result<(), Failure> {
    let q = h.queue()?;
    let mut rx = q.consumer()?;
    for attempt in 0..2 {
        match rx.try_recv()? {
            None => {}
            Some(m) => {
                return Err(Failure(format!(
                    "attempt {attempt}: an empty queue gave {}",
                    show(&m.payload)
                )));
            }
        }
    }
    Ok(())
}

fn recv_timeout_deadline(h: &dyn Harness) -> Result<(), Failure> {
    let q = h.queue()?;
    let mut rx = q.consumer()?;
    let timeout = Duration::from_millis(250);
    let started = Instant::now();
    let got = rx.recv_timeout(timeout)?;
    let waited = started.elapsed();
    ensure!(got.is_none(), "an empty queue gave a message");
    ensure!(
        waited >= timeout,
        "recv_timeout({timeout:?}) on an empty queue returned after {waited:?}"
    );
    ensure!(
        waited < timeout + PATIENCE / 2,
        "recv_timeout({timeout:?}) overslept: returned after {waited:?}"
    );

    // A message sent while the receiver waits ends the wait long before its deadline.
    let mut tx = q.producer()?;
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        tx.send_timeout(b"wake up", PATIENCE)
    });
    let started = Instant::now();
    let long = PATIENCE * 3;
    let got = rx.recv_timeout(long)?;
    let waited = started.elapsed();
    sender
        .join()
        .map_err(|_| Failure("the sending thread panicked".into()))??;
    let got = got.ok_or_else(|| Failure(format!("nothing arrived within {long:?}")))?;
    ensure!(got.payload == b"wake up", "got {}", show(&got.payload));
    ensure!(
        waited < PATIENCE,
        "the message was sent after 100 ms but recv_timeout({long:?}) returned after {waited:?}"
    );
    rx.ack(got.tag())?;
    Ok(())
}

fn binary_payloads(h: &dyn Harness) -> Result<(), Failure> {
    let caps = h.capabilities();
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let mut payloads = vec![
        Vec::new(),
        all_bytes.clone(),
        all_bytes.iter().rev().copied().collect(),
        vec![0u8; 1000],
        b"\n\r\n\0\n".repeat(50),
        vec![0xff; 3],
        "ünïcødé \u{1F600}".as_bytes().to_vec(),
    ];
    if let Some(max) = caps.max_message_size {
        payloads.retain(|p| p.len() <= max);
    }
    let q = h.queue()?;
    let mut rx = q.consumer()?;
    let mut tx = q.producer()?;
    round_trip(&caps, tx.as_mut(), rx.as_mut(), &payloads)
}

fn send_batch_in_order(h: &dyn Harness) -> Result<(), Failure> {
    let q = h.queue()?;
    let mut rx = q.consumer()?;
    let mut tx = q.producer()?;
    let messages = numbered("batch", fill(&h.capabilities(), 50));
    let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let receipts = tx.send_batch(&slices, &SendOptions::default(), Wait::timeout(PATIENCE))?;
    ensure!(
        receipts.len() == messages.len(),
        "{} receipts for {} messages",
        receipts.len(),
        messages.len()
    );
    expect_sequence(rx.as_mut(), &messages)
}

fn oversized_rejected(h: &dyn Harness) -> Result<(), Failure> {
    let max = h.capabilities().max_message_size.unwrap_or_default();
    let q = h.queue()?;
    let mut rx = q.consumer()?;
    let mut tx = q.producer()?;
    match tx.try_send(&vec![b'x'; max + 1]) {
        Err(Error::TooLarge { size, max: m }) if size == max + 1 && m == max => {}
        other => {
            return Err(Failure(format!(
                "a {}-byte message (limit {max}) gave {other:?}, expected TooLarge {{ size: {}, max: {max} }}",
                max + 1,
                max + 1
            )));
        }
    }
    expect_empty(rx.as_mut(), "the oversized message was rejected")?;
    let at_limit = vec![b'y'; max];
    send(tx.as_mut(), &at_limit)?;
    expect_sequence(rx.as_mut(), &[at_limit])
}

fn full_queue(h: &dyn Harness) -> Result<(), Failure> {
    let capacity = h.capabilities().capacity.unwrap_or_default();
    let q = h.queue()?;
    let mut rx = q.consumer()?;
    let mut tx = q.producer()?;
    let messages = numbered("full", capacity);
    for (i, m) in messages.iter().enumerate() {
        tx.try_send(m).map_err(|e| {
            Failure(format!(
                "try_send {i} of {capacity} into a queue with room: {e}"
            ))
        })?;
    }
    match tx.try_send(b"one too many") {
        Err(Error::Full { capacity: c, .. }) if c == capacity => {}
        other => {
            return Err(Failure(format!(
                "try_send into a full queue gave {other:?}, expected Full {{ capacity: {capacity} }}"
            )));
        }
    }
    let timeout = Duration::from_millis(100);
    let started = Instant::now();
    match tx.send_timeout(b"one too many", timeout) {
        Err(Error::Timeout { .. }) => {}
        other => {
            return Err(Failure(format!(
                "send_timeout into a full queue gave {other:?}, expected Timeout"
            )));
        }
    }
    let waited = started.elapsed();
    ensure!(
        waited >= timeout,
        "send_timeout({timeout:?}) into a full queue gave up after {waited:?}"
    );
    let first = expect_message(rx.as_mut(), "the first message of the full queue")?;
    ensure!(
        first.payload == messages[0],
        "first message was {}",
        show(&first.payload)
    );
    rx.ack(first.tag())?;
    tx.send_timeout(b"room again", PATIENCE)?;
    let mut rest = messages[1..].to_vec();
    rest.push(b"room again".to_vec());
    expect_sequence(rx.as_mut(), &rest)?;
    expect_empty(rx.as_mut(), "the rejected sends enqueued nothing")
}

fn flush_levels(h: &dyn Harness) -> Result<(), Failure> {
    let strongest = h.capabilities().durability;
    let q = h.queue()?;
    let mut rx = q.consumer()?;
    let mut tx = q.producer()?;
    send(tx.as_mut(), b"before flush")?;
    for level in [
        Durability::Buffered,
        Durability::Written,
        Durability::Synced,
    ] {
        match (tx.flush(level), level <= strongest) {
            (Ok(()), true) | (Err(Error::Unsupported { .. }), false) => {}
            (result, supported) => {
                return Err(Failure(format!(
                    "flush({level}) with durability {strongest} gave {result:?}, expected {}",
                    if supported { "Ok" } else { "Unsupported" }
                )));
            }
        }
    }
    expect_sequence(rx.as_mut(), &[b"before flush".to_vec()])
}

fn unsupported_is_an_error(h: &dyn Harness) -> Result<(), Failure> {
    let caps = h.capabilities();
    let q = h.queue()?;
    let mut rx = q.consumer()?;
    let mut tx = q.producer()?;
    for (what, options) in unsupported_options(&caps) {
        match tx.send_with(b"must not be sent", &options, Wait::timeout(PATIENCE)) {
            Err(Error::Unsupported { .. }) => {}
            other => {
                return Err(Failure(format!(
                    "a send with {what}, which the backend does not claim, gave {other:?}, expected Unsupported"
                )));
            }
        }
    }
    expect_empty(rx.as_mut(), "every send was rejected")?;
    if !caps.ack {
        send(tx.as_mut(), b"to nack")?;
        let m = expect_message(rx.as_mut(), "a message to nack")?;
        match rx.nack(m.tag(), true) {
            Err(Error::Unsupported { .. }) => {}
            other => {
                return Err(Failure(format!(
                    "nack with requeue on a backend without acks gave {other:?}, expected Unsupported"
                )));
            }
        }
    }
    Ok(())
}

fn ack_prevents_redelivery(h: &dyn Harness) -> Result<(), Failure> {
    let q = h.queue()?;
    let mut tx = q.producer()?;
    let mut rx = q.consumer()?;
    send(tx.as_mut(), b"first")?;
    send(tx.as_mut(), b"second")?;
    expect_sequence(rx.as_mut(), &[b"first".to_vec()])?;
    drop(rx);
    let mut rx = q.consumer()?;
    let second = expect_message(rx.as_mut(), "the unacknowledged second message")?;
    ensure!(
        second.payload == b"second",
        "after acknowledging `first`, a new consumer got {}",
        show(&second.payload)
    );
    rx.ack(second.tag())?;
    drop(rx);
    let mut rx = q.consumer()?;
    expect_empty(rx.as_mut(), "both messages were acknowledged")
}

fn nack_requeue_redelivers(h: &dyn Harness) -> Result<(), Failure> {
    let q = h.queue()?;
    let mut tx = q.producer()?;
    let mut rx = q.consumer()?;
    send(tx.as_mut(), b"again")?;
    let first = expect_message(rx.as_mut(), "the message to nack")?;
    ensure!(
        !first.meta.redelivered,
        "a first delivery is marked redelivered"
    );
    rx.nack(first.tag(), true)?;
    let again = expect_message(rx.as_mut(), "the requeued message")?;
    ensure!(
        again.payload == b"again",
        "after a requeue got {}",
        show(&again.payload)
    );
    ensure!(
        again.meta.redelivered,
        "a requeued delivery is not marked redelivered"
    );
    rx.ack(again.tag())?;

    send(tx.as_mut(), b"discard me")?;
    let m = expect_message(rx.as_mut(), "the message to discard")?;
    rx.nack(m.tag(), false)?;
    expect_empty(rx.as_mut(), "the message was nacked without requeue")
}

fn dropped_consumer_gives_back(h: &dyn Harness) -> Result<(), Failure> {
    let q = h.queue()?;
    let mut tx = q.producer()?;
    let mut first = q.consumer()?;
    send(tx.as_mut(), b"held")?;
    let held = expect_message(first.as_mut(), "the message to hold")?;
    ensure!(held.payload == b"held", "got {}", show(&held.payload));
    let waiting = wait_in_thread(q.consumer()?);
    let_it_block();
    drop(first);
    let (mut second, back) = joined(waiting, "the message the dropped consumer held")?;
    ensure!(back.payload == b"held", "got {}", show(&back.payload));
    ensure!(
        back.meta.redelivered,
        "the given-back delivery is not marked redelivered"
    );
    second.ack(back.tag())?;
    Ok(())
}

fn requeue_wakes_a_waiting_consumer(h: &dyn Harness) -> Result<(), Failure> {
    let q = h.queue()?;
    let mut tx = q.producer()?;
    let mut first = q.consumer()?;
    send(tx.as_mut(), b"requeued")?;
    let held = expect_message(first.as_mut(), "the message to requeue")?;
    let waiting = wait_in_thread(q.consumer()?);
    let_it_block();
    first.nack(held.tag(), true)?;
    let (mut second, back) = joined(waiting, "the requeued message")?;
    ensure!(back.payload == b"requeued", "got {}", show(&back.payload));
    ensure!(
        back.meta.redelivered,
        "the requeued delivery is not marked redelivered"
    );
    second.ack(back.tag())?;
    Ok(())
}

fn blocked_send_wakes(h: &dyn Harness) -> Result<(), Failure> {
    let capacity = h.capabilities().capacity.unwrap_or_default();
    let q = h.queue()?;
    let mut rx = q.consumer()?;
    let mut tx = q.producer()?;
    let messages = numbered("room", capacity);
    for m in &messages {
        send(tx.as_mut(), m)?;
    }
    let mut blocked = q.producer()?;
    let sender = std::thread::spawn(move || {
        let started = Instant::now();
        let sent = blocked.send_timeout(b"waited for room", PATIENCE * 3);
        (sent, started.elapsed())
    });
    let_it_block();
    let first = expect_message(rx.as_mut(), "the first message of the full queue")?;
    rx.ack(first.tag())?;
    let (sent, waited) = sender
        .join()
        .map_err(|_| Failure("the sending thread panicked".into()))?;
    sent.map_err(|e| Failure(format!("the blocked send failed after {waited:?}: {e}")))?;
    ensure!(
        waited < PATIENCE,
        "the blocked send was woken only after {waited:?}, though an ack made room"
    );
    let mut rest = messages[1..].to_vec();
    rest.push(b"waited for room".to_vec());
    expect_sequence(rx.as_mut(), &rest)
}

fn reopen_keeps_messages(h: &dyn Harness) -> Result<(), Failure> {
    let caps = h.capabilities();
    let q = h.queue()?;
    let messages = numbered("reopen", 3);
    {
        let mut rx = q.consumer()?;
        let mut tx = q.producer()?;
        for m in &messages {
            send(tx.as_mut(), m)?;
        }
        tx.flush(caps.durability)?;
        let taken = expect_message(rx.as_mut(), "the message to leave unacknowledged")?;
        ensure!(taken.payload == messages[0], "got {}", show(&taken.payload));
    }
    let mut rx = q.consumer()?;
    // Without acks the receive consumed the first message; with acks it comes back.
    let expected = if caps.ack {
        &messages[..]
    } else {
        &messages[1..]
    };
    expect_sequence(rx.as_mut(), expected)?;
    expect_empty(rx.as_mut(), "every message was received after the reopen")
}

fn survives_producer_kill(h: &dyn Harness) -> Result<(), Failure> {
    const COUNT: usize = 100;
    let q = h.queue()?;
    let address = q.address().ok_or_else(|| {
        Failure("the backend claims cross_process but its queue has no address".into())
    })?;
    spawn_flush_and_kill(h, &address, COUNT)?;
    let mut rx = q.consumer()?;
    let flushed: Vec<Vec<u8>> = (0..COUNT).map(flushed_payload).collect();
    expect_sequence(rx.as_mut(), &flushed)?;
    // What the child sent after its flush may be there or not, but only as an untorn,
    // gap-free prefix of what it sent.
    let mut j = 0;
    while let Some(m) = rx.recv_timeout(SETTLE)? {
        let want = unflushed_payload(j);
        ensure!(
            m.payload == want,
            "after the {COUNT} flushed messages expected {} (or nothing), got {}",
            show(&want),
            show(&m.payload)
        );
        rx.ack(m.tag())?;
        j += 1;
    }
    Ok(())
}

fn producers_consumers(h: &dyn Harness) -> Result<(), Failure> {
    const PRODUCERS: usize = 3;
    const CONSUMERS: usize = 3;
    const EACH: usize = 500;
    let caps = h.capabilities();
    let q = h.queue()?;
    // Consumers first: broadcast backends deliver only what is sent after they connect.
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| q.consumer())
        .collect::<Result<_, _>>()?;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| q.producer())
        .collect::<Result<_, _>>()?;
    let expected_per_consumer = match caps.delivery {
        Delivery::Broadcast => PRODUCERS * EACH,
        _ => 0,
    };
    let total_expected = match caps.delivery {
        Delivery::Broadcast => CONSUMERS * PRODUCERS * EACH,
        _ => PRODUCERS * EACH,
    };
    let received = Arc::new(AtomicUsize::new(0));
    let producers_done = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = consumers
        .into_iter()
        .map(|mut rx| {
            let received = Arc::clone(&received);
            let producers_done = Arc::clone(&producers_done);
            std::thread::spawn(move || -> Result<Vec<Vec<u8>>, Failure> {
                let mut got = Vec::new();
                let mut last_progress = Instant::now();
                // Until everything arrived, or the producers finished and nothing came for
                // a while (then something was lost, and the count below says so).
                while received.load(Ordering::SeqCst) < total_expected {
                    if let Some(m) = rx.recv_timeout(Duration::from_millis(50))? {
                        rx.ack(m.tag())?;
                        got.push(m.payload);
                        received.fetch_add(1, Ordering::SeqCst);
                        last_progress = Instant::now();
                    } else if producers_done.load(Ordering::SeqCst)
                        && last_progress.elapsed() > QUIET
                    {
                        break;
                    }
                }
                // Anything more is a duplicate.
                while let Some(m) = rx.recv_timeout(SETTLE)? {
                    rx.ack(m.tag())?;
                    got.push(m.payload);
                }
                Ok(got)
            })
        })
        .collect();
    let senders: Vec<_> = producers
        .into_iter()
        .enumerate()
        .map(|(p, mut tx)| {
            std::thread::spawn(move || -> Result<(), Failure> {
                for i in 0..EACH {
                    tx.send_timeout(format!("p{p}-{i:05}").as_bytes(), PATIENCE)?;
                }
                Ok(())
            })
        })
        .collect();
    let sent: Vec<_> = senders
        .into_iter()
        .map(|s| {
            s.join()
                .map_err(|_| Failure("a producer thread panicked".into()))
        })
        .collect();
    producers_done.store(true, Ordering::SeqCst);
    for result in sent {
        result??;
    }
    let mut all = Vec::new();
    for (c, r) in receivers.into_iter().enumerate() {
        let got = r
            .join()
            .map_err(|_| Failure("a consumer thread panicked".into()))??;
        check_producer_order(c, &got)?;
        if expected_per_consumer > 0 {
            ensure!(
                got.len() == expected_per_consumer,
                "broadcast consumer {c} received {} of {expected_per_consumer} messages",
                got.len()
            );
            let distinct: HashSet<&Vec<u8>> = got.iter().collect();
            ensure!(
                distinct.len() == got.len(),
                "broadcast consumer {c} received duplicates"
            );
        }
        all.extend(got);
    }
    if expected_per_consumer == 0 {
        let distinct: HashSet<&Vec<u8>> = all.iter().collect();
        ensure!(
            distinct.len() == all.len(),
            "{} duplicate deliveries among {} received",
            all.len() - distinct.len(),
            all.len()
        );
        ensure!(
            all.len() == total_expected,
            "{} of {total_expected} messages received (lost {})",
            all.len(),
            total_expected.saturating_sub(all.len())
        );
    }
    Ok(())
}

/// Within one consumer's stream, each producer's messages come in increasing order.
fn check_producer_order(consumer: usize, got: &[Vec<u8>]) -> Result<(), Failure> {
    let mut last: Vec<Option<String>> = Vec::new();
    for payload in got {
        let text = String::from_utf8_lossy(payload);
        let Some((p, _)) = text.split_once('-') else {
            return Err(Failure(format!(
                "consumer {consumer} got a foreign message {}",
                show(payload)
            )));
        };
        let p: usize = p.trim_start_matches('p').parse().map_err(|_| {
            Failure(format!(
                "consumer {consumer} got a foreign message {}",
                show(payload)
            ))
        })?;
        if last.len() <= p {
            last.resize(p + 1, None);
        }
        if let Some(prev) = &last[p] {
            ensure!(
                prev.as_str() < text.as_ref(),
                "consumer {consumer} got {text} after {prev}: producer {p}'s order broken"
            );
        }
        last[p] = Some(text.into_owned());
    }
    Ok(())
}

fn priority_order(h: &dyn Harness) -> Result<(), Failure> {
    let max = h.capabilities().max_priority.unwrap_or_default();
    let q = h.queue()?;
    let mut tx = q.producer()?;
    let mid = max / 2;
    let sends: [(&[u8], u8); 6] = [
        (b"low-a", 0),
        (b"mid-a", mid),
        (b"top-a", max),
        (b"low-b", 0),
        (b"top-b", max),
        (b"mid-b", mid),
    ];
    for (payload, priority) in sends {
        tx.send_with(
            payload,
            &SendOptions::new().priority(priority),
            Wait::timeout(PATIENCE),
        )?;
    }
    tx.flush(Durability::Buffered)?;
    // The consumer comes after the sends: a push-style consumer would otherwise take each
    // message as it arrives, before a higher priority one exists.
    let mut rx = q.consumer()?;
    let order: [(&[u8], u8); 6] = [
        (b"top-a", max),
        (b"top-b", max),
        (b"mid-a", mid),
        (b"mid-b", mid),
        (b"low-a", 0),
        (b"low-b", 0),
    ];
    for (i, (want, priority)) in order.into_iter().enumerate() {
        let got = expect_message(rx.as_mut(), &format!("message {i}"))?;
        ensure!(
            got.payload == want,
            "message {i}: expected {} (priority {priority}), got {}",
            show(want),
            show(&got.payload)
        );
        if let Some(p) = got.meta.priority {
            ensure!(
                p == priority,
                "{} reports priority {p}, sent with {priority}",
                show(want)
            );
        }
        rx.ack(got.tag())?;
    }
    Ok(())
}

fn ttl_expiry(h: &dyn Harness) -> Result<(), Failure> {
    let q = h.queue()?;
    let mut tx = q.producer()?;
    let mut rx = q.consumer()?;
    let wait = Wait::timeout(PATIENCE);
    tx.send_with(
        b"short-lived",
        &SendOptions::new().ttl(Duration::from_millis(100)),
        wait,
    )?;
    tx.send_with(
        b"long-lived",
        &SendOptions::new().ttl(Duration::from_secs(600)),
        wait,
    )?;
    tx.send_with(b"immortal", &SendOptions::new(), wait)?;
    std::thread::sleep(Duration::from_millis(400));
    expect_sequence(rx.as_mut(), &[b"long-lived".to_vec(), b"immortal".to_vec()])?;
    expect_empty(rx.as_mut(), "the short-lived message expired")
}

fn ack_timeout_requeues(h: &dyn Harness) -> Result<(), Failure> {
    let q = h.queue()?;
    let mut tx = q.producer()?;
    let mut holder = q.consumer()?;
    let options = SendOptions::new().ack_timeout(Duration::from_millis(200));
    tx.send_with(b"forgotten", &options, Wait::timeout(PATIENCE))?;
    let first = expect_message(holder.as_mut(), "the message to forget")?;
    ensure!(
        !first.meta.redelivered,
        "a first delivery is marked redelivered"
    );
    let started = Instant::now();
    // Another consumer, already waiting, gets it back while the holder stays alive.
    let waiting = wait_in_thread(q.consumer()?);
    let (mut rx, again) = joined(waiting, "the message after its ack timeout")?;
    let waited = started.elapsed();
    ensure!(
        again.payload == b"forgotten",
        "got {}",
        show(&again.payload)
    );
    ensure!(
        again.meta.redelivered,
        "the requeued delivery is not marked redelivered"
    );
    ensure!(
        waited >= Duration::from_millis(150),
        "redelivered after {waited:?}, before the 200 ms ack timeout"
    );
    rx.ack(again.tag())?;
    expect_empty(rx.as_mut(), "the redelivery was acknowledged")?;
    drop(holder);
    Ok(())
}

fn drop_oldest_overflow(h: &dyn Harness) -> Result<(), Failure> {
    let capacity = h.capabilities().capacity.unwrap_or_default();
    let q = h.queue()?;
    let mut tx = q.producer()?;
    let mut rx = q.consumer()?;
    let shift = SendOptions::new().overflow(Overflow::DropOldest);
    let messages = numbered("shift", capacity + 2);
    for m in &messages {
        tx.send_with(m, &shift, Wait::NoWait)
            .map_err(|e| Failure(format!("a DropOldest send into a full queue: {e}")))?;
    }
    let mut drained = Vec::new();
    while let Some(m) = rx.recv_timeout(SETTLE)? {
        drained.push(m.payload);
    }
    let expected = &messages[2..];
    ensure!(
        drained == expected,
        "after {} sends into a queue of {capacity}, received {} messages from {} to {}, expected the last {capacity}",
        messages.len(),
        drained.len(),
        drained.first().map_or("-".into(), |p| show(p)),
        drained.last().map_or("-".into(), |p| show(p))
    );
    Ok(())
}
