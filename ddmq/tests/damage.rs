//! Bit-flip and torn-write sweeps over a small ddmq queue: its message files and both
//! `ddmq.yaml` files.
//!
//! For every single-bit flip and every truncation of each file, a fresh broker opens the
//! root and consumes everything. Each case must give the written messages, or set the
//! damaged message aside (moved, bytes untouched, to `ROOT/.quarantine/QUEUE/NAME`, never
//! delivered), or fail with an error naming the file; never a panic, never a hang (a
//! watchdog bounds each case).
//!
//! What the format can and cannot detect:
//!
//! - **Message files this crate writes** carry a CRC-32C of their content (the `ddmq_crc32c`
//!   field, see `ddmq::format`). Asserted: of every flip of every bit, 0 are delivered with
//!   changed content: each one is either harmless (the file decodes to the same message,
//!   e.g. the case of a hex digit in a `\u00e9` escape) or the file is set aside, never
//!   delivered. The sweep prints how many were caught only by the checksum.
//! - **Message files without the field** (as the Python original and older versions of this
//!   crate write them; JSON without checksum): a flip that breaks the JSON (invalid UTF-8, a
//!   structural character, a field of the wrong type) is detected and the file set aside; a
//!   flip inside a value that stays valid (a letter of the body, a digit of the priority)
//!   cannot be detected: the message is delivered as the file now says. Asserted: it is
//!   exactly what the damaged file decodes to, the damage stays within that one message (one
//!   file per message), and the sweep prints how many such flips there were.
//! - **Truncation** (a torn write) of a message file is always detected, with or without the
//!   field: no prefix of a JSON object is one. Asserted: every truncated message is set
//!   aside, 0 accepted.
//! - **Settings**: a damaged `ddmq.yaml` that is not YAML, or has a key of the wrong type, is
//!   an error naming the file; one that stays valid (a digit of `message_timeout`) changes
//!   that setting undetected. Asserted: settings damage never changes a message's content.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ddmq::format::{Integrity, Message};
use ddmq::{Broker, ConsumeOptions, Error, PublishOptions};
use mq_testkit::watchdog::Watchdog;
use serde_json::Value;

const QUEUE: &str = "q";

/// The undamaged tree: every file's name (relative to the root) and bytes.
struct Built {
    dir: tempfile::TempDir,
    files: Vec<(PathBuf, Vec<u8>)>,
    /// The message files (relative names) and their decoded contents.
    messages: Vec<(PathBuf, Message)>,
}

impl Built {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Rewrites the tree exactly as built, file `damaged` replaced by `bytes`; the damaged
    /// file is made old, so a broker judges it now instead of waiting for a writer.
    fn restore(&self, damaged: &Path, bytes: &[u8]) {
        let root = self.root();
        for entry in [root.join(QUEUE), root.join(".quarantine")] {
            if entry.exists() {
                std::fs::remove_dir_all(&entry).expect("clear the queue");
            }
        }
        std::fs::create_dir_all(root.join(QUEUE).join("work")).expect("the queue's work/");
        for (rel, original) in &self.files {
            let path = root.join(rel);
            let content = if rel == damaged { bytes } else { original };
            std::fs::write(&path, content).expect("restore a file");
        }
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(root.join(damaged))
            .and_then(|f| f.set_modified(hour_ago))
            .expect("age the damaged file");
    }
}

/// How the message files of the tree are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// By this crate: with the integrity field.
    Ours,
    /// As the Python original writes them (the same JSON without the integrity field).
    Python,
}

fn build(writer: Writer) -> Built {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let broker = Broker::open(dir.path(), true).expect("create the root");
    broker.create_queue(QUEUE).expect("create the queue");
    let bodies = [
        Value::from("first message"),
        Value::from(""),
        Value::from("third, with \"quotes\" and é"),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let options = PublishOptions::new().priority(i as u64 % 2).timeout(30.0);
        broker.publish(QUEUE, body, &options).expect("publish");
    }
    let root = dir.path();
    let mut files = vec![
        (PathBuf::from("ddmq.yaml"), Vec::new()),
        (PathBuf::from(QUEUE).join("ddmq.yaml"), Vec::new()),
    ];
    let mut messages = Vec::new();
    for entry in std::fs::read_dir(root.join(QUEUE)).expect("list the queue") {
        let name = entry.expect("an entry").file_name();
        let name = name.to_str().expect("a UTF-8 name").to_owned();
        if name.contains(".ddmq") {
            let rel = PathBuf::from(QUEUE).join(&name);
            let bytes = std::fs::read(root.join(&rel)).expect("read a message");
            let (m, integrity) = Message::decode_checked(&bytes).expect("a message");
            assert_eq!(integrity, Integrity::Verified, "{}", rel.display());
            if writer == Writer::Python {
                let python = m.encode_without_checksum();
                assert_eq!(
                    Message::decode_checked(&python).expect("a message"),
                    (m.clone(), Integrity::Absent)
                );
                std::fs::write(root.join(&rel), python).expect("rewrite a message");
            }
            messages.push((rel.clone(), m));
            files.push((rel, Vec::new()));
        }
    }
    assert_eq!(messages.len(), 3);
    for (rel, bytes) in &mut files {
        *bytes = std::fs::read(root.join(&*rel)).expect("read a file");
    }
    Built {
        dir,
        files,
        messages,
    }
}

