//! A replicated log's mode (`LogOptions::deferred_publish`): commits are durable but
//! unseen until published; the durable, unpublished suffix can be cut, and a cut is
//! crash-safe at every file-system call (power loss clean or torn), so after a reopen
//! the log is either whole or cut, never damaged, never with a hole.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::payload;
use ledger_store::fault::{PowerLoss, SimulatedDisk};
use ledger_store::{Durability, Log, LogOptions, ReplicaError, Storage, StorageOp};

const SEGMENT_BYTES: usize = 16 << 10;

fn options() -> LogOptions {
    LogOptions::new().segment_bytes(SEGMENT_BYTES).durability(Durability::SyncData).deferred_publish(true)
}

/// Appends frames `from..=to` (payload a function of seq and `era`) and commits.
fn entries(log: &mut Log, from: u64, to: u64, era: u8) {
    for seq in from..=to {
        assert_eq!(log.next_seq(), seq);
        log.append(u16::from(era) + 1, &with_era(seq, era)).unwrap();
    }
    log.commit().unwrap();
}

fn with_era(seq: u64, era: u8) -> Vec<u8> {
    let mut p = payload(seq);
    p[0] = era.wrapping_add(1) | 1;
    p
}

/// Every durable frame as the writer reads it: `(seq, kind, payload)`.
fn durable(log: &Log) -> Vec<(u64, u16, Vec<u8>)> {
    (log.first_seq()..=log.committed_seq())
        .map(|seq| {
            let f = log.frame(seq).unwrap_or_else(|| panic!("frame {seq}"));
            (f.seq, f.kind, f.payload.to_vec())
        })
        .collect()
}

#[test]
fn commits_are_unseen_until_published_and_publishing_is_never_undone() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), options()).unwrap();
    entries(&mut log, 1, 40, 0);
    assert_eq!((log.committed_seq(), log.published_seq()), (40, 0));
    assert!(common::collect(&log).is_empty(), "readers see nothing unpublished");
    assert_eq!(log.frame(7).map(|f| f.payload.to_vec()), Some(with_era(7, 0)), "the writer reads it");
    log.publish_through(25).unwrap();
    let seen = common::collect(&log);
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.last().map(|f| f.0), Some(25));
    assert_eq!(log.reader().committed_seq(), 25);
    assert!(matches!(log.publish_through(41), Err(ReplicaError::OutOfRange { seq: 41, .. })));
    assert!(matches!(log.truncate_from(25), Err(ReplicaError::OutOfRange { .. })), "published frames stay");
    log.publish_through(10).unwrap(); // a no-op, never backwards
    assert_eq!(common::collect(&log).len(), 25);
    drop(log);

    // A reopen shows readers nothing until the owner publishes again; every frame is
    // durable and readable by the writer.
    let mut log = Log::open(dir.path(), options()).unwrap();
    assert_eq!((log.committed_seq(), log.published_seq()), (40, 0));
    assert!(common::collect(&log).is_empty());
    assert_eq!(durable(&log).len(), 40);
    log.publish_through(40).unwrap();
    assert_eq!(common::collect(&log).len(), 40);

    // The default mode has none of this.
    let plain = tempfile::tempdir().unwrap();
    let mut log = Log::open(plain.path(), LogOptions::new().segment_bytes(SEGMENT_BYTES)).unwrap();
    log.append(1, b"x").unwrap();
    log.commit().unwrap();
    assert!(matches!(log.truncate_from(1), Err(ReplicaError::NotDeferred)));
    assert!(matches!(log.publish_through(1), Err(ReplicaError::NotDeferred)));
    assert!(log.frame(1).is_none());
    assert_eq!(log.published_seq(), 1);
}

