//! The two segment layouts (pure: no I/O, no shared memory; fuzzable).
//!
//! Format G is byte-compatible with the Go library `shqueue-go`; format N is the native one.
//! All integers are little endian. [`decode`] reads a snapshot of a segment's first bytes and
//! validates every field against the segment's real size: the content of a segment is written
//! by other processes and is untrusted.

/// Magic of format G (the Go library): the bytes `"Work is "`.
pub const MAGIC_G: [u8; 8] = [0x57, 0x6f, 0x72, 0x6b, 0x20, 0x69, 0x73, 0x20];
/// Magic of format N: `"shmq-n1\0"`.
pub const MAGIC_N: [u8; 8] = *b"shmq-n1\0";
/// The only version of format N.
pub const VERSION_N: u32 = 1;

/// Format G field offsets.
pub mod g {
    /// `capacity` u32.
    pub const CAPACITY: usize = 8;
    /// `msg_bytes` u32.
    pub const MSG_BYTES: usize = 12;
    /// `hdr_lock` u64.
    pub const HDR_LOCK: usize = 16;
    /// `start` u32.
    pub const START: usize = 24;
    /// `len` u32.
    pub const LEN: usize = 28;
    /// Header size; slot `i` starts at `HEADER + i × (msg_bytes + 8)` with its lock word.
    pub const HEADER: usize = 32;
}

/// Format N field offsets.
pub mod n {
    /// `version` u32.
    pub const VERSION: usize = 8;
    /// `state` u32: 0 initialising, 1 ready.
    pub const STATE: usize = 12;
    /// `words` u32.
    pub const WORDS: usize = 16;
    /// `capacity` u32.
    pub const CAPACITY: usize = 20;
    /// `stride` u32.
    pub const STRIDE: usize = 24;
    /// `creator_pid` u32.
    pub const CREATOR_PID: usize = 28;
    /// `dropped` u64.
    pub const DROPPED: usize = 32;
    /// `abandoned` u64.
    pub const ABANDONED: usize = 40;
    /// `tail` u64 (own cache line).
    pub const TAIL: usize = 64;
    /// `head` u64 (own cache line).
    pub const HEAD: usize = 128;
    /// `data_seq` u32 futex word.
    pub const DATA_SEQ: usize = 192;
    /// `space_seq` u32 futex word.
    pub const SPACE_SEQ: usize = 196;
    /// `consumers_waiting` u32.
    pub const CONSUMERS_WAITING: usize = 200;
    /// `producers_waiting` u32.
    pub const PRODUCERS_WAITING: usize = 204;
    /// Header size; slot `i` starts at `HEADER + i × stride`.
    pub const HEADER: usize = 256;
    /// In a slot: `seq` u64.
    pub const SLOT_SEQ: usize = 0;
    /// In a slot: `owner` u64.
    pub const SLOT_OWNER: usize = 8;
    /// In a slot: the payload words.
    pub const SLOT_DATA: usize = 16;
    /// `state` value once initialised.
    pub const STATE_READY: u32 = 1;
    /// Slot state: a producer is writing.
    pub const ST_WRITING: u64 = 1;
    /// Slot state: the message is published.
    pub const ST_READY: u64 = 2;
    /// Slot state: the position was abandoned (or is the initial, empty lap).
    pub const ST_ABANDONED: u64 = 3;
}

/// Why a size is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// Zero words or zero capacity.
    Zero(&'static str),
    /// The arithmetic overflows what the format (or its peers) can express.
    Overflow(String),
}

/// Geometry of a format-G queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutG {
    /// Slots.
    pub capacity: u32,
    /// Message size in bytes (a multiple of 8).
    pub msg_bytes: u32,
}

impl LayoutG {
    /// The geometry for `words` 64-bit words × `capacity` slots, checked: the Go library
    /// computes sizes in 32 bits, so a queue it would mis-size is refused.
    pub fn new(words: u32, capacity: u32) -> Result<LayoutG, SizeError> {
        if words == 0 {
            return Err(SizeError::Zero("words must be at least 1"));
        }
        if capacity == 0 {
            return Err(SizeError::Zero("capacity must be at least 1"));
        }
        let msg_bytes = u64::from(words) * 8;
        let size = g::HEADER as u64 + (msg_bytes + 8) * u64::from(capacity);
        if size > u64::from(u32::MAX) {
            return Err(SizeError::Overflow(format!(
                "format G: {words} words × {capacity} slots needs {size} bytes, above the 4 GiB the Go library can address"
            )));
        }
        Ok(LayoutG {
            capacity,
            msg_bytes: u32::try_from(msg_bytes)
                .map_err(|_| SizeError::Overflow("msg_bytes".into()))?,
        })
    }

