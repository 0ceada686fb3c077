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
use std::time::Duration;

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
/// If a future is dropped before it completes, the call still finishes on its blocking
/// thread (a send is not half-done); the next call waits for it.
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
pub struct Offload<T: ?Sized> {
    inner: Arc<Mutex<T>>,
    capabilities: Capabilities,
}

impl<T: ?Sized> std::fmt::Debug for Offload<T> {
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
    fn wrap(capabilities: Capabilities, inner: T) -> Self {
        Offload {
            inner: Arc::new(Mutex::new(inner)),
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
            tokio::task::spawn_blocking(move || {
                let mut guard = inner
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                call(&mut guard)
            })
            .await
            .map_err(|join| Error::backend(backend, format!("blocking task failed: {join}")))?
        })
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
        self.run(move |c| c.recv_with(wait))
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
}
