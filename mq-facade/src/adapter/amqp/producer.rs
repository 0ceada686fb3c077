//! The producer: publishes in confirm mode, flush waits for the confirms.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_lite::future::poll_once;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, PublisherConfirm};

use super::{
    BACKEND, CONFIRM_PATIENCE, EXPIRES_AT, Link, Target, Unconfirmed, block_on, close_soon,
    connect, is_connection_loss, map_lapin, now_ms, reconnect_deadline, until,
};
use crate::{Capabilities, Durability, Error, Producer, Receipt, Result, SendOptions, Wait};

/// Opens a producer: connects, declares the queue, turns on publisher confirms.
pub(crate) fn producer(target: &Target) -> Result<Box<dyn Producer>> {
    let mut producer = AmqpProducer {
        target: target.clone(),
        link: None,
        pending: VecDeque::new(),
        failed: Vec::new(),
        failure: None,
        next_seq: 0,
    };
    // One attempt: an unreachable broker at open is reported at once.
    block_on(producer.ensure_link(Some(Instant::now())))??;
    Ok(Box::new(producer))
}

struct AmqpProducer {
    target: Target,
    link: Option<Link>,
    /// Publishes waiting for their confirm, oldest first.
    pending: VecDeque<(u64, PublisherConfirm)>,
    /// Sequence numbers of messages known not to be confirmed, for the next flush.
    failed: Vec<u64>,
    /// Why the first of `failed` failed.
    failure: Option<String>,
    next_seq: u64,
}

impl AmqpProducer {
    /// A live confirm-mode channel: the current one, or a new connection (until the
    /// deadline). Publishes still waiting on a broken connection are counted as failed.
    async fn ensure_link(&mut self, deadline: Option<Instant>) -> Result<()> {
        if self.link.as_ref().is_some_and(Link::alive) {
            return Ok(());
        }
        if let Some(old) = self.link.take() {
            self.settle_ready().await;
            self.fail_pending("the connection to the broker was lost before it confirmed");
            old.close().await;
        }
        let link = match connect(&self.target, reconnect_deadline(deadline)).await {
            Ok(link) => link,
            Err(e) => return Err(e),
        };
        if let Err(e) = link
            .channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
        {
            return Err(map_lapin(&self.target, "turn on publisher confirms", e));
        }
        self.link = Some(link);
        Ok(())
    }

    fn record_failure(&mut self, seq: u64, reason: String) {
        self.failed.push(seq);
        self.failure.get_or_insert(reason);
    }

    fn fail_pending(&mut self, reason: &str) {
        while let Some((seq, _)) = self.pending.pop_front() {
            self.record_failure(seq, reason.to_owned());
        }
    }

    fn judge(&mut self, seq: u64, outcome: lapin::Result<Confirmation>) {
        match outcome {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {}
            Ok(Confirmation::Ack(Some(returned))) => self.record_failure(
                seq,
                format!(
                    "returned by the broker: {} {}",
                    returned.reply_code, returned.reply_text
                ),
            ),
            Ok(Confirmation::Nack(_)) => {
                self.record_failure(seq, "nacked by the broker (it could not store it)".into());
            }
            Err(e) => self.record_failure(seq, format!("no confirm: {e}")),
        }
    }

    /// Takes the confirms that already arrived from the front of `pending`.
    async fn settle_ready(&mut self) {
        while let Some((seq, confirm)) = self.pending.front_mut() {
            let seq = *seq;
            match poll_once(confirm).await {
                Some(outcome) => {
                    self.pending.pop_front();
                    self.judge(seq, outcome);
                }
                None => break,
            }
        }
    }

    /// Waits for the oldest pending confirm, until `deadline`; `false` when it passed.
    async fn settle_oldest(&mut self, deadline: Option<Instant>) -> bool {
        let Some((seq, confirm)) = self.pending.front_mut() else {
            return true;
        };
        let seq = *seq;
        match until(deadline, confirm).await {
            Ok(outcome) => {
                self.pending.pop_front();
                self.judge(seq, outcome);
                true
            }
            Err(()) => false,
        }
    }

