//! The conformance suite: generic cases that any backend must pass (feature `conformance`).
//!
//! Cases are data ([`cases`]): each is a plain function over a [`Harness`], which makes
//! fresh isolated queues of one backend and tells its [`Capabilities`]. A case a backend
//! does not support (by its capabilities) is *n/a*, never a silent pass.
//!
//! To run the suite against your own backend, write a test target with `harness = false`:
//!
//! ```no_run
//! use std::sync::Arc;
//! use mq_facade::conformance::{self, Harness, MemHarness};
//!
//! fn main() -> std::process::ExitCode {
//!     // Put your own `impl Harness` next to (or instead of) the reference backend.
//!     let backends: Vec<Arc<dyn Harness>> = vec![Arc::new(MemHarness::default())];
//!     conformance::main(backends)
//! }
//! ```
//!
//! A runner of your own (other trial names, other checks) calls [`run_if_child`] first
//! and [`run_case`] per case.
//!
//! [`main`] names each trial `backend::case` (libtest filters and `--list` work), marks
//! n/a cases ignored, re-executes the test binary as the child process of the crash case,
//! and, when `MQ_CONFORMANCE_REPORT` names a file, writes a JSON [`Report`] there (which
//! `cargo xtask conformance` prints as a table).

mod cases;
mod child;
#[cfg(feature = "mem")]
mod mem_harness;
mod runner;
mod url_harness;

use std::fmt;

use crate::{Capabilities, Consumer, Producer};

pub use cases::cases;
pub use child::run_if_child;
#[cfg(feature = "mem")]
pub use mem_harness::MemHarness;
pub use runner::{Outcome, Report, Row, main, run_case};
pub use url_harness::{UrlHarness, UrlQueue};

/// One backend under test: makes isolated queues and says what they support.
pub trait Harness: Send + Sync {
    /// The backend's name in trial names and the table, e.g. `mem`.
    fn name(&self) -> &str;

    /// What every queue made by [`Harness::queue`] supports; cases are chosen by it.
    fn capabilities(&self) -> Capabilities;

    /// A fresh queue that no other case touches; it is cleaned up when dropped.
    fn queue(&self) -> crate::Result<Box<dyn TestQueue>>;

    /// Opens a producer on the queue at `address` (from [`TestQueue::address`]) in another
    /// process: the crash case's child calls this. Backends that are not
    /// [`Capabilities::cross_process`] keep the default, which is `Unsupported`.
    fn open_producer_at(&self, address: &str) -> crate::Result<Box<dyn Producer>> {
        Err(crate::Error::unsupported(
            self.capabilities().backend,
            format!("opening {address} from another process"),
        ))
    }
}

/// One queue made by a [`Harness`]. Every call opens a new handle on the same queue, so a
/// case can drop all handles and reopen.
pub trait TestQueue: Send + Sync {
    /// A new producer on this queue.
    fn producer(&self) -> crate::Result<Box<dyn Producer>>;

    /// A new consumer on this queue.
    fn consumer(&self) -> crate::Result<Box<dyn Consumer>>;

    /// How another process finds this queue (passed to [`Harness::open_producer_at`]);
    /// `None` when it cannot.
    fn address(&self) -> Option<String> {
        None
    }
}

/// Why a case failed: what was expected and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Self {
        Failure(format!("unexpected error: {e}"))
    }
}

/// One conformance case: a name, what it checks, which capabilities it needs, and the check.
pub struct Case {
    /// Short `snake_case` name, the second part of the trial name.
    pub name: &'static str,
    /// One line: what a backend must do to pass.
    pub summary: &'static str,
    applies: fn(&Capabilities) -> Result<(), &'static str>,
    check: fn(&dyn Harness) -> Result<(), Failure>,
}

impl Case {
    /// `Err(reason)` when the case is n/a for a backend with `caps`.
    pub fn applies(&self, caps: &Capabilities) -> Result<(), &'static str> {
        (self.applies)(caps)
    }

    /// Runs the check (without asking [`Case::applies`] first).
    pub fn check(&self, harness: &dyn Harness) -> Result<(), Failure> {
        (self.check)(harness)
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
