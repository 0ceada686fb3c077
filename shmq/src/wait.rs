//! Waiting: spin, then yield, then sleep or park; and stall detection.

use std::time::{Duration, Instant};

/// The tunables of waiting, from `Options`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Spin this long before parking (format N) or sleeping.
    pub(crate) spin_for: Duration,
    /// Cap of the sleep backoff (format G, and short waits in format N).
    pub(crate) max_backoff: Duration,
    /// How long the same peer state may persist before it is taken for dead.
    pub(crate) stall_timeout: Duration,
}

/// The clock. Under loom time does not pass (executions must be deterministic), so stalls
/// and deadlines never fire there.
#[cfg(not(loom))]
pub(crate) fn now() -> Instant {
    Instant::now()
}

#[cfg(loom)]
pub(crate) fn now() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// One spin-loop hint (a yield to the model checker under loom).
pub(crate) fn relax() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Bounded spin, then `sched_yield`, then exponential sleeps capped at `max_backoff`.
#[derive(Debug)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { step: 0 }
    }

    /// Waits a little longer than last time.
    pub(crate) fn pause(&mut self, max_backoff: Duration) {
        self.step = self.step.saturating_add(1);
        #[cfg(loom)]
        {
            let _ = max_backoff;
            loom::thread::yield_now();
        }
        #[cfg(not(loom))]
        if self.step <= 64 {
            for _ in 0..(1u32 << self.step.min(6)) {
                std::hint::spin_loop();
            }
        } else if self.step <= 80 {
            std::thread::yield_now();
        } else {
            let exp = (self.step - 80).min(20);
            let sleep = Duration::from_nanos(1000u64 << exp).min(max_backoff);
            std::thread::sleep(sleep);
        }
    }
}

/// Tells a peer that is slow from one that is stuck: the same value seen for longer than the
/// stall timeout.
#[derive(Debug)]
pub(crate) struct Stall {
    seen: Option<(u64, Instant)>,
}

impl Stall {
    pub(crate) fn new() -> Stall {
        Stall { seen: None }
    }

    /// Records `value`; true once it has not changed for `timeout`.
    pub(crate) fn stuck(&mut self, value: u64, timeout: Duration) -> bool {
        match self.seen {
            Some((v, since)) if v == value => now().duration_since(since) >= timeout,
            _ => {
                self.seen = Some((value, now()));
                false
            }
        }
    }

    /// Starts over (after a recovery, or progress).
    pub(crate) fn reset(&mut self) {
        self.seen = None;
    }
}

/// Whether `deadline` has passed.
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| now() >= d)
}

/// `min(deadline − now, cap)`.
pub(crate) fn park_timeout(deadline: Option<Instant>, cap: Duration) -> Option<Duration> {
    #[cfg(loom)]
    {
        let _ = (deadline, cap);
        None
    }
    #[cfg(not(loom))]
    Some(match deadline {
        Some(d) => d.saturating_duration_since(now()).min(cap),
        None => cap,
    })
}
