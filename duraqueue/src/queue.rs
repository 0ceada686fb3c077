//! The queue handle: open, offer, transactions, peek, poll, ack, refresh.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{Ordering, fence};

use crate::format::{
    self, Format, Located, SLOT, SUPERBLOCK_SIZE, SUPERBLOCK_SLOTS, Superblock, record_size,
};
use crate::sys::{self, LockRole, Mirror};
use crate::{Error, Result};

/// A record's sequence number: it never restarts within a handle. In v1 files the on-disk
/// id is its low 32 bits.
pub type Seq = u64;

/// How commits and polls reach stable storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncMode {
    /// `msync(MS_SYNC)` of exactly the pages written (the original's way, minus its bug of
    /// syncing from the start of the mapping).
    #[default]
    Msync,
    /// `fdatasync` of the whole file.
    Fdatasync,
}

/// When a poll becomes durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckMode {
    /// Each poll is on disk before it returns (faithful); [`DuraQueue::ack`] is a no-op.
    #[default]
    EveryPoll,
    /// Polls change memory only; [`DuraQueue::ack`] persists all of them with one sync. A
    /// crash before `ack` delivers the polled items again (at-least-once).
    Manual,
}

/// How to open a queue; see [`DuraQueue::open_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenOptions {
    /// Create the file if it does not exist.
    pub create: bool,
    /// Ring size in bytes: a multiple of 32 and of the page size. On an existing file it must
    /// match the file's ring, unless it is 0 (take the file's).
    pub size: u64,
    /// The format of a new file (an existing file keeps its own).
    pub format: Format,
    /// How commits and polls are synced.
    pub sync: SyncMode,
    /// When polls become durable.
    pub ack: AckMode,
    /// Take the advisory lock of the handle's role (one writer and one reader per file).
    pub lock: bool,
    /// Open as the reader (takes the reader lock) rather than the writer.
    pub reader: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            create: true,
            size: 0,
            format: Format::V1,
            sync: SyncMode::Msync,
            ack: AckMode::EveryPoll,
            lock: true,
            reader: false,
        }
    }
}

impl OpenOptions {
    /// Writer options for a ring of `size` bytes, created if missing.
    pub fn new(size: u64) -> Self {
        OpenOptions {
            size,
            ..OpenOptions::default()
        }
    }

    /// Sets [`OpenOptions::create`].
    #[must_use]
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Sets [`OpenOptions::format`].
    #[must_use]
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Sets [`OpenOptions::sync`].
    #[must_use]
    pub fn sync(mut self, sync: SyncMode) -> Self {
        self.sync = sync;
        self
    }

    /// Sets [`OpenOptions::ack`].
    #[must_use]
    pub fn ack(mut self, ack: AckMode) -> Self {
        self.ack = ack;
        self
    }

    /// Sets [`OpenOptions::lock`].
    #[must_use]
    pub fn lock(mut self, lock: bool) -> Self {
        self.lock = lock;
        self
    }

    /// Sets [`OpenOptions::reader`].
    #[must_use]
    pub fn reader(mut self, reader: bool) -> Self {
        self.reader = reader;
        self
    }
}

/// What the recovery scan of [`DuraQueue::open_with`] (or [`DuraQueue::refresh`]) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Records delivered: the chain of consecutive records from the head.
    pub delivered: usize,
    /// Complete records found that are not part of that chain (stale laps, phantom records
    /// inside payloads, records after a gap): never delivered.
    pub discarded: usize,
    /// Bytes of the ring the scan read.
    pub bytes_scanned: u64,
    /// v2: why the chain ended, when it ended on a damaged record rather than on free space.
    pub stopped: Option<String>,
}

/// A committed record: logical position (a byte counter that never wraps), sequence number,
/// payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    pos: u64,
    seq: Seq,
    len: u32,
}

impl Entry {
    fn end(&self) -> u64 {
        self.pos + record_size(u64::from(self.len))
    }
}

/// One handle on a queue file. `Send` and `Sync` (`&self` methods only read); share a
/// writer between threads with [`SharedWriter`](crate::SharedWriter).
///
/// Within one process, two handles on one file (a writer and a reader) must not be used
/// from different threads at the same time: the reader's reads of the mapping would race
/// the writer's stores. Use one handle (it can offer and poll) or separate processes.
///
/// Positions are logical byte counters that never wrap; the physical ring offset is the
/// logical one modulo the ring size, so a full ring and an empty one are never confused.
#[derive(Debug)]
pub struct DuraQueue {
    path: PathBuf,
    file: File,
    mirror: Mirror,
    n: u64,
    format: Format,
    options: OpenOptions,
    /// Committed, not yet polled, oldest first.
    records: VecDeque<Entry>,
    /// Polled but not yet persisted ([`AckMode::Manual`]).
    consumed: VecDeque<Entry>,
    /// Logical end of the committed records.
    tail: u64,
    /// Logical end including an open transaction.
    write_pos: u64,
    /// Records of the open transaction, with their headers held back until commit.
    pending: Vec<(Entry, [u8; SLOT as usize])>,
    /// Logical end of what is on stable storage: every sync of new records starts here, so
    /// the records a crash keeps always form a chain from the head.
    synced_end: u64,
    /// Logical start of what a crash would deliver: the writer never reuses bytes past it.
    persisted_pos: u64,
    persisted_seq: Seq,
    next_seq: Seq,
    durable_seq: Option<Seq>,
    /// v2: the superblock last written or read.
    superblock: Option<Superblock>,
    poisoned: Option<String>,
    report: RecoveryReport,
}

