//! Sealing: computing the checksums of appended frames, on a second thread.
//!
//! BLAKE3 over each frame is about half of what an append costs the writer. The writer
//! therefore stages frames with their checksum left zero (see `stage.rs`) and hands
//! whole ranges of them ([`CHUNK_BYTES`] at a time) to a sealing thread, which fills the checksums in
//! while the writer goes on judging and appending the next transactions. A commit
//! seals the group's last, short range itself, waits for every range it handed over,
//! and only then writes them into the segment, syncs and publishes: no unsealed frame is
//! ever written, and no reader ever sees one.
//!
//! The bytes on disk are exactly those of sealing inline, so the format, recovery and
//! every crash argument are unchanged: a frame whose checksum was not yet written is a
//! frame that fails verification, which recovery already treats as a torn tail when it
//! lies past the last group end.
//!
//! A group smaller than one range is sealed entirely by the writer at commit, so a
//! lone small commit pays no hand-off to another thread.

use std::ptr::NonNull;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use crate::log::frame::seal_frames;
use crate::log::stage::Stage;

/// Bytes of frames the writer accumulates before handing them to the sealing thread:
/// large enough that a hand-off (a channel send, perhaps a wake-up) is a small part of
/// hashing it (512 transaction frames of 128 bytes), small enough that the last range, which the
/// commit waits for, is short.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// A range of whole, unsealed frames the writer handed over; it does not touch them
/// again until the sealing thread reports the range sealed.
struct Chunk {
    frames: NonNull<u8>,
    len: usize,
}

// SAFETY: the chunk stands for bytes of the writer's stage that the writer stops
// touching (and keeps allocated) until the sealing thread acknowledges them.
unsafe impl Send for Chunk {}

impl Chunk {
    fn seal(&self) {
        // SAFETY: the range lies inside the writer's stage (`Stage::raw_range` checked
        // it), and the writer hands it over whole and neither touches, moves nor frees
        // those bytes until it has received this range's acknowledgement (it waits in
        // `Sealer::wait` before it writes the stage out or resets it): for as long as
        // this slice lives it is the only reference to these bytes.
        let frames = unsafe { std::slice::from_raw_parts_mut(self.frames.as_ptr(), self.len) };
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
                if done.send(()).is_err() {
                    return;
                }
            }
        };
        let thread = std::thread::Builder::new().name("ledger-store-seal".into()).spawn(run).ok()?;
        Some(Sealer { chunks: Some(chunks), sealed, in_flight: 0, broken: false, thread: Some(thread) })
    }

    /// Hands the file range `[from, to)` of `stage` (whole frames, unsealed) to the
    /// thread; seals it here if the thread is gone. The caller must not touch those
    /// bytes, nor reset the stage, until [`Sealer::wait`] returned.
    pub(crate) fn hand_over(&mut self, stage: &mut Stage, from: usize, to: usize) {
        let (frames, len) = stage.raw_range(from, to);
        let chunk = Chunk { frames, len };
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

/// Seals the file range `[from, to)` of `stage` (whole frames not handed to the sealing
/// thread) on the calling thread: the writer's own share.
pub(crate) fn seal_here(stage: &mut Stage, from: usize, to: usize) {
    if to > from {
        seal_frames(stage.range_mut(from, to));
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

    fn frame(stage: &mut Stage, seq: u64, payload_len: u32) -> usize {
        let header = FrameHeader { seq, synced_seq: 0, payload_len, kind: 1, flags: 0 };
        let mut head = [0u8; FRAME_HEADER_BYTES];
        header.encode_unsealed(&mut head);
        stage.push_zeroed(header.frame_bytes())[..FRAME_HEADER_BYTES].copy_from_slice(&head);
        stage.end()
    }

    #[test]
    fn ranges_handed_over_are_sealed_and_a_stopped_thread_is_reported() {
        let base = 64;
        let mut stage = Stage::new(1 << 20, base);
        let mut sealer = Sealer::start().unwrap();
        let mut end = base;
        for seq in 1..=3 {
            end = frame(&mut stage, seq, 40);
        }
        sealer.hand_over(&mut stage, base, end);
        assert!(sealer.wait(), "a healthy thread seals what it is handed");
        let (h, _) = FrameHeader::decode(stage.range_mut(base, end)).unwrap();
        assert_eq!(h.seq, 1, "the first frame verifies");

        // A range that does not hold whole frames (a bug of the writer) makes the
        // thread panic: the commit waiting for it must learn that its group is not
        // sealed, and every later wait too.
        let bad = frame(&mut stage, 4, 4096);
        sealer.hand_over(&mut stage, end, bad - 64);
        assert!(!sealer.wait(), "a range the thread never finished is reported");
        sealer.hand_over(&mut stage, base, end);
        assert!(!sealer.wait(), "the thread stays reported as stopped");
    }
}
