//! The public queue: keys, options, create/open/delete/close and the operations.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::{self, DecodeError, Header, LayoutG, LayoutN, SizeError};
use crate::mem::Mem;
use crate::ring_g::RingG;
use crate::ring_n::{Enq, EnqMode, RingError, RingN};
use crate::sys::{self, Segment};
use crate::wait::Tuning;

/// A System V IPC key (`key_t`). `Key(0)` is `IPC_PRIVATE` and is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub i32);

impl Key {
    /// The key the Go library uses for its `int` key `k`: the low 32 bits, as `shmget` sees it.
    pub fn from_go(k: i64) -> Key {
        Key(k as i32)
    }

    fn check(self) -> Result<()> {
        if self.0 == 0 {
            return Err(Error::InvalidArgument(
                "key 0 is IPC_PRIVATE, which names no shared queue",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0 as u32)
    }
}

impl std::str::FromStr for Key {
    type Err = Error;

    /// Parses `0x5151` (hexadecimal, 32 bits) or a decimal `i32`/`u32`.
    fn from_str(s: &str) -> Result<Key> {
        let bad = || Error::InvalidArgument("a key is a decimal or 0x-hexadecimal 32-bit number");
        let key = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            u32::from_str_radix(hex, 16)
                .map(|k| k as i32)
                .map_err(|_| bad())?
        } else if let Ok(k) = s.parse::<i32>() {
            k
        } else {
            s.parse::<u32>().map(|k| k as i32).map_err(|_| bad())?
        };
        let key = Key(key);
        key.check()?;
        Ok(key)
    }
}

/// The segment layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Format N: sequence-numbered slots, never torn, futex parking, dead-peer recovery.
    #[default]
    Native,
    /// Format G: byte-compatible with the Go library `shqueue-go` (two spin locks).
    GoCompat,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Native => "native",
            Format::GoCompat => "go",
        })
    }
}

/// Options of `create_with` / `open_with`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Layout of a created queue (ignored by `open`, which reads it from the segment).
    pub format: Format,
    /// Permission bits of a created segment (default `0o600`).
    pub mode: u32,
    /// How long a waiting operation spins before it parks on a futex (format N). Default 20 µs.
    pub spin_for: Duration,
    /// Cap of the exponential sleep between polls (format G, and short waits). Default 50 µs.
    pub max_backoff: Duration,
    /// How long a peer may hold the same position or lock before it is taken for dead
    /// (default 200 ms). Keep it far above scheduling delays: a live peer stopped for longer is
    /// revoked.
    pub stall_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            format: Format::Native,
            mode: 0o600,
            spin_for: Duration::from_micros(20),
            max_backoff: Duration::from_micros(50),
            stall_timeout: Duration::from_millis(200),
        }
    }
}

impl Options {
    fn tuning(&self) -> Tuning {
        Tuning {
            spin_for: self.spin_for,
            max_backoff: self.max_backoff,
            stall_timeout: self.stall_timeout,
        }
    }
}

/// What `enqueue_shift` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    /// Stored in free space.
    Stored,
    /// The queue was full: the oldest message was discarded to make room.
    ReplacedOldest,
}

#[derive(Debug)]
enum Ring {
    N(RingN<Segment>),
    G(RingG<Segment>),
}

/// A queue in a System V shared-memory segment. `Send + Sync`: share it between threads by
/// reference; every operation takes `&self`.
#[derive(Debug)]
pub struct Queue {
    ring: Ring,
    key: Key,
    msg_bytes: usize,
}

fn os(op: &'static str, key: Key, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EIDRM) => Error::NotFound(key),
        Some(libc::EEXIST) => Error::AlreadyExists(key),
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied(key),
        _ => Error::Os { op, key, source: e },
    }
}

fn size_error(e: SizeError) -> Error {
    match e {
        SizeError::Zero(what) => Error::InvalidArgument(what),
        SizeError::Overflow(what) => Error::TooLarge(what),
    }
}

impl Queue {
    /// Creates a format-N queue of `capacity` messages of `words` 64-bit words at `key`.
    /// Fails with [`Error::AlreadyExists`] if any segment is at `key`: it never reuses or
    /// removes one.
    pub fn create(key: Key, words: u32, capacity: u32) -> Result<Queue> {
        Queue::create_with(key, words, capacity, &Options::default())
    }

