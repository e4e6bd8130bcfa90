//! The storage seam: every file-system call of the log that can fail goes through
//! [`Storage`], so that a test can make any of them fail, and can learn which bytes
//! reached stable storage (to simulate a power loss afterwards).
//!
//! What can fail are the calls listed in [`StorageOp`]: creating, zero-filling, syncing
//! and renaming a segment file, the positional writes of frames into it, the data sync
//! of a committed range, directory syncs, snapshot file writes and the removal of
//! files. By default [`Storage`] is the operating system itself with no hook: one
//! predictable branch per call, and calls are made per group (one write and one data
//! sync per commit) or per file, never per frame.
//!
//! The idea follows redb's `StorageBackend` and its crash-consistency tests; the
//! seam is narrower: hooks around the real calls rather than a replacement of them,
//! because readers read the bytes through a mapping that no backend could intercept.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// A file-system call the log makes that can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum StorageOp {
    /// Creating a file: a new segment (under its `.seg.tmp` name) or a snapshot's
    /// temporary file.
    CreateFile,
    /// A `write` to a file: one chunk of a segment's zero fill, a segment header, the
    /// zero extension of a short segment, or a snapshot's bytes.
    WriteFile,
    /// A whole-file sync (`fsync`/`fdatasync`): a new segment, a snapshot.
    SyncFile,
    /// The data sync of a segment's committed range: a group commit, or the sync of what
    /// recovery kept or cut.
    SyncRange,
    /// A rename into place: a new segment or a snapshot.
    Rename,
    /// A directory sync, making created, renamed and removed names durable.
    SyncDir,
    /// Removing a file: retention, a torn segment, an unfinished or stale file.
    RemoveFile,
    /// A positional write of frames into a segment's zero-filled space: a group at
    /// commit (or part of one, when the writer's buffer fills or the segment rolls
    /// over), or the zeroes over a torn tail that recovery cuts.
    WriteFrames,
}

impl StorageOp {
    /// Every operation, for tests that try each one.
    pub const ALL: [StorageOp; 8] = [
        StorageOp::CreateFile,
        StorageOp::WriteFile,
        StorageOp::SyncFile,
        StorageOp::SyncRange,
        StorageOp::Rename,
        StorageOp::SyncDir,
        StorageOp::RemoveFile,
        StorageOp::WriteFrames,
    ];
}

/// Hooks around every [`StorageOp`], for tests: see [`crate::fault::SimulatedDisk`].
pub trait FaultInjector: Send + Sync + fmt::Debug {
    /// Called before `op` on `path`. An error is returned to the log's caller as if the
    /// operating system had failed, and the real call is not made.
    fn before(&self, op: StorageOp, path: &Path) -> io::Result<()>;

    /// Called after the real call succeeded. `range` is the byte range written or
    /// synced (`0..u64::MAX` for a whole-file sync, empty for operations on names).
    /// An error is returned to the caller instead of the success: the simulated
    /// machine died while the call ran, so its effect must not be relied upon.
    fn after(&self, op: StorageOp, path: &Path, range: Range<u64>) -> io::Result<()> {
        let _ = (op, path, range);
        Ok(())
    }
}

/// Where the log's file-system calls go: the operating system, optionally through a
/// [`FaultInjector`]. Cheap to clone; the default is the operating system alone.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    injector: Option<Arc<dyn FaultInjector>>,
}

impl Storage {
    /// The operating system, no hooks.
    pub fn os() -> Storage {
        Storage::default()
    }

    /// The operating system with `injector` called around every call.
    pub fn with_injector(injector: Arc<dyn FaultInjector>) -> Storage {
        Storage { injector: Some(injector) }
    }

    /// True when an injector is installed.
    pub fn is_injected(&self) -> bool {
        self.injector.is_some()
    }

    /// Runs `call` (operation `op` on `path`, touching `range`) through the injector.
    #[inline]
    pub(crate) fn run<T>(
        &self,
        op: StorageOp,
        path: &Path,
        range: Range<u64>,
        call: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        let Some(injector) = &self.injector else { return call() };
        injector.before(op, path)?;
        let out = call()?;
        injector.after(op, path, range)?;
        Ok(out)
    }
}
