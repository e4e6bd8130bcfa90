//! Read-only access to a log directory for tools (`ledger verify`, `inspect`, `dump`,
//! `backup`): no lock is taken and nothing on disk is changed, so it works beside the
//! process that owns the directory while that process keeps writing.
//!
//! The verdict on the frames is recovery's own ([`crate::format::scan`]) over the
//! segment files as they are at the moment of reading: a frame the owner is still
//! writing at the tail reads as a torn tail (where the log ends for this reader), and
//! damage that recovery would refuse is returned as the same [`Corruption`].
//!
//! Reading a file another process writes needs care about *when* each byte is read: a
//! scan that reads a frame's place while it is still zero, and only later the bytes
//! after it, may find frames the owner appended meanwhile and take the frame it saw
//! as zero for a lost one. So the segments the owner may still be writing (the last
//! [`SEGMENTS_COPIED`] of the listing) are copied into private memory first, from the
//! end of the newest backwards: whatever was read late lies earlier in the log, and
//! every frame seen proves only what was final before it was read. Older segments are
//! complete and are mapped. A caller that still gets damage while the directory is live
//! may read again and trust damage found at the same place twice.

use std::fs::File;
use std::path::{Path, PathBuf};

use std::os::unix::fs::FileExt;

use memmap2::{Mmap, MmapMut};

use crate::error::{Corruption, HeaderFault, IoFailure};
use crate::log::frame::{FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, FrameFault, FrameHeader};
use crate::log::recovery::{ScanOutcome, SegmentImage, scan};
use crate::log::segment::{SEGMENT_HEADER_BYTES, SegmentHeader, parse_segment_file_name};
use crate::snapshot::{self, Snapshot, SnapshotError, SnapshotInfo};

/// Why a log directory could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// An operating-system call failed (missing directory, permission denied, ...).
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no segment file: it is not a log directory.
    #[error("{path}: no segment files (not a ledger directory)")]
    NoSegments {
        /// The directory.
        path: PathBuf,
    },
    /// A segment file's header is damaged, foreign, or disagrees with the file's name
    /// or length: the log cannot be opened.
    #[error("{path}: bad segment at byte {offset}: {fault}")]
    BadSegment {
        /// The segment file.
        path: PathBuf,
        /// Where: 0 for the header, the file's length for a file cut short.
        offset: u64,
        /// What is wrong.
        fault: HeaderFault,
        /// More about it (sizes), or empty.
        detail: String,
    },
}

impl From<IoFailure> for InspectError {
    fn from(IoFailure { op, path, source }: IoFailure) -> Self {
        InspectError::Io { op, path, source }
    }
}

/// One segment file, mapped read-only, its header verified.
#[derive(Debug)]
pub struct SegmentFile {
    /// The file.
    pub path: PathBuf,
    /// The seq of its first frame (name and header agree).
    pub first_seq: u64,
    /// The size its header says; the file may be shorter only if it is the last.
    pub segment_bytes: u64,
    bytes: Bytes,
}

/// A segment's bytes: mapped, or copied (one the owner may still be writing).
#[derive(Debug)]
enum Bytes {
    Mapped(Mmap),
    Copied(MmapMut),
}

/// The newest segments of a listing that are copied rather than mapped: the owner
/// writes the last, and the frames of a group that rolled over may still be sealed
/// in the one before it.
pub const SEGMENTS_COPIED: usize = 2;
/// Bytes read at a time when a segment is copied, from its end backwards.
const COPY_CHUNK_BYTES: usize = 1 << 20;

impl SegmentFile {
    /// The file's bytes as mapped (the last segment's may be shorter than
    /// [`SegmentFile::segment_bytes`]: what is missing reads as zeroes to recovery).
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(m) => m,
            Bytes::Copied(m) => m,
        }
    }
}

/// The segment files of a log directory, mapped read-only.
#[derive(Debug)]
pub struct LogImage {
    dir: PathBuf,
    segments: Vec<SegmentFile>,
}

