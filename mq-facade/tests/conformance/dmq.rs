//! `dmq` queues: frames framing (binary payloads) in a fresh temporary directory per queue.
use mq_facade::conformance::{Harness, TestQueue};
use mq_facade::{Capabilities, Consumer, Producer, Result};

pub(crate) struct DmqHarness;

struct DmqQueue {
    url: String,
    _dir: tempfile::TempDir,
}

impl Harness for DmqHarness {
    fn name(&self) -> &str {
        "dmq"
    }

    fn capabilities(&self) -> Capabilities {
        let q = self.queue().expect("a temporary queue");
        q.producer().expect("a producer").capabilities()
    }

    fn queue(&self) -> Result<Box<dyn TestQueue>> {
        let dir = tempfile::tempdir().map_err(|e| mq_facade::Error::backend("dmq", e))?;
        let url = format!("dmq://{}/q?framing=frames", dir.path().display());
        Ok(Box::new(DmqQueue { url, _dir: dir }))
    }

    fn open_producer_at(&self, address: &str) -> Result<Box<dyn Producer>> {
        mq_facade::open_producer(address)
    }
}

impl TestQueue for DmqQueue {
    fn producer(&self) -> Result<Box<dyn Producer>> {
        mq_facade::open_producer(&self.url)
    }

    fn consumer(&self) -> Result<Box<dyn Consumer>> {
        mq_facade::open_consumer(&self.url)
    }

    fn address(&self) -> Option<String> {
        Some(self.url.clone())
    }
}
