//! Harness building blocks for backends opened by URL: most harnesses are "make a fresh URL
//! (in a temporary directory, on a new server, under a free key), open it through the facade".

use std::path::Path;

use super::{Harness, TestQueue};
use crate::{Capabilities, Consumer, Producer, Result};

/// A queue reached through [`open_producer`](crate::open_producer) and
/// [`open_consumer`](crate::open_consumer) at one URL, with a guard that keeps its resources
/// (a temporary directory, a server, a segment) alive and releases them when the queue is
/// dropped, also when the case fails.
pub struct UrlQueue {
    url: String,
    address: Option<String>,
    _guard: Box<dyn Send + Sync>,
}

impl UrlQueue {
    /// The queue at `url`, kept alive by `guard` (`()` when nothing needs releasing). Other
    /// processes find it at the same URL.
    pub fn new(url: impl Into<String>, guard: impl Send + Sync + 'static) -> Self {
        let url = url.into();
        UrlQueue {
            address: Some(url.clone()),
            url,
            _guard: Box::new(guard),
        }
    }

    /// Another process opens the queue at `address` instead (e.g. without the creation
    /// parameters), or not at all (`None`).
    #[must_use]
    pub fn with_address(mut self, address: Option<String>) -> Self {
        self.address = address;
        self
    }

    /// The URL every handle opens.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl TestQueue for UrlQueue {
    fn producer(&self) -> Result<Box<dyn Producer>> {
        crate::open_producer(&self.url)
    }

    fn consumer(&self) -> Result<Box<dyn Consumer>> {
        crate::open_consumer(&self.url)
    }

    fn address(&self) -> Option<String> {
        self.address.clone()
    }
}

type MakeQueue = dyn Fn() -> Result<UrlQueue> + Send + Sync;

/// A [`Harness`] whose queues are [`UrlQueue`]s made by a function. Its capabilities are
/// those a producer of a fresh queue reports, and the crash case's child opens the queue's
/// address with [`open_producer`](crate::open_producer).
///
/// ```
/// use mq_facade::conformance::{UrlHarness, UrlQueue};
///
/// let next = std::sync::atomic::AtomicU64::new(0);
/// let harness = UrlHarness::new("mem", move || {
///     let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///     Ok(UrlQueue::new(format!("mem://url-harness-doc-{n}"), ()))
/// });
/// # let _ = harness;
/// ```
pub struct UrlHarness {
    name: &'static str,
    make: Box<MakeQueue>,
}

impl UrlHarness {
    /// A harness named `name` (the column of the table) whose queues `make` creates.
    pub fn new(
        name: &'static str,
        make: impl Fn() -> Result<UrlQueue> + Send + Sync + 'static,
    ) -> Self {
        UrlHarness {
            name,
            make: Box::new(make),
        }
    }

    /// Queues in a fresh temporary directory each, removed with the queue: `url` gives the
    /// queue's URL from the directory's path, e.g.
    /// `|dir| format!("duraqueue://{}/q?size=1MiB", dir.display())`.
    pub fn in_temp_dir(
        name: &'static str,
        url: impl Fn(&Path) -> String + Send + Sync + 'static,
    ) -> Self {
        UrlHarness::new(name, move || {
            let dir = tempfile::tempdir().map_err(|e| {
                crate::Error::backend(
                    name,
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot make a temporary directory: {e}"),
                    ),
                )
            })?;
            Ok(UrlQueue::new(url(dir.path()), dir))
        })
    }
}

impl Harness for UrlHarness {
    fn name(&self) -> &str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        let queue = (self.make)().unwrap_or_else(|e| {
            panic!(
                "{}: cannot make a queue to ask its capabilities: {e}",
                self.name
            )
        });
        queue
            .producer()
            .unwrap_or_else(|e| panic!("{}: cannot open a producer: {e}", self.name))
            .capabilities()
    }

    fn queue(&self) -> Result<Box<dyn TestQueue>> {
        Ok(Box::new((self.make)()?))
    }

    fn open_producer_at(&self, address: &str) -> Result<Box<dyn Producer>> {
        crate::open_producer(address)
    }
}