/// The segment files in `dir`, sorted by first seq, without opening them.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, InspectError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(IoFailure::at("list directory", dir))? {
        let entry = entry.map_err(IoFailure::at("list directory", dir))?;
        if let Some(first_seq) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            out.push((first_seq, entry.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl LogImage {
    /// Maps every segment of `dir` read-only and verifies each header, as opening the
    /// log does (but without the lock, and without extending a short last segment).
    pub fn open(dir: &Path) -> Result<LogImage, InspectError> {
        let names = list_segments(dir)?;
        if names.is_empty() {
            return Err(InspectError::NoSegments { path: dir.to_path_buf() });
        }
        let last = names.len() - 1;
        let copied_from = names.len().saturating_sub(SEGMENTS_COPIED);
        // Newest first: see the module doc.
        let mut segments = Vec::with_capacity(names.len());
        for (i, (first_seq, path)) in names.into_iter().enumerate().rev() {
            segments.push(open_segment(path, first_seq, i == last, i >= copied_from)?);
        }
        segments.reverse();
        Ok(LogImage { dir: dir.to_path_buf(), segments })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segments, in log order; never empty (a directory without any is refused).
    pub fn segments(&self) -> &[SegmentFile] {
        &self.segments
    }

    /// Recovery's verdict on these bytes: where the valid log ends (and the torn tail
    /// that recovery would cut), or the damage it would refuse.
    pub fn scan(&self) -> Result<ScanOutcome, Corruption> {
        let images: Vec<SegmentImage<'_>> = self
            .segments
            .iter()
            .map(|s| SegmentImage { path: &s.path, first_seq: s.first_seq, bytes: s.bytes() })
            .collect();
        scan(&images)
    }

    /// Damage past the end recovery found: a frame there that is bad or missing while
    /// whole commit groups follow it. Recovery cuts such a tail when no later frame says
    /// the bad one was synced (a log written with `Durability::None`, or damage inside
    /// the last synced group), but the writer appends a group only after the one before
    /// it was committed, all its frames sealed: a verified group end past the bad frame
    /// with another verified frame after it proves the bad frame was committed. `None`
    /// when the tail is what a write in progress or a crash leaves.
    ///
    /// Like [`LogImage::scan`], read the image again before believing it while the
    /// directory may be written (see the module doc).
    pub fn committed_past_end(&self, outcome: &ScanOutcome) -> Option<CommittedFrameLost> {
        let torn = outcome.torn.as_ref()?;
        let segments = &self.segments;
        // Where the damage is precisely: recovery's end may be the start of the group
        // that holds it.
        let (mut s, mut pos, mut expected) = (torn.segment, torn.offset, outcome.last_seq + 1);
        let fault = loop {
            let seg = segments.get(s)?;
            match seg.bytes().get(pos..).map(FrameHeader::decode) {
                Some(Ok((h, _))) if h.seq == expected => {
                    pos += h.frame_bytes();
                    expected += 1;
                }
                Some(Ok(_)) => break FrameFault::BadHeader,
                Some(Err(FrameFault::Zeroed | FrameFault::Truncated)) | None
                    if segments.get(s + 1).is_some_and(|n| n.first_seq == expected) =>
                {
                    s += 1;
                    pos = SEGMENT_HEADER_BYTES;
                }
                Some(Err(fault)) => break fault,
                None => break FrameFault::Truncated,
            }
        };
        let (break_segment, break_offset) = (s, pos);
        let mut group_end: Option<u64> = None;
        for (j, seg) in segments.iter().enumerate().skip(break_segment) {
            let bytes = seg.bytes();
            let mut p = if j == break_segment { break_offset } else { SEGMENT_HEADER_BYTES };
            while p + FRAME_HEADER_BYTES <= bytes.len() {
                match FrameHeader::decode(&bytes[p..]) {
                    Ok((h, _)) if h.seq >= expected => {
                        if group_end.is_some_and(|end| h.seq > end) {
                            return Some(CommittedFrameLost {
                                segment: segments[break_segment].path.clone(),
                                offset: break_offset as u64,
                                seq: expected,
                                fault,
                                proof_seq: h.seq,
                                proof_segment: seg.path.clone(),
                                proof_offset: p as u64,
                            });
                        }
                        if h.ends_group() {
                            group_end = Some(group_end.map_or(h.seq, |end| end.max(h.seq)));
                        }
                        p += h.frame_bytes();
                    }
                    Ok((h, _)) => p += h.frame_bytes(),
                    Err(_) => p += FRAME_ALIGN_BYTES,
                }
            }
        }
        None
    }

    /// The frames `outcome` (this image's [`LogImage::scan`]) kept, from `from_seq` on,
    /// in order, each with its file and offset.
    pub fn frames<'a>(&'a self, outcome: &'a ScanOutcome, from_seq: u64) -> Frames<'a> {
        Frames { image: self, ends: &outcome.ends, segment: 0, offset: SEGMENT_HEADER_BYTES, from_seq, failed: false }
    }
}

fn open_segment(path: PathBuf, first_seq: u64, is_last: bool, copy: bool) -> Result<SegmentFile, InspectError> {
    let file = File::open(&path).map_err(IoFailure::at("open segment", &path))?;
    let len = file.metadata().map_err(IoFailure::at("stat segment", &path))?.len();
    let bad = |offset: u64, fault: HeaderFault, detail: String| InspectError::BadSegment {
        path: path.clone(),
        offset,
        fault,
        detail,
    };
    if len < SEGMENT_HEADER_BYTES as u64 {
        return Err(bad(len, HeaderFault::TooShort, format!("the file is {len} bytes")));
    }
    let bytes = if copy {
        Bytes::Copied(copy_backwards(&file, &path, len)?)
    } else {
        // SAFETY: the map is read-only. This segment is not among the newest ones the
        // owner may still write (those are copied): its bytes are final, and segment
        // files are never truncated (recovery only extends a short last one, under
        // the owner's lock). Should one change anyway, its bytes are read as untrusted
        // input by total decoders: every frame is verified, nothing is assumed.
        Bytes::Mapped(unsafe { Mmap::map(&file) }.map_err(IoFailure::at("map segment", &path))?)
    };
    let map = match &bytes {
        Bytes::Mapped(m) => &m[..],
        Bytes::Copied(m) => &m[..],
    };
    let header = SegmentHeader::decode(map).map_err(|fault| bad(0, fault, String::new()))?;
    if header.first_seq != first_seq {
        return Err(bad(
            16,
            HeaderFault::NameOrSizeMismatch,
            format!("the header's first seq is {}, the name says {first_seq}", header.first_seq),
        ));
    }
    if len > header.segment_bytes || (len < header.segment_bytes && !is_last) {
        let what = if len > header.segment_bytes { "longer" } else { "shorter (cut short?)" };
        return Err(bad(
            len.min(header.segment_bytes),
            HeaderFault::NameOrSizeMismatch,
            format!("the file is {len} bytes, {what} than the {} its header says", header.segment_bytes),
        ));
    }
    Ok(SegmentFile { path, first_seq, segment_bytes: header.segment_bytes, bytes })
}

/// A frame past the end of the readable log that later whole groups prove was
/// committed (see [`LogImage::committed_past_end`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{segment}: frame {seq} at byte {offset} is {fault}, but whole commit groups follow it (frame {proof_seq} at {proof_segment}:{proof_offset}), so it was committed; the owner's next open would cut the log here"
)]
pub struct CommittedFrameLost {
    /// The segment where the log breaks.
    pub segment: PathBuf,
    /// The offset of the bad or missing frame.
    pub offset: u64,
    /// Its seq.
    pub seq: u64,
    /// What is wrong with the bytes there.
    pub fault: FrameFault,
    /// A verified frame of a later group.
    pub proof_seq: u64,
    /// Where it is.
    pub proof_segment: PathBuf,
    /// Its offset.
    pub proof_offset: u64,
}

/// The first `len` bytes of `file`, read into private, page-aligned memory (payloads
/// stay 16-byte aligned for in-place archives) from the end backwards.
fn copy_backwards(file: &File, path: &Path, len: u64) -> Result<MmapMut, InspectError> {
    let too_big = || InspectError::Io {
        op: "copy segment",
        path: path.to_path_buf(),
        source: std::io::Error::other("larger than this machine's address space"),
    };
    let len = usize::try_from(len).map_err(|_| too_big())?;
    let mut buf = MmapMut::map_anon(len).map_err(IoFailure::at("allocate a copy of segment", path))?;
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(COPY_CHUNK_BYTES);
        file.read_exact_at(&mut buf[start..end], start as u64).map_err(IoFailure::at("read segment", path))?;
        end = start;
    }
    Ok(buf)
}

