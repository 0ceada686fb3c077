//! The queue: opening and creating the three files, the writer, the reader and its switch.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, io_err};
use crate::format::{
    self, Decoded, EncodeError, Framing, MAP_LEN, MapImage, OFF_POSITION, OFF_READOFFSET,
    OFF_READTARGET, OFF_WRITEDELAY, OFF_WRITETARGET, PATH_FIELDS,
};
use crate::sys::{self, MapView};
use crate::watch::Watcher;

/// How long a receive may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Return at once when nothing is there.
    NoWait,
    /// Wait until this instant at most.
    Until(Instant),
    /// Wait until a message arrives.
    Forever,
}

/// When sends and commits reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The page cache only (the original): survives a crash of the process, not of the
    /// machine, unless [`Writer::flush`] is called.
    #[default]
    PageCache,
    /// `fdatasync` of the data file after every `send`/`send_batch`.
    Data,
    /// As `Data`, and the reader syncs the map after every commit and orders the switch
    /// with syncs (truncate, sync, position, readtarget, sync).
    Full,
}

/// When the reader's position is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Commit {
    /// As the original: a message is consumed when `recv` hands it out (at most once).
    #[default]
    OnReceive,
    /// Only [`Reader::commit`] (or [`Reader::commit_to`]) moves the position: after a crash,
    /// everything received but not committed is delivered again (at least once).
    Explicit,
}

/// How writers and the reader's switch exclude each other (defect D6 of the original).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriterSync {
    /// Each send holds a shared `flock` on its data file while it re-checks `writetarget`
    /// and appends; the reader takes the exclusive lock before it truncates a drained file.
    #[default]
    Flock,
    /// No writer lock (the original's behaviour, fastest): the reader relies on
    /// [`OpenOptions::switch_grace`] alone.
    Grace,
}

/// The options of [`Queue::open_with`]; [`OpenOptions::default`] is the original's
/// behaviour with the safe fixes on.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    framing: Option<Framing>,
    create: bool,
    durability: Durability,
    commit: Commit,
    switch_min_bytes: u64,
    rotate_bytes: Option<u64>,
    max_record: usize,
    max_backlog_bytes: Option<u64>,
    reject_delimiter: bool,
    writer_sync: WriterSync,
    switch_grace: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            framing: None,
            create: true,
            durability: Durability::PageCache,
            commit: Commit::OnReceive,
            switch_min_bytes: 101,
            rotate_bytes: None,
            max_record: 65_535,
            max_backlog_bytes: None,
            reject_delimiter: true,
            writer_sync: WriterSync::Flock,
            switch_grace: Duration::from_millis(10),
        }
    }
}

impl OpenOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Framing of a queue this open creates (an existing queue keeps its own; default
    /// newlines).
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = Some(framing);
        self
    }
    /// Create the files when missing (default true).
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }
    /// Durability of sends and commits (default [`Durability::PageCache`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// Commit mode of readers (default [`Commit::OnReceive`]).
    pub fn commit(mut self, commit: Commit) -> Self {
        self.commit = commit;
        self
    }
    /// The reader moves writers to the other file at end of file once it has read this
    /// many bytes of the shared file (default 101: "more than 100", as the original).
    pub fn switch_min_bytes(mut self, bytes: u64) -> Self {
        self.switch_min_bytes = bytes.max(1);
        self
    }
    /// Move writers to the other file as soon as the shared file exceeds this size, even
    /// before the reader catches up, so a lagging reader cannot let one file grow forever.
    pub fn rotate_bytes(mut self, bytes: Option<u64>) -> Self {
        self.rotate_bytes = bytes;
        self
    }
    /// Largest payload accepted and read (default 65,535; frames allow 65,533 at most).
    pub fn max_record(mut self, bytes: usize) -> Self {
        self.max_record = bytes;
        self
    }
    /// Writers refuse a send ([`Error::Full`]) that would make the unread bytes exceed this.
    pub fn max_backlog_bytes(mut self, bytes: Option<u64>) -> Self {
        self.max_backlog_bytes = bytes;
        self
    }
    /// Refuse payloads containing the delimiter (default true; false splits them, as the
    /// original).
    pub fn reject_delimiter(mut self, reject: bool) -> Self {
        self.reject_delimiter = reject;
        self
    }
    /// Writer exclusion (default [`WriterSync::Flock`]).
    pub fn writer_sync(mut self, sync: WriterSync) -> Self {
        self.writer_sync = sync;
        self
    }
    /// How long the reader waits after moving writers before it checks the old file for a
    /// last time and truncates it (default 10 ms). It protects against writers that take
    /// no lock (the original's, or [`WriterSync::Grace`]); with only `Flock` writers it can
    /// be zero. Capped at one hour.
    pub fn switch_grace(mut self, grace: Duration) -> Self {
        self.switch_grace = grace.min(Duration::from_secs(3600));
        self
    }
}

/// A fix of an inconsistent map, for [`Queue::repair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Restart the current read file from byte 0 (deliver it again: nothing lost).
    Rewind,
    /// Move the position to the end of the current read file (skip it: nothing repeated).
    SkipToEnd,
}

/// A read-only snapshot of the map; its `Display` is the `dmq -p` text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapInfo {
    /// File the reader drains.
    pub readtarget: u8,
    /// File writers append to.
    pub writetarget: u8,
    /// Unused field, shown as stored.
    pub writedelay: i32,
    /// The framing.
    pub framing: Framing,
    /// Bytes of the read file the reader has read.
    pub readoffset: u64,
    /// Offset of the first undelivered record in the read file.
    pub position: u64,
    /// `path0`, `path1`, `pathmap` as stored.
    pub paths: [PathBuf; 3],
}

