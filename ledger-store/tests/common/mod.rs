//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::cast_possible_truncation)] // each test file uses a subset; small values

use std::fs;
use std::path::{Path, PathBuf};

use ledger_store::format::{FrameHeader, SEGMENT_HEADER_BYTES};
use ledger_store::{Log, LogOptions};

/// A deterministic payload for `seq`: 1 to 300 bytes, none of them zero.
pub fn payload(seq: u64) -> Vec<u8> {
    let len = 1 + (seq.wrapping_mul(2654435761) % 300) as usize;
    (0..len).map(|i| (seq as u8).wrapping_add(i as u8) | 1).collect()
}

/// Every committed frame of the log, in order, as owned `(seq, kind, payload)`.
pub fn collect(log: &Log) -> Vec<(u64, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cursor = log.reader().cursor(log.first_seq()).expect("cursor");
    while let Some(frame) = cursor.next() {
        let frame = frame.expect("frame");
        out.push((frame.seq, frame.kind, frame.payload.to_vec()));
    }
    out
}

/// The segment files of a log directory, in sequence order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Where each frame of a segment file lies: `(seq, offset, header + payload bytes)`.
pub fn frame_spans(path: &Path) -> Vec<(u64, usize, usize)> {
    let bytes = fs::read(path).expect("read segment");
    let mut spans = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while let Ok((h, _)) = FrameHeader::decode(&bytes[at..]) {
        spans.push((h.seq, at, 32 + h.payload_len as usize));
        at += h.frame_bytes();
    }
    spans
}

/// Copies every file of `src` (not the lock) into a fresh temp dir.
pub fn copy_log(src: &Path) -> tempfile::TempDir {
    let dst = tempfile::tempdir().expect("temp dir");
    for entry in fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_name() != "LOCK" {
            fs::copy(entry.path(), dst.path().join(entry.file_name())).expect("copy");
        }
    }
    dst
}

/// Writes `frames` frames (payload from [`payload`], kind 1), committing every
/// `per_commit` of them, and closes the log.
pub fn write_log(dir: &Path, options: LogOptions, frames: u64, per_commit: u64) {
    let mut log = Log::open(dir, options).expect("open");
    for seq in 1..=frames {
        assert_eq!(log.append(1, &payload(seq)).expect("append"), seq);
        if seq % per_commit == 0 {
            log.commit().expect("commit");
        }
    }
    log.close().expect("close");
}

/// splitmix64: a tiny, seeded, good-enough generator for the tests' choices.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform enough in `[0, n)` for a test (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// splitmix64's finalizer: a well-spread hash of `z`.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
