//! `shmq` queues: a fresh SysV key per queue (64-byte slots, 256 of them: the crash case
//! needs room for 100), removed when the test queue is dropped, also when the case fails.
use mq_facade::conformance::{UrlHarness, UrlQueue};

/// Removes the queue's segment when the queue is dropped.
struct RemoveSegment(shmq::Key);

impl Drop for RemoveSegment {
    fn drop(&mut self) {
        let _ = shmq::remove(self.0);
    }
}

pub(crate) fn harness() -> UrlHarness {
    UrlHarness::new("shmq", || {
        let key = shmq::find_free_key().map_err(|e| mq_facade::Error::backend("shmq", e))?;
        let url = format!("shmq://{key}?words=8&slots=256");
        let guard = RemoveSegment(key);
        // Create it now, so that every handle (and a child process) opens the same segment.
        drop(mq_facade::open_producer(&url)?);
        Ok(UrlQueue::new(url, guard).with_address(Some(format!("shmq://{key}"))))
    })
}
