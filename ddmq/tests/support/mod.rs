//! The Python original for interop tests: the CPython 3.8 venv of [`py38`] (ddmq 0.9.14),
//! and CPython 2.7 with the same version.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod py38;

/// The interpreter of the venv, installing it on first use.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| py38::install().unwrap_or_else(|e| panic!("the interop tests: {e}")))
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
    let launcher = py38::dir().join("launch.py");
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
