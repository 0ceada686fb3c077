//! The memory the ring protocols run on: a shared segment, a heap buffer (unit and property
//! tests), or loom's modelled atomics. The protocols in `ring_n` and `ring_g` are generic
//! over [`Mem`], so the same code runs in all three.

use std::time::Duration;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, fence};

/// Word access plus the few system services the protocols need.
pub(crate) trait Mem: Send + Sync {
    /// The 64-bit word at `off`.
    fn u64(&self, off: usize) -> &AtomicU64;
    /// The 32-bit word at `off`.
    fn u32(&self, off: usize) -> &AtomicU32;
    /// Sleeps while the 32-bit word at `off` equals `expected`, at most `timeout`.
    fn futex_wait(&self, off: usize, expected: u32, timeout: Option<Duration>);
    /// Wakes every sleeper on the 32-bit word at `off`.
    fn futex_wake(&self, off: usize);
    /// Whether process `pid` exists.
    fn pid_alive(&self, pid: u32) -> bool;
    /// This process's pid.
    fn pid(&self) -> u32 {
        std::process::id()
    }
}

#[cfg(not(loom))]
impl Mem for crate::sys::Segment {
    fn u64(&self, off: usize) -> &AtomicU64 {
        crate::sys::Segment::u64(self, off)
    }
    fn u32(&self, off: usize) -> &AtomicU32 {
        crate::sys::Segment::u32(self, off)
    }
    fn futex_wait(&self, off: usize, expected: u32, timeout: Option<Duration>) {
        crate::sys::futex_wait(self.u32(off), expected, timeout);
    }
    fn futex_wake(&self, off: usize) {
        crate::sys::futex_wake(self.u32(off));
    }
    fn pid_alive(&self, pid: u32) -> bool {
        crate::sys::pid_alive(pid)
    }
    fn pid(&self) -> u32 {
        crate::sys::current_pid()
    }
}

#[cfg(loom)]
use loom::sync::{Condvar, Mutex};
#[cfg(all(test, not(loom)))]
use std::sync::{Condvar, Mutex};

/// A segment's worth of words on the heap. Each offset is used with one width only (as in
/// both formats), so 32- and 64-bit words are kept apart. The futex is modelled with a mutex
/// and a condition variable: compare-and-sleep and wake both happen under the mutex, so a
/// lost wake-up in the protocol shows up as a hang (a deadlock under loom).
#[cfg(any(test, loom))]
#[derive(Debug)]
pub(crate) struct HeapMem {
    w64: Vec<AtomicU64>,
    w32: Vec<AtomicU32>,
    futex: Mutex<()>,
    woken: Condvar,
}

#[cfg(any(test, loom))]
impl HeapMem {
    /// `size` bytes, zeroed.
    pub(crate) fn new(size: usize) -> HeapMem {
        HeapMem {
            w64: (0..size.div_ceil(8)).map(|_| AtomicU64::new(0)).collect(),
            w32: (0..size.div_ceil(4)).map(|_| AtomicU32::new(0)).collect(),
            futex: Mutex::new(()),
            woken: Condvar::new(),
        }
    }
}

#[cfg(any(test, loom))]
impl Mem for HeapMem {
    fn u64(&self, off: usize) -> &AtomicU64 {
        assert_eq!(off % 8, 0, "unaligned 64-bit access at {off}");
        &self.w64[off / 8]
    }
    fn u32(&self, off: usize) -> &AtomicU32 {
        assert_eq!(off % 4, 0, "unaligned 32-bit access at {off}");
        &self.w32[off / 4]
    }
    fn futex_wait(&self, off: usize, expected: u32, timeout: Option<Duration>) {
        let guard = self.futex.lock().unwrap_or_else(|p| p.into_inner());
        if self.u32(off).load(std::sync::atomic::Ordering::SeqCst) != expected {
            return;
        }
        #[cfg(loom)]
        {
            let _ = timeout;
            drop(self.woken.wait(guard));
        }
        #[cfg(not(loom))]
        match timeout {
            Some(t) => drop(self.woken.wait_timeout(guard, t)),
            None => drop(self.woken.wait(guard)),
        }
    }
    fn futex_wake(&self, _off: usize) {
        let _guard = self.futex.lock().unwrap_or_else(|p| p.into_inner());
        self.woken.notify_all();
    }
    fn pid_alive(&self, pid: u32) -> bool {
        pid == std::process::id()
    }
}