impl MapInfo {
    /// Reads the map of the queue at `base` without creating or changing anything.
    pub fn load(base: impl AsRef<Path>) -> Result<MapInfo> {
        let paths = derive_paths(base.as_ref());
        let file = File::open(&paths[2]).map_err(io_err("open map", &paths[2]))?;
        let bytes = read_map(&file, &paths[2])?;
        let image = MapImage::decode(&bytes).map_err(|reason| Error::CorruptMap {
            path: paths[2].clone(),
            reason,
        })?;
        Ok(MapInfo::from_image(&image))
    }

    fn from_image(image: &MapImage) -> MapInfo {
        MapInfo {
            readtarget: image.readtarget as u8,
            writetarget: image.writetarget as u8,
            writedelay: image.writedelay,
            framing: image.framing,
            readoffset: image.readoffset,
            position: image.position,
            paths: image
                .paths
                .clone()
                .map(|p| PathBuf::from(OsString::from_vec(p))),
        }
    }
}

impl fmt::Display for MapInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "iofs.log.readtarget = {}", self.readtarget)?;
        writeln!(f, "iofs.log.writetarget = {}", self.writetarget)?;
        writeln!(f, "iofs.log.writedelay = {}", self.writedelay)?;
        writeln!(f, "iofs.log.readoffset = {}", self.readoffset)?;
        writeln!(f, "iofs.log.position = {}", self.position)?;
        writeln!(f, "iofs.log.logfile0 = {}", self.paths[0].display())?;
        writeln!(f, "iofs.log.logfile1 = {}", self.paths[1].display())
    }
}

/// A received message: the payload without its framing, and its place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    data: Vec<u8>,
    mark: Mark,
}

impl Message {
    /// Where this message ends in the queue, for [`Reader::commit_to`].
    pub fn mark(&self) -> Mark {
        self.mark
    }
    /// The payload.
    pub fn into_vec(self) -> Vec<u8> {
        self.data
    }
}

impl std::ops::Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// The position just after a delivered message: committing it commits the message and
/// every earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark {
    file: u8,
    end: u64,
    seq: u64,
}

impl Mark {
    /// The data file (0 or 1) the message was read from.
    pub fn file(&self) -> u8 {
        self.file
    }
    /// Offset just after the message's record in that file.
    pub fn end(&self) -> u64 {
        self.end
    }
    /// Delivery number of this reader (1 for its first message).
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// `B0`, `B1`, `Bmap`.
pub(crate) fn derive_paths(base: &Path) -> [PathBuf; 3] {
    ["0", "1", "map"].map(|suffix| {
        let mut s = base.as_os_str().to_os_string();
        s.push(suffix);
        PathBuf::from(s)
    })
}

/// The three files of one queue. Cheap to share (`Send + Sync`); writers and the reader
/// keep the queue's files open on their own.
#[derive(Debug, Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    paths: [PathBuf; 3],
    stored: [PathBuf; 3],
    map: MapView,
    framing: Framing,
    opts: OpenOptions,
}

fn check_host() -> Result<()> {
    if cfg!(target_endian = "little") && cfg!(target_pointer_width = "64") {
        Ok(())
    } else {
        Err(Error::Unsupported(
            "the dmq format is defined for 64-bit little-endian hosts only",
        ))
    }
}

fn open_data(path: &Path) -> Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("open data file", path))
}

/// Opens (creating if missing) each data file; true if any was created, so the caller can
/// make the new directory entries durable.
fn ensure_data_files(paths: &[PathBuf]) -> Result<bool> {
    let mut created = false;
    for path in paths {
        let exists = fs::OpenOptions::new().read(true).append(true).open(path);
        match exists {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                {
                    Ok(_) => created = true,
                    // Another opener created it just now (and syncs it).
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("create data file", path)(e)),
                }
            }
            Err(e) => return Err(io_err("open data file", path)(e)),
        }
    }
    Ok(created)
}

/// Reads at most one byte more than a map can hold: a larger file is refused by its size,
/// not read into memory.
fn read_map(file: &File, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(MAP_LEN + 1);
    file.take(MAP_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read map", path))?;
    Ok(bytes)
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| sys::sync_file_all(&d))
        .map_err(io_err("sync directory", dir))
}

impl Queue {
    /// Opens the queue at basepath `base` (files `base0`, `base1`, `basemap`), creating it
    /// with `framing` (default newlines) if missing. An existing queue keeps its framing.
    pub fn open(base: impl AsRef<Path>, framing: Option<Framing>) -> Result<Queue> {
        let opts = OpenOptions {
            framing,
            ..OpenOptions::default()
        };
        Queue::open_with(base, &opts)
    }

    /// Opens with all options.
    pub fn open_with(base: impl AsRef<Path>, opts: &OpenOptions) -> Result<Queue> {
        check_host()?;
        let base = base.as_ref();
        let paths = derive_paths(base);
        let map_file = match Self::open_map(&paths[2]) {
            Err(Error::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound && opts.create =>
            {
                Self::create(base, &paths, opts)?;
                Self::open_map(&paths[2])?
            }
            other => other?,
        };
        let bytes = read_map(&map_file, &paths[2])?;
        let image = MapImage::decode(&bytes).map_err(|reason| Error::CorruptMap {
            path: paths[2].clone(),
            reason,
        })?;
        // A data file deleted by hand comes back empty; its new entry is made durable.
        if ensure_data_files(&paths[..2])? {
            sync_dir(&paths[0])?;
        }
        let stored = image
            .paths
            .clone()
            .map(|p| PathBuf::from(OsString::from_vec(p)));
        check_stored_paths(&paths, &stored)?;
        let map = MapView::map(&map_file).map_err(io_err("map", &paths[2]))?;
        Ok(Queue {
            inner: Arc::new(Inner {
                paths,
                stored,
                map,
                framing: image.framing,
                opts: opts.clone(),
            }),
        })
    }

    fn open_map(path: &Path) -> Result<File> {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err("open map", path))
    }

