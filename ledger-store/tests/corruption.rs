//! Corruption: damage to a frame that had been made durable is refused with an error
//! naming the segment and offset, and the refusal changes nothing on disk; damage that
//! only touches frames never known durable is a torn tail.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use std::fs;

use ledger_store::format::FrameFault;
use ledger_store::{CorruptionKind, Durability, Log, LogOptions, OpenError};

const FRAMES: u64 = 10;

fn options(durability: Durability) -> LogOptions {
    LogOptions::new().segment_bytes(64 << 10).durability(durability)
}

/// A log of FRAMES frames, each committed (and so synced) on its own.
fn synced_log() -> (tempfile::TempDir, std::path::PathBuf, Vec<(u64, usize, usize)>) {
    let dir = tempfile::tempdir().unwrap();
    common::write_log(dir.path(), options(Durability::SyncData), FRAMES, 1);
    let seg = common::segment_files(dir.path()).pop().unwrap();
    let spans = common::frame_spans(&seg);
    (dir, seg, spans)
}

#[test]
fn a_bit_flip_anywhere_in_a_middle_frame_is_refused() {
    let (pristine, _, spans) = synced_log();
    let (seq, at, len) = spans[4];
    for byte in at..at + len {
        let dir = common::copy_log(pristine.path());
        let seg = common::segment_files(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        bytes[byte] ^= 1 << (byte % 8);
        fs::write(&seg, &bytes).unwrap();
        let err = Log::open(dir.path(), options(Durability::SyncData)).expect_err("must refuse");
        let OpenError::Corrupt(c) = &err else { panic!("byte {byte}: expected corruption, got {err}") };
        assert_eq!(c.segment, seg, "the error names the segment");
        assert_eq!(c.offset, at as u64, "the error names the frame's offset");
        match &c.kind {
            CorruptionKind::DurableFrameDamaged { seq: bad, proof_seq, .. } => {
                assert_eq!(*bad, seq);
                assert_eq!(*proof_seq, seq + 1, "the next frame proves it was durable");
            }
            other => panic!("byte {byte}: unexpected {other}"),
        }
        let message = err.to_string();
        assert!(message.contains(&seg.display().to_string()) && message.contains(&at.to_string()), "{message}");
        assert_eq!(fs::read(&seg).unwrap(), bytes, "a refused open changes nothing");
    }
}

#[test]
fn a_bit_flip_in_the_last_frame_cuts_it_as_a_torn_tail() {
    let (pristine, _, spans) = synced_log();
    let (_, at, len) = *spans.last().unwrap();
    for byte in (at..at + len).step_by(3) {
        let dir = common::copy_log(pristine.path());
        let seg = common::segment_files(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        bytes[byte] ^= 0x10;
        fs::write(&seg, &bytes).unwrap();
        let log = Log::open(dir.path(), options(Durability::SyncData)).unwrap();
        assert_eq!(log.recovery().last_seq, FRAMES - 1, "flip at {byte}");
        assert_eq!(log.recovery().torn_tail.as_ref().unwrap().offset, at as u64);
    }
}

#[test]
fn a_hole_in_a_group_never_synced_is_a_torn_tail() {
    // Durability::None never syncs, so no frame claims another was durable: a power
    // loss may have persisted later pages and lost earlier ones. That is a torn tail.
    let dir = tempfile::tempdir().unwrap();
    common::write_log(dir.path(), options(Durability::None), FRAMES, 1); // close() syncs these
    let mut log = Log::open(dir.path(), options(Durability::None)).unwrap();
    for seq in FRAMES + 1..=FRAMES + 6 {
        log.append(1, &common::payload(seq)).unwrap();
        log.commit().unwrap();
    }
    drop(log); // no close: no sync
    let seg = common::segment_files(dir.path()).pop().unwrap();
    let spans = common::frame_spans(&seg);
    let (_, at, len) = spans[FRAMES as usize + 1];
    let mut bytes = fs::read(&seg).unwrap();
    bytes[at..at + len].fill(0);
    fs::write(&seg, &bytes).unwrap();
    let log = Log::open(dir.path(), options(Durability::None)).unwrap();
    assert_eq!(log.recovery().last_seq, FRAMES + 1);
    assert_eq!(log.recovery().torn_tail.as_ref().unwrap().frames_dropped, 4);
}

#[test]
fn the_same_hole_after_a_sync_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    common::write_log(dir.path(), options(Durability::SyncData), FRAMES, 1);
    let seg = common::segment_files(dir.path()).pop().unwrap();
    let (seq, at, len) = common::frame_spans(&seg)[6];
    let mut bytes = fs::read(&seg).unwrap();
    bytes[at..at + len].fill(0);
    fs::write(&seg, &bytes).unwrap();
    let err = Log::open(dir.path(), options(Durability::SyncData)).unwrap_err();
    let OpenError::Corrupt(c) = err else { panic!("expected corruption") };
    assert_eq!(c.offset, at as u64);
    assert!(
        matches!(c.kind, CorruptionKind::DurableFrameDamaged { seq: s, fault: FrameFault::Zeroed, .. } if s == seq)
    );
}

#[test]
fn a_verified_frame_with_the_wrong_seq_is_a_sequence_gap() {
    // Every frame has the same payload length, so frame 3's bytes fit frame 6's place.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), options(Durability::SyncData)).unwrap();
    for _ in 0..FRAMES {
        log.append(1, &[7u8; 40]).unwrap();
        log.commit().unwrap();
    }
    drop(log);
    let seg = common::segment_files(dir.path()).pop().unwrap();
    let spans = common::frame_spans(&seg);
    let mut bytes = fs::read(&seg).unwrap();
    let (_, from, len) = spans[2];
    let (_, to, _) = spans[5];
    bytes.copy_within(from..from + len, to);
    fs::write(&seg, &bytes).unwrap();
    let err = Log::open(dir.path(), options(Durability::SyncData)).unwrap_err();
    let OpenError::Corrupt(c) = err else { panic!("expected corruption") };
    assert_eq!((c.offset, c.kind), (to as u64, CorruptionKind::SequenceGap { expected: 6, found: 3 }));
}

#[test]
fn a_missing_middle_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    common::write_log(dir.path(), options(Durability::SyncData).segment_bytes(8192), 200, 1);
    let files = common::segment_files(dir.path());
    assert!(files.len() >= 4);
    fs::remove_file(&files[1]).unwrap();
    let err = Log::open(dir.path(), options(Durability::SyncData)).unwrap_err();
    let OpenError::Corrupt(c) = err else { panic!("expected corruption, got {err}") };
    assert_eq!(c.segment, files[0], "the break is where the first segment's frames end");
    assert!(matches!(c.kind, CorruptionKind::DurableFrameDamaged { .. }), "{}", c.kind);
    assert_eq!(common::segment_files(dir.path()).len(), files.len() - 1, "nothing removed");
}
