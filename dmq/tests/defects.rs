//! One test per defect D1–D19 of the original (spec §4), the golden state transitions of
//! §2.3, and a model test against a `VecDeque`.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions as FsOpen};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dmq::{
    Commit, Durability, Error, Framing, OpenOptions, Queue, Reader, Repair, Wait, WriterSync,
};

fn fresh(framing: Framing) -> (tempfile::TempDir, PathBuf, Queue) {
    fresh_with(&OpenOptions::new().framing(framing))
}

fn fresh_with(opts: &OpenOptions) -> (tempfile::TempDir, PathBuf, Queue) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("q");
    let q = Queue::open_with(&base, opts).unwrap();
    (dir, base, q)
}

fn file(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn size(base: &Path, suffix: &str) -> u64 {
    fs::metadata(file(base, suffix)).unwrap().len()
}

fn drain(reader: &mut Reader) -> Vec<Vec<u8>> {
    reader.try_iter().map(|m| m.unwrap().into_vec()).collect()
}

/// (readtarget, writetarget, readoffset, position)
fn state(q: &Queue) -> (u8, u8, u64, u64) {
    let i = q.info().unwrap();
    (i.readtarget, i.writetarget, i.readoffset, i.position)
}

/// Empties a data file, as the reader's switch does.
fn truncate(base: &Path, suffix: &str) {
    File::options()
        .write(true)
        .open(file(base, suffix))
        .unwrap()
        .set_len(0)
        .unwrap();
}

fn poke_map(base: &Path, offset: u64, bytes: &[u8]) {
    let f = FsOpen::new().write(true).open(file(base, "map")).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

// ---- §2.3 reference transitions -------------------------------------------------------

#[test]
fn transitions_of_the_reference_table() {
    // 4 records of 14-byte payloads, all received: 60 bytes read, no flip (60 <= 100).
    let (_d, base, q) = fresh(Framing::Newlines);
    let mut w = q.writer().unwrap();
    for _ in 0..4 {
        w.send(b"abcdefghijklmn").unwrap();
    }
    let mut r = q.reader().unwrap();
    assert_eq!(drain(&mut r).len(), 4);
    assert_eq!(state(&q), (0, 0, 60, 60));
    assert_eq!((size(&base, "0"), size(&base, "1")), (60, 0));

    // 10 records of 63-byte payloads, the reader took one.
    let (_d, base, q) = fresh(Framing::Newlines);
    let mut w = q.writer().unwrap();
    for _ in 0..10 {
        w.send(&[b'x'; 63]).unwrap();
    }
    let mut r = q.reader().unwrap();
    r.try_recv().unwrap().unwrap();
    assert_eq!(state(&q), (0, 0, 640, 64));
    assert_eq!(size(&base, "0"), 640);

    // 10 records of 64-byte payloads, all taken: first EOF moves writers, second switches.
    let (_d, base, q) = fresh(Framing::Newlines);
    let mut w = q.writer().unwrap();
    for _ in 0..10 {
        w.send(&[b'y'; 64]).unwrap();
    }
    let mut r = q.reader().unwrap();
    for _ in 0..10 {
        r.try_recv().unwrap().unwrap();
    }
    assert!(r.try_recv().unwrap().is_none());
    assert_eq!(state(&q), (0, 1, 650, 650));
    assert!(r.try_recv().unwrap().is_none());
    assert_eq!(state(&q), (1, 1, 0, 0));
    assert_eq!(size(&base, "0"), 0);
}

#[test]
fn fresh_map_and_data_bytes_follow_the_tables() {
    for framing in [
        Framing::Nulls,
        Framing::Newlines,
        Framing::Frames,
        Framing::Raw,
        Framing::Checked,
    ] {
        let (_d, base, q) = fresh(framing);
        let map = fs::read(file(&base, "map")).unwrap();
        assert_eq!(map.len(), 12_320);
        let mut head = vec![0u8; 12];
        head.extend_from_slice(&framing.mode().to_le_bytes());
        head.extend_from_slice(&[0; 16]);
        assert_eq!(&map[..32], &head[..], "{framing}");
        // Paths are stored absolute (D16), NUL-terminated, zero-padded.
        let abs = std::path::absolute(&base).unwrap();
        for (i, (off, suffix)) in [(32, "0"), (4128, "1"), (8224, "map")].iter().enumerate() {
            let want = file(&abs, suffix);
            let want = want.as_os_str().as_encoded_bytes();
            assert_eq!(&map[*off..off + want.len()], want, "path {i}");
            assert!(map[off + want.len()..off + 4096].iter().all(|&b| b == 0));
        }
        let mut w = q.writer().unwrap();
        w.send(b"abc").unwrap();
        w.send(b"defgh").unwrap();
        let data = fs::read(file(&base, "0")).unwrap();
        let want: &[u8] = match framing {
            Framing::Nulls => b"abc\0defgh\0",
            Framing::Newlines => b"abc\ndefgh\n",
            Framing::Frames => &[5, 0, b'a', b'b', b'c', 7, 0, b'd', b'e', b'f', b'g', b'h'],
            Framing::Raw => b"abcdefgh",
            // Length (payload + 8) and CRC-32C (0x364b3fb7, 0xb5546d6f), little-endian.
            Framing::Checked => &[
                11, 0, 0, 0, 183, 63, 75, 54, b'a', b'b', b'c', //
                13, 0, 0, 0, 111, 109, 84, 181, b'd', b'e', b'f', b'g', b'h',
            ],
        };
        assert_eq!(data, want, "{framing}");
        for mode in [0o600] {
            use std::os::unix::fs::PermissionsExt;
            for s in ["0", "1", "map"] {
                let m = fs::metadata(file(&base, s)).unwrap().permissions().mode() & 0o777;
                assert_eq!(m, mode, "{framing}: permissions of {s}");
            }
        }
    }
}

// ---- D1–D19 -----------------------------------------------------------------------------

#[test]
fn d01_frames_are_all_delivered() {
    let (_d, _b, q) = fresh(Framing::Frames);
    let mut w = q.writer().unwrap();
    for m in [&b"one"[..], b"", b"three\n\0"] {
        w.send(m).unwrap();
    }
    let mut r = q.reader().unwrap();
    assert_eq!(drain(&mut r), [&b"one"[..], b"", b"three\n\0"]);
}

#[test]
fn d02_try_recv_on_empty_is_none_every_time() {
    let (_d, _b, q) = fresh(Framing::Newlines);
    let mut r = q.reader().unwrap();
    for _ in 0..10 {
        assert!(r.try_recv().unwrap().is_none());
    }
}

#[test]
fn d03_large_records_are_whole_and_exact() {
    for framing in [Framing::Newlines, Framing::Frames, Framing::Nulls] {
        let (_d, _b, q) = fresh(framing);
        let mut w = q.writer().unwrap();
        let big: Vec<Vec<u8>> = [10_000usize, 60_000, 65_533, 8_193]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| b'a' + ((i + j) % 26) as u8).collect())
            .collect();
        for m in &big {
            w.send(m).unwrap();
        }
        let mut r = q.reader().unwrap();
        assert_eq!(drain(&mut r), big, "{framing}");
    }
}

