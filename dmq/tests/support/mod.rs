//! The runner of the test binaries that bring their own `main` (`harness = false`) because
//! they re-execute themselves as child processes.

use std::io::Write;
use std::process::ExitCode;

/// One test: a function that panics on failure.
pub(crate) struct Trial {
    pub(crate) name: &'static str,
    pub(crate) run: fn(),
}

/// Plays the child role named by `role_env` when it is set; otherwise runs `trials`, one at
/// a time unless `--test-threads` says otherwise (they start processes).
pub(crate) fn main(trials: &[Trial], role_env: &str, child_main: fn(&str) -> ExitCode) -> ExitCode {
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

/// splitmix64: a deterministic hash of a number (seeds, delays, choices).
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One line of child output, written with one `write` so a kill cannot split it.
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}