/// Checks a ring size for a new file.
fn check_size(size: u64, format: Format) -> Result<()> {
    let invalid = |reason| Err(Error::InvalidSize { size, reason });
    let page = sys::page_size() as u64;
    if size == 0 {
        return invalid("the ring needs at least one page");
    }
    if !size.is_multiple_of(SLOT) {
        return invalid("not a multiple of 32");
    }
    if !size.is_multiple_of(page) {
        return invalid("not a multiple of the page size");
    }
    if format == Format::V1 && size > 1 << 31 {
        return invalid("v1 files hold at most 2 GiB (32-bit positions)");
    }
    if size > (isize::MAX as u64) / 4 {
        return invalid("too large to map twice");
    }
    if format == Format::V2 && page != SUPERBLOCK_SIZE {
        return invalid("v2 files need 4 KiB pages");
    }
    Ok(())
}

impl DuraQueue {
    /// Opens the queue at `path` as its writer, creating it with a ring of `size` bytes if it
    /// does not exist (the original's `dqueuew_open`). An existing file must have that size.
    pub fn open(path: impl AsRef<Path>, size: u64) -> Result<Self> {
        DuraQueue::open_with(path, &OpenOptions::new(size))
    }

    /// Opens an existing queue as its reader (the original's `dqueuer_open`).
    pub fn open_reader(path: impl AsRef<Path>) -> Result<Self> {
        DuraQueue::open_with(path, &OpenOptions::new(0).create(false).reader(true))
    }

