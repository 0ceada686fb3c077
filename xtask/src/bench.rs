//! `cargo xtask bench`: run every bench of the workspace, render `docs/bench.md` and its charts.
//!
//! Each bench binary measures its subject and, in the same run, the baselines it is judged
//! against (the machine's floor, the original or a peer) and writes one `mq_benchkit::Report`
//! as JSON to the path in its `<PREFIX>_BENCH_REPORT` variable. This command runs them one
//! after the other (their output goes to `target/bench/<id>.log`), adds the machine, the
//! commit and the date, and renders the Markdown report and its SVG charts. A bench that does
//! not exist yet, or writes no report, is shown as not run with the reason; a bench that fails
//! is reported with its log and makes the command exit non-zero, after the others have run.

mod charts;
mod render;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use mq_benchkit::Report;

use crate::{cargo, workspace_root};

/// One bench of the workspace: its id (as `--only` names it and as its report's `backend`),
/// where it lives and the prefix of its environment variables.
#[derive(Debug)]
pub(crate) struct Bench {
    pub(crate) id: &'static str,
    package: &'static str,
    target: &'static str,
    /// `--features` of the `cargo bench` command, comma-separated; empty for none.
    features: &'static str,
    prefix: &'static str,
}

/// Every bench, in the order they run (the floors first: the report opens with them).
pub(crate) const BENCHES: &[Bench] = &[
    Bench {
        id: "floors",
        package: "mq-facade",
        target: "floors",
        features: "",
        prefix: "FLOORS",
    },
    Bench {
        id: "shmq",
        package: "shmq",
        target: "shmq",
        features: "",
        prefix: "SHMQ",
    },
    Bench {
        id: "duraqueue",
        package: "duraqueue",
        target: "duraqueue",
        features: "",
        prefix: "DURAQUEUE",
    },
    Bench {
        id: "dmq",
        package: "dmq",
        target: "dmq",
        features: "",
        prefix: "DMQ",
    },
    Bench {
        id: "ddmq",
        package: "ddmq",
        target: "ddmq",
        features: "",
        prefix: "DDMQ",
    },
    Bench {
        id: "dsmq",
        package: "dsmq",
        target: "dsmq",
        features: "",
        prefix: "DSMQ",
    },
    Bench {
        id: "amqp",
        package: "mq-facade",
        target: "amqp",
        features: "amqp",
        prefix: "AMQP",
    },
    Bench {
        id: "facade",
        package: "mq-facade",
        target: "facade",
        features: "mem,duraqueue,dmq,ddmq,dsmq,shmq,amqp",
        prefix: "FACADE",
    },
    Bench {
        id: "peers",
        package: "mq-facade",
        target: "peers",
        features: "amqp",
        prefix: "PEERS",
    },
];

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Short runs (`<PREFIX>_BENCH_QUICK=1`, about 20 s of measuring per bench): a smoke run
    /// for CI, the figures are indicative only.
    #[arg(long)]
    quick: bool,
    /// Run only these benches (comma-separated: floors, shmq, duraqueue, dmq, ddmq, dsmq,
    /// amqp, facade, peers).
    #[arg(long, value_name = "NAME[,NAME]", value_delimiter = ',')]
    only: Vec<String>,
    /// Where to write the Markdown report (default: `docs/bench.md` in the workspace); the
    /// charts go to the directory beside it named after its stem (`docs/bench/*.svg`).
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
}

/// What became of one bench.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// It ran and wrote its report.
    Ran(Box<Report>),
    /// It could not run here, or wrote no report (not a failure of this command).
    NotRun(String),
    /// It failed: the reason and the log (relative to the workspace).
    Failed { reason: String, log: String },
}

/// One bench of this run.
#[derive(Debug)]
pub(crate) struct BenchRun {
    pub(crate) id: String,
    /// The command that ran it, with its variables.
    pub(crate) command: String,
    pub(crate) seconds: f64,
    pub(crate) outcome: Outcome,
}

