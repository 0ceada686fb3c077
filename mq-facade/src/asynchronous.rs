//! The async companion of the contract (feature `tokio`).
//!
//! [`AsyncProducer`] and [`AsyncConsumer`] promise exactly what [`Producer`] and
//! [`Consumer`] promise; they are object-safe (`Box<dyn AsyncProducer>`) because their
//! methods return boxed futures. Backends with a native async client implement them
//! directly; every synchronous backend gets them through [`Offload`], which runs each call on
//! tokio's blocking pool so that a blocking `recv` never stalls the runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{
    Capabilities, Consumer, Durability, Error, Message, Producer, Receipt, Result, SendOptions,
    Tag, Wait,
};

/// A boxed, sendable future, as the async traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The async sending half; same guarantees as [`Producer`].
pub trait AsyncProducer: Send {
    /// As [`Producer::send_with`].
    fn send_with(
        &mut self,
        payload: Vec<u8>,
        options: SendOptions,
        wait: Wait,
    ) -> BoxFuture<'_, Result<Receipt>>;

    /// As [`Producer::flush`].
    fn flush(&mut self, level: Durability) -> BoxFuture<'_, Result<()>>;

    /// As [`Producer::capabilities`].
    fn capabilities(&self) -> Capabilities;

    /// As [`Producer::send`].
    fn send(&mut self, payload: Vec<u8>) -> BoxFuture<'_, Result<Receipt>> {
        self.send_with(payload, SendOptions::default(), Wait::Forever)
    }
}

/// The async receiving half; same guarantees as [`Consumer`].
pub trait AsyncConsumer: Send {
    /// As [`Consumer::recv_with`].
    fn recv_with(&mut self, wait: Wait) -> BoxFuture<'_, Result<Option<Message>>>;

    /// As [`Consumer::ack`].
    fn ack(&mut self, tag: Tag) -> BoxFuture<'_, Result<()>>;

    /// As [`Consumer::nack`].
    fn nack(&mut self, tag: Tag, requeue: bool) -> BoxFuture<'_, Result<()>>;

    /// As [`Consumer::capabilities`].
    fn capabilities(&self) -> Capabilities;

    /// As [`Consumer::try_recv`].
    fn try_recv(&mut self) -> BoxFuture<'_, Result<Option<Message>>> {
        self.recv_with(Wait::NoWait)
    }

    /// As [`Consumer::recv_timeout`].
    fn recv_timeout(&mut self, timeout: Duration) -> BoxFuture<'_, Result<Option<Message>>> {
        self.recv_with(Wait::timeout(timeout))
    }
}

/// Runs a synchronous producer or consumer on tokio's blocking pool.
///
/// Cancellation (dropping a future before it completes, as `select!` and `timeout` do):
/// - a send, flush, ack or nack still finishes on its blocking thread: it is never half
///   done, and the next call on the handle waits for it;
/// - a receive waits in slices of at most 50 ms, so a dropped receive stops at the end of
///   the current slice and never blocks other calls (an `ack` meanwhile) for longer;
///   a message that arrives for a receive that was dropped is kept and returned by the next
///   receive, never lost.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> mq_facade::Result<()> {
/// use mq_facade::{AsyncConsumer, AsyncProducer, Offload};
///
/// let mut tx = Offload::producer(mq_facade::open_producer("mem://async-doc")?);
/// let mut rx = Offload::consumer(mq_facade::open_consumer("mem://async-doc")?);
/// tx.send(b"hi".to_vec()).await?;
/// let msg = rx.recv_timeout(std::time::Duration::from_secs(5)).await?.expect("sent above");
/// assert_eq!(msg.payload, b"hi");
/// rx.ack(msg.tag()).await?;
/// # Ok(())
/// # }
/// ```
pub struct Offload<T> {
    inner: Arc<Mutex<Held<T>>>,
    capabilities: Capabilities,
}

/// The wrapped handle and, for consumers, a message whose receive was cancelled.
struct Held<T> {
    handle: T,
    orphan: Option<Message>,
}

/// The longest a receive holds the handle before it checks whether it was cancelled.
const RECV_SLICE: Duration = Duration::from_millis(50);

impl<T> std::fmt::Debug for Offload<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offload")
            .field("backend", &self.capabilities.backend)
            .finish_non_exhaustive()
    }
}

impl<P: Producer + 'static> Offload<P> {
    /// Wraps a synchronous producer.
    pub fn producer(producer: P) -> Self {
        Offload::wrap(producer.capabilities(), producer)
    }
}

impl<C: Consumer + 'static> Offload<C> {
    /// Wraps a synchronous consumer.
    pub fn consumer(consumer: C) -> Self {
        Offload::wrap(consumer.capabilities(), consumer)
    }
}

impl<T: Send + 'static> Offload<T> {
    fn wrap(capabilities: Capabilities, handle: T) -> Self {
        Offload {
            inner: Arc::new(Mutex::new(Held {
                handle,
                orphan: None,
            })),
            capabilities,
        }
    }

    fn run<R: Send + 'static>(
        &self,
        call: impl FnOnce(&mut T) -> Result<R> + Send + 'static,
    ) -> BoxFuture<'static, Result<R>> {
        let inner = Arc::clone(&self.inner);
        let backend = self.capabilities.backend;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || call(&mut lock(&inner).handle))
                .await
                .map_err(|join| Error::backend(backend, format!("blocking task failed: {join}")))?
        })
    }
}

