//! Bit-flip and torn-write sweeps over a small dmq queue, for each framing.
//!
//! The queue is built so that both data files hold records: `q0` with two consumed and three
//! unread records (the position is inside it), `q1` (the write target) with three more. For
//! every single-bit flip and every truncation of `q0`, `q1` and `qmap`, the queue is opened
//! as its creator would (stating its framing) and everything is read. Each case must end in
//! whole written records, or an error naming the file and the offset (or, for the map, the
//! field at its offset), never a panic and never a hang (a watchdog bounds each case).
//!
//! What the C original's framings can and cannot detect (they have no checksums; the
//! checked framing, ours, has one and is swept by its own test below):
//!
//! - **Truncation** (a torn write) is always detected, in every framing: the records wholly
//!   before the cut are delivered, the partial one never is (`TornRecord { file, offset }`
//!   at the switch). Asserted: 0 partial or foreign records accepted.
//! - **Map damage**: the size, both targets, the mode, the paths and the position are
//!   checked; a position must be the end of a record (the byte before it is the delimiter; in
//!   frames the length chain from byte 0 reaches it). A flip in `position` or `readtarget`
//!   that still passes these checks moves the reader to another record boundary: whole
//!   written records are repeated or skipped, never part of one. A flip of `mode` to another
//!   valid framing is reported by [`dmq::Queue::framing`] and refused by a caller that states
//!   its framing (as this test and the `dmq` command do). Asserted: every map flip gives the
//!   unread records, an error naming the map, or a run of whole written records.
//! - **Data damage cannot be detected**: a flipped payload bit is a different payload; in the
//!   delimited framings a bit that makes or breaks a delimiter splits or merges records; in
//!   frames a flipped length field re-frames the rest of that file. Asserted: the damage is
//!   confined (records before the damaged one are intact; in the delimited framings records
//!   after the following one are intact too; in frames a payload flip changes that payload
//!   only), and the sweep prints how many flips were accepted undetected.

use std::path::PathBuf;
use std::time::Duration;

use dmq::format::{OFF_PATHS, PATH_LEN};
use dmq::{Error, Framing, OpenOptions, Queue};
use mq_testkit::watchdog::Watchdog;

/// Records of the first batch (in `q0`) and of the second (in `q1`).
const FIRST: [&str; 5] = [
    "alpha-1",
    "",
    "charlie three 3333",
    "delta",
    "echo-echo-echo-5",
];
const SECOND: [&str; 3] = ["foxtrot", "g", "hotel hotel hotel"];
/// Records of the first batch consumed before the damage.
const CONSUMED: usize = 2;

/// The undamaged queue: the bytes of its three files and what was written.
struct Built {
    dir: tempfile::TempDir,
    framing: Framing,
    files: [Vec<u8>; 3],
    /// Every record written, in order: `FIRST` then `SECOND`.
    all: Vec<Vec<u8>>,
    /// For each record of `all`: its file (0 or 1) and byte range there.
    spans: Vec<(usize, std::ops::Range<usize>)>,
}

impl Built {
    fn base(&self) -> PathBuf {
        self.dir.path().join("q")
    }

    fn paths(&self) -> [PathBuf; 3] {
        let d = self.dir.path();
        [d.join("q0"), d.join("q1"), d.join("qmap")]
    }

    fn restore(&self) {
        for (path, bytes) in self.paths().iter().zip(&self.files) {
            std::fs::write(path, bytes).expect("restore a file");
        }
    }

    fn unread(&self) -> &[Vec<u8>] {
        &self.all[CONSUMED..]
    }
}

fn options(framing: Framing) -> OpenOptions {
    OpenOptions::new()
        .framing(framing)
        .create(false)
        .switch_grace(Duration::ZERO)
}

