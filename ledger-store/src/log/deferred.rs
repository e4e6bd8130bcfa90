//! A replicated log's mode of the writer (`LogOptions::deferred_publish`): durable is
//! not yet visible, and what is durable but unpublished may be cut again.
//!
//! In a replicated ledger an entry is appended and made durable on a follower before
//! the leader knows a quorum has it; readers (the ledger's state, feeds) may only see
//! what the quorum has, and a follower whose uncommitted suffix conflicts with a new
//! leader's log must remove it. So in this mode a commit syncs without publishing,
//! [`Log::publish_through`] shows readers the frames a quorum holds, and
//! [`Log::truncate_from`] removes durable, unpublished frames. The architecture's
//! invariant holds unchanged: bytes below a segment's published end never change;
//! a cut only ever zeroes bytes above it.
//!
//! A cut is crash-safe through a marker file, `TRUNCATE`, written atomically (temp
//! file, sync, rename, directory sync) before any frame is touched and removed only
//! after the cut is durable: a reopen that finds it finishes the cut, so a crash at any
//! point leaves the log either whole or cut, never with old frames after a hole. Every
//! frame ends its own group in this mode, so any frame boundary is a place the log may
//! end, and recovery never cuts back past a durable frame for want of a group's end.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use super::Log;
use crate::error::{IoFailure, OpenError, ReplicaError};
use crate::log::frame::FrameHeader;
use crate::log::reader::Frame;
use crate::log::recovery::nonzero_end;
use crate::log::segment::{self, SEGMENT_HEADER_BYTES, Segment};
use crate::storage::{Storage, StorageOp};

const MARKER: &str = "TRUNCATE";
const MARKER_TMP: &str = "TRUNCATE.tmp";
const MARKER_MAGIC: &[u8; 8] = b"LGTRUNC1";

/// Where one frame of a deferred-publish log lies.
#[derive(Debug, Clone)]
pub(crate) struct FrameAt {
    pub(crate) seq: u64,
    pub(crate) segment: Arc<Segment>,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

fn marker_bytes(seq: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(MARKER_MAGIC);
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    let sum = blake3::hash(&b[..16]);
    b[16..24].copy_from_slice(&sum.as_bytes()[..8]);
    b
}

/// Writes the marker that a cut from `seq` is under way, durably.
fn write_marker(storage: &Storage, dir: &Path, seq: u64) -> Result<(), IoFailure> {
    let tmp = dir.join(MARKER_TMP);
    let path = dir.join(MARKER);
    let bytes = marker_bytes(seq);
    let mut file = storage
        .run(StorageOp::CreateFile, &tmp, 0..0, || {
            OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)
        })
        .map_err(IoFailure::at("create truncation marker", &tmp))?;
    storage
        .run(StorageOp::WriteFile, &tmp, 0..bytes.len() as u64, || file.write_all(&bytes))
        .map_err(IoFailure::at("write truncation marker", &tmp))?;
    storage
        .run(StorageOp::SyncFile, &tmp, 0..u64::MAX, || file.sync_all())
        .map_err(IoFailure::at("sync truncation marker", &tmp))?;
    storage
        .run(StorageOp::Rename, &path, 0..0, || fs::rename(&tmp, &path))
        .map_err(IoFailure::at("rename truncation marker", &path))?;
    segment::sync_dir(storage, dir)
}

fn remove_marker(storage: &Storage, dir: &Path) -> Result<(), IoFailure> {
    let path = dir.join(MARKER);
    storage
        .run(StorageOp::RemoveFile, &path, 0..0, || fs::remove_file(&path))
        .map_err(IoFailure::at("remove truncation marker", &path))?;
    segment::sync_dir(storage, dir)
}

