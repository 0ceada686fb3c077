//! The two traits every backend implements.

use std::time::Duration;

use crate::{
    Capabilities, Durability, Error, Message, Meta, Receipt, Result, SendOptions, Tag, Wait,
};

/// The sending half of a queue. Object-safe: `Box<dyn Producer>` is what
/// [`open_producer`](crate::open_producer) returns.
///
/// # Guarantees
///
/// - **Order**: messages of one producer with equal priority are delivered in send order
///   (on [`Delivery::Competing`](crate::Delivery::Competing) queues, in the order consumers
///   take them). Messages of different producers interleave in an unspecified order.
/// - **Acceptance**: `Ok(Receipt)` means the queue holds the message at
///   [`Receipt::durability`]; an `Err` means it does not (except
///   [`Error::PartialBatch`], which says how many were enqueued).
/// - **Durability**: after [`flush`](Producer::flush)`(level)` returns `Ok`, every message
///   this producer sent before the call is at least at `level`. A level above
///   [`Capabilities::durability`] is [`Error::Unsupported`], never a silent downgrade.
pub trait Producer: Send {
    /// Sends one message with `options`, blocking as `wait` says while the queue is full.
    ///
    /// Errors: [`Error::Unsupported`] for an option the queue cannot honour,
    /// [`Error::TooLarge`], [`Error::Full`] (`NoWait`), [`Error::Timeout`] (deadline),
    /// [`Error::Closed`].
    fn send_with(&mut self, payload: &[u8], options: &SendOptions, wait: Wait) -> Result<Receipt>;

    /// Blocks until everything sent before is at least at `level` (see the trait docs).
    fn flush(&mut self, level: Durability) -> Result<()>;

    /// What this queue supports.
    fn capabilities(&self) -> Capabilities;

    /// Sends with default options, waiting as long as the queue is full.
    fn send(&mut self, payload: &[u8]) -> Result<Receipt> {
        self.send_with(payload, &SendOptions::default(), Wait::Forever)
    }

    /// Sends with default options, or fails with [`Error::Full`] at once.
    fn try_send(&mut self, payload: &[u8]) -> Result<Receipt> {
        self.send_with(payload, &SendOptions::default(), Wait::NoWait)
    }

    /// Sends with default options, or fails with [`Error::Timeout`] after `timeout`.
    fn send_timeout(&mut self, payload: &[u8], timeout: Duration) -> Result<Receipt> {
        self.send_with(payload, &SendOptions::default(), Wait::timeout(timeout))
    }

    /// Sends every payload in order with the same options and one deadline for the whole
    /// batch. Backends that can override this to share one sync or one round trip.
    ///
    /// If message `k` fails, messages `0..k` are enqueued and the rest are not:
    /// the error is [`Error::PartialBatch`] with `sent: k` (for `k > 0`) or the plain error
    /// of the first message (for `k == 0`).
    fn send_batch(
        &mut self,
        payloads: &[&[u8]],
        options: &SendOptions,
        wait: Wait,
    ) -> Result<Vec<Receipt>> {
        let mut receipts = Vec::with_capacity(payloads.len());
        for payload in payloads {
            match self.send_with(payload, options, wait) {
                Ok(receipt) => receipts.push(receipt),
                Err(source) if receipts.is_empty() => return Err(source),
                Err(source) => {
                    return Err(Error::PartialBatch {
                        sent: receipts.len(),
                        total: payloads.len(),
                        source: Box::new(source),
                    });
                }
            }
        }
        Ok(receipts)
    }
}

/// The receiving half of a queue. Object-safe: `Box<dyn Consumer>` is what
/// [`open_consumer`](crate::open_consumer) returns.
///
/// # Guarantees
///
/// - **Empty is not an error**: a receive that finds nothing by its deadline is `Ok(None)`.
/// - **Order**: highest priority first; within a priority, the order of
///   [`Producer`]'s guarantee. Redelivered messages go back in their original place where
///   the backend can (mem, amqp), else to the back (documented per backend).
/// - **Delivery**: with [`Capabilities::ack`], at-least-once: a message stays held until
///   [`ack`](Consumer::ack); [`nack`](Consumer::nack)`(tag, true)`, an ack timeout, or
///   dropping the consumer gives it back with [`Meta::redelivered`] set. Without acks,
///   at-most-once: a receive consumes and `ack` is a no-op.
pub trait Consumer: Send {
    /// Receives one message into `buf` (cleared first), blocking as `wait` says while the
    /// queue is empty. `Ok(None)`: nothing arrived by the deadline (never returned for
    /// `Wait::Forever`). The previous contents of `buf` are lost either way.
    fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>>;