/// A frame read from a [`LogImage`], with where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocatedFrame<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// Its caller-defined kind.
    pub kind: u16,
    /// Its payload.
    pub payload: &'a [u8],
    /// The segment file.
    pub segment: &'a Path,
    /// The frame's offset in that file.
    pub offset: u64,
    /// Whether it ends a commit group (a log cut just after it keeps whole groups).
    pub ends_group: bool,
}

/// Iterator over the frames a scan kept; see [`LogImage::frames`].
#[derive(Debug)]
pub struct Frames<'a> {
    image: &'a LogImage,
    ends: &'a [usize],
    segment: usize,
    offset: usize,
    from_seq: u64,
    failed: bool,
}

impl<'a> Iterator for Frames<'a> {
    /// A frame, or (once, at the end) where a kept frame no longer decodes: the file
    /// changed after it was scanned.
    type Item = Result<LocatedFrame<'a>, (PathBuf, u64)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            let end = *self.ends.get(self.segment)?;
            let seg = self.image.segments.get(self.segment)?;
            if self.offset >= end {
                self.segment += 1;
                self.offset = SEGMENT_HEADER_BYTES;
                continue;
            }
            let bytes = seg.bytes();
            let at = self.offset;
            let Some((header, payload)) = bytes.get(at..).and_then(|b| FrameHeader::decode(b).ok()) else {
                self.failed = true;
                return Some(Err((seg.path.clone(), at as u64)));
            };
            self.offset += header.frame_bytes();
            if header.seq < self.from_seq {
                continue;
            }
            debug_assert!(at + FRAME_HEADER_BYTES + payload.len() <= bytes.len());
            return Some(Ok(LocatedFrame {
                seq: header.seq,
                kind: header.kind,
                payload,
                segment: &seg.path,
                offset: at as u64,
                ends_group: header.ends_group(),
            }));
        }
    }
}

/// The snapshot files of `dir`, newest first, read-only: unlike opening the log, an
/// unfinished `.snap.tmp` is left alone (its writer may be at work).
pub fn list_snapshots(dir: &Path) -> Result<Vec<SnapshotInfo>, SnapshotError> {
    Ok(snapshot::list_read_only(dir)?)
}

/// Reads and verifies one snapshot file (magic, version, seq, length, BLAKE3).
pub fn read_snapshot(info: &SnapshotInfo) -> Result<Snapshot, SnapshotError> {
    snapshot::read(info)
}
