//! Pure encode/decode of duraqueue's on-disk formats: no I/O, no `unsafe`.
//!
//! Every decoder takes untrusted bytes (the file may have been written by another process,
//! torn by a crash or damaged) and returns `None` or a [`Defect`]; none of them panics, for any
//! input. This module is the fuzzing surface of the crate.
//!
//! - **v1** is the original C library's format (spec §2): no file header, a ring of N bytes
//!   (file length N + 1), records = 32-byte header + payload + 1..=32 bytes of padding +
//!   32-byte footer, big-endian integers, stamp of 16 × `x`.
//! - **v2** (spec §4.2, opt-in) puts a one-page superblock (two CRC-protected slots) before
//!   the ring and protects every header, footer and payload with CRC32C and 64-bit sequence
//!   numbers.
//!
//! Recovery functions work on the **mirrored view** of the ring: a slice of at least 2 × N
//! bytes whose second half repeats the first, so a record that runs past the ring end is still
//! one contiguous slice. Offsets they return are physical ring offsets (`0..N`).

use std::fmt::Write as _;
use std::ops::Range;

/// Alignment unit of the ring, and the size of every header and footer.
pub const SLOT: u64 = 32;

/// The v1 stamp that opens every header and footer: 16 × ASCII `x`.
pub const STAMP: [u8; 16] = [b'x'; 16];

/// v2: size of the superblock page that precedes the ring in the file.
pub const SUPERBLOCK_SIZE: u64 = 4096;

/// v2: byte offsets of the two superblock copies inside the superblock page.
pub const SUPERBLOCK_SLOTS: [usize; 2] = [0, 512];

/// v2 header magic.
pub const V2_HEADER_MAGIC: [u8; 4] = *b"DQ2H";

/// v2 footer magic.
pub const V2_FOOTER_MAGIC: [u8; 4] = *b"DQ2F";

/// Smallest possible record: header, 32 bytes of padding (empty payload), footer.
pub const MIN_RECORD: u64 = 3 * SLOT;

/// Size of a header or footer, as a `usize` for slicing.
const FRAME: usize = 32;

/// v1 `type` word of a header.
const V1_TYPE_HEADER: u32 = 0;
/// v1 `type` word of a footer.
const V1_TYPE_FOOTER: u32 = 1;

/// On-disk format of a queue file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// The original C library's format (spec §2): no superblock, 32-bit ids, no checksums.
    #[default]
    V1,
    /// The crate's versioned format (spec §4.2): superblock, 64-bit seqs, CRC32C everywhere.
    V2,
}

/// A problem found in untrusted bytes: `offset` is relative to the slice given to the
/// decoder (the caller adds the file offset), `detail` names the field and the bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    /// Byte offset of the problem, relative to the slice that was decoded.
    pub offset: u64,
    /// Which field is wrong and what it holds.
    pub detail: String,
}

impl Defect {
    fn new(offset: u64, detail: impl Into<String>) -> Self {
        Defect {
            offset,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Defect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.detail)
    }
}

impl std::error::Error for Defect {}

/// Padding after a payload of `len` bytes: `32 - len % 32`, always 1..=32 (never 0, as in the
/// original: a 64-byte payload gets 32 bytes).
pub fn padding(len: u64) -> u64 {
    SLOT - len % SLOT
}

/// Size of a whole record with a payload of `len` bytes: `len + padding(len) + 64`, a multiple
/// of 32. Saturates at `u64::MAX` instead of overflowing (such a record never fits anyway).
pub fn record_size(len: u64) -> u64 {
    len.saturating_add(padding(len)).saturating_add(2 * SLOT)
}

/// A decoded header or footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// `true` for a footer, `false` for a header.
    pub footer: bool,
    /// Sequence number: v1 = the 32-bit id widened, v2 = the 64-bit seq.
    pub seq: u64,
    /// Payload length.
    pub len: u32,
    /// v2 only: CRC32C of the payload as stored in the frame (`None` in v1).
    pub payload_crc: Option<u32>,
}

/// Little/big-endian readers on fixed positions of a 32-byte frame or 64-byte superblock.
/// The arrays have a fixed size, so the sub-slices always exist; `first_chunk` keeps even that
/// panic-free without an `unwrap`.
fn be_u32(b: &[u8], at: usize) -> u32 {
    word::<4>(b, at).map_or(0, u32::from_be_bytes)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    word::<4>(b, at).map_or(0, u32::from_le_bytes)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    word::<8>(b, at).map_or(0, u64::from_le_bytes)
}

fn word<const W: usize>(b: &[u8], at: usize) -> Option<[u8; W]> {
    b.get(at..)?.first_chunk::<W>().copied()
}

/// `bytes[start .. start + len]` with u64 positions, `None` if any part is absent.
fn span(bytes: &[u8], start: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

/// The 32-byte frame at `at`, if all of it is present.
fn frame_at(bytes: &[u8], at: u64) -> Option<&[u8; FRAME]> {
    span(bytes, at, SLOT)?.first_chunk::<FRAME>()
}

fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Shows up to 8 bytes as escaped ASCII, for defect details.
fn show(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for b in bytes.iter().take(8) {
        let _ = write!(s, "{}", b.escape_ascii());
    }
    s.push('"');
    s
}

fn encode_frame(format: Format, footer: bool, seq: u64, len: u32, payload_crc: u32) -> [u8; 32] {
    let mut f = [0u8; FRAME];
    match format {
        Format::V1 => {
            let kind = if footer {
                V1_TYPE_FOOTER
            } else {
                V1_TYPE_HEADER
            };
            f[..16].copy_from_slice(&STAMP);
            f[16..20].copy_from_slice(&kind.to_be_bytes());
            // The on-disk id is the low 32 bits of the seq (spec §3: `Seq`).
            f[20..24].copy_from_slice(&(seq as u32).to_be_bytes());
            f[24..28].copy_from_slice(&len.to_be_bytes());
            // 28..32: reserved, written as zero (the original left stack garbage there).
        }
        Format::V2 => {
            let magic = if footer {
                V2_FOOTER_MAGIC
            } else {
                V2_HEADER_MAGIC
            };
            f[..4].copy_from_slice(&magic);
            f[4..8].copy_from_slice(&len.to_le_bytes());
            f[8..16].copy_from_slice(&seq.to_le_bytes());
            f[16..20].copy_from_slice(&payload_crc.to_le_bytes());
            // 20..28: reserved, zero.
            let crc = crc32c(&f[..28]);
            f[28..32].copy_from_slice(&crc.to_le_bytes());
        }
    }
    f
}

/// Writes a whole record (header, payload, zero padding, footer) into `out`, whose length must
/// be `record_size(payload.len())`. If it is not, or the payload is longer than `u32::MAX`
/// bytes, nothing is written and `false` is returned (no panic).
///
/// v1: id = low 32 bits of `seq`, reserved word = 0. v2: per spec §4.2 (magic `DQ2H`/`DQ2F`,
/// little-endian, CRC32C of the payload, CRC32C of frame bytes 0..28).
pub fn encode_record(format: Format, seq: u64, payload: &[u8], out: &mut [u8]) -> bool {
    let Ok(len) = u32::try_from(payload.len()) else {
        return false;
    };
    if u64::try_from(out.len()).ok() != Some(record_size(u64::from(len))) {
        return false;
    }
    let payload_crc = match format {
        Format::V1 => 0,
        Format::V2 => crc32c(payload),
    };
    // out.len() >= 96 and payload.len() + 64 < out.len() were established above; the splits
    // below cannot fail, but split_at_mut_checked keeps that out of the panic surface.
    let Some((header, rest)) = out.split_at_mut_checked(FRAME) else {
        return false;
    };
    let Some((body, footer)) = rest.split_last_chunk_mut::<FRAME>() else {
        return false;
    };
    let Some((data, pad)) = body.split_at_mut_checked(payload.len()) else {
        return false;
    };
    header.copy_from_slice(&encode_frame(format, false, seq, len, payload_crc));
    data.copy_from_slice(payload);
    pad.fill(0);
    *footer = encode_frame(format, true, seq, len, payload_crc);
    true
}

/// Why a v2 frame does not decode; `None` from [`decode_frame`], a detail in recovery.
fn parse_v2(f: &[u8; FRAME]) -> Result<Frame, String> {
    let footer = match word::<4>(f, 0) {
        Some(V2_HEADER_MAGIC) => false,
        Some(V2_FOOTER_MAGIC) => true,
        _ if f.iter().all(|&b| b == 0) => return Err("32 zero bytes, no frame".into()),
        _ => return Err(format!("magic {}", show(&f[..4]))),
    };
    let stored = le_u32(f, 28);
    let computed = crc32c(&f[..28]);
    if stored != computed {
        return Err(format!(
            "frame CRC {stored:#010x}, computed {computed:#010x}"
        ));
    }
    // The reserved bytes 20..28 are covered by the CRC; a non-zero value with a valid CRC is
    // not damage, so it is ignored (room for a later minor revision).
    Ok(Frame {
        footer,
        seq: le_u64(f, 8),
        len: le_u32(f, 4),
        payload_crc: Some(le_u32(f, 16)),
    })
}

/// Decodes the 32-byte frame at the start of `bytes`. `None` if `bytes` is shorter than 32,
/// or the stamp/magic, the type (v1) or the frame CRC (v2) is invalid. The v1 reserved word
/// is ignored (the original wrote garbage there).
pub fn decode_frame(format: Format, bytes: &[u8]) -> Option<Frame> {
    let f = bytes.first_chunk::<FRAME>()?;
    match format {
        Format::V1 => {
            if f[..16] != STAMP {
                return None;
            }
            let footer = match be_u32(f, 16) {
                V1_TYPE_HEADER => false,
                V1_TYPE_FOOTER => true,
                _ => return None,
            };
            Some(Frame {
                footer,
                seq: u64::from(be_u32(f, 20)),
                len: be_u32(f, 24),
                payload_crc: None,
            })
        }
        Format::V2 => parse_v2(f).ok(),
    }
}

/// A record found by recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// Physical ring offset of the header, `0..N`.
    pub offset: u64,
    /// Sequence number (v1: widened id, monotonic across the 2^32 wrap within one chain).
    pub seq: u64,
    /// Payload length.
    pub len: u32,
}

