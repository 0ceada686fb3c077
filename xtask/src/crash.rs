//! `cargo xtask crash`: the long crash-consistency sweeps of the durable backends (CI runs a
//! short version of each as an ordinary test).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cargo;

/// Options of `cargo xtask crash`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Kill -9 rounds per crash test (CI runs a few per backend).
    #[arg(long, default_value_t = 500)]
    rounds: u32,
    /// Only this backend (duraqueue, dmq or ddmq).
    #[arg(long, value_name = "NAME")]
    only: Option<String>,
}

/// One backend's sweep: its package, its crash test and the variable that sets the rounds.
struct Sweep {
    package: &'static str,
    features: &'static [&'static str],
    rounds_var: &'static str,
}

const SWEEPS: &[Sweep] = &[
    Sweep {
        package: "duraqueue",
        features: &["--all-features"],
        rounds_var: "DURAQUEUE_CRASH_ROUNDS",
    },
    Sweep {
        package: "dmq",
        features: &["--all-features"],
        rounds_var: "DMQ_CRASH_ROUNDS",
    },
    Sweep {
        package: "ddmq",
        features: &["--all-features"],
        rounds_var: "DDMQ_CRASH_ROUNDS",
    },
];

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    let sweeps: Vec<&Sweep> = SWEEPS
        .iter()
        .filter(|s| args.only.as_deref().is_none_or(|only| only == s.package))
        .collect();
    if sweeps.is_empty() {
        let names: Vec<&str> = SWEEPS.iter().map(|s| s.package).collect();
        anyhow::bail!(
            "unknown backend `{}` (crash sweeps exist for {})",
            args.only.as_deref().unwrap_or_default(),
            names.join(", ")
        );
    }
    let mut results = Vec::new();
    for (i, sweep) in sweeps.iter().enumerate() {
        eprintln!(
            "\n==> xtask crash [{}/{}] {}: {} kill -9 rounds per crash test \
             ({}={} cargo test --release -p {} --test crash)",
            i + 1,
            sweeps.len(),
            sweep.package,
            args.rounds,
            sweep.rounds_var,
            args.rounds,
            sweep.package
        );
        let started = Instant::now();
        let status = cargo()
            .args(["test", "--release", "--package", sweep.package])
            .args(sweep.features)
            .args(["--test", "crash"])
            .env(sweep.rounds_var, args.rounds.to_string())
            .status()
            .context("cannot run cargo")?;
        results.push((sweep.package, status.success(), started.elapsed()));
    }
    eprintln!(
        "\n==> xtask crash summary ({} rounds per test)",
        args.rounds
    );
    for (package, ok, took) in &results {
        eprintln!(
            "  {:<4} {:>7.1} s  {package}",
            if *ok { "ok" } else { "FAIL" },
            took.as_secs_f64()
        );
    }
    Ok(if results.iter().all(|(_, ok, _)| *ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
