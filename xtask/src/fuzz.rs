//! `cargo xtask fuzz`: runs every cargo-fuzz target of `xtask/fuzz/` for a while each and
//! prints a table; fails when a target finds a crash, naming its artifact.
//!
//! cargo-fuzz is installed when missing. It needs a nightly compiler (sanitizer flags): the
//! `nightly` rustup toolchain when there is one, else the default toolchain with
//! `RUSTC_BOOTSTRAP=1` (AddressSanitizer works there too).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::workspace_root;

/// The fuzz targets, one per decoder of untrusted bytes (see `xtask/fuzz/fuzz_targets/`).
pub(crate) const TARGETS: &[&str] = &[
    "dmq_map",
    "dmq_framing",
    "duraqueue_frame",
    "duraqueue_recovery",
    "ddmq_message",
    "ddmq_settings",
    "shmq_header",
    "dsmq_request",
];

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Seconds of fuzzing per target (after the build).
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Only this target.
    #[arg(long, value_name = "TARGET")]
    only: Option<String>,
}

/// How cargo-fuzz gets a nightly compiler on this machine.
enum Toolchain {
    /// `rustup run NAME`: the first nightly toolchain `rustup toolchain list` shows.
    Nightly(String),
    /// The default toolchain with `RUSTC_BOOTSTRAP=1`.
    Bootstrap,
}

impl Toolchain {
    fn detect() -> Toolchain {
        let listed = Command::new("rustup")
            .args(["toolchain", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        listed
            .lines()
            .find(|l| l.starts_with("nightly"))
            .and_then(|l| l.split_whitespace().next())
            .map_or(Toolchain::Bootstrap, |name| {
                Toolchain::Nightly(name.to_owned())
            })
    }

    /// `cargo` of this toolchain, in the workspace root, without the variables of the
    /// toolchain that runs xtask (they would pin the compiler).
    fn cargo(&self) -> Command {
        let mut c = match self {
            Toolchain::Nightly(name) => {
                let mut c = Command::new("rustup");
                c.args(["run", name, "cargo"]);
                c
            }
            Toolchain::Bootstrap => {
                let mut c =
                    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
                c.env("RUSTC_BOOTSTRAP", "1");
                c
            }
        };
        for var in [
            "RUSTUP_TOOLCHAIN",
            "RUSTC",
            "RUSTDOC",
            "CARGO",
            "RUSTC_WRAPPER",
        ] {
            c.env_remove(var);
        }
        c.current_dir(workspace_root());
        c
    }

    /// `cargo fuzz SUB --fuzz-dir xtask/fuzz` (AddressSanitizer, cargo-fuzz's default: it
    /// builds and runs on stable 1.95 with `RUSTC_BOOTSTRAP=1` too).
    fn fuzz(&self, sub: &str) -> Command {
        let mut c = self.cargo();
        c.args(["fuzz", sub, "--fuzz-dir", "xtask/fuzz"]);
        c
    }

    fn describe(&self) -> String {
        match self {
            Toolchain::Nightly(name) => format!("toolchain {name}, AddressSanitizer"),
            Toolchain::Bootstrap => {
                "no nightly toolchain: default toolchain with RUSTC_BOOTSTRAP=1, AddressSanitizer"
                    .to_owned()
            }
        }
    }
}

/// Installs cargo-fuzz unless `cargo fuzz --version` already works.
fn ensure_cargo_fuzz(toolchain: &Toolchain) -> Result<()> {
    let present = toolchain
        .cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!(
        "xtask fuzz: cargo-fuzz is missing; installing it: cargo install cargo-fuzz --locked"
    );
    let status = crate::cargo()
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz --locked failed ({status})");
    }
    Ok(())
}

/// What one target's run came to.
struct Outcome {
    target: &'static str,
    seconds: f64,
    runs: Option<u64>,
    corpus: usize,
    /// `None` when clean; otherwise what went wrong (with the artifact path if any).
    finding: Option<String>,
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter_map(Result::ok).count())
}

/// The value of libFuzzer's `stat::NAME: VALUE` line.
fn stat(log: &str, name: &str) -> Option<u64> {
    let key = format!("stat::{name}:");
    log.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

fn run_target(toolchain: &Toolchain, target: &'static str, secs: u64) -> Result<Outcome> {
    let fuzz_dir = workspace_root().join("xtask/fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    let seeds = fuzz_dir.join("seeds").join(target);
    let logs = fuzz_dir.join("logs");
    std::fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("create {}", log_path.display()))?;

    let mut command = toolchain.fuzz("run");
    command.arg(target).arg(&corpus);
    if seeds.is_dir() {
        // A second corpus directory is read-only for libFuzzer: the committed seeds.
        command.arg(&seeds);
    }
    command
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg("-print_final_stats=1")
        .stdout(log.try_clone()?)
        .stderr(log);
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("cannot run cargo fuzz for {target}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let finding = if status.success() {
        None
    } else {
        // libFuzzer: "Test unit written to ./artifacts/...".
        let artifact = text.lines().find_map(|l| {
            l.split_once("Test unit written to ")
                .map(|(_, p)| p.trim().to_owned())
        });
        Some(match artifact {
            Some(path) => format!("crash, input in {path} (log {})", log_path.display()),
            None => format!("failed ({status}), see {}", log_path.display()),
        })
    };
    Ok(Outcome {
        target,
        seconds,
        runs: stat(&text, "number_of_executed_units"),
        corpus: count_files(&corpus),
        finding,
    })
}

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    let targets: Vec<&'static str> = TARGETS
        .iter()
        .copied()
        .filter(|t| args.only.as_deref().is_none_or(|only| only == *t))
        .collect();
    if targets.is_empty() {
        bail!(
            "unknown fuzz target `{}` (targets: {})",
            args.only.as_deref().unwrap_or_default(),
            TARGETS.join(", ")
        );
    }
    let toolchain = Toolchain::detect();
    eprintln!("xtask fuzz: {}", toolchain.describe());
    ensure_cargo_fuzz(&toolchain)?;

    // Build first, so that each target's seconds are fuzzing, not compiling.
    let mut build = toolchain.fuzz("build");
    if let [only] = targets.as_slice() {
        build.arg(only);
    }
    let status = build.status().context("cannot run cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }

    let mut outcomes = Vec::new();
    for target in targets {
        eprintln!("xtask fuzz: {target} for {} s", args.secs);
        outcomes.push(run_target(&toolchain, target, args.secs)?);
    }

    println!("| target | seconds | runs | corpus | result |");
    println!("|---|---:|---:|---:|---|");
    for o in &outcomes {
        let runs = o.runs.map_or_else(|| "?".to_owned(), |r| r.to_string());
        let result = o.finding.as_deref().unwrap_or("ok");
        println!(
            "| {} | {:.0} | {runs} | {} | {result} |",
            o.target, o.seconds, o.corpus
        );
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.finding.is_some()).collect();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for o in &failed {
        eprintln!(
            "xtask fuzz: {}: {}",
            o.target,
            o.finding.as_deref().unwrap_or_default()
        );
    }
    Ok(ExitCode::FAILURE)
}
