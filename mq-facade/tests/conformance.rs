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
    backends.push(Arc::new(conformance::UrlHarness::in_temp_dir(
        "duraqueue",
        |dir| format!("duraqueue://{}/q?size=1MiB", dir.display()),
    )));
    // frames framing: binary payloads.
    #[cfg(feature = "dmq")]
    backends.push(Arc::new(conformance::UrlHarness::in_temp_dir(
        "dmq",
        |dir| format!("dmq://{}/q?framing=frames", dir.display()),
    )));
    #[cfg(feature = "ddmq")]
    backends.push(Arc::new(conformance::UrlHarness::in_temp_dir(
        "ddmq",
        |dir| format!("ddmq://{}/root/q", dir.display()),
    )));
    #[cfg(feature = "dsmq")]
    backends.push(Arc::new(dsmq_harness::harness()));
    #[cfg(feature = "shmq")]
    backends.push(Arc::new(shmq_harness::harness()));
    #[cfg(feature = "amqp")]
    backends.extend([
        Arc::new(amqp_harness::AmqpHarness::classic()) as Arc<dyn Harness>,
        Arc::new(amqp_harness::AmqpHarness::quorum()),
        Arc::new(amqp_harness::AmqpHarness::stream()),
    ]);
    conformance::main(backends)
}

// The harnesses that need more than a temporary directory: a server, a key, a broker.
#[cfg(feature = "amqp")]
#[path = "conformance/amqp.rs"]
mod amqp_harness;
#[cfg(feature = "dsmq")]
#[path = "conformance/dsmq.rs"]
mod dsmq_harness;
#[cfg(feature = "shmq")]
#[path = "conformance/shmq.rs"]
mod shmq_harness;