impl Located {
    /// Size of the whole record on disk: `record_size(len)`.
    pub fn size(&self) -> u64 {
        record_size(u64::from(self.len))
    }

    /// Payload position `offset + 32 .. offset + 32 + len`, valid in the mirrored view (it may
    /// run past N). Saturating: a hand-made `Located` never makes this panic, slicing with it
    /// still needs `get`.
    pub fn payload_range(&self) -> Range<usize> {
        let start = usize::try_from(self.offset.saturating_add(SLOT)).unwrap_or(usize::MAX);
        let len = usize::try_from(self.len).unwrap_or(usize::MAX);
        start..start.saturating_add(len)
    }
}

/// Result of a recovery scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The delivered chain, oldest first; consecutive seqs, each record starting where the
    /// previous one ends (mod N), total size at most N.
    pub records: Vec<Located>,
    /// Physical offset of the first record (v1 empty ring: 0; v2: the head offset passed in).
    pub head: u64,
    /// Physical offset where the next record goes: `(last.offset + last.size) % N`, or `head`
    /// when empty. Equal to `head` also when the ring is exactly full (see [`Recovery::used`]).
    pub tail: u64,
    /// Last seq + 1; v1 empty ring: 0; v2 empty: the head seq passed in.
    pub next_seq: u64,
    /// v1: valid candidates (header + matching footer) not in the delivered chain. v2: 0.
    pub discarded: usize,
    /// Ring bytes the scan walked over (v1: both passes when the ring start was re-aligned,
    /// so up to 2 N) or validated (v2: accepted records plus the rejected frame).
    pub bytes_scanned: u64,
    /// Why recovery stopped. v2: the first failed check that ended the chain (a clean end of
    /// data reads "32 zero bytes, no frame"); `None` only when the chain fills the ring exactly.
    /// v1: `None`, except when `n` itself is unusable (0 or not a multiple of 32). Informational:
    /// the records delivered are valid either way.
    pub stopped: Option<Defect>,
}

impl Recovery {
    /// Bytes occupied by the delivered records (N when the ring is exactly full).
    pub fn used(&self) -> u64 {
        self.records
            .iter()
            .fold(0u64, |acc, r| acc.saturating_add(r.size()))
    }

    fn empty(head: u64, next_seq: u64) -> Self {
        Recovery {
            head,
            tail: head,
            next_seq,
            ..Recovery::default()
        }
    }
}

/// Checks that `n` is a usable ring size: positive and 32-aligned.
fn check_ring_size(n: u64) -> Result<(), Defect> {
    if n == 0 || !n.is_multiple_of(SLOT) {
        Err(Defect::new(
            0,
            format!("ring size {n} is not a positive multiple of {SLOT}"),
        ))
    } else {
        Ok(())
    }
}

/// A v1 header at a slot whose footer matches (spec §2.5 step 1).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    offset: u64,
    id: u32,
    len: u32,
    size: u64,
}

/// Is there a v1 candidate at physical slot `at`? Header: stamp, type 0, record size ≤ n.
/// Footer at `at + size - 32` in the mirror (= mod n): stamp, type 1, same id, same len.
fn v1_candidate(ring: &[u8], n: u64, at: u64) -> Option<Candidate> {
    let header = decode_frame(Format::V1, frame_at(ring, at)?)?;
    if header.footer {
        return None;
    }
    let size = record_size(u64::from(header.len));
    if size > n {
        return None;
    }
    let footer_at = at.checked_add(size)?.checked_sub(SLOT)?;
    let footer = decode_frame(Format::V1, frame_at(ring, footer_at)?)?;
    // Defects 6 and 8: the footer must repeat both id and len of the header.
    if !footer.footer || footer.seq != header.seq || footer.len != header.len {
        return None;
    }
    Some(Candidate {
        offset: at,
        id: header.seq as u32,
        len: header.len,
        size,
    })
}

/// One pass of the v1 walk over the logical positions `start .. start + n` (physical = mod n).
/// Returns the candidates in scan order, how far the last candidate ran past `start + n`
/// (non-zero only when it wraps past the pass's end) and the bytes walked.
fn v1_pass(ring: &[u8], n: u64, start: u64) -> (Vec<Candidate>, u64, u64) {
    let limit = start.saturating_add(n);
    let mut found = Vec::new();
    let mut pos = start;
    let mut walked = 0u64;
    while pos < limit {
        let phys = pos % n;
        let slot_end = phys.saturating_add(SLOT);
        if usize::try_from(slot_end).map_or(true, |e| e > ring.len()) {
            // Short view: no later slot of this lap exists either; jump to the next lap (where
            // physical offsets restart at 0) instead of stepping through absent bytes.
            pos = pos.saturating_sub(phys).saturating_add(n);
            continue;
        }
        match v1_candidate(ring, n, phys) {
            Some(c) => {
                pos = pos.saturating_add(c.size);
                walked = walked.saturating_add(c.size);
                found.push(c);
            }
            None => {
                pos = pos.saturating_add(SLOT);
                walked = walked.saturating_add(SLOT);
            }
        }
    }
    (found, pos.saturating_sub(limit), walked)
}

