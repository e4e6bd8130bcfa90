//! Recovery: decide, from the bytes of the segments alone, where the valid log ends.
//!
//! The rule (FORMAT.md, "Recovery") in short: frames are read in order while each one
//! verifies and carries the next sequence number. At the first place where that stops
//! (the *break*), everything after it is searched for verified frames. If one of them
//! says, through its `synced_seq`, that the frame expected at the break had already
//! been made durable when it was written, durable data is damaged and the log refuses
//! to open. Otherwise the break is a torn tail (a write that never completed, or pages
//! of an unsynced group that never reached the disk) and is cut.
//!
//! This is pure: it reads byte slices and returns a verdict. Applying it (zeroing the
//! torn bytes, removing later segments) is the writer's job.

use std::path::Path;

use crate::error::{Corruption, CorruptionKind};
use crate::log::frame::{FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, FrameFault, FrameHeader};
use crate::log::segment::SEGMENT_HEADER_BYTES;

/// The bytes of one segment file, header included, with its name and first seq.
#[derive(Debug, Clone, Copy)]
pub struct SegmentImage<'a> {
    /// The file, for error messages.
    pub path: &'a Path,
    /// The first sequence number, from the (already verified) segment header.
    pub first_seq: u64,
    /// The whole file.
    pub bytes: &'a [u8],
}

/// Where the valid log ends, and what is to be cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Verified frames kept.
    pub frames: u64,
    /// Sequence number of the last kept frame (`first_seq - 1` of the first segment
    /// when there is none).
    pub last_seq: u64,
    /// End offset of the valid frames of each kept segment; segments beyond
    /// `ends.len()` are to be removed.
    pub ends: Vec<usize>,
    /// The torn tail to cut, if any.
    pub torn: Option<TornTail>,
}

/// A torn tail found by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Index of the segment where the valid log ends.
    pub segment: usize,
    /// Offset in that segment where the valid log ends.
    pub offset: usize,
    /// End of the last non-zero byte at or after `offset` in that segment: the range
    /// `[offset, dirty_end)` is to be zeroed.
    pub dirty_end: usize,
    /// Non-zero bytes dropped, over every segment the tail spans.
    pub bytes_dropped: u64,
    /// Frames that verified but were dropped with the tail (written, never made durable).
    pub frames_dropped: u64,
}

