//! The original: Python dsmq from the package index in a virtual environment cached under the
//! workspace's `target/` (`target/dsmq-interop/venv-<version>`, reused when it already holds
//! that version; `DSMQ_PY_WHEELHOUSE` installs offline from a directory of wheels). Python is
//! `DSMQ_PYTHON` if set, else a Python >= 3.10 found on this machine (pyenv or `python3`),
//! else Debian's `python3` installed with apt-get. Shared by the interop tests (which fail when
//! it cannot be made) and the bench (which then skips the original, saying why).

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Whether `python` runs and is at least 3.10 (Python dsmq requires it).
fn usable(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import sys, venv; sys.exit(0 if sys.version_info >= (3, 10) else 1)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python >= 3.10 with `venv`, installed through apt-get if none is found.
fn python() -> Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON.get_or_init(find_python).clone()
}

fn find_python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("DSMQ_PYTHON") {
        let p = PathBuf::from(p);
        return if usable(&p) {
            Ok(p)
        } else {
            Err(format!(
                "DSMQ_PYTHON={} is not a Python >= 3.10 with venv",
                p.display()
            ))
        };
    }
    let mut candidates = vec![PathBuf::from("python3")];
    if let Some(home) = std::env::var_os("HOME") {
        for v in ["3.12", "3.11", "3.13", "3.10"] {
            let dir = Path::new(&home).join(".pyenv/versions");
            if let Ok(entries) = std::fs::read_dir(&dir) {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(v))
                    .map(|e| e.path().join("bin/python"))
                    .collect();
                found.sort();
                candidates.extend(found);
            }
        }
    }
    if let Some(p) = candidates.iter().find(|p| usable(p)) {
        return Ok(p.clone());
    }
    // Install Debian's python3 (CI machines are Debian; we run as root there).
    let apt = |args: &[&str]| {
        run_ok(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            "apt-get (install python3 and python3-venv yourself, or set DSMQ_PYTHON)",
        )
    };
    apt(&["update"])?;
    apt(&[
        "install",
        "-y",
        "-o",
        "DPkg::Lock::Timeout=600",
        "python3",
        "python3-venv",
    ])?;
    let p = PathBuf::from("/usr/bin/python3");
    if usable(&p) {
        Ok(p)
    } else {
        Err("python3 from apt is older than 3.10: set DSMQ_PYTHON to a Python >= 3.10".into())
    }
}

/// The venv's python with `dsmq==version` installed (created once, then reused).
pub fn venv(version: &str) -> Result<PathBuf, String> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = target_dir().join(format!("dsmq-interop/venv-{version}"));
    let py = dir.join("bin/python");
    let check = format!(
        "import dsmq.client, importlib.metadata as m; assert m.version('dsmq') == '{version}'"
    );
    let ready = || {
        Command::new(&py)
            .args(["-c", &check])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready() {
        return Ok(py);
    }
    run_ok(
        Command::new(python()?)
            .args(["-m", "venv", "--clear"])
            .arg(&dir),
        "creating the venv",
    )?;
    let mut pip = Command::new(dir.join("bin/pip"));
    pip.args(["install", "--quiet", "--disable-pip-version-check"]);
    if let Some(wheels) = std::env::var_os("DSMQ_PY_WHEELHOUSE") {
        pip.arg("--no-index").arg("--find-links").arg(wheels);
    }
    pip.arg(format!("dsmq=={version}"));
    run_ok(&mut pip, &format!("pip install dsmq=={version}"))?;
    if ready() {
        Ok(py)
    } else {
        Err(format!(
            "dsmq {version} is not importable after pip install"
        ))
    }
}