    /// Segment size in bytes.
    pub fn size(&self) -> u64 {
        g::HEADER as u64 + (u64::from(self.msg_bytes) + 8) * u64::from(self.capacity)
    }

    /// Offset of slot `i`'s lock word (`i < capacity`).
    pub fn slot_lock(&self, i: u32) -> usize {
        g::HEADER + i as usize * (self.msg_bytes as usize + 8)
    }

    /// Offset of slot `i`'s payload.
    pub fn slot_data(&self, i: u32) -> usize {
        self.slot_lock(i) + 8
    }

    /// The header a new queue starts with (what the Go library writes, with `hdr_lock` 0).
    pub fn encode_header(&self) -> [u8; g::HEADER] {
        let mut h = [0u8; g::HEADER];
        h[..8].copy_from_slice(&MAGIC_G);
        h[g::CAPACITY..g::CAPACITY + 4].copy_from_slice(&self.capacity.to_le_bytes());
        h[g::MSG_BYTES..g::MSG_BYTES + 4].copy_from_slice(&self.msg_bytes.to_le_bytes());
        h
    }
}

/// Geometry of a format-N queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutN {
    /// Message size in 64-bit words.
    pub words: u32,
    /// Slots.
    pub capacity: u32,
    /// Bytes per slot: `16 + 8 × words` rounded up to 64.
    pub stride: u32,
}

impl LayoutN {
    /// The geometry for `words` × `capacity`, checked.
    pub fn new(words: u32, capacity: u32) -> Result<LayoutN, SizeError> {
        if words == 0 {
            return Err(SizeError::Zero("words must be at least 1"));
        }
        if capacity == 0 {
            return Err(SizeError::Zero("capacity must be at least 1"));
        }
        let stride = (16 + 8 * u64::from(words)).div_ceil(64) * 64;
        let stride = u32::try_from(stride)
            .map_err(|_| SizeError::Overflow(format!("{words} words make a slot above 4 GiB")))?;
        let layout = LayoutN {
            words,
            capacity,
            stride,
        };
        let size = layout.size();
        if usize::try_from(size).is_err() || size > isize::MAX as u64 {
            return Err(SizeError::Overflow(format!(
                "{words} words × {capacity} slots needs {size} bytes"
            )));
        }
        Ok(layout)
    }

    /// Segment size in bytes.
    pub fn size(&self) -> u64 {
        n::HEADER as u64 + u64::from(self.stride) * u64::from(self.capacity)
    }

    /// Offset of the slot of position `pos`.
    pub fn slot(&self, pos: u64) -> usize {
        n::HEADER + (pos % u64::from(self.capacity)) as usize * self.stride as usize
    }

    /// The header a new queue starts with, still in state 0 (initialising): `head = tail =
    /// capacity`. The caller also writes each slot's initial `seq` ([`LayoutN::initial_seq`])
    /// and publishes `state = 1` last.
    pub fn encode_header(&self, creator_pid: u32) -> [u8; n::HEADER] {
        let mut h = [0u8; n::HEADER];
        h[..8].copy_from_slice(&MAGIC_N);
        put32(&mut h, n::VERSION, VERSION_N);
        put32(&mut h, n::WORDS, self.words);
        put32(&mut h, n::CAPACITY, self.capacity);
        put32(&mut h, n::STRIDE, self.stride);
        put32(&mut h, n::CREATOR_PID, creator_pid);
        put64(&mut h, n::TAIL, u64::from(self.capacity));
        put64(&mut h, n::HEAD, u64::from(self.capacity));
        h
    }

    /// Slot `i`'s initial `seq`: position `i`, abandoned.
    pub fn initial_seq(i: u32) -> u64 {
        (u64::from(i) << 2) | n::ST_ABANDONED
    }
}

/// A decoded, validated format-G header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderG {
    /// Geometry.
    pub layout: LayoutG,
    /// `hdr_lock` as read.
    pub hdr_lock: u64,
    /// `start`.
    pub start: u32,
    /// `len`.
    pub len: u32,
}

/// A decoded, validated format-N header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderN {
    /// Geometry.
    pub layout: LayoutN,
    /// `creator_pid`.
    pub creator_pid: u32,
    /// `dropped`.
    pub dropped: u64,
    /// `abandoned`.
    pub abandoned: u64,
    /// `tail`.
    pub tail: u64,
    /// `head`.
    pub head: u64,
}

