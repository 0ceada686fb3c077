//! The broker: a root directory of queues, and every operation on them.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::durable::{Durability, Syncer};
use crate::error::{Error, Result, io};
use crate::format::{
    self, ClaimedName, Message, Order, Requeue, Settings, SettingsFile, SortKey, WaitingName,
};

/// A file younger than this that does not parse may still be being written (by Python,
/// which fills message files in place): it is skipped, not quarantined.
const YOUNG: Duration = Duration::from_secs(5);
/// The in-memory index is re-read from the directory at least this often (or less often
/// when a re-read is slow).
const RESCAN: Duration = Duration::from_secs(1);
/// How long a claimed file that is still being written is left alone.
const SKIP_FOR: Duration = Duration::from_secs(1);
/// Prefix of the temporary names of publishes (no `.ddmq`: Python ignores them).
const TMP_PREFIX: &str = ".tmp.";
/// Prefix of messages a reaper has taken (no `.ddmq`: Python's clean ignores them).
const REAP_PREFIX: &str = ".reap.";
/// Prefix of temporary settings files.
const SETTINGS_TMP_PREFIX: &str = ".settings.";

/// How a broker is opened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BrokerOptions {
    /// Create and initiate the root and missing queues (the original's `create=True`).
    pub create: bool,
    /// The order in which waiting messages are served.
    pub order: Order,
    /// Whether writes are synced before they return.
    pub durability: Durability,
    /// Run the original's throttled clean (once per 60 s per queue, through the `cleaned`
    /// setting) on publish and consume, unless a call says to skip it.
    pub auto_clean: bool,
    /// A reaper's private file (`work/.reap.*`) older than this is taken to belong to a
    /// dead reaper and is finished by the next clean (at-least-once).
    pub reap_grace: Duration,
    /// A publisher's temporary file (`.tmp.*`) older than this is taken to belong to a dead
    /// publisher and is removed by the next clean.
    pub temp_grace: Duration,
    /// A `requeue_prio` setting of 0 means priority 0 (the top) for requeued copies, as the
    /// original's documentation says; by default 0 means the queue's `priority`, as the
    /// original does.
    pub requeue_zero_is_top: bool,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            create: false,
            order: Order::Numeric,
            durability: Durability::None,
            auto_clean: true,
            reap_grace: Duration::from_secs(60),
            temp_grace: Duration::from_secs(3600),
            requeue_zero_is_top: false,
        }
    }
}

impl BrokerOptions {
    /// Sets [`BrokerOptions::create`].
    #[must_use]
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }
    /// Sets [`BrokerOptions::order`].
    #[must_use]
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }
    /// Sets [`BrokerOptions::durability`].
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// Sets [`BrokerOptions::auto_clean`].
    #[must_use]
    pub fn auto_clean(mut self, auto_clean: bool) -> Self {
        self.auto_clean = auto_clean;
        self
    }
    /// Sets [`BrokerOptions::reap_grace`].
    #[must_use]
    pub fn reap_grace(mut self, grace: Duration) -> Self {
        self.reap_grace = grace;
        self
    }
    /// Sets [`BrokerOptions::requeue_zero_is_top`].
    #[must_use]
    pub fn requeue_zero_is_top(mut self, yes: bool) -> Self {
        self.requeue_zero_is_top = yes;
        self
    }
    /// Sets [`BrokerOptions::temp_grace`].
    #[must_use]
    pub fn temp_grace(mut self, grace: Duration) -> Self {
        self.temp_grace = grace;
        self
    }
}

/// Per-message options of a publish. `Default` is the original's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// Priority (lower is served first); `None` is the queue's `priority` setting. `Some(0)`
    /// is priority 0 (the original turned 0 into 999).
    pub priority: Option<u64>,
    /// Ack timeout in seconds; `None` is the queue's `message_timeout`. A fraction is kept
    /// (claims then carry an expiry with a fraction; Python reads only its whole seconds).
    pub timeout: Option<f64>,
    /// Requeue on expiry or nack.
    pub requeue: Requeue,
    /// Most requeues (`None` or 0: unlimited): `Some(L)` allows L + 1 deliveries.
    pub requeue_limit: Option<u64>,
    /// Skip the throttled clean before publishing.
    pub skip_cleaning: bool,
    /// Extra keys for the message JSON (after the ten of the format).
    pub extra: Vec<(String, Value)>,
}

impl PublishOptions {
    /// The original's defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`PublishOptions::priority`].
    #[must_use]
    pub fn priority(mut self, priority: u64) -> Self {
        self.priority = Some(priority);
        self
    }
    /// Sets [`PublishOptions::timeout`] in seconds.
    #[must_use]
    pub fn timeout(mut self, secs: f64) -> Self {
        self.timeout = Some(secs);
        self
    }
    /// Sets [`PublishOptions::requeue`].
    #[must_use]
    pub fn requeue(mut self, requeue: Requeue) -> Self {
        self.requeue = requeue;
        self
    }
    /// Sets [`PublishOptions::requeue_limit`].
    #[must_use]
    pub fn requeue_limit(mut self, limit: u64) -> Self {
        self.requeue_limit = Some(limit);
        self
    }
    /// Sets [`PublishOptions::skip_cleaning`].
    #[must_use]
    pub fn skip_cleaning(mut self, skip: bool) -> Self {
        self.skip_cleaning = skip;
        self
    }
    /// Adds an extra JSON key.
    #[must_use]
    pub fn extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.push((key.into(), value));
        self
    }
}

/// Options of a consume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumeOptions {
    /// Skip the throttled clean before consuming.
    pub skip_cleaning: bool,
}

impl ConsumeOptions {
    /// Sets [`ConsumeOptions::skip_cleaning`].
    #[must_use]
    pub fn skip_cleaning(mut self, skip: bool) -> Self {
        self.skip_cleaning = skip;
        self
    }
}

/// What `purge` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    /// Waiting messages removed.
    pub waiting: usize,
    /// Claimed messages removed from `work/`.
    pub at_work: usize,
}

/// What a clean (or reap) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Whether it ran (a throttled clean within 60 s of the last one does not).
    pub ran: bool,
    /// Expired messages published again.
    pub requeued: usize,
    /// Expired messages deleted (no requeue flag, or over their limit).
    pub deleted: usize,
    /// Claimed messages not yet expired.
    pub skipped: usize,
    /// Files moved to `ROOT/.quarantine/QUEUE/`.
    pub quarantined: Vec<PathBuf>,
    /// Stale temporary files of dead publishers removed.
    pub stale_temps: usize,
}

