//! Sealing: computing the checksums of appended frames, on a second thread.
//!
//! BLAKE3 over each frame is about half of what an append costs the writer. The writer
//! therefore appends frames with their checksum left zero and hands whole ranges of
//! them ([`CHUNK_BYTES`] at a time) to a sealing thread, which fills the checksums in
//! while the writer goes on judging and appending the next transactions. A commit
//! seals the group's last, short range itself, waits for every range it handed over,
//! and only then syncs and publishes: no unsealed frame is ever synced as part of a
//! committed group, and no reader ever sees one.
//!
//! The bytes on disk are exactly those of sealing inline, so the format, recovery and
//! every crash argument are unchanged: a frame whose checksum was not yet written is a
//! frame that fails verification, which recovery already treats as a torn tail when it
//! lies past the last group end.
//!
//! A group smaller than one range is sealed entirely by the writer at commit, so a
//! lone small commit pays no hand-off to another thread.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use crate::log::frame::seal_frames;
use crate::log::segment::Segment;

/// Bytes of frames the writer accumulates before handing them to the sealing thread:
/// large enough that a hand-off (a channel send, perhaps a wake-up) is a small part of
/// hashing it (512 transaction frames of 128 bytes), small enough that the last range, which the
/// commit waits for, is short.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// A range of whole, unsealed frames the writer handed over; it does not touch them
/// again until the sealing thread reports the range sealed.
struct Chunk {
    segment: Arc<Segment>,
    from: usize,
    to: usize,
}

impl Chunk {
    fn seal(&self) {
        // SAFETY: the range lies inside the segment (the writer appended it), is above
        // the published end (it belongs to a group not yet committed, so no reader
        // looks at it), and the writer hands it over whole and does not write to it
        // again until it has received this range's acknowledgement: for as long as
        // this slice lives it is the only reference to these bytes.
        let frames = unsafe { self.segment.slice_mut(self.from, self.to - self.from) };
        seal_frames(frames);
    }
}

/// The sealing thread and the ranges it was handed that the writer has not yet seen
/// acknowledged.
#[derive(Debug)]
pub(crate) struct Sealer {
    chunks: Option<Sender<Chunk>>,
    sealed: Receiver<()>,
    in_flight: usize,
    /// The thread stopped (it panicked): ranges handed to it may be unsealed.
    broken: bool,
    thread: Option<JoinHandle<()>>,
}

impl Sealer {
    /// Starts the thread; `None` when no thread can be started (the writer then seals
    /// everything itself).
    pub(crate) fn start() -> Option<Sealer> {
        let (chunks, inbox) = channel::<Chunk>();
        let (done, sealed) = channel();
        let run = move || {
            for chunk in inbox {
                chunk.seal();
                drop(chunk); // release the segment before the writer hears of it
                if done.send(()).is_err() {
                    return;
                }
            }
        };
        let thread = std::thread::Builder::new().name("ledger-store-seal".into()).spawn(run).ok()?;
        Some(Sealer { chunks: Some(chunks), sealed, in_flight: 0, broken: false, thread: Some(thread) })
    }

    /// Hands `[from, to)` of `segment` (whole frames, unsealed) to the thread; seals it
    /// here if the thread is gone.
    pub(crate) fn hand_over(&mut self, segment: &Arc<Segment>, from: usize, to: usize) {
        let chunk = Chunk { segment: Arc::clone(segment), from, to };
        let Some(chunks) = &self.chunks else { return chunk.seal() };
        match chunks.send(chunk) {
            Ok(()) => self.in_flight += 1,
            Err(returned) => {
                self.broken = true;
                returned.0.seal();
            }
        }
    }

    /// Waits until every range handed over is sealed. False when the thread stopped
    /// before sealing them all: the group must not be committed.
    pub(crate) fn wait(&mut self) -> bool {
        while self.in_flight > 0 {
            if self.sealed.recv().is_err() {
                self.broken = true;
                self.in_flight = 0;
                return false;
            }
            self.in_flight -= 1;
        }
        !self.broken
    }
}

/// Seals `[from, to)` of `segment` on the calling thread (the writer's own share).
///
/// # Safety
/// The caller is the log's single writer, and the range holds whole frames of a group
/// not yet published and not handed to the sealing thread.
pub(crate) unsafe fn seal_here(segment: &Segment, from: usize, to: usize) {
    if to > from {
        // SAFETY: by the caller's contract the range is unpublished and nobody else
        // holds it.
        seal_frames(unsafe { segment.slice_mut(from, to - from) });
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has sealed what it holds; no
        // thread outlives the log.
        self.chunks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;
    use crate::log::frame::{FRAME_HEADER_BYTES, FrameHeader};
    use crate::log::segment::SEGMENT_HEADER_BYTES;
    use crate::storage::Storage;

    fn frame(segment: &Segment, at: usize, seq: u64, payload_len: u32) -> usize {
        let header = FrameHeader { seq, synced_seq: 0, payload_len, kind: 1, flags: 0 };
        let mut head = [0u8; FRAME_HEADER_BYTES];
        header.encode_unsealed(&mut head);
        // SAFETY: the test is the segment's only user; the range is inside it.
        unsafe { segment.write_at(at, &head) };
        at + header.frame_bytes()
    }

    #[test]
    fn ranges_handed_over_are_sealed_and_a_stopped_thread_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Arc::new(Segment::create(&Storage::os(), dir.path(), 1, 1 << 20).unwrap());
        let mut sealer = Sealer::start().unwrap();
        let mut end = SEGMENT_HEADER_BYTES;
        for seq in 1..=3 {
            end = frame(&segment, end, seq, 40);
        }
        sealer.hand_over(&segment, SEGMENT_HEADER_BYTES, end);
        assert!(sealer.wait(), "a healthy thread seals what it is handed");
        let bytes = segment.bytes_unpublished_for_recovery();
        let (h, _) = FrameHeader::decode(&bytes[SEGMENT_HEADER_BYTES..]).unwrap();
        assert_eq!(h.seq, 1, "the first frame verifies");

        // A range that does not hold whole frames (a bug of the writer) makes the
        // thread panic: the commit waiting for it must learn that its group is not
        // sealed, and every later wait too.
        let bad = frame(&segment, end, 4, 4096);
        sealer.hand_over(&segment, end, bad - 64);
        assert!(!sealer.wait(), "a range the thread never finished is reported");
        sealer.hand_over(&segment, SEGMENT_HEADER_BYTES, end);
        assert!(!sealer.wait(), "the thread stays reported as stopped");
    }
}
