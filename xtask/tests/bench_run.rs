//! `cargo xtask bench` end to end, with a stand-in `cargo` (the `CARGO` variable) whose
//! benches write a report, fail, write nothing, or do not exist: every outcome is reported,
//! none stops the others, and a failure makes the exit status non-zero.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A `cargo` that knows three bench targets: `floors` writes the fixture report (only when
/// asked for the quick mode), `shmq` fails to build, `dmq` runs and writes no report.
const FAKE_CARGO: &str = r#"#!/bin/sh
case "$1" in
metadata)
  echo '{"packages":[
    {"name":"mq-facade","targets":[{"name":"floors","kind":["bench"]},{"name":"mq","kind":["bin"]}]},
    {"name":"shmq","targets":[{"name":"shmq","kind":["bench"]}]},
    {"name":"dmq","targets":[{"name":"dmq","kind":["bench"]}]}]}'
  ;;
bench)
  case "$5" in
  floors)
    [ "$FLOORS_BENCH_QUICK" = 1 ] || { echo "not quick"; exit 3; }
    echo "measuring the floors"
    cp "$FIXTURES/floors.json" "$FLOORS_BENCH_REPORT"
    ;;
  shmq)
    echo "error[E0425]: cannot find value in this scope"
    echo "error: could not compile shmq"
    exit 101
    ;;
  dmq)
    echo "criterion output only"
    ;;
  esac
  ;;
*) exit 2 ;;
esac
"#;

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the stand-in cargo");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn every_outcome_is_reported_and_a_failure_fails_the_run() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cargo = dir.path().join("cargo");
    write_executable(&cargo, FAKE_CARGO);
    let output_md = dir.path().join("out").join("report.md");
    std::fs::create_dir_all(output_md.parent().unwrap()).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let target = dir.path().join("target");

    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "bench",
            "--quick",
            "--only",
            "floors,shmq,dmq,ddmq",
            "--output",
        ])
        .arg(&output_md)
        .env("CARGO", &cargo)
        .env("CARGO_TARGET_DIR", &target)
        .env("FIXTURES", &fixtures)
        .output()
        .expect("run xtask");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let both = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(run.status.code(), Some(1), "{both}");

    // Each bench's line, in table order.
    assert!(stdout.contains("floors               ran ("), "{both}");
    assert!(
        stdout.contains("shmq                 FAILED: cargo bench exited with exit status: 101"),
        "{both}"
    );
    assert!(
        stdout.contains("dmq                  not run: the bench wrote no report to"),
        "{both}"
    );
    assert!(
        stdout.contains(
            "ddmq                 not run: package `ddmq` has no bench target `ddmq` yet"
        ),
        "{both}"
    );
    // The failure shows the end of its log, and the log has the bench's output.
    assert!(stderr.contains("error: could not compile shmq"), "{both}");
    assert!(stderr.contains("shmq.log"), "{both}");
    let log = std::fs::read_to_string(target.join("bench/shmq.log")).expect("shmq's log");
    assert!(log.contains("error[E0425]"), "{log}");
    let floors_log = std::fs::read_to_string(target.join("bench/floors.log")).unwrap();
    assert!(floors_log.contains("measuring the floors"), "{floors_log}");

    // The report and its charts, beside it in a directory named after it.
    let md = std::fs::read_to_string(&output_md).expect("the report");
    assert!(md.contains("## The machine's floors"), "{md}");
    assert!(
        md.contains("| pwrite + fdatasync of 64 B | 1.20 k ops/s | ↑ higher |"),
        "{md}"
    );
    assert!(
        md.contains("- **shmq**: failed: cargo bench exited"),
        "{md}"
    );
    assert!(
        md.contains("- **ddmq**: not run: package `ddmq` has no bench target"),
        "{md}"
    );
    assert!(md.contains("](report/latency.svg)"), "{md}");
    let svg = std::fs::read_to_string(dir.path().join("out/report/latency.svg")).expect("svg");
    assert!(svg.contains("cache-line hand-off, one-way p50"), "{svg}");
}

#[test]
fn an_unknown_bench_is_an_error_naming_the_benches() {
    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "--only", "floors,nope"])
        .env("CARGO", "/nonexistent/cargo")
        .output()
        .expect("run xtask");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--only: no bench named `nope` (the benches are floors, shmq,"),
        "{stderr}"
    );
}
