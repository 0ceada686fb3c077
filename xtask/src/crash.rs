//! `cargo xtask crash`: kill -9 from outside. By default the shared harness of every durable
//! backend through the facade ([`kills`]: `--kills N`); with `--sweeps` the long
//! crash-consistency sweeps of each backend crate's own crash tests (CI runs a short version
//! of each as an ordinary test).

mod kills;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cargo;

/// Options of `cargo xtask crash`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// SIGKILLs per backend in the shared harness (a producer or a consumer child each time).
    #[arg(long, default_value_t = 1000, conflicts_with = "sweeps")]
    kills: u32,
    /// Seed of the harness's choices (victim, moment); default: from the clock (printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Write docs/reliability.md (always done by a full run: every backend, ≥ 1000 kills).
    #[arg(long, conflicts_with = "sweeps")]
    report: bool,
    /// Use the child binary of the dev-profile test build (`cargo test --workspace
    /// --all-features`, which CI has just run) instead of a release build.
    #[arg(long, conflicts_with = "sweeps")]
    debug: bool,
    /// Run the backend crates' own crash sweeps instead (`cargo test --release --test crash`).
    #[arg(long)]
    sweeps: bool,
    /// With --sweeps: kill -9 rounds per crash test (CI runs a few per backend).
    #[arg(long, default_value_t = 500, requires = "sweeps")]
    rounds: u32,
    /// Only this backend (harness: dmq, ddmq, duraqueue, amqp; sweeps: duraqueue, dmq, ddmq).
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
    if args.sweeps {
        sweeps(args)
    } else {
        harness(args)
    }
}

