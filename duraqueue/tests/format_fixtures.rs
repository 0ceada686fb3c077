//! Interop: files written by the original C library (shared fixtures, see their README.md)
//! must recover, with the crate's v1 reader, to exactly the items their manifest lists.
//!
//! The fixtures live in the project's shared folder next to the repository checkout
//! (`<checkout>/../shared/fixtures/duraqueue`); they are read, never written.

use std::path::{Path, PathBuf};

use duraqueue::format::{self, Format, Recovery};
use serde_json::Value;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/duraqueue"
);

/// The fixture folder; a missing folder fails the test (it must not pass vacuously).
fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(FIXTURES);
    assert!(
        dir.join("manifest.json").is_file(),
        "duraqueue fixtures not found: looked for {}/manifest.json (the shared folder must sit \
         next to the repository checkout, as <checkout>/../shared)",
        dir.display()
    );
    dir
}

fn manifest(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("read manifest.json");
    let json: Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    let files = json["files"]
        .as_array()
        .expect("manifest has a `files` array");
    assert!(!files.is_empty(), "manifest lists no files");
    files.clone()
}

fn hex_decode(s: &str) -> Vec<u8> {
    fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("bad hex digit {:?}", c as char),
        }
    }
    assert!(s.len().is_multiple_of(2), "odd-length hex string");
    s.as_bytes()
        .chunks(2)
        .map(|p| nibble(p[0]) << 4 | nibble(p[1]))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses `writer_handle_after_ops` ("head=H tail=T count=C used=U") into its numbers.
fn writer_state(s: &str) -> [u64; 4] {
    let mut out = [0; 4];
    for (slot, key) in out.iter_mut().zip(["head", "tail", "count", "used"]) {
        let field = s
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in {s:?}"));
        *slot = field.parse().expect("a number");
    }
    out
}

/// Runs v1 recovery on a fixture's ring (first `ring_size` bytes) through a mirrored view.
fn recover(bytes: &[u8], n: u64) -> (Recovery, Vec<u8>) {
    let ring = &bytes[..n as usize];
    let view = [ring, ring].concat();
    (format::recover_v1(&view, n), view)
}

/// Checks one manifest entry; returns a description of every mismatch.
fn check_entry(dir: &Path, entry: &Value) -> Vec<String> {
    let name = entry["file"].as_str().expect("file name");
    let n = entry["ring_size"].as_u64().expect("ring_size");
    let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
    let mut problems = Vec::new();
    let mut fail = |what: String| problems.push(format!("{name}: {what}"));

    if let Some(len) = entry["file_length"].as_u64()
        && len != bytes.len() as u64
    {
        fail(format!(
            "file is {} bytes, manifest says {len}",
            bytes.len()
        ));
    }
    if (bytes.len() as u64) < n {
        fail(format!("file shorter than its ring of {n} bytes"));
        return problems;
    }
    let expected: Vec<Vec<u8>> = entry["expected_items_hex"]
        .as_array()
        .expect("expected_items_hex")
        .iter()
        .map(|v| hex_decode(v.as_str().expect("hex string")))
        .collect();
    if let Some(count) = entry["expected_count"].as_u64()
        && count != expected.len() as u64
    {
        fail(format!(
            "manifest: expected_count {count} but {} items",
            expected.len()
        ));
    }

    let (r, view) = recover(&bytes, n);
    let got: Vec<&[u8]> = r
        .records
        .iter()
        .map(|loc| &view[loc.payload_range()])
        .collect();
    if got.len() != expected.len() {
        fail(format!(
            "{} items recovered, {} expected",
            got.len(),
            expected.len()
        ));
    }
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        if g != e {
            fail(format!("item {i}: got {}, expected {}", hex(g), hex(e)));
        }
    }
    // The C writer's own view right after the operations (its positions are not reduced
    // mod N, defect 3): same head, tail, count and used bytes.
    if let Some(state) = entry["writer_handle_after_ops"].as_str() {
        let [head, tail, count, used] = writer_state(state);
        let ours = [r.head, r.tail, r.records.len() as u64, r.used()];
        let theirs = [head % n, tail % n, count, used];
        if ours != theirs {
            fail(format!(
                "head/tail/count/used {ours:?}, writer had {theirs:?} ({state})"
            ));
        }
    }
    if r.next_seq != r.records.last().map_or(0, |l| l.seq + 1) {
        fail(format!("next_seq {}", r.next_seq));
    }
    if r.discarded != 0 {
        fail(format!(
            "{} valid candidates outside the delivered chain",
            r.discarded
        ));
    }
    problems
}

#[test]
fn every_fixture_recovers_its_expected_items() {
    let dir = fixtures_dir();
    let entries = manifest(&dir);
    let problems: Vec<String> = entries.iter().flat_map(|e| check_entry(&dir, e)).collect();
    assert!(
        problems.is_empty(),
        "fixture mismatches:\n{}",
        problems.join("\n")
    );
}

#[test]
fn manifest_covers_the_documented_cases() {
    let dir = fixtures_dir();
    let names: Vec<String> = manifest(&dir)
        .iter()
        .map(|e| e["file"].as_str().unwrap_or_default().to_owned())
        .collect();
    for want in [
        "abcd.queue",
        "many.queue",
        "polled.queue",
        "binary.queue",
        "wrapped.queue",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
}

#[test]
fn wrapped_fixture_straddling_record_is_read_with_modular_addressing() {
    let dir = fixtures_dir();
    let bytes = std::fs::read(dir.join("wrapped.queue")).expect("read wrapped.queue");
    let (r, view) = recover(&bytes, 8192);
    // Item 42 starts at 8064 and runs past the end; its footer is at physical 32.
    let straddling = r
        .records
        .iter()
        .find(|l| l.offset == 8064)
        .expect("record at 8064 delivered");
    assert_eq!(straddling.seq, 42);
    assert!(view[straddling.payload_range()].starts_with(b"wrap-042"));
    assert_eq!(r.records.first().map(|l| l.seq), Some(20));
    assert_eq!(r.next_seq, 50);
}

#[test]
fn abcd_record_matches_the_encoder_outside_reserved_words_and_padding() {
    let dir = fixtures_dir();
    let file = std::fs::read(dir.join("abcd.queue")).expect("read abcd.queue");
    let mut ours = vec![0u8; format::record_size(4) as usize];
    assert!(format::encode_record(Format::V1, 0, b"abcd", &mut ours));
    assert_eq!(ours.len(), 96);
    let theirs = &file[..96];
    // Reserved words: header 28..32, footer 64 + 28..64 + 32. Padding: 36..64.
    let masked = |i: usize| (28..32).contains(&i) || (36..64).contains(&i) || (92..96).contains(&i);
    for i in (0..96).filter(|&i| !masked(i)) {
        assert_eq!(
            ours[i], theirs[i],
            "byte {i}: ours {:02x}, C {:02x}",
            ours[i], theirs[i]
        );
    }
    // The rest of the ring is empty, and the crate's reader agrees.
    let (r, _) = recover(&file, 8192);
    assert_eq!(r.records.len(), 1);
    assert_eq!((r.head, r.tail, r.next_seq), (0, 96, 1));
}
