//! CLI transcripts: the same commands run by the Python original (0.9.14 on Python 3.8) and
//! by this crate's binary, in twin directories; stdout, stderr and exit codes must agree
//! once ids and clock readings are masked. Intended differences (spec §4: 10, 13–16) are
//! asserted as differences.

mod support;

use std::path::Path;
use std::process::Output;

use support::{py_cli, rust_cli};

/// Masks 32-hex ids and clock readings (runs of 10 or more digits).
fn mask(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            .count();
        let digits = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if run == 32 && !chars.get(i + 32).is_some_and(char::is_ascii_hexdigit) {
            out.push_str("<ID>");
            i += 32;
        } else if digits >= 10 {
            out.push_str("<N>");
            i += digits;
        } else if run > 0 {
            out.extend(&chars[i..i + run]);
            i += run;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

struct Twins {
    py: tempfile::TempDir,
    rs: tempfile::TempDir,
}

impl Twins {
    fn new() -> Self {
        Twins {
            py: tempfile::tempdir().unwrap(),
            rs: tempfile::tempdir().unwrap(),
        }
    }

    fn both(&self, args: &[&str]) -> (Output, Output) {
        (py_cli(self.py.path(), args), rust_cli(self.rs.path(), args))
    }

    /// Runs `args` on both sides and checks that they agree.
    fn same(&self, args: &[&str]) -> String {
        let (p, r) = self.both(args);
        assert_eq!(mask(&r.stdout), mask(&p.stdout), "stdout of {args:?}");
        assert_eq!(mask(&r.stderr), mask(&p.stderr), "stderr of {args:?}");
        assert_eq!(r.status.code(), p.status.code(), "exit code of {args:?}");
        mask(&r.stdout)
    }

    /// §4 #15: the original means to print a message for a missing or uninitiated root
    /// but shows a traceback (its CLI catches another class than its broker raises); we
    /// print the message it means, with the same exit code.
    fn root_error(&self, args: &[&str], what: &str) {
        let (p, r) = self.both(args);
        let text = String::from_utf8_lossy(&r.stderr).to_string();
        assert!(
            text.starts_with("The specified root directory (") && text.contains(what),
            "{text}"
        );
        assert!(text.trim_end().ends_with("Please run the same command with the (-f) force flag to try to create and initiate directories as needed."));
        assert!(String::from_utf8_lossy(&p.stderr).contains("DdmqError"));
        assert_eq!((r.status.code(), p.status.code()), (Some(1), Some(1)));
        assert!(r.stdout.is_empty());
    }

    /// Consumes with json output on both sides; returns the claimed names (python, rust).
    fn consume_names(&self, args: &[&str]) -> (Vec<String>, Vec<String>) {
        let (p, r) = self.both(args);
        assert_eq!(mask(&r.stdout), mask(&p.stdout), "stdout of {args:?}");
        assert_eq!(r.status.code(), p.status.code());
        let names = |o: &Output| -> Vec<String> {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["filename"].as_str().unwrap().to_owned()
                })
                .collect()
        };
        (names(&p), names(&r))
    }
}

