//! A watchdog for sweeps of many small cases: if one case runs longer than its bound, the
//! whole test process fails naming that case, instead of hanging.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A watchdog: if one case runs longer than the bound, the test process fails naming it.
pub struct Watchdog {
    case: Arc<Mutex<String>>,
    started: Arc<AtomicU64>,
    epoch: Instant,
}

impl Default for Watchdog {
    fn default() -> Self {
        Self::new()
    }
}

impl Watchdog {
    /// How long one case may run.
    pub const BOUND: Duration = Duration::from_secs(20);

    /// Starts the watchdog thread; it stops when the watchdog is dropped.
    pub fn new() -> Watchdog {
        let case = Arc::new(Mutex::new(String::new()));
        let started = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let (c, s) = (Arc::clone(&case), Arc::clone(&started));
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let started = s.load(Ordering::Relaxed);
                if started == u64::MAX {
                    return;
                }
                let since = (epoch.elapsed().as_millis() as u64).saturating_sub(started);
                if since > Self::BOUND.as_millis() as u64 {
                    let case = c.lock().map(|c| c.clone()).unwrap_or_default();
                    eprintln!("hang: `{case}` ran for more than {:?}", Self::BOUND);
                    std::process::exit(101);
                }
            }
        });
        Watchdog {
            case,
            started,
            epoch,
        }
    }

    /// Starts the bound again for the case `what`.
    pub fn case(&self, what: &str) {
        if let Ok(mut c) = self.case.lock() {
            what.clone_into(&mut c);
        }
        self.started
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.started.store(u64::MAX, Ordering::Relaxed);
    }
}
