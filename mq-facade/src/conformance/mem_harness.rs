//! The reference harness: `mem` queues shaped like a small broker queue.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Harness, TestQueue};
use crate::mem::{MemConfig, MemQueue};
use crate::{Capabilities, Consumer, Producer, Result};

/// Runs the suite on [`mem`](crate::mem) queues of 1,000 messages of at most 64 KiB with
/// priorities 0..=9 (as an AMQP queue declared with `x-max-priority: 9`).
#[derive(Debug, Clone)]
pub struct MemHarness {
    config: MemConfig,
}

impl Default for MemHarness {
    fn default() -> Self {
        MemHarness {
            config: MemConfig::default()
                .capacity(1000)
                .max_message_size(64 << 10)
                .max_priority(9),
        }
    }
}

impl MemHarness {
    /// A harness whose queues use `config`.
    pub fn with_config(config: MemConfig) -> Self {
        MemHarness { config }
    }
}

struct MemTestQueue(MemQueue);

impl Harness for MemHarness {
    fn name(&self) -> &str {
        "mem"
    }

    fn capabilities(&self) -> Capabilities {
        self.config.capabilities()
    }

    fn queue(&self) -> Result<Box<dyn TestQueue>> {
        Ok(Box::new(MemTestQueue(MemQueue::open(
            &unique_name(),
            &self.config,
        )?)))
    }
}

fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "conformance-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestQueue for MemTestQueue {
    fn producer(&self) -> Result<Box<dyn Producer>> {
        Ok(Box::new(self.0.producer()))
    }

    fn consumer(&self) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(self.0.consumer()))
    }
}

impl Drop for MemTestQueue {
    fn drop(&mut self) {
        self.0.delete();
    }
}
