//! `dsmq` queues: a fresh in-process dsmq server on a free loopback port per queue, one
//! topic on it, `encoding=base64` so that any bytes round-trip (text is the default).
use std::sync::OnceLock;

use mq_facade::conformance::{Harness, TestQueue};
use mq_facade::{Capabilities, Consumer, Producer, Result};

pub(crate) struct DsmqHarness;

/// The runtime the servers run on, shared by every queue of the run.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the dsmq servers")
    })
}

struct DsmqQueue {
    url: String,
    handle: dsmq::ServerHandle,
}

impl Harness for DsmqHarness {
    fn name(&self) -> &str {
        "dsmq"
    }

    fn capabilities(&self) -> Capabilities {
        let q = self.queue().expect("a dsmq server");
        q.producer().expect("a producer").capabilities()
    }

    fn queue(&self) -> Result<Box<dyn TestQueue>> {
        let server = runtime()
            .block_on(dsmq::Server::bind(
                "127.0.0.1:0",
                dsmq::ServerConfig::default(),
            ))
            .map_err(|e| mq_facade::Error::backend("dsmq", e))?;
        let url = format!(
            "dsmq://127.0.0.1:{}/conformance?encoding=base64",
            server.local_addr().port()
        );
        let handle = server.handle();
        runtime().spawn(server.run());
        Ok(Box::new(DsmqQueue { url, handle }))
    }

    fn open_producer_at(&self, address: &str) -> Result<Box<dyn Producer>> {
        mq_facade::open_producer(address)
    }
}

impl TestQueue for DsmqQueue {
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

impl Drop for DsmqQueue {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}
