//! Torn tails: a crash that cut the last frames short at any byte opens with exactly
//! the wholly written frames, reports the cut, and leaves a healthy log behind.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use std::fs::{self, OpenOptions};
use std::sync::Arc;

use ledger_store::fault::{Fault, SimulatedDisk};
use ledger_store::{Durability, Log, LogOptions, Storage, StorageOp};

const FRAMES: u64 = 12;

fn options() -> LogOptions {
    LogOptions::new().segment_bytes(64 << 10).durability(Durability::SyncData)
}

/// How a crash left the bytes after `offset`.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Never written: the preallocated zeroes are still there.
    Zeroed,
    /// The file itself ends there (cut short by a copy or a repair).
    Truncated,
}

fn cut_and_open(pristine: &std::path::Path, offset: usize, cut: Cut) -> (tempfile::TempDir, Log) {
    let dir = common::copy_log(pristine);
    let seg = common::segment_files(dir.path()).pop().unwrap();
    match cut {
        Cut::Zeroed => {
            let mut bytes = fs::read(&seg).unwrap();
            bytes[offset..].fill(0);
            fs::write(&seg, bytes).unwrap();
        }
        Cut::Truncated => OpenOptions::new().write(true).open(&seg).unwrap().set_len(offset as u64).unwrap(),
    }
    let log = Log::open(dir.path(), options()).unwrap_or_else(|e| panic!("open after {cut:?} cut at {offset}: {e}"));
    (dir, log)
}

#[test]
fn cut_at_every_byte_of_the_last_frames_keeps_exactly_the_whole_ones() {
    let pristine = tempfile::tempdir().unwrap();
    common::write_log(pristine.path(), options(), FRAMES, 1);
    let seg = common::segment_files(pristine.path()).pop().unwrap();
    let spans = common::frame_spans(&seg);
    assert_eq!(spans.len() as u64, FRAMES, "all frames in one segment");
    let (_, from, _) = spans[spans.len() - 3];
    let (_, last_at, last_len) = spans[spans.len() - 1];
    let mut cases = 0;
    for offset in from..=last_at + last_len {
        for cut in [Cut::Zeroed, Cut::Truncated] {
            let whole = spans.iter().filter(|(_, at, len)| at + len <= offset).count() as u64;
            let (dir, mut log) = cut_and_open(pristine.path(), offset, cut);
            let frames = common::collect(&log);
            assert_eq!(frames.len() as u64, whole, "{cut:?} cut at {offset}");
            for (seq, _, payload) in &frames {
                assert_eq!(payload, &common::payload(*seq));
            }
            let partial_left = spans.iter().any(|(_, at, len)| *at < offset && offset < at + len);
            assert_eq!(log.recovery().torn_tail.is_some(), partial_left, "{cut:?} cut at {offset}: torn report");
            // The log goes on healthily from the cut: a new frame takes the next seq,
            // and a second open finds nothing torn (the tail was zeroed and synced).
            assert_eq!(log.append(9, b"after the crash").unwrap(), whole + 1);
            log.commit().unwrap();
            drop(log);
            let log = Log::open(dir.path(), options()).unwrap();
            assert_eq!(log.recovery().torn_tail, None);
            assert_eq!(common::collect(&log).last().unwrap().2, b"after the crash");
            cases += 1;
        }
    }
    assert!(cases > 300, "covered {cases} cut points");
}

#[test]
fn torn_report_names_the_cut() {
    let pristine = tempfile::tempdir().unwrap();
    common::write_log(pristine.path(), options(), FRAMES, 1);
    let seg = common::segment_files(pristine.path()).pop().unwrap();
    let (_, last_at, last_len) = *common::frame_spans(&seg).last().unwrap();
    let (_dir, log) = cut_and_open(pristine.path(), last_at + last_len / 2, Cut::Zeroed);
    let torn = log.recovery().torn_tail.clone().expect("a torn tail");
    assert_eq!(torn.offset, last_at as u64);
    assert_eq!(torn.segment.file_name(), seg.file_name());
    assert!(torn.bytes_dropped > 0 && torn.bytes_dropped <= (last_len / 2) as u64, "{torn:?}");
    assert_eq!(torn.frames_dropped, 0);
    assert_eq!(log.recovery().last_seq, FRAMES - 1);
}

