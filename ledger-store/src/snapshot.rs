//! Snapshots: opaque payloads written atomically beside the log, each tagged with the
//! seq it covers and verified with BLAKE3 before use. The engine stores its state in
//! them so that opening replays only the log after the newest good snapshot.
//!
//! File `snapshot-NNNNNNNNNNNNNNNNNNNN.snap` (20 digits: the seq covered):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `LEDGSNAP` |
//! | 8 | 4 | format version `u32` = 1 |
//! | 12 | 4 | header bytes `u32` = 64 |
//! | 16 | 8 | seq covered `u64` |
//! | 24 | 8 | payload length `u64` |
//! | 32 | 32 | BLAKE3 of bytes 0..32 followed by the payload |
//! | 64 | len | payload (16-byte aligned in the mapping) |

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::IoFailure;
use crate::log::segment::sync_dir;
use crate::storage::{Storage, StorageOp};

const MAGIC: [u8; 8] = *b"LEDGSNAP";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 64;
const HEADER_BYTES_U32: u32 = 64;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
/// Snapshots kept; older ones are removed after a new one is written. Two, so that a
/// damaged newest snapshot still leaves one to fall back on.
pub const SNAPSHOTS_KEPT: usize = 2;

/// Why a snapshot could not be written, listed or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// An operating-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The snapshot file fails verification; it must not be used.
    #[error("{path}: damaged snapshot: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

impl From<IoFailure> for SnapshotError {
    fn from(IoFailure { op, path, source }: IoFailure) -> Self {
        SnapshotError::Io { op, path, source }
    }
}

/// A snapshot file found in the directory (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The seq it covers: the log's records after it are replayed on top.
    pub seq: u64,
    /// The file.
    pub path: PathBuf,
}

/// A verified snapshot, its payload mapped read-only.
#[derive(Debug)]
pub struct Snapshot {
    /// The seq it covers.
    pub seq: u64,
    map: Mmap,
}

impl Snapshot {
    /// The payload, 16-byte aligned.
    pub fn payload(&self) -> &[u8] {
        &self.map[HEADER_BYTES..]
    }
}

fn file_name(seq: u64) -> String {
    format!("{PREFIX}{seq:020}{SUFFIX}")
}

fn hash(header32: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(header32);
    h.update(payload);
    *h.finalize().as_bytes()
}

/// Writes a snapshot covering `seq` atomically (temp file, sync, rename, directory
/// sync), then removes all but the newest [`SNAPSHOTS_KEPT`] (best effort: the write
/// has succeeded once the new one is named and its directory synced).
pub(crate) fn write(storage: &Storage, dir: &Path, seq: u64, payload: &[u8]) -> Result<SnapshotInfo, SnapshotError> {
    let path = dir.join(file_name(seq));
    let tmp = dir.join(format!("{}.tmp", file_name(seq)));
    let mut header = [0u8; HEADER_BYTES];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&HEADER_BYTES_U32.to_le_bytes());
    header[16..24].copy_from_slice(&seq.to_le_bytes());
    header[24..32].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let sum = hash(&header[0..32], payload);
    header[32..64].copy_from_slice(&sum);
    let mut file = storage
        .run(StorageOp::CreateFile, &tmp, 0..0, || {
            OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)
        })
        .map_err(IoFailure::at("create snapshot", &tmp))?;
    let total = (HEADER_BYTES + payload.len()) as u64;
    let written = storage
        .run(StorageOp::WriteFile, &tmp, 0..total, || file.write_all(&header).and_then(|()| file.write_all(payload)))
        .map_err(IoFailure::at("write snapshot", &tmp))
        .and_then(|()| {
            storage
                .run(StorageOp::SyncFile, &tmp, 0..u64::MAX, || file.sync_all())
                .map_err(IoFailure::at("sync snapshot", &tmp))
        })
        .and_then(|()| {
            storage
                .run(StorageOp::Rename, &path, 0..0, || fs::rename(&tmp, &path))
                .map_err(IoFailure::at("rename snapshot", &path))
        });
    if let Err(failure) = written {
        // Give the space back; a leftover would also be removed by the next listing.
        drop(file);
        let _ = storage.run(StorageOp::RemoveFile, &tmp, 0..0, || fs::remove_file(&tmp));
        return Err(failure.into());
    }
    sync_dir(storage, dir)?;
    // The new snapshot is in place: from here nothing fails the write. An old one that
    // cannot be listed or removed now is removed by a later write (readers take the
    // newest that verifies, so an extra old one changes nothing).
    if let Ok(all) = list(storage, dir) {
        for old in all.into_iter().skip(SNAPSHOTS_KEPT) {
            let _ = storage.run(StorageOp::RemoveFile, &old.path, 0..0, || fs::remove_file(&old.path));
        }
    }
    Ok(SnapshotInfo { seq, path })
}

