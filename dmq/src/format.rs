//! The on-disk formats, pure: the 12,320-byte map file and the records of the data files.
//!
//! No I/O here; every decoder takes untrusted bytes and returns a reason instead of
//! panicking.
//!
//! ## Map file (`BASEmap`), little-endian, no header or checksum
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `readtarget` (i32, 0 or 1) |
//! | 4 | 4 | `writetarget` (i32, 0 or 1) |
//! | 8 | 4 | `writedelay` (i32, unused) |
//! | 12 | 4 | `mode` (i32, the framing) |
//! | 16 | 8 | `readoffset` (u64) |
//! | 24 | 8 | `position` (u64) |
//! | 32 | 4096 | `path0`, NUL-terminated |
//! | 4128 | 4096 | `path1` |
//! | 8224 | 4096 | `pathmap` |
//!
//! ## Data files (`BASE0`, `BASE1`)
//!
//! Concatenated records: payload + `0x00` ([`Framing::Nulls`]), payload + `0x0A`
//! ([`Framing::Newlines`]), u16 LE length + 2 then payload ([`Framing::Frames`]), or the bare
//! payload ([`Framing::Raw`]). These four are the C original's, and none can tell a flipped
//! payload byte from a written one.
//!
//! [`Framing::Checked`] (mode 4) is ours, for queues that must detect damage: u32 LE record
//! length (payload + 8), u32 LE CRC-32C of the payload, then the payload. A record whose
//! length field or checksum does not hold is an error naming it, never a message. The C
//! original does not know mode 4.

use std::fmt;
use std::str::FromStr;

/// Size of the map file.
pub const MAP_LEN: usize = 12_320;
/// Size of each stored path field (including its terminating NUL).
pub const PATH_LEN: usize = 4096;
/// Offset of `readtarget`.
pub const OFF_READTARGET: usize = 0;
/// Offset of `writetarget`.
pub const OFF_WRITETARGET: usize = 4;
/// Offset of `writedelay`.
pub const OFF_WRITEDELAY: usize = 8;
/// Offset of `mode`.
pub const OFF_MODE: usize = 12;
/// Offset of `readoffset`.
pub const OFF_READOFFSET: usize = 16;
/// Offset of `position`.
pub const OFF_POSITION: usize = 24;
/// Offsets of `path0`, `path1` and `pathmap`.
pub const OFF_PATHS: [usize; 3] = [32, 32 + PATH_LEN, 32 + 2 * PATH_LEN];
/// Names of the path fields, for messages.
pub const PATH_FIELDS: [&str; 3] = ["path0", "path1", "pathmap"];
/// Largest payload of a frame: the length field counts its own two bytes.
pub const MAX_FRAME_PAYLOAD: usize = 65_533;
/// Bytes before the payload of a [`Framing::Checked`] record: the length and the CRC-32C.
pub const CHECKED_HEADER: usize = 8;

/// How records are delimited in the data files; fixed when the queue is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(i32)]
pub enum Framing {
    /// Payload followed by a NUL byte (mode 0).
    Nulls = 0,
    /// Payload followed by a newline (mode 1, the original's default).
    #[default]
    Newlines = 1,
    /// A u16 little-endian length (payload + 2) before the payload (mode 2).
    Frames = 2,
    /// The bare payload, no boundaries (mode 3): write-only.
    Raw = 3,
    /// A u32 little-endian length (payload + 8), a u32 little-endian CRC-32C of the payload,
    /// then the payload (mode 4, ours: every damaged record is detected).
    Checked = 4,
}

impl Framing {
    /// The framing of a stored `mode`, if valid.
    pub fn from_mode(mode: i32) -> Option<Framing> {
        match mode {
            0 => Some(Framing::Nulls),
            1 => Some(Framing::Newlines),
            2 => Some(Framing::Frames),
            3 => Some(Framing::Raw),
            4 => Some(Framing::Checked),
            _ => None,
        }
    }

    /// The stored `mode` value.
    pub fn mode(self) -> i32 {
        self as i32
    }

