//! The `dmq` binary: the original's `-p`, `-r`, `-w` and the added options, exit codes.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_dmq");

fn dmq(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn usage_errors_exit_2_with_the_original_text() {
    let dir = tempfile::tempdir().unwrap();
    let out = dmq(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), "Error, no -r or -w option\n");
    let out = dmq(dir.path(), &["-x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("Error, unknown option\n"));
    let out = dmq(dir.path(), &["-r", "-m", "lines"]);
    assert_eq!(out.status.code(), Some(2));
    // Nothing was created by a command that did not run.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let out = dmq(dir.path(), &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("BASE0 and BASE1"));
}

#[test]
fn print_map_is_the_original_text_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dmq(dir.path(), &["-p"]);
    assert_eq!(out.status.code(), Some(1), "no queue: an error");
    assert!(text(&out.stderr).contains("qmap"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let out = dmq(dir.path(), &["-w", "-n", "10"]);
    assert!(out.status.success());
    let out = dmq(dir.path(), &["-r", "-n", "3"]);
    assert!(out.status.success());
    let before = std::fs::read(dir.path().join("qmap")).unwrap();
    let out = dmq(dir.path(), &["-p"]);
    assert!(out.status.success());
    let d = dir.path().display();
    assert_eq!(
        text(&out.stdout),
        format!(
            "iofs.log.readtarget = 0\niofs.log.writetarget = 0\niofs.log.writedelay = 0\n\
             iofs.log.readoffset = 21\niofs.log.position = 6\niofs.log.logfile0 = {d}/q0\n\
             iofs.log.logfile1 = {d}/q1\n"
        )
    );
    assert_eq!(std::fs::read(dir.path().join("qmap")).unwrap(), before);
}

#[test]
fn writer_numbers_and_reader_prints() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("jobs");
    let q = q.to_str().unwrap();
    assert!(
        dmq(dir.path(), &["-q", q, "-m", "frames", "-w", "-n", "5"])
            .status
            .success()
    );
    let out = dmq(dir.path(), &["-q", q, "-r", "--nowait", "--print"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\n2\n3\n4\n5\n");
    // The framing stayed frames (stored in the map).
    assert_eq!(std::fs::read(format!("{q}0")).unwrap()[..3], [3, 0, b'1']);
}

#[test]
fn writer_sends_stdin_lines_and_reader_prints_hex() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args(["-m", "nulls", "-w", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\n\nw\xc3\xb6rld\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let out = dmq(dir.path(), &["-r", "--nowait", "--hex", "-n", "2"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "68656c6c6f\n\n");
    let out = dmq(dir.path(), &["-r", "--nowait", "--hex"]);
    assert_eq!(text(&out.stdout), "77c3b6726c64\n");
}

#[test]
fn reader_counts_every_100000() {
    let dir = tempfile::tempdir().unwrap();
    assert!(dmq(dir.path(), &["-w", "-n", "200001"]).status.success());
    let out = dmq(dir.path(), &["-r", "--nowait"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "count = 100000\ncount = 200000\n");
}

#[test]
fn queue_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("qmap"), b"short").unwrap();
    for args in [&["-r"][..], &["-w", "-n", "1"], &["-p"]] {
        let out = dmq(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains("corrupt map: size is 5 bytes"),
            "{}",
            text(&out.stderr)
        );
    }
    // A second reader of the same queue: the first one holds it once it printed a message.
    let dir = tempfile::tempdir().unwrap();
    assert!(dmq(dir.path(), &["-w", "-n", "1"]).status.success());
    let mut first = Reaped(
        Command::new(BIN)
            .current_dir(dir.path())
            .args(["-r", "--print"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(first.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "1\n");
    let out = dmq(dir.path(), &["-r", "--nowait"]);
    drop(first);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("another reader holds this queue"));
}

/// A child process killed and reaped when dropped, also when a test fails.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