    /// Creates the files: data files first, then the whole map image in a temporary file
    /// linked into place without replacing (the loser of a race uses the winner's map).
    fn create(base: &Path, paths: &[PathBuf; 3], opts: &OpenOptions) -> Result<()> {
        for p in &paths[..2] {
            drop(open_data(p)?);
        }
        let abs = std::path::absolute(base).map_err(io_err("resolve basepath", base))?;
        let stored = derive_paths(&abs).map(|p| p.into_os_string().into_vec());
        let image = MapImage::new(opts.framing.unwrap_or_default(), stored)
            .encode()
            .map_err(|reason| Error::CorruptMap {
                path: paths[2].clone(),
                reason,
            })?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut tmp = paths[2].clone().into_os_string();
        tmp.push(format!(".tmp.{}.{nanos}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err("create map", &tmp))?;
            f.write_all(&image).map_err(io_err("write map", &tmp))?;
            sys::sync_file_all(&f).map_err(io_err("sync map", &tmp))?;
            match fs::hard_link(&tmp, &paths[2]) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(io_err("link map", &paths[2])(e)),
            }
        })();
        let _ = fs::remove_file(&tmp);
        result?;
        sync_dir(&paths[2])
    }

    /// A new writer (any number, in any processes).
    pub fn writer(&self) -> Result<Writer> {
        Writer::new(Arc::clone(&self.inner))
    }

    /// The reader; one per queue across processes ([`Error::ReaderBusy`] otherwise).
    pub fn reader(&self) -> Result<Reader> {
        Reader::new(Arc::clone(&self.inner))
    }

    /// A snapshot of the map; never writes it.
    pub fn info(&self) -> Result<MapInfo> {
        let map = &self.inner.map;
        let target = |off: usize, field: &str| {
            format::check_target(field, map.load_i32(off)).map_err(|reason| Error::CorruptMap {
                path: self.inner.paths[2].clone(),
                reason,
            })
        };
        Ok(MapInfo {
            readtarget: target(OFF_READTARGET, "readtarget")? as u8,
            writetarget: target(OFF_WRITETARGET, "writetarget")? as u8,
            writedelay: map.load_i32(OFF_WRITEDELAY),
            framing: self.inner.framing,
            readoffset: map.load_u64(OFF_READOFFSET),
            position: map.load_u64(OFF_POSITION),
            paths: self.inner.stored.clone(),
        })
    }

    /// The queue's framing (from its map).
    pub fn framing(&self) -> Framing {
        self.inner.framing
    }

    /// The paths of data file 0, data file 1 and the map, derived from the basepath.
    pub fn paths(&self) -> &[PathBuf; 3] {
        &self.inner.paths
    }

    /// Fixes a map whose position contradicts its read file (a reader refuses it with
    /// [`Error::CorruptMap`]). Takes the reader's lock: [`Error::ReaderBusy`] while a reader
    /// runs.
    pub fn repair(&self, how: Repair) -> Result<MapInfo> {
        let lock = Self::open_map(&self.inner.paths[2])?;
        take_reader_lock(&lock, &self.inner.paths[2])?;
        let rt = self.info()?.readtarget as usize;
        let size = fs::metadata(&self.inner.paths[rt])
            .map_err(io_err("stat", &self.inner.paths[rt]))?
            .len();
        let position = match how {
            Repair::Rewind => 0,
            Repair::SkipToEnd => size,
        };
        let map = &self.inner.map;
        map.store_u64(OFF_POSITION, position);
        map.store_u64(OFF_READOFFSET, position);
        map.sync()
            .map_err(io_err("sync map", &self.inner.paths[2]))?;
        self.info()
    }

    /// Deletes the three files.
    pub fn remove(self) -> Result<()> {
        for p in &self.inner.paths {
            match fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("remove", p)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Inner {
    fn writetarget(&self) -> Result<usize> {
        let wt = self.map.load_i32(OFF_WRITETARGET);
        format::check_target("writetarget", wt)
            .map(|t| t as usize)
            .map_err(|reason| Error::CorruptMap {
                path: self.paths[2].clone(),
                reason,
            })
    }
}

fn take_reader_lock(file: &File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(fs::TryLockError::WouldBlock) => Err(Error::ReaderBusy {
            map: path.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_err("lock map", path)(e)),
    }
}

/// A stored path that names an existing file other than ours is a mismatch; one that does
/// not exist (a queue moved or copied elsewhere) is not.
fn check_stored_paths(ours: &[PathBuf; 3], stored: &[PathBuf; 3]) -> Result<()> {
    for i in 0..3 {
        if stored[i].as_os_str().is_empty() {
            continue;
        }
        let Ok(theirs) = fs::metadata(&stored[i]) else {
            continue;
        };
        let mine = fs::metadata(&ours[i]).map_err(io_err("stat", &ours[i]))?;
        if (theirs.dev(), theirs.ino()) != (mine.dev(), mine.ino()) {
            return Err(Error::PathMismatch {
                map: ours[2].clone(),
                field: PATH_FIELDS[i],
                stored: stored[i].clone(),
                expected: ours[i].clone(),
            });
        }
    }
    Ok(())
}

/// Crash-test hook: with `DMQ_FAILPOINT=NAME` (and `DMQ_FAILPOINT_HIT=N`, default 1) the
/// process kills itself with SIGKILL the N-th time it passes point NAME.
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static AT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        let name = std::env::var("DMQ_FAILPOINT").ok()?;
        let hit = std::env::var("DMQ_FAILPOINT_HIT")
            .ok()
            .and_then(|h| h.parse().ok())
            .unwrap_or(1);
        Some((name, hit))
    });
    if let Some((at, hit)) = at
        && at == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 >= *hit
    {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn failpoint(_name: &str) {}

/// Appends records to the file the reader points writers at.
#[derive(Debug)]
pub struct Writer {
    q: Arc<Inner>,
    files: [File; 2],
    buf: Vec<u8>,
    written: [bool; 2],
    poisoned: bool,
}

impl Writer {
    fn new(q: Arc<Inner>) -> Result<Writer> {
        let files = [open_data(&q.paths[0])?, open_data(&q.paths[1])?];
        Ok(Writer {
            q,
            files,
            buf: Vec::new(),
            written: [false; 2],
            poisoned: false,
        })
    }

    fn encode(&mut self, msg: &[u8]) -> Result<()> {
        let o = &self.q.opts;
        format::encode_record(
            self.q.framing,
            msg,
            o.max_record,
            o.reject_delimiter,
            &mut self.buf,
        )
        .map_err(|e| match e {
            EncodeError::TooLarge { len, max } => Error::TooLarge { len, max },
            EncodeError::Delimiter { at } => Error::DelimiterInPayload {
                framing: self.q.framing,
                at,
            },
        })
    }

    /// Sends one message with one `write`; returns the bytes written (with framing).
    ///
    /// With [`Durability::Data`] or [`Durability::Full`] a failed `fdatasync` is reported
    /// after the record was appended: the message may still be delivered, but nothing says
    /// it is durable, and the writer is poisoned ([`Error::Poisoned`] from then on).
    pub fn send(&mut self, msg: &[u8]) -> Result<usize> {
        self.buf.clear();
        self.encode(msg)?;
        self.append()
    }

    /// Sends several messages with one `write` (all or none are checked before writing).
    pub fn send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize> {
        self.buf.clear();
        for m in msgs {
            if let Err(e) = self.encode(m.as_ref()) {
                self.buf.clear();
                return Err(e);
            }
        }
        if self.buf.is_empty() {
            return Ok(0);
        }
        self.append()
    }

    /// Durability barrier: syncs the data of both files this writer has written to. A
    /// failure poisons the writer.
    pub fn flush(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        for i in 0..2 {
            if self.written[i] {
                if let Err(e) = sys::sync_file_data(&self.files[i]) {
                    self.poisoned = true;
                    return Err(io_err("fdatasync", &self.q.paths[i])(e));
                }
                self.written[i] = false;
            }
        }
        Ok(())
    }

    /// The queue's framing.
    pub fn framing(&self) -> Framing {
        self.q.framing
    }

    fn backlog(&self) -> Result<u64> {
        let rt = format::check_target("readtarget", self.q.map.load_i32(OFF_READTARGET)).map_err(
            |reason| Error::CorruptMap {
                path: self.q.paths[2].clone(),
                reason,
            },
        )? as usize;
        let size = |i: usize| -> Result<u64> {
            Ok(self.files[i]
                .metadata()
                .map_err(io_err("stat", &self.q.paths[i]))?
                .len())
        };
        let position = self.q.map.load_u64(OFF_POSITION);
        let mut backlog = size(rt)?.saturating_sub(position);
        if self.q.writetarget()? != rt {
            backlog += size(1 - rt)?;
        }
        Ok(backlog)
    }

    fn append(&mut self) -> Result<usize> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let len = self.buf.len();
        if let Some(max) = self.q.opts.max_backlog_bytes {
            let backlog = self.backlog()?;
            if backlog + len as u64 > max {
                return Err(Error::Full {
                    backlog,
                    len: len as u64,
                    max,
                });
            }
        }
        let flock = self.q.opts.writer_sync == WriterSync::Flock;
        loop {
            let wt = self.q.writetarget()?;
            failpoint("append.after_choose");
            let file = &self.files[wt];
            let path = &self.q.paths[wt];
            if flock {
                file.lock_shared().map_err(io_err("lock data file", path))?;
                match self.q.writetarget() {
                    Ok(now) if now == wt => {}
                    moved => {
                        // Moved (or turned invalid): never return or retry holding the lock.
                        let _ = file.unlock();
                        moved?;
                        continue;
                    }
                }
            }
            let result = loop {
                match (&*file).write(&self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            failpoint("append.after_write");
            if flock {
                let _ = file.unlock();
            }
            match result {
                Ok(n) if n == len => {}
                Ok(n) => {
                    // The disk filled inside the record: its first `n` bytes would merge
                    // with the next record appended. Take them back if nothing followed.
                    let left = match take_back(file, n as u64) {
                        Ok(true) => "taken back".to_owned(),
                        _ => format!("{n} bytes of it are left at the end of the file"),
                    };
                    self.poisoned = true;
                    return Err(Error::Io {
                        op: "append",
                        path: path.clone(),
                        source: io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("short write: {n} of {len} bytes ({left})"),
                        ),
                    });
                }
                Err(e) => return Err(io_err("append", path)(e)),
            }
            self.written[wt] = true;
            if self.q.opts.durability != Durability::PageCache {
                if let Err(e) = sys::sync_file_data(file) {
                    self.poisoned = true;
                    return Err(io_err("fdatasync", path)(e));
                }
                self.written[wt] = false;
            }
            return Ok(len);
        }
    }
}

/// Removes the last `n` bytes this handle appended to `file` if they are still the end of
/// the file (no record was appended after them). Under the exclusive lock, so no writer
/// appends and no reader checks the size meanwhile.
fn take_back(file: &File, n: u64) -> io::Result<bool> {
    use std::io::Seek;
    // With O_APPEND the offset is the end of our own write.
    let end = (&*file).stream_position()?;
    file.lock()?;
    let result = file.metadata().and_then(|m| {
        if m.len() == end && end >= n {
            file.set_len(end - n).map(|()| true)
        } else {
            Ok(false)
        }
    });
    let _ = file.unlock();
    result
}

const CHUNK: usize = 256 * 1024;

/// What one attempt of the reader found.
enum Poll {
    Message(Mark),
    Empty,
    /// Writers were moved; the old file may be drained once this instant has passed.
    GraceUntil(Instant),
}

/// The one reader of a queue: drains the read file, moves writers and switches files.
#[derive(Debug)]
pub struct Reader {
    q: Arc<Inner>,
    files: [File; 2],
    _lock: File,
    watch: Watcher,
    /// File being read, and the file writers use (only this reader changes it).
    cur: usize,
    wt: usize,
    /// `readtarget`, `position` and delivery number as committed in the map.
    committed_rt: usize,
    committed_seq: u64,
    /// Read buffer: `store[lo..hi]` is unparsed data starting at file offset `off + lo`.
    store: Vec<u8>,
    lo: usize,
    hi: usize,
    off: u64,
    seq: u64,
    /// A drained file still holding uncommitted deliveries (explicit commit), and the
    /// offset up to which it was drained.
    pending_old: Option<(usize, u64)>,
    /// Offset of an incomplete record found after the drained end of a kept file when the
    /// switch was finished (reported as [`Error::TornRecord`]).
    late_torn: Option<u64>,
    /// [`Reader::skip_torn`] after `late_torn`: the next finish drops that tail.
    drop_late_tail: bool,
    flipped_at: Option<Instant>,
    torn: Option<u64>,
    poisoned: bool,
    switches: u64,
}

/// Why `position` is not the end of a record of `file` (`None` when it is). Delimited
/// framings: the byte before it is the delimiter. Frames and checked: the chain of length
/// fields from byte 0 reaches it exactly (one sequential read of the file up to `position`).
fn off_boundary(framing: Framing, file: &File, position: u64) -> io::Result<Option<String>> {
    if position == 0 {
        return Ok(None);
    }
    if let Some(d) = framing.delimiter() {
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, position - 1)?;
        return Ok((byte[0] != d).then(|| {
            format!(
                "byte {} is {:#04x}, not the {framing} delimiter",
                position - 1,
                byte[0]
            )
        }));
    }
    // Length-prefixed framings: a little-endian length field that counts the whole record.
    let (field, header) = match framing {
        Framing::Checked => (4, format::CHECKED_HEADER as u64),
        _ => (2, 2),
    };
    let mut reader = io::BufReader::with_capacity(64 * 1024, file);
    let mut at = 0u64;
    while at < position {
        if position - at < header {
            break;
        }
        let mut len = [0u8; 4];
        reader.read_exact(&mut len[..field])?;
        let len = u64::from(u32::from_le_bytes(len));
        if len < header {
            return Ok(Some(format!("the frame at offset {at} has length {len}")));
        }
        reader.seek_relative(len as i64 - field as i64)?;
        at += len;
    }
    Ok((at != position).then(|| format!("the frame chain from byte 0 passes it at {at}")))
}