    /// [`Queue::create`] with options (format, permissions, waiting).
    pub fn create_with(key: Key, words: u32, capacity: u32, o: &Options) -> Result<Queue> {
        key.check()?;
        let size = match o.format {
            Format::Native => LayoutN::new(words, capacity).map_err(size_error)?.size(),
            Format::GoCompat => LayoutG::new(words, capacity).map_err(size_error)?.size(),
        };
        let size = usize::try_from(size)
            .map_err(|_| Error::TooLarge(format!("{size} bytes do not fit in memory")))?;
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | (o.mode & 0o777) as i32;
        let id = sys::shmget(key.0, size, flags).map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => Error::TooLarge(format!(
                "the kernel refuses a segment of {size} bytes (above SHMMAX or below SHMMIN)"
            )),
            Some(libc::ENOSPC) | Some(libc::ENOMEM) => Error::TooLarge(format!(
                "the kernel has no room for {size} more bytes of shared memory (SHMALL, SHMMNI): {e}"
            )),
            _ => os("shmget", key, e),
        })?;
        let seg = match Segment::attach(id) {
            Ok(seg) => seg,
            Err(e) => {
                let _ = sys::remove(id);
                return Err(os("shmat", key, e));
            }
        };
        let pid = std::process::id();
        let ring = match o.format {
            Format::Native => {
                let layout = LayoutN::new(words, capacity).map_err(size_error)?;
                RingN::init(&seg, layout, pid);
                Ring::N(RingN::new(seg, layout, o.tuning()))
            }
            Format::GoCompat => {
                let layout = LayoutG::new(words, capacity).map_err(size_error)?;
                RingG::init(&seg, layout);
                Ring::G(RingG::new(seg, layout, o.tuning()))
            }
        };
        Ok(Queue {
            ring,
            key,
            msg_bytes: words as usize * 8,
        })
    }

    /// Creates a queue at a fresh random key, retrying while keys are taken (no TOCTOU:
    /// `IPC_EXCL` decides).
    pub fn create_unique(words: u32, capacity: u32, o: &Options) -> Result<Queue> {
        const TRIES: u32 = 1000;
        for _ in 0..TRIES {
            match Queue::create_with(random_key(), words, capacity, o) {
                Err(Error::AlreadyExists(_)) => continue,
                other => return other,
            }
        }
        Err(Error::NoFreeKey(TRIES))
    }

    /// Opens the queue at `key`, of either format, learning its geometry from the segment.
    pub fn open(key: Key) -> Result<Queue> {
        Queue::open_with(key, &Options::default())
    }

    /// [`Queue::open`] with options (waiting; `format` and `mode` are ignored). Waits up to
    /// `stall_timeout` for a queue still being initialised.
    pub fn open_with(key: Key, o: &Options) -> Result<Queue> {
        key.check()?;
        let id = sys::shmget(key.0, 0, 0).map_err(|e| os("shmget", key, e))?;
        let seg = Segment::attach(id).map_err(|e| os("shmat", key, e))?;
        let give_up = Instant::now() + o.stall_timeout;
        let header = loop {
            let mut bytes = [0u8; format::n::HEADER];
            let n = bytes.len().min(seg.len()) / 8;
            copy_words(&seg, &mut bytes[..n * 8]);
            match format::decode(&bytes[..n * 8], seg.len() as u64) {
                Ok(h) => break h,
                Err(DecodeError::NotReady) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(DecodeError::NotReady) if bytes[..8] == [0; 8] => {
                    // No magic yet: a segment that is not a queue, or whose creator died
                    // before it wrote the header.
                    return Err(Error::Corrupt {
                        key,
                        field: "magic",
                        offset: 0,
                        detail: format!(
                            "all zero after {:?}: not a queue, or its creator never finished",
                            o.stall_timeout
                        ),
                    });
                }
                Err(DecodeError::NotReady) => {
                    return Err(Error::Corrupt {
                        key,
                        field: "state",
                        offset: format::n::STATE,
                        detail: format!("still not initialised after {:?}", o.stall_timeout),
                    });
                }
                Err(DecodeError::Unsupported(detail)) => {
                    return Err(Error::Unsupported { key, detail });
                }
                Err(DecodeError::Corrupt {
                    field,
                    offset,
                    detail,
                }) => {
                    return Err(Error::Corrupt {
                        key,
                        field,
                        offset,
                        detail,
                    });
                }
            }
        };
        let (ring, msg_bytes) = match header {
            Header::N(h) => (
                Ring::N(RingN::new(seg, h.layout, o.tuning())),
                h.layout.words as usize * 8,
            ),
            Header::G(h) => (
                Ring::G(RingG::new(seg, h.layout, o.tuning())),
                h.layout.msg_bytes as usize,
            ),
        };
        Ok(Queue {
            ring,
            key,
            msg_bytes,
        })
    }

    /// The key.
    pub fn key(&self) -> Key {
        self.key
    }

    /// The segment layout.
    pub fn format(&self) -> Format {
        match self.ring {
            Ring::N(_) => Format::Native,
            Ring::G(_) => Format::GoCompat,
        }
    }

    /// Message size in bytes (`8 × words`).
    pub fn msg_bytes(&self) -> usize {
        self.msg_bytes
    }

    /// Slots.
    pub fn capacity(&self) -> u32 {
        match &self.ring {
            Ring::N(r) => r.layout.capacity,
            Ring::G(r) => r.layout.capacity,
        }
    }

    /// Messages stored now (a snapshot).
    pub fn len(&self) -> u32 {
        match &self.ring {
            Ring::N(r) => r.len(),
            Ring::G(r) => r.len(),
        }
    }

    /// Whether no message is stored now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages discarded by `enqueue_shift` over the queue's life (format N; format G does
    /// not record it).
    pub fn dropped(&self) -> Option<u64> {
        match &self.ring {
            Ring::N(r) => Some(r.dropped()),
            Ring::G(_) => None,
        }
    }

    /// Positions skipped because their producer died or was revoked (format N).
    pub fn abandoned(&self) -> Option<u64> {
        match &self.ring {
            Ring::N(r) => Some(r.abandoned()),
            Ring::G(_) => None,
        }
    }

    /// Format-G locks this handle took over from dead Rust holders.
    pub fn recovered_locks(&self) -> u64 {
        match &self.ring {
            Ring::N(_) => 0,
            Ring::G(r) => r.recovered_locks(),
        }
    }

    /// Current attachments of the segment (all processes).
    pub fn attached(&self) -> Result<u64> {
        sys::stat(self.segment().id())
            .map(|s| s.nattch)
            .map_err(|e| os("shmctl(IPC_STAT)", self.key, e))
    }

    /// The pid that created the segment (the kernel's record).
    pub fn creator_pid(&self) -> Result<i32> {
        sys::stat(self.segment().id())
            .map(|s| s.cpid)
            .map_err(|e| os("shmctl(IPC_STAT)", self.key, e))
    }

    fn segment(&self) -> &Segment {
        match &self.ring {
            Ring::N(r) => &r.mem,
            Ring::G(r) => &r.mem,
        }
    }

    fn check_len(&self, len: usize) -> Result<()> {
        if len != self.msg_bytes {
            return Err(Error::SizeMismatch {
                expected: self.msg_bytes,
                got: len,
            });
        }
        Ok(())
    }

    fn ring_error(&self, e: RingError) -> Error {
        match e {
            RingError::Timeout => Error::Timeout(self.key),
            RingError::Revoked => Error::Revoked(self.key),
            RingError::LockStuck { offset, word } => Error::LockStuck {
                key: self.key,
                offset,
                word,
            },
            RingError::Corrupt {
                field,
                offset,
                detail,
            } => Error::Corrupt {
                key: self.key,
                field,
                offset,
                detail,
            },
        }
    }

    fn enqueue(&self, msg: &[u8], mode: EnqMode) -> Result<Enq> {
        self.check_len(msg.len())?;
        match &self.ring {
            Ring::N(r) => r.enqueue(msg, mode),
            Ring::G(r) => r.enqueue(msg, mode),
        }
        .map_err(|e| self.ring_error(e))
    }

    /// Enqueues `msg`; if the queue is full, discards the oldest message first (cyclic use).
    /// Never waits for a consumer in format N. It may wait for a producer of the previous lap
    /// of its slot that is still copying: at most the stall timeout, after which a dead one is
    /// revoked and a live one (stopped, say, in a debugger) gives [`Error::LockStuck`] (format
    /// G: the same for a lock held that long).
    pub fn enqueue_shift(&self, msg: &[u8]) -> Result<Shift> {
        Ok(match self.enqueue(msg, EnqMode::Shift)? {
            Enq::Replaced => Shift::ReplacedOldest,
            _ => Shift::Stored,
        })
    }

    /// Enqueues `msg` if there is room; `Ok(false)` if the queue is full. Waits for a peer
    /// stuck mid-operation at most the stall timeout, as [`Queue::enqueue_shift`] does.
    pub fn enqueue_try(&self, msg: &[u8]) -> Result<bool> {
        Ok(self.enqueue(msg, EnqMode::Try)? != Enq::Full)
    }

    /// Enqueues `msg`, waiting while the queue is full until `deadline` (`None`: forever).
    pub fn enqueue_block(&self, msg: &[u8], deadline: Option<Instant>) -> Result<()> {
        self.enqueue(msg, EnqMode::Block(deadline)).map(drop)
    }

    fn dequeue(&self, buf: &mut [u8], wait: Option<Option<Instant>>) -> Result<bool> {
        self.check_len(buf.len())?;
        match &self.ring {
            Ring::N(r) => r.dequeue(buf, wait),
            Ring::G(r) => r.dequeue(buf, wait),
        }
        .map_err(|e| self.ring_error(e))
    }

    /// Moves the oldest message into `buf`; `Ok(false)` if the queue is empty. If the oldest
    /// message is still being written, waits for its producer at most the stall timeout: a
    /// dead producer's position is skipped, a live one that stays stuck gives
    /// [`Error::LockStuck`].
    pub fn dequeue_try(&self, buf: &mut [u8]) -> Result<bool> {
        self.dequeue(buf, None)
    }

    /// Moves the oldest message into `buf`, waiting while the queue is empty until `deadline`
    /// (`None`: forever).
    pub fn dequeue_block(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<()> {
        self.dequeue(buf, Some(deadline)).map(drop)
    }

    /// Marks the segment for removal: it disappears when the last process detaches, and the
    /// key is free at once. This handle stays usable until it is closed.
    pub fn delete(&self) -> Result<()> {
        sys::remove(self.segment().id()).map_err(|e| os("shmctl(IPC_RMID)", self.key, e))
    }

    /// Detaches the segment (dropping the queue does the same and ignores errors).
    pub fn close(self) -> Result<()> {
        let key = self.key;
        let seg = match self.ring {
            Ring::N(r) => r.mem,
            Ring::G(r) => r.mem,
        };
        seg.detach().map_err(|e| os("shmdt", key, e))
    }
}