#[test]
fn d04_oversized_payloads_are_refused_and_nothing_is_written() {
    for (framing, len, max) in [
        (Framing::Frames, 70_000, 65_533),
        (Framing::Frames, 65_534, 65_533),
        (Framing::Newlines, 70_000, 65_535),
    ] {
        let (_d, base, q) = fresh(framing);
        let mut w = q.writer().unwrap();
        match w.send(&vec![b'z'; len]) {
            Err(Error::TooLarge { len: l, max: m }) => assert_eq!((l, m), (len, max)),
            other => panic!("{framing}: {other:?}"),
        }
        assert_eq!((size(&base, "0"), size(&base, "1")), (0, 0));
        // A batch with one bad message writes none of them.
        assert!(w.send_batch(&[&b"ok"[..], &vec![b'z'; len]]).is_err());
        assert_eq!(size(&base, "0"), 0);
    }
}

#[test]
fn d05_openers_never_change_the_map_and_the_reader_republishes() {
    let (_d, base, q) = fresh(Framing::Newlines);
    let mut w = q.writer().unwrap();
    for i in 0..10 {
        w.send(format!("m{i}").as_bytes()).unwrap();
    }
    let mut r = q.reader().unwrap();
    r.try_recv().unwrap().unwrap();
    let before = fs::read(file(&base, "map")).unwrap();
    // Openers of every kind: a queue handle, a writer, info, the -p snapshot.
    let q2 = Queue::open(&base, None).unwrap();
    drop(q2.writer().unwrap());
    q2.info().unwrap();
    dmq::MapInfo::load(&base).unwrap();
    assert_eq!(fs::read(file(&base, "map")).unwrap(), before);

    // An original process resets readoffset on open; the reader's commit point survives.
    poke_map(&base, 16, &0u64.to_le_bytes());
    assert_eq!(&*r.try_recv().unwrap().unwrap(), b"m1");
    let (_, _, readoffset, position) = state(&q);
    assert_eq!((readoffset, position), (30, 6));
    drop(r);
    let mut r = q.reader().unwrap();
    assert_eq!(&*r.try_recv().unwrap().unwrap(), b"m2");
}

