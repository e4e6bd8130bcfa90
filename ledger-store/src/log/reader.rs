//! Readers: iterate committed frames from a sequence number, zero-copy, concurrently
//! with the writer.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::ReadError;
use crate::log::frame::{FRAME_HEADER_BYTES, FrameHeader};
use crate::log::segment::{SEGMENT_HEADER_BYTES, Segment};
use crate::sync::{AtomicU64, Ordering};

/// State the writer shares with readers.
///
/// The segment list changes only on roll-over and retention (a short write lock);
/// readers clone it under a read lock and then read the mappings without any lock.
#[derive(Debug)]
pub(crate) struct Shared {
    segments: RwLock<Vec<Arc<Segment>>>,
    committed_seq: AtomicU64,
}

impl Shared {
    pub(crate) fn new(segments: Vec<Arc<Segment>>, committed_seq: u64) -> Shared {
        Shared { segments: RwLock::new(segments), committed_seq: AtomicU64::new(committed_seq) }
    }

    pub(crate) fn push_segment(&self, seg: Arc<Segment>) {
        self.segments.write().push(seg);
    }

    /// Takes out of the list the segments whose frames all lie below `seq`, never the last.
    pub(crate) fn split_front_before(&self, seq: u64) -> Vec<Arc<Segment>> {
        let mut segments = self.segments.write();
        let keep_from = segments.windows(2).take_while(|w| w[1].first_seq <= seq).count();
        segments.drain(..keep_from).collect()
    }

    /// Puts back at the front segments that [`Shared::split_front_before`] took but
    /// retention could not remove, oldest first.
    pub(crate) fn restore_front(&self, kept: Vec<Arc<Segment>>) {
        let mut segments = self.segments.write();
        segments.splice(0..0, kept);
    }

    /// Takes out of the list the segments that start after `first_seq` (a replicated
    /// log's cut), newest last.
    pub(crate) fn split_back_after(&self, first_seq: u64) -> Vec<Arc<Segment>> {
        let mut segments = self.segments.write();
        let keep = segments.partition_point(|s| s.first_seq <= first_seq).max(1);
        segments.split_off(keep)
    }

    pub(crate) fn publish_seq(&self, seq: u64) {
        // Release: the segments' own published ends were stored (Release) before this,
        // so a reader that sees `seq` here finds every frame up to it published.
        self.committed_seq.store(seq, Ordering::Release);
    }

    pub(crate) fn first_seq(&self) -> u64 {
        self.segments.read()[0].first_seq
    }

    pub(crate) fn snapshot_segments(&self) -> Vec<Arc<Segment>> {
        self.snapshot()
    }

    fn snapshot(&self) -> Vec<Arc<Segment>> {
        self.segments.read().clone()
    }
}

/// A cheap, cloneable, `Send + Sync` handle for reading committed frames while the
/// writer goes on appending.
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogReader {
    pub(crate) fn new(shared: Arc<Shared>) -> LogReader {
        LogReader { shared }
    }

    /// Sequence number of the last committed frame.
    pub fn committed_seq(&self) -> u64 {
        // Acquire: pairs with the writer's Release in `publish_seq`.
        self.shared.committed_seq.load(Ordering::Acquire)
    }

    /// Sequence number of the first frame still held.
    pub fn first_seq(&self) -> u64 {
        self.shared.first_seq()
    }

    /// A cursor that yields committed frames with `seq >= from_seq`, in order. It
    /// keeps up with the writer: after it returns `None`, frames committed later are
    /// returned by later calls.
    pub fn cursor(&self, from_seq: u64) -> Result<Cursor, ReadError> {
        let segments = self.shared.snapshot();
        let first = segments[0].first_seq;
        if from_seq < first {
            return Err(ReadError::Removed { requested: from_seq, first });
        }
        // The last segment starting at or before `from_seq`.
        let index = segments.partition_point(|s| s.first_seq <= from_seq).saturating_sub(1);
        let next_seq = segments[index].first_seq;
        Ok(Cursor {
            shared: Arc::clone(&self.shared),
            segments,
            index,
            offset: SEGMENT_HEADER_BYTES,
            next_seq,
            skip_below: from_seq,
            visible_seq: 0,
        })
    }
}

/// One committed frame, borrowed straight from the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// Its caller-defined kind.
    pub kind: u16,
    /// Its payload, 16-byte aligned.
    pub payload: &'a [u8],
}

/// Iterates committed frames in sequence order; see [`LogReader::cursor`].
///
/// Frames are not re-verified: every published frame was verified by recovery or
/// written by this process. A frame that no longer decodes (the file was changed
/// behind the log's back) is reported as [`ReadError::Damaged`].
#[derive(Debug)]
pub struct Cursor {
    shared: Arc<Shared>,
    segments: Vec<Arc<Segment>>,
    index: usize,
    offset: usize,
    /// Seq of the next frame in the log after the last one read (returned or skipped).
    /// The cursor moves on to the next segment only when that segment starts here:
    /// a roll-over adds the new segment before the old one's last frames are published.
    next_seq: u64,
    skip_below: u64,
    /// The writer's committed seq as last loaded. A frame above it is held back even
    /// if its segment's end is already published (the writer publishes the ends
    /// first), so a cursor never runs ahead of `LogReader::committed_seq`.
    visible_seq: u64,
}

impl Cursor {
    /// The next committed frame, or `None` when the cursor has caught up with the writer.
    #[allow(clippy::should_implement_trait)] // a lending cursor: frames borrow from it
    pub fn next(&mut self) -> Option<Result<Frame<'_>, ReadError>> {
        loop {
            let seg = &self.segments[self.index];
            let published = seg.published();
            if self.offset < published.len() {
                let header = match FrameHeader::decode_unchecked(&published[self.offset..]) {
                    Ok(h) => h,
                    Err(_) => {
                        return Some(Err(ReadError::Damaged { segment: seg.path.clone(), offset: self.offset as u64 }));
                    }
                };
                if header.seq > self.visible_seq {
                    // Acquire: pairs with the writer's Release in `publish_seq`.
                    self.visible_seq = self.shared.committed_seq.load(Ordering::Acquire);
                    if header.seq > self.visible_seq {
                        return None; // published a moment before the commit became visible
                    }
                }
                let at = self.offset;
                self.offset += header.frame_bytes();
                self.next_seq = header.seq + 1;
                if header.seq < self.skip_below {
                    continue;
                }
                let start = at + FRAME_HEADER_BYTES;
                let payload = &self.segments[self.index].published()[start..start + header.payload_len as usize];
                return Some(Ok(Frame { seq: header.seq, kind: header.kind, payload }));
            }
            if self.segments.get(self.index + 1).is_some_and(|s| s.first_seq == self.next_seq) {
                self.index += 1;
                self.offset = SEGMENT_HEADER_BYTES;
                continue;
            }
            // Caught up with what this cursor knows; the writer may have rolled over,
            // but the segment is finished only once its last frame was read.
            let current = seg.first_seq;
            let fresh = self.shared.snapshot();
            let next = fresh.partition_point(|s| s.first_seq <= current);
            if fresh.get(next).is_none_or(|s| s.first_seq != self.next_seq) {
                return None;
            }
            self.segments = fresh;
            self.index = next;
            self.offset = SEGMENT_HEADER_BYTES;
        }
    }
}