fn lock<T>(inner: &Mutex<Held<T>>) -> std::sync::MutexGuard<'_, Held<T>> {
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The blocking side of [`AsyncConsumer::recv_with`] for [`Offload`]: receive in slices,
/// stop when the caller is gone, and keep a message that arrived for nobody.
fn recv_in_slices<C: Consumer>(
    inner: &Mutex<Held<C>>,
    wait: Wait,
    reply: tokio::sync::oneshot::Sender<Result<Option<Message>>>,
) {
    let deadline = wait.deadline();
    loop {
        let mut held = lock(inner);
        if let Some(message) = held.orphan.take() {
            if let Err(Ok(Some(message))) = reply.send(Ok(Some(message))) {
                held.orphan = Some(message);
            }
            return;
        }
        if reply.is_closed() {
            return;
        }
        let slice_end = Instant::now() + RECV_SLICE;
        let slice = match deadline {
            Some(at) if at <= slice_end => Wait::Until(at),
            _ => Wait::Until(slice_end),
        };
        match held.handle.recv_with(slice) {
            Ok(Some(message)) => {
                if let Err(Ok(Some(message))) = reply.send(Ok(Some(message))) {
                    held.orphan = Some(message);
                }
                return;
            }
            Ok(None) if deadline.is_some_and(|at| Instant::now() >= at) => {
                let _ = reply.send(Ok(None));
                return;
            }
            Ok(None) => {} // Next slice, after letting other calls take the handle.
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        }
    }
}

impl<P: Producer + Send + 'static> AsyncProducer for Offload<P> {
    fn send_with(
        &mut self,
        payload: Vec<u8>,
        options: SendOptions,
        wait: Wait,
    ) -> BoxFuture<'_, Result<Receipt>> {
        self.run(move |p| p.send_with(&payload, &options, wait))
    }

    fn flush(&mut self, level: Durability) -> BoxFuture<'_, Result<()>> {
        self.run(move |p| p.flush(level))
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }
}

impl<C: Consumer + Send + 'static> AsyncConsumer for Offload<C> {
    fn recv_with(&mut self, wait: Wait) -> BoxFuture<'_, Result<Option<Message>>> {
        let inner = Arc::clone(&self.inner);
        let backend = self.capabilities.backend;
        let (reply, answer) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || recv_in_slices(&inner, wait, reply));
        Box::pin(async move {
            answer.await.map_err(|_| {
                Error::backend(backend, "the blocking receive ended without an answer")
            })?
        })
    }

    fn ack(&mut self, tag: Tag) -> BoxFuture<'_, Result<()>> {
        self.run(move |c| c.ack(tag))
    }

    fn nack(&mut self, tag: Tag, requeue: bool) -> BoxFuture<'_, Result<()>> {
        self.run(move |c| c.nack(tag, requeue))
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }
}

#[cfg(all(test, feature = "mem"))]
mod tests {
    use super::*;
    use crate::mem::{MemConfig, MemQueue};

    #[tokio::test(flavor = "current_thread")]
    async fn a_blocking_receive_does_not_stall_the_runtime() {
        let queue = MemQueue::open("async-unit", &MemConfig::default()).unwrap();
        let mut rx = Offload::consumer(queue.consumer());
        let mut tx = Offload::producer(queue.producer());
        // On a single-threaded runtime, this send can only run if the pending receive
        // waits on the blocking pool rather than on the runtime's one thread.
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(b"late".to_vec()).await
        });
        let msg = rx.recv_with(Wait::Forever).await.unwrap().unwrap();
        assert_eq!(msg.payload, b"late");
        sender.await.unwrap().unwrap();
        rx.ack(msg.tag()).await.unwrap();
        assert!(matches!(rx.ack(msg.tag()).await, Err(Error::UnknownTag(_))));
        queue.delete();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_receive_neither_loses_a_message_nor_blocks_acks() {
        let queue = MemQueue::open("async-cancel", &MemConfig::default()).unwrap();
        let mut tx = Offload::producer(queue.producer());
        let mut rx = Offload::consumer(queue.consumer());
        tx.send(b"first".to_vec()).await.unwrap();
        let first = rx.recv_with(Wait::Forever).await.unwrap().unwrap();
        // A receive that waits forever, cancelled by a timeout.
        let cancelled =
            tokio::time::timeout(Duration::from_millis(100), rx.recv_with(Wait::Forever)).await;
        assert!(cancelled.is_err(), "nothing was there to receive");
        // Sent at once, while the orphaned receive is likely still in its slice: whichever
        // receive takes it, the next one must return it.
        tx.send(b"second".to_vec()).await.unwrap();
        // The handle is not stuck behind the orphaned receive.
        tokio::time::timeout(Duration::from_secs(5), rx.ack(first.tag()))
            .await
            .expect("ack is not blocked by the cancelled receive")
            .unwrap();
        let second = rx
            .recv_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .expect("the message is not lost to the cancelled receive");
        assert_eq!(second.payload, b"second");
        rx.ack(second.tag()).await.unwrap();
        queue.delete();
    }
}
