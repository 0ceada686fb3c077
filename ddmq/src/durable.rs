//! The one audited durability helper: write a new file, sync it, rename it into place, sync
//! the directory. A failed sync poisons the broker; it is never retried (a retried fsync can
//! report success for data that never reached the disk).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result, io};

/// Whether publishes, claims, acks and settings writes are synced before they return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// As the original: no sync (survives a crash of the process, not of the machine).
    #[default]
    None,
    /// `fdatasync` of each new file before its rename and `fsync` of each directory changed,
    /// before the call returns.
    Fsync,
}

/// Sync state shared by a broker's handles.
#[derive(Debug, Default)]
pub(crate) struct Syncer {
    pub(crate) durability: Durability,
    poisoned: AtomicBool,
}

impl Syncer {
    pub(crate) fn new(durability: Durability) -> Self {
        Syncer {
            durability,
            poisoned: AtomicBool::new(false),
        }
    }

    fn check(&self, path: &Path) -> Result<()> {
        if self.poisoned.load(Ordering::Relaxed) {
            return Err(Error::Io {
                op: "sync (an earlier sync failed; the broker is poisoned)",
                path: path.to_owned(),
                source: std::io::Error::other("poisoned"),
            });
        }
        Ok(())
    }

    fn fail(&self, op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        self.poisoned.store(true, Ordering::Relaxed);
        io(op, path)
    }

    /// `fsync` of a directory, when durable.
    pub(crate) fn sync_dir(&self, dir: &Path) -> Result<()> {
        if self.durability == Durability::None {
            return Ok(());
        }
        self.check(dir)?;
        let d = File::open(dir).map_err(io("open directory", dir))?;
        d.sync_all()
            .map_err(|e| self.fail("fsync directory", dir)(e))
    }

    /// Writes `bytes` to the new file `tmp` (which must not exist), syncs it when durable, and
    /// renames it to `target` (the directory sync is the caller's, so that it can be shared).
    /// The temporary file is removed on any error.
    pub(crate) fn write_new(&self, tmp: &Path, bytes: &[u8]) -> Result<()> {
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(tmp)
                .map_err(io("create", tmp))?;
            f.write_all(bytes).map_err(io("write", tmp))?;
            if self.durability == Durability::Fsync {
                self.check(tmp)?;
                f.sync_data().map_err(|e| self.fail("fdatasync", tmp)(e))?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        result
    }
}
