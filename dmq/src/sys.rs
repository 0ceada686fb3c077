//! Every `unsafe` of the crate: the shared mapping of the map file and atomic access to its
//! fields.
//!
//! Processes share the map through `MAP_SHARED`; its integer fields are read and written as
//! atomics (plain aligned stores, as the original's C code does, so both interoperate).

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use nix::sys::mman::{MapFlags, MsFlags, ProtFlags, mmap, msync, munmap};

use crate::format::MAP_LEN;

/// The map file mapped shared, read-write, `MAP_LEN` bytes long.
#[derive(Debug)]
pub(crate) struct MapView {
    base: NonNull<u8>,
}

// SAFETY: the mapping is plain shared memory owned by this value; every access to it goes
// through atomics, so concurrent use from several threads is as safe as from processes.
unsafe impl Send for MapView {}
// SAFETY: as for `Send`: all reads and writes are atomic.
unsafe impl Sync for MapView {}

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl MapView {
    /// Maps the first `MAP_LEN` bytes of `file`, which the caller has checked is exactly
    /// `MAP_LEN` bytes long and open for reading and writing.
    pub(crate) fn map(file: &File) -> io::Result<MapView> {
        let len = NonZeroUsize::new(MAP_LEN).ok_or_else(|| io::Error::other("empty map"))?;
        // SAFETY: a fresh shared mapping at an address the kernel picks, so it overlaps no
        // existing memory; the descriptor is valid for the call.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                file,
                0,
            )
        }
        .map_err(errno)?;
        Ok(MapView { base: ptr.cast() })
    }

    /// The 4-byte field at `off` (a constant of `format`, 4-aligned and inside the map).
    fn i32_cell(&self, off: usize) -> &AtomicI32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= MAP_LEN,
            "map offset {off}"
        );
        let ptr = self.base.as_ptr().wrapping_add(off).cast();
        // SAFETY: `off` is inside the mapping and 4-aligned (the mapping is page-aligned);
        // the memory lives as long as `self`, and every access to it is atomic.
        unsafe { AtomicI32::from_ptr(ptr) }
    }

    /// The 8-byte field at `off` (a constant of `format`, 8-aligned and inside the map).
    fn u64_cell(&self, off: usize) -> &AtomicU64 {
        assert!(
            off.is_multiple_of(8) && off + 8 <= MAP_LEN,
            "map offset {off}"
        );
        let ptr = self.base.as_ptr().wrapping_add(off).cast();
        // SAFETY: `off` is inside the mapping and 8-aligned (the mapping is page-aligned);
        // the memory lives as long as `self`, and every access to it is atomic.
        unsafe { AtomicU64::from_ptr(ptr) }
    }

    /// Loads the little-endian i32 at `off`.
    pub(crate) fn load_i32(&self, off: usize) -> i32 {
        i32::from_le(self.i32_cell(off).load(Ordering::Acquire))
    }

    /// Stores the little-endian i32 at `off`.
    pub(crate) fn store_i32(&self, off: usize, value: i32) {
        self.i32_cell(off).store(value.to_le(), Ordering::Release);
    }

    /// Loads the little-endian u64 at `off`.
    pub(crate) fn load_u64(&self, off: usize) -> u64 {
        u64::from_le(self.u64_cell(off).load(Ordering::Acquire))
    }

    /// Stores the little-endian u64 at `off`.
    pub(crate) fn store_u64(&self, off: usize, value: u64) {
        self.u64_cell(off).store(value.to_le(), Ordering::Release);
    }

    /// Writes the mapping back to the file and waits for it (`msync(MS_SYNC)`).
    pub(crate) fn sync(&self) -> io::Result<()> {
        fault_injection::check()?;
        // SAFETY: the range is exactly our own live mapping; msync does not touch its bytes.
        unsafe { msync(self.base.cast(), MAP_LEN, MsFlags::MS_SYNC) }.map_err(errno)
    }
}

impl Drop for MapView {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, and nothing borrows it any more (`&mut self`).
        let _ = unsafe { munmap(self.base.cast(), MAP_LEN) };
    }
}

/// `fdatasync` of a data file: with [`MapView::sync`] and [`sync_file_all`], the crate's
/// only ways to stable storage.
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

    /// Makes the next `count` syncs (fdatasync, fsync, msync) started on this thread fail
    /// with `EIO`.
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
            return Err(std::io::Error::from_raw_os_error(
                nix::errno::Errno::EIO as i32,
            ));
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
