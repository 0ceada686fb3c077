//! Test hooks inside the critical windows (feature `test-hooks`).
//!
//! With the feature on, a process whose environment has `SHMQ_TEST_HOOK=<name>` stops at the
//! named point: it prints `SHMQ_HOOK <name>` on stdout and sleeps until it is killed. Crash
//! tests use that to `kill -9` a peer exactly inside a window. Without the feature the hooks
//! compile to nothing.

/// Stops here if this point is the one named in `SHMQ_TEST_HOOK`.
#[cfg(feature = "test-hooks")]
pub(crate) fn hit(name: &'static str) {
    use std::io::Write;
    use std::sync::OnceLock;
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var("SHMQ_TEST_HOOK").ok());
    if wanted.as_deref() == Some(name) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "SHMQ_HOOK {name}");
        let _ = out.flush();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Does nothing (feature `test-hooks` is off).
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub(crate) fn hit(_name: &'static str) {}