    /// Opens with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io_error = |op: &'static str| {
            let path = path.clone();
            move |source: io::Error| Error::Io { path, op, source }
        };
        if options.create && !path.exists() {
            // Before the file exists: a bad size must not leave an empty file behind.
            check_size(options.size, options.format)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(options.create)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io_error("open the queue file"))?;
        // No readahead: it fills the page cache with large folios, and a record written into
        // one makes msync write the whole folio back (up to 1 MiB for a 160-byte offer).
        sys::advise_random(&file).map_err(io_error("advise the kernel on the queue file"))?;
        if options.lock {
            let role = if options.reader {
                LockRole::Reader
            } else {
                LockRole::Writer
            };
            if !sys::try_lock(&file, role).map_err(io_error("lock the queue file"))? {
                return Err(Error::Locked {
                    path,
                    role: if options.reader { "reader" } else { "writer" },
                });
            }
        }
        let mut len = file
            .metadata()
            .map_err(io_error("stat the queue file"))?
            .len();
        if len == 0 && options.create {
            check_size(options.size, options.format)?;
            if let Err(e) = initialize(&path, &file, options.size, options.format) {
                // An empty file is re-initialized by the next create; a half-made one
                // would pass for a queue.
                let _ = file.set_len(0);
                return Err(e);
            }
            len = file
                .metadata()
                .map_err(io_error("stat the queue file"))?
                .len();
        } else if !options.reader && len > 0 {
            // A writer stores through the mapping: a hole it meets on a full disk would be
            // SIGBUS. The C original's files are sparse; reserve their blocks now.
            reserve(&file, len).map_err(io_error("reserve the queue file's disk space"))?;
        }
        let (format, ring_offset, n, superblock) = detect(&path, &file, len)?;
        if options.size != 0 && options.size != n {
            return Err(Error::SizeMismatch {
                path,
                expected: options.size,
                found: n,
            });
        }
        let ring_len = usize::try_from(n).map_err(|_| Error::InvalidSize {
            size: n,
            reason: "too large to map twice",
        })?;
        let mirror =
            Mirror::map(&file, ring_offset, ring_len).map_err(io_error("map the ring twice"))?;
        let mut queue = DuraQueue {
            path,
            file,
            mirror,
            n,
            format,
            options: options.clone(),
            records: VecDeque::new(),
            consumed: VecDeque::new(),
            tail: 0,
            write_pos: 0,
            synced_end: 0,
            pending: Vec::new(),
            persisted_pos: 0,
            persisted_seq: 0,
            next_seq: 0,
            durable_seq: None,
            superblock,
            poisoned: None,
            report: RecoveryReport::default(),
        };
        queue.recover()?;
        if !options.reader && queue.report.discarded + usize::from(queue.format == Format::V2) > 0 {
            queue.clear_free_space()?;
        }
        Ok(queue)
    }

    /// Zeroes every header in the free space (from the tail to the persisted head) that
    /// could pass for a record: records recovery left out after a gap, stale laps. Otherwise
    /// a later record written just before them would link them back into the chain. Only
    /// the writer does this, before it writes anything.
    fn clear_free_space(&mut self) -> Result<()> {
        let free = self.n - (self.tail - self.persisted_pos).min(self.n);
        let (start, format) = ((self.tail % self.n) as usize, self.format);
        let ring = self.mirror.bytes_mut();
        let mut cleared = Vec::new();
        for slot in (0..free as usize).step_by(SLOT as usize) {
            let at = start + slot;
            if ring
                .get(at..)
                .and_then(|b| format::decode_frame(format, b))
                .is_some_and(|frame| !frame.footer)
            {
                ring[at..at + SLOT as usize].fill(0);
                cleared.push(at);
            }
        }
        if let (Some(&first), Some(&last)) = (cleared.first(), cleared.last()) {
            let result = self.mirror.sync(first..last + SLOT as usize);
            result.map_err(|source| {
                self.poisoned = Some(source.to_string());
                self.io("sync the cleared free space", source)
            })?;
        }
        Ok(())
    }

    /// Rebuilds the index from the mapping: the chain of records from the head.
    fn recover(&mut self) -> Result<()> {
        let ring = self.mirror.bytes();
        let (head, recovery) = match self.format {
            Format::V1 => {
                let recovery = format::recover_v1(ring, self.n);
                (recovery.head, recovery)
            }
            Format::V2 => {
                let sb = self.read_superblock()?;
                self.superblock = Some(sb);
                let recovery =
                    format::recover_v2(ring, self.n, sb.head_offset % self.n, sb.head_seq);
                (sb.head_offset, recovery)
            }
        };
        self.records.clear();
        self.consumed.clear();
        let mut pos = head;
        for located in &recovery.records {
            self.records.push_back(Entry {
                pos,
                seq: located.seq,
                len: located.len,
            });
            pos += located.size();
        }
        self.tail = pos;
        self.write_pos = pos;
        self.synced_end = pos;
        self.persisted_pos = head;
        self.next_seq = recovery.next_seq;
        self.persisted_seq = self.records.front().map_or(self.next_seq, |e| e.seq);
        self.report = RecoveryReport {
            delivered: recovery.records.len(),
            discarded: recovery.discarded,
            bytes_scanned: recovery.bytes_scanned,
            stopped: recovery
                .stopped
                .filter(|_| self.format == Format::V2 && self.next_record_was_meant())
                .map(|d| format!("offset {}: {}", self.ring_file_offset(d.offset), d.detail)),
        };
        Ok(())
    }

    /// v2: whether the chain ended on a record that claims to be the next one (its header
    /// carries the next sequence number) and failed a check: damage, not free space or a
    /// stale lap.
    fn next_record_was_meant(&self) -> bool {
        let start = (self.tail % self.n) as usize;
        self.mirror
            .bytes()
            .get(start..)
            .and_then(|b| format::decode_frame(Format::V2, b))
            .is_some_and(|h| !h.footer && h.seq == self.next_seq)
    }

    fn ring_file_offset(&self, ring_offset: u64) -> u64 {
        let base = if self.format == Format::V2 {
            SUPERBLOCK_SIZE
        } else {
            0
        };
        base + ring_offset % self.n.max(1)
    }

    fn read_superblock(&self) -> Result<Superblock> {
        let mut page = vec![0u8; SUPERBLOCK_SIZE as usize];
        self.file
            .read_exact_at(&mut page, 0)
            .map_err(|source| self.io("read the superblock", source))?;
        Superblock::read_page(&page)
            .map(|(sb, _)| sb)
            .map_err(|d| self.corrupt(d.offset, d.detail))
    }

    fn io(&self, op: &'static str, source: io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            op,
            source,
        }
    }

    fn corrupt(&self, offset: u64, detail: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            offset,
            detail,
        }
    }

    fn check_writable(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned {
                path: self.path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Syncs logical bytes `from..to` of the ring; a failure poisons the handle.
    fn sync_ring(&mut self, from: u64, to: u64) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let result = match self.options.sync {
            SyncMode::Msync => {
                let start = (from % self.n) as usize;
                let len = (to - from).min(self.n) as usize;
                self.mirror.sync(start..start + len)
            }
            SyncMode::Fdatasync => sys::sync_file_data(&self.file),
        };
        result.map_err(|source| {
            self.poisoned = Some(source.to_string());
            self.io("sync the ring", source)
        })
    }

    // ---- writing ------------------------------------------------------------------------

    /// Writes a record after the open transaction's, with its header held back. Not yet
    /// visible, not yet durable.
    fn append(&mut self, item: &[u8]) -> Result<Seq> {
        self.check_writable()?;
        let len = item.len() as u64;
        let size = record_size(len);
        if size > self.n || u32::try_from(len).is_err() {
            return Err(Error::TooLarge {
                len,
                record: size,
                ring: self.n,
            });
        }
        if size > self.free() {
            // Another handle may have consumed records since we last looked.
            self.refresh_consumed()?;
        }
        let free = self.free();
        if size > free {
            return Err(Error::Full { needed: size, free });
        }
        let seq = self.next_seq;
        let start = (self.write_pos % self.n) as usize;
        let out = &mut self.mirror.bytes_mut()[start..start + size as usize];
        if !format::encode_record(self.format, seq, item, out) {
            return Err(Error::TooLarge {
                len,
                record: size,
                ring: self.n,
            });
        }
        let mut header = [0u8; SLOT as usize];
        header.copy_from_slice(&out[..SLOT as usize]);
        out[..SLOT as usize].fill(0);
        self.pending.push((
            Entry {
                pos: self.write_pos,
                seq,
                len: len as u32,
            },
            header,
        ));
        self.write_pos += size;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Bytes the writer may still use: the ring less everything from the persisted head on.
    fn free(&self) -> u64 {
        self.n - (self.write_pos - self.persisted_pos).min(self.n)
    }

    /// Writes the held-back headers of the open transaction.
    fn write_headers(&mut self) {
        // Payloads and footers are in place before any header: a reader in another process
        // that sees a header sees the rest of its record.
        fence(Ordering::Release);
        let ring = self.mirror.bytes_mut();
        // Last to first: the chain reaches the transaction only through its first record, so
        // until that header is in place (the last store) none of it is linked. (In v1 on an
        // empty ring the later records can form a chain of their own after a crash mid-way;
        // v2 starts recovery at its checkpoint and never can.)
        for (i, (entry, header)) in self.pending.iter().enumerate().rev() {
            if i == 0 {
                fence(Ordering::Release);
            }
            let start = (entry.pos % self.n) as usize;
            ring[start..start + SLOT as usize].copy_from_slice(header);
        }
    }

    /// Makes the open transaction visible and durable: headers last, then one sync. If the
    /// sync fails, the transaction is rolled back and the handle poisoned.
    fn commit_pending(&mut self) -> Result<Option<Range<Seq>>> {
        let (Some(first), Some(last)) = (self.pending.first(), self.pending.last()) else {
            return Ok(None);
        };
        let seqs = first.0.seq..last.0.seq + 1;
        self.write_headers();
        // From `synced_end`, not `tail`: records published without a sync come first.
        if let Err(e) = self.sync_ring(self.synced_end, self.write_pos) {
            self.rollback();
            return Err(e);
        }
        self.publish();
        self.synced_end = self.tail;
        self.durable_seq = Some(seqs.end - 1);
        Ok(Some(seqs))
    }

    /// Moves the open transaction into the committed index.
    fn publish(&mut self) {
        self.records
            .extend(self.pending.drain(..).map(|(entry, _)| entry));
        self.tail = self.write_pos;
    }

    // ---- group commit (crate::group) ----------------------------------------------------

    /// Appends and publishes a record without syncing; returns its sequence number and the
    /// logical end a sync must cover for it to be durable.
    pub(crate) fn append_published(&mut self, item: &[u8]) -> Result<(Seq, u64)> {
        if !self.pending.is_empty() {
            // Never reached: a transaction borrows the handle mutably until it ends.
            self.rollback();
        }
        let seq = self.append(item)?;
        self.write_headers();
        self.publish();
        Ok((seq, self.tail))
    }

    /// The logical end of the committed records.
    pub(crate) fn tail_position(&self) -> u64 {
        self.tail
    }

    /// The logical end of what is on stable storage.
    pub(crate) fn synced_position(&self) -> u64 {
        self.synced_end
    }

    /// Appends and publishes `item` without a sync: readers see it at once, and it survives
    /// a crash of this process (the bytes are in the shared mapping), not of the machine
    /// until [`sync_published`](DuraQueue::sync_published).
    pub fn offer_unsynced(&mut self, item: &[u8]) -> Result<Seq> {
        self.append_published(item).map(|(seq, _)| seq)
    }

    /// Syncs every record published since the last sync, in one call.
    pub fn sync_published(&mut self) -> Result<()> {
        let to = self.tail;
        self.sync_ring(self.synced_end, to)?;
        self.mark_durable_up_to(to);
        Ok(())
    }

    /// A sync of logical bytes `from..to` that runs without the handle (on another thread,
    /// while other offers append).
    pub(crate) fn range_sync(
        &self,
        from: u64,
        to: u64,
    ) -> impl FnOnce() -> io::Result<()> + Send + 'static {
        let (n, mode) = (self.n, self.options.sync);
        let syncer = self.mirror.syncer();
        // A second descriptor only where the sync needs one.
        let file = (mode == SyncMode::Fdatasync).then(|| self.file.try_clone());
        move || {
            if from >= to {
                return Ok(());
            }
            match mode {
                SyncMode::Msync => {
                    let start = (from % n) as usize;
                    syncer.sync(start..start + (to - from).min(n) as usize)
                }
                SyncMode::Fdatasync => match file {
                    Some(file) => sys::sync_file_data(&file?),
                    None => Err(io::Error::other("no descriptor to sync")),
                },
            }
        }
    }

    /// Records that everything up to logical `to` is on stable storage.
    pub(crate) fn mark_durable_up_to(&mut self, to: u64) {
        self.synced_end = self.synced_end.max(to);
        let covered = self
            .records
            .iter()
            .rev()
            .find(|e| e.end() <= to)
            .map(|e| e.seq)
            .or_else(|| {
                (to >= self.tail)
                    .then(|| self.next_seq.checked_sub(1))
                    .flatten()
            });
        if covered.is_some() {
            self.durable_seq = self.durable_seq.max(covered);
        }
    }

    /// Refuses further writes after a failed sync.
    pub(crate) fn poison(&mut self, cause: &str) {
        self.poisoned = Some(cause.to_owned());
    }

    /// The error for writes on a poisoned handle.
    pub(crate) fn poisoned_error(&self, cause: &str) -> Error {
        Error::Poisoned {
            path: self.path.clone(),
            cause: cause.to_owned(),
        }
    }

    /// Forgets the open transaction: its headers were never written, so nothing of it is
    /// visible, now or after a crash.
    fn rollback(&mut self) {
        let ring = self.mirror.bytes_mut();
        for (entry, _) in &self.pending {
            let start = (entry.pos % self.n) as usize;
            ring[start..start + SLOT as usize].fill(0);
        }
        if let Some((first, _)) = self.pending.first() {
            self.next_seq = first.seq;
        }
        self.pending.clear();
        self.write_pos = self.tail;
    }

    /// Appends `item` and returns once it is on stable storage (the original v0.0.1's
    /// `dqueue_offer`). [`Error::Full`] when it does not fit now.
    pub fn offer(&mut self, item: &[u8]) -> Result<Seq> {
        let seq = self.append(item)?;
        self.commit_pending()?;
        Ok(seq)
    }

    /// Appends every item with one sync; all or nothing.
    pub fn offer_batch<I: AsRef<[u8]>>(&mut self, items: &[I]) -> Result<Range<Seq>> {
        let mut txn = self.txn();
        for item in items {
            txn.offer(item.as_ref())?;
        }
        let first = txn.queue.next_seq;
        Ok(txn.commit()?.unwrap_or(first..first))
    }

    /// Begins a transaction (the original's `dqueue_txn_begin`): its offers become visible
    /// and durable together at [`Txn::commit`]; dropping it uncommitted rolls them back.
    pub fn txn(&mut self) -> Txn<'_> {
        Txn { queue: self }
    }

    // ---- reading ------------------------------------------------------------------------

    fn payload(&self, entry: &Entry) -> &[u8] {
        let start = (entry.pos % self.n) as usize + SLOT as usize;
        &self.mirror.bytes()[start..start + entry.len as usize]
    }

    /// The oldest item, borrowed from the mapping (zero copy), or `None` when empty.
    pub fn peek(&self) -> Option<&[u8]> {
        self.records.front().map(|e| self.payload(e))
    }

    /// The sequence number of the item [`peek`](DuraQueue::peek) returns.
    pub fn peek_seq(&self) -> Option<Seq> {
        self.records.front().map(|e| e.seq)
    }

    /// Every committed item, oldest first, borrowed from the mapping.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.records.iter().map(|e| self.payload(e))
    }

    /// Removes the oldest item; `Ok(false)` when the queue is empty (the original crashed).
    /// With [`AckMode::EveryPoll`] the removal is on disk when this returns.
    pub fn poll(&mut self) -> Result<bool> {
        if self.options.ack == AckMode::EveryPoll {
            self.check_writable()?;
        }
        let Some(entry) = self.records.pop_front() else {
            return Ok(false);
        };
        self.consumed.push_back(entry);
        if self.options.ack == AckMode::EveryPoll {
            self.persist_consumed()?;
        }
        Ok(true)
    }

    /// Peeks, calls `f` with the item, then polls it.
    pub fn pop_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let Some(item) = self.peek() else {
            return Ok(None);
        };
        let result = f(item);
        self.poll()?;
        Ok(Some(result))
    }

    /// Makes every poll so far durable with one sync (a no-op with [`AckMode::EveryPoll`],
    /// where each poll already is).
    pub fn ack(&mut self) -> Result<()> {
        self.persist_consumed()
    }

    /// Persists the polls in `consumed`: v1 zeroes their headers and footers (so no stale
    /// footer can resurrect them), v2 writes a superblock checkpoint.
    fn persist_consumed(&mut self) -> Result<()> {
        let (Some(first), Some(last)) = (
            self.consumed.front().copied(),
            self.consumed.back().copied(),
        ) else {
            return Ok(());
        };
        self.check_writable()?;
        match self.format {
            Format::V1 => {
                let ring = self.mirror.bytes_mut();
                // Footers first: a writer reuses a record's bytes once it sees the header
                // zeroed, so no store of ours may land after that.
                for entry in &self.consumed {
                    let end =
                        (entry.pos % self.n) as usize + record_size(u64::from(entry.len)) as usize;
                    ring[end - SLOT as usize..end].fill(0);
                }
                fence(Ordering::Release);
                for entry in &self.consumed {
                    let start = (entry.pos % self.n) as usize;
                    ring[start..start + SLOT as usize].fill(0);
                }
                self.sync_ring(first.pos, last.end())?;
            }
            Format::V2 => {
                let previous = self.superblock.unwrap_or(Superblock {
                    page_size: SUPERBLOCK_SIZE as u32,
                    ring_size: self.n,
                    generation: 0,
                    head_seq: 0,
                    head_offset: 0,
                });
                let next = Superblock {
                    generation: previous.generation + 1,
                    head_seq: last.seq + 1,
                    head_offset: last.end(),
                    ..previous
                };
                self.write_superblock(&next)?;
                self.superblock = Some(next);
            }
        }
        self.consumed.clear();
        self.persisted_pos = last.end();
        self.persisted_seq = last.seq + 1;
        Ok(())
    }

    fn write_superblock(&mut self, sb: &Superblock) -> Result<()> {
        let slot = SUPERBLOCK_SLOTS[(sb.generation % 2) as usize] as u64;
        let written = self
            .file
            .write_all_at(&sb.encode(), slot)
            .and_then(|()| sys::sync_file_data(&self.file));
        written.map_err(|source| {
            self.poisoned = Some(source.to_string());
            self.io("write the superblock", source)
        })
    }

    // ---- other handles ------------------------------------------------------------------

    /// Catches up with another handle on the same file (the reader in another process, or
    /// the writer): drops records it consumed and adds records it committed. Returns how
    /// many records were added.
    pub fn refresh(&mut self) -> Result<usize> {
        self.refresh_consumed()?;
        if !self.options.reader || !self.pending.is_empty() {
            // A writer is the only one that appends: there is nothing to adopt, and its
            // positions (and `synced_end`) must never move under its own unsynced records.
            return Ok(0);
        }
        if self.records.is_empty() && self.consumed.is_empty() && self.tail == self.persisted_pos {
            // Nothing to continue from (the writer may have restarted its ids): rescan.
            let before = self.next_seq;
            self.recover()?;
            if self.records.is_empty() {
                self.next_seq = self.next_seq.max(before);
            }
            return Ok(self.records.len());
        }
        let mut added = 0;
        while let Some(len) = self.record_at_tail()? {
            let entry = Entry {
                pos: self.tail,
                seq: self.next_seq,
                len,
            };
            self.records.push_back(entry);
            self.tail = entry.end();
            self.write_pos = self.tail;
            // The writer's records: their durability is its business (readers never write).
            self.synced_end = self.tail;
            self.next_seq += 1;
            added += 1;
        }
        Ok(added)
    }

    /// The length of a complete record at the tail with the next sequence number that fits
    /// the free space, if one was committed there by another handle.
    fn record_at_tail(&self) -> Result<Option<u32>> {
        let ring = self.mirror.bytes();
        let start = (self.tail % self.n) as usize;
        let free = self.free();
        let found = match self.format {
            Format::V1 => {
                let Some(header) = ring
                    .get(start..)
                    .and_then(|b| format::decode_frame(Format::V1, b))
                else {
                    return Ok(None);
                };
                // Everything the writer wrote before this header is visible after it.
                fence(Ordering::Acquire);
                let size = record_size(u64::from(header.len));
                let footer = ring
                    .get(start + size as usize - SLOT as usize..)
                    .and_then(|b| format::decode_frame(Format::V1, b));
                let valid = !header.footer
                    && header.seq as u32 == self.next_seq as u32
                    && size <= free
                    && footer
                        .is_some_and(|f| f.footer && f.seq == header.seq && f.len == header.len);
                valid.then_some(header.len)
            }
            Format::V2 => format::recover_v2(ring, self.n, start as u64, self.next_seq)
                .records
                .first()
                .filter(|l: &&Located| l.size() <= free)
                .map(|l| l.len),
        };
        Ok(found)
    }

    /// Drops records another handle consumed: v1 headers that were zeroed, v2 records
    /// before the superblock's head.
    fn refresh_consumed(&mut self) -> Result<()> {
        if !self.consumed.is_empty() {
            return Ok(()); // Our own polls are not persisted yet: we are the consumer.
        }
        match self.format {
            Format::V1 => {
                while let Some(front) = self.records.front().copied() {
                    let start = (front.pos % self.n) as usize;
                    let header = self
                        .mirror
                        .bytes()
                        .get(start..)
                        .and_then(|b| format::decode_frame(Format::V1, b));
                    if header.is_some_and(|h| {
                        !h.footer && h.seq as u32 == front.seq as u32 && h.len == front.len
                    }) {
                        break;
                    }
                    self.records.pop_front();
                    self.persisted_pos = front.end();
                    self.persisted_seq = front.seq + 1;
                }
            }
            Format::V2 => {
                let sb = self.read_superblock()?;
                if sb.head_seq > self.persisted_seq {
                    // The reader may still be syncing this checkpoint: make sure it is on disk
                    // before its space is reused, or a crash would lose what we write there.
                    sys::sync_file_data(&self.file).map_err(|source| {
                        self.poisoned = Some(source.to_string());
                        self.io("sync the reader's checkpoint", source)
                    })?;
                    while self.records.front().is_some_and(|e| e.seq < sb.head_seq) {
                        self.records.pop_front();
                    }
                    self.persisted_pos = sb.head_offset.max(self.persisted_pos);
                    self.persisted_seq = sb.head_seq;
                    self.superblock = Some(sb);
                }
            }
        }
        Ok(())
    }

    /// Waits until an item is ready (refreshing from the file, for a writer in another
    /// process), up to `timeout` (`None`: forever). Returns whether one is ready.
    ///
    /// There is no cross-process wake-up in the format: this polls the mapping with a
    /// back-off from 50 µs to 1 ms.
    pub fn wait_for_items(&mut self, timeout: Option<std::time::Duration>) -> Result<bool> {
        use std::time::{Duration, Instant};
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut pause = Duration::from_micros(50);
        loop {
            if !self.records.is_empty() || self.refresh()? > 0 || !self.records.is_empty() {
                return Ok(true);
            }
            let now = Instant::now();
            if deadline.is_some_and(|at| now >= at) {
                return Ok(false);
            }
            let remaining = deadline.map_or(pause, |at| at - now);
            std::thread::sleep(pause.min(remaining));
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    // ---- inspection ---------------------------------------------------------------------

    /// Committed items not yet polled.
    pub fn count(&self) -> usize {
        self.records.len()
    }

    /// Whether no committed item is waiting.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The ring size in bytes.
    pub fn size(&self) -> u64 {
        self.n
    }

    /// Bytes held by committed records not yet polled.
    pub fn used(&self) -> u64 {
        self.records
            .front()
            .map_or(0, |first| self.tail - first.pos)
    }

    /// Bytes an offer can use now.
    pub fn unused(&self) -> u64 {
        self.free()
    }

    /// The last sequence number known to be on stable storage.
    pub fn durable_seq(&self) -> Option<Seq> {
        self.durable_seq
    }

    /// The first item a crash now would deliver again.
    pub fn persisted_head(&self) -> Seq {
        self.persisted_seq
    }

    /// The sequence number the next offer gets.
    pub fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The queue file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The largest item an empty ring of this size accepts.
    pub fn max_item_len(&self) -> u64 {
        // A length one below a multiple of 32 needs one byte of padding: record = len + 65.
        self.n.saturating_sub(65)
    }

    /// Takes the other role's advisory lock too, so that one handle can both offer and
    /// poll while no other process does either. [`Error::Locked`] if another handle holds it.
    pub fn lock_both_roles(&self) -> Result<()> {
        for (role, name) in [(LockRole::Writer, "writer"), (LockRole::Reader, "reader")] {
            let taken = sys::try_lock(&self.file, role)
                .map_err(|source| self.io("lock the queue file", source))?;
            if !taken {
                return Err(Error::Locked {
                    path: self.path.clone(),
                    role: name,
                });
            }
        }
        Ok(())
    }

    /// What the last recovery scan found.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Every committed record with its sequence number and its offset in the file.
    pub fn records(&self) -> impl Iterator<Item = (Seq, u64, &[u8])> + '_ {
        self.records
            .iter()
            .map(|e| (e.seq, self.ring_file_offset(e.pos), self.payload(e)))
    }

    /// Closes the handle: syncs records published without a sync, unmaps and closes.
    /// An open transaction was already rolled back when its [`Txn`] was dropped; polls not
    /// acknowledged under [`AckMode::Manual`] stay unacknowledged.
    pub fn close(mut self) -> Result<()> {
        if self.poisoned.is_none() && self.synced_end < self.tail {
            self.sync_published()?;
        }
        let DuraQueue { file, mirror, .. } = self;
        drop(mirror);
        drop(file);
        Ok(())
    }
}