/// The benches `--only` names, in table order; an unknown name is an error naming the ids.
fn select(only: &[String]) -> Result<Vec<&'static Bench>> {
    let only: Vec<&str> = only
        .iter()
        .map(|name| name.trim())
        .filter(|n| !n.is_empty())
        .collect();
    for name in &only {
        if !BENCHES.iter().any(|bench| bench.id == *name) {
            let ids: Vec<&str> = BENCHES.iter().map(|bench| bench.id).collect();
            bail!(
                "--only: no bench named `{name}` (the benches are {})",
                ids.join(", ")
            );
        }
    }
    Ok(BENCHES
        .iter()
        .filter(|bench| only.is_empty() || only.contains(&bench.id))
        .collect())
}

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    let root = workspace_root();
    let selected = select(&args.only)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    let bench_dir = target_dir.join("bench");
    std::fs::create_dir_all(&bench_dir)
        .with_context(|| format!("cannot create {}", bench_dir.display()))?;
    let targets = bench_targets().context("cannot list the bench targets (cargo metadata)")?;

    let load_before = load_average();
    let started = Instant::now();
    let bar = ProgressBar::new(selected.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:20} {pos}/{len} benches  {wide_msg}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut runs = Vec::new();
    for bench in &selected {
        let run = run_one(bench, args.quick, &bench_dir, &root, &targets, &bar)?;
        let line = match &run.outcome {
            Outcome::Ran(_) => format!("{}: done in {:.0} s", run.id, run.seconds),
            Outcome::NotRun(reason) => format!("{}: not run: {reason}", run.id),
            Outcome::Failed { reason, log } => {
                format!(
                    "{}: FAILED ({reason}); last lines of {log}:\n{}",
                    run.id,
                    tail(&root.join(log), 25)
                )
            }
        };
        bar.suspend(|| eprintln!("xtask bench: {line}"));
        bar.inc(1);
        runs.push(run);
    }
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();

    let mut command = String::from("cargo xtask bench");
    if args.quick {
        command.push_str(" --quick");
    }
    if !args.only.is_empty() {
        command.push_str(&format!(" --only {}", args.only.join(",")));
    }
    let output = match &args.output {
        Some(path) if path.is_relative() => std::env::current_dir()?.join(path),
        Some(path) => path.clone(),
        None => root.join("docs").join("bench.md"),
    };
    if let Some(path) = &args.output {
        command.push_str(&format!(" --output {}", path.display()));
    }
    let info = render::RunInfo {
        command,
        quick: args.quick,
        date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
            .unwrap_or_else(|| "unknown".into()),
        commit: git_commit().unwrap_or_else(|| "unknown".into()),
        machine: machine(),
        load: format!("{load_before} before, {} after", load_average()),
        wall_seconds: wall,
        not_selected: BENCHES
            .iter()
            .filter(|bench| !selected.iter().any(|s| s.id == bench.id))
            .map(|bench| bench.id.to_string())
            .collect(),
    };
    let stem = output
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("bench")
        .to_owned();
    let rendered = render::render(&runs, &info, &stem);
    let dir = output.parent().unwrap_or(Path::new("."));
    let chart_dir = dir.join(&stem);
    std::fs::create_dir_all(&chart_dir)
        .with_context(|| format!("cannot create {}", chart_dir.display()))?;
    // Charts with no data this run are not drawn: no stale one may stay behind.
    for name in charts::NAMES {
        let _ = std::fs::remove_file(chart_dir.join(name));
    }
    for (name, svg) in &rendered.charts {
        let path = chart_dir.join(name);
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    std::fs::write(&output, &rendered.markdown)
        .with_context(|| format!("cannot write {}", output.display()))?;

    println!("bench                result");
    for run in &runs {
        let result = match &run.outcome {
            Outcome::Ran(report) => format!(
                "ran ({:.0} s, {} scenarios)",
                run.seconds,
                report.scenarios.len()
            ),
            Outcome::NotRun(reason) => format!("not run: {reason}"),
            Outcome::Failed { reason, log } => format!("FAILED: {reason} (log: {log})"),
        };
        println!("{:<20} {result}", run.id);
    }
    println!(
        "wrote {} and {} chart(s) in {} ({wall:.0} s)",
        display_relative(&output, &root),
        rendered.charts.len(),
        display_relative(&chart_dir, &root)
    );
    let failed = runs
        .iter()
        .filter(|run| matches!(run.outcome, Outcome::Failed { .. }))
        .count();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("xtask bench: {failed} bench(es) failed");
        ExitCode::FAILURE
    })
}