    async fn send_async(
        &mut self,
        payload: &[u8],
        options: &SendOptions,
        wait: Wait,
    ) -> Result<Receipt> {
        let deadline = wait.deadline();
        self.ensure_link(deadline).await?;
        self.settle_ready().await;
        while self.pending.len() >= self.target.in_flight {
            if !self.settle_oldest(deadline).await {
                return Err(Error::Timeout {
                    what: format!(
                        "the broker to confirm earlier messages ({} in flight) on {}",
                        self.pending.len(),
                        self.target.describe()
                    )
                    .into(),
                });
            }
        }
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if let Some(p) = options.priority {
            properties = properties.with_priority(p);
        }
        if let Some(ttl) = options.ttl {
            // Whole milliseconds, at least 1: a ttl of 0 would mean "deliver now or drop".
            let ms = ttl.as_millis().max(1);
            properties = properties.with_expiration(ms.to_string().into());
            // The broker expires messages only while they wait in the queue; the consumer
            // drops one that expired in its prefetch buffer, by this header.
            let at = now_ms().saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
            let mut headers = FieldTable::default();
            headers.insert(EXPIRES_AT.into(), AMQPValue::LongLongInt(at));
            properties = properties.with_headers(headers);
        }
        let link = self.link.as_ref().expect("ensure_link leaves a link");
        let confirm = match publish(link, &self.target.queue, payload, &properties).await {
            Ok(confirm) => confirm,
            Err(e) if is_connection_loss(&e) => {
                // Not published: reconnect (failing what was pending) and try once more.
                self.ensure_link(deadline).await?;
                let link = self.link.as_ref().expect("ensure_link leaves a link");
                publish(link, &self.target.queue, payload, &properties)
                    .await
                    .map_err(|e| map_lapin(&self.target, "publish", e))?
            }
            Err(e) => return Err(map_lapin(&self.target, "publish", e)),
        };
        self.next_seq += 1;
        let seq = self.next_seq;
        self.pending.push_back((seq, confirm));
        Ok(Receipt::new(Some(seq), Durability::Buffered))
    }

    async fn flush_async(&mut self) -> Result<()> {
        let patience = Instant::now() + CONFIRM_PATIENCE;
        while !self.pending.is_empty() {
            // In slices, so that a connection that died is noticed without waiting for
            // confirms that will never come.
            let slice = (Instant::now() + Duration::from_millis(200)).min(patience);
            if self.settle_oldest(Some(slice)).await {
                continue;
            }
            if !self.link.as_ref().is_some_and(Link::alive) {
                self.settle_ready().await;
                self.fail_pending("the connection to the broker was lost before it confirmed");
            } else if Instant::now() >= patience {
                self.fail_pending("no confirm from the broker within 60 s");
            }
        }
        if self.failed.is_empty() {
            return Ok(());
        }
        let seqs = std::mem::take(&mut self.failed);
        let reason = self.failure.take().unwrap_or_default();
        Err(Error::backend(BACKEND, Unconfirmed { seqs, reason }))
    }
}

/// Publishes one persistent, mandatory message to `queue` through the default exchange.
async fn publish(
    link: &Link,
    queue: &str,
    payload: &[u8],
    properties: &BasicProperties,
) -> lapin::Result<PublisherConfirm> {
    link.channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            payload,
            properties.clone(),
        )
        .await
}

impl Producer for AmqpProducer {
    fn send_with(&mut self, payload: &[u8], options: &SendOptions, wait: Wait) -> Result<Receipt> {
        let caps = self.target.capabilities();
        options.check(&caps, BACKEND)?;
        caps.check_size(payload.len())?;
        block_on(self.send_async(payload, options, wait))?
    }

    fn flush(&mut self, level: Durability) -> Result<()> {
        self.target.capabilities().check_flush(level)?;
        if level == Durability::Buffered {
            return Ok(());
        }
        block_on(self.flush_async())?
    }

    fn capabilities(&self) -> Capabilities {
        self.target.capabilities()
    }
}

impl Drop for AmqpProducer {
    /// Waits (up to [`DROP_PATIENCE`]) for the confirms of what was sent, so that the
    /// broker has every message before the connection closes; failures are not
    /// reported here: call `flush` to learn of them.
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let _ = block_on(async {
                let _ = tokio::time::timeout(DROP_PATIENCE, async {
                    while self.settle_oldest(None).await && !self.pending.is_empty() {}
                })
                .await;
            });
        }
        if let Some(link) = self.link.take() {
            close_soon(link);
        }
    }
}

/// How long dropping a producer waits for the confirms of what it sent.
const DROP_PATIENCE: Duration = Duration::from_secs(10);