/// A transaction: offers that become visible and durable together at [`Txn::commit`].
/// Dropping it without committing rolls them back.
#[derive(Debug)]
pub struct Txn<'q> {
    queue: &'q mut DuraQueue,
}

impl Txn<'_> {
    /// Appends an item to the transaction.
    pub fn offer(&mut self, item: &[u8]) -> Result<Seq> {
        self.queue.append(item)
    }

    /// Makes every offer of the transaction visible and durable with one sync; returns
    /// their sequence numbers (`None` for an empty transaction).
    pub fn commit(self) -> Result<Option<Range<Seq>>> {
        // `Drop` then finds nothing pending.
        self.queue.commit_pending()
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        self.queue.rollback();
    }
}

/// Allocates every block of the file's first `len` bytes (extending it to `len`).
fn reserve(file: &File, len: u64) -> io::Result<()> {
    let len = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    nix::fcntl::posix_fallocate(file, 0, len).map_err(io::Error::from)
}

/// Creates the file's initial contents and makes them durable, with the directory entry.
fn initialize(path: &Path, file: &File, size: u64, format: Format) -> Result<()> {
    let io_error = |op: &'static str| {
        let path = path.to_path_buf();
        move |source: io::Error| Error::Io { path, op, source }
    };
    match format {
        // N + 1 bytes (the original's files are sparse; ours are allocated, so that a full
        // disk is this error, never a SIGBUS on a store through the mapping).
        Format::V1 => {
            reserve(file, size + 1).map_err(io_error("reserve the queue file's disk space"))?
        }
        Format::V2 => {
            reserve(file, SUPERBLOCK_SIZE + size)
                .map_err(io_error("reserve the queue file's disk space"))?;
            for generation in [0, 1] {
                let sb = Superblock {
                    page_size: SUPERBLOCK_SIZE as u32,
                    ring_size: size,
                    generation,
                    head_seq: 0,
                    head_offset: 0,
                };
                let slot = SUPERBLOCK_SLOTS[(generation % 2) as usize] as u64;
                file.write_all_at(&sb.encode(), slot)
                    .map_err(io_error("write the superblock"))?;
            }
        }
    }
    sys::sync_file_all(file).map_err(io_error("sync the new queue file"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| sys::sync_file_all(&d))
        .map_err(io_error("sync the queue file's directory"))
}

