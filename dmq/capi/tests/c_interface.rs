//! The C interface: the checked-in header is what cbindgen generates from the crate, and a
//! C program compiled with `cc` against it and the shared library works end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

fn generated_header() -> String {
    let config =
        cbindgen::Config::from_file(Path::new(CRATE).join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(CRATE)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn header_is_up_to_date() {
    let path = Path::new(CRATE).join("include/dmq.h");
    let fresh = generated_header();
    if std::env::var_os("DMQ_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "{} is not what cbindgen generates from the crate: run `DMQ_BLESS=1 cargo test -p dmq-capi --test c_interface` and commit it",
        path.display()
    );
    for name in [
        "dmq_init",
        "dmq_free",
        "dmq_send",
        "dmq_receive",
        "dmq_info",
        "dmq_errmsg",
        "MODE_NEWLINES",
        "MODE_FRAMES",
        "struct dmq_record",
    ] {
        assert!(fresh.contains(name), "header lacks {name}");
    }
}

/// A directory holding `libdmq_capi.so`, built for this test.
///
/// `cargo test` compiles a library only as an rlib for the tests that depend on it, so the
/// shared library is built here with `cargo build`, into its own target directory (the
/// test's own one stays locked by the running `cargo test`).
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/c_interface-HASH → target
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test runs from target/<profile>/deps")
        .to_path_buf();
    let target_dir = target.join("dmq-capi-shared");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--quiet", "--package", "dmq-capi", "--lib"])
        .arg("--manifest-path")
        .arg(Path::new(CRATE).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{cargo} build` for the shared library: {e}"));
    assert!(status.success(), "`cargo build -p dmq-capi` failed");
    let dir = target_dir.join("debug");
    assert!(
        dir.join("libdmq_capi.so").is_file(),
        "libdmq_capi.so not found in {} after `cargo build -p dmq-capi`",
        dir.display()
    );
    dir
}

#[test]
fn a_c_program_uses_the_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("c_test");
    let lib = library_dir();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(Path::new(CRATE).join("tests/c/test.c"))
        .arg(format!("-I{CRATE}/include"))
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-ldmq_capi")
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run `{cc}` (install a C compiler, e.g. apt-get install gcc): {e}")
        });
    assert!(status.success(), "compiling tests/c/test.c failed");
    let out = Command::new(&exe)
        .arg(tmp.path().join("q"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "C test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("iofs.log.readtarget = "), "{stdout}");
    assert!(stdout.ends_with("all ok\n"), "{stdout}");
}
