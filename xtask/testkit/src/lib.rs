//! Test support shared by the backend crates' test suites (a dev-dependency only).
//!
//! The backends may not depend on each other, so what their tests have in common lives here:
//! - [`hostile`]: the bad-input suites' pieces: run a command bounded in time, optionally as
//!   an unprivileged user, judge its error ([`hostile::check`]), and give a test a small full
//!   file system ([`hostile::full_disk`]).
//! - [`watchdog`]: fails a sweep of many small cases naming the one that hangs.

pub mod hostile;
pub mod watchdog;