/// The format, the file offset of the ring, the ring size and (v2) the superblock.
fn detect(path: &Path, file: &File, len: u64) -> Result<(Format, u64, u64, Option<Superblock>)> {
    // v1 files are N + 1 bytes (N a multiple of 32); v2 files are a page + N. The length
    // decides, not the first bytes: in v1 they may be the payload of a record that wraps.
    let mut v2 = false;
    if len % SLOT != 1 {
        for slot in SUPERBLOCK_SLOTS {
            let mut magic = [0u8; 8];
            let read = file
                .read_at(&mut magic, slot as u64)
                .map_err(|source| Error::Io {
                    path: path.to_path_buf(),
                    op: "read the queue file",
                    source,
                })?;
            v2 |= read == magic.len() && magic == *b"DQRSv2\0\0";
        }
    }
    if !v2 && len % SLOT != 1 && len >= SUPERBLOCK_SIZE {
        // Not N + 1 bytes, so not a v1 file; without a superblock magic, not a v2 file either
        // (or one whose superblock is destroyed): refuse rather than write v1 over it.
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            detail: format!(
                "a file of {len} bytes is neither v1 (ring + 1 bytes) nor v2 (no superblock magic at 0 or 512)"
            ),
        });
    }
    if v2 {
        let mut page = vec![0u8; SUPERBLOCK_SIZE as usize];
        file.read_exact_at(&mut page, 0)
            .map_err(|_| Error::Corrupt {
                path: path.to_path_buf(),
                offset: len,
                detail: format!("a v2 file of {len} bytes is shorter than its superblock page"),
            })?;
        let (sb, _) = Superblock::read_page(&page).map_err(|d| Error::Corrupt {
            path: path.to_path_buf(),
            offset: d.offset,
            detail: format!("superblock: {}", d.detail),
        })?;
        // Positions near the top of u64 would overflow as records are added.
        const LIMIT: u64 = 1 << 62;
        if sb.head_seq >= LIMIT || sb.head_offset >= LIMIT {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                offset: 32,
                detail: format!(
                    "superblock head (seq {}, offset {}) is out of range",
                    sb.head_seq, sb.head_offset
                ),
            });
        }
        check_size(sb.ring_size, Format::V2).map_err(|_| Error::Corrupt {
            path: path.to_path_buf(),
            offset: 16,
            detail: format!(
                "superblock ring size {} is not a valid ring size",
                sb.ring_size
            ),
        })?;
        if len < SUPERBLOCK_SIZE + sb.ring_size {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                offset: len,
                detail: format!(
                    "file of {len} bytes is shorter than its superblock and ring ({} bytes)",
                    SUPERBLOCK_SIZE + sb.ring_size
                ),
            });
        }
        return Ok((Format::V2, SUPERBLOCK_SIZE, sb.ring_size, Some(sb)));
    }
    // v1: no header; the ring is the file length rounded down to 32 (the file is N + 1).
    // A v2 file cut to a page + 1 bytes has that length too: its superblock (CRC-checked)
    // claiming a ring longer than the file gives it away. A v1 payload would have to be a
    // valid superblock page, at offset 0, to be taken for one.
    if len % SLOT == 1 && len >= SUPERBLOCK_SIZE {
        let mut page = vec![0u8; SUPERBLOCK_SIZE as usize];
        if file.read_exact_at(&mut page, 0).is_ok()
            && let Ok((sb, _)) = Superblock::read_page(&page)
            && SUPERBLOCK_SIZE.saturating_add(sb.ring_size) > len
        {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                offset: len,
                detail: format!(
                    "a v2 superblock claims a ring of {} bytes but the file has only {len} \
                     bytes: a truncated v2 file",
                    sb.ring_size
                ),
            });
        }
    }
    let n = len / SLOT * SLOT;
    check_size(n, Format::V1).map_err(|e| match e {
        Error::InvalidSize { reason, .. } => Error::Corrupt {
            path: path.to_path_buf(),
            offset: len,
            detail: format!("a v1 file of {len} bytes has a ring of {n} bytes: {reason}"),
        },
        other => other,
    })?;
    Ok((Format::V1, 0, n, None))
}