fn sweeps(args: &Args) -> Result<ExitCode> {
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

/// The shared kill -9 harness over every durable backend.
fn harness(args: &Args) -> Result<ExitCode> {
    let backends: Vec<&kills::Backend> = kills::BACKENDS
        .iter()
        .filter(|b| args.only.as_deref().is_none_or(|only| only == b.name))
        .collect();
    if backends.is_empty() {
        let names: Vec<&str> = kills::BACKENDS.iter().map(|b| b.name).collect();
        anyhow::bail!(
            "unknown backend `{}` (the harness runs {})",
            args.only.as_deref().unwrap_or_default(),
            names.join(", ")
        );
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let profile = if args.debug { "debug" } else { "release" };
    eprintln!("==> xtask crash: building mq-crash ({profile})");
    let mut build = cargo();
    if args.debug {
        // Exactly the build of `cargo test --workspace --all-features` (which builds the
        // package's binaries too): right after CI's test step there is nothing to compile.
        build.args(["test", "--workspace", "--all-features", "--no-run"]);
    } else {
        build.args([
            "build",
            "--release",
            "--package",
            "mq-facade",
            "--features",
            "cli",
            "--bin",
            "mq-crash",
        ]);
    }
    if !build.status().context("cannot run cargo")?.success() {
        anyhow::bail!("cannot build mq-crash");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::workspace_root().join("target"), Into::into);
    let plan = kills::Plan {
        kills: args.kills,
        seed,
        binary: target.join(profile).join("mq-crash"),
    };
    let command = format!(
        "cargo xtask crash --kills {}{} --seed {seed}",
        args.kills,
        args.only
            .as_deref()
            .map_or(String::new(), |o| format!(" --only {o}"))
    );
    eprintln!("==> xtask crash: {command}");
    let broker = if backends.iter().any(|b| b.name == "amqp") {
        eprintln!("==> xtask crash: starting a private RabbitMQ node");
        Some(kills::start_broker()?)
    } else {
        None
    };
    let mut rng = kills::Rng::new(seed);
    let mut outcomes = Vec::new();
    for (i, backend) in backends.iter().enumerate() {
        eprintln!(
            "\n==> xtask crash [{}/{}] {}: {} kills",
            i + 1,
            backends.len(),
            backend.name,
            args.kills
        );
        let outcome = kills::run_backend(&plan, backend, broker.as_ref(), &mut rng)?;
        for example in &outcome.audit.examples {
            eprintln!("    {example}");
        }
        for error in outcome.child_errors.iter().take(10) {
            eprintln!("    {error}");
        }
        outcomes.push(outcome);
    }
    let table = kills::table(&outcomes);
    println!("\n{table}");
    let full = backends.len() == kills::BACKENDS.len() && args.kills >= 1000;
    if args.report || full {
        let path = crate::workspace_root().join("docs/reliability.md");
        std::fs::write(&path, report(&command, &table, &outcomes))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.failed())
        .map(|o| o.backend)
        .collect();
    Ok(if failed.is_empty() {
        eprintln!(
            "xtask crash: every durable-acked message delivered, none twice after its ack, none torn, in order"
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "xtask crash: FAILED for {} (seed {seed})",
            failed.join(", ")
        );
        ExitCode::FAILURE
    })
}

/// A command's first line of output, or "unknown".
fn output_of(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!(
        "{}, {cpu}, {cores} cores available, {}",
        output_of("uname", &["-sr"]),
        output_of("rustc", &["--version"])
    )
}

/// What the harness found and what was done about it (kept in the report).
const DEFECTS_FOUND: &str = "\n## Defects this harness found\n\n\
- **ddmq, duplicate after ack** (fixed): a requeue (a claim whose ack timeout passed, or a \
  nack) took the claim as `work/.reap.*`, published a copy and then removed the private \
  file. A consumer killed between the two left both; after `reap_grace` another consumer \
  finished the private file and published the message again, after its copy had been \
  delivered and acked (1 in 1000 kills). Now the private file is replaced by the copy and \
  one rename publishes it and removes it together (`ddmq/tests/api.rs`: \
  `a_reaper_killed_after_preparing_its_copy_publishes_it_once`).\n\
- **amqp, duplicates after ack** (fixed): AMQP 0-9-1 has no reply to `basic.ack`, and the \
  adapter's `ack` returned once the frame was handed to the connection; a consumer killed \
  right after lost up to 40 returned acks at once under load, and the broker redelivered \
  them (39 in 1000 kills). `ack` and `nack` now return after a `basic.qos` round trip on \
  the same channel, which the broker answers only after handling the ack (one round trip \
  per ack; `mq-facade/tests/amqp.rs`: `an_ack_that_returned_holds_when_the_process_dies_at_once`).\n\
- **ddmq, late messages**: a requeue killed after taking the claim leaves the message in \
  `work/.reap.*` until a consumer finishes it after `reap_grace` (60 s); documented \
  behaviour, so the harness drains a second time for 65 s when a message is missing.\n";

fn report(command: &str, table: &str, outcomes: &[kills::Outcome]) -> String {
    let mut out = String::new();
    out.push_str("# Reliability: kill -9 from outside\n\n");
    out.push_str(
        "Written by `cargo xtask crash` (the shared kill -9 harness, `xtask/src/crash/kills.rs`). \
         For each durable backend a producer and a consumer run as child processes that speak \
         only the facade (`mq-crash`, a binary of mq-facade); after a random 5 to 300 ms one \
         of them is killed with SIGKILL and started again, N times. Then the producer is \
         stopped, a fresh consumer drains the queue until it stays empty, and the children's \
         logs are audited.\n\n",
    );
    out.push_str(&format!(
        "- Date: {}\n- Machine: {}\n- Command: `{command}`\n\n",
        output_of("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        machine()
    ));
    out.push_str(table);
    for o in outcomes {
        for line in o.audit.examples.iter().chain(&o.child_errors).take(10) {
            out.push_str(&format!("\n- {}: {line}", o.backend));
        }
    }
    out.push_str(
        "\n\n## What the columns mean\n\n\
         - **kills**: SIGKILLs during the run, each of the producer or the consumer (chosen at \
         random; for duraqueue the one child holding both).\n\
         - **sent**: messages the producers sent (every producer process is a new run, \
         numbering from 0).\n\
         - **durable-acked**: messages whose `flush(Durability::Synced)` returned before the \
         producer logged it: the facade's durable acknowledgement. A kill between the flush \
         and the log line only makes this set smaller.\n\
         - **delivered**: distinct messages a consumer received intact.\n\
         - **lost**: durable-acked, never delivered. Must be 0.\n\
         - **duplicated**: delivered again after an `ack` of it had returned. Must be 0 (the \
         facade: an acked message is never delivered again).\n\
         - **redelivered**: delivered again when no ack of it had returned (the consumer was \
         killed between delivery and ack, or the backend refused a late ack): at-least-once \
         delivery, allowed.\n\
         - **torn**: payloads that failed verification (each carries run, sequence, length and \
         an FNV-1a checksum, and its body is derived from run and sequence). Must be 0.\n\
         - **order violations**: first deliveries (not seen before, not flagged redelivered by \
         the backend) of a producer run that came after a later message of the same run. Must \
         be 0 on a backend that promises FIFO (all four do, per producer).\n\
         - **child errors**: children that exited by themselves (an error from the facade) \
         rather than being killed; must be 0.\n\
         - **seconds**: wall time of the backend's run, drain and audit included.\n\n\
         The logs are appended with one `write(2)` per line on an `O_APPEND` file, without \
         fsync: the harness kills processes, not the machine, and a line whose write returned \
         is in the kernel's page cache whatever happens to the process. The producer logs \
         `durable` only after `flush(Synced)` returned; the consumer logs a delivery before it \
         acks and the ack after it returned.\n\n\
         ## What each backend promises\n\n",
    );
    for b in kills::BACKENDS {
        out.push_str(&format!("- **{}**: {}.\n", b.name, b.promise));
    }
    out.push_str(DEFECTS_FOUND);
    out.push_str(
        "\nThe backend crates also have their own, finer crash tests (killing a writer inside \
         its critical windows): `cargo xtask crash --sweeps [--rounds N] [--only NAME]`.\n",
    );
    out
}