    /// Acknowledges a delivery: it will not be delivered again.
    /// [`Error::UnknownTag`] if this consumer does not hold it.
    fn ack(&mut self, tag: Tag) -> Result<()>;

    /// Rejects a delivery: with `requeue` it is delivered again (to any consumer), else it
    /// is discarded. [`Error::Unsupported`] on backends without acknowledgements.
    fn nack(&mut self, tag: Tag, requeue: bool) -> Result<()>;

    /// What this queue supports.
    fn capabilities(&self) -> Capabilities;

    /// Receives with `wait`, into a new buffer.
    fn recv_with(&mut self, wait: Wait) -> Result<Option<Message>> {
        let mut payload = Vec::new();
        Ok(self
            .recv_into(&mut payload, wait)?
            .map(|meta| Message { payload, meta }))
    }

    /// Blocks until a message arrives (or the queue is closed).
    fn recv(&mut self) -> Result<Message> {
        self.recv_with(Wait::Forever)?.ok_or_else(|| {
            let backend = self.capabilities().backend;
            Error::backend(backend, "receive with Wait::Forever returned no message")
        })
    }

    /// Takes a message if one is ready now.
    fn try_recv(&mut self) -> Result<Option<Message>> {
        self.recv_with(Wait::NoWait)
    }

    /// Waits up to `timeout` for a message; `Ok(None)` when none came.
    fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>> {
        self.recv_with(Wait::timeout(timeout))
    }

    /// A blocking iterator: each item waits for the next message. It ends after yielding
    /// the first error (such as [`Error::Closed`]).
    fn iter(&mut self) -> Iter<'_>
    where
        Self: Sized,
    {
        Iter {
            consumer: self,
            wait: Wait::Forever,
            done: false,
        }
    }

    /// A draining iterator: yields the messages ready now, then ends.
    fn try_iter(&mut self) -> Iter<'_>
    where
        Self: Sized,
    {
        Iter {
            consumer: self,
            wait: Wait::NoWait,
            done: false,
        }
    }
}

/// The iterator of [`Consumer::iter`] and [`Consumer::try_iter`]. For a `dyn Consumer`
/// use [`Iter::new`].
pub struct Iter<'a> {
    consumer: &'a mut dyn Consumer,
    wait: Wait,
    done: bool,
}

impl<'a> Iter<'a> {
    /// An iterator over `consumer` whose every step receives with `wait`
    /// (`Wait::Forever`: blocking; `Wait::NoWait`: draining; `Until`: until the deadline).
    pub fn new(consumer: &'a mut dyn Consumer, wait: Wait) -> Self {
        Iter {
            consumer,
            wait,
            done: false,
        }
    }
}

impl Iterator for Iter<'_> {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.consumer.recv_with(self.wait) {
            Ok(Some(message)) => Some(Ok(message)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<P: Producer + ?Sized> Producer for Box<P> {
    fn send_with(&mut self, payload: &[u8], options: &SendOptions, wait: Wait) -> Result<Receipt> {
        (**self).send_with(payload, options, wait)
    }
    fn flush(&mut self, level: Durability) -> Result<()> {
        (**self).flush(level)
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn send_batch(
        &mut self,
        payloads: &[&[u8]],
        options: &SendOptions,
        wait: Wait,
    ) -> Result<Vec<Receipt>> {
        (**self).send_batch(payloads, options, wait)
    }
}

impl<C: Consumer + ?Sized> Consumer for Box<C> {
    fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        (**self).recv_into(buf, wait)
    }
    fn ack(&mut self, tag: Tag) -> Result<()> {
        (**self).ack(tag)
    }
    fn nack(&mut self, tag: Tag, requeue: bool) -> Result<()> {
        (**self).nack(tag, requeue)
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
}
