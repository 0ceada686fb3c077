//! The Python module, tested from Python: the harness makes a virtual environment under the
//! workspace's target directory (once; later runs reuse it), installs maturin from PyPI into
//! it, builds and installs the module with `maturin develop` (its own cargo target directory,
//! so the nested build never waits for this one's lock), then runs `tests/test_dmq.py`.
//!
//! Needs `python3` with the `venv` module (or `DMQ_PYTHON=/path/to/python`), and PyPI; on a
//! Debian machine without venv support, running as root, it installs `python3-venv` with apt.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

/// The target directory of this build (…/target), from the test executable's path.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| {
            exe.parent()
                .unwrap()
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .to_path_buf()
        })
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Installs Python's venv support with apt (as root on Debian), for a fresh machine.
fn apt_install_venv() -> bool {
    let apt = Path::new("/usr/bin/apt-get");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !apt.is_file() || !root {
        return false;
    }
    let _ = Command::new(apt).arg("update").status();
    Command::new(apt)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args([
            "install",
            "-y",
            "-o",
            "DPkg::Lock::Timeout=600",
            "python3",
            "python3-venv",
            "python3-pip",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// The venv with maturin, made once (a file lock serializes concurrent test processes).
fn venv(target: &Path) -> PathBuf {
    let venv = target.join("dmq-python-venv");
    let python = std::env::var("DMQ_PYTHON").unwrap_or_else(|_| "python3".into());
    if !venv.join("bin/maturin").is_file() {
        let _ = std::fs::remove_dir_all(&venv);
        let make = || {
            Command::new(&python)
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
        };
        if !make().is_ok_and(|s| s.success()) {
            let _ = std::fs::remove_dir_all(&venv);
            assert!(
                apt_install_venv() && make().is_ok_and(|s| s.success()),
                "cannot create a venv with `{python} -m venv`: install python3 and \
                 python3-venv (apt-get install python3-venv), or set DMQ_PYTHON"
            );
        }
        run(
            Command::new(venv.join("bin/python")).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "maturin>=1.5,<2",
            ]),
            "installing maturin from PyPI into the venv",
        );
    }
    venv
}

#[test]
fn the_python_module_works_from_python() {
    let target = target_dir();
    std::fs::create_dir_all(&target).unwrap();
    let lock = File::create(target.join("dmq-python.lock")).unwrap();
    lock.lock().unwrap();
    let venv = venv(&target);
    run(
        Command::new(venv.join("bin/maturin"))
            .args(["develop", "--quiet", "--manifest-path"])
            .arg(Path::new(CRATE).join("Cargo.toml"))
            .env("VIRTUAL_ENV", &venv)
            .env("CARGO_TARGET_DIR", target.join("dmq-python-build"))
            .env_remove("CARGO_BUILD_TARGET_DIR"),
        "building the module with maturin develop",
    );
    let out = Command::new(venv.join("bin/python"))
        .arg(Path::new(CRATE).join("tests/test_dmq.py"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Python tests failed:\n{stderr}");
    assert!(stderr.contains("Ran 5 tests"), "{stderr}");
    drop(lock);
}
