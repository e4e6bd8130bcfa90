//! Segment files: naming, the 64-byte segment header, crash-safe creation, and the
//! shared memory mapping that the writer appends into and readers read from.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{HeaderFault, IoFailure, OpenError};
use crate::storage::{Storage, StorageOp};
use crate::sync::{AtomicUsize, Ordering};

/// Bytes of the segment header; the first frame starts here.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LEDGRLOG";
/// On-disk format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;

const HEADER_BYTES_U32: u32 = 64;
const _: () = assert!(HEADER_BYTES_U32 as usize == SEGMENT_HEADER_BYTES);
const SEGMENT_SUFFIX: &str = ".seg";
const TMP_SUFFIX: &str = ".seg.tmp";
const ZERO_CHUNK_BYTES: usize = 1 << 20;

const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(crate::log::frame::FRAME_ALIGN_BYTES));

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number of the first frame this segment holds (or will hold).
    pub first_seq: u64,
    /// Length of the file in bytes, fixed at creation.
    pub segment_bytes: u64,
}

impl SegmentHeader {
    /// Encodes the header: magic, version, header size, first seq, size, reserved zeroes,
    /// and the first 8 bytes of BLAKE3 over the preceding 56 bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&HEADER_BYTES_U32.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.segment_bytes.to_le_bytes());
        let sum = blake3::hash(&out[0..56]);
        out[56..64].copy_from_slice(&sum.as_bytes()[..8]);
        out
    }

    /// Decodes and verifies a segment header from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderFault> {
        let Some(h) = bytes.get(..SEGMENT_HEADER_BYTES) else {
            return Err(HeaderFault::TooShort);
        };
        if h[0..8] != SEGMENT_MAGIC {
            return Err(HeaderFault::ForeignMagic);
        }
        let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        if version != FORMAT_VERSION {
            return Err(HeaderFault::UnsupportedVersion(version));
        }
        if blake3::hash(&h[0..56]).as_bytes()[..8] != h[56..64] {
            return Err(HeaderFault::ChecksumMismatch);
        }
        let header_len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as usize;
        let mut word = [0u8; 8];
        word.copy_from_slice(&h[16..24]);
        let first_seq = u64::from_le_bytes(word);
        word.copy_from_slice(&h[24..32]);
        let segment_bytes = u64::from_le_bytes(word);
        if header_len != SEGMENT_HEADER_BYTES
            || first_seq == 0
            || first_seq > crate::log::frame::SEQ_MAX
            || h[32..56].iter().any(|&b| b != 0)
        {
            return Err(HeaderFault::BadField);
        }
        Ok(SegmentHeader { first_seq, segment_bytes })
    }
}

/// The file name of the segment whose first frame is `first_seq`: 20 decimal digits so
/// that names sort in sequence order.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back into its first sequence number.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// True for the temporary file of a segment creation that did not finish.
pub(crate) fn is_unfinished_segment(name: &str) -> bool {
    name.ends_with(TMP_SUFFIX)
}

/// A zero-filled, synced file of a segment's size under a temporary name, waiting to
/// become the next segment. Until then it is not part of the log (open removes it).
#[derive(Debug)]
pub(crate) struct Spare {
    file: File,
    path: PathBuf,
    segment_bytes: usize,
}