    /// The lowercase name (`nulls`, `newlines`, `frames`, `raw`, `checked`).
    pub fn name(self) -> &'static str {
        match self {
            Framing::Nulls => "nulls",
            Framing::Newlines => "newlines",
            Framing::Frames => "frames",
            Framing::Raw => "raw",
            Framing::Checked => "checked",
        }
    }

    /// The delimiter byte of the delimited framings.
    pub fn delimiter(self) -> Option<u8> {
        match self {
            Framing::Nulls => Some(0),
            Framing::Newlines => Some(b'\n'),
            Framing::Frames | Framing::Raw | Framing::Checked => None,
        }
    }

    /// Bytes the framing adds to a payload.
    pub fn overhead(self) -> usize {
        match self {
            Framing::Nulls | Framing::Newlines => 1,
            Framing::Frames => 2,
            Framing::Raw => 0,
            Framing::Checked => CHECKED_HEADER,
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Framing {
    type Err = String;

    /// Accepts the names, their singulars (`nul`, `null`, `newline`, `frame`) and the digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nulls" | "null" | "nul" | "0" => Ok(Framing::Nulls),
            "newlines" | "newline" | "1" => Ok(Framing::Newlines),
            "frames" | "frame" | "2" => Ok(Framing::Frames),
            "raw" | "3" => Ok(Framing::Raw),
            "checked" | "4" => Ok(Framing::Checked),
            _ => Err(format!(
                "unknown framing `{s}` (use nulls, newlines, frames, raw or checked)"
            )),
        }
    }
}

/// The decoded fields of a map file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapImage {
    /// File the reader drains (0 or 1).
    pub readtarget: i32,
    /// File writers append to (0 or 1).
    pub writetarget: i32,
    /// Unused by the original's code; preserved.
    pub writedelay: i32,
    /// The framing.
    pub framing: Framing,
    /// Bytes of `readtarget` read by the reader so far (informative only).
    pub readoffset: u64,
    /// Offset in `readtarget` of the first undelivered record.
    pub position: u64,
    /// `path0`, `path1`, `pathmap` as stored (raw bytes without the NUL).
    pub paths: [Vec<u8>; 3],
}

impl MapImage {
    /// A fresh map: targets 0, offsets 0, the given framing and paths.
    pub fn new(framing: Framing, paths: [Vec<u8>; 3]) -> MapImage {
        MapImage {
            readtarget: 0,
            writetarget: 0,
            writedelay: 0,
            framing,
            readoffset: 0,
            position: 0,
            paths,
        }
    }

