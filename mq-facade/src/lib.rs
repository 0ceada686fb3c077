//! # mq-facade: one Producer/Consumer interface over every queue of the workspace
//!
//! An application written against [`Producer`] and [`Consumer`] swaps its queue by
//! changing a URL:
//!
//! ```
//! use mq_facade::{open_consumer, open_producer, Durability};
//!
//! let mut tx = open_producer("mem://orders?capacity=1000")?;
//! let mut rx = open_consumer("mem://orders")?;
//! tx.send(b"order 1")?;
//! tx.flush(Durability::Buffered)?; // the strongest level mem reaches
//! let msg = rx.recv()?;
//! assert_eq!(msg.payload, b"order 1");
//! rx.ack(msg.tag())?;
//! # Ok::<(), mq_facade::Error>(())
//! ```
//!
//! ## The contract
//!
//! Every backend promises the same things, and says through [`Capabilities`] which of the
//! optional features it has. Nothing is silently ignored: a [`SendOptions`] field or a
//! [`Durability`] level the backend cannot honour is [`Error::Unsupported`].
//!
//! | call | blocks | on an empty / full queue | guarantee |
//! |---|---|---|---|
//! | [`Producer::send`] | while full | waits | `Ok` = the queue holds it (at [`Receipt::durability`]) |
//! | [`Producer::try_send`] | no | [`Error::Full`] | as `send` |
//! | [`Producer::send_timeout`] | until the deadline | [`Error::Timeout`] | as `send` |
//! | [`Producer::send_batch`] | one deadline for all | [`Error::PartialBatch`] says how many went | in order |
//! | [`Producer::flush`] | until reached | | everything sent before is at the level asked |
//! | [`Consumer::recv`] | until a message | waits | highest priority first, FIFO within one |
//! | [`Consumer::try_recv`] | no | `Ok(None)` | as `recv` |
//! | [`Consumer::recv_timeout`] | until the deadline | `Ok(None)` | as `recv` |
//! | [`Consumer::iter`] / [`Consumer::try_iter`] | per item / no | ends | as `recv` |
//! | [`Consumer::ack`] / [`Consumer::nack`] | no | | ack: never delivered again; nack(requeue): delivered again, marked [`Meta::redelivered`] |
//!
//! **Delivery.** On backends with [`Capabilities::ack`], delivery is at-least-once: a
//! message is held for its consumer until acknowledged, and comes back if it is nacked with
//! requeue, if its [`SendOptions::ack_timeout`] passes, or if the consumer is dropped.
//! Without acks, a receive consumes the message (at-most-once). On
//! [`Delivery::Broadcast`] backends every consumer receives every message sent after it
//! connected; on [`Delivery::Competing`] ones each message goes to one consumer.
//!
//! **Ordering.** Messages of one producer with equal priority are delivered in send order;
//! different producers interleave. Higher [`SendOptions::priority`] is delivered first.
//!
//! **Durability.** [`Producer::flush`]`(level)` returning `Ok` means everything sent before
//! it is at least at `level`: [`Durability::Written`] survives a crash of the process,
//! [`Durability::Synced`] survives power loss (fsync'd or broker-confirmed). Asking for
//! more than [`Capabilities::durability`] is an error, never a quiet downgrade.
//!
//! ## Backends
//!
//! | scheme | backend | feature |
//! |---|---|---|
//! | `mem://NAME` | [`mem`] (this crate): in-process | `mem` (default) |
//! | `dmq:///BASE?framing=frames&durability=data` | `dmq`: two alternating files and a map | `dmq` |
//! | `ddmq:///ROOT/QUEUE?durability=fsync` | `ddmq`: one file per message | `ddmq` |
//! | `dsmq://HOST:PORT/TOPIC` | `dsmq`: a topic of a dsmq WebSocket server | `dsmq` |
//! | `shmq://KEY?words=8&slots=256` | `shmq`: a System V shared-memory ring | `shmq` |
//! | `duraqueue:///PATH?size=8MiB` | `duraqueue`: an mmap'd durable ring | `duraqueue` |
//! | `amqp://USER:PASS@HOST:PORT/VHOST?queue=NAME` | RabbitMQ through `lapin` | `amqp` |
//!
//! [`open_producer`] lists every URL parameter. A backend that is not compiled in is
//! [`Error::BackendUnavailable`], naming the feature to enable.
//!
//! RabbitMQ is one URL away (feature `amqp`); the broker confirms what `flush` returns for:
//!
//! ```no_run
//! use mq_facade::{Durability, SendOptions, Wait};
//!
//! let url = "amqp://guest:guest@127.0.0.1:5672/%2f?queue=orders&max_priority=9";
//! let mut tx = mq_facade::open_producer(url)?;
//! tx.send_with(b"urgent", &SendOptions::new().priority(9), Wait::Forever)?;
//! tx.flush(Durability::Synced)?; // confirmed by the broker: on its disk
//! let mut rx = mq_facade::open_consumer(url)?;
//! let msg = rx.recv()?;
//! rx.ack(msg.tag())?;
//! # Ok::<(), mq_facade::Error>(())
//! ```
//!
//! ## Features
//!
//! - `mem` (default): the in-process backend.
//! - `dmq`, `ddmq`, `dsmq`, `shmq`, `duraqueue`: the adapter of that crate.
//! - `amqp`: the `amqp://` adapter (RabbitMQ through `lapin`, on its own tokio runtime).
//! - `cli`: the `mq` command-line tool; it turns on every backend, so it speaks every scheme.
//! - `tokio`: [`AsyncProducer`] / [`AsyncConsumer`] and the [`Offload`] adapter.
//! - `conformance`: the public conformance suite [`conformance`], for any backend.

#![forbid(unsafe_code)]

mod error;
mod open;
mod traits;
mod types;

mod adapter;
#[cfg(feature = "tokio")]
mod asynchronous;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "mem")]
pub mod mem;

pub use error::{Error, Result};
pub use open::{open_consumer, open_producer};
pub use traits::{Consumer, Iter, Producer};
pub use types::{
    Capabilities, Delivery, Durability, Message, Meta, Overflow, Receipt, SendOptions, Tag, Wait,
};

#[cfg(feature = "amqp")]
pub use adapter::amqp::Unconfirmed;
#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncConsumer, AsyncProducer, BoxFuture, Offload};
