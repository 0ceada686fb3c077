//! Inputs that broke a property of a fuzz target (xtask/fuzz), fed to the same decoder with
//! the same checks. `ddmq_settings`: a settings file the broker rewrites (update_settings)
//! reads back as the same keys and values (or the rewrite is an error naming the key), and
//! so do the effective settings. `ddmq_message`: a message rewritten (requeue) reads back as
//! the same message.

use std::path::PathBuf;

use ddmq::format::{Message, Settings, decode_settings, encode_settings};

fn fixtures(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let bytes = std::fs::read(&path).expect("fixture readable");
            (path, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

#[test]
fn settings_files_survive_a_rewrite() {
    for (path, bytes) in fixtures("ddmq_settings") {
        let file = decode_settings(&bytes).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let mut s = Settings::default();
        s.apply(&file)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        match encode_settings(&file) {
            Ok(text) => assert_eq!(
                decode_settings(text.as_bytes()).ok().as_ref(),
                Some(&file),
                "{}: rewritten as {text:?}",
                path.display()
            ),
            Err(e) => assert!(e.0.starts_with('`'), "{}: {e:?}", path.display()),
        }
        let full = encode_settings(&s.to_file()).expect("effective settings encode");
        let mut again = Settings::default();
        again
            .apply(&decode_settings(full.as_bytes()).expect("written settings parse"))
            .expect("written settings apply");
        assert_eq!(
            again,
            s,
            "{}: effective settings written as {full:?}",
            path.display()
        );
    }
}

#[test]
fn messages_survive_a_rewrite() {
    for (path, bytes) in fixtures("ddmq_message") {
        let m = Message::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let written = m.encode();
        let again = Message::decode(&written).expect("an encoded message decodes");
        assert_eq!(
            again,
            m,
            "{}: rewritten as {:?}",
            path.display(),
            String::from_utf8_lossy(&written)
        );
        assert_eq!(again.encode(), written, "{}", path.display());
    }
}
