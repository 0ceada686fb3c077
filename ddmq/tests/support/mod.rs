//! The Python original for interop tests: a CPython 3.8 virtual environment with ddmq
//! 0.9.14 and PyYAML 5.4.1 from the package index, made once and cached under the target
//! directory (serialized across test processes by a file lock).

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Runs the CLI of the original: `sys.modules['broker']` is aliased first (0.9.14's CLI
/// imports a top-level `broker` module that its wheel does not install).
const LAUNCHER: &str = "import sys, ddmq\nsys.modules['broker'] = sys.modules['ddmq.broker']\nimport ddmq.cli\nddmq.cli.main()\n";

/// The interpreter of the venv, installing it on first use.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(install)
}

fn base_python() -> PathBuf {
    if let Ok(p) = std::env::var("DDMQ_PYTHON38") {
        return PathBuf::from(p);
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
    found.pop().unwrap_or_else(|| {
        panic!(
            "the interop tests need CPython 3.8 (ddmq 0.9.14 does not run on newer PyYAML/Python): \
             install it with `pyenv install 3.8` or set DDMQ_PYTHON38 to a python3.8 binary"
        )
    })
}

fn install() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ddmq-py38");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    lock.lock().unwrap();
    let venv = dir.join("venv");
    let python = venv.join("bin/python");
    let done = dir.join(".installed-0.9.14");
    if !done.is_file() {
        let _ = std::fs::remove_dir_all(&venv);
        let status = Command::new(base_python())
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(status.success(), "python -m venv {} failed", venv.display());
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
            .unwrap();
        assert!(
            out.status.success(),
            "pip install ddmq==0.9.14 pyyaml==5.4.1 failed (the package index must be reachable):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dir.join("launch.py"), LAUNCHER).unwrap();
        std::fs::write(&done, b"").unwrap();
    }
    python
}

/// Runs Python code; panics with its stderr on failure. Returns stdout.
pub fn py(code: &str) -> String {
    let out = Command::new(python())
        .args(["-c", code])
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{code}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs the original CLI with `args` in `cwd`.
pub fn py_cli(cwd: &Path, args: &[&str]) -> Output {
    let launcher = python()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("launch.py");
    Command::new(python())
        .arg(launcher)
        .args(args)
        .current_dir(cwd)
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .unwrap()
}

/// Runs this crate's CLI with `args` in `cwd`.
pub fn rust_cli(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddmq"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// A Python string literal of `s`.
pub fn lit(s: &str) -> String {
    format!("{s:?}")
}

/// CPython 2.7 with the ddmq 0.9.14 sdist and PyYAML 3.13 installed into a directory (the
/// period-correct reference; the wheel is tagged py3), made once under the target directory.
/// Returns (interpreter, PYTHONPATH).
pub fn python27() -> &'static (PathBuf, PathBuf) {
    static PY27: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PY27.get_or_init(|| {
        let python = std::env::var("DDMQ_PYTHON27").map(PathBuf::from).unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            Path::new(&home).join(".pyenv/versions/2.7.18/bin/python")
        });
        assert!(
            python.is_file(),
            "the Python 2 interop test needs CPython 2.7: `pyenv install 2.7.18` or set DDMQ_PYTHON27"
        );
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ddmq-py27");
        std::fs::create_dir_all(&dir).unwrap();
        let lock = std::fs::File::create(dir.join(".lock")).unwrap();
        lock.lock().unwrap();
        let site = dir.join("site");
        let done = dir.join(".installed-0.9.14");
        if !done.is_file() {
            let _ = std::fs::remove_dir_all(&site);
            let out = Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "--target"])
                .arg(&site)
                .args(["--no-binary", "ddmq", "ddmq==0.9.14", "pyyaml==3.13"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pip install (Python 2.7) of ddmq==0.9.14 pyyaml==3.13 failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(&done, b"").unwrap();
        }
        (python, site)
    })
}

/// Runs Python 2.7 code with the original; returns stdout.
pub fn py27(code: &str) -> String {
    let (python, site) = python27();
    let out = Command::new(python)
        .args(["-c", code])
        .env("PYTHONPATH", site)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python2.7 failed:\n{code}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