/// Fields of a message that its content is made of (the file name changes with a claim).
fn content(m: &Message) -> Message {
    let mut m = m.clone();
    m.filename = String::new();
    m
}

/// A fresh broker consumes everything: the messages by the file (relative name) they came
/// from, or the error.
fn consume_all(built: &Built) -> Result<Vec<(PathBuf, Message)>, Error> {
    let broker = Broker::open(built.root(), false)?;
    let mut got = Vec::new();
    for _ in 0..4 {
        let batch =
            broker.consume_with(QUEUE, 10, &ConsumeOptions::default().skip_cleaning(true))?;
        if batch.is_empty() {
            break;
        }
        for delivery in batch {
            // The claimed name is `EXPIRY.NAME`: the waiting name is its last three parts.
            let claimed = delivery.claimed_name().to_owned();
            let parts: Vec<&str> = claimed.split('.').collect();
            let name = parts[parts.len() - 3..].join(".");
            got.push((PathBuf::from(QUEUE).join(name), delivery.message.clone()));
            delivery.ack()?;
        }
    }
    assert!(got.len() <= 3, "more messages than files: {got:?}");
    Ok(got)
}

#[derive(Default, Debug)]
struct Counts {
    cases: usize,
    intact: usize,
    rejected: usize,
    /// Of `rejected`: valid JSON with another content, caught by the integrity field only.
    by_checksum: usize,
    /// Valid JSON/YAML with another value: undetectable without a checksum.
    undetected: usize,
}

/// Judges one damaged message file: `damaged` holds `bytes` now.
fn judge_message(built: &Built, damaged: &Path, bytes: &[u8], what: &str, counts: &mut Counts) {
    let got = consume_all(built).unwrap_or_else(|e| panic!("{what}: consume failed: {e}"));
    counts.cases += 1;
    // Every other message is delivered exactly as written.
    for (rel, m) in &built.messages {
        if rel != damaged {
            let delivered = got.iter().find(|(r, _)| r == rel);
            assert!(
                delivered.is_some_and(|(_, d)| content(d) == content(m)),
                "{what}: the undamaged {} was not delivered intact: {got:?}",
                rel.display()
            );
        }
    }
    let original = &built
        .messages
        .iter()
        .find(|(r, _)| r == damaged)
        .expect("a message")
        .1;
    let delivered = got.iter().find(|(r, _)| r == damaged).map(|(_, m)| m);
    match (Message::decode(bytes), delivered) {
        (Err(e), None) => {
            if e.0.contains("`ddmq_crc32c`") {
                counts.by_checksum += 1;
            }
            let aside = built
                .root()
                .join(".quarantine")
                .join(QUEUE)
                .join(damaged.file_name().expect("a name"));
            assert_eq!(
                std::fs::read(&aside).ok().as_deref(),
                Some(bytes),
                "{what}: the damaged file was not set aside at {}",
                aside.display()
            );
            counts.rejected += 1;
        }
        (Err(e), Some(m)) => {
            panic!("{what}: a file that does not decode ({e}) was delivered: {m:?}")
        }
        (Ok(decoded), Some(m)) => {
            assert_eq!(
                content(m),
                content(&decoded),
                "{what}: delivered other bytes than the file's"
            );
            if content(m) == content(original) {
                counts.intact += 1;
            } else {
                counts.undetected += 1;
            }
        }
        (Ok(decoded), None) => {
            // A flip in the priority can make a name-and-content pair the broker still
            // delivers under the name; a message that decodes must not vanish.
            panic!("{what}: a valid message ({decoded:?}) was not delivered: {got:?}")
        }
    }
}

/// Flips every bit of every message file of `built`, one at a time.
fn flip_every_bit(built: &Built) -> Counts {
    let watchdog = Watchdog::new();
    let mut counts = Counts::default();
    for (rel, _) in &built.messages {
        let original = &built
            .files
            .iter()
            .find(|(r, _)| r == rel)
            .expect("a file")
            .1;
        for offset in 0..original.len() {
            for bit in 0..8 {
                let what = format!("bit {bit} of byte {offset} of {}", rel.display());
                watchdog.case(&what);
                let mut bytes = original.clone();
                bytes[offset] ^= 1 << bit;
                built.restore(rel, &bytes);
                judge_message(built, rel, &bytes, &what, &mut counts);
            }
        }
    }
    assert_eq!(
        counts.cases,
        counts.intact + counts.rejected + counts.undetected
    );
    counts
}

#[test]
fn every_bit_flip_of_a_message_file_we_wrote_is_harmless_or_set_aside() {
    let counts = flip_every_bit(&build(Writer::Ours));
    eprintln!(
        "ddmq message flips (our files, with the integrity field): {} cases, {} harmless \
         (same message), {} rejected (set aside, never delivered; {} of them valid JSON caught \
         by the checksum only), {} accepted with changed content",
        counts.cases, counts.intact, counts.rejected, counts.by_checksum, counts.undetected
    );
    assert_eq!(
        counts.undetected, 0,
        "damage delivered undetected: {counts:?}"
    );
    assert!(counts.by_checksum > 0, "{counts:?}");
}