/// Runs one bench, its output to `target/bench/<id>.log`, and reads its report.
fn run_one(
    bench: &Bench,
    quick: bool,
    bench_dir: &Path,
    root: &Path,
    targets: &[(String, String)],
    bar: &ProgressBar,
) -> Result<BenchRun> {
    let report_path = bench_dir.join(format!("{}.json", bench.id));
    let log_path = bench_dir.join(format!("{}.log", bench.id));
    let _ = std::fs::remove_file(&report_path);
    let mut cargo_args = vec!["bench", "-p", bench.package, "--bench", bench.target];
    if !bench.features.is_empty() {
        cargo_args.extend(["--features", bench.features]);
    }
    let report_var = format!("{}_BENCH_REPORT", bench.prefix);
    let quick_var = format!("{}_BENCH_QUICK", bench.prefix);
    let command = format!(
        "{}{report_var}={} cargo {}",
        if quick {
            format!("{quick_var}=1 ")
        } else {
            String::new()
        },
        display_relative(&report_path, root),
        cargo_args.join(" ")
    );
    let mut run = BenchRun {
        id: bench.id.to_owned(),
        command,
        seconds: 0.0,
        outcome: Outcome::NotRun(String::new()),
    };
    if !targets
        .iter()
        .any(|(package, target)| package == bench.package && target == bench.target)
    {
        run.outcome = Outcome::NotRun(format!(
            "package `{}` has no bench target `{}` yet",
            bench.package, bench.target
        ));
        return Ok(run);
    }

    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut child = cargo();
    child
        .args(&cargo_args)
        .env(&report_var, &report_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot share the log file")?)
        .stderr(log);
    if quick {
        child.env(&quick_var, "1");
    } else {
        child.env_remove(&quick_var);
    }
    let started = Instant::now();
    let mut child = child
        .spawn()
        .with_context(|| format!("cannot start `{}`", run.command))?;
    let status: ExitStatus = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        bar.set_message(format!(
            "{}: {:.0} s  (cargo {}; log in {})",
            bench.id,
            started.elapsed().as_secs_f64(),
            cargo_args.join(" "),
            display_relative(&log_path, root)
        ));
        std::thread::sleep(Duration::from_millis(200));
    };
    run.seconds = started.elapsed().as_secs_f64();
    let log = display_relative(&log_path, root);
    run.outcome = if status.success() {
        read_report(&report_path, root)
    } else {
        Outcome::Failed {
            reason: format!("cargo bench exited with {status}"),
            log,
        }
    };
    Ok(run)
}

/// The report a bench wrote, or why it is not there (as a not-run reason).
fn read_report(path: &Path, root: &Path) -> Outcome {
    let shown = display_relative(path, root);
    match std::fs::read_to_string(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Outcome::NotRun(format!(
            "the bench wrote no report to {shown} (it does not write the mq-benchkit report yet)"
        )),
        Err(error) => Outcome::NotRun(format!("cannot read {shown}: {error}")),
        Ok(text) => parse_report(&text, &shown),
    }
}

/// A report's text parsed, or a not-run reason naming the file and what is wrong.
fn parse_report(text: &str, shown: &str) -> Outcome {
    match Report::from_json(text) {
        Ok(report) => Outcome::Ran(Box::new(report)),
        Err(error) => Outcome::NotRun(format!(
            "{shown} is not an mq-benchkit report ({error}); the bench still writes an older \
             format"
        )),
    }
}

