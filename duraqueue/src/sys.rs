//! Every `unsafe` of the crate: the mirrored mapping, its syncs, the page size, OFD locks.
//!
//! The mirror maps the same file range twice, back to back, so that a record that runs
//! past the end of the ring is still one contiguous slice. The original placed the second
//! mapping with `MAP_FIXED` at an address it did not own, overwriting whatever the loader had
//! put there; here the whole range is reserved first (`PROT_NONE`, anonymous) and both file
//! mappings replace halves of that reservation.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::Arc;

use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::mman::{MapFlags, MsFlags, ProtFlags, mmap, mmap_anonymous, msync, munmap};

/// A file range mapped twice, back to back, read-write and shared. The one handle that
/// reads and writes the bytes; [`Syncer`]s may sync it from other threads.
#[derive(Debug)]
pub(crate) struct Mirror {
    mapping: Arc<Mapping>,
}

/// The address range itself; unmapped when the last owner (mirror or syncer) goes.
#[derive(Debug)]
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: `Mapping` is only an owned address range; the only access through it from another
// thread is `msync` (a kernel call that does not touch our memory) and the final `munmap`.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: shared use is limited to `msync`.
unsafe impl Sync for Mapping {}

/// Syncs pages of a [`Mirror`] from any thread, without access to its bytes.
#[derive(Debug, Clone)]
pub(crate) struct Syncer {
    mapping: Arc<Mapping>,
}

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Mirror {
    /// Maps `file[offset .. offset + len]` twice. `len` and `offset` must be multiples of the
    /// page size (checked by the caller; the kernel rejects them otherwise).
    pub(crate) fn map(file: &File, offset: u64, len: usize) -> io::Result<Mirror> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "ring size out of range");
        let half = NonZeroUsize::new(len).ok_or_else(invalid)?;
        let whole = len
            .checked_mul(2)
            .and_then(NonZeroUsize::new)
            .ok_or_else(invalid)?;
        let offset = i64::try_from(offset).map_err(|_| invalid())?;
        // SAFETY: a fresh anonymous reservation at an address the kernel picks: it cannot
        // overlap any existing mapping. PROT_NONE: nothing can touch it until it is replaced.
        let reserved = unsafe {
            mmap_anonymous(
                None,
                whole,
                ProtFlags::PROT_NONE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .map_err(errno)?;
        let base = reserved.cast::<u8>();
        let unmap_reservation = || {
            // SAFETY: `reserved` is the start of a mapping of `whole` bytes that we own and that
            // nothing references yet.
            let _ = unsafe { munmap(reserved, whole.get()) };
        };
        for half_index in 0..2 {
            let at = base.as_ptr() as usize + half_index * len;
            // SAFETY: `at .. at + len` lies inside our own reservation, so MAP_FIXED replaces
            // only memory we own; the file descriptor is valid for the duration of the call
            // and the mapping stays valid after it is closed.
            let mapped = unsafe {
                mmap(
                    NonZeroUsize::new(at),
                    half,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    MapFlags::MAP_SHARED | MapFlags::MAP_FIXED,
                    file.as_fd(),
                    offset,
                )
            };
            match mapped {
                Ok(p) if p.as_ptr() as usize == at => {}
                Ok(_) => {
                    unmap_reservation();
                    return Err(io::Error::other("the kernel moved a MAP_FIXED mapping"));
                }
                Err(e) => {
                    unmap_reservation();
                    return Err(errno(e));
                }
            }
        }
        Ok(Mirror {
            mapping: Arc::new(Mapping {
                base,
                len: whole.get(),
            }),
        })
    }

    /// A handle that can sync this mirror's pages from another thread.
    pub(crate) fn syncer(&self) -> Syncer {
        Syncer {
            mapping: Arc::clone(&self.mapping),
        }
    }

    /// The whole mirror: `2 × ring` bytes where `[ring..2 ring]` shows `[0..ring]` again.
    ///
    /// Another process may write the file while we read: the bytes are untrusted, and every
    /// decoder validates them.
    pub(crate) fn bytes(&self) -> &[u8] {
        let Mapping { base, len } = *self.mapping;
        // SAFETY: `base .. base + len` is mapped readable for as long as `self` lives (it holds
        // the mapping), and `&self` rules out a concurrent `bytes_mut` in this process.
        unsafe { std::slice::from_raw_parts(base.as_ptr(), len) }
    }

    /// The whole mirror, writable. Callers write each record through one contiguous range
    /// and read it back through a later borrow, so the aliasing of the two halves is never
    /// observed within one borrow.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        let Mapping { base, len } = *self.mapping;
        // SAFETY: as `bytes`, mapped writable; `&mut self` makes this the only borrow, and
        // `Mirror` is not `Clone`, so no other handle reads or writes these bytes.
        unsafe { std::slice::from_raw_parts_mut(base.as_ptr(), len) }
    }

    /// `msync(MS_SYNC)` of the pages that hold `range` (a range of the mirror).
    pub(crate) fn sync(&self, range: std::ops::Range<usize>) -> io::Result<()> {
        self.mapping.sync(range)
    }
}

