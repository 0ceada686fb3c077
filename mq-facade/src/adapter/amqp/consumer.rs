//! The consumer: a subscription with manual acks and a bounded prefetch.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use futures_lite::future::poll_once;
use lapin::Acker;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable};

use super::{
    BACKEND, EXPIRES_AT, Link, Mode, Offset, Target, block_on, close_soon, connect,
    is_connection_loss, map_lapin, now_ms, reconnect_deadline, until,
};
use crate::{Capabilities, Consumer, Error, Meta, Result, Tag, Wait};

/// Opens a consumer: connects, declares the queue, subscribes with manual acks.
pub(crate) fn consumer(target: &Target) -> Result<Box<dyn Consumer>> {
    let mut consumer = AmqpConsumer {
        target: target.clone(),
        link: None,
        deliveries: None,
        local: VecDeque::new(),
        held: HashMap::new(),
        next_tag: 0,
        last_offset: None,
    };
    // One attempt: an unreachable broker at open is reported at once.
    block_on(consumer.ensure_subscribed(Some(Instant::now())))??;
    Ok(Box::new(consumer))
}

struct AmqpConsumer {
    target: Target,
    link: Option<Link>,
    /// The subscription; `None` after a `nack` with requeue paused it (see `nack`).
    deliveries: Option<lapin::Consumer>,
    /// Deliveries the broker pushed before a pause, handed out before subscribing again.
    local: VecDeque<lapin::message::Delivery>,
    /// Deliveries handed out and not yet settled, by facade tag.
    held: HashMap<u64, Acker>,
    next_tag: u64,
    /// Streams: the offset of the last message received, to resume after a reconnect.
    last_offset: Option<i64>,
}

impl AmqpConsumer {
    /// Forgets a broken connection: the broker requeues what it held, so the tags and the
    /// prefetched deliveries of that connection are void.
    async fn drop_link(&mut self) {
        self.held.clear();
        self.local.clear();
        self.deliveries = None;
        if let Some(old) = self.link.take() {
            old.close().await;
        }
    }

