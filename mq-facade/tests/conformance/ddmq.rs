//! `ddmq` queues: a fresh root directory per queue, holding the queue `q`.
use mq_facade::conformance::{Harness, TestQueue};
use mq_facade::{Capabilities, Consumer, Producer, Result};

pub(crate) struct DdmqHarness;

struct DdmqQueue {
    url: String,
    _dir: tempfile::TempDir,
}

impl Harness for DdmqHarness {
    fn name(&self) -> &str {
        "ddmq"
    }

    fn capabilities(&self) -> Capabilities {
        let q = self.queue().expect("a temporary queue");
        q.producer().expect("a producer").capabilities()
    }

    fn queue(&self) -> Result<Box<dyn TestQueue>> {
        let dir = tempfile::tempdir().map_err(|e| mq_facade::Error::backend("ddmq", e))?;
        let url = format!("ddmq://{}/root/q", dir.path().display());
        Ok(Box::new(DdmqQueue { url, _dir: dir }))
    }

    fn open_producer_at(&self, address: &str) -> Result<Box<dyn Producer>> {
        mq_facade::open_producer(address)
    }
}

impl TestQueue for DdmqQueue {
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
