//! The runner shared by the test binaries that re-execute themselves as child processes,
//! and a guard that removes a test's segment whatever happens.

#![allow(dead_code, unreachable_pub)]

pub mod go;

use std::io::Write;
use std::process::{Child, ExitCode};

/// One test: a function that panics on failure.
pub struct Trial {
    pub name: &'static str,
    pub run: fn(),
}

/// Plays the child role named by `role_env` when it is set; otherwise runs `trials` one at
/// a time (they start processes; they do not share the machine with each other).
pub fn main(trials: &[Trial], role_env: &str, child_main: fn(&str) -> ExitCode) -> ExitCode {
    if let Ok(role) = std::env::var(role_env) {
        return child_main(&role);
    }
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads.get_or_insert(1);
    let trials = trials
        .iter()
        .map(|t| {
            let run = t.run;
            libtest_mimic::Trial::test(t.name, move || {
                std::panic::catch_unwind(run).map_err(|panic| {
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "panicked".to_owned())
                        .into()
                })
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// One line of child output, written at once so a kill cannot split it.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// Removes the segment at its key when dropped (also when the test panics), and kills and
/// reaps the children it was given.
pub struct Cleanup {
    pub key: shmq::Key,
    pub children: Vec<Child>,
}

impl Cleanup {
    pub fn new(key: shmq::Key) -> Cleanup {
        Cleanup {
            key,
            children: Vec::new(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = shmq::remove(self.key);
    }
}

/// The message of `tag`: every word derived from the tag, so a torn copy is detectable.
pub fn message(tag: u64, bytes: usize) -> Vec<u8> {
    (0..bytes / 8)
        .flat_map(|i| (tag ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes())
        .collect()
}

/// The tag of a message built by [`message`]; panics on a torn one.
pub fn tag_of(msg: &[u8]) -> u64 {
    let tag = u64::from_le_bytes(msg[..8].try_into().unwrap());
    assert_eq!(msg, message(tag, msg.len()), "torn message (tag {tag:#x})");
    tag
}
