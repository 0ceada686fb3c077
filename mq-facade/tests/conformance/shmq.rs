//! `shmq` queues: a fresh SysV key per queue (64-byte slots, 256 of them: the crash case needs room for 100), removed when the
//! test queue is dropped, also when the case fails.
use mq_facade::conformance::{Harness, TestQueue};
use mq_facade::{Capabilities, Consumer, Producer, Result};

pub(crate) struct ShmqHarness;

struct ShmqQueue {
    key: shmq::Key,
    url: String,
}

impl Harness for ShmqHarness {
    fn name(&self) -> &str {
        "shmq"
    }

    fn capabilities(&self) -> Capabilities {
        let q = self.queue().expect("a fresh queue");
        q.producer().expect("a producer").capabilities()
    }

    fn queue(&self) -> Result<Box<dyn TestQueue>> {
        let key = shmq::find_free_key().map_err(|e| mq_facade::Error::backend("shmq", e))?;
        let url = format!("shmq://{key}?words=8&slots=256");
        // Create it now, so that every handle (and a child process) opens the same segment.
        drop(mq_facade::open_producer(&url)?);
        Ok(Box::new(ShmqQueue { key, url }))
    }

    fn open_producer_at(&self, address: &str) -> Result<Box<dyn Producer>> {
        mq_facade::open_producer(address)
    }
}

impl TestQueue for ShmqQueue {
    fn producer(&self) -> Result<Box<dyn Producer>> {
        mq_facade::open_producer(&self.url)
    }

    fn consumer(&self) -> Result<Box<dyn Consumer>> {
        mq_facade::open_consumer(&self.url)
    }

    fn address(&self) -> Option<String> {
        Some(format!("shmq://{}", self.key))
    }
}

impl Drop for ShmqQueue {
    fn drop(&mut self) {
        let _ = shmq::remove(self.key);
    }
}
