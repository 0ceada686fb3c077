//! The crash case's child process: the test binary re-executed with environment variables
//! that make [`main`](super::main) play a producer that sends, flushes, says so, and keeps
//! sending until the parent kills it with SIGKILL.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use super::{Failure, Harness};

const ENV_BACKEND: &str = "MQ_CONFORMANCE_CHILD_BACKEND";
const ENV_ADDRESS: &str = "MQ_CONFORMANCE_CHILD_ADDRESS";
const ENV_COUNT: &str = "MQ_CONFORMANCE_CHILD_COUNT";
const READY: &str = "flushed";
/// How long the child may take to send and flush before the case gives up on it.
const CHILD_PATIENCE: Duration = Duration::from_secs(60);

/// The payload of the `i`-th message the child flushes before it reports.
pub(super) fn flushed_payload(i: usize) -> Vec<u8> {
    format!("durable-{i:06}").into_bytes()
}

/// The payload of the `j`-th message the child sends after it reported, unflushed.
pub(super) fn unflushed_payload(j: usize) -> Vec<u8> {
    format!("extra-{j:06}").into_bytes()
}

/// Plays the crash case's child when the environment says so, and returns its exit code;
/// `None` in a normal test run. A test binary that runs the suite calls this first in
/// `main` ([`main`](super::main) does).
pub fn run_if_child(harnesses: &[Arc<dyn Harness>]) -> Option<ExitCode> {
    let backend = std::env::var(ENV_BACKEND).ok()?;
    Some(match play_child(harnesses, &backend) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance child for {backend}: {e}");
            ExitCode::FAILURE
        }
    })
}

fn play_child(harnesses: &[Arc<dyn Harness>], backend: &str) -> Result<(), String> {
    let harness = harnesses
        .iter()
        .find(|h| h.name() == backend)
        .ok_or_else(|| format!("no harness named {backend}"))?;
    let address = std::env::var(ENV_ADDRESS).map_err(|e| format!("{ENV_ADDRESS}: {e}"))?;
    let count: usize = std::env::var(ENV_COUNT)
        .map_err(|e| format!("{ENV_COUNT}: {e}"))?
        .parse()
        .map_err(|e| format!("{ENV_COUNT}: {e}"))?;
    let mut producer = harness
        .open_producer_at(&address)
        .map_err(|e| e.to_string())?;
    let level = producer.capabilities().durability;
    for i in 0..count {
        producer
            .send(&flushed_payload(i))
            .map_err(|e| format!("send {i}: {e}"))?;
    }
    producer
        .flush(level)
        .map_err(|e| format!("flush({level}): {e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{READY}")
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    // Keep the producer busy so that the kill lands in the middle of a send.
    for j in 0.. {
        producer
            .send(&unflushed_payload(j))
            .map_err(|e| format!("unflushed send {j}: {e}"))?;
    }
    Ok(())
}

/// Starts the child on `address`, waits until it flushed `count` messages, lets it send a
/// little more, then kills it with SIGKILL.
pub(super) fn spawn_flush_and_kill(
    harness: &dyn Harness,
    address: &str,
    count: usize,
) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure(format!("current_exe: {e}")))?;
    let mut child = Command::new(exe)
        .env(ENV_BACKEND, harness.name())
        .env(ENV_ADDRESS, address)
        .env(ENV_COUNT, count.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("cannot start the child producer: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Failure("the child's stdout is not piped".into()))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx.recv_timeout(CHILD_PATIENCE).unwrap_or_default();
    if ready.trim() != READY {
        let _ = child.kill();
        let _ = child.wait();
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        return Err(Failure(format!(
            "the child producer did not report `{READY}` within {CHILD_PATIENCE:?} (it said {ready:?}; stderr: {})",
            stderr.trim()
        )));
    }
    // A pseudo-random pause of 0..20 ms: the kill lands at a different point each run.
    let jitter = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 20_000_000);
    std::thread::sleep(Duration::from_nanos(u64::from(jitter)));
    child
        .kill()
        .map_err(|e| Failure(format!("cannot kill the child producer: {e}")))?;
    child
        .wait()
        .map_err(|e| Failure(format!("cannot reap the child producer: {e}")))?;
    Ok(())
}
