//! The `shmq` binary end to end: create, send, info, recv, ls, rm.

use std::process::{Command, Output};

fn shmq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmq"))
        .args(args)
        .output()
        .expect("run shmq")
}

fn ok(args: &[&str]) -> String {
    let out = shmq(args);
    assert!(
        out.status.success(),
        "shmq {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Removing(String);

impl Drop for Removing {
    fn drop(&mut self) {
        let _ = shmq(&["rm", &self.0]);
    }
}

#[test]
fn create_send_info_recv_rm() {
    let key = ok(&["create", "--unique", "--words", "2", "--slots", "2"])
        .trim()
        .to_owned();
    let _rm = Removing(key.clone());
    assert!(key.starts_with("0x"), "{key}");
    ok(&["send", &key, "hello"]);
    ok(&["send", &key, "world", "--try"]);
    let full = shmq(&["send", &key, "more", "--try"]);
    assert_eq!(full.status.code(), Some(3), "a try send into a full queue");
    ok(&["send", &key, "cyclic", "--shift"]);
    let info = ok(&["info", &key]);
    assert!(info.contains("format       native"), "{info}");
    assert!(info.contains("message      16 bytes (2 words)"), "{info}");
    assert!(info.contains("length       2"), "{info}");
    assert!(info.contains("dropped      1"), "{info}");
    assert!(ok(&["ls"]).contains(&key));
    assert_eq!(ok(&["recv", &key, "--count", "2"]), "world\ncyclic\n");
    let empty = shmq(&["recv", &key, "--try"]);
    assert_eq!(empty.status.code(), Some(3));
    let too_long = shmq(&["send", &key, "seventeen bytes!!"]);
    assert!(!too_long.status.success());
    assert!(String::from_utf8_lossy(&too_long.stderr).contains("does not fit"));
    ok(&["rm", &key]);
    let gone = shmq(&["info", &key]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no shared-memory segment"));
}