/// Scans `segments` (sorted by first seq, each with a verified header) and decides
/// where the log ends.
///
/// # Panics
/// Never on any content of the images; `segments` must be non-empty and each image at
/// least [`SEGMENT_HEADER_BYTES`] long (the segment header was verified).
pub fn scan(segments: &[SegmentImage<'_>]) -> Result<ScanOutcome, Corruption> {
    assert!(!segments.is_empty(), "scan needs at least one segment");
    for seg in segments {
        assert!(seg.bytes.len() >= SEGMENT_HEADER_BYTES, "segment image shorter than its header");
    }
    let walks = walk_all(segments);
    let mut expected = segments[0].first_seq;
    let mut frames = 0u64;
    let mut ends = Vec::with_capacity(segments.len());
    // Just after the last frame that ended a commit group (the start of the log counts
    // as one): the log can only end at such a place.
    let mut group_end = GroupEnd { segment: 0, offset: SEGMENT_HEADER_BYTES, expected, frames };
    for (i, (seg, walk)) in segments.iter().zip(walks).enumerate() {
        // A segment is only reached here when the one before ended where this one's
        // first seq continues it (or it is the first): its walk started at `expected`.
        debug_assert_eq!(seg.first_seq, expected);
        if let Some(WalkGroupEnd { offset, frames: in_segment }) = walk.group_end {
            group_end = GroupEnd { segment: i, offset, expected: expected + in_segment, frames: frames + in_segment };
        }
        expected += walk.frames;
        frames += walk.frames;
        let offset = walk.end;
        if let Some(found) = walk.gap {
            return Err(Corruption {
                segment: seg.path.to_path_buf(),
                offset: offset as u64,
                kind: CorruptionKind::SequenceGap { expected, found },
            });
        }
        let fault = walk.fault;
        ends.push(offset);
        let soft_end = matches!(fault, FrameFault::Zeroed | FrameFault::Truncated);
        let next_continues = segments.get(i + 1).is_some_and(|next| next.first_seq == expected);
        if soft_end && next_continues {
            continue; // the writer rolled over here: the rest of this segment was never used
        }
        // Damage proven durable at the break itself is reported there, precisely.
        let at_break = finish_at_break(segments, i, offset, expected, frames, fault, ends.clone());
        if group_end.expected == expected || at_break.is_err() {
            return at_break;
        }
        // The frames since the last group end belong to a group whose end never
        // reached the disk: never committed, so never acknowledged. The log ends where
        // that group began; its frames are judged with the torn tail.
        ends.truncate(group_end.segment);
        ends.push(group_end.offset);
        let GroupEnd { segment, offset, expected, frames } = group_end;
        return finish_at_break(segments, segment, offset, expected, frames, FrameFault::IncompleteGroup, ends);
    }
    unreachable!("the last segment always ends in a break")
}

/// What reading one segment's frames in order found, on its own: each segment starts
/// at its header and its first frame carries its first seq, so segments are walked
/// independently (in parallel) and stitched together by [`scan`].
#[derive(Debug, Clone, Copy)]
struct Walk {
    /// Frames that verified and carried the next seq.
    frames: u64,
    /// Offset just after them: where the walk stopped.
    end: usize,
    /// Why it stopped, when a frame there did not verify.
    fault: FrameFault,
    /// The seq of a verified frame found at `end` instead of the next one.
    gap: Option<u64>,
    /// The last frame that ended a commit group in this segment.
    group_end: Option<WalkGroupEnd>,
}

#[derive(Debug, Clone, Copy)]
struct WalkGroupEnd {
    /// Offset just after the frame.
    offset: usize,
    /// Frames of this segment up to and including it.
    frames: u64,
}

/// Verifies one segment's frames from its start, while each carries the next seq.
fn walk(seg: &SegmentImage<'_>) -> Walk {
    let mut walk = Walk { frames: 0, end: SEGMENT_HEADER_BYTES, fault: FrameFault::Zeroed, gap: None, group_end: None };
    loop {
        match FrameHeader::decode(&seg.bytes[walk.end..]) {
            Ok((header, _)) if header.seq == seg.first_seq + walk.frames => {
                walk.end += header.frame_bytes();
                walk.frames += 1;
                if header.ends_group() {
                    walk.group_end = Some(WalkGroupEnd { offset: walk.end, frames: walk.frames });
                }
            }
            Ok((header, _)) => {
                walk.gap = Some(header.seq);
                return walk;
            }
            Err(fault) => {
                walk.fault = fault;
                return walk;
            }
        }
    }
}

/// Walks every segment, spreading them over the machine's cores: verifying BLAKE3
/// checksums is most of what opening a long log costs, and segments do not depend on
/// each other until they are stitched together.
fn walk_all(segments: &[SegmentImage<'_>]) -> Vec<Walk> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(segments.len());
    if threads <= 1 {
        return segments.iter().map(walk).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut walks: Vec<Option<Walk>> = vec![None; segments.len()];
    std::thread::scope(|scope| {
        // A thread that cannot be started is simply not there: its share is walked below.
        let workers: Vec<_> = (0..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("ledger-store-verify".into())
                    .spawn_scoped(scope, || {
                        let mut done = Vec::new();
                        loop {
                            // Relaxed: the counter only hands out distinct indices; the
                            // results travel back through the join.
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(seg) = segments.get(i) else { return done };
                            done.push((i, walk(seg)));
                        }
                    })
                    .ok()
            })
            .collect();
        for worker in workers {
            // A walk is pure byte reading and does not panic; should a thread fail
            // anyway, the segments it took are walked again below.
            if let Ok(done) = worker.join() {
                for (i, w) in done {
                    walks[i] = Some(w);
                }
            }
        }
    });
    walks.into_iter().zip(segments).map(|(w, seg)| w.unwrap_or_else(|| walk(seg))).collect()
}

/// A place where a commit group ended, and the scan's counts there.
#[derive(Debug, Clone, Copy)]
struct GroupEnd {
    segment: usize,
    offset: usize,
    expected: u64,
    frames: u64,
}

/// Decides whether the break at `(segment, offset)` is a torn tail or corruption.
fn finish_at_break(
    segments: &[SegmentImage<'_>],
    segment: usize,
    offset: usize,
    expected: u64,
    frames: u64,
    fault: FrameFault,
    ends: Vec<usize>,
) -> Result<ScanOutcome, Corruption> {
    let last_seq = expected - 1;
    let mut bytes_dropped = 0u64;
    let mut frames_dropped = 0u64;
    let mut dirty_end = offset;
    for (j, seg) in segments.iter().enumerate().skip(segment) {
        let start = if j == segment { offset } else { SEGMENT_HEADER_BYTES };
        let end = nonzero_end(seg.bytes, start);
        if j == segment {
            dirty_end = end;
        }
        bytes_dropped += (end - start) as u64;
        let mut p = start;
        while p + FRAME_HEADER_BYTES <= end {
            match FrameHeader::decode(&seg.bytes[p..]) {
                Ok((h, _)) if h.seq > last_seq && h.synced_seq < expected => {
                    // Written after the break but never known durable: part of the tail.
                    frames_dropped += 1;
                    p += h.frame_bytes();
                }
                Ok((h, _)) if h.seq > last_seq => {
                    return Err(Corruption {
                        segment: segments[segment].path.to_path_buf(),
                        offset: offset as u64,
                        kind: CorruptionKind::DurableFrameDamaged {
                            seq: expected,
                            fault,
                            proof_seq: h.seq,
                            proof_segment: seg.path.to_path_buf(),
                            proof_offset: p as u64,
                        },
                    });
                }
                Ok((h, _)) => {
                    // A verified frame that repeats an earlier sequence number: the
                    // writer never produces one, and recovery zeroes every cut tail.
                    return Err(Corruption {
                        segment: seg.path.to_path_buf(),
                        offset: p as u64,
                        kind: CorruptionKind::SequenceGap { expected, found: h.seq },
                    });
                }
                Err(_) => p += FRAME_ALIGN_BYTES,
            }
        }
    }
    let torn = (bytes_dropped > 0 || segment + 1 < segments.len()).then_some(TornTail {
        segment,
        offset,
        dirty_end,
        bytes_dropped,
        frames_dropped,
    });
    Ok(ScanOutcome { frames, last_seq, ends, torn })
}

/// End of the last non-zero byte in `bytes[start..]`, or `start` when all are zero.
pub(crate) fn nonzero_end(bytes: &[u8], start: usize) -> usize {
    let tail = &bytes[start..];
    // Word-wise from the back: segments are megabytes of mostly zeroes.
    let words = tail.len() / 8;
    let rem = &tail[words * 8..];
    if let Some(i) = rem.iter().rposition(|&b| b != 0) {
        return start + words * 8 + i + 1;
    }
    for w in (0..words).rev() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&tail[w * 8..w * 8 + 8]);
        if u64::from_le_bytes(word) != 0 {
            let i = word.iter().rposition(|&b| b != 0).unwrap_or(0);
            return start + w * 8 + i + 1;
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonzero_end_finds_the_last_byte() {
        let mut v = vec![0u8; 100];
        assert_eq!(nonzero_end(&v, 3), 3);
        v[41] = 1;
        assert_eq!(nonzero_end(&v, 3), 42);
        v[99] = 9;
        assert_eq!(nonzero_end(&v, 50), 100);
        assert_eq!(nonzero_end(&v, 100), 100);
    }
}