#[test]
fn a_cut_removes_the_unpublished_suffix_across_segments_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), options()).unwrap();
    entries(&mut log, 1, 300, 0);
    let segments = common::segment_files(dir.path()).len();
    assert!(segments >= 4, "the frames span {segments} segments");
    log.publish_through(50).unwrap();
    assert_eq!(log.truncate_from(120).unwrap(), 181);
    assert_eq!((log.next_seq(), log.committed_seq()), (120, 119));
    assert!(common::segment_files(dir.path()).len() < segments, "later segments went");
    assert!(log.frame(120).is_none());
    // The new leader's entries take the cut ones' place.
    entries(&mut log, 120, 160, 1);
    log.publish_through(130).unwrap();
    drop(log);

    let log = Log::open(dir.path(), options()).unwrap();
    assert!(log.recovery().torn_tail.is_none(), "{:?}", log.recovery());
    let all = durable(&log);
    assert_eq!(all.len(), 160);
    for (seq, kind, bytes) in &all {
        let era = u8::from(*seq >= 120);
        assert_eq!((*kind, bytes), (u16::from(era) + 1, &with_era(*seq, era)), "frame {seq}");
    }
    assert!(!dir.path().join("TRUNCATE").exists());

    // A cut at a segment's first frame, and a cut of everything unpublished.
    drop(log);
    let mut log = Log::open(dir.path(), options()).unwrap();
    log.publish_through(10).unwrap();
    let first_of_last = *common::segment_files(dir.path())
        .last()
        .map(|p| common::frame_spans(p))
        .and_then(|s| s.first().copied())
        .map(|(seq, ..)| seq)
        .get_or_insert(0);
    if first_of_last > 11 {
        log.truncate_from(first_of_last).unwrap();
        assert_eq!(log.next_seq(), first_of_last);
    }
    log.truncate_from(11).unwrap();
    entries(&mut log, 11, 12, 2);
    drop(log);
    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(log.committed_seq(), 12);
    assert_eq!(log.frame(12).map(|f| f.payload.to_vec()), Some(with_era(12, 2)));
}

#[test]
fn retention_keeps_what_is_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), options()).unwrap();
    entries(&mut log, 1, 300, 0);
    log.publish_through(20).unwrap();
    log.remove_segments_before(250).unwrap();
    assert!(log.first_seq() <= 21, "the log starts at {}: nothing unpublished went", log.first_seq());
    assert_eq!(durable(&log).last().map(|f| f.0), Some(300));
    log.publish_through(300).unwrap();
    log.remove_segments_before(250).unwrap();
    assert!(log.first_seq() > 21);
    assert!(log.frame(log.first_seq() - 1).is_none());
    assert_eq!(log.frame(log.first_seq()).map(|f| f.seq), Some(log.first_seq()));
}

/// The file-system calls a cut makes, in order, each tried as the place the power
/// fails; a clean and a torn power loss each.
#[test]
fn a_cut_is_whole_or_absent_after_a_power_loss_at_any_call() {
    let ops = [
        (StorageOp::CreateFile, 1),
        (StorageOp::WriteFile, 1),
        (StorageOp::SyncFile, 1),
        (StorageOp::Rename, 1),
        (StorageOp::SyncDir, 1),
        (StorageOp::WriteFrames, 1),
        (StorageOp::SyncRange, 1),
        (StorageOp::RemoveFile, 1),
        (StorageOp::RemoveFile, 2),
        (StorageOp::SyncDir, 2),
        (StorageOp::SyncDir, 3),
    ];
    let mut outcomes = [0u32; 2];
    for (i, &(op, nth)) in ops.iter().enumerate() {
        for mode in [PowerLoss::Clean, PowerLoss::Torn { seed: 17 + i as u64 }] {
            let dir = tempfile::tempdir().unwrap();
            {
                let mut log = Log::open(dir.path(), options()).unwrap();
                entries(&mut log, 1, 200, 0);
                log.publish_through(30).unwrap();
            }
            let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
            let storage = Storage::with_injector(Arc::clone(&disk) as _);
            let mut log = Log::open_with(dir.path(), options(), storage).unwrap();
            let before = (disk.calls(op), nth);
            disk.crash_at(op, before.0 + before.1);
            let cut = log.truncate_from(90);
            if cut.is_ok() {
                // The power failed after the cut, or not at all: a later call then.
                disk.crash();
            }
            drop(log);
            disk.power_loss(mode).unwrap();
            let log = Log::open(dir.path(), options())
                .unwrap_or_else(|e| panic!("{op:?} #{nth} {mode:?}: the log must open: {e}"));
            let all = durable(&log);
            let last = all.last().map_or(0, |f| f.0);
            assert!(last == 200 || last == 89, "{op:?} #{nth} {mode:?}: whole or cut, not {last}");
            assert_eq!(all.len() as u64, last, "{op:?} #{nth} {mode:?}: no hole");
            for (seq, _, bytes) in &all {
                assert_eq!(bytes, &with_era(*seq, 0), "{op:?} #{nth} {mode:?}: frame {seq}");
            }
            outcomes[usize::from(last == 89)] += 1;
            assert!(!dir.path().join("TRUNCATE").exists(), "a reopen finishes the cut and removes the marker");
            drop(log);
            // And the log goes on: a new suffix after whatever survived.
            let mut log = Log::open(dir.path(), options()).unwrap();
            entries(&mut log, last + 1, last + 5, 3);
            drop(log);
            let log = Log::open(dir.path(), options()).unwrap();
            assert_eq!(log.committed_seq(), last + 5);
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "some crashes came before the marker, some after: {outcomes:?}");
}
