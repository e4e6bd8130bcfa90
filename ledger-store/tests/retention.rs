//! Retention: whole segments below a sequence number are removed (after a snapshot);
//! the log then starts later, readers say so, and a reopen agrees.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use ledger_store::{Log, LogOptions, ReadError};

#[test]
fn segments_below_a_seq_are_removed_and_the_rest_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::new().segment_bytes(8192);
    common::write_log(dir.path(), options, 300, 10);
    let mut log = Log::open(dir.path(), options).unwrap();
    let before = common::segment_files(dir.path());
    assert!(before.len() >= 5);
    let old_cursor = log.reader().cursor(1).unwrap();

    let removed = log.remove_segments_before(150).unwrap();
    let after = common::segment_files(dir.path());
    assert_eq!(after.len(), before.len() - removed);
    assert!(removed >= 2);
    let first = log.first_seq();
    assert!(first <= 150, "the segment holding 150 is kept");
    assert!(first > 1);
    assert_eq!(log.reader().cursor(first - 1).unwrap_err(), ReadError::Removed { requested: first - 1, first });

    // A cursor opened before the removal still reads the removed segments.
    let mut old_cursor = old_cursor;
    let mut seq = 0;
    while let Some(frame) = old_cursor.next() {
        seq += 1;
        assert_eq!(frame.unwrap().seq, seq);
    }
    assert_eq!(seq, 300);

    // The active segment is never removed, whatever the bound.
    log.remove_segments_before(u64::MAX).unwrap();
    assert_eq!(common::segment_files(dir.path()).len(), 1);
    let first = log.first_seq();
    drop(log);

    let log = Log::open(dir.path(), options).unwrap();
    assert_eq!(log.first_seq(), first);
    assert_eq!(log.recovery().last_seq, 300);
    let frames = common::collect(&log);
    assert_eq!(frames.first().unwrap().0, first);
    assert_eq!(frames.len() as u64, 300 - first + 1);
    assert!(frames.iter().all(|(seq, _, p)| *p == common::payload(*seq)));
}
