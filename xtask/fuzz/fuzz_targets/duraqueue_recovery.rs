//! duraqueue's recovery scan (`recover_v1`, `recover_v2`) over a whole ring image.
//!
//! The first byte picks the format and the mode: the raw input as the ring, or a ring
//! synthesised from records cut out of the input (so the fuzzer starts from valid chains)
//! and then damaged by XOR patches also taken from the input. Without patches the scan must
//! return exactly the records written.
#![no_main]

use duraqueue::format::{
    Format, Recovery, SLOT, decode_frame, encode_record, record_size, recover_v1, recover_v2,
};
use libfuzzer_sys::fuzz_target;

/// The byte reader of the input: missing bytes read as zero.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|_| self.u8()))
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

fn mirror(ring: &[u8]) -> Vec<u8> {
    let mut m = ring.to_vec();
    m.extend_from_slice(ring);
    m
}

fn scan(format: Format, view: &[u8], n: u64, head: u64, seq: u64) -> Recovery {
    match format {
        Format::V1 => recover_v1(view, n),
        Format::V2 => recover_v2(view, n, head, seq),
    }
}

/// What every scan of a proper mirrored view promises: a chain of consecutive seqs, each
/// record starting where the previous ends, total at most `n`, every header and footer valid
/// and matching, and the v2 payload CRC right.
fn check_chain(format: Format, view: &[u8], n: u64, r: &Recovery) {
    assert!(
        r.used() <= n,
        "chain of {} bytes in a ring of {n}",
        r.used()
    );
    let mut at = r.head;
    let mut seq = r.records.first().map_or(r.next_seq, |f| f.seq);
    for rec in &r.records {
        assert_eq!(rec.offset, at, "records are not contiguous");
        assert_eq!(rec.seq, seq, "seqs are not consecutive");
        assert!(rec.offset < n && rec.offset % SLOT == 0);
        let o = rec.offset as usize;
        let size = rec.size() as usize;
        let header = decode_frame(format, &view[o..]).expect("delivered header decodes");
        let footer = decode_frame(format, &view[o + size - 32..]).expect("footer decodes");
        assert!(!header.footer && footer.footer);
        assert_eq!((header.len, footer.len), (rec.len, rec.len));
        assert_eq!(header.seq, footer.seq);
        assert_eq!(
            header.seq,
            if format == Format::V1 {
                rec.seq as u32 as u64
            } else {
                rec.seq
            }
        );
        if format == Format::V2 {
            let payload = &view[rec.payload_range()];
            assert_eq!(header.payload_crc, Some(crc32c::crc32c(payload)));
            assert!(
                view[o + 32 + payload.len()..o + size - 32]
                    .iter()
                    .all(|&b| b == 0)
            );
        }
        at = (at + rec.size()) % n;
        seq += 1;
    }
    assert_eq!(r.tail, at);
    assert_eq!(r.next_seq, seq);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.u8();
    let format = if flags & 1 == 0 {
        Format::V1
    } else {
        Format::V2
    };

    if flags & 2 == 0 {
        // The input is the ring.
        let head_raw = input.u64();
        let seq = input.u64();
        let ring = input.take(usize::MAX);
        if flags & 4 != 0 {
            // Unchecked sizes and views (too short, unaligned n, wild head): no panic.
            let _ = scan(format, ring, ring.len() as u64, head_raw, seq);
            let _ = scan(format, ring, head_raw % 4096, head_raw, seq);
            return;
        }
        let n = (ring.len() as u64 / SLOT) * SLOT;
        if n == 0 {
            return;
        }
        let head = (head_raw % n) / SLOT * SLOT;
        let view = mirror(&ring[..n as usize]);
        let r = scan(format, &view, n, head, seq);
        check_chain(format, &view, n, &r);
        return;
    }

    // Synthesised ring: n = 3..=66 slots, head at a slot, records until the next does not fit.
    let seq0 = input.u64();
    let n = SLOT * (3 + u64::from(input.u8() % 64));
    let head = SLOT * (u64::from(input.u8()) % (n / SLOT));
    let mut ring = vec![0u8; n as usize];
    let mut written = Vec::new();
    let mut at = head;
    let mut used = 0;
    let mut seq = seq0;
    loop {
        let len = usize::from(input.u8() % 128);
        if len == 127 || input.0.is_empty() {
            break; // End of the records; what follows are patches.
        }
        let payload = input.take(len).to_vec();
        let size = record_size(payload.len() as u64);
        if used + size > n {
            break;
        }
        let mut rec = vec![0u8; size as usize];
        assert!(encode_record(format, seq, &payload, &mut rec));
        for (i, b) in rec.iter().enumerate() {
            ring[((at + i as u64) % n) as usize] = *b;
        }
        written.push((at, seq, payload));
        at = (at + size) % n;
        used += size;
        seq = seq.wrapping_add(1);
    }
    let mut patched = false;
    while input.0.len() >= 3 {
        let off = usize::from(u16::from_le_bytes([input.u8(), input.u8()])) % ring.len();
        let x = input.u8();
        ring[off] ^= x;
        patched |= x != 0;
    }
    let view = mirror(&ring);
    let r = scan(format, &view, n, head, seq0);
    check_chain(format, &view, n, &r);
    if patched {
        return;
    }
    // Undamaged: exactly the records written, in order (v2 only below u64::MAX, where seqs
    // run out; v1 ids wrap and the seq counts on).
    if format == Format::V2 && written.iter().any(|w| w.1 == u64::MAX) {
        return;
    }
    let got: Vec<(u64, u64, &[u8])> = r
        .records
        .iter()
        .map(|rec| (rec.offset, rec.seq, &view[rec.payload_range()]))
        .collect();
    let want: Vec<(u64, u64, &[u8])> = written
        .iter()
        .enumerate()
        .map(|(i, (o, s, p))| {
            let s = match format {
                Format::V1 => u64::from(seq0 as u32) + i as u64,
                Format::V2 => *s,
            };
            (*o, s, p.as_slice())
        })
        .collect();
    assert_eq!(
        got, want,
        "recovery of an undamaged ring differs from what was written"
    );
});
