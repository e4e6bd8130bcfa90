//! The read-only view for tools (`ledger_store::inspect`): it takes no lock (a `Log`
//! holds the directory meanwhile), changes nothing, agrees with recovery, and finds a
//! bad frame that later whole groups prove was committed even when no frame says it
//! was synced; a bad frame in the last group is a torn tail, as recovery says.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

use std::fs;
use std::path::Path;

use ledger_store::inspect::{InspectError, LogImage};
use ledger_store::{Durability, Log, LogOptions};

/// 16 groups of 4 frames of 40 bytes (80-byte frames), written without syncs.
fn write(dir: &Path) -> Log {
    let mut log = Log::open(dir, LogOptions::new().segment_bytes(64 << 10).durability(Durability::None)).unwrap();
    for group in 0..16u8 {
        for k in 0..4u8 {
            log.append(7, &[group * 4 + k; 40]).unwrap();
        }
        log.commit().unwrap();
    }
    log
}

/// The offset of frame `seq` (1-based) in the first segment.
fn frame_at(seq: u64) -> usize {
    64 + (seq as usize - 1) * 80
}

fn flip(dir: &Path, at: usize) {
    let seg = dir.join(ledger_store::format::segment_file_name(1));
    let mut bytes = fs::read(&seg).unwrap();
    bytes[at] ^= 0x40;
    fs::write(&seg, bytes).unwrap();
}

#[test]
fn a_view_beside_the_owner_sees_what_it_committed_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = write(dir.path());
    let before = fs::read(dir.path().join(ledger_store::format::segment_file_name(1))).unwrap();
    let image = LogImage::open(dir.path()).unwrap();
    let outcome = image.scan().unwrap();
    assert_eq!((outcome.last_seq, outcome.torn.is_none()), (64, true));
    assert!(image.committed_past_end(&outcome).is_none());
    let frames: Vec<_> = image.frames(&outcome, 5).map(Result::unwrap).collect();
    assert_eq!(frames.len(), 60);
    assert_eq!((frames[0].seq, frames[0].payload, frames[0].offset), (5, &[4u8; 40][..], frame_at(5) as u64));
    assert!(frames.iter().all(|f| f.ends_group == (f.seq % 4 == 0)));
    drop(log);
    let after = fs::read(dir.path().join(ledger_store::format::segment_file_name(1))).unwrap();
    assert_eq!(before, after);
}

#[test]
fn a_bad_frame_with_whole_groups_after_it_is_committed_and_lost() {
    let dir = tempfile::tempdir().unwrap();
    drop(write(dir.path()));
    flip(dir.path(), frame_at(10) + 40);
    let image = LogImage::open(dir.path()).unwrap();
    // Without syncs nothing proves frame 10 durable: recovery would cut the log there.
    let outcome = image.scan().unwrap();
    assert_eq!(outcome.last_seq, 8, "the end of the last whole group before the flip");
    let lost = image.committed_past_end(&outcome).expect("later whole groups prove it committed");
    assert_eq!((lost.seq, lost.offset), (10, frame_at(10) as u64), "{lost}");
    assert!(lost.proof_seq > 12, "{lost}");
}

#[test]
fn a_bad_frame_in_the_last_group_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    drop(write(dir.path()));
    flip(dir.path(), frame_at(62) + 40);
    let image = LogImage::open(dir.path()).unwrap();
    let outcome = image.scan().unwrap();
    assert_eq!(outcome.last_seq, 60);
    assert!(outcome.torn.is_some());
    assert!(image.committed_past_end(&outcome).is_none(), "nothing after the group: a crash leaves this");
}

#[test]
fn a_directory_without_segments_is_not_a_log() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(LogImage::open(dir.path()), Err(InspectError::NoSegments { .. })));
    assert!(matches!(LogImage::open(&dir.path().join("missing")), Err(InspectError::Io { .. })));
}