/// Fills file 0 past the switch size and lets the reader drain it and move writers.
fn flipped(opts: &OpenOptions) -> (tempfile::TempDir, PathBuf, Queue, Reader) {
    let (d, base, q) = fresh_with(opts);
    let mut w = q.writer().unwrap();
    for i in 0..4 {
        w.send(format!("{i:040}").as_bytes()).unwrap();
    }
    let mut r = q.reader().unwrap();
    assert_eq!(drain(&mut r).len(), 4);
    assert_eq!(state(&q).1, 1, "writers moved to file 1");
    (d, base, q, r)
}

#[test]
fn d06_a_writer_inside_its_append_at_the_flip_is_not_lost() {
    // Flock: a writer holds its shared lock across choose-and-append; the reader's drain
    // waits for it and reads the late record instead of truncating it away.
    let (_d, base, q) = fresh(Framing::Newlines);
    let late = File::options().append(true).open(file(&base, "0")).unwrap();
    let mut w = q.writer().unwrap();
    for i in 0..4 {
        w.send(format!("{i:040}").as_bytes()).unwrap();
    }
    let mut r = q.reader().unwrap();
    late.lock_shared().unwrap(); // the writer chose file 0 and is about to append
    assert_eq!(drain(&mut r).len(), 4); // ... then the reader moves writers
    assert_eq!(state(&q).1, 1);
    let appender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        (&late).write_all(b"late\n").unwrap();
        late.unlock().unwrap();
    });
    w.send(b"after").unwrap(); // goes to file 1
    let got: Vec<Vec<u8>> = (0..2)
        .map(|_| r.recv(Wait::Forever).unwrap().unwrap().into_vec())
        .collect();
    appender.join().unwrap();
    assert_eq!(got, [&b"late"[..], b"after"]);

    // Grace: a writer without a lock that appends within the grace delay is not lost.
    let (_d, base, q, mut r) = flipped(
        &OpenOptions::new()
            .writer_sync(WriterSync::Grace)
            .switch_grace(Duration::from_millis(300)),
    );
    let late = File::options().append(true).open(file(&base, "0")).unwrap();
    let appender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        (&late).write_all(b"late\n").unwrap();
    });
    let got = r.recv(Wait::Forever).unwrap().unwrap();
    appender.join().unwrap();
    assert_eq!(&*got, b"late");
    drop(q);
}