impl Reader {
    fn new(q: Arc<Inner>) -> Result<Reader> {
        if q.framing == Framing::Raw {
            return Err(Error::Unsupported(
                "a raw queue has no record boundaries: it cannot be read",
            ));
        }
        let lock = Queue::open_map(&q.paths[2])?;
        take_reader_lock(&lock, &q.paths[2])?;
        let files = [open_data(&q.paths[0])?, open_data(&q.paths[1])?];
        let corrupt = |reason: String| Error::CorruptMap {
            path: q.paths[2].clone(),
            reason,
        };
        let rt = format::check_target("readtarget", q.map.load_i32(OFF_READTARGET))
            .map_err(corrupt)? as usize;
        let wt = q.writetarget()?;
        let mut position = q.map.load_u64(OFF_POSITION);
        let size = files[rt]
            .metadata()
            .map_err(io_err("stat", &q.paths[rt]))?
            .len();
        if position > size {
            if rt == wt {
                return Err(corrupt(format!(
                    "position {position} (at offset {OFF_POSITION}) is beyond the end of {} ({size} bytes), which writers still use (see Queue::repair)",
                    q.paths[rt].display()
                )));
            }
            // Truncated after the drained file's last commit: the switch was interrupted.
            position = 0;
            q.map.store_u64(OFF_POSITION, 0);
        }
        // A position is always the end of a record (or 0): one that is not (a damaged map)
        // would deliver the tail of a record as a message.
        if let Some(reason) =
            off_boundary(q.framing, &files[rt], position).map_err(io_err("read", &q.paths[rt]))?
        {
            return Err(corrupt(format!(
                "position {position} (at offset {OFF_POSITION}) is not at a record boundary of {}: {reason} (see Queue::repair)",
                q.paths[rt].display()
            )));
        }
        // The stored readoffset is informative only (the original's openers reset it):
        // republish ours.
        q.map.store_u64(OFF_READOFFSET, position);
        let watch =
            Watcher::new(&[&q.paths[0], &q.paths[1]]).map_err(io_err("watch", &q.paths[0]))?;
        Ok(Reader {
            q,
            files,
            _lock: lock,
            watch,
            cur: rt,
            wt,
            committed_rt: rt,
            committed_seq: 0,
            store: vec![0; CHUNK],
            lo: 0,
            hi: 0,
            off: position,
            seq: 0,
            pending_old: None,
            late_torn: None,
            drop_late_tail: false,
            // A previous reader may have just moved writers: give late writers their grace.
            flipped_at: (rt != wt).then(Instant::now),
            torn: None,
            poisoned: false,
            switches: 0,
        })
    }