/// A random non-zero key (not cryptographic: keys are public anyway).
fn random_key() -> Key {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        let k = h.finish() as i32;
        if k != 0 {
            return Key(k);
        }
    }
}

/// A key at which no segment exists now. Another process can take it before you use it
/// (prefer [`Queue::create_unique`]). Bounded: [`Error::NoFreeKey`] after 1000 probes.
pub fn find_free_key() -> Result<Key> {
    const TRIES: u32 = 1000;
    for _ in 0..TRIES {
        let key = random_key();
        match sys::shmget(key.0, 0, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(key),
            _ => continue,
        }
    }
    Err(Error::NoFreeKey(TRIES))
}

/// One segment of ours, as [`list`] reports it.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Its key.
    pub key: Key,
    /// Its SysV id.
    pub id: i32,
    /// Its layout.
    pub format: Format,
    /// Size in bytes.
    pub size: u64,
    /// Attached processes.
    pub attached: u64,
    /// The creator's pid (format N: from the header; format G: the kernel's record).
    pub creator_pid: u32,
    /// Whether the creator still runs.
    pub creator_alive: bool,
}

/// Every segment of either format this process can attach (read from
/// `/proc/sysvipc/shm`).
pub fn list() -> Result<Vec<SegmentInfo>> {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").map_err(|e| Error::Os {
        op: "read /proc/sysvipc/shm",
        key: Key(0),
        source: e,
    })?;
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(key), Some(id)) = (
            cols.first().and_then(|k| k.parse::<i32>().ok()),
            cols.get(1).and_then(|i| i.parse::<i32>().ok()),
        ) else {
            continue;
        };
        if key == 0 {
            continue;
        }
        if let Some(info) = inspect(Key(key), id) {
            out.push(info);
        }
    }
    Ok(out)
}