/// `a` is older than `b` under serial-number arithmetic on u32 (RFC 1982 style).
fn serial_older(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

/// v1 recovery, spec §2.5.
///
/// `ring` is the mirrored view: `ring.len() >= 2 * n` and `ring[n..2n] == ring[0..n]`. Bytes
/// past the end of a shorter slice are treated as absent: records that would need them are not
/// candidates. `n` must be a positive multiple of 32; otherwise the result is empty with
/// `stopped` set.
///
/// The walk visits 32-byte slots; a candidate (header + footer with the same id and len,
/// record size ≤ n) is skipped as a whole, anything else advances 32 bytes, and nothing
/// aborts. The walk starts at 0; if the last candidate it finds runs past the ring end, the
/// bytes it covers at the ring start were walked as if they were records of their own (a
/// payload there may hold a phantom header/footer pair, defect 12), so the walk is redone
/// once from the end of that candidate, making the straddling record's extent skipped like
/// any other.
///
/// Candidates link B after A when `B.id == A.id + 1 (mod 2^32)` and B starts where A ends
/// (mod n). A chain starts at a candidate without predecessor; the chain whose first id is
/// oldest under serial-number comparison is delivered, ties broken by the longer chain, then
/// the lower offset (if every candidate has a predecessor, which needs 2^32 records, the
/// lowest offset starts). A chain never takes a record twice nor exceeds n bytes in total, so
/// a ring that is exactly full is delivered once. Every other candidate counts in `discarded`.
pub fn recover_v1(ring: &[u8], n: u64) -> Recovery {
    if let Err(d) = check_ring_size(n) {
        return Recovery {
            stopped: Some(d),
            ..Recovery::default()
        };
    }
    let (mut cands, overshoot, mut walked) = v1_pass(ring, n, 0);
    if overshoot > 0 {
        // overshoot < n: the wrapping candidate started below n and is at most n long.
        let (again, _, w) = v1_pass(ring, n, overshoot % n);
        cands = again;
        walked = walked.saturating_add(w);
    }
    let (chain, discarded) = v1_choose_chain(&cands, n);

    let mut out = Recovery::empty(0, 0);
    out.bytes_scanned = walked;
    out.discarded = discarded;
    let Some(&first) = chain.first().and_then(|&i| cands.get(i)) else {
        return out;
    };
    let mut seq = u64::from(first.id);
    for &i in &chain {
        let Some(c) = cands.get(i) else { continue };
        out.records.push(Located {
            offset: c.offset,
            seq,
            len: c.len,
        });
        // Within one chain seqs keep counting past u32::MAX (the id wraps, the seq does not).
        seq = seq.saturating_add(1);
    }
    out.head = first.offset;
    if let Some(last) = out.records.last() {
        out.tail = last.offset.saturating_add(last.size()) % n;
        out.next_seq = last.seq.saturating_add(1);
    }
    out
}

/// Picks the delivered chain among `cands` (see [`recover_v1`]). Returns its candidate
/// indices, oldest first, and the number of candidates left out.
fn v1_choose_chain(cands: &[Candidate], n: u64) -> (Vec<usize>, usize) {
    let k = cands.len();
    if k == 0 {
        return (Vec::new(), 0);
    }
    // Offsets are unique within one pass (each physical slot is visited at most once).
    let mut by_offset: Vec<usize> = (0..k).collect();
    by_offset.sort_by_key(|&i| cands.get(i).map_or(0, |c| c.offset));
    let at_offset = |off: u64| -> Option<usize> {
        let p = by_offset
            .binary_search_by_key(&off, |&i| cands.get(i).map_or(0, |c| c.offset))
            .ok()?;
        by_offset.get(p).copied()
    };

    let mut succ: Vec<Option<usize>> = vec![None; k];
    let mut has_pred = vec![false; k];
    for (i, c) in cands.iter().enumerate() {
        let end = c.offset.saturating_add(c.size) % n;
        // The scan finds candidates in offset order, so the successor is nearly always the
        // next candidate: check it before searching.
        let next = Some(i + 1)
            .filter(|&j| cands.get(j).is_some_and(|d| d.offset == end))
            .or_else(|| at_offset(end))
            .filter(|&j| j != i && cands.get(j).is_some_and(|d| d.id == c.id.wrapping_add(1)));
        if let (Some(j), Some(s)) = (next, succ.get_mut(i)) {
            *s = Some(j);
            if let Some(p) = has_pred.get_mut(j) {
                *p = true;
            }
        }
    }

    // Walks from `s`, never revisiting a candidate nor exceeding n bytes. `stamp` marks the
    // candidates of the current walk, so one allocation serves every walk.
    let mut stamp = vec![0usize; k];
    let mut walks = 0usize;
    let mut walk = |s: usize| -> Vec<usize> {
        walks += 1;
        let mut chain = Vec::new();
        let mut total = 0u64;
        let mut cur = Some(s);
        while let Some(i) = cur {
            let Some(c) = cands.get(i) else { break };
            let Some(mark) = stamp.get_mut(i) else { break };
            if *mark == walks {
                break;
            }
            match total.checked_add(c.size) {
                Some(t) if t <= n => total = t,
                _ => break,
            }
            *mark = walks;
            chain.push(i);
            cur = succ.get(i).copied().flatten();
        }
        chain
    };

    let starts: Vec<usize> = (0..k)
        .filter(|&i| has_pred.get(i) == Some(&false))
        .collect();
    let best = if starts.is_empty() {
        // Every candidate has a predecessor: cycles only. Start at the lowest offset.
        by_offset.first().copied().map(|s| (s, walk(s)))
    } else {
        let mut best: Option<(usize, Vec<usize>)> = None;
        for &s in &starts {
            let Some(cs) = cands.get(s) else { continue };
            let better = match &best {
                None => Some(walk(s)),
                Some((b, bchain)) => match cands.get(*b) {
                    Some(cb) if serial_older(cs.id, cb.id) => Some(walk(s)),
                    Some(cb) if cs.id == cb.id => {
                        // Tie on the first id: the longer chain, then the lower offset.
                        let chain = walk(s);
                        let longer = chain.len() > bchain.len()
                            || (chain.len() == bchain.len() && cs.offset < cb.offset);
                        longer.then_some(chain)
                    }
                    _ => None,
                },
            };
            if let Some(chain) = better {
                best = Some((s, chain));
            }
        }
        best
    };
    let chain = best.map(|(_, c)| c).unwrap_or_default();
    let discarded = k.saturating_sub(chain.len());
    (chain, discarded)
}

/// Checks the v2 record at physical `at` expecting seq `expected` with `remaining` free ring
/// bytes. Returns the record, or the defect and how many bytes were inspected.
fn v2_record(
    ring: &[u8],
    n: u64,
    at: u64,
    expected: u64,
    remaining: u64,
) -> Result<Located, (Defect, u64)> {
    let defect = |off: u64, detail: String| Defect::new(off % n, detail);
    let Some(hbytes) = frame_at(ring, at) else {
        return Err((
            defect(
                at,
                format!("header past the end of the {}-byte ring view", ring.len()),
            ),
            0,
        ));
    };
    let header = match parse_v2(hbytes) {
        Ok(f) if !f.footer => f,
        Ok(_) => return Err((defect(at, "header slot holds a footer (DQ2F)".into()), SLOT)),
        Err(e) => return Err((defect(at, format!("header: {e}")), SLOT)),
    };
    if header.seq != expected {
        return Err((
            defect(
                at,
                format!("header seq {}, expected {expected}", header.seq),
            ),
            SLOT,
        ));
    }
    let size = record_size(u64::from(header.len));
    if size > remaining {
        return Err((
            defect(
                at,
                format!(
                    "header len {} (record of {size} bytes) exceeds the {remaining} bytes left in the ring",
                    header.len
                ),
            ),
            SLOT,
        ));
    }
    let footer_at = at.saturating_add(size).saturating_sub(SLOT);
    let Some(fbytes) = frame_at(ring, footer_at) else {
        return Err((
            defect(
                footer_at,
                format!("footer past the end of the {}-byte ring view", ring.len()),
            ),
            SLOT,
        ));
    };
    let footer = match parse_v2(fbytes) {
        Ok(f) if f.footer => f,
        Ok(_) => {
            return Err((
                defect(footer_at, "footer slot holds a header (DQ2H)".into()),
                size,
            ));
        }
        Err(e) => return Err((defect(footer_at, format!("footer: {e}")), size)),
    };
    if footer.len != header.len || footer.seq != header.seq {
        return Err((
            defect(
                footer_at,
                format!(
                    "footer len {} seq {} differ from header len {} seq {}",
                    footer.len, footer.seq, header.len, header.seq
                ),
            ),
            size,
        ));
    }
    if footer.payload_crc != header.payload_crc {
        return Err((
            defect(
                footer_at,
                "footer payload CRC differs from the header's".to_string(),
            ),
            size,
        ));
    }
    let payload_at = at.saturating_add(SLOT);
    let len = u64::from(header.len);
    let pad_at = payload_at.saturating_add(len);
    // v2 writes padding as zeros; anything else is damage (the CRCs do not cover it).
    let pad_ok = span(ring, pad_at, padding(len)).is_some_and(|p| p.iter().all(|&b| b == 0));
    if !pad_ok {
        return Err((defect(pad_at, "padding is not all zero".into()), size));
    }
    let Some(payload) = span(ring, payload_at, len) else {
        return Err((
            defect(payload_at, "payload past the end of the ring view".into()),
            size,
        ));
    };
    let computed = crc32c(payload);
    if Some(computed) != header.payload_crc {
        return Err((
            defect(
                payload_at,
                format!(
                    "payload CRC {:#010x}, header says {:#010x}",
                    computed,
                    header.payload_crc.unwrap_or(0)
                ),
            ),
            size,
        ));
    }
    Ok(Located {
        offset: at,
        seq: header.seq,
        len: header.len,
    })
}

/// v2 recovery, spec §4.2. `ring` is the mirrored view (as for [`recover_v1`]); starts at
/// physical `head_offset` (< n, multiple of 32) expecting `head_seq`, and accepts records
/// strictly in order: header magic and CRC, footer magic and CRC, footer len, seq and payload
/// CRC equal to the header's, seq == expected, zero padding, payload CRC, and record size ≤
/// the ring space left (so the chain never exceeds n bytes). The first failure ends the chain
/// and is reported in `stopped`; that point is the tail. An invalid `n` or `head_offset`
/// yields no records and a `stopped` defect (the caller should treat the file as corrupt).
pub fn recover_v2(ring: &[u8], n: u64, head_offset: u64, head_seq: u64) -> Recovery {
    let mut out = Recovery::empty(head_offset, head_seq);
    if let Err(d) = check_ring_size(n) {
        out.stopped = Some(d);
        return out;
    }
    if head_offset >= n || !head_offset.is_multiple_of(SLOT) {
        out.stopped = Some(Defect::new(
            0,
            format!(
                "head offset {head_offset} is not a {SLOT}-aligned offset below the ring size {n}"
            ),
        ));
        return out;
    }
    let mut at = head_offset;
    let mut remaining = n;
    let mut expected = head_seq;
    while remaining > 0 {
        let Some(after) = expected.checked_add(1) else {
            out.stopped = Some(Defect::new(at, "sequence numbers exhausted (u64::MAX)"));
            break;
        };
        match v2_record(ring, n, at, expected, remaining) {
            Ok(rec) => {
                let size = rec.size();
                out.records.push(rec);
                out.bytes_scanned = out.bytes_scanned.saturating_add(size);
                remaining = remaining.saturating_sub(size);
                at = at.saturating_add(size) % n;
                expected = after;
            }
            Err((d, inspected)) => {
                out.bytes_scanned = out.bytes_scanned.saturating_add(inspected);
                out.stopped = Some(d);
                break;
            }
        }
    }
    out.tail = at;
    out.next_seq = expected;
    out
}

/// The v2 superblock (spec §4.2): two copies in the first page, at [`SUPERBLOCK_SLOTS`].
///
/// Layout (u32/u64 little-endian): magic `DQRSv2\0\0` (0..8), version 2 (8..12), page size
/// (12..16), ring size (16..24), generation (24..32), head seq (32..40), head logical byte
/// offset (40..48), reserved zero (48..60), CRC32C of bytes 0..60 (60..64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Page size at creation.
    pub page_size: u32,
    /// Ring size N.
    pub ring_size: u64,
    /// Generation: of two valid slots, the higher one wins.
    pub generation: u64,
    /// First unconsumed record (the persisted consumer position).
    pub head_seq: u64,
    /// Logical byte offset of the head: physical = `head_offset % ring_size`.
    pub head_offset: u64,
}