/// The snapshot files in `dir`, newest first. Leftover temp files are removed.
pub(crate) fn list(storage: &Storage, dir: &Path) -> Result<Vec<SnapshotInfo>, IoFailure> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(IoFailure::at("list directory", dir))? {
        let entry = entry.map_err(IoFailure::at("list directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(PREFIX) && name.ends_with(".snap.tmp") {
            let path = entry.path();
            storage
                .run(StorageOp::RemoveFile, &path, 0..0, || fs::remove_file(&path))
                .map_err(IoFailure::at("remove unfinished snapshot", &path))?;
            continue;
        }
        if let Some(seq) = parse_name(name) {
            out.push(SnapshotInfo { seq, path: entry.path() });
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.seq));
    Ok(out)
}

/// The seq a snapshot file's name says it covers (`snapshot-{seq:020}.snap`).
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) { digits.parse().ok() } else { None }
}

/// The snapshot files of `dir`, newest first, changing nothing: for tools that read a
/// directory another process owns (an unfinished `.snap.tmp` may be its writer's).
pub(crate) fn list_read_only(dir: &Path) -> Result<Vec<SnapshotInfo>, IoFailure> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(IoFailure::at("list directory", dir))? {
        let entry = entry.map_err(IoFailure::at("list directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_name(name) {
            out.push(SnapshotInfo { seq, path: entry.path() });
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.seq));
    Ok(out)
}

/// Removes snapshots covering seqs beyond `last_seq`: after a crash cut the log back
/// (possible with `Durability::None`), such a snapshot describes records that no
/// longer exist, and new records will take their seqs. Returns how many were removed.
pub(crate) fn remove_beyond(storage: &Storage, dir: &Path, last_seq: u64) -> Result<usize, IoFailure> {
    let stale: Vec<SnapshotInfo> = list(storage, dir)?.into_iter().filter(|s| s.seq > last_seq).collect();
    for info in &stale {
        storage
            .run(StorageOp::RemoveFile, &info.path, 0..0, || fs::remove_file(&info.path))
            .map_err(IoFailure::at("remove stale snapshot", &info.path))?;
    }
    if !stale.is_empty() {
        sync_dir(storage, dir)?;
    }
    Ok(stale.len())
}

/// Maps and verifies a snapshot.
pub(crate) fn read(info: &SnapshotInfo) -> Result<Snapshot, SnapshotError> {
    let damaged = |reason| SnapshotError::Damaged { path: info.path.clone(), reason };
    let file = File::open(&info.path).map_err(IoFailure::at("open snapshot", &info.path))?;
    // SAFETY: the file is a snapshot this log wrote and renamed into place; it is never
    // written again, and the directory lock keeps other logs out. A file changed behind
    // the log's back would be read as bytes (then fail verification), and truncation
    // while mapped is outside what the log defends against (as for every mmap store).
    let map = unsafe { Mmap::map(&file) }.map_err(IoFailure::at("map snapshot", &info.path))?;
    let Some(header) = map.get(..HEADER_BYTES) else { return Err(damaged("shorter than its header")) };
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(w)
    };
    if header[0..8] != MAGIC {
        return Err(damaged("no snapshot magic"));
    }
    if u32::from_le_bytes([header[8], header[9], header[10], header[11]]) != VERSION {
        return Err(damaged("unsupported snapshot version"));
    }
    if word(16) != info.seq {
        return Err(damaged("seq differs from the file name"));
    }
    if word(24) != (map.len() - HEADER_BYTES) as u64 {
        return Err(damaged("length differs from the header"));
    }
    if hash(&header[0..32], &map[HEADER_BYTES..]) != header[32..64] {
        return Err(damaged("checksum mismatch"));
    }
    Ok(Snapshot { seq: info.seq, map })
}