fn build(framing: Framing) -> Built {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let base = dir.path().join("q");
    let first: Vec<&[u8]> = FIRST.iter().map(|s| s.as_bytes()).collect();
    let second: Vec<&[u8]> = SECOND.iter().map(|s| s.as_bytes()).collect();
    {
        let create = OpenOptions::new()
            .framing(framing)
            .switch_grace(Duration::ZERO)
            // The reader moves writers to q1 as soon as it reads q0.
            .rotate_bytes(Some(1));
        let queue = Queue::open_with(&base, &create).expect("create the queue");
        let mut writer = queue.writer().expect("a writer");
        writer.send_batch(&first).expect("send the first batch");
        writer.flush().expect("flush");
        let mut reader = queue.reader().expect("the reader");
        for want in &first[..CONSUMED] {
            let got = reader.try_recv().expect("receive").expect("a record");
            assert_eq!(&*got, *want);
        }
        drop(reader);
        writer.send_batch(&second).expect("send the second batch");
        writer.flush().expect("flush");
    }
    let d = dir.path();
    let files = [
        std::fs::read(d.join("q0")).expect("read q0"),
        std::fs::read(d.join("q1")).expect("read q1"),
        std::fs::read(d.join("qmap")).expect("read qmap"),
    ];
    let info = dmq::MapInfo::load(&base).expect("the map");
    assert_eq!((info.readtarget, info.writetarget), (0, 1), "{info:?}");
    let mut spans = Vec::new();
    for (file, batch) in [(0, &FIRST[..]), (1, &SECOND[..])] {
        let mut at = 0;
        for payload in batch {
            let len = payload.len() + framing.overhead();
            spans.push((file, at..at + len));
            at += len;
        }
        assert_eq!(
            at,
            files[file].len(),
            "file {file} holds exactly the records"
        );
    }
    let all = FIRST
        .iter()
        .chain(&SECOND)
        .map(|s| s.as_bytes().to_vec())
        .collect();
    Built {
        dir,
        framing,
        files,
        all,
        spans,
    }
}

