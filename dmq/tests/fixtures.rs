//! Interop: queues written by the original C program (shared fixtures, see their README.md)
//! are read and continued correctly, and the map the crate leaves behind is the one the
//! original's own reader left (where the original reads correctly).
//!
//! The fixtures live in the project's shared folder next to the repository checkout
//! (`<checkout>/../shared/fixtures/dmq`); each test works on a copy in a temporary folder.

use std::path::{Path, PathBuf};

use dmq::{Framing, Queue};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/dmq");

/// The fixture folder; a missing folder fails the test (it must not pass vacuously).
fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(FIXTURES);
    assert!(
        dir.join("manifest.json").is_file(),
        "dmq fixtures not found: looked for {}/manifest.json (the shared folder must sit next \
         to the repository checkout, as <checkout>/../shared)",
        dir.display()
    );
    dir
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Copies fixture `name` into a fresh temporary folder; returns it and the basepath.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for f in ["q0", "q1", "qmap"] {
        std::fs::copy(fixtures_dir().join(name).join(f), dir.path().join(f)).unwrap();
    }
    let base = dir.path().join("q");
    (dir, base)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn check_map(queue: &Queue, want: &Value, what: &str) {
    let info = queue.info().unwrap();
    let got = (
        u64::from(info.readtarget),
        u64::from(info.writetarget),
        i64::from(info.writedelay),
        i64::from(info.framing.mode()),
        info.readoffset,
        info.position,
    );
    let want = (
        want["readtarget"].as_u64().unwrap(),
        want["writetarget"].as_u64().unwrap(),
        want["writedelay"].as_i64().unwrap(),
        want["mode"].as_i64().unwrap(),
        want["readoffset"].as_u64().unwrap(),
        want["position"].as_u64().unwrap(),
    );
    assert_eq!(
        got, want,
        "{what}: (rt, wt, writedelay, mode, readoffset, position)"
    );
}

#[test]
fn every_fixture_drains_to_its_expected_messages() {
    let manifest = manifest();
    let fixtures = manifest["fixtures"].as_object().unwrap();
    assert_eq!(fixtures.len(), 4, "the manifest lists the four fixtures");
    for (name, fx) in fixtures {
        let (_dir, base) = copy_fixture(name);
        // The framing comes from the map, whatever the caller passes.
        let queue = Queue::open(&base, Some(Framing::Raw)).unwrap();
        assert_eq!(
            i64::from(queue.framing().mode()),
            fx["mode"].as_i64().unwrap()
        );
        check_map(&queue, &fx["map"], name);
        // The stored paths are kept as the original wrote them.
        let info = queue.info().unwrap();
        assert_eq!(
            info.paths[0],
            Path::new(fx["map"]["path0"].as_str().unwrap()),
            "{name}"
        );

        let expected: Vec<Vec<u8>> = fx["expected_unread_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hex_decode(h.as_str().unwrap()))
            .collect();
        let mut reader = queue.reader().unwrap();
        let got: Vec<Vec<u8>> = reader.try_iter().map(|m| m.unwrap().into_vec()).collect();
        assert_eq!(got.len(), expected.len(), "{name}: message count");
        assert_eq!(got, expected, "{name}: messages");
        // Where the original's own reader is correct, our reader leaves the same map and
        // files behind.
        let drain = &fx["original_reader_drain"];
        if drain["matches_expected"].as_bool().unwrap() {
            check_map(&queue, &drain["map_after"], &format!("{name} after drain"));
            for f in ["q0", "q1", "qmap"] {
                assert_eq!(
                    size(&base.with_file_name(f)),
                    drain["file_sizes_after"][f].as_u64().unwrap(),
                    "{name}: size of {f} after the drain"
                );
            }
        }
        // Further receives (the original crashed on the second, D2) find nothing, and may
        // complete the switch the first one started.
        for _ in 0..3 {
            assert!(reader.try_recv().unwrap().is_none(), "{name}: drained");
        }
    }
}

#[test]
fn newline_partial_resumes_mid_file_then_switches() {
    let (_dir, base) = copy_fixture("newline-partial");
    let queue = Queue::open(&base, None).unwrap();
    let mut reader = queue.reader().unwrap();
    // Resumes file 0 at byte 840: m-0120 first.
    assert_eq!(&*reader.try_recv().unwrap().unwrap(), b"m-0120");
    let rest: Vec<_> = reader.try_iter().map(|m| m.unwrap().into_vec()).collect();
    assert_eq!(rest.len(), 79);
    assert_eq!(rest[4], b"m-0125", "file 1 follows file 0's last record");
    assert_eq!(
        size(&base.with_file_name("q0")),
        0,
        "drained file truncated"
    );
}

#[test]
fn fixtures_continue_with_rust_writers() {
    for name in ["newline-fresh", "nul-mode", "frames-mode"] {
        let (_dir, base) = copy_fixture(name);
        let queue = Queue::open(&base, None).unwrap();
        let expected_old = manifest()["fixtures"][name]["expected_unread_count"]
            .as_u64()
            .unwrap() as usize;
        let mut writer = queue.writer().unwrap();
        for i in 0..5 {
            writer.send(format!("rust-{i}").as_bytes()).unwrap();
        }
        let mut reader = queue.reader().unwrap();
        let got: Vec<Vec<u8>> = reader.try_iter().map(|m| m.unwrap().into_vec()).collect();
        assert_eq!(got.len(), expected_old + 5, "{name}");
        for (i, m) in got[expected_old..].iter().enumerate() {
            assert_eq!(m, format!("rust-{i}").as_bytes(), "{name}");
        }
        // The map is still the original's format: 12,320 bytes, same framing.
        assert_eq!(size(&base.with_file_name("qmap")), 12_320);
        let bytes = std::fs::read(base.with_file_name("qmap")).unwrap();
        let image = dmq::format::MapImage::decode(&bytes).unwrap();
        assert_eq!(image.framing, queue.framing());
    }
}

#[test]
fn frames_written_by_the_original_read_past_the_first_record() {
    // D1: the original returned the first frame only and left position at 4 instead of 3.
    let (_dir, base) = copy_fixture("frames-mode");
    let queue = Queue::open(&base, None).unwrap();
    let mut reader = queue.reader().unwrap();
    let first = reader.try_recv().unwrap().unwrap();
    assert_eq!(
        first.mark().end(),
        3,
        "one byte of payload plus the 2-byte header"
    );
    assert_eq!(queue.info().unwrap().position, 3);
    let second = reader.try_recv().unwrap().unwrap();
    assert!(!second.is_empty());
    assert_eq!(reader.try_iter().count(), 13);
}