impl Superblock {
    /// Encoded length of one superblock copy.
    pub const LEN: usize = 64;
    /// Magic at bytes 0..8.
    pub const MAGIC: [u8; 8] = *b"DQRSv2\0\0";
    /// Format version at bytes 8..12.
    pub const VERSION: u32 = 2;

    /// Encodes one superblock copy, CRC included.
    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&Self::MAGIC);
        b[8..12].copy_from_slice(&Self::VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.page_size.to_le_bytes());
        b[16..24].copy_from_slice(&self.ring_size.to_le_bytes());
        b[24..32].copy_from_slice(&self.generation.to_le_bytes());
        b[32..40].copy_from_slice(&self.head_seq.to_le_bytes());
        b[40..48].copy_from_slice(&self.head_offset.to_le_bytes());
        // 48..60 reserved, zero.
        let crc = crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes one superblock copy from the first 64 bytes of `bytes`. Checks the length,
    /// magic, CRC, version and the reserved bytes, in that order (a damaged slot reports its
    /// CRC rather than whatever field the damage hit); the `Defect` names the field. Values
    /// are not checked against the file (ring size vs file length is the caller's business).
    pub fn decode(bytes: &[u8]) -> Result<Superblock, Defect> {
        let Some(b) = bytes.first_chunk::<64>() else {
            return Err(Defect::new(
                0,
                format!("superblock: {} bytes, {} needed", bytes.len(), Self::LEN),
            ));
        };
        if b[..8] != Self::MAGIC {
            return Err(Defect::new(
                0,
                format!("superblock magic {}", show(&b[..8])),
            ));
        }
        let stored = le_u32(b, 60);
        let computed = crc32c(&b[..60]);
        if stored != computed {
            return Err(Defect::new(
                60,
                format!("superblock CRC {stored:#010x}, computed {computed:#010x}"),
            ));
        }
        let version = le_u32(b, 8);
        if version != Self::VERSION {
            return Err(Defect::new(
                8,
                format!("superblock version {version}, expected {}", Self::VERSION),
            ));
        }
        if let Some(i) = b[48..60].iter().position(|&x| x != 0) {
            return Err(Defect::new(
                48 + i as u64,
                "superblock reserved bytes 48..60 are not zero",
            ));
        }
        Ok(Superblock {
            page_size: le_u32(b, 12),
            ring_size: le_u64(b, 16),
            generation: le_u64(b, 24),
            head_seq: le_u64(b, 32),
            head_offset: le_u64(b, 40),
        })
    }

    /// From the first page (at least 576 bytes): decodes both slots and returns the valid one
    /// with the higher generation and its slot index (0 or 1); on equal generations, slot 0.
    /// `Err` if neither is valid: a `Defect` at offset 0 naming both problems.
    pub fn read_page(page: &[u8]) -> Result<(Superblock, usize), Defect> {
        let mut results = SUPERBLOCK_SLOTS.iter().map(|&at| {
            page.get(at..)
                .ok_or_else(|| Defect::new(0, "superblock slot past the end of the page"))
                .and_then(Superblock::decode)
        });
        let first = results
            .next()
            .unwrap_or_else(|| Err(Defect::new(0, "no slot")));
        let second = results
            .next()
            .unwrap_or_else(|| Err(Defect::new(0, "no slot")));
        match (first, second) {
            (Ok(a), Ok(b)) if b.generation > a.generation => Ok((b, 1)),
            (Ok(a), _) => Ok((a, 0)),
            (Err(_), Ok(b)) => Ok((b, 1)),
            (Err(ea), Err(eb)) => {
                let [sa, sb] = SUPERBLOCK_SLOTS;
                Err(Defect::new(
                    0,
                    format!(
                        "no valid superblock: slot 0 (offset {sa}): offset {}: {}; slot 1 (offset {sb}): offset {}: {}",
                        ea.offset, ea.detail, eb.offset, eb.detail
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes one record into a fresh buffer.
    fn record(format: Format, seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0xAA; record_size(payload.len() as u64) as usize];
        assert!(encode_record(format, seq, payload, &mut out));
        out
    }

    /// Copies `bytes` into the ring at `at`, wrapping mod its length (how the mirror writes).
    fn put(ring: &mut [u8], at: u64, bytes: &[u8]) {
        let n = ring.len();
        for (i, &b) in bytes.iter().enumerate() {
            ring[(at as usize + i) % n] = b;
        }
    }

    fn mirror(ring: &[u8]) -> Vec<u8> {
        [ring, ring].concat()
    }

    /// Writes consecutive records from `head` (mod n); returns the ring and what was written.
    fn write_chain(
        format: Format,
        n: u64,
        head: u64,
        first_seq: u64,
        payloads: &[Vec<u8>],
    ) -> (Vec<u8>, Vec<Located>) {
        let mut ring = vec![0u8; n as usize];
        let mut at = head;
        let mut written = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let seq = first_seq + i as u64;
            put(&mut ring, at, &record(format, seq, p));
            let loc = Located {
                offset: at,
                seq,
                len: p.len() as u32,
            };
            at = (at + loc.size()) % n;
            written.push(loc);
        }
        (ring, written)
    }

    fn payload(len: usize, tag: u8) -> Vec<u8> {
        (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
    }

    /// The payload bytes of `loc` in a mirrored view.
    fn bytes_of<'a>(view: &'a [u8], loc: &Located) -> &'a [u8] {
        &view[loc.payload_range()]
    }

    /// Zeroes the header of a record, as the original's poll does.
    fn zero_header(ring: &mut [u8], loc: &Located) {
        put(ring, loc.offset, &[0; 32]);
    }

    #[test]
    fn padding_and_record_size_table() {
        for (len, pad, size) in [
            (0, 32, 96),
            (4, 28, 96),
            (31, 1, 96),
            (32, 32, 128),
            (33, 31, 128),
            (64, 32, 160),
            (100, 28, 192),
        ] {
            assert_eq!(padding(len), pad, "padding({len})");
            assert_eq!(record_size(len), size, "record_size({len})");
        }
        assert_eq!(record_size(u64::MAX), u64::MAX);
        assert_eq!(record_size(u64::MAX - 40), u64::MAX);
    }

    #[test]
    fn abcd_v1_exact_bytes() {
        let mut expected = Vec::new();
        expected.extend_from_slice(&[b'x'; 16]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        expected.extend_from_slice(b"abcd");
        expected.extend_from_slice(&[0; 28]);
        expected.extend_from_slice(&[b'x'; 16]);
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(expected.len(), 96);
        assert_eq!(record(Format::V1, 0, b"abcd"), expected);
    }

    #[test]
    fn encode_rejects_wrong_output_length() {
        for format in [Format::V1, Format::V2] {
            for len in [0usize, 95, 97, 128] {
                let mut out = vec![7u8; len];
                assert!(!encode_record(format, 1, b"abcd", &mut out));
                assert!(out.iter().all(|&b| b == 7), "nothing written");
            }
        }
    }

    #[test]
    fn round_trip_v1() {
        for (seq, len) in [
            (0u64, 0usize),
            (1, 1),
            (255, 31),
            (256, 32),
            (0x1_2345_6789, 1000),
        ] {
            let p = payload(len, seq as u8);
            let r = record(Format::V1, seq, &p);
            let h = decode_frame(Format::V1, &r).unwrap();
            let f = decode_frame(Format::V1, &r[r.len() - 32..]).unwrap();
            let want = |footer| Frame {
                footer,
                seq: seq & 0xFFFF_FFFF,
                len: len as u32,
                payload_crc: None,
            };
            assert_eq!(h, want(false));
            assert_eq!(f, want(true));
            assert_eq!(&r[32..32 + len], &p[..]);
            assert!(r[32 + len..r.len() - 32].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn round_trip_v2() {
        for (seq, len) in [(0u64, 0usize), (1, 1), (u64::MAX - 1, 31), (1 << 40, 64)] {
            let p = payload(len, 3);
            let r = record(Format::V2, seq, &p);
            assert_eq!(&r[..4], b"DQ2H");
            assert_eq!(&r[r.len() - 32..r.len() - 28], b"DQ2F");
            let h = decode_frame(Format::V2, &r).unwrap();
            let f = decode_frame(Format::V2, &r[r.len() - 32..]).unwrap();
            let crc = Some(crc32c::crc32c(&p));
            assert_eq!(
                h,
                Frame {
                    footer: false,
                    seq,
                    len: len as u32,
                    payload_crc: crc
                }
            );
            assert_eq!(
                f,
                Frame {
                    footer: true,
                    seq,
                    len: len as u32,
                    payload_crc: crc
                }
            );
            // A v2 frame is not a v1 frame and vice versa.
            assert_eq!(decode_frame(Format::V1, &r), None);
            assert_eq!(decode_frame(Format::V2, &record(Format::V1, seq, &p)), None);
        }
    }

    #[test]
    fn decode_frame_rejects_bad_frames() {
        let r = record(Format::V1, 9, b"abc");
        assert_eq!(decode_frame(Format::V1, &r[..31]), None);
        assert_eq!(decode_frame(Format::V1, &[]), None);
        let mut bad = r.clone();
        bad[3] = b'y';
        assert_eq!(decode_frame(Format::V1, &bad), None, "stamp");
        let mut bad = r.clone();
        bad[19] = 2;
        assert_eq!(decode_frame(Format::V1, &bad), None, "type 2");
        let mut garbage = r.clone();
        garbage[28..32].copy_from_slice(&[0x41, 0x56, 0, 0]);
        assert!(
            decode_frame(Format::V1, &garbage).is_some(),
            "reserved ignored"
        );

        let r = record(Format::V2, 9, b"abc");
        for i in 0..32 {
            let mut bad = r.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode_frame(Format::V2, &bad), None, "v2 header byte {i}");
        }
        assert_eq!(decode_frame(Format::V2, &[0; 32]), None);
    }

    #[test]
    fn v2_chain_recovers_with_wrap_and_stops_at_zeros() {
        let n = 1024;
        let payloads = vec![payload(40, 1), payload(100, 2), Vec::new(), payload(33, 4)];
        let (ring, written) = write_chain(Format::V2, n, 928, 77, &payloads);
        let view = mirror(&ring);
        let r = recover_v2(&view, n, 928, 77);
        assert_eq!(r.records, written);
        for (loc, p) in r.records.iter().zip(&payloads) {
            assert_eq!(bytes_of(&view, loc), &p[..]);
        }
        assert_eq!(r.head, 928);
        let last = written.last().unwrap();
        assert_eq!(r.tail, (last.offset + last.size()) % n);
        assert_eq!(r.next_seq, 81);
        assert_eq!(r.discarded, 0);
        let stop = r.stopped.expect("stops at zeros");
        assert!(stop.detail.contains("zero"), "{stop:?}");
        assert_eq!(stop.offset, r.tail);

        // Expecting another seq: nothing.
        let r = recover_v2(&view, n, 928, 78);
        assert!(r.records.is_empty());
        assert_eq!((r.head, r.tail, r.next_seq), (928, 928, 78));
        // Invalid head offsets and ring sizes: nothing, and a defect.
        for (n, head) in [(n, 1024), (n, 930), (0, 0), (1000, 0)] {
            let r = recover_v2(&view, n, head, 77);
            assert!(
                r.records.is_empty() && r.stopped.is_some(),
                "n {n} head {head}"
            );
        }
    }

    #[test]
    fn v2_exactly_full_ring() {
        let n = 1024;
        // 4 × 192 + 256 = 1024.
        let payloads = vec![
            payload(100, 1),
            payload(100, 2),
            payload(180, 3),
            payload(100, 4),
            payload(100, 5),
        ];
        for head in [0, 320, 992] {
            let (ring, written) = write_chain(Format::V2, n, head, 5, &payloads);
            let r = recover_v2(&mirror(&ring), n, head, 5);
            assert_eq!(r.records, written, "head {head}");
            assert_eq!(r.used(), n);
            assert_eq!(r.tail, head);
            assert_eq!(r.next_seq, 10);
            assert_eq!(r.stopped, None);
        }
    }

    #[test]
    fn v2_every_single_bit_flip_ends_the_chain_before_it() {
        let n = 1024;
        let payloads = vec![payload(40, 1), payload(100, 2), Vec::new()];
        // The first record straddles the ring end (928 + 128 > 1024).
        let (ring, written) = write_chain(Format::V2, n, 928, 1000, &payloads);
        for (k, loc) in written.iter().enumerate() {
            for i in 0..loc.size() {
                for bit in 0..8 {
                    let mut damaged = ring.clone();
                    let at = ((loc.offset + i) % n) as usize;
                    damaged[at] ^= 1 << bit;
                    let r = recover_v2(&mirror(&damaged), n, 928, 1000);
                    assert_eq!(
                        r.records,
                        written[..k],
                        "record {k} byte {i} bit {bit} accepted"
                    );
                    assert!(r.stopped.is_some());
                }
            }
        }
    }

    /// Zeroes the ring from logical position `cut` (relative to `head`) to the end of the lap.
    fn zero_from(ring: &mut [u8], head: u64, cut: u64) {
        let n = ring.len() as u64;
        for p in cut..n {
            ring[((head + p) % n) as usize] = 0;
        }
    }

    /// Whether the bytes of `loc` that the format checks are the same in both rings.
    fn unchanged(format: Format, a: &[u8], b: &[u8], loc: &Located) -> bool {
        let n = a.len() as u64;
        let size = loc.size();
        (0..size)
            .filter(|&i| {
                let reserved = (28..32).contains(&i) || (size - 4..size).contains(&i);
                format == Format::V2 || !reserved
            })
            .all(|i| {
                let at = ((loc.offset + i) % n) as usize;
                a[at] == b[at]
            })
    }

    #[test]
    fn truncation_never_yields_unwritten_records() {
        let n = 1024;
        let payloads = vec![
            payload(40, 1),
            payload(100, 2),
            Vec::new(),
            payload(64, 4),
            payload(1, 5),
        ];
        for format in [Format::V1, Format::V2] {
            for head in [0u64, 896] {
                let (ring, written) = write_chain(format, n, head, 3, &payloads);
                let used: u64 = written.iter().map(Located::size).sum();
                for cut in 0..=used {
                    let mut torn = ring.clone();
                    zero_from(&mut torn, head, cut);
                    let view = mirror(&torn);
                    let r = match format {
                        Format::V1 => recover_v1(&view, n),
                        Format::V2 => recover_v2(&view, n, head, 3),
                    };
                    // Exactly the leading records whose bytes the cut left unchanged survive
                    // (v1: but for the reserved words, which the format ignores).
                    let intact: Vec<Located> = written
                        .iter()
                        .take_while(|l| unchanged(format, &ring, &torn, l))
                        .copied()
                        .collect();
                    assert_eq!(r.records, intact, "{format:?} head {head} cut {cut}");
                    for (loc, p) in r.records.iter().zip(&payloads) {
                        assert_eq!(bytes_of(&view, loc), &p[..]);
                    }
                    assert_eq!(r.discarded, 0);
                }
            }
        }
    }

    #[test]
    fn v1_empty_ring() {
        for n in [32u64, 4096] {
            let r = recover_v1(&vec![0; 2 * n as usize], n);
            assert_eq!(
                r,
                Recovery {
                    bytes_scanned: n,
                    ..Recovery::default()
                }
            );
        }
        let r = recover_v1(&[], 4096);
        assert!(r.records.is_empty() && r.stopped.is_none());
        assert!(recover_v1(&[0; 64], 0).stopped.is_some());
        assert!(recover_v1(&[0; 200], 100).stopped.is_some());
    }

    #[test]
    fn v1_single_record_at_zero_has_tail_after_it() {
        let (ring, written) = write_chain(Format::V1, 8192, 0, 0, &[b"abcd".to_vec()]);
        let r = recover_v1(&mirror(&ring), 8192);
        assert_eq!(r.records, written);
        assert_eq!((r.head, r.tail, r.next_seq), (0, 96, 1));
    }

    #[test]
    fn v1_chain_wrapping_past_the_end_with_a_straddling_record() {
        let n = 1024;
        let payloads: Vec<Vec<u8>> = (0..4).map(|i| payload(100, i)).collect();
        // 704..896, 896..1088 (straddles: footer at physical 32..64), 64..256, 256..448.
        let (ring, written) = write_chain(Format::V1, n, 704, 20, &payloads);
        assert_eq!(written[1].offset, 896);
        assert_eq!(written[2].offset, 64);
        let view = mirror(&ring);
        let r = recover_v1(&view, n);
        assert_eq!(r.records, written);
        assert_eq!(bytes_of(&view, &r.records[1]), &payloads[1][..]);
        assert_eq!((r.head, r.tail, r.next_seq), (704, 448, 24));
        assert_eq!(r.discarded, 0);
    }

    #[test]
    fn v1_ids_crossing_2_pow_32() {
        let n = 2048;
        let payloads: Vec<Vec<u8>> = (0..5).map(|i| payload(10, i)).collect();
        for head in [0u64, 1856] {
            let (ring, written) = write_chain(Format::V1, n, head, 0xFFFF_FFFD, &payloads);
            let r = recover_v1(&mirror(&ring), n);
            let seqs: Vec<u64> = r.records.iter().map(|l| l.seq).collect();
            assert_eq!(
                seqs,
                [
                    0xFFFF_FFFD,
                    0xFFFF_FFFE,
                    0xFFFF_FFFF,
                    0x1_0000_0000,
                    0x1_0000_0001
                ]
            );
            assert_eq!(r.records, written);
            assert_eq!(r.head, head);
            assert_eq!(r.next_seq, 0x1_0000_0002);
        }
    }

    #[test]
    fn v1_ids_past_255_keep_order() {
        // The original compared ids byte-swapped (defect 4).
        let n = 65536;
        let payloads: Vec<Vec<u8>> = (0..300).map(|i| payload(10, i as u8)).collect();
        let (ring, written) = write_chain(Format::V1, n, 0, 0, &payloads);
        let r = recover_v1(&mirror(&ring), n);
        assert_eq!(r.records, written);
        assert_eq!((r.tail, r.next_seq), (28800, 300));
    }

    #[test]
    fn v1_exactly_full_ring_is_delivered_once() {
        let n = 1024;
        let payloads = vec![
            payload(100, 1),
            payload(100, 2),
            payload(180, 3),
            payload(100, 4),
            payload(100, 5),
        ];
        for head in [0u64, 320, 992] {
            let (ring, written) = write_chain(Format::V1, n, head, 7, &payloads);
            let r = recover_v1(&mirror(&ring), n);
            assert_eq!(r.records, written, "head {head}");
            assert_eq!(r.used(), n);
            assert_eq!((r.head, r.tail, r.next_seq), (head, head, 12));
            assert_eq!(r.discarded, 0);
        }
    }

    #[test]
    fn v1_full_ring_of_one_record_size_n() {
        let n = 128;
        let (ring, written) = write_chain(Format::V1, n, 64, 1, &[payload(32, 0)]);
        let r = recover_v1(&mirror(&ring), n);
        assert_eq!(r.records, written);
        assert_eq!((r.head, r.tail, r.used()), (64, 64, 128));
    }

    #[test]
    fn v1_polled_records_with_zeroed_headers_stay_consumed() {
        let n = 4096;
        let payloads: Vec<Vec<u8>> = (0..10).map(|i| payload(7, i)).collect();
        let (mut ring, written) = write_chain(Format::V1, n, 0, 0, &payloads);
        for loc in &written[..4] {
            zero_header(&mut ring, loc);
        }
        let r = recover_v1(&mirror(&ring), n);
        assert_eq!(r.records, written[4..]);
        assert_eq!((r.head, r.tail, r.next_seq), (384, 960, 10));
        assert_eq!(r.discarded, 0);

        // All polled: empty, next id 0 (the original's rule, spec 2.5 step 4).
        for loc in &written[4..] {
            zero_header(&mut ring, loc);
        }
        let r = recover_v1(&mirror(&ring), n);
        assert!(r.records.is_empty());
        assert_eq!((r.head, r.tail, r.next_seq), (0, 0, 0));
    }

    #[test]
    fn v1_stale_footer_after_id_restart_is_not_resurrected() {
        // Old lap: ids 0..3 of 100 bytes (192-byte records), all polled (headers zeroed,
        // footers still present at 160, 352, 544, 736).
        let n = 4096;
        let old: Vec<Vec<u8>> = (0..4).map(|i| payload(100, i)).collect();
        let (mut ring, old_written) = write_chain(Format::V1, n, 0, 0, &old);
        for loc in &old_written {
            zero_header(&mut ring, loc);
        }
        // New writer restarts at id 0: a 10-byte record at 0, then a torn id 1 at 96 (header
        // only) whose len 212 puts its footer slot (96 + 32 + 212 + 12 = 352) exactly on the
        // stale footer of old id 1.
        put(&mut ring, 0, &record(Format::V1, 0, &payload(10, 9)));
        let torn = record(Format::V1, 1, &payload(212, 9));
        put(&mut ring, 96, &torn[..32]);
        assert_eq!(96 + torn.len() as u64 - 32, old_written[1].offset + 160);
        let r = recover_v1(&mirror(&ring), n);
        // The stale footer has id 1 but len 100: not a match (defects 6 and 8).
        assert_eq!(r.records.len(), 1);
        assert_eq!(r.records[0].seq, 0);
        assert_eq!((r.tail, r.next_seq), (96, 1));
    }

    #[test]
    fn v1_gap_keeps_the_prefix_and_counts_the_rest_as_discarded() {
        // Defect 9: record 1 lost its footer; 0 is delivered, 2..4 are discarded.
        let n = 4096;
        let payloads: Vec<Vec<u8>> = (0..5).map(|i| payload(20, i)).collect();
        let (mut ring, written) = write_chain(Format::V1, n, 0, 0, &payloads);
        let f1 = written[1].offset + written[1].size() - 32;
        put(&mut ring, f1, &[0; 32]);
        let r = recover_v1(&mirror(&ring), n);
        assert_eq!(r.records, written[..1]);
        assert_eq!(r.discarded, 3);
        assert_eq!((r.tail, r.next_seq), (96, 1));
    }

    #[test]
    fn v1_oldest_chain_wins_under_serial_comparison() {
        // Chain A: ids 0xFFFF_FFF0.. at 0; chain B: ids 5.. at 2048 (not linked).
        // 0xFFFF_FFF0 is older than 5 under serial-number arithmetic.
        let n = 4096;
        let p: Vec<Vec<u8>> = (0..3).map(|i| payload(10, i)).collect();
        let (mut ring, a) = write_chain(Format::V1, n, 0, 0xFFFF_FFF0, &p);
        let (ring_b, _) = write_chain(Format::V1, n, 2048, 5, &p);
        ring[2048..].copy_from_slice(&ring_b[2048..]);
        let r = recover_v1(&mirror(&ring), n);
        assert_eq!(r.records, a);
        assert_eq!(r.discarded, 3);
    }

    #[test]
    fn v1_phantom_inside_a_live_payload_is_not_delivered() {
        let n = 4096;
        // The outer payload starts with a complete record of id 0 (older than the outer's 7)
        // at ring offset 32: 32-aligned, a valid header/footer pair.
        let mut inner = record(Format::V1, 0, b"phantom");
        inner.extend_from_slice(b"tail of the outer payload");
        let payloads = vec![inner, payload(10, 1)];
        let (ring, written) = write_chain(Format::V1, n, 0, 7, &payloads);
        let r = recover_v1(&mirror(&ring), n);
        assert_eq!(r.records, written);
        assert_eq!(r.discarded, 0);
    }

    #[test]
    fn v1_phantom_inside_a_straddling_payload_is_not_delivered() {
        let n = 1024;
        // Record 50 at 896 is 384 bytes long (896..1280): its payload bytes 96..192 land at
        // physical 0..96, where the walk from 0 meets them before meeting record 50's header.
        let mut outer = payload(300, 0x2e);
        outer[96..192].copy_from_slice(&record(Format::V1, 0, b"phant"));
        let payloads = vec![payload(180, 1), outer, payload(10, 2), payload(10, 3)];
        let (ring, written) = write_chain(Format::V1, n, 640, 49, &payloads);
        assert_eq!(
            written.iter().map(|l| l.offset).collect::<Vec<_>>(),
            [640, 896, 256, 352]
        );
        let view = mirror(&ring);
        assert!(
            decode_frame(Format::V1, &view[..32]).is_some(),
            "phantom is there"
        );
        let r = recover_v1(&view, n);
        assert_eq!(r.records, written);
        assert_eq!(r.discarded, 0);
        assert_eq!((r.head, r.tail, r.next_seq), (640, 448, 53));
    }

    #[test]
    fn v1_short_view_treats_missing_bytes_as_absent() {
        let n = 1024;
        let payloads: Vec<Vec<u8>> = (0..2).map(|i| payload(100, i)).collect();
        let (ring, written) = write_chain(Format::V1, n, 896, 1, &payloads);
        assert_eq!(written[1].offset, 64);
        // Without the mirror the straddling first record cannot be read; the second can.
        let r = recover_v1(&ring, n);
        assert_eq!(r.records, written[1..]);
        // With it, both.
        assert_eq!(recover_v1(&mirror(&ring), n).records, written);
    }

    fn superblock() -> Superblock {
        Superblock {
            page_size: 4096,
            ring_size: 1 << 20,
            generation: 6,
            head_seq: 123_456,
            head_offset: (1 << 20) * 3 + 96,
        }
    }

    #[test]
    fn superblock_round_trip_and_layout() {
        let sb = superblock();
        let b = sb.encode();
        assert_eq!(&b[..8], b"DQRSv2\0\0");
        assert_eq!(&b[8..12], &2u32.to_le_bytes());
        assert_eq!(&b[12..16], &4096u32.to_le_bytes());
        assert_eq!(&b[16..24], &(1u64 << 20).to_le_bytes());
        assert_eq!(&b[24..32], &6u64.to_le_bytes());
        assert_eq!(&b[32..40], &123_456u64.to_le_bytes());
        assert_eq!(&b[40..48], &sb.head_offset.to_le_bytes());
        assert_eq!(&b[48..60], &[0; 12]);
        assert_eq!(&b[60..64], &crc32c::crc32c(&b[..60]).to_le_bytes());
        assert_eq!(Superblock::decode(&b), Ok(sb));
        let mut longer = b.to_vec();
        longer.extend_from_slice(&[0xFF; 100]);
        assert_eq!(Superblock::decode(&longer), Ok(sb));
    }

    #[test]
    fn superblock_rejections_name_the_field() {
        let b = superblock().encode();
        let err = Superblock::decode(&b[..63]).unwrap_err();
        assert!(err.detail.contains("63 bytes"), "{err:?}");

        for i in 8..64 {
            let mut bad = b;
            bad[i] ^= 1;
            let err = Superblock::decode(&bad).unwrap_err();
            assert!(err.detail.contains("CRC"), "byte {i}: {err:?}");
            assert_eq!(err.offset, 60);
        }
        let mut bad = b;
        bad[0] = b'X';
        assert!(
            Superblock::decode(&bad)
                .unwrap_err()
                .detail
                .contains("magic")
        );

        // Valid CRC over a wrong version or non-zero reserved bytes.
        let reseal = |mut x: [u8; 64]| {
            let crc = crc32c::crc32c(&x[..60]);
            x[60..].copy_from_slice(&crc.to_le_bytes());
            x
        };
        let mut v3 = b;
        v3[8] = 3;
        let err = Superblock::decode(&reseal(v3)).unwrap_err();
        assert!(err.detail.contains("version 3"), "{err:?}");
        assert_eq!(err.offset, 8);
        let mut res = b;
        res[55] = 1;
        let err = Superblock::decode(&reseal(res)).unwrap_err();
        assert!(err.detail.contains("reserved"), "{err:?}");
        assert_eq!(err.offset, 55);
    }

    fn page(slot0: Option<Superblock>, slot1: Option<Superblock>) -> Vec<u8> {
        let mut p = vec![0u8; SUPERBLOCK_SIZE as usize];
        for (sb, at) in [(slot0, SUPERBLOCK_SLOTS[0]), (slot1, SUPERBLOCK_SLOTS[1])] {
            if let Some(sb) = sb {
                p[at..at + 64].copy_from_slice(&sb.encode());
            }
        }
        p
    }

    #[test]
    fn superblock_read_page_picks_the_higher_generation() {
        let a = superblock();
        let b = Superblock {
            generation: 7,
            head_seq: 200_000,
            ..a
        };
        assert_eq!(Superblock::read_page(&page(Some(a), Some(b))), Ok((b, 1)));
        assert_eq!(Superblock::read_page(&page(Some(b), Some(a))), Ok((b, 0)));
        assert_eq!(Superblock::read_page(&page(Some(a), Some(a))), Ok((a, 0)));
        assert_eq!(Superblock::read_page(&page(Some(a), None)), Ok((a, 0)));
        assert_eq!(Superblock::read_page(&page(None, Some(b))), Ok((b, 1)));
        // Exactly 576 bytes suffice.
        assert_eq!(
            Superblock::read_page(&page(Some(a), Some(b))[..576]),
            Ok((b, 1))
        );
    }

    #[test]
    fn superblock_read_page_with_one_slot_damaged() {
        let a = superblock();
        let b = Superblock { generation: 7, ..a };
        // The newer slot is torn: the older one still opens the queue.
        let mut p = page(Some(a), Some(b));
        p[512 + 30] ^= 0x40;
        assert_eq!(Superblock::read_page(&p), Ok((a, 0)));
        let mut p = page(Some(b), Some(a));
        p[3] ^= 0x40;
        assert_eq!(Superblock::read_page(&p), Ok((a, 1)));
    }

    #[test]
    fn superblock_read_page_with_no_valid_slot() {
        let err = Superblock::read_page(&page(None, None)).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(err.detail.contains("slot 0") && err.detail.contains("slot 1"));
        let err = Superblock::read_page(&[]).unwrap_err();
        assert_eq!(err.offset, 0);
        let mut p = page(Some(superblock()), Some(superblock()));
        p[10] ^= 1;
        p[522] ^= 1;
        let err = Superblock::read_page(&p).unwrap_err();
        assert_eq!(err.detail.matches("CRC").count(), 2, "{err:?}");
        // Slot 1 missing from a short page: slot 0 alone decides.
        assert_eq!(
            Superblock::read_page(&page(Some(superblock()), None)[..100]),
            Ok((superblock(), 0))
        );
    }

    /// xorshift64*: deterministic pseudo-random numbers without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            if n == 0 { 0 } else { self.next() % n }
        }
    }

    /// Checks what every recovery promises about the records it returns.
    fn check_recovery(r: &Recovery, view_len: usize, n: u64) {
        let mut used = 0u64;
        for (i, loc) in r.records.iter().enumerate() {
            assert!(loc.offset < n && loc.offset % SLOT == 0, "{loc:?}");
            assert!(loc.offset + loc.size() <= view_len as u64, "{loc:?}");
            assert!(loc.payload_range().end <= view_len);
            used += loc.size();
            if let Some(next) = r.records.get(i + 1) {
                assert_eq!(next.offset, (loc.offset + loc.size()) % n);
                assert_eq!(next.seq, loc.seq + 1);
            }
        }
        assert!(used <= n);
        if let Some(first) = r.records.first() {
            assert_eq!(r.head, first.offset);
        }
        if let Some(last) = r.records.last() {
            assert_eq!(r.tail, (last.offset + last.size()) % n);
            assert_eq!(r.next_seq, last.seq + 1);
        }
    }

    #[test]
    fn fuzz_smoke_decoders_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..400 {
            let n = [32u64, 64, 96, 128, 256, 1024, 4096][rng.below(7) as usize];
            let format = if round % 2 == 0 {
                Format::V1
            } else {
                Format::V2
            };
            let mut ring: Vec<u8> = match rng.below(3) {
                0 => (0..n).map(|_| rng.next() as u8).collect(),
                1 => vec![0; n as usize],
                _ => (0..n)
                    .map(|_| [0, b'x', 0xFF][rng.below(3) as usize])
                    .collect(),
            };
            // Plant records with nearby seqs at random aligned offsets, overlapping at will,
            // so chains, wraps and conflicts all occur.
            let base = rng.next() >> rng.below(64);
            for _ in 0..rng.below(12) {
                let len = rng.below(n.min(300)) as usize;
                let p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let rec = record(format, base.wrapping_add(rng.below(6)), &p);
                if rec.len() as u64 <= n {
                    put(&mut ring, rng.below(n / SLOT) * SLOT, &rec);
                }
            }
            for _ in 0..rng.below(4) {
                let at = rng.below(n) as usize;
                ring[at] ^= 1 << rng.below(8);
            }
            let view = match rng.below(4) {
                0 => ring.clone(),                                // short view
                1 => ring[..rng.below(n) as usize].to_vec(),      // shorter still
                2 => [&ring[..], &ring[..], &ring[..7]].concat(), // longer than 2n
                _ => mirror(&ring),
            };

            let r1 = recover_v1(&view, n);
            check_recovery(&r1, view.len(), n);
            let head = rng.below(n / SLOT) * SLOT;
            let r2 = recover_v2(&view, n, head, base.wrapping_add(rng.below(3)));
            check_recovery(&r2, view.len(), n);
            assert_eq!(r2.head, head);

            // Odd sizes and offsets: no panic, no records out of range.
            let odd_n = rng.below(5000);
            let r = recover_v1(&view, odd_n);
            if odd_n > 0 {
                check_recovery(&r, view.len(), odd_n);
            }
            let _ = recover_v2(&view, odd_n, rng.next() >> rng.below(64), rng.next());
            let _ = recover_v2(&view, u64::MAX - 31, 0, u64::MAX);
            let _ = recover_v1(&view, u64::MAX - 31);

            for _ in 0..8 {
                let at = rng.below(view.len() as u64 + 1) as usize;
                let _ = decode_frame(Format::V1, &view[at..]);
                let _ = decode_frame(Format::V2, &view[at..]);
                let _ = Superblock::decode(&view[at..]);
                let _ = Superblock::read_page(&view[at..]);
            }
            let located = Located {
                offset: rng.next(),
                seq: rng.next(),
                len: rng.next() as u32,
            };
            let _ = (located.size(), located.payload_range());
        }
    }

    #[test]
    fn v2_seq_space_exhaustion_stops_without_overflow() {
        let n = 1024;
        let (ring, written) = write_chain(Format::V2, n, 0, u64::MAX - 2, &[vec![1], vec![2]]);
        let r = recover_v2(&mirror(&ring), n, 0, u64::MAX - 2);
        assert_eq!(r.records, written);
        assert_eq!(r.next_seq, u64::MAX);
        let (ring, _) = write_chain(Format::V2, n, 0, u64::MAX, &[vec![1]]);
        let r = recover_v2(&mirror(&ring), n, 0, u64::MAX);
        assert!(r.records.is_empty() && r.stopped.is_some());
    }
}