impl Spare {
    /// Creates and zero-fills a spare named `{tag}.seg.tmp`. This is the slow part of
    /// a roll-over (it writes the whole file), so the writer runs it in the background.
    ///
    /// The file is filled with real zeroes rather than `fallocate`d: extents that are
    /// allocated but unwritten would turn every later data sync into a metadata sync.
    pub(crate) fn prepare(storage: &Storage, dir: &Path, tag: &str, segment_bytes: usize) -> Result<Spare, IoFailure> {
        let path = dir.join(format!("{tag}{TMP_SUFFIX}"));
        let io = IoFailure::at;
        let mut file = storage
            .run(StorageOp::CreateFile, &path, 0..0, || {
                OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)
            })
            .map_err(io("create segment", &path))?;
        let filled = zero_fill(storage, &mut file, &path, 0, segment_bytes as u64)
            .map_err(io("preallocate segment", &path))
            .and_then(|()| {
                storage
                    .run(StorageOp::SyncFile, &path, 0..u64::MAX, || file.sync_all())
                    .map_err(io("sync new segment", &path))
            });
        if let Err(failure) = filled {
            // Give the space back (a full disk is the likely cause); the file was never
            // part of the log, and open would remove it anyway.
            drop(file);
            let _ = storage.run(StorageOp::RemoveFile, &path, 0..0, || fs::remove_file(&path));
            return Err(failure);
        }
        Ok(Spare { file, path, segment_bytes })
    }

    pub(crate) fn segment_bytes(&self) -> usize {
        self.segment_bytes
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// One mapped segment file, shared by the writer and any number of readers.
///
/// The file is mapped read-only and written with positional writes ([`Segment::write_at`]).
/// Bytes below `published_end` are immutable from the moment they are published; the
/// single writer only writes at or above it. That split is what lets readers take
/// `&[u8]` views of the mapping without locks.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) first_seq: u64,
    pub(crate) path: PathBuf,
    map: MmapRaw,
    /// End of the last committed frame. Written only by the writer (Release, after the
    /// frame bytes), read by readers (Acquire, before reading the bytes below it).
    published_end: AtomicUsize,
    /// Open for writing: frames go in with positional writes.
    file: File,
}

impl Segment {
    /// Creates a new zero-filled segment of `segment_bytes` and makes its existence
    /// durable: it is written under a temporary name, synced, renamed, and the
    /// directory is synced, so a named segment always has a whole header.
    ///
    /// The file is filled with real zeroes rather than `fallocate`d: extents that are
    /// allocated but unwritten would turn every later data sync into a metadata sync.
    pub(crate) fn create(
        storage: &Storage,
        dir: &Path,
        first_seq: u64,
        segment_bytes: usize,
    ) -> Result<Segment, IoFailure> {
        let spare = Spare::prepare(storage, dir, &format!("{first_seq:020}"), segment_bytes)?;
        Self::from_spare(storage, dir, spare, first_seq).map_err(|f| f.failure)
    }

    /// Turns a prepared spare file into the segment starting at `first_seq`: writes
    /// the header, syncs, renames it into place and syncs the directory. This is all a
    /// roll-over costs when a spare was prepared in the background.
    ///
    /// A failure before the rename removes the spare and leaves the log as it was; a
    /// failed directory sync after it is reported as such (see [`RollFailure`]).
    pub(crate) fn from_spare(
        storage: &Storage,
        dir: &Path,
        spare: Spare,
        first_seq: u64,
    ) -> Result<Segment, RollFailure> {
        let Spare { file, path: tmp, segment_bytes } = spare;
        let path = dir.join(segment_file_name(first_seq));
        let header = SegmentHeader { first_seq, segment_bytes: segment_bytes as u64 }.encode();
        let header_range = 0..SEGMENT_HEADER_BYTES as u64;
        let named = storage
            .run(StorageOp::WriteFile, &tmp, header_range, || file.write_all_at(&header, 0))
            .map_err(IoFailure::at("write segment header", &tmp))
            .and_then(|()| {
                storage
                    .run(StorageOp::SyncFile, &tmp, 0..u64::MAX, || file.sync_data())
                    .map_err(IoFailure::at("sync new segment", &tmp))
            })
            .and_then(|()| {
                storage
                    .run(StorageOp::Rename, &path, 0..0, || fs::rename(&tmp, &path))
                    .map_err(IoFailure::at("rename new segment", &path))
            });
        if let Err(failure) = named {
            drop(file);
            let _ = storage.run(StorageOp::RemoveFile, &tmp, 0..0, || fs::remove_file(&tmp));
            return Err(RollFailure { failure, dir_sync_failed: false });
        }
        sync_dir(storage, dir).map_err(|failure| RollFailure { failure, dir_sync_failed: true })?;
        Self::map(file, path, first_seq, SEGMENT_HEADER_BYTES)
            .map_err(|failure| RollFailure { failure, dir_sync_failed: false })
    }