    /// Receives the next message: waits as `wait` says; `Ok(None)` only when the wait ends
    /// without a message.
    pub fn recv(&mut self, wait: Wait) -> Result<Option<Message>> {
        let mut data = Vec::new();
        Ok(self
            .recv_into(&mut data, wait)?
            .map(|mark| Message { data, mark }))
    }

    /// As [`Reader::recv`], but the payload replaces the contents of `buf` (no allocation
    /// once `buf` is large enough); returns the message's mark.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Mark>> {
        let deadline = match wait {
            Wait::Until(at) => Some(at),
            _ => None,
        };
        loop {
            let grace_until = match self.poll_once(buf)? {
                Poll::Message(mark) => return Ok(Some(mark)),
                Poll::Empty => None,
                Poll::GraceUntil(at) => Some(at),
            };
            if let Wait::Until(at) = wait
                && Instant::now() >= at
            {
                return Ok(None);
            }
            match (wait, grace_until) {
                // A non-blocking receive waits out the grace (at most `switch_grace`, once
                // per switch) so that a drain loop sees the other file.
                (Wait::NoWait, Some(at)) => {
                    std::thread::sleep(at.saturating_duration_since(Instant::now()))
                }
                (Wait::NoWait, None) => return Ok(None),
                (_, Some(at)) => self.watch.wait(Some(deadline.map_or(at, |d| d.min(at)))),
                (_, None) => self.watch.wait(deadline),
            }
        }
    }

    /// `recv(Wait::NoWait)`.
    pub fn try_recv(&mut self) -> Result<Option<Message>> {
        self.recv(Wait::NoWait)
    }

    /// Waits at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>> {
        match Instant::now().checked_add(timeout) {
            Some(at) => self.recv(Wait::Until(at)),
            None => self.recv(Wait::Forever),
        }
    }

    /// Messages as they come, blocking; ends only after an error.
    pub fn iter(&mut self) -> impl Iterator<Item = Result<Message>> + '_ {
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            let next = self.recv(Wait::Forever).transpose();
            failed = matches!(next, Some(Err(_)));
            next
        })
    }

    /// The messages there now; ends when caught up (or after an error).
    pub fn try_iter(&mut self) -> impl Iterator<Item = Result<Message>> + '_ {
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            let next = self.try_recv().transpose();
            failed = matches!(next, Some(Err(_)));
            next
        })
    }

    /// The reader's watch on the data files: another thread can wait on it for new data
    /// without holding the reader, or wake this reader's blocked `recv`.
    pub fn watcher(&self) -> Watcher {
        self.watch.clone()
    }

    /// Commits every message received so far ([`Commit::Explicit`]; a no-op otherwise).
    pub fn commit(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if self.seq == self.committed_seq {
            return Ok(());
        }
        let mark = Mark {
            file: self.cur as u8,
            end: self.read_pos(),
            seq: self.seq,
        };
        self.commit_to(mark)
    }

    /// Commits the message of `mark` and every one before it. Marks already committed are
    /// ignored.
    ///
    /// The first commit of a message of the next file finishes a switch that was kept for
    /// the commit: records a writer without the lock appended to the drained file meanwhile
    /// are moved to the end of the next file; an incomplete one is [`Error::TornRecord`]
    /// (nothing committed) until it is complete or [`Reader::skip_torn`] drops it.
    pub fn commit_to(&mut self, mark: Mark) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if mark.seq <= self.committed_seq {
            return Ok(());
        }
        if mark.seq > self.seq {
            return Err(Error::Unsupported(
                "commit_to: the mark was not delivered by this reader",
            ));
        }
        let file = usize::from(mark.file);
        if let Some((old, drained)) = self.pending_old
            && file != old
        {
            self.finish_switch(old, drained, false)?;
        }
        let map = &self.q.map;
        map.store_u64(OFF_POSITION, mark.end);
        // Republished with every commit: an opener of the original may have reset it.
        if file == self.cur {
            map.store_u64(OFF_READOFFSET, self.read_end());
        }
        self.committed_seq = mark.seq;
        if self.q.opts.durability == Durability::Full {
            self.sync_map()?;
        }
        Ok(())
    }

    /// After [`Error::TornRecord`]: drops the incomplete tail so the reader can go on.
    pub fn skip_torn(&mut self) -> Result<()> {
        if self.late_torn.take().is_some() {
            self.drop_late_tail = true;
        }
        if self.torn.take().is_some() {
            self.lo = self.hi;
            self.seq += 1;
            if self.q.opts.commit == Commit::OnReceive {
                self.commit()?;
            }
        }
        Ok(())
    }

    /// Switches this reader has completed (drained files it truncated and left).
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// A snapshot of the map.
    pub fn info(&self) -> Result<MapInfo> {
        Queue {
            inner: Arc::clone(&self.q),
        }
        .info()
    }

    fn read_pos(&self) -> u64 {
        self.off + self.lo as u64
    }

    fn read_end(&self) -> u64 {
        self.off + self.hi as u64
    }

    fn sync_map(&mut self) -> Result<()> {
        self.q.map.sync().map_err(|e| {
            self.poisoned = true;
            io_err("msync", &self.q.paths[2])(e)
        })
    }

    /// Moves writers to the other file.
    fn flip(&mut self) -> Result<()> {
        self.wt = 1 - self.cur;
        self.q.map.store_i32(OFF_WRITETARGET, self.wt as i32);
        self.flipped_at = Some(Instant::now());
        failpoint("switch.after_flip");
        if self.q.opts.durability == Durability::Full {
            self.sync_map()?;
        }
        Ok(())
    }

    /// Empties the drained file `old`, read up to `drained`, and makes the other file the
    /// read target, in the order that every crash prefix recovers from (truncate,
    /// position, readtarget).
    ///
    /// The size is checked once more under the exclusive lock that the truncate is done
    /// with, so nothing appended after the drain is cut off. If `old` grew (a writer without
    /// the lock) and `reread` is set, nothing changes and `false` says the caller must read
    /// the rest first; otherwise (a file kept for an explicit commit, whose successor has
    /// been read already) the late records are moved to the end of the other file.
    fn finish_switch(&mut self, old: usize, drained: u64, reread: bool) -> Result<bool> {
        let path = &self.q.paths[old];
        self.files[old]
            .lock()
            .map_err(io_err("lock data file", path))?;
        let truncated = self.truncate_drained(old, drained, reread);
        let _ = self.files[old].unlock();
        if !truncated? {
            return Ok(false);
        }
        failpoint("switch.after_truncate");
        if self.q.opts.durability == Durability::Full
            && let Err(e) = sys::sync_file_data(&self.files[old])
        {
            self.poisoned = true;
            return Err(io_err("fdatasync", &self.q.paths[old])(e));
        }
        let map = &self.q.map;
        map.store_u64(OFF_POSITION, 0);
        map.store_u64(OFF_READOFFSET, 0);
        failpoint("switch.after_position");
        map.store_i32(OFF_READTARGET, (1 - old) as i32);
        failpoint("switch.after_readtarget");
        self.committed_rt = 1 - old;
        self.pending_old = None;
        self.late_torn = None;
        self.drop_late_tail = false;
        self.switches += 1;
        if self.q.opts.durability == Durability::Full {
            self.sync_map()?;
        }
        Ok(true)
    }

    /// The part of [`Reader::finish_switch`] under the exclusive lock of `old`.
    fn truncate_drained(&mut self, old: usize, drained: u64, reread: bool) -> Result<bool> {
        let path = &self.q.paths[old];
        let size = self.files[old]
            .metadata()
            .map_err(io_err("stat", path))?
            .len();
        if size > drained {
            if reread {
                return Ok(false);
            }
            self.move_late(old, drained)?;
        }
        self.files[old]
            .set_len(0)
            .map_err(io_err("truncate", &self.q.paths[old]))?;
        Ok(true)
    }

    /// Appends the whole records of `old` after offset `from` to the other file (one write
    /// per chunk: writers' records never interleave with them), then synced. An incomplete
    /// record at the end is [`Error::TornRecord`] (the file
    /// is kept) until [`Reader::skip_torn`] drops it.
    fn move_late(&mut self, old: usize, from: u64) -> Result<()> {
        let new = 1 - old;
        let framing = self.q.framing;
        let limit = self.q.opts.max_record + framing.overhead();
        let mut buf: Vec<u8> = Vec::new();
        // File offset of `buf[0]`: everything before it has been moved.
        let mut at = from;
        let mut moved = false;
        loop {
            let have = buf.len();
            buf.resize(have + CHUNK, 0);
            let n = loop {
                match self.files[old].read_at(&mut buf[have..], at + have as u64) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other.map_err(io_err("read", &self.q.paths[old]))?,
                }
            };
            buf.truncate(have + n);
            let mut whole = 0;
            loop {
                match format::decode_record(framing, &buf[whole..]) {
                    Ok(Decoded::Record { len, .. }) => whole += len,
                    Ok(Decoded::Incomplete) => break,
                    Err(reason) => {
                        return Err(Error::Corrupt {
                            file: self.q.paths[old].clone(),
                            offset: at + whole as u64,
                            reason,
                        });
                    }
                }
            }
            if whole > 0 {
                (&self.files[new])
                    .write_all(&buf[..whole])
                    .map_err(io_err("append", &self.q.paths[new]))?;
                moved = true;
                buf.drain(..whole);
                at += whole as u64;
                // A retry after an error below moves only what is left.
                self.pending_old = Some((old, at));
            }
            if n == 0 {
                break;
            }
            if buf.len() > limit {
                return Err(Error::Corrupt {
                    file: self.q.paths[old].clone(),
                    offset: at,
                    reason: format!("record longer than the limit of {limit} bytes"),
                });
            }
        }
        // Synced whatever the durability: the writer's own flush covers the file it wrote
        // to, not this copy.
        if moved && let Err(e) = sys::sync_file_data(&self.files[new]) {
            self.poisoned = true;
            return Err(io_err("fdatasync", &self.q.paths[new])(e));
        }
        if !buf.is_empty() && !self.drop_late_tail {
            self.late_torn = Some(at);
            return Err(Error::TornRecord {
                file: self.q.paths[old].clone(),
                offset: at,
            });
        }
        Ok(())
    }

    /// Reads more of the current file; returns the bytes read (0 at end of file).
    fn fill(&mut self) -> Result<usize> {
        if self.lo == self.hi {
            self.off += self.lo as u64;
            self.lo = 0;
            self.hi = 0;
        } else if self.hi == self.store.len() {
            if self.lo > 0 {
                self.store.copy_within(self.lo..self.hi, 0);
                self.off += self.lo as u64;
                self.hi -= self.lo;
                self.lo = 0;
            } else {
                let limit = self.q.opts.max_record + self.q.framing.overhead();
                if self.hi > limit {
                    return Err(Error::Corrupt {
                        file: self.q.paths[self.cur].clone(),
                        offset: self.read_pos(),
                        reason: format!("record longer than the limit of {limit} bytes"),
                    });
                }
                self.store.resize(self.store.len() * 2, 0);
            }
        }
        let at = self.read_end();
        let n = loop {
            match self.files[self.cur].read_at(&mut self.store[self.hi..], at) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other.map_err(io_err("read", &self.q.paths[self.cur]))?,
            }
        };
        self.hi += n;
        if n > 0 {
            let end = self.read_end();
            if self.cur == self.committed_rt {
                self.q.map.store_u64(OFF_READOFFSET, end);
            }
            if let Some(rotate) = self.q.opts.rotate_bytes
                && self.cur == self.wt
                && self.pending_old.is_none()
                && end > rotate
            {
                self.flip()?;
            }
        }
        Ok(n)
    }

    /// One attempt: a message if one is there now, moving writers and switching files on
    /// the way as the original's rules say.
    fn poll_once(&mut self, buf: &mut Vec<u8>) -> Result<Poll> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if let Some(offset) = self.torn {
            return Err(Error::TornRecord {
                file: self.q.paths[self.cur].clone(),
                offset,
            });
        }
        let framing = self.q.framing;
        loop {
            let decoded = format::decode_record(framing, &self.store[self.lo..self.hi]);
            match decoded {
                Ok(Decoded::Record {
                    start,
                    payload_len,
                    len,
                }) => {
                    let payload_at = self.lo + start;
                    buf.clear();
                    buf.extend_from_slice(&self.store[payload_at..payload_at + payload_len]);
                    self.lo += len;
                    self.seq += 1;
                    let mark = Mark {
                        file: self.cur as u8,
                        end: self.read_pos(),
                        seq: self.seq,
                    };
                    if self.q.opts.commit == Commit::OnReceive {
                        self.commit_to(mark)?;
                    }
                    return Ok(Poll::Message(mark));
                }
                Ok(Decoded::Incomplete) => {}
                Err(reason) => {
                    return Err(Error::Corrupt {
                        file: self.q.paths[self.cur].clone(),
                        offset: self.read_pos(),
                        reason,
                    });
                }
            }
            if self.fill()? > 0 {
                continue;
            }
            // End of the current file. As the original: at the first end of file of the
            // shared file (after more than `switch_min_bytes`), move writers and report
            // nothing; at the next, drain the old file and switch.
            if self.cur == self.wt {
                if self.pending_old.is_none() && self.read_end() >= self.q.opts.switch_min_bytes {
                    self.flip()?;
                }
                return Ok(Poll::Empty);
            }
            if self.pending_old.is_some() {
                return Ok(Poll::Empty);
            }
            // Writers have left this file. Give writers without a lock their grace, then
            // check the size once more under the exclusive lock.
            if let Some(at) = self.flipped_at {
                let until = at + self.q.opts.switch_grace;
                if Instant::now() < until {
                    return Ok(Poll::GraceUntil(until));
                }
                self.flipped_at = None;
            }
            let old = self.cur;
            let path = &self.q.paths[old];
            let file = &self.files[old];
            file.lock().map_err(io_err("lock data file", path))?;
            let size = file.metadata().map(|m| m.len());
            let _ = file.unlock();
            let size = size.map_err(io_err("stat", path))?;
            let end = self.read_end();
            if size > end {
                continue;
            }
            if size < end {
                return Err(Error::Corrupt {
                    file: path.clone(),
                    offset: size,
                    reason: format!("file shrank to {size} bytes under the reader at {end}"),
                });
            }
            if self.lo < self.hi {
                let offset = self.read_pos();
                self.torn = Some(offset);
                return Err(Error::TornRecord {
                    file: path.clone(),
                    offset,
                });
            }
            if self.committed_seq < self.seq && self.committed_rt == old {
                // Deliveries of this file are not committed yet: keep it until they are.
                self.pending_old = Some((old, end));
            } else if !self.finish_switch(old, end, true)? {
                // Appended to since the check above (a writer without the lock): read it.
                continue;
            }
            self.cur = 1 - old;
            self.off = 0;
            self.lo = 0;
            self.hi = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn paths_are_plain_suffixes() {
        let [a, b, m] = derive_paths(Path::new("dir/q"));
        assert_eq!(
            (a.as_os_str(), b.as_os_str(), m.as_os_str()),
            (
                OsStr::new("dir/q0"),
                OsStr::new("dir/q1"),
                OsStr::new("dir/qmap")
            )
        );
    }

    /// A send that fails after taking its shared lock (here: `writetarget` turned invalid
    /// between the choice and the re-check) releases the lock; a lock left behind would
    /// block the reader's switch for as long as the writer lives.
    #[test]
    fn a_failed_send_never_keeps_its_lock() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().join("q"), None).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flipper = {
            let inner = Arc::clone(&q.inner);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    inner.map.store_i32(OFF_WRITETARGET, 7);
                    inner.map.store_i32(OFF_WRITETARGET, 0);
                }
            })
        };
        let probe = File::open(&q.paths()[0]).unwrap();
        let mut w = q.writer().unwrap();
        let mut failed = 0;
        for _ in 0..100_000 {
            if w.send(b"x").is_err() {
                failed += 1;
                match probe.try_lock() {
                    Ok(()) => probe.unlock().unwrap(),
                    Err(e) => panic!("the failed send kept its lock: {e:?}"),
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        flipper.join().unwrap();
        assert!(failed > 0, "the map never looked invalid to the writer");
    }

    #[test]
    fn writetarget_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().join("q"), None).unwrap();
        q.inner.map.store_i32(OFF_WRITETARGET, 7);
        assert!(matches!(
            q.inner.writetarget(),
            Err(Error::CorruptMap { .. })
        ));
        let mut w = q.writer().unwrap();
        let err = w.send(b"x").unwrap_err();
        assert!(
            err.to_string().contains("writetarget at offset 4 is 7"),
            "{err}"
        );
    }
}