#[test]
fn every_bit_flip_of_a_python_message_file_is_set_aside_or_delivered_as_the_file_says() {
    let counts = flip_every_bit(&build(Writer::Python));
    eprintln!(
        "ddmq message flips (Python-format files, no integrity field): {} cases, {} intact, \
         {} rejected (set aside, never delivered), {} accepted undetected (valid JSON with \
         another value; no checksum)",
        counts.cases, counts.intact, counts.rejected, counts.undetected
    );
    assert_eq!(counts.by_checksum, 0, "{counts:?}");
    assert!(counts.rejected > counts.cases / 8, "{counts:?}");
}

#[test]
fn every_truncation_of_a_message_file_is_set_aside() {
    for writer in [Writer::Ours, Writer::Python] {
        truncate_every_message(writer);
    }
}

fn truncate_every_message(writer: Writer) {
    let built = build(writer);
    let watchdog = Watchdog::new();
    let mut counts = Counts::default();
    for (rel, _) in &built.messages {
        let original = &built
            .files
            .iter()
            .find(|(r, _)| r == rel)
            .expect("a file")
            .1;
        for len in 0..original.len() {
            let what = format!("{} truncated to {len} bytes", rel.display());
            watchdog.case(&what);
            built.restore(rel, &original[..len]);
            judge_message(&built, rel, &original[..len], &what, &mut counts);
        }
    }
    eprintln!(
        "ddmq message truncations ({}): {} cases, {} rejected (set aside), {} accepted",
        match writer {
            Writer::Ours => "our files",
            Writer::Python => "Python-format files",
        },
        counts.cases,
        counts.rejected,
        counts.intact + counts.undetected
    );
    assert_eq!(
        counts.rejected, counts.cases,
        "a torn message was accepted: {counts:?}"
    );
}

/// Judges one damaged settings file.
fn judge_settings(built: &Built, damaged: &Path, what: &str, counts: &mut Counts, before: &str) {
    counts.cases += 1;
    let result = consume_all(built).and_then(|got| {
        let broker = Broker::open(built.root(), false)?;
        Ok((got, format!("{:?}", broker.settings(Some(QUEUE))?)))
    });
    match result {
        Err(e) => {
            let path = built.root().join(damaged);
            let named = match &e {
                // The file, and where in it: a line/offset, a byte index or the key.
                Error::Settings { path: p, detail } => {
                    *p == path
                        && ["line", "offset", "index", "`"]
                            .iter()
                            .any(|w| detail.contains(w))
                }
                _ => false,
            };
            assert!(
                named && e.to_string().contains(&path.display().to_string()),
                "{what}: the error does not name the settings file and where: {e}"
            );
            counts.rejected += 1;
        }
        Ok((got, settings)) => {
            assert_eq!(got.len(), built.messages.len(), "{what}: {got:?}");
            for (rel, m) in &built.messages {
                assert!(
                    got.iter()
                        .any(|(r, d)| r == rel && content(d) == content(m)),
                    "{what}: {} was not delivered intact: {got:?}",
                    rel.display()
                );
            }
            if settings == before {
                counts.intact += 1;
            } else {
                counts.undetected += 1;
            }
        }
    }
}

#[test]
fn every_bit_flip_and_truncation_of_the_settings_files_keeps_messages_intact() {
    let built = build(Writer::Ours);
    let before = {
        let broker = Broker::open(built.root(), false).expect("open");
        format!("{:?}", broker.settings(Some(QUEUE)).expect("settings"))
    };
    let watchdog = Watchdog::new();
    let mut flips = Counts::default();
    let mut cuts = Counts::default();
    for (rel, original) in built.files.iter().filter(|(r, _)| r.ends_with("ddmq.yaml")) {
        for offset in 0..original.len() {
            for bit in 0..8 {
                let what = format!("bit {bit} of byte {offset} of {}", rel.display());
                watchdog.case(&what);
                let mut bytes = original.clone();
                bytes[offset] ^= 1 << bit;
                built.restore(rel, &bytes);
                judge_settings(&built, rel, &what, &mut flips, &before);
            }
        }
        for len in 0..original.len() {
            let what = format!("{} truncated to {len} bytes", rel.display());
            watchdog.case(&what);
            built.restore(rel, &original[..len]);
            judge_settings(&built, rel, &what, &mut cuts, &before);
        }
    }
    for (kind, c) in [("flips", &flips), ("truncations", &cuts)] {
        eprintln!(
            "ddmq settings {kind}: {} cases, {} same settings, {} rejected with an error naming \
             the file, {} accepted with another setting (valid YAML; no checksum); messages \
             intact in every accepted case",
            c.cases, c.intact, c.rejected, c.undetected
        );
    }
    assert!(flips.rejected > 0, "{flips:?}");
}
