//! Snapshot files: written atomically, verified before use, the newest two kept, and
//! those beyond a recovered log's end removed on open.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use std::fs;

use ledger_store::{Durability, Log, LogOptions, SnapshotError};

#[test]
fn snapshots_round_trip_verify_and_keep_the_newest_two() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::new().segment_bytes(8192);
    common::write_log(dir.path(), options, 30, 10);
    let log = Log::open(dir.path(), options).unwrap();
    for seq in [10u64, 20, 30] {
        let payload: Vec<u8> = (0..1000 + seq as usize).map(|i| (i as u8) ^ seq as u8).collect();
        log.write_snapshot(seq, &payload).unwrap();
    }
    let infos = log.snapshots().unwrap();
    assert_eq!(infos.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![30, 20], "newest first, two kept");
    let snap = log.read_snapshot(&infos[0]).unwrap();
    assert_eq!(snap.seq, 30);
    assert_eq!(snap.payload().len(), 1030);
    assert_eq!(snap.payload().as_ptr() as usize % 16, 0, "payload aligned for rkyv");
    assert_eq!(snap.payload()[5], 5 ^ 30);

    // Any flipped bit makes it unusable.
    let mut bytes = fs::read(&infos[0].path).unwrap();
    for at in [0usize, 17, 40, 64, 500, bytes.len() - 1] {
        bytes[at] ^= 0x04;
        fs::write(&infos[0].path, &bytes).unwrap();
        assert!(matches!(log.read_snapshot(&infos[0]), Err(SnapshotError::Damaged { .. })), "flip at {at}");
        bytes[at] ^= 0x04;
    }
    fs::write(&infos[0].path, &bytes).unwrap();
    assert!(log.read_snapshot(&infos[0]).is_ok());
    fs::write(&infos[0].path, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(log.read_snapshot(&infos[0]), Err(SnapshotError::Damaged { .. })), "truncated");
}

#[test]
fn snapshots_beyond_a_cut_log_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::new().segment_bytes(8192).durability(Durability::None);
    common::write_log(dir.path(), options, 20, 5);
    {
        let log = Log::open(dir.path(), options).unwrap();
        log.write_snapshot(15, b"covers 15").unwrap();
        log.write_snapshot(20, b"covers 20").unwrap();
    }
    // A power loss lost the last frames (never synced): zero the tail after frame 17.
    // Frames 16 and 17 are what is left of the group 16..=20, whose end mark is gone:
    // the log ends with the last whole group, at 15.
    let seg = common::segment_files(dir.path()).pop().unwrap();
    let spans = common::frame_spans(&seg);
    let (_, cut, _) = *spans.iter().find(|(seq, _, _)| *seq == 18).unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[cut..].fill(0);
    fs::write(&seg, bytes).unwrap();
    let log = Log::open(dir.path(), options).unwrap();
    assert_eq!(log.recovery().last_seq, 15);
    assert_eq!(log.recovery().torn_tail.as_ref().map(|t| t.frames_dropped), Some(2));
    assert_eq!(log.recovery().stale_snapshots_removed, 1);
    assert_eq!(log.snapshots().unwrap().iter().map(|s| s.seq).collect::<Vec<_>>(), vec![15]);
}
