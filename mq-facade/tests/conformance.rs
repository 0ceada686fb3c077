//! The conformance runner: every backend compiled in × every case.
//!
//! `cargo test -p mq-facade --all-features --test conformance` runs it; `cargo xtask
//! conformance` runs it too and prints the backend × case table. Trials are named
//! `backend::case`; cases a backend does not support are ignored (n/a).

use std::process::ExitCode;
use std::sync::Arc;

use mq_facade::conformance::{self, Harness, MemHarness};

fn main() -> ExitCode {
    let backends: Vec<Arc<dyn Harness>> = vec![Arc::new(MemHarness::default())];
    conformance::main(backends)
}