    /// A live connection with an active subscription (a new one if needed, until the
    /// deadline).
    async fn ensure_subscribed(&mut self, deadline: Option<Instant>) -> Result<()> {
        if !self.link.as_ref().is_some_and(Link::alive) {
            self.drop_link().await;
            match connect(&self.target, reconnect_deadline(deadline)).await {
                Ok(link) => {
                    if let Err(e) = link
                        .channel
                        .basic_qos(self.target.prefetch, BasicQosOptions::default())
                        .await
                    {
                        link.close().await;
                        return Err(map_lapin(&self.target, "set the prefetch", e));
                    }
                    self.link = Some(link);
                }
                Err(e) => return Err(e),
            }
        }
        if self.deliveries.is_none() {
            match self.subscribe().await {
                Ok(deliveries) => self.deliveries = Some(deliveries),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn subscribe(&self) -> Result<lapin::Consumer> {
        let target = &self.target;
        let link = self.link.as_ref().expect("subscribe after connect");
        let mut args = FieldTable::default();
        if target.mode == Mode::Stream {
            let offset = match (self.last_offset, target.offset) {
                (Some(last), _) => AMQPValue::LongLongInt(last + 1),
                (None, Offset::Next) => AMQPValue::LongString("next".into()),
                (None, Offset::First) => AMQPValue::LongString("first".into()),
                (None, Offset::Last) => AMQPValue::LongString("last".into()),
            };
            args.insert("x-stream-offset".into(), offset);
        }
        link.channel
            .basic_consume(
                target.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                args,
            )
            .await
            .map_err(|e| map_lapin(target, "subscribe to the queue", e))
    }

    async fn recv_async(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        let deadline = wait.deadline();
        loop {
            if let Some(delivery) = self.local.pop_front() {
                match self.accept(delivery, buf).await? {
                    Some(meta) => return Ok(Some(meta)),
                    None => continue,
                }
            }
            self.ensure_subscribed(deadline).await?;
            let deliveries = self.deliveries.as_mut().expect("subscribed");
            let next = if wait == Wait::NoWait {
                match poll_once(deliveries.next()).await {
                    Some(next) => next,
                    None => return Ok(None),
                }
            } else {
                match until(deadline, deliveries.next()).await {
                    Ok(next) => next,
                    Err(()) => return Ok(None),
                }
            };
            match next {
                // Prefetched on a connection that has since died: its ack could not reach
                // the broker, which gives it out again; take it from the new connection.
                Some(Ok(_)) if !self.link.as_ref().is_some_and(Link::alive) => {
                    self.drop_link().await;
                }
                Some(Ok(delivery)) => {
                    if let Some(meta) = self.accept(delivery, buf).await? {
                        return Ok(Some(meta));
                    }
                    continue;
                }
                // Reconnect on the next turn; the broker requeues what we held.
                Some(Err(e)) if is_connection_loss(&e) => self.drop_link().await,
                Some(Err(e)) => return Err(map_lapin(&self.target, "receive", e)),
                None => {
                    if self.link.as_ref().is_some_and(Link::alive) {
                        return Err(Error::Closed {
                            queue: self.target.describe(),
                            reason: "the broker cancelled the subscription (queue deleted?)".into(),
                        });
                    }
                    self.drop_link().await;
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Hands `delivery` out (`Some`), or discards it when its ttl passed while it waited
    /// in the prefetch buffer (`None`): RabbitMQ expires messages only in the queue.
    async fn accept(
        &mut self,
        delivery: lapin::message::Delivery,
        buf: &mut Vec<u8>,
    ) -> Result<Option<Meta>> {
        let headers = delivery.properties.headers().as_ref();
        let expires_at = headers.and_then(|h| match h.inner().get(EXPIRES_AT) {
            Some(AMQPValue::LongLongInt(ms)) => Some(*ms),
            _ => None,
        });
        if expires_at.is_some_and(|at| at < now_ms()) {
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| map_lapin(&self.target, "discard an expired message", e))?;
            return Ok(None);
        }
        let stream_offset = headers.and_then(|h| match h.inner().get("x-stream-offset") {
            Some(AMQPValue::LongLongInt(o)) => Some(*o),
            _ => None,
        });
        self.next_tag += 1;
        let tag = self.next_tag;
        let priority = *delivery.properties.priority();
        let mut meta = Meta::new(Tag::from_raw(tag))
            .redelivered(delivery.redelivered)
            .priority(priority.filter(|_| self.target.max_priority.is_some()));
        if self.target.mode == Mode::Stream {
            if let Some(o) = stream_offset {
                self.last_offset = Some(o);
                meta = meta.seq(u64::try_from(o).ok());
            }
            // A stream's ack is flow control: credit it now, the receive consumes.
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| map_lapin(&self.target, "credit the stream", e))?;
        } else {
            self.held.insert(tag, delivery.acker);
        }
        *buf = delivery.data;
        Ok(Some(meta))
    }

    /// Pauses the subscription: cancels it and keeps what the broker had already pushed
    /// (it arrives before the cancel-ok, in order), so a requeued message goes to another
    /// consumer that is waiting rather than back into this one's prefetch buffer.
    async fn pause(&mut self) -> Result<()> {
        let (Some(link), Some(mut deliveries)) = (self.link.as_ref(), self.deliveries.take())
        else {
            return Ok(());
        };
        if let Err(e) = link
            .channel
            .basic_cancel(deliveries.tag(), BasicCancelOptions::default())
            .await
        {
            return Err(map_lapin(&self.target, "pause the subscription", e));
        }
        while let Ok(Some(next)) =
            tokio::time::timeout(Duration::from_secs(5), deliveries.next()).await
        {
            match next {
                Ok(delivery) => self.local.push_back(delivery),
                Err(_) => break,
            }
        }
        Ok(())
    }

    async fn settle_async(&mut self, tag: Tag, requeue: Option<bool>) -> Result<()> {
        let acker = self
            .held
            .remove(&tag.into_raw())
            .ok_or(Error::UnknownTag(tag))?;
        if requeue == Some(true)
            && let Err(e) = self.pause().await
        {
            self.held.insert(tag.into_raw(), acker);
            return Err(e);
        }
        let done = match requeue {
            None => acker.ack(BasicAckOptions::default()).await,
            Some(requeue) => {
                acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue,
                    })
                    .await
            }
        };
        match done {
            Ok(true) => self.settled(tag).await,
            // The channel it came on is gone: the broker has requeued it already.
            Ok(false) => Err(Error::UnknownTag(tag)),
            Err(e) if is_connection_loss(&e) => Err(Error::UnknownTag(tag)),
            Err(e) => Err(map_lapin(&self.target, "acknowledge", e)),
        }
    }

    /// Returns once the broker has handled the ack or nack just sent. AMQP 0-9-1 has no
    /// reply to `basic.ack`, so its frame can still be on its way when the call returns, and
    /// a process that dies then loses it: the broker delivers the acked message again (seen
    /// by `cargo xtask crash --kills`). A synchronous method on the same channel (`basic.qos`
    /// with the prefetch it has) is answered only after the broker has handled every frame
    /// before it, the ack included; a connection lost first means the broker requeues it.
    async fn settled(&self, tag: Tag) -> Result<()> {
        let Some(link) = self.link.as_ref() else {
            return Err(Error::UnknownTag(tag));
        };
        match link
            .channel
            .basic_qos(self.target.prefetch, BasicQosOptions::default())
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_connection_loss(&e) => Err(Error::UnknownTag(tag)),
            Err(e) => Err(map_lapin(&self.target, "confirm the acknowledgement", e)),
        }
    }

    fn settle(&mut self, tag: Tag, requeue: Option<bool>) -> Result<()> {
        if self.target.mode == Mode::Stream {
            return match requeue {
                None => Ok(()),
                Some(_) => Err(Error::unsupported(
                    BACKEND,
                    "nack on a stream (a stream cannot requeue or discard a message)",
                )),
            };
        }
        block_on(self.settle_async(tag, requeue))?
    }
}

impl Consumer for AmqpConsumer {
    fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        buf.clear();
        block_on(self.recv_async(buf, wait))?
    }

    fn ack(&mut self, tag: Tag) -> Result<()> {
        self.settle(tag, None)
    }

    fn nack(&mut self, tag: Tag, requeue: bool) -> Result<()> {
        self.settle(tag, Some(requeue))
    }

    fn capabilities(&self) -> Capabilities {
        self.target.capabilities()
    }
}

impl Drop for AmqpConsumer {
    fn drop(&mut self) {
        self.held.clear();
        self.local.clear();
        self.deliveries = None;
        if let Some(link) = self.link.take() {
            close_soon(link);
        }
    }
}
