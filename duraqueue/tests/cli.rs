//! The `duraqueue` command line: every subcommand, its output and exit codes, and errors
//! that name what was wrong.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn duraqueue(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_duraqueue"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the duraqueue binary runs");
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn path(dir: &Path) -> String {
    dir.join("q").display().to_string()
}

#[test]
fn create_offer_info_dump_poll_check() {
    let d = tempfile::tempdir().unwrap();
    let q = path(d.path());
    stdout(&duraqueue(&["create", &q, "--size", "64K"], None));
    stdout(&duraqueue(&["offer", &q, "first", "second"], None));
    stdout(&duraqueue(&["offer", &q], Some("third\nfourth\n")));

    let info = stdout(&duraqueue(&["info", &q], None));
    assert!(info.contains("records:   4"), "{info}");
    assert!(info.contains("Item count: 4"), "{info}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&duraqueue(&["info", &q, "--json"], None))).unwrap();
    assert_eq!(
        (json["records"].as_u64(), json["size"].as_u64()),
        (Some(4), Some(65536))
    );
    assert_eq!(json["format"], "v1");

    let dump: serde_json::Value =
        serde_json::from_str(&stdout(&duraqueue(&["dump", &q, "--json"], None))).unwrap();
    let records = dump.as_array().unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records[0]["hex"], "6669727374"); // "first"
    assert_eq!(records[1]["offset"], 96); // after one 96-byte record

    assert_eq!(
        stdout(&duraqueue(&["poll", &q, "-n", "1"], None)),
        "first\n"
    );
    assert_eq!(
        stdout(&duraqueue(&["poll", &q, "--hex"], None)),
        "7365636f6e64\n7468697264\n666f75727468\n"
    );
    let check = stdout(&duraqueue(&["check", &q], None));
    assert!(check.contains("0 records delivered"), "{check}");
}

#[test]
fn check_names_the_offset_of_a_damaged_v2_record() {
    let d = tempfile::tempdir().unwrap();
    let q = path(d.path());
    stdout(&duraqueue(
        &["create", &q, "--size", "8K", "--format", "v2"],
        None,
    ));
    stdout(&duraqueue(&["offer", &q, "intact", "damaged"], None));
    // Flip a payload byte of the second record: 4096 (superblock) + 96 (first record) + 32
    // (its header); the report names that byte's offset.
    let mut bytes = std::fs::read(&q).unwrap();
    bytes[4096 + 96 + 32] ^= 0xff;
    std::fs::write(&q, bytes).unwrap();
    let out = duraqueue(&["check", &q], None);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 records delivered"), "{text}");
    assert!(
        text.contains("damaged record at offset 4224: payload CRC"),
        "{text}"
    );
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let d = tempfile::tempdir().unwrap();
    let q = path(d.path());
    let out = duraqueue(&["create", &q, "--size", "100"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid ring size 100: not a multiple of 32"),
        "{err}"
    );

    let out = duraqueue(&["create", &q, "--size", "8 parsecs"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown size unit"));

    let out = duraqueue(&["info", &q], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&q) && err.contains("No such file"), "{err}");

    std::fs::write(&q, b"short").unwrap();
    let out = duraqueue(&["info", &q], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("corrupt data at offset 5"), "{err}");
}