    /// The 12,320 bytes of this map. Fails if a path does not fit its field with its NUL or
    /// contains a NUL.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = vec![0u8; MAP_LEN];
        out[OFF_READTARGET..][..4].copy_from_slice(&self.readtarget.to_le_bytes());
        out[OFF_WRITETARGET..][..4].copy_from_slice(&self.writetarget.to_le_bytes());
        out[OFF_WRITEDELAY..][..4].copy_from_slice(&self.writedelay.to_le_bytes());
        out[OFF_MODE..][..4].copy_from_slice(&self.framing.mode().to_le_bytes());
        out[OFF_READOFFSET..][..8].copy_from_slice(&self.readoffset.to_le_bytes());
        out[OFF_POSITION..][..8].copy_from_slice(&self.position.to_le_bytes());
        for (i, path) in self.paths.iter().enumerate() {
            if path.len() >= PATH_LEN {
                return Err(format!(
                    "{} of {} bytes does not fit the {PATH_LEN}-byte field with its NUL",
                    PATH_FIELDS[i],
                    path.len()
                ));
            }
            if path.contains(&0) {
                return Err(format!("{} contains a NUL byte", PATH_FIELDS[i]));
            }
            out[OFF_PATHS[i]..][..path.len()].copy_from_slice(path);
        }
        Ok(out)
    }

    /// Decodes and validates a map: exact size, targets in {0, 1}, a known mode, and
    /// NUL-terminated paths. The position rule needs the data files and is checked by the
    /// reader.
    pub fn decode(bytes: &[u8]) -> Result<MapImage, String> {
        if bytes.len() != MAP_LEN {
            return Err(format!(
                "size is {} bytes, expected exactly {MAP_LEN}",
                bytes.len()
            ));
        }
        let i32_at = |off: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[off..off + 4]);
            i32::from_le_bytes(b)
        };
        let u64_at = |off: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[off..off + 8]);
            u64::from_le_bytes(b)
        };
        let readtarget = check_target("readtarget", i32_at(OFF_READTARGET))?;
        let writetarget = check_target("writetarget", i32_at(OFF_WRITETARGET))?;
        let mode = i32_at(OFF_MODE);
        let framing = Framing::from_mode(mode)
            .ok_or_else(|| format!("mode at offset {OFF_MODE} is {mode}, expected 0..=3"))?;
        let mut paths: [Vec<u8>; 3] = Default::default();
        for (i, path) in paths.iter_mut().enumerate() {
            let field = &bytes[OFF_PATHS[i]..][..PATH_LEN];
            let end = memchr::memchr(0, field).ok_or_else(|| {
                format!(
                    "{} at offset {} has no terminating NUL",
                    PATH_FIELDS[i], OFF_PATHS[i]
                )
            })?;
            *path = field[..end].to_vec();
        }
        Ok(MapImage {
            readtarget,
            writetarget,
            writedelay: i32_at(OFF_WRITEDELAY),
            framing,
            readoffset: u64_at(OFF_READOFFSET),
            position: u64_at(OFF_POSITION),
            paths,
        })
    }
}

/// Checks a stored target (`readtarget` or `writetarget`) is 0 or 1.
pub fn check_target(field: &str, value: i32) -> Result<i32, String> {
    if value == 0 || value == 1 {
        Ok(value)
    } else {
        let offset = if field == "writetarget" {
            OFF_WRITETARGET
        } else {
            OFF_READTARGET
        };
        Err(format!(
            "{field} at offset {offset} is {value}, expected 0 or 1"
        ))
    }
}

/// Why a payload cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// Longer than `max` bytes.
    TooLarge {
        /// Payload length.
        len: usize,
        /// Largest accepted.
        max: usize,
    },
    /// Contains the delimiter at index `at`.
    Delimiter {
        /// Index of the first delimiter.
        at: usize,
    },
}

/// The largest payload `framing` accepts under a record limit of `max_record` bytes.
pub fn max_payload(framing: Framing, max_record: usize) -> usize {
    match framing {
        Framing::Frames => max_record.min(MAX_FRAME_PAYLOAD),
        // The length field counts the header: keep the sum within a u32.
        Framing::Checked => max_record.min(u32::MAX as usize - CHECKED_HEADER),
        _ => max_record,
    }
}

/// Appends the record of `payload` to `out`. With `reject_delimiter`, a payload containing
/// the delimiter is refused (the original silently split it).
pub fn encode_record(
    framing: Framing,
    payload: &[u8],
    max_record: usize,
    reject_delimiter: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let max = max_payload(framing, max_record);
    if payload.len() > max {
        return Err(EncodeError::TooLarge {
            len: payload.len(),
            max,
        });
    }
    if reject_delimiter
        && let Some(d) = framing.delimiter()
        && let Some(at) = memchr::memchr(d, payload)
    {
        return Err(EncodeError::Delimiter { at });
    }
    match framing {
        Framing::Nulls | Framing::Newlines => {
            out.extend_from_slice(payload);
            out.push(framing.delimiter().unwrap_or_default());
        }
        Framing::Frames => {
            // Checked above: payload.len() <= 65_533, so the sum fits in a u16.
            let len = u16::try_from(payload.len() + 2).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(payload);
        }
        Framing::Raw => out.extend_from_slice(payload),
        Framing::Checked => {
            // Checked above: payload.len() + 8 fits in a u32.
            let len = u32::try_from(payload.len() + CHECKED_HEADER).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
            out.extend_from_slice(payload);
        }
    }
    Ok(())
}

