//! Interop with processes of the original, modelled from the format tables and the
//! original's algorithm (spec §2, §5.1; the original itself has no licence and is not used):
//!
//! - a writer like the original's (no lock, `writetarget` read from the map before each
//!   append, the data file opened by its stored path) feeding the crate's reader;
//! - the crate's writer feeding a reader that follows the original's algorithm (commit on
//!   receive, move writers at end of file after more than 100 bytes, truncate and switch at
//!   the next end of file);
//! - each side continuing a queue the other left.

use std::fs::{File, OpenOptions as FsOpen};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use dmq::format::{MapImage, OFF_POSITION, OFF_READOFFSET, OFF_READTARGET, OFF_WRITETARGET};
use dmq::{Framing, OpenOptions, Queue};

fn map_path(base: &Path) -> PathBuf {
    let mut s = base.as_os_str().to_os_string();
    s.push("map");
    PathBuf::from(s)
}

fn read_map(base: &Path) -> MapImage {
    MapImage::decode(&std::fs::read(map_path(base)).unwrap()).unwrap()
}

fn poke(base: &Path, offset: usize, bytes: &[u8]) {
    let f = FsOpen::new().write(true).open(map_path(base)).unwrap();
    f.write_all_at(bytes, offset as u64).unwrap();
}

fn stored_path(map: &MapImage, i: usize) -> PathBuf {
    PathBuf::from(String::from_utf8(map.paths[i].clone()).unwrap())
}

/// The original's send: read `writetarget`, append to the stored path, no lock.
fn original_send(base: &Path, payload: &[u8]) {
    let map = read_map(base);
    let mut f = FsOpen::new()
        .append(true)
        .open(stored_path(&map, map.writetarget as usize))
        .unwrap();
    let mut rec = payload.to_vec();
    rec.push(b'\n');
    f.write_all(&rec).unwrap();
}

/// The original's non-blocking receive, one call.
fn original_receive(base: &Path) -> Option<Vec<u8>> {
    let map = read_map(base);
    let rt = map.readtarget as usize;
    let path = stored_path(&map, rt);
    let data = std::fs::read(&path).unwrap();
    let pos = map.position as usize;
    if let Some(end) = data[pos..].iter().position(|&b| b == b'\n') {
        let msg = data[pos..pos + end].to_vec();
        poke(base, OFF_READOFFSET, &(data.len() as u64).to_le_bytes());
        poke(base, OFF_POSITION, &((pos + end + 1) as u64).to_le_bytes());
        return Some(msg);
    }
    if map.readtarget == map.writetarget {
        if data.len() > 100 {
            poke(base, OFF_WRITETARGET, &(1 - map.readtarget).to_le_bytes());
        }
    } else {
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        poke(base, OFF_READTARGET, &map.writetarget.to_le_bytes());
        poke(base, OFF_POSITION, &0u64.to_le_bytes());
        poke(base, OFF_READOFFSET, &0u64.to_le_bytes());
    }
    None
}

fn original_drain(base: &Path) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        match original_receive(base) {
            Some(m) => {
                got.push(m);
                empty = 0;
            }
            None => empty += 1,
        }
    }
    got
}

fn numbered(round: usize) -> Vec<Vec<u8>> {
    (0..7)
        .map(|j| format!("round-{round:03}-msg-{j}").into_bytes())
        .collect()
}

#[test]
fn original_writers_feed_the_crate_reader() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("q");
    let queue = Queue::open_with(&base, &OpenOptions::new().framing(Framing::Newlines)).unwrap();
    let mut reader = queue.reader().unwrap();
    for round in 0..60 {
        let sent = numbered(round);
        for m in &sent {
            original_send(&base, m);
        }
        let mut got: Vec<Vec<u8>> = Vec::new();
        for _ in 0..2 {
            got.extend(reader.try_iter().map(|m| m.unwrap().into_vec()));
        }
        assert_eq!(got, sent, "round {round}");
    }
    assert!(reader.switches() >= 20, "{} switches", reader.switches());
    // An original reader continues where the crate's left off: no repeats, no gaps.
    drop(reader);
    original_send(&base, b"after the crate's reader");
    assert_eq!(
        original_drain(&base),
        [b"after the crate's reader".to_vec()]
    );
}

#[test]
fn the_crate_writer_feeds_an_original_reader() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("q");
    let queue = Queue::open(&base, Some(Framing::Newlines)).unwrap();
    let mut writer = queue.writer().unwrap();
    let mut switches = 0;
    for round in 0..60 {
        let sent = numbered(round);
        for m in &sent {
            writer.send(m).unwrap();
        }
        let rt = read_map(&base).readtarget;
        assert_eq!(original_drain(&base), sent, "round {round}");
        if read_map(&base).readtarget != rt {
            switches += 1;
        }
    }
    assert!(switches >= 20, "{switches} switches");
    // The crate's reader continues the queue the original reader left.
    writer.send(b"for the crate's reader").unwrap();
    let mut reader = queue.reader().unwrap();
    let mut got: Vec<Vec<u8>> = reader.try_iter().map(|m| m.unwrap().into_vec()).collect();
    got.extend(reader.try_iter().map(|m| m.unwrap().into_vec()));
    assert_eq!(got, [b"for the crate's reader".to_vec()]);
}
