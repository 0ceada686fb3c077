//! dmq's data files: `decode_record` over a buffer, in the framing chosen by the first byte.
#![no_main]

use dmq::format::{Decoded, Framing, decode_record, encode_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let framing = Framing::from_mode(i32::from(mode % 5)).expect("0..=4 are modes");
    if framing == Framing::Raw {
        // Raw files have no boundaries: asking is an error, never a guess.
        assert!(decode_record(framing, rest).is_err());
        return;
    }

    // 1. Walk the bytes as a reader does: every record lies inside the buffer and re-encodes
    //    to exactly the bytes it was decoded from.
    let mut at = 0;
    loop {
        match decode_record(framing, &rest[at..]) {
            Ok(Decoded::Record {
                start,
                payload_len,
                len,
            }) => {
                assert!(len > 0 && at + len <= rest.len(), "record past the buffer");
                // The framing's bytes are a prefix (frames, checked) or a suffix (delimiters).
                assert_eq!(payload_len + framing.overhead(), len);
                let prefix = match framing.delimiter() {
                    Some(_) => 0,
                    None => framing.overhead(),
                };
                assert_eq!(start, prefix);
                let record = &rest[at..at + len];
                let payload = &record[start..start + payload_len];
                let mut again = Vec::new();
                encode_record(framing, payload, usize::MAX, true, &mut again)
                    .expect("a decoded payload encodes");
                assert_eq!(again, record, "record does not re-encode to its bytes");
                at += len;
            }
            Ok(Decoded::Incomplete) => {
                let tail = &rest[at..];
                match framing.delimiter() {
                    Some(d) => assert!(!tail.contains(&d)),
                    None if framing == Framing::Checked => assert!(
                        tail.len() < 8
                            || tail.len()
                                < u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]])
                                    as usize
                    ),
                    None => assert!(
                        tail.len() < 2
                            || tail.len() < usize::from(u16::from_le_bytes([tail[0], tail[1]]))
                    ),
                }
                break;
            }
            Err(_) => break,
        }
    }

    // 2. Round trip: payloads cut from the input (at the delimiter, or in chunks for frames)
    //    decode back to the same payloads, in order.
    let payloads: Vec<&[u8]> = match framing.delimiter() {
        Some(d) => rest.split(|&b| b == d).collect(),
        None => rest.chunks(usize::from(mode / 5) + 1).collect(),
    };
    let mut file = Vec::new();
    for p in &payloads {
        encode_record(framing, p, usize::MAX, true, &mut file).expect("payload encodes");
    }
    let mut at = 0;
    for p in &payloads {
        match decode_record(framing, &file[at..]) {
            Ok(Decoded::Record {
                start,
                payload_len,
                len,
            }) => {
                assert_eq!(&file[at + start..at + start + payload_len], *p);
                at += len;
            }
            other => panic!("encoded record decodes as {other:?}"),
        }
    }
    assert_eq!(at, file.len());
});