    /// Opens and maps an existing segment after checking its header against its name.
    ///
    /// The last segment may be shorter than its header says (a file cut short by a
    /// copy or a filesystem repair): it is zero-extended back to its size, and recovery
    /// then treats the missing bytes as a torn tail. Any other size mismatch is refused.
    pub(crate) fn open(storage: &Storage, path: PathBuf, first_seq: u64, is_last: bool) -> Result<Segment, OpenError> {
        let io = IoFailure::at;
        let mut file = OpenOptions::new().read(true).write(true).open(&path).map_err(io("open segment", &path))?;
        let len = file.metadata().map_err(io("stat segment", &path))?.len();
        let mut head = [0u8; SEGMENT_HEADER_BYTES];
        let got = read_prefix(&mut file, &mut head).map_err(io("read segment header", &path))?;
        let bad = |fault| OpenError::BadSegmentHeader { path: path.clone(), fault };
        let header = SegmentHeader::decode(&head[..got]).map_err(bad)?;
        let size_ok = usize::try_from(header.segment_bytes)
            .is_ok_and(|n| (crate::options::SEGMENT_BYTES_MIN..=crate::options::SEGMENT_BYTES_MAX).contains(&n));
        if header.first_seq != first_seq || !size_ok || len > header.segment_bytes {
            return Err(bad(HeaderFault::NameOrSizeMismatch));
        }
        if len < header.segment_bytes {
            if !is_last {
                return Err(bad(HeaderFault::NameOrSizeMismatch));
            }
            zero_fill(storage, &mut file, &path, len, header.segment_bytes)
                .map_err(io("extend short segment", &path))?;
            storage
                .run(StorageOp::SyncFile, &path, 0..u64::MAX, || file.sync_all())
                .map_err(io("sync extended segment", &path))?;
        }
        Ok(Self::map(file, path, first_seq, 0)?)
    }

    fn map(file: File, path: PathBuf, first_seq: u64, published_end: usize) -> Result<Segment, IoFailure> {
        // Read-only: the writer writes with `write_at` (see `stage.rs` for why).
        let map = MmapOptions::new().map_raw_read_only(&file).map_err(IoFailure::at("map segment", &path))?;
        Ok(Segment { first_seq, path, map, published_end: AtomicUsize::new(published_end), file })
    }

