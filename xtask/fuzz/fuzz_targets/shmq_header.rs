//! shmq's segment header: `format::decode` of a header image against a segment length
//! (shared memory is written by other processes and is untrusted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmq::format::{Header, LayoutG, LayoutN, decode, g, n};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        let _ = decode(data, data.len() as u64);
        return;
    }
    // The first 8 bytes give the segment length: as is, or (low bit clear) the image length
    // plus a small slack so that valid geometries are reachable.
    let raw = u64::from_le_bytes(data[..8].try_into().unwrap());
    let bytes = &data[8..];
    let segment_len = if raw & 1 == 0 {
        raw >> 1
    } else {
        bytes.len() as u64 + (raw >> 48)
    };
    let Ok(header) = decode(bytes, segment_len) else {
        return;
    };
    match header {
        Header::G(h) => {
            let l = h.layout;
            assert!(l.size() <= segment_len);
            assert!(h.start < l.capacity && h.len <= l.capacity);
            assert_eq!(LayoutG::new(l.msg_bytes / 8, l.capacity), Ok(l));
            // Every byte of the 32-byte header is a field: it re-encodes exactly.
            let mut image = l.encode_header();
            image[g::HDR_LOCK..g::HDR_LOCK + 8].copy_from_slice(&h.hdr_lock.to_le_bytes());
            image[g::START..g::START + 4].copy_from_slice(&h.start.to_le_bytes());
            image[g::LEN..g::LEN + 4].copy_from_slice(&h.len.to_le_bytes());
            assert_eq!(image[..], bytes[..g::HEADER]);
        }
        Header::N(h) => {
            let l = h.layout;
            assert!(l.size() <= segment_len);
            assert!(h.head >= u64::from(l.capacity));
            assert!(h.tail >= h.head && h.tail - h.head <= u64::from(l.capacity));
            assert_eq!(LayoutN::new(l.words, l.capacity), Ok(l));
            // A fresh header of the same geometry, marked ready, decodes to the same layout.
            let mut image = l.encode_header(h.creator_pid);
            image[n::STATE..n::STATE + 4].copy_from_slice(&n::STATE_READY.to_le_bytes());
            match decode(&image, segment_len) {
                Ok(Header::N(fresh)) => {
                    assert_eq!(fresh.layout, l);
                    assert_eq!(fresh.creator_pid, h.creator_pid);
                }
                other => panic!("fresh header decodes as {other:?}"),
            }
        }
    }
});
