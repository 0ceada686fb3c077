//! `cargo xtask crash`: the long crash-consistency sweeps (CI runs a short version).

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cargo;

/// Options of `cargo xtask crash`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Kill -9 rounds per crash test (CI runs 20).
    #[arg(long, default_value_t = 500)]
    rounds: u32,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    eprintln!(
        "xtask: {} kill -9 rounds per crash test, plus the image-mutation sweeps (duraqueue)",
        args.rounds
    );
    let status = cargo()
        .args([
            "test",
            "--release",
            "--package",
            "duraqueue",
            "--all-features",
            "--test",
            "crash",
        ])
        .env("DURAQUEUE_CRASH_ROUNDS", args.rounds.to_string())
        .status()
        .context("cannot run cargo")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
