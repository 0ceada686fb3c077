//! `dsmq` queues: a fresh in-process dsmq server on a free loopback port per queue, one
//! topic on it, `encoding=base64` so that any bytes round-trip (text is the default).
use std::sync::OnceLock;

use mq_facade::conformance::{UrlHarness, UrlQueue};

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

/// Shuts the queue's server down when the queue is dropped.
struct StopServer(dsmq::ServerHandle);

impl Drop for StopServer {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

pub(crate) fn harness() -> UrlHarness {
    UrlHarness::new("dsmq", || {
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
        let stop = StopServer(server.handle());
        runtime().spawn(server.run());
        Ok(UrlQueue::new(url, stop))
    })
}