/// Builds the state a switch leaves after each of its steps, as a crash would, and checks
/// a new reader delivers the other file's records exactly once.
#[test]
fn d07_every_prefix_of_the_switch_recovers() {
    for step in 0..4 {
        let (_d, base, q, r) = flipped(&OpenOptions::new());
        drop(r);
        let mut w = q.writer().unwrap();
        w.send(b"new-1").unwrap();
        w.send(b"new-2").unwrap();
        let old_len = size(&base, "0");
        // Steps: 0 flip only; 1 + truncate; 2 + position = 0; 3 + readtarget = 1.
        if step >= 1 {
            truncate(&base, "0");
        }
        if step >= 2 {
            poke_map(&base, 16, &[0; 16]);
        }
        if step >= 3 {
            poke_map(&base, 0, &1i32.to_le_bytes());
        }
        let expect_pos = if step >= 2 { 0 } else { old_len };
        assert_eq!(state(&q).3, expect_pos);
        let mut r = q.reader().unwrap();
        assert_eq!(drain(&mut r), [&b"new-1"[..], b"new-2"], "step {step}");
    }
    // The original's bad order (readtarget before position) leaves rt = wt = 1 with the
    // old offset: refused instead of skipping records of file 1.
    let (_d, base, q, r) = flipped(&OpenOptions::new());
    drop(r);
    q.writer().unwrap().send(b"new").unwrap();
    truncate(&base, "0");
    poke_map(&base, 0, &1i32.to_le_bytes());
    assert!(matches!(q.reader(), Err(Error::CorruptMap { .. })));
    q.repair(Repair::Rewind).unwrap();
    assert_eq!(drain(&mut q.reader().unwrap()), [&b"new"[..]]);
}

#[test]
fn d08_explicit_commit_redelivers_what_was_not_committed() {
    let opts = OpenOptions::new().commit(Commit::Explicit);
    let (_d, base, q) = fresh_with(&opts);
    let mut w = q.writer().unwrap();
    for i in 0..4 {
        w.send(format!("{i:040}").as_bytes()).unwrap();
    }
    let mut r = q.reader().unwrap();
    assert_eq!(drain(&mut r).len(), 4);
    // Writers moved; more messages go to file 1 and are read before any commit.
    w.send(b"in-file-1").unwrap();
    assert_eq!(&*r.recv(Wait::Forever).unwrap().unwrap(), b"in-file-1");
    assert!(
        size(&base, "0") > 0,
        "file 0 kept while its messages are uncommitted"
    );
    drop(r);
    let mut r = q.reader().unwrap();
    let again = drain(&mut r);
    assert_eq!(again.len(), 5, "everything uncommitted comes again");
    assert_eq!(again[4], b"in-file-1");
    // Commit part: only up to the mark.
    drop(r);
    let mut r = q.reader().unwrap();
    let first = r.try_recv().unwrap().unwrap();
    let _second = r.try_recv().unwrap().unwrap();
    r.commit_to(first.mark()).unwrap();
    drop(r);
    let mut r = q.reader().unwrap();
    assert_eq!(drain(&mut r).len(), 4);
    r.commit().unwrap();
    assert_eq!(
        size(&base, "0"),
        0,
        "commit across the switch truncates file 0"
    );
    drop(r);
    let mut r = q.reader().unwrap();
    assert!(r.try_recv().unwrap().is_none());
}

/// An option value is no reason to panic: a huge grace makes the reader wait (it is capped
/// at an hour) instead of overflowing the clock.
#[test]
fn d06_a_huge_switch_grace_waits_instead_of_panicking() {
    let (_d, _b, q, mut r) = flipped(&OpenOptions::new().switch_grace(Duration::MAX));
    q.writer().unwrap().send(b"in-file-1").unwrap();
    assert!(r.recv_timeout(Duration::from_millis(20)).unwrap().is_none());
}

/// A drained file 0 kept for an explicit commit, while the reader has delivered the first
/// record of file 1.
fn kept_switch(opts: &OpenOptions) -> (tempfile::TempDir, PathBuf, Queue, Reader) {
    let (d, base, q, mut r) = flipped(opts);
    q.writer().unwrap().send(b"in-file-1").unwrap();
    assert_eq!(&*r.try_recv().unwrap().unwrap(), b"in-file-1");
    assert!(size(&base, "0") > 0, "file 0 kept until the commit");
    (d, base, q, r)
}