/// Opens the queue as its creator would and reads everything: the records, and the error
/// that ended the read, if any.
fn read_all(built: &Built) -> (Vec<Vec<u8>>, Option<Error>) {
    let mut got = Vec::new();
    let queue = match Queue::open_with(built.base(), &options(built.framing)) {
        Ok(queue) => queue,
        Err(e) => return (got, Some(e)),
    };
    if queue.framing() != built.framing {
        // The caller states its framing; the map's `mode` names another one.
        return (
            got,
            Some(Error::CorruptMap {
                path: built.paths()[2].clone(),
                reason: format!(
                    "mode at offset 12 is {}, this queue was created {}",
                    queue.framing(),
                    built.framing
                ),
            }),
        );
    }
    let mut reader = match queue.reader() {
        Ok(reader) => reader,
        Err(e) => return (got, Some(e)),
    };
    let mut empty = 0;
    // Two empty receives in a row: the second comes after any switch the first prepared.
    while empty < 2 {
        match reader.try_recv() {
            Ok(Some(m)) => {
                empty = 0;
                got.push(m.to_vec());
                assert!(got.len() <= 64, "more records than bytes: {got:?}");
            }
            Ok(None) => empty += 1,
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

/// Panics unless `error` names the damaged queue's file and the offset (the map: a field
/// at its offset, or its size).
fn assert_named(error: &Error, built: &Built, what: &str) {
    let paths = built.paths();
    let text = error.to_string();
    let ok = match error {
        Error::Corrupt { file, .. } | Error::TornRecord { file, .. } => {
            paths[..2].contains(file)
                && text.contains(&file.display().to_string())
                && text.contains("offset")
        }
        Error::CorruptMap { path, reason } => {
            *path == paths[2]
                && text.contains(&path.display().to_string())
                && (reason.contains("offset") || reason.contains("size is"))
        }
        Error::PathMismatch { map, field, .. } => *map == paths[2] && text.contains(field),
        _ => false,
    };
    assert!(
        ok,
        "{what}: the error does not name the file and offset: {text}"
    );
}

/// `got` is a run of whole written records, in order (possibly repeating consumed ones or
/// skipping some at the start).
fn is_run_of_written(got: &[Vec<u8>], all: &[Vec<u8>]) -> bool {
    got.is_empty() || (0..all.len()).any(|i| all[i..].starts_with(got))
}

#[derive(Default)]
struct Counts {
    cases: usize,
    intact: usize,
    rejected: usize,
    /// Damage the format cannot see, accepted within its confinement.
    undetected: usize,
    /// Whole written records repeated or skipped (map flips of `position`/`readtarget`).
    moved: usize,
}

/// Offsets of the map worth flipping: every header byte, and each stored path with its NUL
/// and the byte after it (the rest is zero padding no reader looks at).
fn map_offsets(map: &[u8]) -> Vec<usize> {
    let mut offsets: Vec<usize> = (0..OFF_PATHS[0]).collect();
    for start in OFF_PATHS {
        let len = map[start..start + PATH_LEN]
            .iter()
            .position(|&b| b == 0)
            .expect("a stored path ends in NUL");
        offsets.extend(start..start + len + 2);
    }
    offsets
}

fn flip_sweep(framing: Framing) {
    let built = build(framing);
    let watchdog = Watchdog::new();
    let mut counts = Counts::default();
    let paths = built.paths();
    for (file, path) in paths.iter().enumerate() {
        let offsets: Vec<usize> = if file == 2 {
            map_offsets(&built.files[2])
        } else {
            (0..built.files[file].len()).collect()
        };
        for offset in offsets {
            for bit in 0..8 {
                let what = format!(
                    "{framing}: bit {bit} of byte {offset} of {}",
                    path.display()
                );
                watchdog.case(&what);
                built.restore();
                let mut damaged = built.files[file].clone();
                damaged[offset] ^= 1 << bit;
                std::fs::write(path, &damaged).expect("damage");
                let (got, error) = read_all(&built);
                counts.cases += 1;
                if let Some(error) = &error {
                    assert_named(error, &built, &what);
                }
                if error.is_none() && got == built.unread() {
                    counts.intact += 1;
                    continue;
                }
                if file == 2 {
                    assert!(
                        is_run_of_written(&got, &built.all),
                        "{what}: a map flip gave records that were not written: {got:?}"
                    );
                    if error.is_some() && got.is_empty() {
                        counts.rejected += 1;
                    } else {
                        counts.moved += 1;
                    }
                    continue;
                }
                check_confined(&built, file, offset, &got, error.is_some(), &what);
                if error.is_some() && is_run_of_written(&got, built.unread()) {
                    counts.rejected += 1;
                } else {
                    counts.undetected += 1;
                }
            }
        }
    }
    eprintln!(
        "dmq {framing} flips: {} cases, {} intact, {} rejected with an error naming file and offset, \
         {} map flips repeating or skipping whole records, {} data flips accepted undetected \
         (no checksum; damage confined to the flipped record)",
        counts.cases, counts.intact, counts.rejected, counts.moved, counts.undetected
    );
    assert_eq!(
        counts.cases,
        counts.intact + counts.rejected + counts.moved + counts.undetected
    );
    assert!(counts.rejected > 0, "the sweep detected nothing");
}

/// Data damage at `offset` of data file `file`: the records it cannot reach are delivered
/// intact.
fn check_confined(
    built: &Built,
    file: usize,
    offset: usize,
    got: &[Vec<u8>],
    failed: bool,
    what: &str,
) {
    let framing = built.framing;
    // Indices (into `all`) of the records the flip touches.
    let hit = built
        .spans
        .iter()
        .position(|(f, span)| *f == file && span.contains(&offset))
        .expect("every byte of a data file belongs to a record");
    let span = &built.spans[hit].1;
    let last_touched = match framing {
        // A broken or new delimiter merges with or splits off the next record.
        Framing::Nulls | Framing::Newlines => hit + 1,
        // A length field re-frames the rest of its file.
        _ if offset < span.start + 2 => built
            .spans
            .iter()
            .rposition(|(f, _)| *f == file)
            .expect("the file has records"),
        _ => hit,
    };
    let unread = built.unread();
    // Records before the damage, and after it, that were still to be read.
    let before: Vec<&Vec<u8>> = (CONSUMED..hit.max(CONSUMED))
        .map(|i| &built.all[i])
        .collect();
    let after: Vec<&Vec<u8>> = ((last_touched + 1).max(CONSUMED)..built.all.len())
        .map(|i| &built.all[i])
        .collect();
    let got_refs: Vec<&Vec<u8>> = got.iter().collect();
    if last_touched < CONSUMED {
        // Only consumed records were damaged: nothing readable changes.
        assert!(
            failed && got.is_empty() || got == unread,
            "{what}: damage to consumed records changed the unread ones: {got:?}"
        );
        return;
    }
    assert!(
        got_refs.starts_with(&before) || (failed && before.starts_with(&got_refs)),
        "{what}: records before the damage were not delivered intact: {got:?}"
    );
    if !failed {
        assert!(
            got_refs.ends_with(&after),
            "{what}: records after the damage were not delivered intact: {got:?}"
        );
    }
    if framing == Framing::Frames && offset >= span.start + 2 && !failed {
        // A payload flip: the same records, one of them one bit different.
        assert_eq!(got.len(), unread.len(), "{what}: {got:?}");
        let differing = got.iter().zip(unread).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 1, "{what}: {got:?}");
    }
}

/// The records from `from` on that a reader can give when `file` is cut to `len` bytes:
/// those wholly before the cut; a partial record ends the read (the reader waits for its
/// writer, or reports it torn at the switch).
fn whole_records(built: &Built, file: usize, len: usize, from: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, (f, span)) in built.spans.iter().enumerate().skip(from) {
        if *f == file && span.end > len {
            if span.start < len {
                break;
            }
            continue;
        }
        out.push(built.all[i].clone());
    }
    out
}

fn truncation_sweep(framing: Framing) {
    let built = build(framing);
    let watchdog = Watchdog::new();
    let paths = built.paths();
    let mut counts = Counts::default();
    let position = built.spans[CONSUMED].1.start;
    for (file, path) in paths.iter().enumerate().take(2) {
        for len in 0..built.files[file].len() {
            let what = format!("{framing}: {} truncated to {len} bytes", path.display());
            watchdog.case(&what);
            built.restore();
            std::fs::write(path, &built.files[file][..len]).expect("truncate");
            let (got, error) = read_all(&built);
            counts.cases += 1;
            if let Some(error) = &error {
                assert_named(error, &built, &what);
            }
            let expected = whole_records(&built, file, len, CONSUMED);
            match file {
                0 if len < position => {
                    // q0 lost records already consumed. A drained file shorter than the
                    // position is what an interrupted switch leaves (truncated, then
                    // appended to by a late writer without the lock), so the reader reads
                    // it again from byte 0: whole records before the cut, then q1.
                    let again = whole_records(&built, file, len, 0);
                    assert!(
                        got == again || (error.is_some() && again.starts_with(&got)),
                        "{what}: expected {again:?}, got {got:?} ({error:?})"
                    );
                }
                _ => assert!(
                    got == expected || (error.is_some() && expected.starts_with(&got)),
                    "{what}: expected {expected:?}, got {got:?} ({error:?})"
                ),
            }
            if error.is_none() && got == built.unread() {
                counts.intact += 1;
            } else {
                counts.rejected += 1;
            }
        }
    }
    eprintln!(
        "dmq {framing} truncations: {} cases, {} read intact (cut after the last record), \
         {} gave the whole records before the cut and/or an error naming file and offset, \
         0 partial records accepted",
        counts.cases, counts.intact, counts.rejected
    );
}

#[test]
fn every_bit_flip_of_a_nulls_queue_is_detected_or_confined() {
    flip_sweep(Framing::Nulls);
}

#[test]
fn every_bit_flip_of_a_newlines_queue_is_detected_or_confined() {
    flip_sweep(Framing::Newlines);
}

#[test]
fn every_bit_flip_of_a_frames_queue_is_detected_or_confined() {
    flip_sweep(Framing::Frames);
}

/// The checked framing (ours): every flip of an unread record is refused with an error
/// naming the file and the offset. The only flips without an error leave what is read a
/// prefix of what was written: a flip in a consumed record (nothing readable changes), or a
/// length field flipped upwards in the write target, which reads as a record still being
/// written (the reader waits there, as it would for a writer's torn write).
#[test]
fn every_bit_flip_of_a_checked_queue_is_detected() {
    let built = build(Framing::Checked);
    let watchdog = Watchdog::new();
    let (mut cases, mut intact, mut rejected, mut waiting) = (0, 0, 0, 0);
    for (file, path) in built.paths().iter().enumerate().take(2) {
        for offset in 0..built.files[file].len() {
            for bit in 0..8 {
                let what = format!("checked: bit {bit} of byte {offset} of {}", path.display());
                watchdog.case(&what);
                built.restore();
                let mut damaged = built.files[file].clone();
                damaged[offset] ^= 1 << bit;
                std::fs::write(path, &damaged).expect("damage");
                let (got, error) = read_all(&built);
                cases += 1;
                assert!(
                    built.unread().starts_with(&got),
                    "{what}: delivered records that were not written: {got:?} ({error:?})"
                );
                match &error {
                    Some(error) => {
                        assert_named(error, &built, &what);
                        rejected += 1;
                    }
                    None if got == built.unread() => intact += 1,
                    None => waiting += 1,
                }
            }
        }
    }
    eprintln!(
        "dmq checked flips: {cases} cases, {intact} intact, {rejected} rejected with an error \
         naming file and offset, {waiting} read as a record still being written, 0 accepted \
         with changed content"
    );
    assert!(rejected > 0, "the sweep detected nothing");
}

#[test]
fn every_truncation_of_a_checked_queue_gives_whole_records_only() {
    truncation_sweep(Framing::Checked);
}

#[test]
fn every_truncation_of_the_map_is_refused_naming_its_size() {
    let built = build(Framing::Newlines);
    let watchdog = Watchdog::new();
    let map = &built.paths()[2];
    built.restore();
    // Opening fails on the size before anything is read or written: only the map changes,
    // so it is cut shorter and shorter in place.
    let file = std::fs::File::options()
        .write(true)
        .open(map)
        .expect("open the map");
    for len in (0..built.files[2].len()).rev() {
        let what = format!("{} truncated to {len} bytes", map.display());
        watchdog.case(&what);
        file.set_len(len as u64).expect("truncate");
        let (got, error) = read_all(&built);
        let error = error.unwrap_or_else(|| panic!("{what}: a short map was accepted: {got:?}"));
        assert_named(&error, &built, &what);
        assert!(
            error.to_string().contains(&format!("size is {len} bytes")),
            "{what}: {error}"
        );
    }
    eprintln!(
        "dmq map truncations: {} cases, all rejected naming the map and its size",
        built.files[2].len()
    );
}

#[test]
fn every_truncation_of_a_nulls_queue_gives_whole_records_only() {
    truncation_sweep(Framing::Nulls);
}

#[test]
fn every_truncation_of_a_newlines_queue_gives_whole_records_only() {
    truncation_sweep(Framing::Newlines);
}

#[test]
fn every_truncation_of_a_frames_queue_gives_whole_records_only() {
    truncation_sweep(Framing::Frames);
}
