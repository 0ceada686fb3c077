//! The workspace's automation, run as `cargo xtask <command>`.
//!
//! - `conformance [--backend NAME] [--json]`: runs the conformance suite and prints the
//!   backend × case table (pass / FAIL / n/a); exits non-zero on any failure.
//! - `ci`: the whole test gate, as CI runs it.
//! - `bench [--quick] [--only NAME[,NAME]] [--output PATH]`: every bench of the workspace,
//!   against floors and originals measured in the same run, written to `docs/bench.md`.
//! - `crash [--kills N] [--seed S] [--report]`: the shared kill -9 harness of every durable
//!   backend (docs/reliability.md); `crash --sweeps [--rounds N]`: the crates' own sweeps.
//! - `fuzz [--secs N] [--only TARGET]`: every cargo-fuzz target of `xtask/fuzz/` for N s.

#![forbid(unsafe_code)]

mod bench;
mod ci;
mod conformance;
mod crash;
mod fuzz;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Automation for the queue workspace",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every backend through the conformance suite and print the backend × case table.
    Conformance(conformance::Args),
    /// Run the whole test gate: fmt check, clippy -D warnings, all tests with all features,
    /// the quick benches, the feature-off clippy and tests, docs with warnings denied, and the
    /// conformance table.
    Ci,
    /// Kill -9 producer and consumer processes of every durable backend N times, then audit
    /// (lost, duplicated, torn, order); `--sweeps`: the backend crates' own crash sweeps.
    Crash(crash::Args),
    /// Run every bench (each backend against the machine's floors and its original or peers,
    /// measured in the same run), write docs/bench.md with its SVG charts.
    Bench(bench::Args),
    /// Run every fuzz target of xtask/fuzz (cargo-fuzz, installed when missing) for N
    /// seconds each and print a table; fails on a finding, naming its input.
    Fuzz(fuzz::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Conformance(args) => conformance::run(&args),
        Command::Ci => ci::run(),
        Command::Bench(args) => bench::run(&args),
        Command::Crash(args) => crash::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), PathBuf::from)
}

/// The cargo that runs us (the same toolchain), or `cargo` from PATH.
fn cargo() -> std::process::Command {
    let mut command =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}
