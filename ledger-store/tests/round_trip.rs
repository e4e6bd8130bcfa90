//! Property: random batches of records, committed in random groups across many small
//! segments and reopened at random points, read back exactly, with gapless seqs.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use ledger_store::{Durability, Log, LogOptions};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    /// Append these records and commit them as one group.
    Group(Vec<(u16, Vec<u8>)>),
    /// Close and reopen the log.
    Reopen,
    /// Force a sync (meaningful with `Durability::None`).
    Sync,
}

fn step() -> impl Strategy<Value = Step> {
    let record = (1u16..=u16::MAX, prop::collection::vec(any::<u8>(), 0..700));
    prop_oneof![
        8 => prop::collection::vec(record, 1..40).prop_map(Step::Group),
        1 => Just(Step::Reopen),
        1 => Just(Step::Sync),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn batches_round_trip_across_segments(
        steps in prop::collection::vec(step(), 1..30),
        segment_pages in 2usize..5,
        sync in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let durability = if sync { Durability::SyncData } else { Durability::None };
        let options = LogOptions::new().segment_bytes(segment_pages * 4096).durability(durability);
        let mut model: Vec<(u16, Vec<u8>)> = Vec::new();
        let mut log = Log::open(dir.path(), options).unwrap();
        for step in steps {
            match step {
                Step::Group(records) => {
                    for (kind, payload) in &records {
                        let seq = log.append(*kind, payload).unwrap();
                        model.push((*kind, payload.clone()));
                        prop_assert_eq!(seq, model.len() as u64);
                    }
                    prop_assert_eq!(log.commit().unwrap(), model.len() as u64);
                }
                Step::Reopen => {
                    drop(log);
                    log = Log::open(dir.path(), options).unwrap();
                    prop_assert_eq!(log.recovery().torn_tail.clone(), None);
                    prop_assert_eq!(log.recovery().frames, model.len() as u64);
                }
                Step::Sync => {
                    log.sync().unwrap();
                    prop_assert_eq!(log.synced_seq(), model.len() as u64);
                }
            }
            let got = common::collect(&log);
            prop_assert_eq!(got.len(), model.len());
            for (i, ((seq, kind, payload), (mkind, mpayload))) in got.iter().zip(&model).enumerate() {
                prop_assert_eq!(*seq, i as u64 + 1, "seqs are gapless from 1");
                prop_assert_eq!(kind, mkind);
                prop_assert_eq!(payload, mpayload);
            }
        }
        drop(log);
        let log = Log::open(dir.path(), options).unwrap();
        prop_assert_eq!(log.next_seq(), model.len() as u64 + 1);
        let segments = common::segment_files(dir.path()).len();
        prop_assert_eq!(log.recovery().segments, segments);
    }
}

#[test]
fn cursor_from_any_seq_starts_there() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::new().segment_bytes(8192);
    common::write_log(dir.path(), options, 200, 7);
    let log = Log::open(dir.path(), options).unwrap();
    assert!(common::segment_files(dir.path()).len() > 3, "the log spans several segments");
    for from in [1u64, 2, 57, 150, 200, 201, 5000] {
        let mut cursor = log.reader().cursor(from).unwrap();
        let mut expect = from;
        while let Some(frame) = cursor.next() {
            let frame = frame.unwrap();
            assert_eq!(frame.seq, expect);
            assert_eq!(frame.payload, &common::payload(expect)[..]);
            expect += 1;
        }
        assert_eq!(expect, from.max(201), "cursor from {from} ends after the last frame");
    }
}

#[test]
fn uncommitted_frames_are_invisible_to_readers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogOptions::new().segment_bytes(8192)).unwrap();
    log.append(1, b"committed").unwrap();
    log.commit().unwrap();
    log.append(1, b"pending").unwrap();
    let reader = log.reader();
    assert_eq!(reader.committed_seq(), 1);
    let mut cursor = reader.cursor(1).unwrap();
    assert_eq!(cursor.next().unwrap().unwrap().payload, b"committed");
    assert!(cursor.next().is_none(), "the pending frame is not published");
    log.commit().unwrap();
    assert_eq!(cursor.next().unwrap().unwrap().payload, b"pending", "a cursor keeps up after commit");
}

#[test]
fn roll_over_uses_the_spare_prepared_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogOptions::new().segment_bytes(64 << 10)).unwrap();
    let spares = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter(|n| n.starts_with("spare-") && n.ends_with(".seg.tmp"))
            .count()
    };
    // Past half of the first segment a spare is being prepared.
    let mut seq = 0;
    while seq < 40 {
        seq += 1;
        log.append(1, &[5u8; 1000]).unwrap();
    }
    log.commit().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while spares() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(spares(), 1, "a spare is prepared in the background");
    // The roll-over turns the spare into the next segment.
    while common::segment_files(dir.path()).len() < 2 {
        seq += 1;
        log.append(1, &[6u8; 1000]).unwrap();
    }
    log.commit().unwrap();
    assert_eq!(spares(), 0, "the spare became the segment");
    drop(log);
    let log = Log::open(dir.path(), LogOptions::new().segment_bytes(64 << 10)).unwrap();
    assert_eq!(log.recovery().last_seq, seq);
    assert_eq!(common::collect(&log).len() as u64, seq);
}