/// One queue in a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueView {
    /// Queue name.
    pub name: String,
    /// Waiting messages.
    pub waiting: usize,
    /// Claimed messages (in `work/`).
    pub at_work: usize,
}

/// The fate of one claimed message handed to ack or nack.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckOutcome {
    /// Deleted.
    Deleted,
    /// Published again under this waiting name, then removed from `work/`.
    Requeued {
        /// The new waiting name.
        name: String,
    },
    /// Not there any more (its ack timeout passed and a cleaner took it, or another client
    /// acked it).
    Missing,
    /// Not a readable message: moved to the quarantine directory.
    Quarantined {
        /// Where it is now.
        path: PathBuf,
    },
}

/// Why a claimed message is being settled (decides whether it is requeued).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// Ack timeout passed: requeue if flagged and under the limit.
    Expired,
    /// Requeue whatever the flag and the limit (the original's `ack -r` / forced nack).
    Requeue,
    /// Requeue if flagged and under the limit.
    ByFlag,
    /// Delete.
    Delete,
    /// Give back at its old place (same name), counted as a requeue.
    Release,
}

/// A claimed message: ack or nack it before its timeout, or it is requeued (when flagged)
/// or deleted by the next clean.
#[derive(Debug)]
#[must_use = "a delivery is requeued or deleted only after its timeout unless it is acked or nacked"]
pub struct Delivery {
    /// The message (its `filename` is the claimed name, as the original's consume sets it).
    pub message: Message,
    broker: Broker,
    queue: String,
    claimed: String,
}

impl Delivery {
    /// The claimed file's name in `work/` (`E.P.N.ddmqID`).
    pub fn claimed_name(&self) -> &str {
        &self.claimed
    }

    /// The claimed file's path.
    pub fn path(&self) -> PathBuf {
        self.broker
            .inner
            .root
            .join(&self.queue)
            .join("work")
            .join(&self.claimed)
    }

    /// The queue it was consumed from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Whether this message was requeued before (`requeue_counter > 0`).
    pub fn redelivered(&self) -> bool {
        self.message.requeue_counter > 0
    }

    /// Deletes the claimed file (never requeues). `Missing` if its timeout passed and a
    /// cleaner took it first.
    pub fn ack(self) -> Result<AckOutcome> {
        let qs = self.broker.queue(&self.queue)?;
        self.broker.settle(&qs, &self.claimed, Settle::Delete)
    }

    /// Gives the message back at its old place in the queue (same priority and queue
    /// number, so it is served before younger messages), counting a requeue
    /// (`requeue_counter + 1`, so the next delivery is [`Delivery::redelivered`]). For
    /// consumers that go away without handling what they took. Not in the original.
    pub fn release(self) -> Result<AckOutcome> {
        let qs = self.broker.queue(&self.queue)?;
        self.broker.settle(&qs, &self.claimed, Settle::Release)
    }

    /// Negative acknowledgement: `Some(true)` requeues, `Some(false)` deletes, `None`
    /// follows the message's `requeue` flag and limit.
    pub fn nack(self, requeue: Option<bool>) -> Result<AckOutcome> {
        let how = match requeue {
            Some(true) => Settle::Requeue,
            Some(false) => Settle::Delete,
            None => Settle::ByFlag,
        };
        let qs = self.broker.queue(&self.queue)?;
        self.broker.settle(&qs, &self.claimed, how)
    }
}

/// A root directory of queues, shared with Python ddmq 0.9.14 clients. Cheap to clone;
/// `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    opts: BrokerOptions,
    sync: Syncer,
    queues: Mutex<HashMap<String, Arc<QueueState>>>,
}

#[derive(Debug)]
struct QueueState {
    name: String,
    dir: PathBuf,
    work: PathBuf,
    index: Mutex<Index>,
    settings: Mutex<Option<SettingsCache>>,
    /// Seen complete once (`ddmq.yaml` and `work/`); a later removal surfaces when the
    /// settings file is checked, which every publish and consume does.
    valid: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct SettingsCache {
    root: FileStamp,
    queue: FileStamp,
    settings: Settings,
    /// The queue file has all five keys: the root file cannot change the settings.
    complete: bool,
}

#[derive(Debug, Default)]
struct Index {
    keys: BTreeSet<SortKey>,
    mtime: Option<SystemTime>,
    scanned: Option<Instant>,
    skip: HashMap<String, Instant>,
    rescan_every: Duration,
}

fn dir_mtime(dir: &Path) -> Option<SystemTime> {
    fs::metadata(dir).and_then(|m| m.modified()).ok()
}

type FileStamp = Option<(SystemTime, u64, u64)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Seconds since the epoch, with the fraction.
pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn stamp(path: &Path) -> std::io::Result<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(path) {
        Ok(m) => Ok(Some((m.modified()?, m.len(), m.ino()))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn age(meta: &fs::Metadata) -> Duration {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default()
}

fn ctime_age(meta: &fs::Metadata) -> Duration {
    use std::os::unix::fs::MetadataExt;
    let ctime = UNIX_EPOCH
        + Duration::new(
            meta.ctime().max(0) as u64,
            meta.ctime_nsec().clamp(0, 999_999_999) as u32,
        );
    SystemTime::now().duration_since(ctime).unwrap_or_default()
}

fn uuid_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound
}

/// The names in a directory (non-UTF-8 names are not ddmq's and are skipped).
fn list(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io("read directory", dir))? {
        let entry = entry.map_err(io("read directory", dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push(name);
        }
    }
    Ok(out)
}

/// The private name of a claimed file a reaper has taken: `.reap.UUID[-T].E.P.N.ID` (`ddmq`
/// dropped from the id, so that Python's `*.ddmq*` glob never matches it). The tag `T` keeps
/// an explicit requeue (`r`) or give-back (`k`), so that whoever finishes the file after a
/// crash does what was asked, not what the message's flag says.
fn reap_name(claimed: &ClaimedName, how: Settle) -> String {
    format!(
        "{REAP_PREFIX}{}{}.{}.{}.{}.{}",
        uuid_hex(),
        reap_tag(how),
        claimed.expiry,
        claimed.waiting.priority,
        claimed.waiting.number,
        claimed.waiting.id
    )
}

fn reap_tag(how: Settle) -> &'static str {
    match how {
        Settle::Requeue => "-r",
        Settle::Release => "-k",
        Settle::Expired | Settle::ByFlag | Settle::Delete => "",
    }
}

/// The settlement a private file's tag asks for (no tag: by the flag, as an expiry).
fn reap_settle(token: &str) -> Settle {
    if token.ends_with("-r") {
        Settle::Requeue
    } else if token.ends_with("-k") {
        Settle::Release
    } else {
        Settle::Expired
    }
}

/// `flock` errors that mean the file system cannot lock this directory (not contention).
fn lock_unsupported(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::EBADF | libc::ENOLCK | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
        )
}