/// Explicit commit keeps a drained file until its deliveries are committed. A writer
/// without the lock (the original's, or `WriterSync::Grace`) that chose that file before
/// the flip may append to it in between: the commit that finishes the switch must not
/// truncate that record away, and must not deliver anything twice.
#[test]
fn d06_a_late_lockless_append_to_a_kept_file_survives_the_commit() {
    let opts = OpenOptions::new()
        .commit(Commit::Explicit)
        .writer_sync(WriterSync::Grace)
        .switch_grace(Duration::ZERO);
    let (_d, base, q, mut r) = kept_switch(&opts);
    // The late writer, stalled between reading `writetarget` and its append.
    let late = || FsOpen::new().append(true).open(file(&base, "0")).unwrap();
    late().write_all(b"late\n").unwrap();
    r.commit().unwrap();
    assert_eq!(size(&base, "0"), 0, "the switch finished");
    assert_eq!(drain(&mut r), [&b"late"[..]]);
    r.commit().unwrap();
    drop(r);
    let mut r = q.reader().unwrap();
    assert!(r.try_recv().unwrap().is_none(), "nothing delivered twice");
    drop(r);

    // A late record still being written (no terminator yet) is not cut off either: the
    // commit reports it as torn and keeps the file; once complete it is delivered.
    let (_d, base, q, mut r) = kept_switch(&opts);
    let late = FsOpen::new().append(true).open(file(&base, "0")).unwrap();
    (&late).write_all(b"whole\nhal").unwrap();
    match r.commit() {
        Err(Error::TornRecord { file: f, offset }) => {
            assert_eq!((f, offset), (file(&base, "0"), 170));
        }
        other => panic!("{other:?}"),
    }
    assert!(size(&base, "0") > 0, "file 0 kept");
    (&late).write_all(b"f\n").unwrap();
    r.commit().unwrap();
    assert_eq!(size(&base, "0"), 0);
    assert_eq!(drain(&mut r), [&b"whole"[..], b"half"]);
    r.commit().unwrap();
    drop(r);
    assert!(q.reader().unwrap().try_recv().unwrap().is_none());

    // A late writer that died inside its record: `skip_torn` drops the tail, as at any
    // switch, and the whole records before it are kept.
    let (_d, base, _q, mut r) = kept_switch(&opts);
    let late = FsOpen::new().append(true).open(file(&base, "0")).unwrap();
    (&late).write_all(b"whole\ndead-writer").unwrap();
    assert!(matches!(r.commit(), Err(Error::TornRecord { .. })));
    r.skip_torn().unwrap();
    r.commit().unwrap();
    assert_eq!(size(&base, "0"), 0);
    assert_eq!(drain(&mut r), [&b"whole"[..]]);
}

#[test]
fn d09_rotation_and_backlog_bound_a_lagging_reader() {
    let (_d, base, q) = fresh_with(&OpenOptions::new().rotate_bytes(Some(1_000)));
    let mut w = q.writer().unwrap();
    for i in 0..100 {
        w.send(format!("{i:063}").as_bytes()).unwrap();
    }
    let mut r = q.reader().unwrap();
    assert_eq!(
        &*r.try_recv().unwrap().unwrap(),
        format!("{:063}", 0).as_bytes()
    );
    assert_eq!(state(&q).1, 1, "writers moved before the reader caught up");
    for i in 100..200 {
        w.send(format!("{i:063}").as_bytes()).unwrap();
    }
    assert_eq!(size(&base, "0"), 6_400, "file 0 stopped growing");
    let rest = drain(&mut r);
    assert_eq!(rest.len(), 199);
    for (i, m) in rest.iter().enumerate() {
        assert_eq!(m, format!("{:063}", i + 1).as_bytes());
    }

    let (_d, base, q) = fresh_with(&OpenOptions::new().max_backlog_bytes(Some(650)));
    let mut w = q.writer().unwrap();
    for _ in 0..10 {
        w.send(&[b'b'; 64]).unwrap();
    }
    assert!(matches!(
        w.send(b"x"),
        Err(Error::Full { backlog: 650, .. })
    ));
    assert_eq!(size(&base, "0"), 650);
    let mut r = q.reader().unwrap();
    r.try_recv().unwrap().unwrap();
    w.send(b"fits now").unwrap();
}

