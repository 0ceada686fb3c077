//! duraqueue's record header/footer (`decode_frame`, v1 and v2) and the v2 superblock.
#![no_main]

use duraqueue::format::{
    Format, Frame, STAMP, Superblock, decode_frame, encode_record, record_size,
};
use libfuzzer_sys::fuzz_target;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    // Any bytes: a frame decodes only when complete, and then its fields are the stored ones.
    for format in [Format::V1, Format::V2] {
        let Some(f) = decode_frame(format, data) else {
            continue;
        };
        assert!(data.len() >= 32);
        match format {
            Format::V1 => {
                assert_eq!(data[..16], STAMP);
                assert_eq!(be32(data, 16), u32::from(f.footer));
                assert_eq!(f.seq, u64::from(be32(data, 20)));
                assert_eq!(f.len, be32(data, 24));
                assert_eq!(f.payload_crc, None);
            }
            Format::V2 => {
                assert_eq!(&data[..4], if f.footer { b"DQ2F" } else { b"DQ2H" });
                assert_eq!(f.len, le32(data, 4));
                assert_eq!(f.seq, le64(data, 8));
                assert_eq!(f.payload_crc, Some(le32(data, 16)));
            }
        }
    }

    // Superblock: a valid copy is exactly what `encode` writes (every field is checked).
    if let Ok(sb) = Superblock::decode(data) {
        assert_eq!(sb.encode()[..], data[..Superblock::LEN]);
    }
    if let Ok((sb, slot)) = Superblock::read_page(data) {
        assert!(slot < 2);
        assert_eq!(Superblock::decode(&data[[0, 512][slot]..]), Ok(sb));
    }

    // Round trip: a record built from the input decodes to the same header and footer.
    if data.len() >= 9 {
        let seq = le64(data, 1);
        let payload = &data[9..];
        for format in [Format::V1, Format::V2] {
            let mut out = vec![0u8; record_size(payload.len() as u64) as usize];
            assert!(encode_record(format, seq, payload, &mut out));
            let len = payload.len() as u32;
            let crc = (format == Format::V2).then(|| crc32c::crc32c(payload));
            let seq = if format == Format::V1 {
                u64::from(seq as u32)
            } else {
                seq
            };
            let header = Frame {
                footer: false,
                seq,
                len,
                payload_crc: crc,
            };
            let footer = Frame {
                footer: true,
                ..header
            };
            assert_eq!(decode_frame(format, &out), Some(header));
            assert_eq!(decode_frame(format, &out[out.len() - 32..]), Some(footer));
            assert_eq!(&out[32..32 + payload.len()], payload);
            // A wrong output size is refused, not a panic.
            let mut short = vec![0u8; out.len() - 1];
            assert!(!encode_record(format, seq, payload, &mut short));
        }
    }
});