    /// Size of the segment file in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.map.len()
    }

    /// Offset just past the last published frame.
    pub(crate) fn published_end(&self) -> usize {
        // Acquire: pairs with the Release in `publish`, so the frame bytes below the
        // returned offset are visible to this thread before it reads them.
        self.published_end.load(Ordering::Acquire)
    }

    /// The published bytes: header and committed frames. They never change again.
    pub(crate) fn published(&self) -> &[u8] {
        let end = self.published_end();
        // SAFETY: the mapping is `capacity()` bytes long and lives as long as `self`;
        // `end <= capacity()` is kept by `publish`. Bytes below the published end are
        // never written again (`write_at` refuses them, and the mapping is read-only),
        // so nothing changes the bytes of this shared view while it lives.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), end) }
    }

    /// The file's bytes below `end`, published or not, for the writer's own reads of
    /// frames it made durable (a replicated log's entries above the published ones).
    ///
    /// # Safety
    /// Nothing writes `[0, end)` while the returned slice lives: the caller holds the
    /// `Log` borrowed, and every write into a segment takes the `Log` mutably.
    pub(crate) unsafe fn written(&self, end: usize) -> &[u8] {
        assert!(end <= self.map.len(), "a read past the end of a segment");
        // SAFETY: within the mapping (asserted), which lives as long as `self`; the
        // caller guarantees no write to these bytes while the borrow lives.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), end) }
    }

    /// The whole file, for recovery, which runs before the segment is shared.
    pub(crate) fn bytes_unpublished_for_recovery(&self) -> &[u8] {
        // SAFETY: recovery runs on a segment no reader or writer has yet (the `Segment`
        // is not yet in the shared list), so nothing writes the mapping while this
        // borrow of `self` lives; the length is the mapping's own.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }

    /// Writes `bytes` into the file at `offset` (a positional write, not through the
    /// mapping, which is read-only: see `stage.rs`). The bytes become visible through
    /// the mapping, to the writer's own later reads; readers see them once published.
    ///
    /// # Panics
    /// When the range is not inside the file, or starts below the published end:
    /// published bytes never change.
    pub(crate) fn write_at(&self, storage: &Storage, offset: usize, bytes: &[u8]) -> std::io::Result<()> {
        assert!(offset >= self.published_end.load(Ordering::Relaxed), "a write over published frames");
        assert!(offset + bytes.len() <= self.capacity(), "write past the end of a segment");
        let range = offset as u64..(offset + bytes.len()) as u64;
        storage.run(StorageOp::WriteFrames, &self.path, range, || self.file.write_all_at(bytes, offset as u64))
    }

    /// Makes the frames up to `end` visible to readers.
    pub(crate) fn publish(&self, end: usize) {
        assert!(end <= self.capacity());
        // Release: everything the writer stored below `end` happens-before any reader's
        // Acquire load that observes the new end.
        self.published_end.store(end, Ordering::Release);
    }

    /// Writes back `[from, to)` to stable storage: a data sync of the file (`fdatasync`;
    /// the frames were written with [`Segment::write_at`], so only written ranges are
    /// dirty, and the file's size and blocks never change after its zero fill).
    pub(crate) fn sync_range(&self, storage: &Storage, from: usize, to: usize) -> std::io::Result<()> {
        if to <= from {
            return Ok(());
        }
        storage.run(StorageOp::SyncRange, &self.path, from as u64..to as u64, || self.file.sync_data())
    }
}

/// Why a roll-over's new segment could not be put in place.
#[derive(Debug)]
pub(crate) struct RollFailure {
    pub(crate) failure: IoFailure,
    /// The segment was renamed into place but the directory sync failed: whether its
    /// name is durable is unknown, and a failed sync is never retried.
    pub(crate) dir_sync_failed: bool,
}

/// Writes zeroes over `[from, to)` of `file` with ordinary writes (real zeroes, not
/// holes), a chunk per call.
fn zero_fill(storage: &Storage, file: &mut File, path: &Path, from: u64, to: u64) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(from))?;
    let zeroes = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = from;
    while at < to {
        let n = usize::try_from(to - at).map_or(ZERO_CHUNK_BYTES, |left| left.min(ZERO_CHUNK_BYTES));
        storage.run(StorageOp::WriteFile, path, at..at + n as u64, || file.write_all(&zeroes[..n]))?;
        at += n as u64;
    }
    Ok(())
}

/// Reads as much of `buf` as the file holds from its start.
fn read_prefix(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Makes a directory's entries (created, renamed or removed files) durable.
pub(crate) fn sync_dir(storage: &Storage, dir: &Path) -> Result<(), IoFailure> {
    storage
        .run(StorageOp::SyncDir, dir, 0..0, || File::open(dir).and_then(|d| d.sync_all()))
        .map_err(IoFailure::at("sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_file_name("00000000000000000042.seg"), Some(42));
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn header_round_trip_and_faults() {
        let h = SegmentHeader { first_seq: 77, segment_bytes: 1 << 20 };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        let mut foreign = bytes;
        foreign[0] = b'X';
        assert_eq!(SegmentHeader::decode(&foreign), Err(HeaderFault::ForeignMagic));
        let mut flipped = bytes;
        flipped[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&flipped), Err(HeaderFault::ChecksumMismatch));
        assert_eq!(SegmentHeader::decode(&bytes[..10]), Err(HeaderFault::TooShort));
    }
}