#[test]
fn d10_a_blocked_reader_is_woken_by_each_send() {
    // Behaviour only (timings are for the benchmark): a parked reader in another thread
    // receives 200 ping-pong messages, each sent only after the previous one arrived.
    let (_d, base, q) = fresh(Framing::Newlines);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut r = q.reader().unwrap();
    let reader = std::thread::spawn(move || {
        for _ in 0..200 {
            let m = r.recv(Wait::Forever).unwrap().unwrap();
            tx.send(m.into_vec()).unwrap();
        }
    });
    let q2 = Queue::open(&base, None).unwrap();
    let mut w = q2.writer().unwrap();
    let started = std::time::Instant::now();
    for i in 0..200 {
        w.send(format!("ping {i}").as_bytes()).unwrap();
        assert_eq!(rx.recv().unwrap(), format!("ping {i}").as_bytes());
    }
    reader.join().unwrap();
    eprintln!("200 round trips in {:?}", started.elapsed());
}

#[test]
fn d11_bad_maps_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("q");
    for len in [0usize, 100, 12_319, 12_321] {
        fs::write(file(&base, "map"), vec![0u8; len]).unwrap();
        match Queue::open(&base, None) {
            Err(Error::CorruptMap { reason, .. }) => assert!(reason.contains("size"), "{reason}"),
            other => panic!("{len} bytes: {other:?}"),
        }
    }
    let good = dmq::format::MapImage::new(Framing::Newlines, Default::default())
        .encode()
        .unwrap();
    for (offset, value, what) in [
        (0usize, 5i32, "readtarget"),
        (4, -1, "writetarget"),
        (12, 5, "mode"),
    ] {
        let mut bad = good.clone();
        bad[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        fs::write(file(&base, "map"), &bad).unwrap();
        match Queue::open(&base, None) {
            Err(Error::CorruptMap { reason, .. }) => assert!(reason.contains(what), "{reason}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // The position rule: beyond the end of the file writers use.
    let mut bad = good.clone();
    bad[24..32].copy_from_slice(&1000u64.to_le_bytes());
    fs::write(file(&base, "map"), &bad).unwrap();
    let q = Queue::open(&base, None).unwrap();
    match q.reader() {
        Err(Error::CorruptMap { reason, .. }) => assert!(reason.contains("position 1000")),
        other => panic!("{other:?}"),
    }
}

/// The map is untrusted: `dmq -p` (`MapInfo::load`) on a huge file refuses it by its size
/// instead of reading it all into memory.
#[test]
fn d11_a_huge_map_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("q");
    let map = File::create(file(&base, "map")).unwrap();
    map.set_len(1 << 40).unwrap(); // 1 TiB, sparse
    match dmq::MapInfo::load(&base) {
        Err(Error::CorruptMap { path, reason }) => {
            assert_eq!(path, file(&base, "map"));
            assert!(reason.contains("expected exactly 12320"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn d12_concurrent_creators_share_one_complete_map() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("q");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let base = base.clone();
                std::thread::spawn(move || Queue::open(&base, Some(Framing::Frames)).unwrap())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().framing(), Framing::Frames);
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "no temporary files left: {names:?}");
        assert_eq!(size(&base, "map"), 12_320);
    }
}

#[test]
fn d13_raw_queues_cannot_be_read_but_can_be_written() {
    let (_d, base, q) = fresh(Framing::Raw);
    q.writer().unwrap().send(b"raw bytes\n\0").unwrap();
    assert_eq!(fs::read(file(&base, "0")).unwrap(), b"raw bytes\n\0");
    assert!(matches!(q.reader(), Err(Error::Unsupported(_))));
}

#[test]
fn d14_delimiters_inside_payloads_are_refused() {
    let (_d, base, q) = fresh(Framing::Newlines);
    let mut w = q.writer().unwrap();
    assert!(matches!(
        w.send(b"two\nlines"),
        Err(Error::DelimiterInPayload { at: 3, .. })
    ));
    assert_eq!(size(&base, "0"), 0);
    // For fidelity, the check can be turned off: the payload splits as in the original.
    let (_d, _b, q) = fresh_with(&OpenOptions::new().reject_delimiter(false));
    q.writer().unwrap().send(b"two\nlines").unwrap();
    assert_eq!(drain(&mut q.reader().unwrap()), [&b"two"[..], b"lines"]);
}

#[test]
fn d15_two_queues_in_one_process_keep_their_own_state() {
    let (_d1, _b1, a) = fresh(Framing::Newlines);
    let (_d2, _b2, b) = fresh(Framing::Frames);
    let (mut wa, mut wb) = (a.writer().unwrap(), b.writer().unwrap());
    for i in 0..50 {
        wa.send(format!("a{i}").as_bytes()).unwrap();
        wb.send(format!("b{i}").as_bytes()).unwrap();
    }
    let (mut ra, mut rb) = (a.reader().unwrap(), b.reader().unwrap());
    for i in 0..50 {
        assert_eq!(
            &*ra.try_recv().unwrap().unwrap(),
            format!("a{i}").as_bytes()
        );
        assert_eq!(
            &*rb.try_recv().unwrap().unwrap(),
            format!("b{i}").as_bytes()
        );
    }
    // And one reader per queue.
    assert!(matches!(a.reader(), Err(Error::ReaderBusy { .. })));
}

#[test]
fn d16_stored_paths_naming_other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other0");
    fs::write(&other, b"someone else's file").unwrap();
    let base = dir.path().join("q");
    let mut paths: [Vec<u8>; 3] = Default::default();
    paths[0] = other.as_os_str().as_encoded_bytes().to_vec();
    let map = dmq::format::MapImage::new(Framing::Newlines, paths)
        .encode()
        .unwrap();
    fs::write(file(&base, "map"), map).unwrap();
    match Queue::open(&base, None) {
        Err(Error::PathMismatch { field, .. }) => assert_eq!(field, "path0"),
        other => panic!("{other:?}"),
    }
    // A moved queue (stored paths that no longer exist) opens by its basepath.
    fs::remove_file(&other).unwrap();
    Queue::open(&base, None).unwrap();
}

#[test]
fn d17_durability_levels_and_flush() {
    for durability in [Durability::PageCache, Durability::Data, Durability::Full] {
        let (_d, _b, q) = fresh_with(&OpenOptions::new().durability(durability));
        let mut w = q.writer().unwrap();
        for i in 0..20 {
            w.send(format!("{i:040}").as_bytes()).unwrap();
        }
        w.flush().unwrap();
        let mut r = q.reader().unwrap();
        let mut got = drain(&mut r);
        got.extend(drain(&mut r));
        assert_eq!(got.len(), 20, "{durability:?}");
    }
}

/// `err` is an I/O error of operation `op`.
#[cfg(feature = "fault-injection")]
fn assert_io(err: &Error, op: &str) {
    assert!(matches!(err, Error::Io { op: o, .. } if *o == op), "{err}");
}

/// A failed sync is never retried: the handle refuses everything after it (a retried
/// fsync can report success for data that never reached the disk).
#[cfg(feature = "fault-injection")]
#[test]
fn d17_a_failed_sync_poisons_the_handle() {
    use dmq::fault_injection::fail_next_syncs;

    // A writer with `Durability::Data`: the send's fdatasync fails.
    let (_d, _b, q) = fresh_with(&OpenOptions::new().durability(Durability::Data));
    let mut w = q.writer().unwrap();
    w.send(b"one").unwrap();
    fail_next_syncs(1);
    let err = w.send(b"two").unwrap_err();
    assert_io(&err, "fdatasync");
    assert!(matches!(w.send(b"three"), Err(Error::Poisoned)));
    assert!(matches!(w.flush(), Err(Error::Poisoned)));
    q.writer().unwrap().send(b"four").unwrap(); // a new handle starts clean

    // A page-cache writer's flush.
    let (_d, _b, q) = fresh(Framing::Newlines);
    let mut w = q.writer().unwrap();
    w.send(b"x").unwrap();
    fail_next_syncs(1);
    let err = w.flush().unwrap_err();
    assert_io(&err, "fdatasync");
    assert!(matches!(w.flush(), Err(Error::Poisoned)), "not retried");
    assert!(matches!(w.send(b"y"), Err(Error::Poisoned)));

    // A reader with `Durability::Full`: the commit's msync fails.
    let opts = OpenOptions::new()
        .durability(Durability::Full)
        .commit(Commit::Explicit);
    let (_d, _b, q) = fresh_with(&opts);
    let mut w = q.writer().unwrap();
    w.send(b"a").unwrap();
    w.send(b"b").unwrap();
    let mut r = q.reader().unwrap();
    assert_eq!(&*r.try_recv().unwrap().unwrap(), b"a");
    fail_next_syncs(1);
    let err = r.commit().unwrap_err();
    assert_io(&err, "msync");
    assert!(matches!(r.try_recv(), Err(Error::Poisoned)));
    assert!(matches!(r.commit(), Err(Error::Poisoned)));
}

/// A data file that an open has to create again (deleted by hand) is a new directory
/// entry: the open syncs the directory, or sends synced into that file could vanish with
/// the entry at a power cut.
#[cfg(feature = "fault-injection")]
#[test]
fn d17_an_open_that_recreates_a_data_file_syncs_the_directory() {
    use dmq::fault_injection::fail_next_syncs;
    let (_d, base, q) = fresh(Framing::Newlines);
    drop(q);
    Queue::open(&base, None).unwrap(); // nothing created: no sync needed
    fs::remove_file(file(&base, "1")).unwrap();
    fail_next_syncs(1);
    let err = Queue::open(&base, None).unwrap_err();
    fail_next_syncs(0);
    assert_io(&err, "sync directory");
    assert_eq!(size(&base, "1"), 0, "recreated");
    Queue::open(&base, None).unwrap();
}

#[test]
fn d18_iterators_end_instead_of_failing() {
    let (_d, _b, q) = fresh(Framing::Newlines);
    let mut w = q.writer().unwrap();
    w.send(b"only").unwrap();
    let mut r = q.reader().unwrap();
    assert_eq!(r.try_iter().count(), 1);
    assert_eq!(r.try_iter().count(), 0);
}

#[test]
fn d19_a_torn_tail_at_the_switch_is_reported_then_skipped() {
    let (_d, base, q, mut r) = flipped(&OpenOptions::new().switch_grace(Duration::ZERO));
    // A writer died inside its record: no terminator.
    fs::OpenOptions::new()
        .append(true)
        .open(file(&base, "0"))
        .unwrap()
        .write_all(b"torn-without-newline")
        .unwrap();
    q.writer().unwrap().send(b"next").unwrap();
    match r.try_recv() {
        Err(Error::TornRecord { file: f, offset }) => {
            assert_eq!(f, file(&base, "0"));
            assert_eq!(offset, 164);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(r.try_recv(), Err(Error::TornRecord { .. })));
    r.skip_torn().unwrap();
    assert_eq!(&*r.try_recv().unwrap().unwrap(), b"next");
}

// ---- model ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Send(Vec<u8>),
    Recv,
    Reopen,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => proptest::collection::vec(b'a'..=b'z', 0..90).prop_map(Op::Send),
        4 => Just(Op::Recv),
        1 => Just(Op::Reopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]
    #[test]
    fn behaves_like_a_vecdeque(ops in proptest::collection::vec(op(), 1..120), mode in 0i32..3) {
        let framing = Framing::from_mode(mode).unwrap();
        let opts = OpenOptions::new().framing(framing).switch_grace(Duration::ZERO);
        let (_d, base, q) = fresh_with(&opts);
        let mut w = q.writer().unwrap();
        let mut r = Some(q.reader().unwrap());
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                Op::Send(m) => {
                    w.send(&m).unwrap();
                    model.push_back(m);
                }
                Op::Recv => {
                    let got = r.as_mut().unwrap().try_recv().unwrap().map(|m| m.into_vec());
                    // A receive right after a move of writers may report nothing once.
                    let got = match got {
                        None => r.as_mut().unwrap().try_recv().unwrap().map(|m| m.into_vec()),
                        some => some,
                    };
                    proptest::prop_assert_eq!(got, model.pop_front());
                }
                Op::Reopen => {
                    drop(r.take());
                    let q = Queue::open_with(&base, &opts).unwrap();
                    r = Some(q.reader().unwrap());
                    w = q.writer().unwrap();
                }
            }
        }
    }
}