#[test]
fn transcripts_match_the_original() {
    let t = Twins::new();
    assert_eq!(t.same(&["-v"]), "ddmq version 0.9.14\n");
    t.root_error(&["view", "r"], "does not exist");
    t.same(&["create", "-f", "r", "q1,q2,bad.name"]);
    t.same(&["create", "r", "q1"]);
    t.same(&["publish", "r", "q1", "hello world", "-p", "5", "-r"]);
    t.same(&["publish", "-s", "r", "q1", "second", "-t", "30", "-l", "2"]);
    t.same(&[
        "publish",
        "r",
        "q1",
        "caf\u{e9} \u{1F600}",
        "--requeue_prio",
        "3",
    ]);
    t.same(&["publish", "r", "nope", "x"]);
    t.same(&["view", "r"]);
    t.same(&["view", "--format", "json", "r"]);
    t.same(&["view", "--format", "yaml", "r"]);
    t.same(&["view", "-n", "r"]);
    t.same(&["view", "-n", "--format", "json", "r"]);
    t.same(&["view", "r", "q1,zzz"]);
    t.same(&["json", r#"{"command": "view", "root": "r"}"#]);
    let (py_names, rs_names) = t.consume_names(&["consume", "-n", "2", "r", "q1"]);
    assert_eq!(py_names.len(), 2);
    t.same(&["consume", "-n", "5", "--format", "plain", "r", "q1"]);
    t.same(&["consume", "-n", "5", "--format", "yaml", "r", "q1"]);
    t.same(&["consume", "-n", "2", "r", "q2"]);
    for (cmd, i) in [("ack", 0), ("nack", 1)] {
        let (p, r) = (
            py_cli(
                t.py.path(),
                &[
                    cmd,
                    "r",
                    "q1",
                    &format!("{},missing.1.2.ddmqab", py_names[i]),
                ],
            ),
            rust_cli(
                t.rs.path(),
                &[
                    cmd,
                    "r",
                    "q1",
                    &format!("{},missing.1.2.ddmqab", rs_names[i]),
                ],
            ),
        );
        assert_eq!(mask(&r.stdout), mask(&p.stdout), "{cmd}");
        assert_eq!(r.status.code(), p.status.code());
    }
    t.same(&["view", "--format", "json", "r"]);
    t.same(&["del_msg", "r", "q1", "1.2.ddmqab,3.4.5.ddmqcd"]);
    t.same(&["purge", "r", "q1,q9,x.y"]);
    t.same(&["clean", "r", "q1"]);
    t.same(&["delete", "r", "q2,q3"]);
    t.same(&["view", "--format", "yaml", "-n", "r"]);
    t.same(&["delete", "-s", "r", "q1"]);
    t.same(&["view", "--format", "yaml", "r"]);
    t.same(&["view", "--format", "json", "-n", "r"]);
    std::fs::create_dir(t.py.path().join("bare")).unwrap();
    std::fs::create_dir(t.rs.path().join("bare")).unwrap();
    t.root_error(&["view", "bare"], "exists but is not initiated");
    t.root_error(&["ack", "nothere", "q", "1.2.3.ddmqab"], "does not exist");
}

#[test]
fn top_level_errors_match_the_original() {
    let t = Twins::new();
    let (p, r) = t.both(&["frobnicate"]);
    let first = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(first(&r), "Unrecognized command: frobnicate");
    assert_eq!(first(&p), first(&r));
    assert_eq!((r.status.code(), p.status.code()), (Some(1), Some(1)));
    let (p, r) = t.both(&[]);
    assert_eq!((r.status.code(), p.status.code()), (Some(1), Some(1)));
    assert!(String::from_utf8_lossy(&r.stdout).contains("publish"));
    // A usage error is rc 2 on both sides.
    let (p, r) = t.both(&["publish", "r"]);
    assert_eq!((r.status.code(), p.status.code()), (Some(2), Some(2)));
}

#[test]
fn intended_differences() {
    let t = Twins::new();
    t.same(&["create", "-f", "r", "q"]);
    // §4 #15: the original shows a traceback for a negative priority; we print its text.
    let (p, r) = t.both(&["publish", "r", "q", "x", "-p", "-3"]);
    let text = "Warning, priority set to less than 0 (priority=-3). Negative numbers will be sorted in the wrong order when working with messages.";
    assert_eq!(String::from_utf8_lossy(&r.stderr).trim_end(), text);
    assert!(
        String::from_utf8_lossy(&p.stderr)
            .trim_end()
            .ends_with(text)
    );
    assert_eq!((r.status.code(), p.status.code()), (Some(1), Some(1)));
    // §4 #10: -p 0 is priority 0 (the original writes 999).
    let (p, r) = t.both(&["publish", "-s", "r", "q", "zero", "-p", "0"]);
    assert!(p.status.success() && r.status.success());
    let waiting = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir.join("r/q"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".ddmq"))
            .collect()
    };
    assert!(waiting(t.rs.path())[0].starts_with("0."));
    assert!(waiting(t.py.path())[0].starts_with("999."));
    // §4 #13: a one-message consume works (the original claims it, then crashes).
    let (p, r) = t.both(&["consume", "r", "q"]);
    assert_eq!((r.status.code(), p.status.code()), (Some(0), Some(1)));
    assert!(String::from_utf8_lossy(&r.stdout).contains("\"message\": \"zero\""));
    // §4 #15: -s does not skip name validation.
    let r = rust_cli(t.rs.path(), &["create", "-s", "r", "../outside"]);
    assert!(r.status.success());
    assert!(!t.rs.path().join("outside").exists());
    // §4 #14: json dispatches every command, reads `cmd` too, and never evaluates.
    let r = rust_cli(
        t.rs.path(),
        &[
            "json",
            r#"{"cmd": "publish", "root": "r", "queue": "q", "message": "via json", "s": true}"#,
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = rust_cli(
        t.rs.path(),
        &[
            "json",
            r#"{"command": "__import__('os').system('touch pwned')", "root": "r"}"#,
        ],
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(!t.rs.path().join("pwned").exists());
    let r = rust_cli(t.rs.path(), &["json", "{not json"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&r.stderr).starts_with("Error: unable to load the JSON object")
    );
    // ack -r requeues; nack without -r deletes an unflagged message.
    let out = rust_cli(t.rs.path(), &["consume", "r", "q"]);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let name = v["filename"].as_str().unwrap();
    let r = rust_cli(t.rs.path(), &["ack", "-r", "r", "q", name]);
    assert!(String::from_utf8_lossy(&r.stdout).starts_with("acked r/q/work/"));
    let r = rust_cli(t.rs.path(), &["view", "--format", "json", "r"]);
    assert_eq!(String::from_utf8_lossy(&r.stdout), "{\"q\": [1, 1]}\n");
    // §4 #17: delete refuses a queue with foreign files, before removing anything.
    std::fs::write(t.rs.path().join("r/q/notes.txt"), b"x").unwrap();
    let r = rust_cli(t.rs.path(), &["delete", "r", "q"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("notes.txt"));
    assert!(t.rs.path().join("r/q/ddmq.yaml").is_file());
}

#[test]
fn nack_without_r_deletes_even_a_flagged_message_as_the_original() {
    let t = Twins::new();
    t.same(&["create", "-f", "r", "q"]);
    t.same(&["publish", "r", "q", "flagged", "-r"]);
    let (py_names, rs_names) = t.consume_names(&["consume", "-n", "2", "r", "q"]);
    let p = py_cli(t.py.path(), &["nack", "r", "q", &py_names[0]]);
    let r = rust_cli(t.rs.path(), &["nack", "r", "q", &rs_names[0]]);
    assert_eq!(mask(&r.stdout), mask(&p.stdout));
    assert_eq!(r.status.code(), p.status.code());
    // The original's CLI passes requeue=False: the flagged message is deleted, not requeued.
    assert_eq!(
        t.same(&["view", "--format", "json", "r"]),
        "{\"q\": [0, 0]}\n"
    );
    // With -r it is requeued on both sides.
    t.same(&["publish", "r", "q", "again", "-r"]);
    let (py_names, rs_names) = t.consume_names(&["consume", "-n", "2", "r", "q"]);
    py_cli(t.py.path(), &["nack", "-r", "r", "q", &py_names[0]]);
    rust_cli(t.rs.path(), &["nack", "-r", "r", "q", &rs_names[0]]);
    assert_eq!(
        t.same(&["view", "--format", "json", "r"]),
        "{\"q\": [1, 0]}\n"
    );
}
