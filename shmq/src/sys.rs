//! Every `unsafe` operation of the crate: System V shared memory, futexes, `kill(pid, 0)`.
//!
//! [`Segment`] owns one attachment and hands out `&AtomicU64` / `&AtomicU32` at checked,
//! aligned offsets; all access to shared memory goes through those atomics.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

/// One attachment of a SysV segment; detached on drop.
#[derive(Debug)]
pub(crate) struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    id: i32,
}

// SAFETY: the segment is only accessed through atomics, and the attachment stays valid until
// `Drop`/`detach`, which need ownership; sharing or sending the handle between threads is sound.
unsafe impl Send for Segment {}
// SAFETY: as above: every access through `&Segment` is an atomic operation.
unsafe impl Sync for Segment {}

/// What `IPC_STAT` reports about a segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShmStat {
    /// Size in bytes.
    pub(crate) size: u64,
    /// Current attachments.
    pub(crate) nattch: u64,
    /// Creator pid.
    pub(crate) cpid: i32,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `shmget(key, size, flags)`.
pub(crate) fn shmget(key: i32, size: usize, flags: i32) -> io::Result<i32> {
    // SAFETY: shmget takes plain integers and touches no memory of ours.
    check(unsafe { libc::shmget(key, size, flags) })
}

/// `shmctl(id, IPC_STAT)`.
pub(crate) fn stat(id: i32) -> io::Result<ShmStat> {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `ds` is a valid, writable shmid_ds for IPC_STAT to fill.
    check(unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zero-initialised plain-old-data, filled by the kernel on success.
    let ds = unsafe { ds.assume_init() };
    Ok(ShmStat {
        size: ds.shm_segsz as u64,
        nattch: ds.shm_nattch,
        cpid: ds.shm_cpid,
    })
}

/// `shmctl(id, IPC_RMID)`: the segment goes away once the last attachment is gone.
pub(crate) fn remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    check(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

impl Segment {
    /// Attaches segment `id` read-write and learns its size.
    pub(crate) fn attach(id: i32) -> io::Result<Segment> {
        // SAFETY: attaching at an address the kernel picks (NULL) maps fresh pages and cannot
        // overlap memory Rust owns.
        let ptr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if ptr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("shmat gave NULL"))?;
        // Owning it now: an error below detaches through Drop.
        let mut seg = Segment { ptr, len: 0, id };
        // The size is read while we hold the attachment, so it is this segment's.
        seg.len = usize::try_from(stat(id)?.size)
            .map_err(|_| io::Error::other("segment size does not fit in memory"))?;
        Ok(seg)
    }

    /// The segment id.
    pub(crate) fn id(&self) -> i32 {
        self.id
    }

    /// Size in bytes of the attachment.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn check(&self, off: usize, width: usize) {
        assert!(
            off.is_multiple_of(width) && off.checked_add(width).is_some_and(|end| end <= self.len),
            "internal error: shared-memory access at offset {off} (width {width}) outside a {}-byte segment",
            self.len
        );
    }

    /// The 64-bit word at `off` (8-aligned, in bounds: checked).
    pub(crate) fn u64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8);
        let ptr = self.ptr.as_ptr().wrapping_add(off).cast::<u64>();
        // SAFETY: in bounds and 8-aligned (checked above; shmat returns page-aligned memory);
        // the mapping lives as long as `&self`; every access to it is atomic.
        unsafe { AtomicU64::from_ptr(ptr) }
    }

    /// The 32-bit word at `off` (4-aligned, in bounds: checked).
    pub(crate) fn u32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4);
        let ptr = self.ptr.as_ptr().wrapping_add(off).cast::<u32>();
        // SAFETY: as for `u64`, with 4-byte alignment.
        unsafe { AtomicU32::from_ptr(ptr) }
    }

    /// Detaches, reporting the error `Drop` would ignore.
    pub(crate) fn detach(self) -> io::Result<()> {
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: `ptr` is our attachment; `self` is consumed, so nothing can use it after.
        check(unsafe { libc::shmdt(ptr.as_ptr().cast()) }).map(drop)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `ptr` is our attachment and `self` is going away: nothing uses it after.
        unsafe { libc::shmdt(self.ptr.as_ptr().cast()) };
    }
}

/// `FUTEX_WAIT` (shared) on `word` while it equals `expected`, for at most `timeout`.
/// Returns on wake, timeout, signal or value change; the caller re-checks its condition.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32; `ts_ptr` is null or points to `ts`, alive for the
    // call. FUTEX_WAIT only reads them.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}

/// `FUTEX_WAKE` (shared) of every waiter on `word`.
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not access it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}

/// Whether process `pid` exists (`kill(pid, 0)` is not `ESRCH`). Pid 0 and values that do
/// not fit a `pid_t` are "not alive" (they never name a real process here).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission; nothing is delivered.
    let ret = unsafe { libc::kill(pid, 0) };
    ret == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// This process's pid, cached (`getpid` is a system call); a forked child re-reads it.
pub(crate) fn current_pid() -> u32 {
    use std::sync::atomic::Ordering::Relaxed;
    static PID: AtomicU32 = AtomicU32::new(0);
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    extern "C" fn forget_pid_in_child() {
        PID.store(0, Relaxed);
    }
    let pid = PID.load(Relaxed);
    if pid != 0 {
        return pid;
    }
    AT_FORK.call_once(|| {
        // SAFETY: registers a handler that only does an atomic store, which is
        // async-signal-safe as the child side of fork requires.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) };
    });
    let pid = std::process::id();
    PID.store(pid, Relaxed);
    pid
}
