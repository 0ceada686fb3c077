//! The conformance runner: every backend compiled in × every case.
//!
//! `cargo test -p mq-facade --all-features --test conformance` runs it; `cargo xtask
//! conformance` runs it too and prints the backend × case table. Trials are named
//! `backend::case`; cases a backend does not support are ignored (n/a).

use std::process::ExitCode;
use std::sync::Arc;

use mq_facade::conformance::{self, Harness, MemHarness};

fn main() -> ExitCode {
    let mut backends: Vec<Arc<dyn Harness>> = vec![Arc::new(MemHarness::default())];
    #[cfg(feature = "duraqueue")]
    backends.push(Arc::new(duraqueue_harness::DuraHarness));
    #[cfg(feature = "dsmq")]
    backends.push(Arc::new(dsmq_harness::DsmqHarness));
    conformance::main(backends)
}

// One module per backend: its harness makes fresh queues (temp dirs, servers, keys) for each case.
#[cfg(feature = "dsmq")]
#[path = "conformance/dsmq.rs"]
mod dsmq_harness;
#[cfg(feature = "duraqueue")]
#[path = "conformance/duraqueue.rs"]
mod duraqueue_harness;
