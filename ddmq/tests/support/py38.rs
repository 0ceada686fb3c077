//! The Python original: a CPython 3.8 virtual environment with ddmq 0.9.14 and PyYAML 5.4.1
//! from the package index, made once and cached under the target directory (serialized
//! across processes by a file lock). Shared by the interop tests (which fail when it cannot
//! be made) and the bench (which then skips the original, saying why).

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the CLI of the original: `sys.modules['broker']` is aliased first (0.9.14's CLI
/// imports a top-level `broker` module that its wheel does not install).
const LAUNCHER: &str = "import sys, ddmq\nsys.modules['broker'] = sys.modules['ddmq.broker']\nimport ddmq.cli\nddmq.cli.main()\n";

/// The directory holding the venv and `launch.py`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ddmq-py38")
}

/// A CPython 3.8: `DDMQ_PYTHON38`, else the newest 3.8 under `~/.pyenv/versions`.
fn base_python() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("DDMQ_PYTHON38") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let versions = Path::new(&home).join(".pyenv/versions");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&versions)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("3.8."))
        })
        .map(|p| p.join("bin/python"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        "CPython 3.8 is needed (ddmq 0.9.14 does not run on newer PyYAML/Python): \
         install it with `pyenv install 3.8` or set DDMQ_PYTHON38 to a python3.8 binary"
            .to_string()
    })
}

/// The interpreter of the venv, installing it first when missing; the error says what failed.
pub fn install() -> Result<PathBuf, String> {
    let dir = dir();
    let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
    std::fs::create_dir_all(&dir).map_err(|e| io("cannot create", e))?;
    let lock = std::fs::File::create(dir.join(".lock")).map_err(|e| io("cannot lock", e))?;
    lock.lock().map_err(|e| io("cannot lock", e))?;
    let venv = dir.join("venv");
    let python = venv.join("bin/python");
    let done = dir.join(".installed-0.9.14");
    if !done.is_file() {
        let _ = std::fs::remove_dir_all(&venv);
        let base = base_python()?;
        let status = Command::new(&base)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", base.display()))?;
        if !status.success() {
            return Err(format!("python -m venv {} failed", venv.display()));
        }
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "ddmq==0.9.14",
                "pyyaml==5.4.1",
            ])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        if !out.status.success() {
            return Err(format!(
                "pip install ddmq==0.9.14 pyyaml==5.4.1 failed (the package index must be reachable):\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::write(dir.join("launch.py"), LAUNCHER).map_err(|e| io("cannot write in", e))?;
        std::fs::write(&done, b"").map_err(|e| io("cannot write in", e))?;
    }
    Ok(python)
}