/// A decoded header of either format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Format G.
    G(HeaderG),
    /// Format N.
    N(HeaderN),
}

/// Why a header is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not written yet: all-zero magic, or format N in state "initialising". Worth waiting.
    NotReady,
    /// Unknown magic or version.
    Unsupported(String),
    /// A field out of range.
    Corrupt {
        /// The field.
        field: &'static str,
        /// Its offset.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
}

fn corrupt(field: &'static str, offset: usize, detail: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt {
        field,
        offset,
        detail: detail.into(),
    }
}

fn get32(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

fn get64(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// The width (4 or 8 bytes) with which the protocols access the word at `off` (8-aligned
/// pairs for the 32-bit fields) of a segment whose first 8 bytes are `magic`. Readers of
/// raw bytes (`open`, `snapshot`) use it so that they never access a location with a size
/// other than the one the protocols use: Rust's memory model does not allow racing atomic
/// accesses of different sizes.
pub fn word_width(magic: [u8; 8], off: usize) -> usize {
    let u32_field = if magic == MAGIC_G {
        matches!(off, g::CAPACITY | g::MSG_BYTES | g::START | g::LEN)
    } else if magic == MAGIC_N {
        (n::VERSION..n::DROPPED).contains(&off) || (n::DATA_SEQ..208).contains(&off)
    } else {
        false
    };
    if u32_field { 4 } else { 8 }
}

/// Decodes and validates the header in `bytes` (the segment's first bytes, at most 256 needed)
/// of a segment whose real size is `segment_len`. Never panics, whatever the input.
pub fn decode(bytes: &[u8], segment_len: u64) -> Result<Header, DecodeError> {
    if bytes.len() < 8 || segment_len < 8 {
        return Err(corrupt(
            "magic",
            0,
            format!("segment of {segment_len} bytes is too small for any header"),
        ));
    }
    let magic = &bytes[..8];
    if magic == MAGIC_G {
        decode_g(bytes, segment_len).map(Header::G)
    } else if magic == MAGIC_N {
        decode_n(bytes, segment_len).map(Header::N)
    } else if magic == [0u8; 8] {
        Err(DecodeError::NotReady)
    } else {
        Err(DecodeError::Unsupported(format!(
            "unknown magic {magic:02x?} (expected shmq-n1 or the Go library's \"Work is \")"
        )))
    }
}

fn decode_g(b: &[u8], segment_len: u64) -> Result<HeaderG, DecodeError> {
    if b.len() < g::HEADER || segment_len < g::HEADER as u64 {
        return Err(corrupt(
            "capacity",
            g::CAPACITY,
            format!("segment of {segment_len} bytes is shorter than the 32-byte header"),
        ));
    }
    let capacity = get32(b, g::CAPACITY);
    let msg_bytes = get32(b, g::MSG_BYTES);
    if capacity == 0 {
        // The Go library writes the magic before the sizes: a header caught mid-creation.
        return Err(DecodeError::NotReady);
    }
    if msg_bytes == 0 || !msg_bytes.is_multiple_of(8) {
        return Err(corrupt(
            "msg_bytes",
            g::MSG_BYTES,
            format!("{msg_bytes} is not a positive multiple of 8"),
        ));
    }
    let layout = LayoutG::new(msg_bytes / 8, capacity)
        .map_err(|e| corrupt("capacity", g::CAPACITY, format!("{e:?}")))?;
    if layout.size() > segment_len {
        return Err(corrupt(
            "capacity",
            g::CAPACITY,
            format!(
                "{capacity} slots of {msg_bytes} bytes need {} bytes, the segment has {segment_len}",
                layout.size()
            ),
        ));
    }
    let start = get32(b, g::START);
    let len = get32(b, g::LEN);
    if start >= capacity {
        return Err(corrupt(
            "start",
            g::START,
            format!("{start} ≥ capacity {capacity}"),
        ));
    }
    if len > capacity {
        return Err(corrupt(
            "len",
            g::LEN,
            format!("{len} > capacity {capacity}"),
        ));
    }
    Ok(HeaderG {
        layout,
        hdr_lock: get64(b, g::HDR_LOCK),
        start,
        len,
    })
}

fn decode_n(b: &[u8], segment_len: u64) -> Result<HeaderN, DecodeError> {
    if b.len() < n::HEADER || segment_len < n::HEADER as u64 {
        return Err(corrupt(
            "version",
            n::VERSION,
            format!("segment of {segment_len} bytes is shorter than the 256-byte header"),
        ));
    }
    let version = get32(b, n::VERSION);
    if version != VERSION_N {
        return Err(DecodeError::Unsupported(format!(
            "format N version {version} (this build reads version {VERSION_N})"
        )));
    }
    match get32(b, n::STATE) {
        0 => return Err(DecodeError::NotReady),
        n::STATE_READY => {}
        other => {
            return Err(corrupt(
                "state",
                n::STATE,
                format!("{other} is neither 0 nor 1"),
            ));
        }
    }
    let words = get32(b, n::WORDS);
    let capacity = get32(b, n::CAPACITY);
    let layout = LayoutN::new(words, capacity).map_err(|e| match e {
        SizeError::Zero(what) => corrupt(
            if words == 0 { "words" } else { "capacity" },
            if words == 0 { n::WORDS } else { n::CAPACITY },
            what,
        ),
        SizeError::Overflow(what) => corrupt("capacity", n::CAPACITY, what),
    })?;
    let stride = get32(b, n::STRIDE);
    if stride != layout.stride {
        return Err(corrupt(
            "stride",
            n::STRIDE,
            format!("{stride}, expected {} for {words} words", layout.stride),
        ));
    }
    if layout.size() > segment_len {
        return Err(corrupt(
            "capacity",
            n::CAPACITY,
            format!(
                "{capacity} slots of {stride} bytes need {} bytes, the segment has {segment_len}",
                layout.size()
            ),
        ));
    }
    let tail = get64(b, n::TAIL);
    let head = get64(b, n::HEAD);
    if head < u64::from(capacity) {
        return Err(corrupt(
            "head",
            n::HEAD,
            format!("{head} < capacity {capacity}"),
        ));
    }
    if tail < head || tail - head > u64::from(capacity) {
        return Err(corrupt(
            "tail",
            n::TAIL,
            format!("tail {tail} and head {head} are not within capacity {capacity}"),
        ));
    }
    if tail >= 1 << 61 {
        return Err(corrupt(
            "tail",
            n::TAIL,
            format!("{tail} is beyond any reachable position"),
        ));
    }
    Ok(HeaderN {
        layout,
        creator_pid: get32(b, n::CREATOR_PID),
        dropped: get64(b, n::DROPPED),
        abandoned: get64(b, n::ABANDONED),
        tail,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_g_offsets_match_the_go_layout() {
        let l = LayoutG::new(3, 5).unwrap();
        assert_eq!(l.msg_bytes, 24);
        assert_eq!(l.size(), 32 + 32 * 5);
        assert_eq!(l.slot_lock(0), 32);
        assert_eq!(l.slot_data(0), 40);
        assert_eq!(l.slot_lock(4), 32 + 4 * 32);
        let h = l.encode_header();
        assert_eq!(&h[..8], &[0x57, 0x6f, 0x72, 0x6b, 0x20, 0x69, 0x73, 0x20]);
        assert_eq!(&h[8..16], &[5, 0, 0, 0, 24, 0, 0, 0]);
        assert_eq!(&h[16..32], &[0; 16]);
        assert_eq!(
            decode(&h, l.size()),
            Ok(Header::G(HeaderG {
                layout: l,
                hdr_lock: 0,
                start: 0,
                len: 0
            }))
        );
    }

    #[test]
    fn raw_readers_use_each_fields_own_width() {
        let u32s_g = [g::CAPACITY, g::MSG_BYTES, g::START, g::LEN];
        let u32s_n = [
            n::VERSION,
            n::STATE,
            n::WORDS,
            n::CAPACITY,
            n::STRIDE,
            n::CREATOR_PID,
            n::DATA_SEQ,
            n::SPACE_SEQ,
            n::CONSUMERS_WAITING,
            n::PRODUCERS_WAITING,
        ];
        for off in (0..n::HEADER).step_by(8) {
            let g32 = u32s_g.contains(&off);
            assert_eq!(g32, u32s_g.contains(&(off + 4)), "G pair at {off}");
            assert_eq!(word_width(MAGIC_G, off), if g32 { 4 } else { 8 }, "G {off}");
            let n32 = u32s_n.contains(&off);
            assert_eq!(n32, u32s_n.contains(&(off + 4)), "N pair at {off}");
            assert_eq!(word_width(MAGIC_N, off), if n32 { 4 } else { 8 }, "N {off}");
        }
        // Slots are 64-bit words in both formats.
        assert_eq!(word_width(MAGIC_G, g::HEADER + 8), 8);
        assert_eq!(word_width(MAGIC_N, n::HEADER + n::SLOT_DATA), 8);
    }

    #[test]
    fn format_n_offsets_match_the_table() {
        let l = LayoutN::new(8, 4).unwrap();
        assert_eq!(l.stride, 128); // 16 + 64 = 80 → 128
        assert_eq!(LayoutN::new(6, 1).unwrap().stride, 64);
        assert_eq!(LayoutN::new(7, 1).unwrap().stride, 128);
        assert_eq!(l.size(), 256 + 4 * 128);
        assert_eq!(l.slot(4), 256);
        assert_eq!(l.slot(7), 256 + 3 * 128);
        let mut h = l.encode_header(42);
        assert_eq!(&h[..8], b"shmq-n1\0");
        assert_eq!(get32(&h, 8), 1);
        assert_eq!(get32(&h, 12), 0);
        assert_eq!(get32(&h, 16), 8);
        assert_eq!(get32(&h, 20), 4);
        assert_eq!(get32(&h, 24), 128);
        assert_eq!(get32(&h, 28), 42);
        assert_eq!(get64(&h, 64), 4);
        assert_eq!(get64(&h, 128), 4);
        assert_eq!(decode(&h, l.size()), Err(DecodeError::NotReady));
        put32(&mut h, n::STATE, 1);
        let Ok(Header::N(d)) = decode(&h, l.size()) else {
            panic!("ready header must decode")
        };
        assert_eq!((d.layout, d.head, d.tail, d.creator_pid), (l, 4, 4, 42));
        assert_eq!(LayoutN::initial_seq(3), 15);
    }

    #[test]
    fn sizes_are_checked() {
        assert!(matches!(LayoutG::new(0, 1), Err(SizeError::Zero(_))));
        assert!(matches!(LayoutG::new(1, 0), Err(SizeError::Zero(_))));
        // The Go library computes (msg + 8) × capacity in u32: this would wrap to 32 bytes.
        assert!(matches!(
            LayoutG::new(1, 1 << 28),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            LayoutN::new(u32::MAX, u32::MAX),
            Ok(_) | Err(SizeError::Overflow(_))
        ));
        assert!(matches!(LayoutN::new(1, 0), Err(SizeError::Zero(_))));
    }

    #[test]
    fn bad_headers_are_typed_errors() {
        let l = LayoutG::new(1, 2).unwrap();
        let good = l.encode_header();
        let mut h = good;
        h[0] = b'x';
        assert!(matches!(decode(&h, 64), Err(DecodeError::Unsupported(_))));
        assert!(matches!(decode(&[0u8; 32], 64), Err(DecodeError::NotReady)));
        let mut h = good;
        put32(&mut h, g::START, 2);
        assert!(matches!(
            decode(&h, 64),
            Err(DecodeError::Corrupt { field: "start", .. })
        ));
        let mut h = good;
        put32(&mut h, g::LEN, 3);
        assert!(matches!(
            decode(&h, 64),
            Err(DecodeError::Corrupt { field: "len", .. })
        ));
        let mut h = good;
        put32(&mut h, g::MSG_BYTES, 12);
        assert!(matches!(
            decode(&h, 64),
            Err(DecodeError::Corrupt {
                field: "msg_bytes",
                ..
            })
        ));
        assert!(matches!(
            decode(&good, 40),
            Err(DecodeError::Corrupt {
                field: "capacity",
                ..
            })
        ));
        let ln = LayoutN::new(1, 2).unwrap();
        let mut h = ln.encode_header(1);
        put32(&mut h, n::STATE, 1);
        put32(&mut h, n::VERSION, 2);
        assert!(matches!(
            decode(&h, ln.size()),
            Err(DecodeError::Unsupported(_))
        ));
        put32(&mut h, n::VERSION, 1);
        put64(&mut h, n::TAIL, 5);
        assert!(matches!(
            decode(&h, ln.size()),
            Err(DecodeError::Corrupt { field: "tail", .. })
        ));
        put64(&mut h, n::TAIL, 2);
        put32(&mut h, n::STRIDE, 8);
        assert!(matches!(
            decode(&h, ln.size()),
            Err(DecodeError::Corrupt {
                field: "stride",
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300), len in 0u64..10_000, magic in 0u8..3) {
            let mut bytes = bytes;
            if bytes.len() >= 8 {
                match magic {
                    0 => bytes[..8].copy_from_slice(&MAGIC_G),
                    1 => bytes[..8].copy_from_slice(&MAGIC_N),
                    _ => {}
                }
            }
            let _ = decode(&bytes, len);
        }
    }
}