/// Read errors that will not go away by retrying: the entry is not a readable message file.
fn unreadable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::PermissionDenied
            | ErrorKind::IsADirectory
            | ErrorKind::NotADirectory
            | ErrorKind::InvalidInput
    ) || e.raw_os_error() == Some(libc::ELOOP)
}

impl Broker {
    /// Opens the root `root`; with `create`, creates and initiates it when needed (an
    /// empty `ddmq.yaml` and a `ddmq.yaml.example`), as the original does.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let broker = ddmq::Broker::open(dir.path().join("root"), true)?;
    /// broker.create_queue("jobs")?;
    /// broker.publish("jobs", "Hello World!", &ddmq::PublishOptions::new().priority(2))?;
    /// let mut got = broker.consume("jobs", 1)?;
    /// let delivery = got.pop().expect("one message");
    /// assert_eq!(delivery.message.message, "Hello World!");
    /// delivery.ack()?;
    /// # Ok::<(), ddmq::Error>(())
    /// ```
    pub fn open(root: impl AsRef<Path>, create: bool) -> Result<Broker> {
        Self::open_with(root, BrokerOptions::default().create(create))
    }

    /// Opens the root `root` with `opts`.
    pub fn open_with(root: impl AsRef<Path>, opts: BrokerOptions) -> Result<Broker> {
        let root = root.as_ref().to_owned();
        let conf = root.join("ddmq.yaml");
        if !conf.is_file() {
            if !opts.create {
                return Err(if root.is_dir() {
                    Error::RootUninitiated { root }
                } else {
                    Error::RootMissing { root }
                });
            }
            fs::create_dir_all(&root).map_err(io("create directory", &root))?;
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&conf)
            {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("create", &conf)(e)),
            }
            let example = root.join("ddmq.yaml.example");
            fs::write(&example, format::DEFAULT_SETTINGS_YAML).map_err(io("write", &example))?;
            // A durable root stays initiated after a power loss (its queues need it).
            Syncer::new(opts.durability).sync_dir(&root)?;
        }
        let sync = Syncer::new(opts.durability);
        Ok(Broker {
            inner: Arc::new(Inner {
                root,
                opts,
                sync,
                queues: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The options it was opened with.
    pub fn options(&self) -> &BrokerOptions {
        &self.inner.opts
    }

    fn queue(&self, name: &str) -> Result<Arc<QueueState>> {
        if !format::valid_queue_name(name) {
            return Err(Error::InvalidQueueName {
                name: name.to_owned(),
            });
        }
        let mut queues = lock(&self.inner.queues);
        if let Some(q) = queues.get(name) {
            return Ok(Arc::clone(q));
        }
        let dir = self.inner.root.join(name);
        let q = Arc::new(QueueState {
            name: name.to_owned(),
            work: dir.join("work"),
            dir,
            index: Mutex::new(Index::default()),
            settings: Mutex::new(None),
            valid: std::sync::atomic::AtomicBool::new(false),
        });
        queues.insert(name.to_owned(), Arc::clone(&q));
        Ok(q)
    }

    /// A queue that exists (or is created, with [`BrokerOptions::create`]).
    fn existing(&self, name: &str) -> Result<Arc<QueueState>> {
        let qs = self.queue(name)?;
        if qs.valid.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(qs);
        }
        if !self.is_queue(&qs.dir) {
            if self.inner.opts.create {
                self.create_queue(name).or_else(|e| match e {
                    Error::QueueExists { .. } => Ok(()),
                    e => Err(e),
                })?;
            } else {
                return Err(Error::QueueMissing {
                    path: qs.dir.clone(),
                });
            }
        }
        qs.valid.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(qs)
    }

    fn is_queue(&self, dir: &Path) -> bool {
        dir.join("ddmq.yaml").is_file() && dir.join("work").is_dir()
    }

    /// Creates the queue `q` (its directory, `work/` and a `ddmq.yaml` of the defaults). A
    /// directory left half-created (no `ddmq.yaml` or no `work/`) is completed.
    pub fn create_queue(&self, q: &str) -> Result<()> {
        let qs = self.queue(q)?;
        if self.is_queue(&qs.dir) {
            return Err(Error::QueueExists {
                path: qs.dir.clone(),
            });
        }
        fs::create_dir_all(&qs.work).map_err(io("create directory", &qs.work))?;
        let conf = qs.dir.join("ddmq.yaml");
        if !conf.is_file() {
            self.write_settings_file(&qs.dir, format::DEFAULT_SETTINGS_YAML.as_bytes())?;
        }
        self.inner.sync.sync_dir(&self.inner.root)
    }

    /// Deletes the queue `q`. Entries ddmq did not write make it fail with
    /// [`Error::ForeignFiles`] before anything is removed, unless `force`.
    pub fn delete_queue(&self, q: &str, force: bool) -> Result<()> {
        let qs = self.queue(q)?;
        if !qs.dir.is_dir() {
            return Err(Error::QueueMissing {
                path: qs.dir.clone(),
            });
        }
        let mut foreign = Vec::new();
        for name in list(&qs.dir)? {
            let ours = format::is_message_file(&name)
                || matches!(
                    name.as_str(),
                    "ddmq.yaml" | "ddmq.yaml.intermediate" | "work"
                )
                || name.starts_with(TMP_PREFIX)
                || name.starts_with(SETTINGS_TMP_PREFIX);
            if !ours {
                foreign.push(name);
            }
        }
        if qs.work.is_dir() {
            for name in list(&qs.work)? {
                if !format::is_message_file(&name) && !name.starts_with(REAP_PREFIX) {
                    foreign.push(format!("work/{name}"));
                }
            }
        }
        if !foreign.is_empty() && !force {
            foreign.sort();
            return Err(Error::ForeignFiles {
                path: qs.dir.clone(),
                files: foreign,
            });
        }
        fs::remove_dir_all(&qs.dir).map_err(io("remove directory", &qs.dir))?;
        lock(&self.inner.queues).remove(q);
        self.inner.sync.sync_dir(&self.inner.root)
    }

    /// Removes every message of `q`, waiting and claimed.
    pub fn purge(&self, q: &str) -> Result<PurgeCounts> {
        self.purge_with(q, &mut |_| {})
    }

    /// [`Broker::purge`], calling `progress` with the number removed so far every 1000 files.
    pub fn purge_with(&self, q: &str, progress: &mut dyn FnMut(usize)) -> Result<PurgeCounts> {
        let qs = self.existing(q)?;
        let mut counts = PurgeCounts::default();
        let mut idx = lock(&qs.index);
        for (dir, count) in [
            (&qs.work, &mut counts.at_work),
            (&qs.dir, &mut counts.waiting),
        ] {
            for name in list(dir)? {
                if !format::is_message_file(&name) {
                    continue;
                }
                match fs::remove_file(dir.join(&name)) {
                    Ok(()) => *count += 1,
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(io("remove", dir.join(&name))(e)),
                }
                if count.is_multiple_of(1000) {
                    progress(*count);
                }
            }
        }
        idx.keys.clear();
        idx.scanned = None;
        drop(idx);
        self.inner.sync.sync_dir(&qs.work)?;
        self.inner.sync.sync_dir(&qs.dir)?;
        Ok(counts)
    }

    /// The valid queues of the root (directories with `ddmq.yaml` and `work/`), sorted.
    pub fn list_queues(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = list(&self.inner.root)?
            .into_iter()
            .filter(|n| self.is_queue(&self.inner.root.join(n)))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Message counts of every queue, or of the queues in `only` that exist.
    pub fn view(&self, only: Option<&[&str]>) -> Result<Vec<QueueView>> {
        let mut names = self.list_queues()?;
        if let Some(only) = only {
            names.retain(|n| only.contains(&n.as_str()));
        }
        names
            .into_iter()
            .map(|name| {
                let dir = self.inner.root.join(&name);
                let count = |d: &Path| -> Result<usize> {
                    Ok(list(d)?
                        .iter()
                        .filter(|n| format::is_message_file(n))
                        .count())
                };
                Ok(QueueView {
                    waiting: count(&dir)?,
                    at_work: count(&dir.join("work"))?,
                    name,
                })
            })
            .collect()
    }

    /// The effective settings of queue `q` (or of the root with `None`), read from the files
    /// now (a cached copy is used only while neither file changed).
    pub fn settings(&self, q: Option<&str>) -> Result<Settings> {
        match q {
            None => {
                let mut s = Settings::default();
                let path = self.inner.root.join("ddmq.yaml");
                s.apply(&read_settings_file(&path)?)
                    .map_err(|e| Error::Settings { path, detail: e.0 })?;
                Ok(s)
            }
            Some(q) => {
                let qs = self.existing(q)?;
                self.queue_settings(&qs)
            }
        }
    }

    fn queue_settings(&self, qs: &QueueState) -> Result<Settings> {
        let root_path = self.inner.root.join("ddmq.yaml");
        let q_path = qs.dir.join("ddmq.yaml");
        let mut q_stamp = stamp(&q_path).map_err(io("stat", &q_path))?;
        if q_stamp.is_none() {
            // Removed since we last saw it: check again (and create it, as the original
            // does, with `create`).
            qs.valid.store(false, std::sync::atomic::Ordering::Relaxed);
            self.existing(&qs.name)?;
            q_stamp = stamp(&q_path).map_err(io("stat", &q_path))?;
            if q_stamp.is_none() {
                return Err(Error::QueueMissing {
                    path: qs.dir.clone(),
                });
            }
        }
        let mut cache = lock(&qs.settings);
        if let Some(c) = &*cache
            && c.queue == q_stamp
            && (c.complete || c.root == stamp(&root_path).map_err(io("stat", &root_path))?)
        {
            return Ok(c.settings.clone());
        }
        let root_stamp = stamp(&root_path).map_err(io("stat", &root_path))?;
        let mut s = Settings::default();
        let mut complete = false;
        for path in [&root_path, &q_path] {
            let file = read_settings_file(path)?;
            complete = Settings::KEYS.iter().all(|k| file.contains_key(*k));
            s.apply(&file).map_err(|e| Error::Settings {
                path: path.clone(),
                detail: e.0,
            })?;
        }
        *cache = Some(SettingsCache {
            root: root_stamp,
            queue: q_stamp,
            settings: s.clone(),
            complete,
        });
        Ok(s)
    }

    /// Changes keys of the `ddmq.yaml` of queue `q` (or of the root with `None`): a
    /// read-modify-write under an exclusive `flock` of the directory, written to a unique
    /// temporary file and renamed over the old one (never an empty or partial file).
    pub fn update_settings(&self, q: Option<&str>, patch: &SettingsFile) -> Result<()> {
        let qs = q.map(|q| self.existing(q)).transpose()?;
        let dir = qs
            .as_ref()
            .map_or_else(|| self.inner.root.clone(), |qs| qs.dir.clone());
        let handle = fs::File::open(&dir).map_err(io("open directory", &dir))?;
        match handle.lock() {
            Ok(()) => {}
            // Where the file system cannot lock a directory (NFS emulates flock with
            // byte-range locks, which need a file open for writing; Lustre without `-o flock`;
            // `nolock` mounts) the write goes ahead unlocked: the rename still never leaves a
            // partial file, only two concurrent writers may lose one's update (as in the
            // original). Failing instead would fail every throttled clean, and so every
            // publish and consume, on those file systems.
            Err(e) if lock_unsupported(&e) => {}
            Err(e) => return Err(io("flock", &dir)(e)),
        }
        let path = dir.join("ddmq.yaml");
        let mut current = read_settings_file(&path)?;
        for (k, v) in patch {
            current.insert(k.clone(), v.clone());
        }
        let mut check = Settings::default();
        check.apply(&current).map_err(|e| Error::Settings {
            path: path.clone(),
            detail: e.0,
        })?;
        let before = dir_mtime(&dir);
        let text = format::encode_settings(&current).map_err(|e| Error::Settings {
            path: path.clone(),
            detail: e.0,
        })?;
        self.write_settings_file(&dir, text.as_bytes())?;
        if let Some(qs) = qs {
            // Our own change of the queue directory: the index stays current.
            let mut idx = lock(&qs.index);
            if before.is_some() && idx.mtime == before {
                idx.mtime = dir_mtime(&dir);
            }
        }
        Ok(())
        // The lock goes with `handle`.
    }

    fn write_settings_file(&self, dir: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = dir.join(format!(
            "{SETTINGS_TMP_PREFIX}{}.{}",
            std::process::id(),
            uuid_hex()
        ));
        let path = dir.join("ddmq.yaml");
        self.inner.sync.write_new(&tmp, bytes)?;
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(io("rename", &path)(e));
        }
        self.inner.sync.sync_dir(dir)
    }

    /// A new queue number, strictly increasing within this process.
    fn next_number(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // One counter for the whole process (every broker of it), as the docs promise.
        static LAST: Mutex<u128> = Mutex::new(0);
        let mut last = lock(&LAST);
        *last = now.max(*last + 1);
        format::queue_number(*last)
    }

    /// Publishes `body` to queue `q`: written under a temporary name and renamed into
    /// place, so no reader ever sees a partial message. Falsy bodies are stored as `""`.
    pub fn publish(&self, q: &str, body: impl Into<Value>, o: &PublishOptions) -> Result<Message> {
        let qs = self.existing(q)?;
        if let Requeue::AtPriority(0) = o.requeue {
            return Err(Error::InvalidOption(
                "Requeue::AtPriority(0): 0 is `false` in the message format; use Requeue::Yes"
                    .into(),
            ));
        }
        check_extra(&o.extra)?;
        let settings = self.queue_settings(&qs)?;
        if self.inner.opts.auto_clean && !o.skip_cleaning {
            self.clean_queue(&qs, false, &mut |_| {})?;
        }
        let body = body.into();
        let mut m = Message {
            message: if format::truthy(&body) {
                body
            } else {
                Value::String(String::new())
            },
            queue: qs.name.clone(),
            timeout: o.timeout.filter(|t| *t > 0.0),
            id: uuid_hex(),
            priority: o.priority.unwrap_or(settings.priority),
            queue_number: String::new(),
            filename: String::new(),
            requeue: o.requeue,
            requeue_counter: 0,
            requeue_limit: o.requeue_limit.filter(|l| *l > 0),
            extra: o.extra.clone(),
        };
        self.put(&qs, &mut m)?;
        Ok(m)
    }

    /// Writes `m` into the queue under a fresh queue number.
    fn put(&self, qs: &QueueState, m: &mut Message) -> Result<()> {
        m.queue_number = self.next_number();
        let name = WaitingName {
            priority: m.priority,
            number: m.queue_number.clone(),
            id: m.id.clone(),
        };
        m.filename = name.to_string();
        self.put_as(qs, m)
    }

    /// Writes `m` under its `filename`.
    fn put_as(&self, qs: &QueueState, m: &Message) -> Result<()> {
        let name = WaitingName::parse(&m.filename).map_err(|e| Error::BadName {
            name: m.filename.clone(),
            detail: e.0,
        })?;
        let tmp = qs
            .dir
            .join(format!("{TMP_PREFIX}{}.{}", std::process::id(), uuid_hex()));
        let target = qs.dir.join(&m.filename);
        // The directory's mtime before our own changes (the temporary file is one).
        let before = dir_mtime(&qs.dir);
        self.inner
            .sync
            .write_new(&tmp, &m.encode())
            .map_err(|e| match e {
                Error::Io { source, .. } if not_found(&source) => Error::QueueMissing {
                    path: qs.dir.clone(),
                },
                e => e,
            })?;
        {
            let mut idx = lock(&qs.index);
            if let Err(e) = fs::rename(&tmp, &target) {
                let _ = fs::remove_file(&tmp);
                return Err(io("rename", &target)(e));
            }
            if idx.scanned.is_some() {
                idx.keys.insert(name.key(self.inner.opts.order));
                if before.is_some() && idx.mtime == before {
                    idx.mtime = dir_mtime(&qs.dir);
                }
            }
        }
        self.inner.sync.sync_dir(&qs.dir)
    }

    /// Claims up to `n` messages of `q` in order; an empty `Vec` when there are none.
    pub fn consume(&self, q: &str, n: usize) -> Result<Vec<Delivery>> {
        self.consume_with(q, n, &ConsumeOptions::default())
    }

    /// [`Broker::consume`] with options.
    ///
    /// Each message is claimed by renaming it into `work/` with its expiry prepended, which
    /// exactly one of any number of concurrent consumers (threads, processes, machines on a
    /// shared file system) wins; a lost race moves on to the next message. Waiting messages
    /// are kept in an in-memory index that is re-read from the directory only when it is
    /// empty, when the directory changed behind this process's back, or now and then as a
    /// safety net (at least a second apart, and at most about 1% of the time).
    pub fn consume_with(&self, q: &str, n: usize, o: &ConsumeOptions) -> Result<Vec<Delivery>> {
        let qs = self.existing(q)?;
        let settings = self.queue_settings(&qs)?;
        if self.inner.opts.auto_clean && !o.skip_cleaning {
            self.clean_queue(&qs, false, &mut |_| {})?;
        }
        let mut out = Vec::new();
        let mut idx = lock(&qs.index);
        let now_mtime = dir_mtime(&qs.dir);
        let mut rescanned = false;
        while out.len() < n.max(1) {
            let stale = idx.keys.is_empty()
                || idx.mtime != now_mtime
                || idx.scanned.is_none_or(|t| t.elapsed() > idx.rescan_every);
            if stale && !rescanned {
                self.rescan(&qs, &mut idx)?;
                rescanned = true;
            }
            let Some(key) = idx.keys.pop_first() else {
                break;
            };
            match self.claim(&qs, &settings, &mut idx, &key.name) {
                Ok(Some(d)) => out.push(d),
                Ok(None) => {}
                // What was claimed is handed out (dropping it would strand it in `work/`
                // until its timeout); the next call meets the error again.
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        drop(idx);
        if !out.is_empty() {
            self.inner.sync.sync_dir(&qs.work)?;
            self.inner.sync.sync_dir(&qs.dir)?;
        }
        Ok(out)
    }

    fn rescan(&self, qs: &QueueState, idx: &mut Index) -> Result<()> {
        let mtime = fs::metadata(&qs.dir)
            .and_then(|m| m.modified())
            .map_err(|e| {
                if not_found(&e) {
                    Error::QueueMissing {
                        path: qs.dir.clone(),
                    }
                } else {
                    io("stat", &qs.dir)(e)
                }
            })?;
        let now = Instant::now();
        idx.skip.retain(|_, until| *until > now);
        idx.keys.clear();
        for name in list(&qs.dir)? {
            if !format::is_message_file(&name) || idx.skip.contains_key(&name) {
                continue;
            }
            match WaitingName::parse(&name) {
                Ok(w) => {
                    idx.keys.insert(w.key(self.inner.opts.order));
                }
                Err(_) => {
                    // A foreign file matching `*.ddmq*`: quarantined once it is old enough
                    // not to be a name still being chosen.
                    let path = qs.dir.join(&name);
                    if fs::metadata(&path).is_ok_and(|m| age(&m) >= YOUNG) {
                        self.quarantine(qs, &path, &name)?;
                    }
                }
            }
        }
        idx.mtime = Some(mtime);
        idx.scanned = Some(now);
        // A periodic rescan is only a safety net (a change within one tick of the
        // directory's mtime clock can hide): it may cost about 1% of the time.
        idx.rescan_every = RESCAN.max(now.elapsed() * 100);
        Ok(())
    }

    /// Claims the waiting message `name`: `None` if another consumer won it or it is not
    /// (yet) a readable message.
    fn claim(
        &self,
        qs: &QueueState,
        settings: &Settings,
        idx: &mut Index,
        name: &str,
    ) -> Result<Option<Delivery>> {
        let from = qs.dir.join(name);
        // Read first, so that the claim carries the message's own timeout from its first
        // rename: a claimer killed before a second rename would leave the queue's timeout.
        // A file that does not parse yet (a Python publisher filling it in place) or cannot
        // be read is claimed with the queue's timeout and judged from `work/` below.
        let early = match read_small(&from) {
            Ok(bytes) => Message::decode(&bytes).ok(),
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) if unreadable(&e) => None,
            Err(e) => return Err(io("read", &from)(e)),
        };
        let now = now_secs();
        let expiry_of = |timeout: Option<f64>| match timeout {
            Some(t) if t.fract() == 0.0 => now.floor() + t,
            Some(t) => now + t,
            None => now.floor() + settings.message_timeout.floor(),
        };
        let first = early.as_ref().and_then(|m| m.timeout);
        let mut claimed = format!("{}.{name}", format::format_expiry(expiry_of(first)));
        let before = dir_mtime(&qs.dir);
        match fs::rename(&from, qs.work.join(&claimed)) {
            Ok(()) => {}
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(io("rename", &from)(e)),
        }
        // Our own change: the index stays current unless someone else changed it first.
        if before.is_some() && idx.mtime == before {
            idx.mtime = dir_mtime(&qs.dir);
        }
        let path = qs.work.join(&claimed);
        if let Some(mut m) = early {
            m.filename.clone_from(&claimed);
            return Ok(Some(Delivery {
                message: m,
                broker: self.clone(),
                queue: qs.name.clone(),
                claimed,
            }));
        }
        let mut m = None;
        // Retries wait for a Python publisher filling the file in place; an old file is not
        // being filled: one reading decides.
        let attempts = if fs::metadata(&path).is_ok_and(|meta| age(&meta) >= YOUNG) {
            1
        } else {
            4
        };
        for attempt in 0..attempts {
            let bytes = match read_small(&path) {
                Ok(b) => b,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) if unreadable(&e) => {
                    self.quarantine(qs, &path, name)?;
                    return Ok(None);
                }
                Err(e) => return Err(io("read", &path)(e)),
            };
            match Message::decode(&bytes) {
                Ok(msg) => {
                    m = Some(msg);
                    break;
                }
                Err(_) if attempt + 1 < attempts => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => {}
            }
        }
        let Some(mut m) = m else {
            let young = fs::metadata(&path).is_ok_and(|meta| age(&meta) < YOUNG);
            if young {
                // Still being written in place (a Python publisher): give it back for now.
                match fs::rename(&path, &from) {
                    Ok(()) => {
                        idx.skip.insert(name.to_owned(), Instant::now() + SKIP_FOR);
                    }
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(io("rename", &path)(e)),
                }
            } else {
                self.quarantine(qs, &path, name)?;
            }
            return Ok(None);
        };
        if let Some(t) = m.timeout
            && t != settings.message_timeout
        {
            let fixed = format!("{}.{name}", format::format_expiry(expiry_of(Some(t))));
            match fs::rename(&path, qs.work.join(&fixed)) {
                Ok(()) => claimed = fixed,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(io("rename", &path)(e)),
            }
        }
        m.filename.clone_from(&claimed);
        Ok(Some(Delivery {
            message: m,
            broker: self.clone(),
            queue: qs.name.clone(),
            claimed,
        }))
    }

    fn quarantine(&self, qs: &QueueState, path: &Path, name: &str) -> Result<PathBuf> {
        let dir = self.inner.root.join(".quarantine").join(&qs.name);
        fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let to = dir.join(name);
        match fs::rename(path, &to) {
            Ok(()) => Ok(to),
            Err(e) if not_found(&e) => Ok(to),
            Err(e) => Err(io("rename", path)(e)),
        }
    }

    /// Acks claimed messages of `q` by their names in `work/`: deleted, or requeued when
    /// `requeue` (the original's `ack -r`).
    pub fn ack_names(&self, q: &str, names: &[&str], requeue: bool) -> Result<Vec<AckOutcome>> {
        let qs = self.existing(q)?;
        let how = if requeue {
            Settle::Requeue
        } else {
            Settle::Delete
        };
        names
            .iter()
            .map(|n| self.settle_name(&qs, n, how))
            .collect()
    }

    /// Nacks claimed messages of `q` by name: `Some(true)` requeues, `Some(false)` deletes,
    /// `None` follows each message's flag and limit.
    pub fn nack_names(
        &self,
        q: &str,
        names: &[&str],
        requeue: Option<bool>,
    ) -> Result<Vec<AckOutcome>> {
        let qs = self.existing(q)?;
        let how = match requeue {
            Some(true) => Settle::Requeue,
            Some(false) => Settle::Delete,
            None => Settle::ByFlag,
        };
        names
            .iter()
            .map(|n| self.settle_name(&qs, n, how))
            .collect()
    }

    fn settle_name(&self, qs: &QueueState, name: &str, how: Settle) -> Result<AckOutcome> {
        ClaimedName::parse(name).map_err(|e| Error::BadName {
            name: name.to_owned(),
            detail: e.0,
        })?;
        self.settle(qs, name, how)
    }

    /// Settles the claimed file `work/claimed`.
    fn settle(&self, qs: &QueueState, claimed: &str, how: Settle) -> Result<AckOutcome> {
        let path = qs.work.join(claimed);
        if how == Settle::Delete {
            return match fs::remove_file(&path) {
                Ok(()) => {
                    self.inner.sync.sync_dir(&qs.work)?;
                    Ok(AckOutcome::Deleted)
                }
                Err(e) if not_found(&e) => Ok(AckOutcome::Missing),
                Err(e) => Err(io("remove", &path)(e)),
            };
        }
        let parsed = ClaimedName::parse(claimed).map_err(|e| Error::BadName {
            name: claimed.to_owned(),
            detail: e.0,
        })?;
        // Take it first (one winner among reapers and the owner), then publish the copy.
        let private = qs.work.join(reap_name(&parsed, how));
        match fs::rename(&path, &private) {
            Ok(()) => {}
            Err(e) if not_found(&e) => return Ok(AckOutcome::Missing),
            Err(e) => return Err(io("rename", &path)(e)),
        }
        self.finish_reap(qs, &private, &parsed.waiting.to_string(), how)
    }

    /// Requeues or deletes the message in the private file `private`, then removes it.
    fn finish_reap(
        &self,
        qs: &QueueState,
        private: &Path,
        waiting: &str,
        how: Settle,
    ) -> Result<AckOutcome> {
        let bytes = match read_small(private) {
            Ok(b) => b,
            Err(e) if not_found(&e) => return Ok(AckOutcome::Missing),
            Err(e) if unreadable(&e) => {
                let to = self.quarantine(qs, private, waiting)?;
                return Ok(AckOutcome::Quarantined { path: to });
            }
            Err(e) => return Err(io("read", private)(e)),
        };
        let m = match Message::decode(&bytes) {
            Ok(m) => m,
            Err(_) => {
                let to = self.quarantine(qs, private, waiting)?;
                return Ok(AckOutcome::Quarantined { path: to });
            }
        };
        if m.filename != waiting && WaitingName::parse(&m.filename).is_ok() {
            // A copy its reaper had prepared (see below) before it was killed: publish it
            // as it is, once.
            self.publish_private(qs, private, &m)?;
            return Ok(AckOutcome::Requeued { name: m.filename });
        }
        let requeue = match how {
            Settle::Requeue | Settle::Release => true,
            Settle::Delete => false,
            Settle::Expired | Settle::ByFlag => m.requeue.is_set() && m.under_limit(),
        };
        let outcome = if requeue {
            let settings = self.queue_settings(qs)?;
            let priority = match m.requeue {
                Requeue::AtPriority(p) => p,
                _ if settings.requeue_prio == 0 && !self.inner.opts.requeue_zero_is_top => {
                    settings.priority
                }
                _ => settings.requeue_prio,
            };
            let release = how == Settle::Release;
            let mut copy = Message {
                priority: if release { m.priority } else { priority },
                requeue_counter: m.requeue_counter + 1,
                queue: qs.name.clone(),
                ..m
            };
            if release {
                copy.filename = waiting.to_owned();
                let w = WaitingName::parse(waiting).map_err(|e| Error::BadName {
                    name: waiting.to_owned(),
                    detail: e.0,
                })?;
                copy.queue_number = w.number;
                copy.priority = w.priority;
                copy.id = w.id;
            } else {
                copy.queue_number = self.next_number();
                copy.filename = WaitingName {
                    priority: copy.priority,
                    number: copy.queue_number.clone(),
                    id: copy.id.clone(),
                }
                .to_string();
            }
            // The private file becomes the copy (one atomic replace), and one rename then
            // publishes it and removes the private file together. Publishing a separate copy
            // and then removing the private file would let a reaper killed in between leave
            // both, and whoever finished the private file later would deliver the message a
            // second time, after its copy had been acked. A crash before the replace leaves
            // the old content (finished as usual); after it, the prepared copy (its
            // `filename` is no longer the claimed one: published as is, above).
            let tmp = qs
                .work
                .join(format!("{TMP_PREFIX}{}.{}", std::process::id(), uuid_hex()));
            self.inner.sync.write_new(&tmp, &copy.encode())?;
            if let Err(e) = fs::rename(&tmp, private) {
                let _ = fs::remove_file(&tmp);
                return Err(io("rename", private)(e));
            }
            self.inner.sync.sync_dir(&qs.work)?;
            self.publish_private(qs, private, &copy)?;
            return Ok(AckOutcome::Requeued {
                name: copy.filename,
            });
        } else {
            AckOutcome::Deleted
        };
        match fs::remove_file(private) {
            Ok(()) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(io("remove", private)(e)),
        }
        self.inner.sync.sync_dir(&qs.work)?;
        Ok(outcome)
    }

    /// Publishes the private file `private`, which holds `m`, under `m.filename` by renaming
    /// it into the queue directory (it is gone from `work/` in the same step).
    fn publish_private(&self, qs: &QueueState, private: &Path, m: &Message) -> Result<()> {
        let name = WaitingName::parse(&m.filename).map_err(|e| Error::BadName {
            name: m.filename.clone(),
            detail: e.0,
        })?;
        let target = qs.dir.join(&m.filename);
        let before = dir_mtime(&qs.dir);
        {
            let mut idx = lock(&qs.index);
            fs::rename(private, &target).map_err(io("rename", private))?;
            if idx.scanned.is_some() {
                idx.keys.insert(name.key(self.inner.opts.order));
                if before.is_some() && idx.mtime == before {
                    idx.mtime = dir_mtime(&qs.dir);
                }
            }
        }
        self.inner.sync.sync_dir(&qs.dir)?;
        self.inner.sync.sync_dir(&qs.work)
    }

    /// Deletes one message file by path (waiting or claimed). `Ok(false)` if it was not there.
    pub fn delete_message(&self, path: &Path) -> Result<bool> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if WaitingName::parse(name).is_err() && ClaimedName::parse(name).is_err() {
            return Err(Error::BadName {
                name: path.display().to_string(),
                detail:
                    "the file name is not PRIORITY.NUMBER.ddmqID or EXPIRY.PRIORITY.NUMBER.ddmqID"
                        .into(),
            });
        }
        match fs::remove_file(path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    self.inner.sync.sync_dir(dir)?;
                }
                Ok(true)
            }
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(io("remove", path)(e)),
        }
    }

    /// Cleans `q`: expired claimed messages are requeued (flag set, under the limit) or
    /// deleted; then `cleaned` is written. Without `force`, runs only when the last clean
    /// is 60 s or more ago (the original's throttle).
    /// Temporary files of dead publishers (older than [`BrokerOptions::temp_grace`]) are
    /// removed too.
    pub fn clean(&self, q: &str, force: bool) -> Result<CleanReport> {
        self.clean_with(q, force, &mut |_| {})
    }

    /// [`Broker::clean`], calling `progress` with the number of claimed files looked at so
    /// far every 1000 files.
    pub fn clean_with(
        &self,
        q: &str,
        force: bool,
        progress: &mut dyn FnMut(usize),
    ) -> Result<CleanReport> {
        let qs = self.existing(q)?;
        self.clean_queue(&qs, force, progress)
    }

    /// Cleans every queue (throttled, as the original's `clean_all`).
    pub fn clean_all(&self) -> Result<Vec<(String, CleanReport)>> {
        self.list_queues()?
            .into_iter()
            .map(|q| {
                let r = self.clean(&q, false)?;
                Ok((q, r))
            })
            .collect()
    }

    fn clean_queue(
        &self,
        qs: &QueueState,
        force: bool,
        progress: &mut dyn FnMut(usize),
    ) -> Result<CleanReport> {
        let settings = self.queue_settings(qs)?;
        let now = now_secs();
        if !force && settings.cleaned >= now.floor() as i64 - 60 {
            return Ok(CleanReport::default());
        }
        let report = self.reap(qs, true, progress)?;
        let mut patch = SettingsFile::new();
        patch.insert("cleaned".into(), (now.floor() as i64).into());
        self.update_settings(Some(&qs.name), &patch)?;
        Ok(report)
    }

    /// Requeues or deletes the expired claimed messages of `q` now, without the throttle
    /// and without writing `cleaned` (the housekeeping of long-running consumers). It lists
    /// `work/` only, so its cost does not grow with the number of waiting messages.
    pub fn reap_expired(&self, q: &str) -> Result<CleanReport> {
        let qs = self.existing(q)?;
        self.reap(&qs, false, &mut |_| {})
    }

    /// Settles the expired claims of `work/`; with `sweep`, also removes stale temporary
    /// files of the queue directory (a listing of every waiting message).
    fn reap(
        &self,
        qs: &QueueState,
        sweep: bool,
        progress: &mut dyn FnMut(usize),
    ) -> Result<CleanReport> {
        let mut report = CleanReport {
            ran: true,
            ..CleanReport::default()
        };
        let now = now_secs();
        for (seen, name) in list(&qs.work)?.into_iter().enumerate() {
            if seen > 0 && seen.is_multiple_of(1000) {
                progress(seen);
            }
            if let Some(rest) = name.strip_prefix(REAP_PREFIX) {
                // A reaper's file: finish it once its reaper must be dead.
                let path = qs.work.join(&name);
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                if ctime_age(&meta) < self.inner.opts.reap_grace {
                    continue;
                }
                let (token, tail) = rest.split_once('.').unwrap_or((rest, ""));
                let how = reap_settle(token);
                let parts: Vec<&str> = tail.rsplitn(4, '.').collect();
                let waiting = if parts.len() >= 3 {
                    format!("{}.{}.ddmq{}", parts[2], parts[1], parts[0])
                } else {
                    name.clone()
                };
                // Take it over first: of concurrent cleaners exactly one finishes it.
                let mine = qs.work.join(format!(
                    "{REAP_PREFIX}{}{}.{tail}",
                    uuid_hex(),
                    reap_tag(how)
                ));
                match fs::rename(&path, &mine) {
                    Ok(()) => {}
                    Err(e) if not_found(&e) => continue,
                    Err(e) => return Err(io("rename", &path)(e)),
                }
                self.tally(&mut report, self.finish_reap(qs, &mine, &waiting, how)?);
                continue;
            }
            if !format::is_message_file(&name) {
                continue;
            }
            let Ok(claimed) = ClaimedName::parse(&name) else {
                continue; // not ours to judge: the original ignores it too
            };
            if !claimed.expired_at(now) {
                report.skipped += 1;
                continue;
            }
            let outcome = self.settle(qs, &name, Settle::Expired)?;
            self.tally(&mut report, outcome);
        }
        let names = if sweep { list(&qs.dir)? } else { Vec::new() };
        for name in names {
            if name.starts_with(TMP_PREFIX) || name.starts_with(SETTINGS_TMP_PREFIX) {
                let path = qs.dir.join(&name);
                if fs::metadata(&path).is_ok_and(|m| age(&m) >= self.inner.opts.temp_grace)
                    && fs::remove_file(&path).is_ok()
                {
                    report.stale_temps += 1;
                }
            }
        }
        Ok(report)
    }

    fn tally(&self, report: &mut CleanReport, outcome: AckOutcome) {
        match outcome {
            AckOutcome::Requeued { .. } => report.requeued += 1,
            AckOutcome::Deleted => report.deleted += 1,
            AckOutcome::Quarantined { path } => report.quarantined.push(path),
            AckOutcome::Missing => {}
        }
    }
}