fn inspect(key: Key, id: i32) -> Option<SegmentInfo> {
    let seg = Segment::attach(id).ok()?;
    if seg.len() < 8 {
        return None;
    }
    let magic = seg
        .u64(0)
        .load(std::sync::atomic::Ordering::Acquire)
        .to_le_bytes();
    let stat = sys::stat(id).ok()?;
    let (format, creator_pid) = if magic == format::MAGIC_N && seg.len() >= format::n::HEADER {
        (
            Format::Native,
            seg.u32(format::n::CREATOR_PID)
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    } else if magic == format::MAGIC_G {
        (Format::GoCompat, stat.cpid as u32)
    } else {
        return None;
    };
    Some(SegmentInfo {
        key,
        id,
        format,
        size: stat.size,
        attached: stat.nattch.saturating_sub(1),
        creator_pid,
        creator_alive: sys::pid_alive(creator_pid),
    })
}

/// Removes our orphaned segments: no process attached and the creator dead. Returns their
/// keys.
pub fn gc() -> Result<Vec<Key>> {
    let mut removed = Vec::new();
    for info in list()? {
        if info.attached == 0 && !info.creator_alive {
            // Re-check with the attachment held: nobody else may have attached since.
            let Ok(seg) = Segment::attach(info.id) else {
                continue;
            };
            if sys::stat(info.id).is_ok_and(|s| s.nattch == 1) && sys::remove(info.id).is_ok() {
                removed.push(info.key);
            }
            drop(seg);
        }
    }
    Ok(removed)
}

/// Removes the segment at `key` (of any content): `IPC_RMID`.
pub fn remove(key: Key) -> Result<()> {
    key.check()?;
    let id = sys::shmget(key.0, 0, 0).map_err(|e| os("shmget", key, e))?;
    sys::remove(id).map_err(|e| os("shmctl(IPC_RMID)", key, e))
}

/// A copy of the whole segment at `key` (of any content), for diagnostics and layout
/// comparisons. The copy is taken word by word while others may write: not a consistent
/// snapshot of a busy queue.
pub fn snapshot(key: Key) -> Result<Vec<u8>> {
    key.check()?;
    let id = sys::shmget(key.0, 0, 0).map_err(|e| os("shmget", key, e))?;
    let seg = Segment::attach(id).map_err(|e| os("shmat", key, e))?;
    let mut out = vec![0u8; seg.len() / 8 * 8];
    copy_words(&seg, &mut out);
    Ok(out)
}

/// Copies the segment's first `out.len()` bytes (a multiple of 8) into `out`, each word with
/// the width the protocols access it with ([`format::word_width`]).
fn copy_words(seg: &Segment, out: &mut [u8]) {
    use std::sync::atomic::Ordering::Acquire;
    if out.len() < 8 {
        return;
    }
    let magic = seg.u64(0).load(Acquire).to_le_bytes();
    out[..8].copy_from_slice(&magic);
    let mut off = 8;
    while off + 8 <= out.len() {
        if format::word_width(magic, off) == 4 {
            for half in [off, off + 4] {
                out[half..half + 4].copy_from_slice(&seg.u32(half).load(Acquire).to_le_bytes());
            }
        } else {
            out[off..off + 8].copy_from_slice(&seg.u64(off).load(Acquire).to_le_bytes());
        }
        off += 8;
    }
}

/// Overwrites bytes of the segment at `key` at `offset` (8-aligned, whole words): for tests
/// that feed malformed content to `open` (feature `test-hooks`).
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub fn poke(key: Key, offset: usize, bytes: &[u8]) -> Result<()> {
    assert!(
        offset.is_multiple_of(8) && bytes.len().is_multiple_of(8),
        "poke takes whole words"
    );
    let id = sys::shmget(key.0, 0, 0).map_err(|e| os("shmget", key, e))?;
    let seg = Segment::attach(id).map_err(|e| os("shmat", key, e))?;
    for (i, w) in bytes.chunks_exact(8).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        seg.u64(offset + 8 * i)
            .store(u64::from_le_bytes(b), std::sync::atomic::Ordering::SeqCst);
    }
    Ok(())
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Queue>();
    let _ = <Segment as Mem>::pid;
}
