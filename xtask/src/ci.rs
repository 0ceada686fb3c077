//! `cargo xtask ci`: the whole test gate, step by step, with a summary.

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cargo;

/// One step of the gate: a name and the command.
struct Step {
    name: &'static str,
    command: Command,
}

fn step(name: &'static str, args: &[&str]) -> Step {
    let mut command = cargo();
    command.args(args);
    Step { name, command }
}

fn steps() -> Vec<Step> {
    let mut doc = step(
        "docs build without warnings",
        &["doc", "--workspace", "--all-features", "--no-deps"],
    );
    doc.command.env("RUSTDOCFLAGS", "-D warnings");
    // shmq's loom models: a build of their own (`--cfg loom` swaps the atomics), in a target
    // directory of their own so the normal build stays cached.
    let mut loom = step(
        "loom models (shmq)",
        &["test", "--package", "shmq", "--lib", "--release"],
    );
    loom.command.env("RUSTFLAGS", "--cfg loom").env(
        "CARGO_TARGET_DIR",
        crate::workspace_root().join("target/loom"),
    );
    vec![
        step("format", &["fmt", "--all", "--check"]),
        step(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
        ),
        step(
            "tests, all features",
            &["test", "--workspace", "--all-features", "--no-fail-fast"],
        ),
        // Every bench in its quick mode, so none rots; the report goes under target/, never
        // over the committed docs/bench.md.
        step(
            "benchmarks, quick",
            &[
                "xtask",
                "bench",
                "--quick",
                "--output",
                "target/bench/quick.md",
            ],
        ),
        // The paths that only exist with a feature off (e.g. "backend not compiled in").
        step(
            "clippy, mq-facade without default features",
            &[
                "clippy",
                "--package",
                "mq-facade",
                "--no-default-features",
                "--",
                "-D",
                "warnings",
            ],
        ),
        step(
            "tests, mq-facade without default features",
            &[
                "test",
                "--package",
                "mq-facade",
                "--no-default-features",
                "--lib",
            ],
        ),
        doc,
        loom,
        step("conformance table", &["xtask", "conformance"]),
        // The shared kill -9 harness, short: 20 kills per durable backend (amqp included) on
        // the child binary the test step built.
        step(
            "kill -9 harness, 20 kills per backend",
            &["xtask", "crash", "--kills", "20", "--debug"],
        ),
        // Every decoder of untrusted bytes under libFuzzer for a few seconds (installs
        // cargo-fuzz when missing); the long runs are `cargo xtask fuzz`.
        step(
            "fuzz targets, 10 s each",
            &["xtask", "fuzz", "--secs", "10"],
        ),
    ]
}

pub(crate) fn run() -> Result<ExitCode> {
    let started = Instant::now();
    let steps = steps();
    let total = steps.len();
    let mut results = Vec::new();
    for (i, mut step) in steps.into_iter().enumerate() {
        eprintln!("\n==> xtask ci [{}/{total}] {}", i + 1, step.name);
        let step_started = Instant::now();
        let status = step
            .command
            .status()
            .with_context(|| format!("cannot start {}", step.name))?;
        let seconds = step_started.elapsed().as_secs_f64();
        results.push((step.name, status.success(), seconds));
        if !status.success() {
            eprintln!("==> {} failed ({status})", step.name);
        }
    }
    eprintln!(
        "\n==> xtask ci summary ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    for (name, ok, seconds) in &results {
        eprintln!(
            "  {:4}  {seconds:6.1} s  {name}",
            if *ok { "ok" } else { "FAIL" }
        );
    }
    let failed = results.iter().filter(|(_, ok, _)| !ok).count();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("xtask ci: {failed} of {total} steps failed");
        ExitCode::FAILURE
    })
}
