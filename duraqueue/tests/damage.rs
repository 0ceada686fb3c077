//! Bit-flip and torn-write sweeps over small queue files.
//!
//! A queue file is untrusted: a disk, a crash or another program may have damaged it. For
//! every single-bit flip (and every truncation) of a small file, opening it and reading it
//! must give records that were written, each at its own sequence number, or an error naming
//! the file (and the offset, for damage inside the ring); never other bytes, never a panic.
//!
//! v2 protects every header, footer and payload with CRC32C, so every bit of it is swept. v1
//! (the C original's format) has no checksums: a flipped payload bit is undetectable by
//! design, so its sweep covers the header and footer frames, which it can check.
//!
//! What the sweep does not demand: that records after a damaged header are delivered. A
//! header that does not decode ends the chain, as a commit torn by a crash does (its headers
//! are written last), and recovery cannot tell the two apart.

use std::collections::HashMap;
use std::fs::OpenOptions as FsOpen;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use duraqueue::format::{Format, SLOT, SUPERBLOCK_SIZE};
use duraqueue::{DuraQueue, Error, OpenOptions};

const RING: u64 = 4096;

/// Records consumed before the damage, so the head is not at the ring start.
const CONSUMED: usize = 2;

/// Payloads of assorted lengths and contents (empty, one byte, across slot boundaries).
fn payloads() -> Vec<Vec<u8>> {
    [0usize, 1, 31, 32, 100, 257, 600]
        .iter()
        .enumerate()
        .map(|(i, &len)| (0..len).map(|j| (i * 37 + j * 11) as u8).collect())
        .collect()
}

/// Writes the payloads, consumes the first two (so the head is not at offset 0) and returns
/// the file's bytes, the written payloads by sequence number and the byte range of the
/// records inside the file.
fn build(dir: &Path, format: Format) -> (Vec<u8>, HashMap<u64, Vec<u8>>, Range<usize>) {
    let path = dir.join("q");
    let mut by_seq = HashMap::new();
    {
        let mut q = DuraQueue::open_with(&path, &OpenOptions::new(RING).format(format))
            .expect("create the queue");
        for payload in payloads() {
            let seq = q.offer(&payload).expect("offer");
            by_seq.insert(seq, payload);
        }
        for _ in 0..CONSUMED {
            q.pop_with(|_| ()).expect("pop").expect("a record");
        }
        q.close().expect("close");
    }
    let bytes = std::fs::read(&path).expect("read the file");
    let ring_start = match format {
        Format::V1 => 0,
        Format::V2 => SUPERBLOCK_SIZE as usize,
    };
    // Everything the records occupy (the ring is far from full: no wrap).
    let used: u64 = payloads()
        .iter()
        .map(|p| duraqueue::format::record_size(p.len() as u64))
        .sum();
    (
        bytes,
        by_seq,
        ring_start..ring_start + (used + SLOT) as usize,
    )
}

/// Opens the damaged file and reads everything it offers; panics (the test fails) on a record
/// that was not written, or not at its sequence number. Returns whether the open failed.
fn check(path: &Path, by_seq: &HashMap<u64, Vec<u8>>, what: &str) -> bool {
    let queue = match DuraQueue::open_with(path, &OpenOptions::new(0).create(false).reader(true)) {
        Ok(queue) => queue,
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains(&path.display().to_string())
                    || matches!(error, Error::InvalidSize { .. }),
                "{what}: the error does not name the file: {text}"
            );
            if let Error::Corrupt { .. } = error {
                assert!(text.contains("offset"), "{what}: {text}");
            }
            return true;
        }
    };
    for (seq, _pos, payload) in queue.records() {
        match by_seq.get(&seq) {
            Some(written) => assert_eq!(
                payload,
                written.as_slice(),
                "{what}: record {seq} has bytes that were never written"
            ),
            None => panic!("{what}: record {seq} was never written"),
        }
    }
    false
}

fn flip_sweep(format: Format, frames_only: bool) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (original, by_seq, records) = build(dir.path(), format);
    let path = dir.path().join("q");
    let file = FsOpen::new()
        .write(true)
        .open(&path)
        .expect("open for damage");

    let mut offsets: Vec<usize> = records.clone().collect();
    if format == Format::V2 {
        // Both superblock copies, every byte of them that is not padding.
        offsets.extend(0..64);
        offsets.extend(512..576);
    }
    if frames_only {
        // v1: header and footer frames only (payload bytes carry no checksum).
        let frame_offsets = frame_offsets(&by_seq, records.start);
        offsets.retain(|o| frame_offsets.contains(o));
    }
    assert!(!offsets.is_empty());
    let (mut flips, mut refused) = (0, 0);
    for &offset in &offsets {
        for bit in 0..8 {
            let mut damaged = original[offset];
            damaged ^= 1 << bit;
            file.write_all_at(&[damaged], offset as u64)
                .expect("damage");
            let what = format!("{format:?} bit {bit} of byte {offset}");
            refused += usize::from(check(&path, &by_seq, &what));
            flips += 1;
            file.write_all_at(&original, 0).expect("restore");
        }
    }
    eprintln!(
        "{format:?}: {flips} single-bit flips, {refused} refused at open, none gave bytes that were not written"
    );
}

/// The file offsets of every header and footer byte of the records (v1 layout: header,
/// payload, padding, footer; records back to back from the ring start).
fn frame_offsets(by_seq: &HashMap<u64, Vec<u8>>, start: usize) -> Vec<usize> {
    let mut lens: Vec<(u64, usize)> = by_seq.iter().map(|(s, p)| (*s, p.len())).collect();
    lens.sort();
    let mut offsets = Vec::new();
    let mut pos = start;
    for (_, len) in lens {
        let size = duraqueue::format::record_size(len as u64) as usize;
        offsets.extend(pos..pos + SLOT as usize);
        offsets.extend(pos + size - SLOT as usize..pos + size);
        pos += size;
    }
    offsets
}

#[test]
fn every_bit_flip_of_a_v2_file_gives_written_records_or_an_error() {
    flip_sweep(Format::V2, false);
}

#[test]
fn every_bit_flip_of_a_v1_frame_gives_written_records_or_an_error() {
    flip_sweep(Format::V1, true);
}

fn truncation_sweep(format: Format) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (original, by_seq, _) = build(dir.path(), format);
    let path = dir.path().join("q");
    for len in 0..original.len() {
        std::fs::write(&path, &original[..len]).expect("write the truncated file");
        let what = format!("{format:?} truncated to {len} bytes");
        assert!(
            check(&path, &by_seq, &what),
            "{what}: opened a truncated file"
        );
    }
}

#[test]
fn every_truncation_of_a_v2_file_is_refused_with_the_file_named() {
    truncation_sweep(Format::V2);
}

#[test]
fn every_truncation_of_a_v1_file_is_refused_with_the_file_named() {
    truncation_sweep(Format::V1);
}
