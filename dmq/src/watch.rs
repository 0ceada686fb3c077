//! Waiting for data: inotify on both data files plus an eventfd other threads can ring.
//!
//! Every write to a data file raises an `IN_MODIFY` event, which stays queued on the inotify
//! descriptor until read: a reader that checks the files and then waits cannot miss a write
//! that happened in between. Where inotify is unavailable (no instances left) the wait falls
//! back to a short poll; even with it, a wait never sleeps longer than [`SAFETY_NET`], so a
//! write inotify cannot see (a network file system) is still picked up.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Longest single sleep with inotify working.
const SAFETY_NET: Duration = Duration::from_millis(200);
/// Longest single sleep without inotify.
const FALLBACK: Duration = Duration::from_millis(2);

/// Waits for writes to a queue's data files, or for [`Watcher::wake`]; obtained from
/// [`Reader::watcher`](crate::Reader::watcher). Clones share one watch, so a thread can
/// wait while another holds the reader (a consumer pool around one reader).
#[derive(Debug, Clone)]
pub struct Watcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    inotify: Option<Inotify>,
    wake: EventFd,
}

impl Watcher {
    /// Watches `files` for writes.
    pub(crate) fn new(files: &[&Path]) -> std::io::Result<Watcher> {
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(std::io::Error::from)?;
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .ok()
            .and_then(|ino| {
                for f in files {
                    ino.add_watch(*f, AddWatchFlags::IN_MODIFY).ok()?;
                }
                Some(ino)
            });
        Ok(Watcher {
            inner: Arc::new(Inner { inotify, wake }),
        })
    }

    /// Wakes the current or next [`Watcher::wait`] (of any clone).
    pub fn wake(&self) {
        // Only fails if the counter would overflow, which leaves it readable anyway.
        let _ = self.inner.wake.write(1);
    }

    /// Sleeps until a data file is written, [`Watcher::wake`] is called, or `deadline`
    /// passes (None: no deadline), then empties the event queues. May return early
    /// (spuriously, or at least every 200 ms): callers re-check what they wait for.
    pub fn wait(&self, deadline: Option<Instant>) {
        let cap = if self.inner.inotify.is_some() {
            SAFETY_NET
        } else {
            FALLBACK
        };
        let mut timeout = cap;
        if let Some(at) = deadline {
            timeout = timeout.min(at.saturating_duration_since(Instant::now()));
        }
        // Round up so a wait for 0.4 ms does not become a busy loop of 0 ms polls.
        let ms = timeout.as_micros().div_ceil(1000);
        let timeout = PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX));
        let mut fds = vec![PollFd::new(self.inner.wake.as_fd(), PollFlags::POLLIN)];
        if let Some(ino) = &self.inner.inotify {
            fds.push(PollFd::new(ino.as_fd(), PollFlags::POLLIN));
        }
        // EINTR or any other failure is a spurious wake-up: the caller re-checks.
        let _ = poll(&mut fds, timeout);
        self.drain();
    }

    /// Reads every queued event (non-blocking).
    fn drain(&self) {
        let _ = self.inner.wake.read();
        if let Some(ino) = &self.inner.inotify {
            while matches!(ino.read_events(), Ok(events) if !events.is_empty()) {}
        }
    }
}
