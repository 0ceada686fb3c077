//! `amqp` queues on a private RabbitMQ node that this test process starts once (on first
//! use, on free loopback ports) and that stops when the process exits. Every case gets
//! a fresh queue name. Three harnesses: a classic queue with priorities 0..=9 (`amqp`),
//! a quorum queue (`amqp-quorum`) and a stream (`amqp-stream`, broadcast from `next`).
use std::sync::atomic::{AtomicU64, Ordering};

use mq_facade::conformance::{Harness, TestQueue, UrlQueue};
use mq_facade::{Capabilities, Delivery, Durability, Producer, Result};

#[path = "../support/rabbitmq.rs"]
mod rabbitmq;

pub(crate) struct AmqpHarness {
    name: &'static str,
    /// Query parameters after `queue=NAME`.
    extra: &'static str,
}

impl AmqpHarness {
    pub(crate) fn classic() -> Self {
        AmqpHarness {
            name: "amqp",
            extra: "max_priority=9",
        }
    }

    pub(crate) fn quorum() -> Self {
        AmqpHarness {
            name: "amqp-quorum",
            extra: "mode=quorum",
        }
    }

    pub(crate) fn stream() -> Self {
        AmqpHarness {
            name: "amqp-stream",
            extra: "mode=stream&max_age=1h",
        }
    }

    fn url(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let queue = format!(
            "conformance-{}-{}",
            self.name,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        rabbitmq::Broker::shared().url(&queue, self.extra)
    }
}

impl Harness for AmqpHarness {
    fn name(&self) -> &str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        // Stated here, not asked of a broker, so that listing or filtering the trials does
        // not boot RabbitMQ; `capabilities_agree` checks them against real handles.
        let mut caps = Capabilities::minimal("amqp");
        caps.max_message_size = Some(128 << 20);
        caps.durability = Durability::Synced;
        caps.survives_reopen = true;
        caps.cross_process = true;
        if self.extra.contains("mode=stream") {
            caps.delivery = Delivery::Broadcast;
        } else {
            caps.ack = true;
            caps.ttl = true;
            caps.max_priority = self.extra.contains("max_priority=9").then_some(9);
        }
        caps
    }

    fn queue(&self) -> Result<Box<dyn TestQueue>> {
        Ok(Box::new(UrlQueue::new(self.url(), ())))
    }

    fn open_producer_at(&self, address: &str) -> Result<Box<dyn Producer>> {
        mq_facade::open_producer(address)
    }
}