#[test]
fn a_group_torn_across_a_roll_over_is_cut_in_both_segments() {
    // The last group spans two segments, and a power loss kept its frames in the new
    // segment but not those at the end of the old one. The group was never
    // acknowledged, so this is a torn tail: the old segment is cut after the last
    // acknowledged frame and the new segment is removed.
    const SEGMENT: usize = 8192;
    let options = LogOptions::new().segment_bytes(SEGMENT).durability(Durability::SyncData);
    // Find the last seq after which two more frames still fit in the first segment.
    let mut end = ledger_store::format::SEGMENT_HEADER_BYTES;
    let mut seq = 0u64;
    let acked = loop {
        let next_two = ledger_store::format::frame_bytes(common::payload(seq + 1).len())
            + ledger_store::format::frame_bytes(common::payload(seq + 2).len());
        let third = ledger_store::format::frame_bytes(common::payload(seq + 3).len());
        if end + next_two <= SEGMENT && end + next_two + third > SEGMENT {
            break seq;
        }
        seq += 1;
        end += ledger_store::format::frame_bytes(common::payload(seq).len());
    };
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
    let mut log = Log::open_with(dir.path(), options, Storage::with_injector(Arc::clone(&disk) as _)).unwrap();
    for seq in 1..=acked {
        log.append(1, &common::payload(seq)).unwrap();
        log.commit().unwrap();
    }
    for seq in acked + 1..=acked + 6 {
        log.append(1, &common::payload(seq)).unwrap();
    }
    // The group's commit seals its frames, then its sync fails: written whole, never
    // acknowledged (as a crash during the sync would leave it).
    disk.fail_nth(StorageOp::SyncRange, disk.calls(StorageOp::SyncRange) + 1, Fault::Eio);
    assert!(log.commit().is_err());
    drop(log);
    let files = common::segment_files(dir.path());
    assert_eq!(files.len(), 2);
    let old = common::frame_spans(&files[0]);
    let (_, cut_at, _) = old[acked as usize];
    assert_eq!(old.len() as u64, acked + 2, "two frames of the group in the old segment");
    assert_eq!(common::frame_spans(&files[1]).len(), 4, "four in the new one");
    // Power loss: the old segment's pages of the group never reached the disk.
    let mut bytes = fs::read(&files[0]).unwrap();
    bytes[cut_at..].fill(0);
    fs::write(&files[0], &bytes).unwrap();

    let log = Log::open(dir.path(), options).unwrap();
    let torn = log.recovery().torn_tail.clone().expect("a torn tail");
    assert_eq!((torn.segment.clone(), torn.offset), (files[0].clone(), cut_at as u64));
    assert_eq!(torn.frames_dropped, 4, "the group's surviving frames go with it");
    assert_eq!(torn.segments_removed, 1);
    assert!(!files[1].exists());
    assert_eq!(log.recovery().last_seq, acked);
    let frames = common::collect(&log);
    assert_eq!(frames.len() as u64, acked);
    assert!(frames.iter().all(|(seq, _, p)| *p == common::payload(*seq)));
}

/// Commit groups are atomic across a crash: cut anywhere inside the last group, at a
/// frame boundary or in the middle of a frame, and the log opens with exactly the
/// groups before it, reports the whole frames of the cut group as dropped, and takes
/// new groups after that.
#[test]
fn a_group_is_kept_whole_or_not_at_all() {
    const GROUPS: [u64; 4] = [3, 1, 4, 5]; // frames per commit; the last group is cut
    let pristine = tempfile::tempdir().unwrap();
    {
        let mut log = Log::open(pristine.path(), options()).unwrap();
        let mut seq = 0;
        for n in GROUPS {
            for _ in 0..n {
                seq += 1;
                log.append(1, &common::payload(seq)).unwrap();
            }
            log.commit().unwrap();
        }
        log.close().unwrap();
    }
    let before_last: u64 = GROUPS[..GROUPS.len() - 1].iter().sum();
    let seg = common::segment_files(pristine.path()).pop().unwrap();
    let spans = common::frame_spans(&seg);
    let (_, group_start, _) = spans[before_last as usize];
    let (_, last_at, last_len) = spans[spans.len() - 1];
    let mut cases = 0;
    // Every cut that leaves the last group short of its end mark (the end frame's header
    // is what carries it, so any cut before the group's last byte loses it).
    for offset in (group_start..last_at + last_len).step_by(7) {
        let (_dir, mut log) = cut_and_open(pristine.path(), offset, Cut::Zeroed);
        let frames = common::collect(&log);
        assert_eq!(frames.len() as u64, before_last, "cut at {offset}: a partial group was kept");
        let whole_dropped = spans.iter().filter(|(seq, at, len)| *seq > before_last && at + len <= offset).count();
        let torn = log.recovery().torn_tail.clone();
        if offset > group_start {
            let torn = torn.unwrap_or_else(|| panic!("cut at {offset}: no torn tail reported"));
            assert_eq!(torn.frames_dropped as usize, whole_dropped, "cut at {offset}");
        }
        assert_eq!(log.append(1, &common::payload(before_last + 1)).unwrap(), before_last + 1);
        log.commit().unwrap();
        cases += 1;
    }
    assert!(cases > 50, "{cases} cuts");
    // Uncut, every group is there.
    let (_dir, log) = cut_and_open(pristine.path(), last_at + last_len, Cut::Zeroed);
    assert_eq!(common::collect(&log).len() as u64, GROUPS.iter().sum::<u64>());
}