/// Reads a whole message file. Only a regular file is read: a FIFO, a device, a directory or
/// a symbolic link under a message name is an `unreadable` error (a FIFO is opened without
/// blocking, a link is not followed).
/// Extra keys that would not read back as written: one of the ten keys (the file would hold
/// it twice and the reader take the extra one), the integrity field or a value a reader takes
/// for a damaged one, or a key given twice.
fn check_extra(extra: &[(String, Value)]) -> Result<()> {
    for (i, (k, v)) in extra.iter().enumerate() {
        let why = if format::KEYS.contains(&k.as_str()) {
            "is one of the message's own keys"
        } else if k == format::INTEGRITY_KEY {
            "is the integrity field this crate writes"
        } else if v
            .as_str()
            .is_some_and(|s| s.starts_with(format::INTEGRITY_TAG))
        {
            "has a value starting with `crc32c:`, which readers take for a damaged integrity field"
        } else if extra[..i].iter().any(|(earlier, _)| earlier == k) {
            "is given twice"
        } else {
            continue;
        };
        return Err(Error::InvalidOption(format!("extra key {k:?} {why}")));
    }
    Ok(())
}

fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(1 << 20) + 1);
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn read_settings_file(path: &Path) -> Result<SettingsFile> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => return Err(io("read", path)(e)),
    };
    format::decode_settings(&bytes).map_err(|e| Error::Settings {
        path: path.to_owned(),
        detail: e.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_locks_a_file_system_cannot_take_are_not_errors() {
        // NFS (exclusive lock on a read-only fd), Lustre without `-o flock`, `nolock` mounts.
        for errno in [libc::EBADF, libc::ENOLCK, libc::ENOSYS, libc::EOPNOTSUPP] {
            assert!(lock_unsupported(&std::io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::EIO, libc::EINTR, libc::EACCES] {
            assert!(!lock_unsupported(&std::io::Error::from_raw_os_error(errno)));
        }
    }
}
