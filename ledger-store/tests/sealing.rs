//! Frames are checksummed on a second thread while the writer appends (`seal.rs`):
//! groups many hand-overs long, crossing roll-overs, must reach the disk whole and
//! verifying exactly as if the writer had sealed them itself, and a large group
//! abandoned before its commit must disappear whole.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use ledger_store::{Durability, Log, LogOptions};

const SEGMENT: usize = 256 << 10;

/// Group sizes: lone frames, groups under one hand-over (64 KiB, ~350 of these
/// frames), and groups of many hand-overs that cross one or more roll-overs.
const GROUPS: [u64; 10] = [1, 3, 340, 350, 2_000, 7, 4_000, 1, 1_500, 9_000];

fn every_frame_on_disk_verifies(dir: &std::path::Path) -> u64 {
    common::segment_files(dir).iter().map(|f| common::frame_spans(f).len() as u64).sum()
}

#[test]
fn large_groups_across_roll_overs_are_sealed_whole() {
    for durability in [Durability::SyncData, Durability::None] {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions::new().segment_bytes(SEGMENT).durability(durability);
        let mut log = Log::open(dir.path(), options).unwrap();
        let mut seq = 0;
        for group in GROUPS {
            for _ in 0..group {
                seq += 1;
                assert_eq!(log.append(1, &common::payload(seq)).unwrap(), seq);
            }
            assert_eq!(log.commit().unwrap(), seq);
            // The committed frames are in the files (shared mapping, page cache) with
            // their checksums: every one verifies, none is missing.
            assert_eq!(every_frame_on_disk_verifies(dir.path()), seq, "{durability:?}: committed frames verify");
        }
        assert!(common::segment_files(dir.path()).len() > 5, "the groups crossed roll-overs");
        drop(log);

        let log = Log::open(dir.path(), options).unwrap();
        assert_eq!(log.recovery().torn_tail, None, "{durability:?}");
        assert_eq!(log.recovery().last_seq, seq);
        let frames = common::collect(&log);
        assert_eq!(frames.len() as u64, seq);
        for (seq, kind, payload) in frames {
            assert_eq!((kind, payload), (1, common::payload(seq)), "frame {seq}");
        }
    }
}

#[test]
fn a_large_group_abandoned_before_its_commit_disappears_whole() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::new().segment_bytes(SEGMENT).durability(Durability::SyncData);
    let mut log = Log::open(dir.path(), options).unwrap();
    let acked = 1_000;
    for seq in 1..=acked {
        log.append(1, &common::payload(seq)).unwrap();
    }
    log.commit().unwrap();
    // Several hand-overs to the sealing thread and a roll-over, then no commit: the
    // process dies with part of the group sealed and part not.
    for seq in acked + 1..=acked + 3_000 {
        log.append(1, &common::payload(seq)).unwrap();
    }
    drop(log);

    let log = Log::open(dir.path(), options).unwrap();
    assert_eq!(log.recovery().last_seq, acked);
    assert!(log.recovery().torn_tail.is_some(), "the abandoned group is reported as a torn tail");
    let frames = common::collect(&log);
    assert_eq!(frames.len() as u64, acked);
    assert_eq!(frames.last().map(|f| f.0), Some(acked));
}

#[test]
fn a_tailing_reader_during_hand_overs_gets_frames_that_verify() {
    // Readers trust committed frames without re-hashing; this checks from the other
    // side that what they are given verifies, while hand-overs are in flight.
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::new().segment_bytes(SEGMENT).durability(Durability::None);
    let mut log = Log::open(dir.path(), options).unwrap();
    let reader = log.reader();
    let path = dir.path().to_path_buf();
    let check = std::thread::spawn(move || {
        let mut cursor = reader.cursor(1).unwrap();
        let mut seen = 0u64;
        while seen < 20_000 {
            while let Some(frame) = cursor.next() {
                let frame = frame.unwrap();
                seen = frame.seq;
                assert_eq!(frame.payload, &common::payload(frame.seq)[..]);
            }
            std::thread::yield_now();
        }
        // Everything the reader was given verifies in the files.
        every_frame_on_disk_verifies(&path) >= seen
    });
    for seq in 1..=20_000 {
        log.append(1, &common::payload(seq)).unwrap();
        if seq % 2_500 == 0 {
            log.commit().unwrap();
        }
    }
    assert!(check.join().unwrap());
}
