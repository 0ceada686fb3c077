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

/// The waiting side: owned by a reader.
#[derive(Debug)]
pub(crate) struct Watch {
    inotify: Option<Inotify>,
    wake: Arc<EventFd>,
}

/// Interrupts a [`Watch::wait`] from any thread.
#[derive(Debug, Clone)]
pub struct Waker {
    wake: Arc<EventFd>,
}

impl Waker {
    /// Wakes the reader's current or next wait.
    pub fn wake(&self) {
        // Only fails if the counter would overflow, which leaves it readable anyway.
        let _ = self.wake.write(1);
    }
}

impl Watch {
    /// Watches `files` for writes.
    pub(crate) fn new(files: &[&Path]) -> std::io::Result<Watch> {
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
        Ok(Watch {
            inotify,
            wake: Arc::new(wake),
        })
    }

    /// A handle that interrupts waits.
    pub(crate) fn waker(&self) -> Waker {
        Waker {
            wake: Arc::clone(&self.wake),
        }
    }

    /// Sleeps until a data file is written, the waker rings, or `deadline` passes (None:
    /// no deadline), then empties the event queues. May return early (spuriously).
    pub(crate) fn wait(&self, deadline: Option<Instant>) {
        let cap = if self.inotify.is_some() {
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
        let timeout =
            PollTimeout::try_from(ms.min(u128::from(u16::MAX)) as u16).unwrap_or(PollTimeout::NONE);
        let mut fds = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
        if let Some(ino) = &self.inotify {
            fds.push(PollFd::new(ino.as_fd(), PollFlags::POLLIN));
        }
        // EINTR or any other failure is a spurious wake-up: the caller re-checks.
        let _ = poll(&mut fds, timeout);
        self.drain();
    }

    /// Reads every queued event (non-blocking).
    pub(crate) fn drain(&self) {
        let _ = self.wake.read();
        if let Some(ino) = &self.inotify {
            while matches!(ino.read_events(), Ok(events) if !events.is_empty()) {}
        }
    }
}