impl Syncer {
    /// As [`Mirror::sync`].
    pub(crate) fn sync(&self, range: std::ops::Range<usize>) -> io::Result<()> {
        self.mapping.sync(range)
    }
}

/// Tells the kernel not to read ahead on `file` (`POSIX_FADV_RANDOM`).
pub(crate) fn advise_random(file: &File) -> io::Result<()> {
    nix::fcntl::posix_fadvise(
        file.as_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_RANDOM,
    )
    .map_err(errno)
}

/// `fdatasync` of a file: with [`Mapping::sync`], the crate's only ways to stable storage.
pub(crate) fn sync_file_data(file: &File) -> io::Result<()> {
    fault_injection::check()?;
    file.sync_data()
}

/// `fsync` of a file or directory, data and metadata (creation).
pub(crate) fn sync_file_all(file: &File) -> io::Result<()> {
    fault_injection::check()?;
    file.sync_all()
}

/// Failing syncs on purpose, to test that a failed sync poisons the handle (feature
/// `fault-injection`).
#[cfg(feature = "fault-injection")]
pub mod fault_injection {
    thread_local! {
        static FAIL_NEXT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Makes the next `count` syncs started on this thread fail with `EIO`.
    pub fn fail_next_syncs(count: usize) {
        FAIL_NEXT.with(|n| n.set(count));
    }

    pub(crate) fn check() -> std::io::Result<()> {
        let fail = FAIL_NEXT.with(|n| {
            let left = n.get();
            n.set(left.saturating_sub(1));
            left > 0
        });
        if fail {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

/// Without the `fault-injection` feature no sync is failed on purpose.
#[cfg(not(feature = "fault-injection"))]
pub(crate) mod fault_injection {
    #[inline]
    pub(crate) fn check() -> std::io::Result<()> {
        Ok(())
    }
}

impl Mapping {
    fn sync(&self, range: std::ops::Range<usize>) -> io::Result<()> {
        fault_injection::check()?;
        if range.is_empty() {
            return Ok(());
        }
        let page = page_size();
        let start = range.start / page * page;
        let end = range.end.min(self.len);
        if start >= end {
            return Ok(());
        }
        // `start` is page aligned and inside the mapping, so the pointer is non-null.
        let addr = NonNull::new(self.base.as_ptr().wrapping_add(start).cast())
            .ok_or_else(|| io::Error::other("null mapping address"))?;
        // SAFETY: `start .. end` lies inside our mapping, which stays mapped during the call;
        // msync reads no memory on our behalf, it only schedules and waits for writeback.
        unsafe { msync(addr, end - start, MsFlags::MS_SYNC) }.map_err(errno)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own the `len` bytes at `base` (reservation and both file mappings) and
        // no borrow of them can outlive `self`.
        let _ = unsafe { munmap(self.base.cast(), self.len) };
    }
}

/// The size of a memory page.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

/// Which advisory lock a handle takes: one writer and one reader per queue file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockRole {
    Writer,
    Reader,
}

/// Takes the open-file-description lock of `role` (a write lock on byte 0 for the writer,
/// byte 1 for the reader). `Ok(false)` when another handle holds it.
pub(crate) fn try_lock(file: &File, role: LockRole) -> io::Result<bool> {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = match role {
        LockRole::Writer => 0,
        LockRole::Reader => 1,
    };
    lock.l_len = 1;
    match fcntl(file.as_fd(), FcntlArg::F_OFD_SETLK(&lock)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(errno(e)),
    }
}