/// Every `(package, bench target)` of the workspace, from `cargo metadata`.
fn bench_targets() -> Result<Vec<(String, String)>> {
    let output = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed ({})", output.status);
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed no JSON")?;
    let mut targets = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bench = target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bench"));
            if is_bench {
                targets.push((
                    name.to_owned(),
                    target["name"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    Ok(targets)
}

/// The last `lines` lines of a file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The machine, as `(what, value)` lines: CPU, cores, memory, kernel, the temp dir's file
/// system.
fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.1} GiB", kib as f64 / (1 << 20) as f64),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|v| format!("Linux {}", v.trim()))
        .unwrap_or_else(|_| "unknown".to_owned());
    let fs = filesystem_of(&std::env::temp_dir()).unwrap_or_else(|| "unknown".to_owned());
    vec![
        ("CPU".into(), model),
        (
            "cores".into(),
            format!("{cpus} (available to this process)"),
        ),
        ("RAM".into(), memory),
        ("kernel".into(), kernel),
        ("temp dir file system".into(), fs),
    ]
}

/// The file system holding `path`: the mount in `/proc/self/mountinfo` with the longest
/// mount point that is a prefix of it.
fn filesystem_of(path: &Path) -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mount_point = mount_point.replace("\\040", " ");
        if !path.starts_with(&mount_point) {
            continue;
        }
        let mut right = right.split(' ');
        let (Some(fs_type), Some(source)) = (right.next(), right.next()) else {
            continue;
        };
        let options = left.split(' ').nth(5).unwrap_or("");
        let depth = mount_point.len();
        if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            best = Some((
                depth,
                format!("{fs_type} (`{source}` mounted at `{mount_point}`, {options})"),
            ));
        }
    }
    best.map(|(_, description)| description)
}

/// `/proc/loadavg`'s three averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn git_commit() -> Option<String> {
    let root = workspace_root();
    let root = root.to_str()?;
    let head = command_output("git", &["-C", root, "rev-parse", "--short", "HEAD"])?;
    let dirty = command_output("git", &["-C", root, "status", "--porcelain"])
        .is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("`{head}` with uncommitted changes")
    } else {
        format!("`{head}`")
    })
}

/// A command's trimmed stdout, if it ran and succeeded.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A path relative to the workspace: the report names no path of the machine it ran on.
fn display_relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_selects_in_table_order_and_names_unknown_benches() {
        let ids = |only: &[&str]| {
            let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
            select(&only).map(|benches| benches.iter().map(|b| b.id).collect::<Vec<_>>())
        };
        assert_eq!(ids(&[]).unwrap().len(), BENCHES.len());
        assert_eq!(
            ids(&["duraqueue", "floors"]).unwrap(),
            vec!["floors", "duraqueue"]
        );
        let error = ids(&["floors", "redis"]).unwrap_err().to_string();
        assert!(error.contains("no bench named `redis`"), "{error}");
        assert!(error.contains("floors, shmq, duraqueue"), "{error}");
    }

    #[test]
    fn the_table_follows_the_contract() {
        for bench in BENCHES {
            // The prefix is the id in capitals; the features exist in the package.
            assert_eq!(bench.prefix, bench.id.to_uppercase(), "{bench:?}");
        }
        let ids: Vec<&str> = BENCHES.iter().map(|b| b.id).collect();
        assert_eq!(
            ids,
            [
                "floors",
                "shmq",
                "duraqueue",
                "dmq",
                "ddmq",
                "dsmq",
                "amqp",
                "facade",
                "peers"
            ]
        );
    }

    #[test]
    fn a_report_in_another_format_is_not_run_with_the_reason() {
        let legacy = include_str!("../tests/fixtures/legacy-duraqueue.json");
        match parse_report(legacy, "target/bench/duraqueue.json") {
            Outcome::NotRun(reason) => {
                assert!(reason.contains("target/bench/duraqueue.json"), "{reason}");
                assert!(reason.contains("not an mq-benchkit report"), "{reason}");
                // serde_json names where the text stops matching the schema.
                assert!(reason.contains("line 3 column 14"), "{reason}");
            }
            other => panic!("a legacy report parsed: {other:?}"),
        }
        match read_report(Path::new("/nonexistent/x.json"), Path::new("/")) {
            Outcome::NotRun(reason) => {
                assert!(
                    reason.contains("wrote no report to nonexistent/x.json"),
                    "{reason}"
                )
            }
            other => panic!("a missing report: {other:?}"),
        }
        let floors = include_str!("../tests/fixtures/floors.json");
        assert!(matches!(
            parse_report(floors, "floors.json"),
            Outcome::Ran(report) if report.backend == "floors"
        ));
    }

    #[test]
    fn the_file_system_of_root_is_found() {
        let fs = filesystem_of(Path::new("/")).expect("/ is mounted");
        assert!(fs.contains("mounted at `/`"), "{fs}");
    }
}