/// One step of decoding a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole record of `len` bytes at the start of the buffer; its payload is
    /// `buf[start..start + payload_len]`.
    Record {
        /// Offset of the payload in the buffer.
        start: usize,
        /// Payload length.
        payload_len: usize,
        /// Record length (payload and framing).
        len: usize,
    },
    /// The buffer holds only the beginning of a record (or nothing).
    Incomplete,
}

/// Decodes the record at the start of `buf`. Raw framing has no records: the caller must
/// not ask. Errors name what is wrong with the record.
pub fn decode_record(framing: Framing, buf: &[u8]) -> Result<Decoded, String> {
    match framing {
        Framing::Nulls | Framing::Newlines => {
            let d = framing.delimiter().unwrap_or_default();
            Ok(match memchr::memchr(d, buf) {
                Some(end) => Decoded::Record {
                    start: 0,
                    payload_len: end,
                    len: end + 1,
                },
                None => Decoded::Incomplete,
            })
        }
        Framing::Frames => {
            if buf.len() < 2 {
                return Ok(Decoded::Incomplete);
            }
            let len = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
            if len < 2 {
                return Err(format!(
                    "frame length field is {len}, less than its own 2 bytes"
                ));
            }
            if buf.len() < len {
                return Ok(Decoded::Incomplete);
            }
            Ok(Decoded::Record {
                start: 2,
                payload_len: len - 2,
                len,
            })
        }
        Framing::Raw => Err("raw data files have no record boundaries".into()),
        Framing::Checked => {
            let Some((header, rest)) = buf.split_first_chunk::<CHECKED_HEADER>() else {
                return Ok(Decoded::Incomplete);
            };
            let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
            let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
            if len < CHECKED_HEADER {
                return Err(format!(
                    "checked record length field is {len}, less than its own {CHECKED_HEADER}-byte header"
                ));
            }
            let payload_len = len - CHECKED_HEADER;
            let Some(payload) = rest.get(..payload_len) else {
                return Ok(Decoded::Incomplete);
            };
            let stored = u32::from_le_bytes([c0, c1, c2, c3]);
            let computed = crc32c::crc32c(payload);
            if stored != computed {
                return Err(format!(
                    "checked record of {payload_len} payload bytes: CRC-32C field is {stored:#010x}, the payload's is {computed:#010x}"
                ));
            }
            Ok(Decoded::Record {
                start: CHECKED_HEADER,
                payload_len,
                len,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_records_round_trip_and_refuse_every_flip() {
        let mut out = Vec::new();
        encode_record(Framing::Checked, b"hello", 1 << 20, true, &mut out).unwrap();
        assert_eq!(&out[..4], &13u32.to_le_bytes());
        assert_eq!(
            decode_record(Framing::Checked, &out).unwrap(),
            Decoded::Record {
                start: 8,
                payload_len: 5,
                len: 13
            }
        );
        for cut in 0..out.len() {
            assert_eq!(
                decode_record(Framing::Checked, &out[..cut]).unwrap(),
                Decoded::Incomplete,
                "cut at {cut}"
            );
        }
        for bit in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            match decode_record(Framing::Checked, &bad) {
                Ok(Decoded::Record { .. }) => panic!("flip of bit {bit} accepted"),
                // A length flipped upwards waits for bytes that never come; the reader
                // reports the torn tail at the end of the file.
                Ok(Decoded::Incomplete) => assert!(bit < 32, "bit {bit}"),
                Err(_) => {}
            }
        }
        assert!(decode_record(Framing::Checked, &[7, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert_eq!("checked".parse::<Framing>(), Ok(Framing::Checked));
        assert_eq!(Framing::from_mode(4), Some(Framing::Checked));
    }

    #[test]
    fn fresh_map_matches_the_table() {
        let map = MapImage::new(
            Framing::Newlines,
            [b"q0".to_vec(), b"q1".to_vec(), b"qmap".to_vec()],
        );
        let bytes = map.encode().unwrap();
        assert_eq!(bytes.len(), 12_320);
        assert_eq!(
            &bytes[..16],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(&bytes[32..35], b"q0\0");
        assert_eq!(&bytes[4128..4131], b"q1\0");
        assert_eq!(&bytes[8224..8229], b"qmap\0");
        assert_eq!(MapImage::decode(&bytes).unwrap(), map);
    }

    #[test]
    fn bad_maps_name_the_field() {
        for len in [0, 100, 12_319, 12_321] {
            let err = MapImage::decode(&vec![0; len]).unwrap_err();
            assert!(err.contains("expected exactly 12320"), "{err}");
        }
        let good = MapImage::new(Framing::Frames, Default::default())
            .encode()
            .unwrap();
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(
            MapImage::decode(&bad).unwrap_err(),
            "writetarget at offset 4 is 2, expected 0 or 1"
        );
        let mut bad = good.clone();
        bad[12] = 9;
        assert!(MapImage::decode(&bad).unwrap_err().contains("mode"));
        let mut bad = good;
        bad[4128..8224].fill(b'x');
        assert!(
            MapImage::decode(&bad)
                .unwrap_err()
                .contains("path1 at offset 4128 has no terminating NUL")
        );
    }

    #[test]
    fn frames_example_of_the_spec() {
        let mut out = Vec::new();
        encode_record(Framing::Frames, b"abc", 65_535, true, &mut out).unwrap();
        encode_record(Framing::Frames, b"defgh", 65_535, true, &mut out).unwrap();
        assert_eq!(
            out,
            [
                0x05, 0, b'a', b'b', b'c', 0x07, 0, b'd', b'e', b'f', b'g', b'h'
            ]
        );
        assert_eq!(
            decode_record(Framing::Frames, &out).unwrap(),
            Decoded::Record {
                start: 2,
                payload_len: 3,
                len: 5
            }
        );
        assert_eq!(
            decode_record(Framing::Frames, &out[5..9]).unwrap(),
            Decoded::Incomplete
        );
        assert!(decode_record(Framing::Frames, &[1, 0]).is_err());
    }

    #[test]
    fn limits_and_delimiters() {
        let mut out = Vec::new();
        assert_eq!(
            encode_record(Framing::Frames, &[0; 65_534], 65_535, true, &mut out),
            Err(EncodeError::TooLarge {
                len: 65_534,
                max: 65_533
            })
        );
        assert_eq!(
            encode_record(Framing::Newlines, b"a\nb", 65_535, true, &mut out),
            Err(EncodeError::Delimiter { at: 1 })
        );
        assert!(out.is_empty());
        encode_record(Framing::Nulls, b"a\nb", 65_535, true, &mut out).unwrap();
        assert_eq!(out, b"a\nb\0");
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes: Vec<u8>, mode in proptest::sample::select(vec![0i32, 1, 2, 4])) {
            let framing = Framing::from_mode(mode).unwrap();
            let _ = decode_record(framing, &bytes);
            let mut map = bytes.clone();
            map.resize(MAP_LEN, 0);
            let _ = MapImage::decode(&map);
        }

        #[test]
        fn records_round_trip(payloads: Vec<Vec<u8>>, mode in proptest::sample::select(vec![0i32, 1, 2, 4])) {
            let framing = Framing::from_mode(mode).unwrap();
            let mut out = Vec::new();
            let mut sent = Vec::new();
            for p in payloads {
                if encode_record(framing, &p, 65_535, true, &mut out).is_ok() {
                    sent.push(p);
                }
            }
            let mut at = 0;
            let mut got = Vec::new();
            while let Decoded::Record { start, payload_len, len } = decode_record(framing, &out[at..]).unwrap() {
                got.push(out[at + start..at + start + payload_len].to_vec());
                at += len;
            }
            proptest::prop_assert_eq!(at, out.len());
            proptest::prop_assert_eq!(got, sent);
        }
    }
}