/// The cut a crash interrupted, if any: the seq from which frames are to go. A
/// leftover temporary marker (a cut that never began) is removed.
pub(crate) fn pending_cut(storage: &Storage, dir: &Path) -> Result<Option<u64>, OpenError> {
    let tmp = dir.join(MARKER_TMP);
    if tmp.exists() {
        storage
            .run(StorageOp::RemoveFile, &tmp, 0..0, || fs::remove_file(&tmp))
            .map_err(IoFailure::at("remove unfinished truncation marker", &tmp))?;
    }
    let path = dir.join(MARKER);
    let mut bytes = Vec::new();
    match fs::File::open(&path) {
        Ok(mut file) => {
            file.read_to_end(&mut bytes).map_err(IoFailure::at("read truncation marker", &path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(OpenError::Io { op: "open truncation marker", path, source }),
    }
    let seq = bytes.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
    match seq {
        // Written whole and synced before its rename: anything else is damage.
        Some(seq) if bytes.len() == 24 && bytes[..] == marker_bytes(seq) => Ok(Some(seq)),
        _ => Err(OpenError::Io {
            op: "read truncation marker",
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the marker does not verify"),
        }),
    }
}

/// Finishes a cut from `seq` that a crash interrupted, on the segments just opened
/// (sorted, not yet shared): the frames before `seq` are intact and durable; from
/// frame `seq` on everything is zeroed and later segments are removed. Then the
/// marker goes. Recovery's scan then sees a clean log.
pub(crate) fn finish_cut(
    storage: &Storage,
    dir: &Path,
    segments: &mut Vec<Segment>,
    seq: u64,
) -> Result<(), OpenError> {
    let io = |op, path: &Path| {
        let at = IoFailure::at(op, path);
        move |source| OpenError::from(at(source))
    };
    let keep = segments.partition_point(|s| s.first_seq <= seq).max(1);
    let seg = &segments[keep - 1];
    let bytes = seg.bytes_unpublished_for_recovery();
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut expected = seg.first_seq;
    while expected < seq {
        match FrameHeader::decode(&bytes[offset..]) {
            Ok((header, _)) if header.seq == expected => {
                offset += header.frame_bytes();
                expected += 1;
            }
            // A break before `seq`: recovery judges it, as any other.
            _ => break,
        }
    }
    let end = nonzero_end(bytes, offset);
    if end > offset {
        let zeroes = vec![0u8; end - offset];
        seg.write_at(storage, offset, &zeroes).map_err(io("finish truncation", &seg.path))?;
        seg.sync_range(storage, offset, end).map_err(io("sync truncation", &seg.path))?;
    }
    let removed = segments.split_off(keep);
    for seg in &removed {
        storage
            .run(StorageOp::RemoveFile, &seg.path, 0..0, || fs::remove_file(&seg.path))
            .map_err(io("remove truncated segment", &seg.path))?;
    }
    segment::sync_dir(storage, dir)?;
    remove_marker(storage, dir)?;
    Ok(())
}

/// Every frame of `segments` up to their recovered `ends`, for a deferred-publish log.
pub(crate) fn index_frames(segments: &[Arc<Segment>], ends: &[usize]) -> VecDeque<FrameAt> {
    let mut frames = VecDeque::new();
    for (seg, &end) in segments.iter().zip(ends) {
        let bytes = seg.bytes_unpublished_for_recovery();
        let mut offset = SEGMENT_HEADER_BYTES;
        while offset < end {
            // Recovery verified every frame below `end`.
            let Ok(header) = FrameHeader::decode_unchecked(&bytes[offset..]) else { break };
            let next = offset + header.frame_bytes();
            frames.push_back(FrameAt { seq: header.seq, segment: Arc::clone(seg), start: offset, end: next });
            offset = next;
        }
    }
    frames
}

impl Log {
    /// Seq of the last frame shown to readers (in the default mode, the last committed).
    pub fn published_seq(&self) -> u64 {
        if self.options.deferred_publish { self.published_seq } else { self.committed_seq }
    }

    /// Shows readers every durable frame through `seq` (what a quorum holds), in a log
    /// opened with `LogOptions::deferred_publish`. Publishing is never undone.
    pub fn publish_through(&mut self, seq: u64) -> Result<(), ReplicaError> {
        if !self.options.deferred_publish {
            return Err(ReplicaError::NotDeferred);
        }
        if seq > self.committed_seq {
            return Err(ReplicaError::OutOfRange { seq, published: self.published_seq, durable: self.committed_seq });
        }
        if seq <= self.published_seq {
            return Ok(());
        }
        let Some(first) = self.frames.front().map(|f| f.seq) else { return Ok(()) };
        let from = usize::try_from(self.published_seq.saturating_add(1).max(first) - first).unwrap_or(usize::MAX);
        let to = usize::try_from(seq - first).unwrap_or(usize::MAX);
        for f in self.frames.range(from..=to.min(self.frames.len().saturating_sub(1))) {
            f.segment.publish(f.end);
        }
        self.published_seq = seq;
        self.shared.publish_seq(seq);
        Ok(())
    }

    /// The durable frame `seq`, published or not, read by the writer's owner (a
    /// replicated log sends its entries to followers before they are published).
    /// `None` when the log does not hold it as a durable frame, or in the default mode
    /// (readers serve published frames there).
    pub fn frame(&self, seq: u64) -> Option<Frame<'_>> {
        if !self.options.deferred_publish || seq > self.committed_seq {
            return None;
        }
        let first = self.frames.front()?.seq;
        let f = self.frames.get(usize::try_from(seq.checked_sub(first)?).ok()?)?;
        // SAFETY: the frame is durable, so written into its segment; bytes are only
        // written through `&mut Log`, and `self` is borrowed for the slice's life.
        let bytes = unsafe { f.segment.written(f.end) };
        let header = FrameHeader::decode_unchecked(&bytes[f.start..]).ok()?;
        let start = f.start + crate::log::frame::FRAME_HEADER_BYTES;
        let payload = &bytes[start..start + header.payload_len as usize];
        Some(Frame { seq: header.seq, kind: header.kind, payload })
    }

    /// Removes every frame from `seq` on (committing pending ones first), durably and
    /// crash-safely, in a log opened with `LogOptions::deferred_publish`: the frames
    /// must lie above the published ones, which never change. Returns how many frames
    /// went. Appends continue at `seq`. On an error the log refuses writes until
    /// reopened, and the reopen finishes the cut if its marker was written.
    pub fn truncate_from(&mut self, seq: u64) -> Result<u64, ReplicaError> {
        if !self.options.deferred_publish {
            return Err(ReplicaError::NotDeferred);
        }
        // Everything pending becomes durable and every earlier frame is synced: after
        // the cut the log's synced prefix is exactly the frames before `seq`.
        self.sync()?;
        if seq <= self.published_seq || seq > self.next_seq {
            return Err(ReplicaError::OutOfRange { seq, published: self.published_seq, durable: self.committed_seq });
        }
        if seq == self.next_seq {
            return Ok(0);
        }
        let cut = self.cut(seq);
        if cut.is_err() {
            self.failed = true;
        }
        cut
    }

    fn cut(&mut self, seq: u64) -> Result<u64, ReplicaError> {
        let first = self.frames.front().map_or(self.next_seq, |f| f.seq);
        let index = usize::try_from(seq - first).unwrap_or(usize::MAX);
        let at = self.frames.get(index).cloned().ok_or(ReplicaError::OutOfRange {
            seq,
            published: self.published_seq,
            durable: self.committed_seq,
        })?;
        let removed = self.next_seq - seq;
        write_marker(&self.storage, &self.dir, seq)?;
        let data_end = self
            .frames
            .iter()
            .skip(index)
            .take_while(|f| Arc::ptr_eq(&f.segment, &at.segment))
            .last()
            .map_or(at.end, |f| f.end);
        let zeroes = vec![0u8; data_end - at.start];
        at.segment
            .write_at(&self.storage, at.start, &zeroes)
            .map_err(IoFailure::at("truncate frames", &at.segment.path))?;
        at.segment
            .sync_range(&self.storage, at.start, data_end)
            .map_err(IoFailure::at("sync truncated frames", &at.segment.path))?;
        let later = self.shared.split_back_after(at.segment.first_seq);
        for seg in &later {
            self.storage
                .run(StorageOp::RemoveFile, &seg.path, 0..0, || fs::remove_file(&seg.path))
                .map_err(IoFailure::at("remove truncated segment", &seg.path))?;
        }
        segment::sync_dir(&self.storage, &self.dir)?;
        remove_marker(&self.storage, &self.dir)?;
        self.frames.truncate(index);
        self.active = at.segment;
        self.write_end = at.start;
        self.unsealed_from = at.start;
        self.stage.reset(at.start, 0);
        self.last_frame = None;
        self.next_seq = seq;
        self.committed_seq = seq - 1;
        self.synced_seq = seq - 1;
        Ok(removed)
    }
}
