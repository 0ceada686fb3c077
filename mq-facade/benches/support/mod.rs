//! What the facade's benches share: interleaved timing of a baseline and a subject, the
//! `pwrite + fdatasync` floor, and small statistics. Included by each bench with
//! `#[path = "support/mod.rs"] mod support;`.
// Each bench uses a different part of this module.
#![allow(dead_code, unreachable_pub)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The payload every bench sends: 64 bytes of printable ASCII (valid for every backend's
/// framing and encoding).
pub const PAYLOAD: [u8; 64] = [b'x'; 64];

/// Rates of two things timed in the same loop, one batch of each per round.
#[derive(Debug, Default, Clone)]
pub struct Paired {
    /// Items per second of each timed baseline batch.
    pub baseline: Vec<f64>,
    /// Items per second of each timed subject batch.
    pub subject: Vec<f64>,
}

impl Paired {
    /// Median rate of the baseline.
    pub fn baseline(&self) -> f64 {
        median(&self.baseline)
    }

    /// Median rate of the subject.
    pub fn subject(&self) -> f64 {
        median(&self.subject)
    }

    /// Subject rate over baseline rate (1.0: no overhead).
    pub fn ratio(&self) -> f64 {
        self.subject() / self.baseline()
    }

    /// Number of rounds.
    pub fn rounds(&self) -> usize {
        self.subject.len()
    }
}

/// Times `baseline` and `subject` alternately, one batch of `items` each per round, until
/// `budget` has passed (at least `min_rounds` and at most `max_rounds` rounds). The order
/// within a round alternates so that neither side always runs right after the other, and
/// both see the same machine: the same load, the same page cache, the same disk.
///
/// `between` runs untimed before each timed batch (to purge or drain).
pub fn interleave(
    items: u64,
    budget: Duration,
    min_rounds: usize,
    max_rounds: usize,
    baseline: &mut dyn FnMut(),
    subject: &mut dyn FnMut(),
    between: &mut dyn FnMut(),
) -> Paired {
    let mut out = Paired::default();
    let started = Instant::now();
    let mut round = 0;
    while round < max_rounds && (round < min_rounds || started.elapsed() < budget) {
        let mut time = |f: &mut dyn FnMut()| {
            between();
            let t = Instant::now();
            f();
            items as f64 / t.elapsed().as_secs_f64()
        };
        if round % 2 == 0 {
            out.baseline.push(time(baseline));
            out.subject.push(time(subject));
        } else {
            out.subject.push(time(subject));
            out.baseline.push(time(baseline));
        }
        round += 1;
    }
    out
}

/// The median of `values` (0 when empty).
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

/// The `q` quantile (0..=1) of `values`, nearest rank (0 when empty).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The name of the durability floor in every report.
pub const FSYNC_FLOOR: &str = "pwrite + fdatasync of 64 B";

/// The machine's floor for a durable small write: `pwrite` of 64 bytes at offset 0 of a
/// file, then `fdatasync`. The file is removed on drop.
pub struct FsyncFloor {
    file: File,
    path: PathBuf,
}

impl FsyncFloor {
    /// Creates the file `fsync-floor` in `dir` (put it on the file system of the subject).
    pub fn new(dir: &Path) -> std::io::Result<FsyncFloor> {
        let path = dir.join("fsync-floor");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        // The first write allocates the block: keep it out of the figures.
        file.write_all_at(&PAYLOAD, 0)?;
        file.sync_all()?;
        Ok(FsyncFloor { file, path })
    }

    /// One `pwrite` + `fdatasync`; its latency.
    pub fn once(&self) -> std::io::Result<Duration> {
        let t = Instant::now();
        self.file.write_all_at(&PAYLOAD, 0)?;
        self.file.sync_data()?;
        Ok(t.elapsed())
    }
}

impl Drop for FsyncFloor {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Installs the Debian package `package` with `apt-get` (as root: `apt-get update` first)
/// unless `binary` is already on disk. The package's scripts may not start a system
/// service meanwhile (a `policy-rc.d` that forbids it, removed afterwards), so nothing
/// takes the package's default port. The error says what failed and how to install it.
pub fn apt_install(package: &str, binary: &Path) -> Result<(), String> {
    if binary.exists() {
        return Ok(());
    }
    let how = format!("install it with `apt-get update && apt-get install -y {package}` as root");
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let own_policy = !policy.exists();
    if own_policy {
        std::fs::write(policy, "#!/bin/sh\nexit 101\n")
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| {
                format!(
                    "{} is missing and cannot be installed ({e}): {how}",
                    binary.display()
                )
            })?;
    }
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run apt-get {}: {e}; {how}", args.join(" ")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`apt-get {}` failed ({}): {}; {how}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    println!("installing {package} with apt-get (it is missing)…");
    let result = run(&["update"])
        .and_then(|()| run(&["install", "-y", "-o", "DPkg::Lock::Timeout=600", package]));
    if own_policy {
        let _ = std::fs::remove_file(policy);
    }
    result?;
    if binary.exists() {
        Ok(())
    } else {
        Err(format!(
            "{package} was installed but {} is missing",
            binary.display()
        ))
    }
}

/// A free TCP port on 127.0.0.1 (free when this returns; bind it soon).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// `secs` of the full run, or `quick_secs` in quick mode.
pub fn budget(quick: bool, quick_secs: f64, secs: f64) -> Duration {
    Duration::from_secs_f64(if quick { quick_secs } else { secs })
}

/// The file system type of `path` (`ext4`, `tmpfs`, …), from `/proc/self/mounts`: the
/// longest mount point that is a prefix of it. `unknown` when it cannot be read.
pub fn file_system(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "unknown".into();
    };
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, mount, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, kind)| kind)
}

/// One line of the machine: CPU model and count.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} × {model}")
}

/// Writes `report` to the path in `var` when it is set, and says where.
pub fn write_report(report: &mq_benchkit::Report, var: &str) {
    match report.write_if_requested(var) {
        Ok(()) => {
            if let Some(path) = std::env::var_os(var) {
                println!("report written to {}", Path::new(&path).display());
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// Prints a report's rows as a table, for the terminal.
pub fn print(report: &mq_benchkit::Report) {
    println!("\n{} ({})", report.title, report.backend);
    for scenario in &report.scenarios {
        println!("\n## {}", scenario.title);
        for row in &scenario.rows {
            let floor = match (&row.baseline, row.ratio) {
                (Some(name), Some(ratio)) => format!(
                    "  vs {name}: {:.0} {} → ×{ratio:.3}",
                    row.baseline_value.unwrap_or_default(),
                    row.unit
                ),
                _ => String::new(),
            };
            let target = match (&row.target, row.pass) {
                (Some(t), Some(pass)) => {
                    format!("  [{t}: {}]", if pass { "met" } else { "missed" })
                }
                _ => String::new(),
            };
            println!(
                "- {}: {:.1} {}{floor}{target}",
                row.measure, row.value, row.unit
            );
        }
        for note in &scenario.notes {
            println!("  note: {note}");
        }
        for skipped in &scenario.skipped {
            println!("  skipped: {skipped}");
        }
    }
}
